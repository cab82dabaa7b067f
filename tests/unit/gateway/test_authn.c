/* test_authn.c - extracting the API key from Authorization / X-API-Key. */
#include "authn.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "quarry/error.h"

static int extract(const char *authz, const char *xkey, char *out, size_t outlen) {
  const char *k;
  size_t n;
  char err[256];
  int rc = authn_extract(authz, xkey, &k, &n, err, sizeof err);
  if (rc == 0)
    snprintf(out, outlen, "%.*s", (int)n, k);
  else
    snprintf(out, outlen, "%s", err);
  return rc;
}

Test(authn, bearer_and_x_api_key) {
  char k[600];
  cr_assert_eq(extract("Bearer qk_abc_def", NULL, k, sizeof k), 0);
  cr_assert_str_eq(k, "qk_abc_def");
  cr_assert_eq(extract("bearer   qk_1  ", NULL, k, sizeof k), 0);
  cr_assert_str_eq(k, "qk_1");
  cr_assert_eq(extract(NULL, "qk_2", k, sizeof k), 0);
  cr_assert_str_eq(k, "qk_2");
  /* Authorization wins when both are present. */
  cr_assert_eq(extract("Bearer from-header", "from-x-api-key", k, sizeof k), 0);
  cr_assert_str_eq(k, "from-header");
}

Test(authn, missing_or_malformed_credentials_are_unauthenticated) {
  char err[600];
  cr_assert_eq(extract(NULL, NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert(strstr(err, "missing credential"), "%s", err);
  cr_assert_eq(extract("Basic dXNlcjpwYXNz", NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert(strstr(err, "Bearer"), "%s", err);
  cr_assert_eq(extract("Bearer", NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert_eq(extract("Bearer ", NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert_eq(extract("BearerXYZ", NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert_eq(extract("Bearer a b", NULL, err, sizeof err), Q_EUNAUTH);
  cr_assert_eq(extract(NULL, "", err, sizeof err), Q_EUNAUTH);
  cr_assert_eq(extract(NULL, "ke\x01y", err, sizeof err), Q_EUNAUTH);
}

Test(authn, keys_are_bounded) {
  char hdr[Q_LIMIT_CREDENTIAL_BYTES + 16], out[64];
  memcpy(hdr, "Bearer ", 7);
  memset(hdr + 7, 'k', Q_LIMIT_CREDENTIAL_BYTES);
  hdr[7 + Q_LIMIT_CREDENTIAL_BYTES] = '\0';
  char k[Q_LIMIT_CREDENTIAL_BYTES + 1];
  cr_assert_eq(extract(hdr, NULL, k, sizeof k), 0);
  cr_assert_eq(strlen(k), Q_LIMIT_CREDENTIAL_BYTES);
  hdr[7 + Q_LIMIT_CREDENTIAL_BYTES] = 'k';
  hdr[8 + Q_LIMIT_CREDENTIAL_BYTES] = '\0';
  cr_assert_eq(extract(hdr, NULL, out, sizeof out), Q_EUNAUTH);
}
