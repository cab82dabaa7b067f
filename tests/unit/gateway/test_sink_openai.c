/* test_sink_openai.c - the OpenAI sink on its own: the exact framing of a
 * streamed chat (role chunk, content chunks, final chunk with citations,
 * [DONE]), the chat.completion object, errors before and after the stream
 * starts in OpenAI's error shape, and the word counts behind usage. */
#include "sink.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"

static int wakes;
static void wake(void *ud) {
  wakes++;
}

static Quarry__V1__Passage mkpassage(void) {
  Quarry__V1__Passage p = QUARRY__V1__PASSAGE__INIT;
  p.chunk_id = "d1:1:0";
  p.doc_id = "d1";
  p.title = "Guide";
  p.text = "Rotate keys often.";
  p.score = 0.5f;
  p.page = 3;
  return p;
}

static sink_summary_t summary(const sink_citation_t *c, size_t nc, const char *degraded) {
  static const char *d[1];
  d[0] = degraded;
  return (sink_summary_t){
      .query_id = "q-1",
      .answer = "Rotate them [1].",
      .answer_len = 16,
      .citations = c,
      .ncitations = nc,
      .timings_ms = {.total = 10},
      .degraded = d,
      .ndegraded = degraded ? 1 : 0,
  };
}

static sink_t *mk(bool stream) {
  sink_openai_opts_t o = {.model = "quarry-rag",
                          .query = "rotate keys",
                          .created = 1700000000,
                          .prompt_tokens = 7,
                          .stream = stream,
                          .max_bytes = 1 << 20};
  return sink_openai_new(&o, wake, NULL);
}

static char *drain(sink_t *s, ssize_t *end) {
  q_buf_t out;
  q_buf_init(&out, 1 << 20);
  char buf[5];
  ssize_t n;
  while ((n = sink_sse_read(sink_openai_carrier(s), buf, sizeof buf)) > 0)
    q_buf_append(&out, buf, (size_t)n);
  *end = n;
  char *r = strdup(out.data ? out.data : "");
  q_buf_cleanup(&out);
  return r;
}

/* The JSON of each "data: " frame, in order; "[DONE]" as a string. */
static size_t frames(char *text, json_t **out, size_t max) {
  size_t n = 0;
  for (char *p = text; *p && n < max;) {
    cr_assert(strncmp(p, "data: ", 6) == 0, "frame starts with data: at %s", p);
    char *end = strstr(p, "\n\n");
    cr_assert(end, "frame ends with a blank line");
    *end = '\0';
    const char *payload = p + 6;
    out[n++] = strcmp(payload, "[DONE]") == 0 ? json_string("[DONE]")
                                              : json_loads(payload, 0, NULL);
    cr_assert(out[n - 1], "frame is JSON: %s", payload);
    p = end + 2;
  }
  return n;
}

