/* sink_json.c - the sink behind a plain POST /v1/query: keeps nothing but
 * the end of the query, as the one JSON reply it becomes; plus the JSON
 * shapes every sink shares (see sink.h). */
#include "sink.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/limits.h"
#include "quarry/text.h"

#include "citations.h"
#include "http_util.h"

static json_t *text_json(const char *s) {
  return http_json_text(s ? s : "", s ? strlen(s) : 0);
}

/* An offset into the document, or null when the passage does not say
 * where it is (indexed before offsets were recorded, or by an engine that
 * does not keep them: end_offset 0). */
static json_t *doc_offset(const Quarry__V1__Passage *p, json_int_t off) {
  return p->end_offset > 0 ? json_integer(off) : json_null();
}

/* Where character c of the passage's text is in the document: the text
 * from text_offset on is the document's [start_offset, end_offset); what
 * comes before it (heading path, a repeated table header) maps to the
 * start. */
static json_int_t doc_char(const Quarry__V1__Passage *p, size_t c) {
  size_t at = p->text_offset > 0 ? (size_t)p->text_offset : 0;
  json_int_t d = (json_int_t)p->start_offset + (json_int_t)(c > at ? c - at : 0);
  return d < p->end_offset ? d : (json_int_t)p->end_offset;
}

/* The citation object with the snippet text[start..end) (bytes). */
static json_t *passage_span_json(unsigned n, const Quarry__V1__Passage *p, size_t start,
                                 size_t end) {
  const char *text = p->text ? p->text : "";
  size_t tl = strlen(text);
  if (end > tl || start > end) /* a span of another text: the start instead */
    start = end = 0;
  if (end == 0)
    end = q_text_cut(text, tl, Q_LIMIT_SNIPPET_BYTES);
  size_t cs = q_text_chars(text, start),
         ce = cs + q_text_chars(text + start, end - start);
  return json_pack(
      "{s:i,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o,s:o,s:o,s:f,s:i}", "n", (int)n, "document_id",
      text_json(p->doc_id), "title", text_json(p->title), "chunk_id",
      text_json(p->chunk_id), "snippet", http_json_text(text + start, end - start),
      "snippet_start", (json_int_t)cs, "snippet_end", (json_int_t)ce, "document_start",
      doc_offset(p, doc_char(p, cs)), "document_end", doc_offset(p, doc_char(p, ce)),
      "chunk_start", doc_offset(p, p->start_offset), "chunk_end",
      doc_offset(p, p->end_offset), "score", (double)p->score, "page", (int)p->page);
}

json_t *sink_passage_json(unsigned n, const Quarry__V1__Passage *p) {
  return passage_span_json(n, p, 0, 0);
}

json_t *sink_citation_json(const sink_citation_t *c) {
  return passage_span_json(c->n, c->passage, c->snippet_start, c->snippet_end);
}

/* Milliseconds to the microsecond, as the reply has always given them. */
static double round3(double ms) {
  return (double)(int64_t)(ms * 1000.0 + 0.5) / 1000.0;
}

json_t *sink_generation_json(const sink_summary_t *s) {
  if (!s->provider)
    return json_null();
  /* json_pack steals the "o" references even when it fails. */
  return json_pack("{s:o,s:o,s:b,s:o,s:o,s:o,s:f}", "provider", text_json(s->provider),
                   "model", text_json(s->model), "fallback", (int)s->fallback,
                   "prompt_version", text_json(s->prompt_version), "prompt_tokens",
                   s->has_usage ? json_integer(s->prompt_tokens) : json_null(),
                   "completion_tokens",
                   s->has_usage ? json_integer(s->completion_tokens) : json_null(),
                   "cost", s->has_usage ? s->cost : 0.0);
}

