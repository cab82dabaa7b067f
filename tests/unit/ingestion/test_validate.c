/* test_validate.c - header checks of the ingestion service: tenants, UUIDs,
 * free text and content types. */
#include "../../../services/ingestion/validate.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/error.h"

static int ct(const char *s, const char **out) {
  char err[256];
  return parse_content_type(s, out, err, sizeof err);
}

Test(validate, content_types_accepted) {
  const char *t;
  cr_assert_eq(ct("text/plain", &t), Q_OK);
  cr_assert_str_eq(t, CT_PLAIN);
  cr_assert_eq(ct("text/markdown", &t), Q_OK);
  cr_assert_str_eq(t, CT_MARKDOWN);
  cr_assert_eq(ct("Text/Markdown; charset=UTF-8", &t), Q_OK);
  cr_assert_str_eq(t, CT_MARKDOWN);
  cr_assert_eq(ct(" text/plain ; charset=\"utf-8\" ; format=flowed", &t), Q_OK);
  cr_assert_str_eq(t, CT_PLAIN);
  cr_assert_eq(ct("text/plain;charset=us-ascii", &t), Q_OK);
  cr_assert_eq(ct("text/x-markdown", &t), Q_OK);
  cr_assert_str_eq(t, CT_MARKDOWN);
  cr_assert_eq(ct("text/plain; flowed", &t), Q_OK, "a parameter without = is ignored");
}

Test(validate, content_types_refused) {
  const char *t;
  char err[256];
  cr_assert_eq(parse_content_type("text/html", &t, err, sizeof err), Q_EUNSUPPORTED);
  cr_assert(strstr(err, "text/html"), "%s", err);
  cr_assert_null(t);
  cr_assert_eq(parse_content_type("text/plain; charset=iso-8859-1", &t, err, sizeof err),
               Q_EUNSUPPORTED);
  cr_assert(strstr(err, "iso-8859-1"), "%s", err);
  cr_assert_null(t);
  cr_assert_eq(ct("application/pdf", &t), Q_EUNSUPPORTED);
  cr_assert_eq(ct("text/plainx", &t), Q_EUNSUPPORTED);
  cr_assert_eq(ct("text/markdown; charset=utf-16", &t), Q_EUNSUPPORTED);
  cr_assert_eq(ct("", &t), Q_EINVAL);
  cr_assert_eq(ct(NULL, &t), Q_EINVAL);
  cr_assert_eq(ct("text/plain\n", &t), Q_EINVAL, "control characters");
  char big[400];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  memcpy(big, "text/plain;", 11);
  cr_assert_eq(ct(big, &t), Q_EINVAL);
}

Test(validate, tenants) {
  cr_assert(valid_tenant("acme"));
  cr_assert(valid_tenant("t1.eu-west_2"));
  cr_assert_not(valid_tenant(""));
  cr_assert_not(valid_tenant(NULL));
  cr_assert_not(valid_tenant(".hidden"));
  cr_assert_not(valid_tenant("a b"));
  cr_assert_not(valid_tenant("a'; drop table documents; --"));
  char big[TENANT_ID_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  cr_assert_not(valid_tenant(big));
  big[TENANT_ID_MAX] = '\0';
  cr_assert(valid_tenant(big));
}

Test(validate, uuids) {
  cr_assert(valid_uuid("6f1c1c2e-0000-4000-8000-000000000001"));
  cr_assert(valid_uuid("6F1C1C2E-ABCD-4000-8000-00000000000F"));
  cr_assert_not(valid_uuid(""));
  cr_assert_not(valid_uuid(NULL));
  cr_assert_not(valid_uuid("6f1c1c2e00004000800000000000000001"));
  cr_assert_not(valid_uuid("6f1c1c2e-0000-4000-8000-00000000000g"));
  cr_assert_not(valid_uuid("6f1c1c2e-0000-4000-8000-0000000000011"));
  cr_assert_not(valid_uuid("6f1c1c2e-0000-4000-8000_000000000001"));
  cr_assert_not(valid_uuid("{6f1c1c2e-0000-4000-8000-00000000001}"));
}

Test(validate, free_text) {
  cr_assert(valid_text("", 10));
  cr_assert(valid_text(NULL, 10));
  cr_assert(valid_text("Réunion — notes.md", 64));
  cr_assert_not(valid_text("tab\there", 64));
  cr_assert_not(valid_text("new\nline", 64));
  cr_assert_not(valid_text("bad \xfe", 64));
  cr_assert_not(valid_text("0123456789a", 10));
  cr_assert(valid_text("0123456789", 10));
}