Test(sink_openai, stream_is_role_then_content_then_final_chunk_then_done) {
  wakes = 0;
  sink_t *s = mk(true);
  sink_t *carrier = sink_openai_carrier(s);
  sink_reply_t rep;
  cr_assert_eq(sink_sse_begin(carrier, &rep), SINK_SSE_WAIT);
  Quarry__V1__Passage p = mkpassage();
  Quarry__V1__Passage *ps[] = {&p};
  cr_assert_eq(s->retrieval(s, "q-1", ps, 1), 0);
  cr_assert_eq(sink_sse_begin(carrier, &rep), SINK_SSE_STREAM);
  cr_assert_eq(s->token(s, "Rotate them", 11), 0);
  cr_assert_eq(s->token(s, " [1].", 5), 0);
  sink_citation_t c[] = {{.n = 1, .passage = &p}};
  cr_assert_eq(s->citation(s, &c[0]), 0);
  sink_summary_t sum = summary(c, 1, NULL);
  s->done(s, &sum);

  ssize_t end;
  char *text = drain(s, &end);
  cr_assert_eq(end, SINK_SSE_END);
  cr_assert(strstr(text, "event:") == NULL, "no named events: OpenAI framing only");
  size_t tl = strlen(text);
  cr_assert(tl > 14 && strcmp(text + tl - 14, "data: [DONE]\n\n") == 0,
            "ends with [DONE]");
  json_t *f[8];
  size_t n = frames(text, f, 8);
  cr_assert_eq(n, 5, "role, 2 contents, final, [DONE]: got %zu", n);

  for (size_t i = 0; i < 4; i++) {
    cr_assert_str_eq(json_string_value(json_object_get(f[i], "id")), "chatcmpl-q-1");
    cr_assert_str_eq(json_string_value(json_object_get(f[i], "object")),
                     "chat.completion.chunk");
    cr_assert_str_eq(json_string_value(json_object_get(f[i], "model")), "quarry-rag");
    cr_assert_eq(json_integer_value(json_object_get(f[i], "created")), 1700000000);
  }
  json_t *d0 =
      json_object_get(json_array_get(json_object_get(f[0], "choices"), 0), "delta");
  cr_assert_str_eq(json_string_value(json_object_get(d0, "role")), "assistant");
  json_t *c1 = json_array_get(json_object_get(f[1], "choices"), 0);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(c1, "delta"), "content")),
      "Rotate them");
  cr_assert(json_is_null(json_object_get(c1, "finish_reason")));
  json_t *c2 = json_array_get(json_object_get(f[2], "choices"), 0);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(c2, "delta"), "content")),
      " [1].");

  json_t *last = json_array_get(json_object_get(f[3], "choices"), 0);
  cr_assert_eq(json_object_size(json_object_get(last, "delta")), 0, "empty delta");
  cr_assert_str_eq(json_string_value(json_object_get(last, "finish_reason")), "stop");
  json_t *cits = json_object_get(f[3], "citations");
  cr_assert_eq(json_array_size(cits), 1);
  json_t *c0 = json_array_get(cits, 0);
  cr_assert_eq(json_integer_value(json_object_get(c0, "n")), 1);
  cr_assert_str_eq(json_string_value(json_object_get(c0, "document_id")), "d1");
  cr_assert_str_eq(json_string_value(json_object_get(c0, "chunk_id")), "d1:1:0");
  cr_assert_str_eq(json_string_value(json_object_get(c0, "title")), "Guide");
  cr_assert_eq(json_integer_value(json_object_get(c0, "page")), 3);
  cr_assert_str_eq(json_string_value(json_object_get(c0, "snippet")),
                   "Rotate keys often.");
  json_t *usage = json_object_get(f[3], "usage");
  cr_assert_eq(json_integer_value(json_object_get(usage, "prompt_tokens")), 7);
  cr_assert_eq(json_integer_value(json_object_get(usage, "completion_tokens")), 3);
  cr_assert_eq(json_integer_value(json_object_get(usage, "total_tokens")), 10);
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(f[3], "quarry"), "query_id")),
      "q-1");
  cr_assert_str_eq(
      json_string_value(json_object_get(json_object_get(f[3], "quarry"), "query")),
      "rotate keys");
  cr_assert_str_eq(json_string_value(f[4]), "[DONE]");
  for (size_t i = 0; i < n; i++)
    json_decref(f[i]);
  free(text);
  s->free(s);
}

Test(sink_openai, completion_object_carries_answer_usage_and_citations) {
  sink_t *s = mk(false);
  Quarry__V1__Passage p = mkpassage();
  Quarry__V1__Passage *ps[] = {&p};
  cr_assert_eq(s->retrieval(s, "q-1", ps, 1), 0);
  cr_assert_eq(s->token(s, "Rotate them [1].", 16), 0);
  sink_citation_t c[] = {{.n = 1, .passage = &p}};
  cr_assert_eq(s->citation(s, &c[0]), 0);
  sink_reply_t rep = {0};
  cr_assert_not(sink_json_take(sink_openai_carrier(s), &rep), "nothing before done");
  sink_summary_t sum = summary(c, 1, "answer_truncated");
  s->done(s, &sum);
  cr_assert(sink_json_take(sink_openai_carrier(s), &rep));
  json_t *b = rep.body;
  cr_assert_not_null(b);
  cr_assert_str_eq(json_string_value(json_object_get(b, "id")), "chatcmpl-q-1");
  cr_assert_str_eq(json_string_value(json_object_get(b, "object")), "chat.completion");
  json_t *ch = json_array_get(json_object_get(b, "choices"), 0);
  cr_assert_eq(json_integer_value(json_object_get(ch, "index")), 0);
  json_t *m = json_object_get(ch, "message");
  cr_assert_str_eq(json_string_value(json_object_get(m, "role")), "assistant");
  cr_assert_str_eq(json_string_value(json_object_get(m, "content")), "Rotate them [1].");
  cr_assert_str_eq(json_string_value(json_object_get(ch, "finish_reason")), "length",
                   "a cut answer finishes with length");
  cr_assert_eq(json_array_size(json_object_get(b, "citations")), 1);
  cr_assert_eq(json_integer_value(
                   json_object_get(json_object_get(b, "usage"), "completion_tokens")),
               3);
  json_decref(b);
  s->free(s);
}