json_t *sink_summary_json(const sink_summary_t *s) {
  json_t *citations = json_array();
  json_t *degraded = json_array();
  json_t *answer = http_json_text(s->answer ? s->answer : "", s->answer_len);
  json_t *generation = sink_generation_json(s);
  if (!citations || !degraded || !answer || !generation)
    goto fail;
  for (size_t i = 0; i < s->ncitations; i++)
    if (json_array_append_new(citations, sink_citation_json(&s->citations[i])))
      goto fail;
  for (size_t i = 0; i < s->ndegraded; i++)
    if (json_array_append_new(degraded, json_string(s->degraded[i])))
      goto fail;
  const sink_timings_t *t = &s->timings_ms;
  json_t *timings = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "auth", round3(t->auth),
                              "embed", round3(t->embed), "retrieve", round3(t->retrieve),
                              "rerank", round3(t->rerank), "generate",
                              round3(t->generate), "total", round3(t->total));
  /* json_pack steals the "o" references even when it fails. */
  return json_pack("{s:s,s:o,s:o,s:o,s:b,s:o,s:o,s:o}", "query_id", s->query_id, "answer",
                   answer, "citations", citations, "timings_ms", timings, "cache_hit",
                   (int)s->cache_hit, "degraded", degraded, "rerank_method",
                   text_json(s->rerank_method ? s->rerank_method : "none"), "generation",
                   generation);
fail:
  json_decref(generation);
  json_decref(citations);
  json_decref(degraded);
  json_decref(answer);
  return NULL;
}

json_t *sink_error_json(q_err_t err, const char *message) {
  const char *m = message ? message : "";
  return json_pack("{s:{s:s,s:o}}", "error", "code", q_err_slug(err), "message",
                   http_json_text(m, strlen(m)));
}

/* ---- the JSON sink -------------------------------------------------------- */

typedef struct json_sink {
  sink_t base;
  pthread_mutex_t mu;
  sink_wake_fn wake;
  void *ud;
  bool ready; /* the reply below is complete and not yet taken */
  bool ended; /* done or error has been called */
  sink_reply_t reply;
} json_sink_t;

static q_err_t json_retrieval(sink_t *s, const char *query_id,
                              Quarry__V1__Passage *const *ps, size_t n) {
  return 0; /* the reply lists only what the answer cites */
}

static q_err_t json_token(sink_t *s, const char *text, size_t len) {
  return 0; /* the summary carries the whole answer */
}

static q_err_t json_citation(sink_t *s, const sink_citation_t *c) {
  return 0;
}

/* Publishes the reply and wakes the reader. */
static void finish(json_sink_t *j) {
  pthread_mutex_lock(&j->mu);
  j->ready = true;
  j->ended = true;
  pthread_mutex_unlock(&j->mu);
  j->wake(j->ud);
}

static void json_done(sink_t *s, const sink_summary_t *summary) {
  sink_json_publish(s, sink_summary_json(summary));
}

void sink_json_publish(sink_t *s, json_t *body) {
  json_sink_t *j = (json_sink_t *)s;
  j->reply.body = body;
  if (!j->reply.body) {
    j->reply.err = Q_ENOMEM;
    snprintf(j->reply.message, sizeof j->reply.message, "out of memory");
  }
  finish(j);
}

static void json_error(sink_t *s, q_err_t err, const char *message, int retry_after_s) {
  json_sink_t *j = (json_sink_t *)s;
  j->reply.err = err ? err : Q_EINTERNAL;
  snprintf(j->reply.message, sizeof j->reply.message, "%s", message ? message : "");
  j->reply.retry_after_s = retry_after_s;
  finish(j);
}

static void json_free(sink_t *s) {
  json_sink_t *j = (json_sink_t *)s;
  if (!j)
    return;
  json_decref(j->reply.body);
  pthread_mutex_destroy(&j->mu);
  free(j);
}

sink_t *sink_json_new(sink_wake_fn wake, void *ud) {
  json_sink_t *j = calloc(1, sizeof *j);
  if (!j)
    return NULL;
  j->base = (sink_t){
      .name = "json",
      .retrieval = json_retrieval,
      .token = json_token,
      .citation = json_citation,
      .done = json_done,
      .error = json_error,
      .free = json_free,
  };
  pthread_mutex_init(&j->mu, NULL);
  j->wake = wake;
  j->ud = ud;
  return &j->base;
}

bool sink_json_take(sink_t *s, sink_reply_t *out) {
  json_sink_t *j = (json_sink_t *)s;
  pthread_mutex_lock(&j->mu);
  bool ready = j->ready;
  if (ready) {
    *out = j->reply;
    j->reply.body = NULL;
    j->ready = false;
  }
  pthread_mutex_unlock(&j->mu);
  return ready;
}
