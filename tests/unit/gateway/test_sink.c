/* test_sink.c - the sinks on their own: the exact bytes of the SSE stream
 * for a scripted run, errors before and after the stream starts, a reader
 * that falls behind, and the JSON sink's reply equal to the SSE done. */
#include "sink.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"

static int wakes;
static void wake(void *ud) {
  wakes++;
}

static Quarry__V1__Passage mkpassage(const char *chunk, const char *doc,
                                     const char *title, const char *text, float score,
                                     int page) {
  Quarry__V1__Passage p = QUARRY__V1__PASSAGE__INIT;
  p.chunk_id = (char *)chunk;
  p.doc_id = (char *)doc;
  p.title = (char *)title;
  p.text = (char *)text;
  p.score = score;
  p.page = page;
  return p;
}

/* Everything queued in s, up to the end. */
static void drain(sink_t *s, q_buf_t *out, ssize_t *end) {
  char buf[7]; /* small reads: events come out in pieces */
  ssize_t n;
  while ((n = sink_sse_read(s, buf, sizeof buf)) > 0)
    q_buf_append(out, buf, (size_t)n);
  *end = n;
}

static sink_summary_t summary(const sink_citation_t *c, size_t nc) {
  static const char *const degraded[] = {"citations"};
  return (sink_summary_t){
      .query_id = "q-1",
      .answer = "A [1].",
      .answer_len = 6,
      .citations = c,
      .ncitations = nc,
      .timings_ms = {.auth = 0.1,
                     .embed = 1,
                     .retrieve = 2,
                     .rerank = 3,
                     .generate = 4,
                     .total = 10.0004},
      .degraded = degraded,
      .ndegraded = 1,
      .rerank_method = "features",
      .has_usage = true,
      .prompt_tokens = 120,
      .completion_tokens = 4,
      .cost = 0.25,
      .provider = "openai-0",
      .model = "gpt-test",
      .prompt_version = "answer.v2",
  };
}

Test(sink, sse_stream_is_framed_event_by_event) {
  wakes = 0;
  sink_t *s = sink_sse_new(1 << 20, wake, NULL);
  sink_reply_t rep;
  cr_assert_eq(sink_sse_begin(s, &rep), SINK_SSE_WAIT);
  Quarry__V1__Passage p1 = mkpassage("c1", "d1", "T1", "text one", 0.5f, 2);
  Quarry__V1__Passage *ps[] = {&p1};
  cr_assert_eq(s->retrieval(s, "q-1", ps, 1), 0);
  cr_assert_eq(sink_sse_begin(s, &rep), SINK_SSE_STREAM);
  cr_assert_eq(s->token(s, "A ", 2), 0);
  cr_assert_eq(s->token(s, "[1].\n\"x\"", 8), 0);
  sink_citation_t c[] = {{.n = 1, .passage = &p1}};
  cr_assert_eq(s->citation(s, &c[0]), 0);
  sink_summary_t sum = summary(c, 1);
  s->done(s, &sum);
  cr_assert_eq(wakes, 5, "a wake per event");

  q_buf_t out;
  q_buf_init(&out, 1 << 20);
  ssize_t end;
  drain(s, &out, &end);
  cr_assert_eq(end, SINK_SSE_END);
  const char *cit =
      "{\"n\":1,\"document_id\":\"d1\",\"title\":\"T1\",\"chunk_id\":\"c1\","
      "\"snippet\":\"text "
      "one\",\"snippet_start\":0,\"snippet_end\":8,\"document_start\":null,"
      "\"document_end\":null,\"chunk_start\":null,\"chunk_end\":null,\"score\":0.5,"
      "\"page\":2}";
  char want[2048];
  snprintf(
      want, sizeof want,
      "event: retrieval\ndata: {\"query_id\":\"q-1\",\"passages\":[%s]}\n\n"
      "event: token\ndata: {\"text\":\"A \"}\n\n"
      "event: token\ndata: {\"text\":\"[1].\\n\\\"x\\\"\"}\n\n"
      "event: citation\ndata: %s\n\n"
      "event: done\ndata: {\"query_id\":\"q-1\",\"answer\":\"A [1].\",\"citations\":[%s],"
      "\"timings_ms\":{\"auth\":0.1,\"embed\":1.0,\"retrieve\":2.0,\"rerank\":3.0,"
      "\"generate\":4.0,\"total\":10.0},\"cache_hit\":false,\"degraded\":[\"citations\"],"
      "\"rerank_method\":\"features\",\"generation\":{\"provider\":\"openai-0\","
      "\"model\":\"gpt-test\",\"fallback\":false,\"prompt_version\":\"answer.v2\","
      "\"prompt_tokens\":120,\"completion_tokens\":4,\"cost\":0.25}}"
      "\n\n",
      cit, cit, cit);
  cr_assert_str_eq(out.data, want);
  q_buf_cleanup(&out);
  s->free(s);
}

