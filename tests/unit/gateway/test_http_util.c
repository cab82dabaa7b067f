/* test_http_util.c - JSON strings from untrusted bytes: valid UTF-8 passes
 * through, anything else becomes U+FFFD so replies always serialise; and the
 * wording of downstream failures. */
#include "http_util.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/error.h"

static void check(const char *in, size_t n, const char *want) {
  json_t *v = http_json_text(in, n);
  cr_assert_not_null(v);
  cr_assert_eq(json_string_length(v), strlen(want));
  cr_assert_eq(memcmp(json_string_value(v), want, strlen(want)), 0, "got %s",
               json_string_value(v));
  json_decref(v);
}

Test(http_util, valid_utf8_is_kept) {
  check("plain", 5, "plain");
  check("", 0, "");
  check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

Test(http_util, invalid_bytes_become_replacement_characters) {
  check("a\xff"
        "b",
        3,
        "a\xef\xbf\xbd"
        "b");
  check("\xc3", 1, "\xef\xbf\xbd");                 /* truncated sequence */
  check("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong '/' */
  check("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
  check("x\0y", 3, "x\xef\xbf\xbdy");                               /* NUL */
  check("\xf4\x90\x80\x80", 4,
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
}

Test(http_util, downstream_failures_name_the_service) {
  char m[256];
  http_downstream_msg(m, sizeof m, "retriever", Q_EUNAVAIL, "connection refused");
  cr_assert_str_eq(m, "retriever unavailable: connection refused");
  http_downstream_msg(m, sizeof m, "llm-gateway", Q_ETIMEDOUT, "");
  cr_assert_str_eq(m, "llm-gateway deadline exceeded");
  http_downstream_msg(m, sizeof m, "ingestion", Q_EINVAL, "empty document");
  cr_assert_str_eq(m, "ingestion: empty document");
  http_downstream_msg(m, sizeof m, "feedback", Q_EINTERNAL, NULL);
  cr_assert_str_eq(m, "feedback: internal error");
}

Test(http_util, json_routes_want_a_json_content_type) {
  const char *yes[] = {"application/json",
                       "Application/JSON",
                       "application/json; charset=utf-8",
                       "application/json;charset=UTF-8",
                       "application/json; charset=\"utf-8\"",
                       " application/json "};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    cr_assert(http_json_media(yes[i]), "%s", yes[i]);
  const char *no[] = {NULL,
                      "",
                      "text/plain",
                      "application/x-www-form-urlencoded",
                      "application/jsonx",
                      "application/json; charset=latin1",
                      "application/json; boundary=x",
                      "application/json;",
                      "application/json; charset=utf-8; q=1",
                      "application/json; charset=\"utf-8",
                      "multipart/form-data; boundary=application/json"};
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    cr_assert_not(http_json_media(no[i]), "%s", no[i] ? no[i] : "(null)");
}
