/* test_validate.c - the syntax of a declared Content-Type (which types are
 * read: test_formats.c; tenant ids, UUIDs and free text:
 * tests/unit/common/test_validate.c). */
#include "validate.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/error.h"

static char media[128], charset[64], err[256];

static int ct(const char *s) {
  return parse_content_type(s, media, sizeof media, charset, sizeof charset, err,
                            sizeof err);
}

Test(validate, media_type_and_charset) {
  cr_assert_eq(ct("text/plain"), Q_OK);
  cr_assert_str_eq(media, "text/plain");
  cr_assert_str_eq(charset, "");
  cr_assert_eq(ct("Text/Markdown; charset=UTF-8"), Q_OK);
  cr_assert_str_eq(media, "text/markdown");
  cr_assert_str_eq(charset, "utf-8");
  cr_assert_eq(ct(" text/plain ; charset=\"ISO-8859-1\" ; format=flowed"), Q_OK);
  cr_assert_str_eq(media, "text/plain");
  cr_assert_str_eq(charset, "iso-8859-1");
  cr_assert_eq(
      ct("application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
      Q_OK);
  cr_assert_eq(ct("text/plain; flowed"), Q_OK, "a parameter without = is ignored");
}

Test(validate, no_type_is_not_an_error) {
  cr_assert_eq(ct(""), Q_OK);
  cr_assert_str_eq(media, "");
  cr_assert_eq(ct(NULL), Q_OK);
  cr_assert_str_eq(media, "");
  cr_assert_eq(ct("   "), Q_OK);
  cr_assert_str_eq(media, "");
}

Test(validate, malformed_types_are_refused) {
  const char *bad[] = {"text",
                       "/plain",
                       "text/",
                       "te xt/plain",
                       "text/pl\"ain",
                       "text/plain\n",
                       "text/plain; charset=",
                       "text/plain; charset=a b"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_eq(ct(bad[i]), Q_EINVAL, "%s", bad[i]);
  char big[400];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  memcpy(big, "text/plain;", 11);
  cr_assert_eq(ct(big), Q_EINVAL);
  cr_assert(strstr(err, "256"), "%s", err);
}