Test(sink, sse_error_before_the_stream_is_a_reply) {
  sink_t *s = sink_sse_new(1 << 20, wake, NULL);
  s->error(s, Q_ERESOURCE, "rate limit of 5 requests per second exceeded", 1);
  sink_reply_t rep;
  cr_assert_eq(sink_sse_begin(s, &rep), SINK_SSE_REPLY);
  cr_assert_null(rep.body);
  cr_assert_eq(rep.err, Q_ERESOURCE);
  cr_assert_eq(rep.retry_after_s, 1);
  cr_assert_str_eq(rep.message, "rate limit of 5 requests per second exceeded");
  char buf[16];
  cr_assert_eq(sink_sse_read(s, buf, sizeof buf), SINK_SSE_END);
  s->free(s);
}

Test(sink, sse_error_after_the_stream_is_an_event) {
  sink_t *s = sink_sse_new(1 << 20, wake, NULL);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  s->error(s, Q_EUNAVAIL, "llm-gateway unavailable: provider refused", 0);
  q_buf_t out;
  q_buf_init(&out, 1 << 20);
  ssize_t end;
  drain(s, &out, &end);
  cr_assert_eq(end, SINK_SSE_END);
  cr_assert_str_eq(out.data,
                   "event: retrieval\ndata: {\"query_id\":\"q-1\",\"passages\":[]}\n\n"
                   "event: error\ndata: {\"error\":{\"code\":\"unavailable\",\"message\":"
                   "\"llm-gateway unavailable: provider refused\"}}\n\n");
  q_buf_cleanup(&out);
  s->free(s);
}

Test(sink, sse_reader_too_far_behind_cuts_the_stream) {
  sink_t *s = sink_sse_new(200, wake, NULL);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  q_err_t rc = 0;
  for (int i = 0; i < 20 && !rc; i++)
    rc = s->token(s, "0123456789", 10);
  cr_assert_eq(rc, Q_ETOOBIG);
  s->done(s, &(sink_summary_t){.query_id = "q"});
  q_buf_t out;
  q_buf_init(&out, 1 << 20);
  ssize_t end;
  drain(s, &out, &end);
  cr_assert_eq(end, SINK_SSE_CUT, "the client must see a broken stream");
  cr_assert_leq(out.len, 200);
  cr_assert_null(strstr(out.data, "event: done"));
  /* Only whole events went out. */
  cr_assert_eq(strcmp(out.data + out.len - 2, "\n\n"), 0);
  q_buf_cleanup(&out);
  s->free(s);
}

Test(sink, json_reply_is_the_sse_done_event) {
  Quarry__V1__Passage p1 = mkpassage("c1", "d1", "T1", "text one", 0.5f, 2);
  sink_citation_t c[] = {{.n = 1, .passage = &p1}};
  sink_summary_t sum = summary(c, 1);

  sink_t *j = sink_json_new(wake, NULL);
  sink_reply_t rep;
  cr_assert_not(sink_json_take(j, &rep));
  cr_assert_eq(j->retrieval(j, "q-1", NULL, 0), 0);
  cr_assert_eq(j->token(j, "A [1].", 6), 0);
  j->done(j, &sum);
  cr_assert(sink_json_take(j, &rep));
  cr_assert_not_null(rep.body);
  char *body = json_dumps(rep.body, JSON_COMPACT | JSON_REAL_PRECISION(9));
  json_decref(rep.body);
  cr_assert_not(sink_json_take(j, &rep), "taken once");
  j->free(j);

  sink_t *s = sink_sse_new(1 << 20, wake, NULL);
  s->done(s, &sum);
  q_buf_t out;
  q_buf_init(&out, 1 << 20);
  ssize_t end;
  drain(s, &out, &end);
  char want[2048];
  snprintf(want, sizeof want, "event: done\ndata: %s\n\n", body);
  cr_assert_str_eq(out.data, want);
  q_buf_cleanup(&out);
  s->free(s);
  free(body);
}

