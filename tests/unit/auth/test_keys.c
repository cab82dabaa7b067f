/* test_keys.c - API key format: generation, strict parsing, hashing, roles,
 * tenant and name validation. No database involved. */
#include "keys.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "quarry/error.h"
#include "quarry/util.h"

static int parse(const char *s, key_parts_t *k) {
  return keys_parse(s, strlen(s), k);
}

Test(keys, generated_key_has_the_documented_shape) {
  char key[KEY_MAX_LEN + 1], id[KEY_ID_LEN + 1], hash[KEY_HASH_LEN + 1];
  cr_assert_eq(keys_generate(key, sizeof key, id, hash), Q_OK);
  cr_assert_eq(strlen(key), 3 + 16 + 1 + 43, "key: %s", key);
  cr_assert_eq(strncmp(key, "qk_", 3), 0);
  cr_assert_eq(strncmp(key + 3, id, 16), 0);
  cr_assert_eq(key[19], '_');
  cr_assert_eq(strlen(id), 16);
  cr_assert_eq(strspn(id, "0123456789abcdef"), 16);
  cr_assert_eq(strspn(key + 20,
                      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
               43);
}

Test(keys, generated_key_parses_and_hash_is_sha256_of_secret) {
  char key[KEY_MAX_LEN + 1], id[KEY_ID_LEN + 1], hash[KEY_HASH_LEN + 1];
  keys_generate(key, sizeof key, id, hash);
  key_parts_t k;
  cr_assert_eq(parse(key, &k), Q_OK);
  cr_assert_str_eq(k.id, id);
  cr_assert_eq(k.secret_len, 43);
  cr_assert_str_eq(k.secret, key + 20);

  char again[KEY_HASH_LEN + 1], direct[65];
  keys_hash_secret(&k, again);
  q_sha256_hex(key + 20, 43, direct);
  cr_assert_str_eq(again, hash);
  cr_assert_str_eq(direct, hash);
}

Test(keys, generated_keys_are_unique) {
  char a[KEY_MAX_LEN + 1], b[KEY_MAX_LEN + 1], id[KEY_ID_LEN + 1], h[KEY_HASH_LEN + 1];
  keys_generate(a, sizeof a, id, h);
  keys_generate(b, sizeof b, id, h);
  cr_assert_str_neq(a, b);
}

Test(keys, generate_rejects_a_small_buffer) {
  char key[20], id[KEY_ID_LEN + 1], hash[KEY_HASH_LEN + 1];
  cr_assert_eq(keys_generate(key, sizeof key, id, hash), Q_EINVAL);
}

Test(keys, parses_hex_secret) {
  key_parts_t k;
  const char *key = "qk_0123456789abcdef_"
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
  cr_assert_eq(parse(key, &k), Q_OK);
  cr_assert_str_eq(k.id, "0123456789abcdef");
  cr_assert_eq(k.secret_len, 64);
}

Test(keys, accepts_bearer_scheme_and_surrounding_space) {
  key_parts_t k;
  const char *bare = "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-";
  char buf[256];
  snprintf(buf, sizeof buf, "Bearer %s", bare);
  cr_assert_eq(parse(buf, &k), Q_OK);
  snprintf(buf, sizeof buf, "  bearer \t %s \r\n", bare);
  cr_assert_eq(parse(buf, &k), Q_OK);
  snprintf(buf, sizeof buf, "BEARER %s", bare);
  cr_assert_eq(parse(buf, &k), Q_OK);
  cr_assert_str_eq(k.id, "0123456789abcdef");
}

Test(keys, rejects_malformed_credentials) {
  key_parts_t k;
  const char *bad[] = {
      "",
      "   ",
      "Bearer",
      "Bearer ",
      /* wrong prefix */
      "qx_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "QK_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      /* key id: upper case, non-hex, short */
      "qk_0123456789ABCDEF_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "qk_0123456789abcdeg_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "qk_0123456789abcde_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      /* separator */
      "qk_0123456789abcdef-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      /* secret: 42 and 44 characters, bad alphabet, padding */
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
      /* a 64-character secret must be lower-case hex */
      "qk_0123456789abcdef_"
      "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff",
      "qk_0123456789abcdef_"
      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg",
      /* trailing garbage, inner space, other schemes */
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA x",
      "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAA AAAAAAAAAAAAAAAAAAAAAA",
      "Basic qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
      "Bearerqk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_expect_eq(parse(bad[i], &k), Q_EUNAUTH, "accepted bad credential #%zu: \"%s\"", i,
                 bad[i]);
}

Test(keys, rejects_embedded_nul_and_oversized_input) {
  key_parts_t k;
  char key[] = "qk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  cr_assert_eq(keys_parse(key, strlen(key), &k), Q_OK);
  char with_nul[sizeof key + 1];
  memcpy(with_nul, key, sizeof key);
  with_nul[sizeof key - 1] = '\0';
  with_nul[sizeof key] = 'x';
  cr_assert_eq(keys_parse(with_nul, sizeof with_nul, &k), Q_EUNAUTH);

  char big[Q_LIMIT_CREDENTIAL_BYTES + 2];
  memset(big, ' ', sizeof big);
  memcpy(big, key, strlen(key));
  cr_assert_eq(keys_parse(big, sizeof big, &k), Q_EUNAUTH);
  cr_assert_eq(keys_parse(NULL, 10, &k), Q_EUNAUTH);
}

Test(keys, roles_parse_and_names) {
  int mask;
  char err[128];
  cr_assert_eq(keys_roles_parse("admin", &mask, err, sizeof err), Q_OK);
  cr_assert_eq(mask, ROLE_ADMIN);
  cr_assert_eq(keys_roles_parse("admin,writer,reader,admin", &mask, err, sizeof err),
               Q_OK);
  cr_assert_eq(mask, ROLE_ALL);
  cr_assert_eq(keys_roles_parse("reader", &mask, err, sizeof err), Q_OK);
  cr_assert_eq(mask, ROLE_READER);

  cr_assert_eq(keys_roles_parse("", &mask, err, sizeof err), Q_EINVAL);
  cr_assert_eq(keys_roles_parse(NULL, &mask, err, sizeof err), Q_EINVAL);
  cr_assert_eq(keys_roles_parse("admin,,reader", &mask, err, sizeof err), Q_EINVAL);
  cr_assert_eq(keys_roles_parse("root", &mask, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "root"), "error names the role: %s", err);
  cr_assert_eq(keys_roles_parse("Admin", &mask, err, sizeof err), Q_EINVAL);
  cr_assert_eq(keys_roles_parse("admin,", &mask, err, sizeof err), Q_OK);

  cr_assert_str_eq(keys_role_name(ROLE_WRITER), "writer");
  cr_assert_null(keys_role_name(8));
  cr_assert_eq(keys_role_bit("reader"), ROLE_READER);
  cr_assert_eq(keys_role_bit("readers"), 0);
}

Test(keys, key_names) {
  cr_assert(keys_name_valid("launcher"));
  cr_assert(keys_name_valid("clé de l'équipe"));
  cr_assert_not(keys_name_valid(""));
  cr_assert_not(keys_name_valid("tab\there"));
  cr_assert_not(keys_name_valid("bad \xff utf8"));
  cr_assert_not(keys_name_valid("overlong \xc0\xaf"));
  char big[Q_LIMIT_API_KEY_NAME_BYTES + 2];
  memset(big, 'n', sizeof big);
  big[Q_LIMIT_API_KEY_NAME_BYTES + 1] = '\0';
  cr_assert_not(keys_name_valid(big));
  big[Q_LIMIT_API_KEY_NAME_BYTES] = '\0';
  cr_assert(keys_name_valid(big));
}
