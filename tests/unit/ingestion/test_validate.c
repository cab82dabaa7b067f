/* test_validate.c - content type checks of the ingestion service (tenant
 * ids, UUIDs and free text: tests/unit/common/test_validate.c). */
#include "validate.h"

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
