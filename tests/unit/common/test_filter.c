/* test_filter.c - the retrieval filter language (quarry/filter.h): what it
 * matches, and hostile filters (deep nesting, huge lists, wrong types,
 * unknown operators) refused with a message naming the problem and where;
 * user metadata checks; RFC 3339 dates. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/filter.h"
#include "quarry/limits.h"

static q_filter_t *compile_ok(const char *json) {
  char err[512] = "";
  q_filter_t *f = NULL;
  q_err_t rc = q_filter_parse(json, strlen(json), &f, err, sizeof err);
  cr_assert_eq(rc, 0, "%s: %s", json, err);
  cr_assert_not_null(f, "%s", json);
  return f;
}

/* Asserts that json is refused and that the message contains want. */
static void refused(const char *json, const char *want) {
  char err[512] = "";
  q_filter_t *f = NULL;
  q_err_t rc = q_filter_parse(json, strlen(json), &f, err, sizeof err);
  cr_assert_eq(rc, Q_EINVAL, "%.200s was accepted", json);
  cr_assert_null(f);
  cr_assert(strstr(err, want), "%.200s: message \"%s\" lacks \"%s\"", json, err, want);
}

static json_t *meta_of(const char *json) {
  json_t *m = json_loads(json, 0, NULL);
  cr_assert_not_null(m, "%s", json);
  return m;
}

static bool matches(const char *filter, const q_filter_doc_t *d) {
  q_filter_t *f = compile_ok(filter);
  bool r = q_filter_match(f, d);
  q_filter_free(f);
  return r;
}

Test(filter, conditions_match_document_fields) {
  json_t *m = meta_of("{\"year\": 2021, \"team\": \"legal\", \"tags\": [\"a\", \"b\"],"
                      " \"draft\": false, \"due\": \"2024-05-01T00:00:00Z\"}");
  q_filter_doc_t d = {.doc_id = "d1",
                      .title = "Annual report",
                      .content_type = "application/pdf",
                      .created_at = 1700000000, /* 2023-11-14T22:13:20Z */
                      .meta = m};
  cr_assert(matches("{\"field\":\"content_type\",\"eq\":\"application/pdf\"}", &d));
  cr_assert_not(matches("{\"field\":\"content_type\",\"eq\":\"text/html\"}", &d));
  cr_assert(matches("{\"field\":\"doc_id\",\"in\":[\"x\",\"d1\"]}", &d));
  cr_assert(matches("{\"field\":\"title\",\"eq\":\"Annual report\"}", &d));
  cr_assert(matches("{\"field\":\"meta.year\",\"gte\":2020}", &d));
  cr_assert_not(matches("{\"field\":\"meta.year\",\"gt\":2021}", &d));
  cr_assert(matches("{\"field\":\"meta.year\",\"gt\":2020,\"lte\":2021}", &d));
  cr_assert(matches("{\"field\":\"meta.year\",\"eq\":2021}", &d));
  cr_assert(matches("{\"field\":\"meta.team\",\"in\":[\"legal\",\"hr\"]}", &d));
  cr_assert(matches("{\"field\":\"meta.tags\",\"eq\":\"b\"}", &d));
  cr_assert_not(matches("{\"field\":\"meta.tags\",\"in\":[\"c\"]}", &d));
  cr_assert(matches("{\"field\":\"meta.draft\",\"eq\":false}", &d));
  cr_assert_not(matches("{\"field\":\"meta.draft\",\"eq\":\"false\"}", &d));
  /* dates: created_at and a date-valued metadata string */
  cr_assert(matches("{\"field\":\"created_at\",\"gte\":\"2023-11-01\","
                    "\"lt\":\"2023-12-01T00:00:00+01:00\"}",
                    &d));
  cr_assert_not(
      matches("{\"field\":\"created_at\",\"lt\":\"2023-11-14T22:13:20Z\"}", &d));
  cr_assert(matches("{\"field\":\"created_at\",\"lte\":\"2023-11-14T22:13:20Z\"}", &d));
  cr_assert(matches("{\"field\":\"meta.due\",\"gt\":\"2024-04-30T23:59:59Z\"}", &d));
  cr_assert_not(matches("{\"field\":\"meta.team\",\"gt\":\"2024-04-30\"}", &d));
  /* absent fields: a condition is false, its negation true */
  cr_assert_not(matches("{\"field\":\"meta.nope\",\"eq\":\"x\"}", &d));
  cr_assert(matches("{\"not\":{\"field\":\"meta.nope\",\"eq\":\"x\"}}", &d));
  q_filter_doc_t bare = {.doc_id = "d2"};
  cr_assert_not(matches("{\"field\":\"created_at\",\"gte\":0}", &bare));
  cr_assert_not(matches("{\"field\":\"content_type\",\"eq\":\"\"}", &bare));
  /* the example of the brief */
  const char *ex = "{\"and\":[{\"field\":\"content_type\",\"eq\":\"application/pdf\"},"
                   "{\"field\":\"meta.year\",\"gte\":2020},"
                   "{\"not\":{\"field\":\"meta.team\",\"in\":[\"legal\",\"hr\"]}}]}";
  cr_assert_not(matches(ex, &d));
  cr_assert(matches("{\"or\":[{\"field\":\"meta.team\",\"eq\":\"hr\"},"
                    "{\"field\":\"meta.year\",\"eq\":2021}]}",
                    &d));
  cr_assert(q_filter_match(NULL, &d));
  json_decref(m);
}

