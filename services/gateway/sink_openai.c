/* sink_openai.c - the sink behind POST /v1/chat/completions: the
 * pipeline's events in the shapes of OpenAI's Chat Completions API (see
 * sink.h), with Quarry's citations in an extension field.
 *
 * It does not deliver anything itself: it owns a JSON sink (one reply) or
 * an SSE sink (a bounded byte queue) and hands them finished replies or
 * whole frames, so query.c reads it exactly as it reads those two. */
#include "sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/limits.h"

#include "http_util.h"

typedef struct openai_sink {
  sink_t base;
  sink_t *carrier;
  char model[Q_LIMIT_MODEL_BYTES + 1];
  char query[Q_LIMIT_QUERY_BYTES + 1];
  long long created;
  unsigned prompt_tokens;
  bool stream;
  bool started; /* stream: the first frame is queued */
  char id[Q_LIMIT_QUERY_ID_BYTES + 16];
} openai_sink_t;

unsigned sink_openai_words(const char *s, size_t n) {
  unsigned words = 0;
  bool in = false;
  for (size_t i = 0; i < n; i++) {
    bool space = s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                 s[i] == '\f' || s[i] == '\v';
    if (!space && !in)
      words++;
    in = !space;
  }
  return words;
}

json_t *sink_openai_error_json(unsigned status, const char *slug, const char *message,
                               const char *param) {
  const char *type = status == 401   ? "authentication_error"
                     : status == 403 ? "permission_error"
                     : status == 404 ? "not_found_error"
                     : status == 429 ? "rate_limit_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  const char *m = message ? message : "";
  return json_pack("{s:{s:o,s:s,s:o,s:s}}", "error", "message",
                   http_json_text(m, strlen(m)), "type", type, "param",
                   param ? json_string(param) : json_null(), "code", slug ? slug : "");
}

static void set_id(openai_sink_t *o, const char *query_id) {
  snprintf(o->id, sizeof o->id, "chatcmpl-%s", query_id ? query_id : "");
}

/* The envelope every chunk and the completion share. s: the summary once
 * the query is over (its model, when known, is the one that answered: what
 * OpenAI's "model" means), else NULL. */
static json_t *envelope(openai_sink_t *o, const char *object, const sink_summary_t *s) {
  const char *model = s && s->model && s->model[0] ? s->model : o->model;
  json_t *m = http_json_text(model, strlen(model));
  /* json_pack steals the "o" references even when it fails. */
  return json_pack("{s:s,s:s,s:I,s:o}", "id", o->id, "object", object, "created",
                   (json_int_t)o->created, "model", m);
}

/* Queues "data: <json>\n\n" (takes obj's reference). */
static q_err_t send_frame(openai_sink_t *o, json_t *obj, bool last) {
  char *js = obj ? json_dumps(obj, GW_JSON_FLAGS) : NULL;
  json_decref(obj);
  char *frame = NULL;
  size_t len = 0;
  if (js) {
    len = strlen(js) + sizeof "data: \n\n" - 1;
    frame = malloc(len + 1);
    if (frame)
      snprintf(frame, len + 1, "data: %s\n\n", js);
  }
  q_err_t rc = sink_sse_push(o->carrier, frame, len, last);
  o->started = true;
  free(frame);
  free(js);
  return rc;
}

/* A chat.completion.chunk with choices[0] = {index, delta, finish_reason}
 * (takes delta's reference). */
static json_t *chunk(openai_sink_t *o, json_t *delta, const char *finish_reason,
                     const sink_summary_t *s) {
  json_t *c = envelope(o, "chat.completion.chunk", s);
  /* json_pack steals the "o" references even when it fails. */
  json_t *choices =
      json_pack("[{s:i,s:o,s:o}]", "index", 0, "delta", delta, "finish_reason",
                finish_reason ? json_string(finish_reason) : json_null());
  if (!c || json_object_set_new(c, "choices", choices)) {
    if (!c)
      json_decref(choices);
    json_decref(c);
    return NULL;
  }
  return c;
}

static q_err_t oa_retrieval(sink_t *b, const char *query_id,
                            Quarry__V1__Passage *const *ps, size_t n) {
  openai_sink_t *o = (openai_sink_t *)b;
  set_id(o, query_id);
  if (!o->stream)
    return 0;
  return send_frame(
      o, chunk(o, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL, NULL),
      false);
}

static q_err_t oa_token(sink_t *b, const char *text, size_t len) {
  openai_sink_t *o = (openai_sink_t *)b;
  if (!o->stream)
    return 0; /* the summary carries the whole answer */
  json_t *t = http_json_text(text, len);
  return send_frame(o, chunk(o, t ? json_pack("{s:o}", "content", t) : NULL, NULL, NULL),
                    false);
}

static q_err_t oa_citation(sink_t *b, const sink_citation_t *c) {
  return 0; /* the summary lists them, in order */
}

/* Adds "usage", "citations" and "quarry" of summary to obj; false when out
 * of memory. */
