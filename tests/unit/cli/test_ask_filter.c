/* test_ask_filter.c - `quarry ask`'s filter options composed into the JSON
 * of POST /v1/query's "filter": each shorthand's condition, several
 * joined with "and", and the only checks that are the client's own (JSON
 * syntax, KEY=VALUE). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ask_filter.h"

static const args_opt_t opts[] = {ASK_FILTER_OPTS, {NULL, 0, NULL, false, NULL}};

/* The filter the command line (NULL-terminated) gives, as compact JSON
 * with sorted keys ("" when none); *rc the builder's result, err its
 * message. Caller frees. */
static char *build(q_err_t *rc, char *err, size_t errlen, ...) {
  char *argv[32];
  int argc = 0;
  va_list ap;
  va_start(ap, errlen);
  for (char *s; (s = va_arg(ap, char *)) != NULL;)
    argv[argc++] = s;
  va_end(ap);
  const args_opt_t *const tables[] = {opts, NULL};
  args_t a;
  char perr[256];
  cr_assert_eq(args_parse(tables, argc, argv, &a, perr, sizeof perr), 0, "%s", perr);
  json_t *f = NULL;
  *rc = ask_filter_build(&a, &f, err, errlen);
  args_free(&a);
  char *s = f ? json_dumps(f, JSON_COMPACT | JSON_SORT_KEYS) : strdup("");
  json_decref(f);
  return s;
}

#define EXPECT(want, ...)                                                                \
  do {                                                                                   \
    q_err_t rc_;                                                                         \
    char err_[256] = "";                                                                 \
    char *got_ = build(&rc_, err_, sizeof err_, __VA_ARGS__, NULL);                      \
    cr_assert_eq(rc_, 0, "%s", err_);                                                    \
    cr_assert_str_eq(got_, want);                                                        \
    free(got_);                                                                          \
  } while (0)

Test(ask_filter, no_option_is_no_filter) {
  q_err_t rc;
  char err[256];
  char *s = build(&rc, err, sizeof err, NULL);
  cr_assert_eq(rc, 0);
  cr_assert_str_eq(s, "");
  free(s);
}

Test(ask_filter, each_shorthand_alone_is_its_condition) {
  EXPECT("{\"eq\":\"finance\",\"field\":\"meta.team\"}", "--where", "meta.team=finance");
  EXPECT("{\"eq\":\"a=b\",\"field\":\"title\"}", "--where=title=a=b");
  EXPECT("{\"eq\":\"\",\"field\":\"meta.k\"}", "--where", "meta.k=");
  EXPECT("{\"eq\":\"application/pdf\",\"field\":\"content_type\"}", "--type",
         "application/pdf");
  EXPECT("{\"field\":\"content_type\",\"in\":[\"text/plain\",\"text/markdown\"]}",
         "--type", "text/plain", "--type", "text/markdown");
  EXPECT("{\"field\":\"created_at\",\"gte\":\"2024-01-01\"}", "--after", "2024-01-01");
  EXPECT(
      "{\"field\":\"created_at\",\"gte\":\"2024-01-01\",\"lt\":\"2025-01-01T00:00:00Z\"}",
      "--before", "2025-01-01T00:00:00Z", "--after", "2024-01-01");
  /* --filter is sent as given, not checked against the language */
  EXPECT("{\"field\":\"meta.x\",\"like\":3}", "--filter",
         "{\"field\": \"meta.x\", \"like\": 3}");
}

Test(ask_filter, several_are_joined_with_and_in_a_fixed_order) {
  EXPECT("{\"and\":[{\"not\":{\"eq\":\"a\",\"field\":\"title\"}},"
         "{\"eq\":\"finance\",\"field\":\"meta.team\"},"
         "{\"eq\":\"2\",\"field\":\"meta.tier\"},"
         "{\"eq\":\"text/plain\",\"field\":\"content_type\"},"
         "{\"field\":\"created_at\",\"gte\":\"2024-01-01\"}]}",
         "--after", "2024-01-01", "--type", "text/plain", "--where", "meta.team=finance",
         "--filter", "{\"not\":{\"field\":\"title\",\"eq\":\"a\"}}", "--where",
         "meta.tier=2");
}

Test(ask_filter, what_the_client_refuses_names_the_option) {
  struct {
    const char *opt, *val, *msg;
  } cases[] = {
      {"--filter", "{\"field\":", "--filter is not JSON"},
      {"--filter", "{\"a\":1,\"a\":2}", "--filter is not JSON"},
      {"--where", "team", "--where wants KEY=VALUE"},
      {"--where", "=finance", "--where wants KEY=VALUE"},
      {"--where", "meta.team=caf\xe9", "--where \"meta.team=caf"},
      {"--type", "\xff", "--type"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    q_err_t rc;
    char err[256] = "";
    char *s = build(&rc, err, sizeof err, cases[i].opt, cases[i].val, NULL);
    cr_assert_eq(rc, Q_EINVAL, "%s %s", cases[i].opt, cases[i].val);
    cr_assert(strncmp(err, cases[i].msg, strlen(cases[i].msg)) == 0, "%s", err);
    cr_assert_str_eq(s, "");
    free(s);
  }
}
