/* test_keystore_cursor.c - the cursor of GET /v1/keys (keystore.h): what
 * keystore_cursor_encode writes comes back, anything else is refused. */
#include "keystore.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/error.h"

Test(key_cursor, round_trip) {
  keystore_pos_t p = {.micros = 1764500000123456LL, .id = "0123456789abcdef"}, q;
  char buf[KEYSTORE_CURSOR_LEN + 1];
  cr_assert_eq(keystore_cursor_encode(&p, buf, sizeof buf), Q_OK);
  cr_assert_eq(strlen(buf), KEYSTORE_CURSOR_LEN);
  cr_assert_eq(keystore_cursor_decode(buf, &q), Q_OK);
  cr_assert_eq(q.micros, p.micros);
  cr_assert_str_eq(q.id, p.id);
}

Test(key_cursor, refuses_bad_input) {
  keystore_pos_t p;
  const char *bad[] = {"",
                       "k1",
                       "k2000644b2e5b8a2400123456789abcdef",
                       "k1000644b2e5b8a2400123456789ABCDEF",
                       "k1000644b2e5b8a2400123456789abcdeg",
                       "k1800644b2e5b8a2400123456789abcdef",
                       "k1000644b2e5b8a2400123456789abcdef0",
                       "k1000644b2e5b8a2400123456789abcde"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(keystore_cursor_decode(bad[i], &p), Q_EINVAL, "accepted %s", bad[i]);
  cr_assert_eq(keystore_cursor_decode(NULL, &p), Q_EINVAL);
  cr_assert_eq(keystore_cursor_decode("k1000644b2e5b8a2400123456789abcdef", &p), Q_OK);
  keystore_pos_t neg = {.micros = -5, .id = "0123456789abcdef"};
  char buf[KEYSTORE_CURSOR_LEN + 1];
  cr_assert_eq(keystore_cursor_encode(&neg, buf, sizeof buf), Q_EINVAL);
  keystore_pos_t badid = {.micros = 5, .id = "0123456789ABCDEF"};
  cr_assert_eq(keystore_cursor_encode(&badid, buf, sizeof buf), Q_EINVAL);
}

Test(key_cursor, key_ids) {
  cr_assert(keystore_key_id_valid("0123456789abcdef"));
  cr_assert(!keystore_key_id_valid("0123456789abcde"));
  cr_assert(!keystore_key_id_valid("0123456789abcdef0"));
  cr_assert(!keystore_key_id_valid("0123456789abcdeF"));
  cr_assert(!keystore_key_id_valid("../../etc/passwd"));
  cr_assert(!keystore_key_id_valid(NULL));
}