static bool add_extras(openai_sink_t *o, json_t *obj, const sink_summary_t *s) {
  /* The model's own counts when the llm-gateway reported them (the whole
   * prompt with its passages); otherwise words, as before. */
  unsigned completion =
      s->has_usage ? (unsigned)s->completion_tokens
                   : sink_openai_words(s->answer ? s->answer : "", s->answer_len);
  unsigned prompt = s->has_usage ? (unsigned)s->prompt_tokens : o->prompt_tokens;
  json_t *usage =
      json_pack("{s:i,s:i,s:i}", "prompt_tokens", (int)prompt, "completion_tokens",
                (int)completion, "total_tokens", (int)(prompt + completion));
  /* The /v1/query reply has every field we need: reuse its shapes. */
  json_t *summary = sink_summary_json(s);
  json_t *citations = summary ? json_incref(json_object_get(summary, "citations")) : NULL;
  json_t *quarry =
      summary ? json_pack("{s:O,s:o,s:O,s:O,s:O,s:O,s:O}", "query_id",
                          json_object_get(summary, "query_id"), "query",
                          http_json_text(o->query, strlen(o->query)), "timings_ms",
                          json_object_get(summary, "timings_ms"), "cache_hit",
                          json_object_get(summary, "cache_hit"), "degraded",
                          json_object_get(summary, "degraded"), "rerank_method",
                          json_object_get(summary, "rerank_method"), "generation",
                          json_object_get(summary, "generation"))
              : NULL;
  json_decref(summary);
  /* json_object_set_new takes the reference even when it fails. */
  int rc = json_object_set_new(obj, "usage", usage);
  rc |= json_object_set_new(obj, "citations", citations);
  rc |= json_object_set_new(obj, "quarry", quarry);
  bool ok = rc == 0;
  return ok;
}

static const char *finish_reason(const sink_summary_t *s) {
  for (size_t i = 0; i < s->ndegraded; i++)
    if (strcmp(s->degraded[i], "answer_truncated") == 0)
      return "length";
  return "stop";
}

static void oa_done(sink_t *b, const sink_summary_t *s) {
  openai_sink_t *o = (openai_sink_t *)b;
  set_id(o, s->query_id);
  if (o->stream) {
    json_t *last = chunk(o, json_object(), finish_reason(s), s);
    if (last && !add_extras(o, last, s)) {
      json_decref(last);
      last = NULL;
    }
    if (send_frame(o, last, false) == 0) {
      static const char done[] = "data: [DONE]\n\n";
      sink_sse_push(o->carrier, done, sizeof done - 1, true);
    }
    return;
  }
  json_t *answer = http_json_text(s->answer ? s->answer : "", s->answer_len);
  json_t *choices =
      json_pack("[{s:i,s:{s:s,s:o},s:s,s:n}]", "index", 0, "message", "role", "assistant",
                "content", answer, "finish_reason", finish_reason(s), "logprobs");
  json_t *c = envelope(o, "chat.completion", s);
  if (!c || json_object_set_new(c, "choices", choices) || !add_extras(o, c, s)) {
    if (!c)
      json_decref(choices);
    json_decref(c);
    c = NULL;
  }
  sink_json_publish(o->carrier, c);
}

static void oa_error(sink_t *b, q_err_t err, const char *message, int retry_after_s) {
  openai_sink_t *o = (openai_sink_t *)b;
  err = err ? err : Q_EINTERNAL;
  if (!o->stream || !o->started) {
    /* One reply with its own status (http_util.c shapes it for this route). */
    o->carrier->error(o->carrier, err, message, retry_after_s);
    return;
  }
  send_frame(o,
             sink_openai_error_json((unsigned)q_err_to_http(err), q_err_slug(err),
                                    message, NULL),
             true);
}

static void oa_free(sink_t *b) {
  openai_sink_t *o = (openai_sink_t *)b;
  if (!o)
    return;
  if (o->carrier)
    o->carrier->free(o->carrier);
  free(o);
}

sink_t *sink_openai_new(const sink_openai_opts_t *opts, sink_wake_fn wake, void *ud) {
  openai_sink_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->base = (sink_t){
      .name = "openai",
      .retrieval = oa_retrieval,
      .token = oa_token,
      .citation = oa_citation,
      .done = oa_done,
      .error = oa_error,
      .free = oa_free,
  };
  snprintf(o->model, sizeof o->model, "%s", opts->model ? opts->model : "");
  snprintf(o->query, sizeof o->query, "%s", opts->query ? opts->query : "");
  snprintf(o->query, sizeof o->query, "%s", opts->query ? opts->query : "");
  o->created = opts->created;
  o->prompt_tokens = opts->prompt_tokens;
  o->stream = opts->stream;
  o->carrier =
      opts->stream ? sink_sse_new(opts->max_bytes, wake, ud) : sink_json_new(wake, ud);
  if (!o->carrier) {
    free(o);
    return NULL;
  }
  return &o->base;
}

sink_t *sink_openai_carrier(sink_t *s) {
  return ((openai_sink_t *)s)->carrier;
}