Test(sink, json_error_keeps_code_message_and_retry_after) {
  sink_t *j = sink_json_new(wake, NULL);
  j->error(j, Q_ETIMEDOUT, "query deadline of 1500 ms exceeded before retrieval", 0);
  sink_reply_t rep;
  cr_assert(sink_json_take(j, &rep));
  cr_assert_null(rep.body);
  cr_assert_eq(rep.err, Q_ETIMEDOUT);
  cr_assert_str_eq(rep.message, "query deadline of 1500 ms exceeded before retrieval");
  j->free(j);
}

Test(sink, summary_names_who_answered_or_null) {
  sink_summary_t sum = summary(NULL, 0);
  sum.provider = "extractive";
  sum.model = "quarry-extractive";
  sum.prompt_version = "";
  sum.fallback = true;
  sum.has_usage = false;
  json_t *j = sink_summary_json(&sum);
  cr_assert_not_null(j);
  json_t *g = json_object_get(j, "generation");
  cr_assert(json_is_object(g));
  cr_assert_str_eq(json_string_value(json_object_get(g, "provider")), "extractive");
  cr_assert_str_eq(json_string_value(json_object_get(g, "model")), "quarry-extractive");
  cr_assert(json_is_true(json_object_get(g, "fallback")));
  cr_assert_str_eq(json_string_value(json_object_get(g, "prompt_version")), "");
  cr_assert(json_is_null(json_object_get(g, "prompt_tokens")), "no usage: null counts");
  cr_assert(json_is_null(json_object_get(g, "completion_tokens")));
  json_decref(j);

  sum.provider = sum.model = sum.prompt_version = NULL; /* nothing was generated */
  j = sink_summary_json(&sum);
  cr_assert_not_null(j);
  cr_assert(json_is_null(json_object_get(j, "generation")));
  json_decref(j);
}

/* A chunk whose text is its heading path, a blank line, then the
 * document's characters 100..130 ("é" is one character, two bytes). */
Test(sink, citation_offsets_map_into_the_document) {
  const char *text = "Guide > Café\n\nThe café opens at nine. It closes late.";
  Quarry__V1__Passage p = mkpassage("c1", "d1", "T", text, 1.0f, 0);
  p.start_offset = 100;
  p.end_offset = 139;
  p.text_offset = 14; /* "Guide > Café\n\n" */
  /* The snippet "It closes late." is bytes 40..55, characters 38..53. */
  sink_citation_t c = {.n = 1, .passage = &p, .snippet_start = 40, .snippet_end = 55};
  json_t *j = sink_citation_json(&c);
  cr_assert_not_null(j);
  cr_assert_str_eq(json_string_value(json_object_get(j, "snippet")), "It closes late.");
  cr_assert_eq(json_integer_value(json_object_get(j, "snippet_start")), 38);
  cr_assert_eq(json_integer_value(json_object_get(j, "snippet_end")), 53);
  cr_assert_eq(json_integer_value(json_object_get(j, "document_start")), 124);
  cr_assert_eq(json_integer_value(json_object_get(j, "document_end")), 139);
  cr_assert_eq(json_integer_value(json_object_get(j, "chunk_start")), 100);
  cr_assert_eq(json_integer_value(json_object_get(j, "chunk_end")), 139);
  json_decref(j);
  /* A snippet that starts in the heading maps its start to the chunk's. */
  c.snippet_start = 0;
  c.snippet_end = 20; /* "Guide > Café\n\nThe c" */
  j = sink_citation_json(&c);
  cr_assert_eq(json_integer_value(json_object_get(j, "document_start")), 100);
  cr_assert_eq(json_integer_value(json_object_get(j, "document_end")), 105);
  json_decref(j);
}