Test(filter, author_and_language_are_fields) {
  q_filter_doc_t d = {.doc_id = "d1", .author = "Ada Byron", .language = "en-US"};
  cr_assert(matches("{\"field\":\"author\",\"eq\":\"Ada Byron\"}", &d));
  cr_assert_not(matches("{\"field\":\"author\",\"eq\":\"ada byron\"}", &d));
  cr_assert(matches("{\"field\":\"author\",\"in\":[\"x\",\"Ada Byron\"]}", &d));
  /* BCP 47 tags compare without regard to case; a tag matches only itself */
  cr_assert(matches("{\"field\":\"language\",\"eq\":\"en-us\"}", &d));
  cr_assert(matches("{\"field\":\"language\",\"in\":[\"de\",\"EN-US\"]}", &d));
  cr_assert_not(matches("{\"field\":\"language\",\"eq\":\"en\"}", &d));
  /* absent (NULL or ""): no condition matches, not of one does */
  q_filter_doc_t none = {.doc_id = "d2", .author = "", .language = NULL};
  cr_assert_not(matches("{\"field\":\"author\",\"eq\":\"\"}", &none));
  cr_assert_not(matches("{\"field\":\"language\",\"in\":[\"\",\"en\"]}", &none));
  cr_assert(matches("{\"not\":{\"field\":\"language\",\"eq\":\"en\"}}", &none));
  /* strings only, and no ranges */
  char err[256] = "";
  q_filter_t *f = NULL;
  const char *bad = "{\"field\":\"language\",\"gte\":\"a\"}";
  cr_assert_eq(q_filter_parse(bad, strlen(bad), &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "field \"language\" takes eq and in"), "%s", err);
  bad = "{\"field\":\"author\",\"eq\":3}";
  cr_assert_eq(q_filter_parse(bad, strlen(bad), &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "takes strings"), "%s", err);
  bad = "{\"field\":\"owner\",\"eq\":\"x\"}";
  cr_assert_eq(q_filter_parse(bad, strlen(bad), &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "author, language"), "%s", err);
}

Test(filter, empty_and_null_are_no_filter) {
  char err[128];
  q_filter_t *f = (q_filter_t *)1;
  cr_assert_eq(q_filter_parse("", 0, &f, err, sizeof err), 0);
  cr_assert_null(f);
  f = (q_filter_t *)1;
  cr_assert_eq(q_filter_parse("null", 4, &f, err, sizeof err), 0);
  cr_assert_null(f);
}

