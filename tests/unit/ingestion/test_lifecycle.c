/* test_lifecycle.c - the hostile inputs of the list routes: cursors,
 * RFC 3339 bounds and states (lifecycle.h). No database involved; the
 * queries themselves are covered by tests/integration/test_lifecycle.py. */
#include "lifecycle.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "quarry/error.h"

static const char *UUID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

Test(cursor, round_trip) {
  list_pos_t p = {.micros = 1764500000123456LL}, q;
  snprintf(p.id, sizeof p.id, "%s", UUID);
  char buf[LIFECYCLE_CURSOR_LEN + 1];
  cr_assert_eq(lifecycle_cursor_encode(&p, buf, sizeof buf), Q_OK);
  cr_assert_eq(strlen(buf), LIFECYCLE_CURSOR_LEN);
  cr_assert_eq(strncmp(buf, "c1", 2), 0);
  cr_assert_eq(lifecycle_cursor_decode(buf, &q), Q_OK);
  cr_assert_eq(q.micros, p.micros);
  cr_assert_str_eq(q.id, UUID);
}

Test(cursor, upper_case_id_is_normalised) {
  list_pos_t p = {.micros = 1}, q;
  snprintf(p.id, sizeof p.id, "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0");
  char buf[LIFECYCLE_CURSOR_LEN + 1];
  cr_assert_eq(lifecycle_cursor_encode(&p, buf, sizeof buf), Q_OK);
  cr_assert_eq(lifecycle_cursor_decode(buf, &q), Q_OK);
  cr_assert_str_eq(q.id, UUID);
}

Test(cursor, encode_refuses_bad_positions) {
  char buf[LIFECYCLE_CURSOR_LEN + 1];
  list_pos_t p = {.micros = -1};
  snprintf(p.id, sizeof p.id, "%s", UUID);
  cr_assert_eq(lifecycle_cursor_encode(&p, buf, sizeof buf), Q_EINVAL);
  p.micros = 0;
  cr_assert_eq(lifecycle_cursor_encode(&p, buf, LIFECYCLE_CURSOR_LEN), Q_EINVAL,
               "no room for the terminator");
  snprintf(p.id, sizeof p.id, "not-a-uuid");
  cr_assert_eq(lifecycle_cursor_encode(&p, buf, sizeof buf), Q_EINVAL);
}

Test(cursor, decode_refuses_anything_else) {
  list_pos_t p;
  const char *good = "c1000644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f0";
  cr_assert_eq(strlen(good), LIFECYCLE_CURSOR_LEN);
  cr_assert_eq(lifecycle_cursor_decode(good, &p), Q_OK);
  const char *bad[] = {
      "",
      "c1",
      NULL, /* filled below: one character short */
      "c2000644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* version */
      "C1000644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* prefix case */
      "c1000644B2E5B8A2400f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* upper-case hex */
      "c1000644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1fg",  /* not hex */
      "c1800644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* past INT64_MAX */
      "c1000644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f00", /* one too long */
      "c1000644b2e5b8a24-0f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* sign inside */
      "c1 00644b2e5b8a2400f1e2d3c4b5a69788796a5b4c3d2e1f0",  /* space */
  };
  char shorter[LIFECYCLE_CURSOR_LEN];
  memcpy(shorter, good, LIFECYCLE_CURSOR_LEN - 1);
  shorter[LIFECYCLE_CURSOR_LEN - 1] = '\0';
  bad[2] = shorter;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(lifecycle_cursor_decode(bad[i], &p), Q_EINVAL, "accepted %s", bad[i]);
  cr_assert_eq(lifecycle_cursor_decode(NULL, &p), Q_EINVAL);
  char nul[LIFECYCLE_CURSOR_LEN + 1];
  memcpy(nul, good, sizeof nul);
  nul[10] = '\0';
  cr_assert_eq(lifecycle_cursor_decode(nul, &p), Q_EINVAL, "an embedded NUL shortens it");
}

Test(rfc3339, accepts_the_forms) {
  const char *ok[] = {"2026-01-31T12:00:00Z",      "2026-01-31t12:00:00z",
                      "2026-01-31T12:00:00.1Z",    "2026-01-31T12:00:00.123456789Z",
                      "2026-01-31T23:59:60+02:00", "0001-01-01T00:00:00-23:59"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
    cr_assert(lifecycle_rfc3339_valid(ok[i]), "refused %s", ok[i]);
}

Test(rfc3339, refuses_the_rest) {
  const char *bad[] = {"",
                       "yesterday",
                       "2026-01-31",
                       "2026-01-31 12:00:00Z",
                       "2026-01-31T12:00:00",
                       "2026-13-01T00:00:00Z",
                       "2026-00-01T00:00:00Z",
                       "2026-01-32T00:00:00Z",
                       "2026-01-31T24:00:00Z",
                       "2026-01-31T12:60:00Z",
                       "2026-01-31T12:00:61Z",
                       "2026-01-31T12:00:00.Z",
                       "2026-01-31T12:00:00.1234567890Z",
                       "2026-01-31T12:00:00+2:00",
                       "2026-01-31T12:00:00+24:00",
                       "2026-01-31T12:00:00Z ",
                       "2026-01-31T12:00:00Z'; DROP TABLE documents; --",
                       "0000-01-01T00:00:00Z",
                       "+2026-01-31T12:00:00Z"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert(!lifecycle_rfc3339_valid(bad[i]), "accepted %s", bad[i]);
  cr_assert(!lifecycle_rfc3339_valid(NULL));
}

Test(state, only_job_states) {
  cr_assert(lifecycle_state_valid("queued"));
  cr_assert(lifecycle_state_valid("running"));
  cr_assert(lifecycle_state_valid("done"));
  cr_assert(lifecycle_state_valid("failed"));
  cr_assert(!lifecycle_state_valid(""));
  cr_assert(!lifecycle_state_valid("Done"));
  cr_assert(!lifecycle_state_valid("deleted"));
  cr_assert(!lifecycle_state_valid(NULL));
}
