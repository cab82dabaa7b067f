/* test_answer.c - answers assembled from canned event streams (the shapes
 * the gateway may send) and from JSON replies, and how they are printed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "sse.h"

typedef struct tokens {
  char text[1024];
  int calls;
} tokens_t;

static void on_token(void *ud, const char *s, size_t n) {
  tokens_t *t = ud;
  strncat(t->text, s, n < sizeof t->text - strlen(t->text) - 1 ? n : 0);
  t->calls++;
}

static void feed_all(answer_t *a, const char *stream) {
  sse_parser_t p;
  sse_parser_init(&p, 1 << 16, answer_on_event, a);
  cr_assert_eq(sse_feed(&p, stream, strlen(stream)), 0);
  sse_finish(&p);
  sse_parser_cleanup(&p);
}

Test(answer, assembles_tokens_citations_and_done) {
  tokens_t t = {0};
  answer_t a;
  answer_init(&a, on_token, &t);
  feed_all(&a, "event: retrieval\ndata: {\"passages\":[{\"chunk_id\":\"c\"}]}\n\n"
               "event: token\ndata: {\"text\":\"The bulb is \"}\n\n"
               "event: token\ndata: \"QX-4471 \"\n\n"
               "event: token\ndata: {\"delta\":\"[1].\"}\n\n"
               "event: citation\ndata: {\"n\":1,\"title\":\"Lighthouse\",\"page\":2,"
               "\"snippet\":\"The lamp\\nuses QX-4471\"}\n\n"
               "event: something-new\ndata: {}\n\n"
               "event: done\ndata: {\"query_id\":\"q-1\",\"degraded\":[\"rerank\"]}\n\n");
  cr_assert(a.got_done);
  cr_assert_not(a.got_error);
  cr_assert_str_eq(a.text.data, "The bulb is QX-4471 [1].");
  cr_assert_str_eq(t.text, "The bulb is QX-4471 [1].",
                   "every piece went to the callback");
  cr_assert_eq(t.calls, 3);
  cr_assert_eq(json_array_size(a.citations), 1);

  json_t *doc = answer_to_json(&a);
  cr_assert_str_eq(json_string_value(json_object_get(doc, "answer")),
                   "The bulb is QX-4471 [1].");
  cr_assert_str_eq(json_string_value(json_object_get(doc, "query_id")), "q-1");
  cr_assert_eq(json_array_size(json_object_get(doc, "citations")), 1);
  json_decref(doc);
  answer_cleanup(&a);
}

Test(answer, done_may_carry_the_citations_and_answer) {
  tokens_t t = {0};
  answer_t a;
  answer_init(&a, on_token, &t);
  feed_all(&a, "event: done\ndata: {\"answer\":\"All of it [1]\",\"citations\":"
               "[{\"n\":1,\"title\":\"T\"}]}\n\n");
  cr_assert_str_eq(a.text.data, "All of it [1]");
  cr_assert_str_eq(t.text, "All of it [1]", "no tokens came: done's answer is shown");
  cr_assert_eq(json_array_size(a.citations), 1);
  answer_cleanup(&a);
}

Test(answer, error_event_in_either_shape) {
  answer_t a;
  answer_init(&a, NULL, NULL);
  feed_all(&a, "event: token\ndata: {\"text\":\"partial\"}\n\n"
               "event: error\ndata: {\"error\":{\"code\":\"unavailable\","
               "\"message\":\"llm-gateway unavailable\"}}\n\n");
  cr_assert(a.got_error);
  cr_assert_str_eq(a.error_code, "unavailable");
  cr_assert_str_eq(a.error_message, "llm-gateway unavailable");
  answer_cleanup(&a);

  answer_init(&a, NULL, NULL);
  feed_all(
      &a,
      "event: error\ndata: {\"code\":\"deadline_exceeded\",\"message\":\"late\"}\n\n");
  cr_assert_str_eq(a.error_code, "deadline_exceeded");
  cr_assert_str_eq(a.error_message, "late");
  answer_cleanup(&a);

  answer_init(&a, NULL, NULL);
  feed_all(&a, "event: error\ndata: something broke\n\n");
  cr_assert(a.got_error);
  cr_assert_str_eq(a.error_message, "something broke");
  answer_cleanup(&a);
}

Test(answer, takes_a_json_reply_without_calling_back) {
  tokens_t t = {0};
  answer_t a;
  answer_init(&a, on_token, &t);
  json_t *reply = json_loads("{\"query_id\":\"q\",\"answer\":\"Yes [1]\",\"citations\":"
                             "[{\"n\":1,\"title\":\"Doc\",\"page\":0,\"snippet\":\"s\"}],"
                             "\"degraded\":[]}",
                             0, NULL);
  cr_assert_eq(answer_from_json(&a, reply), 0);
  cr_assert_str_eq(a.text.data, "Yes [1]");
  cr_assert_eq(t.calls, 0, "the caller prints a JSON reply itself");
  cr_assert(a.got_done);
  json_decref(reply);

  json_t *bad = json_loads("{\"error\":{}}", 0, NULL);
  answer_t b;
  answer_init(&b, NULL, NULL);
  cr_assert_eq(answer_from_json(&b, bad), Q_EINVAL);
  json_decref(bad);
  answer_cleanup(&b);
  answer_cleanup(&a);
}

static char *printed(void (*fn)(FILE *, const json_t *), const char *json) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  json_t *j = json_loads(json, 0, NULL);
  fn(f, j);
  fclose(f);
  json_decref(j);
  return buf;
}

Test(answer, prints_numbered_sources_with_page_and_snippet) {
  char *s = printed(answer_print_sources,
                    "[{\"n\":1,\"title\":\"Travel policy\",\"page\":0,"
                    "\"snippet\":\"Hotels\\n\\nThe  nightly limit\\tis 240 GBP\"},"
                    "{\"n\":2,\"title\":\"Handbook\",\"page\":12,\"snippet\":\"\"},"
                    "{\"n\":3,\"title\":\"\",\"snippet\":\"x\"}]");
  cr_assert_str_eq(s, "\nSources:\n"
                      "[1] Travel policy\n"
                      "    Hotels The nightly limit is 240 GBP\n"
                      "[2] Handbook, page 12\n"
                      "[3] (untitled)\n"
                      "    x\n");
  free(s);
  s = printed(answer_print_sources, "[]");
  cr_assert_str_eq(s, "", "no citations, no section");
  free(s);
}

Test(answer, explains_degraded_stages) {
  char *s = printed(answer_print_degraded, "{\"degraded\":[\"embed\",\"brand-new\"]}");
  cr_assert(strstr(s, "degraded (embed): no embeddings"), "%s", s);
  cr_assert(strstr(s, "degraded (brand-new): a stage fell back"), "%s", s);
  free(s);
}