Test(filter, malformed_filters_name_the_problem) {
  refused("{", "not JSON");
  refused("[1]", "filter: must be an object");
  refused("{}", "empty object");
  refused("{\"field\":\"content_type\",\"like\":\"x\"}", "unknown operator \"like\"");
  refused("{\"xor\":[]}", "unknown operator \"xor\"");
  refused("{\"field\":\"owner\",\"eq\":\"x\"}", "unknown field \"owner\"");
  refused("{\"field\":\"meta.\",\"eq\":\"x\"}", "unknown field");
  refused("{\"field\":\"meta.a b\",\"eq\":\"x\"}", "unknown field");
  refused("{\"field\":7,\"eq\":\"x\"}", "\"field\" must be a string");
  refused("{\"field\":\"content_type\"}", "needs an operator");
  refused("{\"field\":\"content_type\",\"eq\":5}", "takes strings");
  refused("{\"field\":\"title\",\"gt\":\"a\"}", "takes eq and in, not \"gt\"");
  refused("{\"field\":\"created_at\",\"gte\":\"yesterday\"}",
          "\"gte\" must be a number or an RFC 3339 date");
  refused("{\"field\":\"created_at\",\"gte\":\"2024-02-30\"}", "RFC 3339");
  refused("{\"field\":\"meta.x\",\"lt\":true}", "\"lt\" must be a number");
  refused("{\"field\":\"meta.x\",\"eq\":{\"a\":1}}", "\"eq\" takes a string");
  refused("{\"field\":\"meta.x\",\"eq\":null}", "\"eq\" takes");
  refused("{\"field\":\"meta.x\",\"in\":[true]}", "\"in\" takes strings and numbers");
  refused("{\"field\":\"meta.x\",\"in\":\"a\"}", "\"in\" must be a non-empty list");
  refused("{\"field\":\"meta.x\",\"in\":[]}", "\"in\" must be a non-empty list");
  refused("{\"field\":\"meta.x\",\"gt\":1,\"gte\":2}", "\"gte\" together with \"gt\"");
  refused("{\"field\":\"meta.x\",\"eq\":1,\"gt\":0}", "stand alone");
  refused("{\"and\":[]}", "\"and\" must be a non-empty list");
  refused("{\"or\":{}}", "\"or\" must be a non-empty list");
  refused("{\"and\":[{\"field\":\"doc_id\",\"eq\":\"a\"}],\"or\":[]}", "stand alone");
  /* the place is named */
  refused("{\"and\":[{\"field\":\"doc_id\",\"eq\":\"a\"},{\"not\":{\"field\":\"x\","
          "\"eq\":1}}]}",
          "filter.and[1].not: unknown field \"x\"");
  refused("{\"or\":[{\"field\":\"doc_id\",\"eq\":\"a\"},\"doc_id\"]}",
          "filter.or[1]: must be an object");
  /* duplicate keys would make one of them silently win */
  refused("{\"field\":\"doc_id\",\"eq\":\"a\",\"eq\":\"b\"}", "not JSON");
}

Test(filter, hostile_sizes_are_bounded) {
  char err[512];
  q_filter_t *f = NULL;
  q_buf_t b;
  /* nesting one past the limit, and far past it */
  for (int depth = Q_LIMIT_FILTER_DEPTH; depth <= Q_LIMIT_FILTER_DEPTH + 1; depth++) {
    q_buf_init(&b, 1 << 20);
    for (int i = 1; i < depth; i++)
      q_buf_puts(&b, "{\"not\":");
    q_buf_puts(&b, "{\"field\":\"doc_id\",\"eq\":\"a\"}");
    for (int i = 1; i < depth; i++)
      q_buf_puts(&b, "}");
    q_err_t rc = q_filter_parse(b.data, b.len, &f, err, sizeof err);
    if (depth <= Q_LIMIT_FILTER_DEPTH) {
      cr_assert_eq(rc, 0, "depth %d: %s", depth, err);
      q_filter_free(f);
    } else {
      cr_assert_eq(rc, Q_EINVAL, "depth %d accepted", depth);
      cr_assert(strstr(err, "nested deeper than"), "%s", err);
    }
    q_buf_cleanup(&b);
  }
  q_buf_init(&b, 1 << 20);
  for (int i = 0; i < 5000; i++)
    q_buf_puts(&b, "{\"and\":[");
  q_buf_puts(&b, "{\"field\":\"doc_id\",\"eq\":\"a\"}");
  for (int i = 0; i < 5000; i++)
    q_buf_puts(&b, "]}");
  cr_assert_eq(q_filter_parse(b.data, b.len, &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "bytes of JSON; at most"), "%s", err);
  q_buf_cleanup(&b);
  /* a huge "in" list */
  q_buf_init(&b, 1 << 20);
  q_buf_puts(&b, "{\"field\":\"meta.k\",\"in\":[");
  for (int i = 0; i <= Q_LIMIT_FILTER_VALUES; i++)
    q_buf_printf(&b, "%s%d", i ? "," : "", i);
  q_buf_puts(&b, "]}");
  cr_assert_eq(q_filter_parse(b.data, b.len, &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "\"in\" has 257 values; at most 256"), "%s", err);
  q_buf_cleanup(&b);
  /* too many conditions, each small */
  q_buf_init(&b, 1 << 20);
  q_buf_puts(&b, "{\"or\":[");
  for (int i = 0; i < Q_LIMIT_FILTER_CLAUSES; i++)
    q_buf_printf(&b, "%s{\"field\":\"meta.k\",\"eq\":%d}", i ? "," : "", i);
  q_buf_puts(&b, "]}");
  cr_assert_eq(q_filter_parse(b.data, b.len, &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "more than 64 conditions"), "%s", err);
  q_buf_cleanup(&b);
  /* a long string operand */
  q_buf_init(&b, 1 << 20);
  q_buf_puts(&b, "{\"field\":\"title\",\"eq\":\"");
  for (int i = 0; i <= Q_LIMIT_METADATA_VALUE_BYTES; i++)
    q_buf_puts(&b, "x");
  q_buf_puts(&b, "\"}");
  cr_assert_eq(q_filter_parse(b.data, b.len, &f, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "longer than 1024 bytes"), "%s", err);
  q_buf_cleanup(&b);
}