Test(sink_openai, error_before_stream_is_a_reply_after_it_an_error_frame) {
  sink_t *s = mk(true);
  sink_reply_t rep = {0};
  s->error(s, Q_EUNAVAIL, "retriever unavailable", 2);
  cr_assert_eq(sink_sse_begin(sink_openai_carrier(s), &rep), SINK_SSE_REPLY);
  cr_assert_eq(rep.err, Q_EUNAVAIL);
  cr_assert_str_eq(rep.message, "retriever unavailable");
  cr_assert_eq(rep.retry_after_s, 2);
  s->free(s);

  s = mk(true);
  Quarry__V1__Passage p = mkpassage();
  Quarry__V1__Passage *ps[] = {&p};
  cr_assert_eq(s->retrieval(s, "q-2", ps, 1), 0);
  s->error(s, Q_ETIMEDOUT, "generation timed out", 0);
  ssize_t end;
  char *text = drain(s, &end);
  cr_assert_eq(end, SINK_SSE_END);
  cr_assert(strstr(text, "[DONE]") == NULL, "a failed stream does not say [DONE]");
  json_t *f[4];
  size_t n = frames(text, f, 4);
  cr_assert_eq(n, 2);
  json_t *e = json_object_get(f[1], "error");
  cr_assert_str_eq(json_string_value(json_object_get(e, "message")),
                   "generation timed out");
  cr_assert_str_eq(json_string_value(json_object_get(e, "type")), "server_error");
  cr_assert(json_is_null(json_object_get(e, "param")));
  cr_assert_str_eq(json_string_value(json_object_get(e, "code")),
                   q_err_slug(Q_ETIMEDOUT));
  json_decref(f[0]);
  json_decref(f[1]);
  free(text);
  s->free(s);
}

Test(sink_openai, non_stream_error_is_the_reply) {
  sink_t *s = mk(false);
  s->error(s, Q_EINVAL, "bad", 0);
  sink_reply_t rep = {0};
  cr_assert(sink_json_take(sink_openai_carrier(s), &rep));
  cr_assert_null(rep.body);
  cr_assert_eq(rep.err, Q_EINVAL);
  s->free(s);
}