Test(filter, metadata_checks) {
  char err[256];
  json_t *m = NULL;
  const char *ok = "{\"year\":2020,\"team\":\"legal\",\"tags\":[\"a\"],\"draft\":true}";
  cr_assert_eq(q_meta_parse(ok, strlen(ok), &m, err, sizeof err), 0, "%s", err);
  cr_assert(json_is_object(m));
  json_decref(m);
  struct {
    const char *json, *want;
  } bad[] = {
      {"[1]", "must be a JSON object"},
      {"{\"a\":{\"b\":1}}",
       "metadata \"a\": values are strings, numbers, booleans or lists"},
      {"{\"a\":null}", "not null"},
      {"{\"a\":[1]}", "metadata \"a\": item 0 of the list is not a string"},
      {"{\"a b\":1}", "metadata key \"a b\""},
      {"{\"\":1}", "metadata key \"\""},
      {"not json", "not JSON"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    m = NULL;
    cr_assert_eq(q_meta_parse(bad[i].json, strlen(bad[i].json), &m, err, sizeof err),
                 Q_EINVAL, "%s accepted", bad[i].json);
    cr_assert_null(m);
    cr_assert(strstr(err, bad[i].want), "%s: \"%s\" lacks \"%s\"", bad[i].json, err,
              bad[i].want);
  }
  json_t *big = json_object();
  for (int i = 0; i <= Q_LIMIT_METADATA_KEYS; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    json_object_set_new(big, k, json_integer(i));
  }
  cr_assert_eq(q_meta_check(big, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "65 keys; at most 64"), "%s", err);
  json_decref(big);
  big = json_array();
  for (int i = 0; i <= Q_LIMIT_METADATA_LIST_ITEMS; i++)
    json_array_append_new(big, json_string("x"));
  json_t *o = json_pack("{s:o}", "tags", big);
  cr_assert_eq(q_meta_check(o, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "the list has 65 items"), "%s", err);
  json_decref(o);
  /* within every per-value bound, over the total */
  o = json_object();
  char val[1001];
  memset(val, 'v', 1000);
  val[1000] = '\0';
  for (int i = 0; i < 9; i++) {
    char k[16];
    snprintf(k, sizeof k, "k%d", i);
    json_object_set_new(o, k, json_string(val));
  }
  cr_assert_eq(q_meta_check(o, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "bytes as JSON; at most 8192"), "%s", err);
  json_decref(o);
}

Test(filter, rfc3339_dates) {
  int64_t t;
  cr_assert(q_rfc3339_parse("1970-01-01T00:00:00Z", &t));
  cr_assert_eq(t, 0);
  cr_assert(q_rfc3339_parse("2023-11-14T22:13:20Z", &t));
  cr_assert_eq(t, 1700000000);
  cr_assert(q_rfc3339_parse("2023-11-14T23:13:20.123+01:00", &t));
  cr_assert_eq(t, 1700000000);
  cr_assert(q_rfc3339_parse("2023-11-14", &t));
  cr_assert_eq(t, 1699920000);
  const char *bad[] = {
      "2023-11-14T22:13Z",        "2023-13-01", "2023-02-29", "2023-11-14T22:13:20",
      "2023-11-14T22:13:20Zjunk", "20231114",   "",           "2023-11-14T24:00:00Z"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_not(q_rfc3339_parse(bad[i], &t), "%s accepted", bad[i]);
}