Test(sink_openai, error_json_has_openai_shape_and_type_by_status) {
  struct {
    unsigned status;
    const char *type;
  } cases[] = {{400, "invalid_request_error"}, {401, "authentication_error"},
               {403, "permission_error"},      {404, "not_found_error"},
               {413, "invalid_request_error"}, {429, "rate_limit_error"},
               {500, "server_error"},          {503, "server_error"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *j = sink_openai_error_json(cases[i].status, "slug", "msg", i ? NULL : "n");
    json_t *e = json_object_get(j, "error");
    cr_assert_eq(json_object_size(e), 4, "message, type, param, code");
    cr_assert_str_eq(json_string_value(json_object_get(e, "type")), cases[i].type);
    cr_assert_str_eq(json_string_value(json_object_get(e, "message")), "msg");
    cr_assert_str_eq(json_string_value(json_object_get(e, "code")), "slug");
    if (i == 0)
      cr_assert_str_eq(json_string_value(json_object_get(e, "param")), "n");
    else
      cr_assert(json_is_null(json_object_get(e, "param")));
    json_decref(j);
  }
}

Test(sink_openai, words_count_whitespace_separated_runs) {
  cr_assert_eq(sink_openai_words("", 0), 0);
  cr_assert_eq(sink_openai_words("  a  b\tc\n", 9), 3);
  cr_assert_eq(sink_openai_words("Rotate them [1].", 16), 3);
}

Test(sink_openai, slow_reader_cuts_the_stream) {
  sink_openai_opts_t o = {.model = "m", .stream = true, .max_bytes = 512};
  sink_t *s = sink_openai_new(&o, wake, NULL);
  Quarry__V1__Passage p = mkpassage();
  Quarry__V1__Passage *ps[] = {&p};
  cr_assert_eq(s->retrieval(s, "q", ps, 1), 0);
  q_err_t rc = 0;
  for (int i = 0; i < 100 && !rc; i++)
    rc = s->token(s, "more words", 10);
  cr_assert_eq(rc, Q_ETOOBIG);
  s->error(s, Q_ECANCELLED, "cancelled", 0);
  ssize_t end;
  char *text = drain(s, &end);
  cr_assert_eq(end, SINK_SSE_CUT);
  free(text);
  s->free(s);
}

/* The summary of an answer given by provider "openai-0" with model m. */
static sink_summary_t answered(const sink_citation_t *c, size_t nc, const char *m) {
  sink_summary_t s = summary(c, nc, NULL);
  s.provider = "openai-0";
  s.model = m;
  s.prompt_version = "answer.v2";
  s.has_usage = true;
  s.prompt_tokens = 200;
  s.completion_tokens = 5;
  return s;
}

Test(sink_openai, model_is_the_one_that_answered_when_known) {
  /* not streamed: the completion names the answering model */
  sink_t *s = mk(false);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  sink_summary_t sum = answered(NULL, 0, "gpt-test");
  s->done(s, &sum);
  sink_reply_t rep = {0};
  cr_assert(sink_json_take(sink_openai_carrier(s), &rep));
  cr_assert_str_eq(json_string_value(json_object_get(rep.body, "model")), "gpt-test");
  json_t *g = json_object_get(json_object_get(rep.body, "quarry"), "generation");
  cr_assert_str_eq(json_string_value(json_object_get(g, "provider")), "openai-0");
  cr_assert_str_eq(json_string_value(json_object_get(g, "model")), "gpt-test");
  cr_assert(json_is_false(json_object_get(g, "fallback")));
  cr_assert_str_eq(json_string_value(json_object_get(g, "prompt_version")), "answer.v2");
  cr_assert_eq(json_integer_value(json_object_get(g, "prompt_tokens")), 200);
  cr_assert_eq(json_integer_value(json_object_get(g, "completion_tokens")), 5);
  json_decref(rep.body);
  s->free(s);

  /* a model the llm-gateway did not name: the configured one */
  s = mk(false);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  sum = answered(NULL, 0, "");
  s->done(s, &sum);
  cr_assert(sink_json_take(sink_openai_carrier(s), &rep));
  cr_assert_str_eq(json_string_value(json_object_get(rep.body, "model")), "quarry-rag");
  json_decref(rep.body);
  s->free(s);

  /* streamed: the chunks before the end cannot know it, the last one does */
  s = mk(true);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  cr_assert_eq(s->token(s, "Hi", 2), 0);
  sum = answered(NULL, 0, "gpt-test");
  s->done(s, &sum);
  ssize_t end;
  char *text = drain(s, &end);
  json_t *f[8];
  size_t n = frames(text, f, 8);
  cr_assert_eq(n, 4, "role, content, final, [DONE]: got %zu", n);
  cr_assert_str_eq(json_string_value(json_object_get(f[0], "model")), "quarry-rag");
  cr_assert_str_eq(json_string_value(json_object_get(f[1], "model")), "quarry-rag");
  cr_assert_str_eq(json_string_value(json_object_get(f[2], "model")), "gpt-test");
  g = json_object_get(json_object_get(f[2], "quarry"), "generation");
  cr_assert_str_eq(json_string_value(json_object_get(g, "provider")), "openai-0");
  for (size_t i = 0; i < n; i++)
    json_decref(f[i]);
  free(text);
  s->free(s);
}

Test(sink_openai, quarry_generation_is_null_without_an_answer_from_a_model) {
  sink_t *s = mk(false);
  cr_assert_eq(s->retrieval(s, "q-1", NULL, 0), 0);
  sink_summary_t sum = summary(NULL, 0, NULL);
  s->done(s, &sum);
  sink_reply_t rep = {0};
  cr_assert(sink_json_take(sink_openai_carrier(s), &rep));
  json_t *q = json_object_get(rep.body, "quarry");
  cr_assert_not_null(json_object_get(q, "generation"), "present");
  cr_assert(json_is_null(json_object_get(q, "generation")));
  cr_assert_str_eq(json_string_value(json_object_get(rep.body, "model")), "quarry-rag");
  json_decref(rep.body);
  s->free(s);
}
