/* llm.c - the LlmGateway service: validates requests, dispatches them down
 * the provider lists chosen at start with retries, breakers and failover,
 * falls back to the built-in answerer, and accounts for every call.
 *
 * Threading: handlers run on the gRPC server's worker threads, one call
 * each; the lists are read-only after start and each breaker has its own
 * lock, so nothing else is shared. A wait between attempts sleeps the
 * worker in POLL_MS steps, asking the client (emit with len 0) whether it
 * is still there. */
#include "llm.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 20

static const double TTFT_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,    2.5,   5,    10,  30};
static const double DURATION_BUCKETS[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                          2.5,  5,     10,   30,  60,   120};

void llm_init(llm_t *l, const q_retry_policy_t *retry, generator_t *fallback) {
  memset(l, 0, sizeof *l);
  l->retry = retry ? *retry : Q_RETRY_POLICY_DEFAULT;
  l->fallback = fallback;
  l->tokens = q_metrics_counter("quarry_llm_tokens_total",
                                "Tokens processed by generation providers.", "kind");
  l->requests = q_metrics_counter("quarry_llm_requests_total",
                                  "LLM gateway provider calls by operation, provider "
                                  "and outcome (ok, invalid, error, cancelled, "
                                  "circuit_open).",
                                  "op,provider,outcome");
  l->ptokens = q_metrics_counter("quarry_llm_provider_tokens_total",
                                 "Tokens per generation provider and model (the "
                                 "provider's usage when reported, else estimated).",
                                 "provider,model,kind");
  l->ttft = q_metrics_histogram(
      "quarry_llm_ttft_seconds",
      "Time from the start of a generation call to the provider's first piece.",
      "provider,model", TTFT_BUCKETS, sizeof TTFT_BUCKETS / sizeof TTFT_BUCKETS[0]);
  l->latency = q_metrics_histogram("quarry_llm_duration_seconds",
                                   "Duration of provider calls that succeeded.",
                                   "op,provider,model", DURATION_BUCKETS,
                                   sizeof DURATION_BUCKETS / sizeof DURATION_BUCKETS[0]);
  l->cost = q_metrics_counter("quarry_llm_cost_total",
                              "Estimated cost of generation from the configured "
                              "prices per 1000 tokens (currency units).",
                              "provider,model");
  l->retries =
      q_metrics_counter("quarry_llm_retries_total",
                        "Provider calls retried after a failure.", "op,provider");
  l->fallbacks = q_metrics_counter(
      "quarry_llm_fallbacks_total",
      "Answers given by the built-in answerer because every provider failed.", "");
  l->breakers = q_metrics_gauge("quarry_llm_breaker_state",
                                "Circuit breaker of each provider: 0 closed, 1 open, "
                                "2 half-open.",
                                "provider");
}

void llm_cleanup(llm_t *l) {
  for (size_t i = 0; i < l->nemb; i++)
    q_breaker_cleanup(&l->emb[i].breaker);
  for (size_t i = 0; i < l->ngen; i++)
    q_breaker_cleanup(&l->gen[i].breaker);
  l->nemb = l->ngen = 0;
}

q_err_t llm_add_embedder(llm_t *l, embedder_t *e, int breaker_failures, int cooldown_ms) {
  if (l->nemb == LLM_MAX_PROVIDERS)
    return Q_ERESOURCE;
  l->emb[l->nemb].e = e;
  q_breaker_init(&l->emb[l->nemb].breaker, breaker_failures, cooldown_ms);
  l->nemb++;
  return 0;
}

q_err_t llm_add_generator(llm_t *l, generator_t *g, double cost_prompt_per_1k,
                          double cost_completion_per_1k, int breaker_failures,
                          int cooldown_ms) {
  if (l->ngen == LLM_MAX_PROVIDERS)
    return Q_ERESOURCE;
  llm_gen_t *x = &l->gen[l->ngen];
  x->g = g;
  x->cost_prompt_per_1k = cost_prompt_per_1k;
  x->cost_completion_per_1k = cost_completion_per_1k;
  q_breaker_init(&x->breaker, breaker_failures, cooldown_ms);
  if (!l->gen_model)
    l->gen_model = g->model;
  l->ngen++;
  return 0;
}

static void count(llm_t *l, const char *op, const char *provider, const char *outcome) {
  const char *lv[3] = {op, provider, outcome};
  q_metrics_inc(l->requests, lv);
}

static const char *outcome_of(int rc) {
  switch (rc) {
  case 0: return "ok";
  case Q_EINVAL: return "invalid";
  case Q_ECANCELLED: return "cancelled";
  default: return "error";
  }
}

static void breaker_report(llm_t *l, q_breaker_t *b, const char *provider, bool ok) {
  int64_t now = q_now_ms();
  q_breaker_state_t before = q_breaker_state(b, now);
  q_breaker_record(b, ok, now);
  q_breaker_state_t after = q_breaker_state(b, now);
  const char *lv[1] = {provider};
  q_metrics_set(l->breakers, lv, (double)after);
  if (after != before)
    q_log_warn("provider circuit breaker", "{s:s,s:s,s:s}", "provider", provider, "from",
               q_breaker_state_name(before), "to", q_breaker_state_name(after));
}

/* Waits ms, in POLL_MS steps, unless the client leaves (probe returns
 * non-zero) or the deadline would pass first. true when the wait ran out. */
static bool wait_ms(int ms, gen_emit_cb probe, void *ud) {
  int64_t until = q_now_ms() + ms, deadline = q_trace_deadline();
  if (deadline > 0 && until >= deadline)
    return false;
  for (;;) {
    int64_t left = until - q_now_ms();
    if (left <= 0)
      return true;
    if (probe && probe(NULL, 0, ud))
      return false;
    struct timespec ts = {0, (long)(left < POLL_MS ? left : POLL_MS) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Decides what follows a failed attempt: true to try the same provider
 * again (after waiting), false to move on. */
static bool retry_after_failure(llm_t *l, const char *op, const char *provider,
                                const q_attempt_t *att, int attempt, gen_emit_cb probe,
                                void *ud) {
  if (!q_retry_worth(att) || attempt + 1 >= l->retry.max_attempts)
    return false;
  int delay = q_retry_delay_ms(&l->retry, attempt, att->retry_after_ms);
  if (delay < 0) {
    q_log_warn("provider asks to wait longer than allowed: failing over", "{s:s,s:i,s:i}",
               "provider", provider, "retry_after_ms", att->retry_after_ms,
               "max_retry_after_ms", l->retry.max_retry_after_ms);
    return false;
  }
  if (!wait_ms(delay, probe, ud))
    return false;
  const char *lv[2] = {op, provider};
  q_metrics_inc(l->retries, lv);
  return true;
}

q_err_t llm_embed(llm_t *l, const char *const *texts, const size_t *lens, size_t n,
                  float *out, char *err, size_t errlen) {
  int rc = Q_EUNAVAIL;
  snprintf(err, errlen, "no embedding provider is available");
  for (size_t i = 0; i < l->nemb; i++) {
    llm_emb_t *x = &l->emb[i];
    const embedder_t *e = x->e;
    for (int attempt = 0; attempt < l->retry.max_attempts; attempt++) {
      if (!q_breaker_allow(&x->breaker, q_now_ms())) {
        count(l, "embed", e->name, "circuit_open");
        if (rc == Q_EUNAVAIL)
          snprintf(err, errlen, "%s: circuit breaker open", e->name);
        break;
      }
      q_attempt_t att = {.retry_after_ms = -1};
      double t0 = (double)q_now_ms();
      rc = e->embed_ex ? e->embed_ex(e, texts, lens, n, out, &att, err, errlen)
                       : e->embed(e, texts, lens, n, out, err, errlen);
      att.rc = rc;
      count(l, "embed", e->name, outcome_of(rc));
      /* An input the provider refuses is the caller's, not the provider's. */
      breaker_report(l, &x->breaker, e->name, rc == 0 || rc == Q_EINVAL);
      if (rc == 0) {
        const char *lv[3] = {"embed", e->name, e->model};
        q_metrics_observe(l->latency, lv, ((double)q_now_ms() - t0) / 1000.0);
        return 0;
      }
      if (rc == Q_EINVAL)
        return rc;
      q_log_warn("embedding provider failed", "{s:s,s:s,s:i,s:s}", "provider", e->name,
                 "code", q_err_name(rc), "attempt", attempt + 1, "error", err);
      if (!retry_after_failure(l, "embed", e->name, &att, attempt, NULL, NULL))
        break;
    }
  }
  return rc;
}

/* Wraps the caller's emit to know whether and when anything went out: a
 * generator that has emitted cannot be replaced by another. */
typedef struct emit_track {
  gen_emit_cb emit;
  void *ud;
  bool emitted;
  int64_t first_ms;
  /* The attempt under way (its passages_used is set before it emits) and
   * the caller's answer, whose passages_used a piece's emit may read. */
  const gen_outcome_t *out;
  llm_answer_t *ans;
} emit_track_t;

static int track_cb(const char *piece, size_t len, void *ud) {
  emit_track_t *t = ud;
  if (len && !t->emitted) {
    t->emitted = true;
    t->first_ms = q_now_ms();
  }
  if (len && t->out && t->ans)
    t->ans->passages_used = t->out->passages_used;
  return t->emit(piece, len, t->ud);
}

static void account(llm_t *l, llm_gen_t *x, const generator_t *g, llm_answer_t *ans,
                    double total_ms) {
  const char *prompt[1] = {"prompt"}, *completion[1] = {"completion"};
  q_metrics_add(l->tokens, prompt, ans->usage.prompt_tokens);
  q_metrics_add(l->tokens, completion, ans->usage.completion_tokens);
  const char *pl[3] = {g->name, g->model, "prompt"},
             *cl[3] = {g->name, g->model, "completion"};
  q_metrics_add(l->ptokens, pl, ans->usage.prompt_tokens);
  q_metrics_add(l->ptokens, cl, ans->usage.completion_tokens);
  const char *ml[2] = {g->name, g->model}, *dl[3] = {"generate", g->name, g->model};
  if (x) {
    ans->cost = ans->usage.prompt_tokens / 1000.0 * x->cost_prompt_per_1k +
                ans->usage.completion_tokens / 1000.0 * x->cost_completion_per_1k;
    q_metrics_add(l->cost, ml, ans->cost);
  }
  q_metrics_observe(l->ttft, ml, ans->ttft_ms / 1000.0);
  q_metrics_observe(l->latency, dl, total_ms / 1000.0);
  q_log_info("generation done", "{s:s,s:s,s:b,s:s,s:i,s:i,s:i,s:f,s:f,s:f,s:i}",
             "provider", g->name, "model", g->model, "fallback", ans->fallback,
             "prompt_version", ans->prompt_version, "passages_used",
             (int)ans->passages_used, "prompt_tokens", ans->usage.prompt_tokens,
             "completion_tokens", ans->usage.completion_tokens, "ttft_ms", ans->ttft_ms,
             "total_ms", total_ms, "cost", ans->cost, "attempts", ans->attempts);
}

/* One call of one generator, filling ans from it. */
static int call_generator(const generator_t *g, const char *query,
                          const gen_passage_t *passages, size_t n, int max_tokens,
                          emit_track_t *t, llm_answer_t *ans, q_attempt_t *att, char *err,
                          size_t errlen) {
  gen_outcome_t o = {.retry_after_ms = -1, .passages_used = n, .prompt_version = ""};
  t->out = &o; /* the passages this attempt's prompt holds, as it emits */
  int rc = g->generate_ex ? g->generate_ex(g, query, passages, n, max_tokens, track_cb, t,
                                           &ans->usage, &o, err, errlen)
                          : g->generate(g, query, passages, n, max_tokens, track_cb, t,
                                        &ans->usage, err, errlen);
  t->out = NULL;
  *att = (q_attempt_t){
      .rc = rc, .http_status = o.http_status, .retry_after_ms = o.retry_after_ms};
  ans->provider = g->name;
  ans->model = g->model;
  ans->prompt_version = o.prompt_version ? o.prompt_version : "";
  ans->passages_used = o.passages_used;
  ans->attempts++;
  return rc;
}

q_err_t llm_generate(llm_t *l, const char *query, const gen_passage_t *passages, size_t n,
                     int max_tokens, gen_emit_cb emit, void *ud, llm_answer_t *ans,
                     char *err, size_t errlen) {
  emit_track_t t = {.emit = emit, .ud = ud};
  int rc = Q_EUNAVAIL;
  char last[512] = "no generation provider is configured";

  memset(ans, 0, sizeof *ans);
  t.ans = ans;
  for (size_t i = 0; i < l->ngen; i++) {
    llm_gen_t *x = &l->gen[i];
    const generator_t *g = x->g;
    for (int attempt = 0; attempt < l->retry.max_attempts; attempt++) {
      if (!q_breaker_allow(&x->breaker, q_now_ms())) {
        count(l, "generate", g->name, "circuit_open");
        snprintf(last, sizeof last, "%s: circuit breaker open", g->name);
        break;
      }
      q_attempt_t att;
      int64_t t0 = q_now_ms();
      rc = call_generator(g, query, passages, n, max_tokens, &t, ans, &att, err, errlen);
      count(l, "generate", g->name, outcome_of(rc));
      /* A client that left says nothing about the provider's health. */
      breaker_report(l, &x->breaker, g->name, rc == 0 || rc == Q_ECANCELLED);
      if (rc == 0) {
        ans->ttft_ms = (double)(t.first_ms - t0);
        account(l, x, g, ans, (double)(q_now_ms() - t0));
        return 0;
      }
      if (rc == Q_ECANCELLED)
        return rc;
      q_log_warn("generation provider failed", "{s:s,s:s,s:i,s:i,s:b,s:s}", "provider",
                 g->name, "code", q_err_name(rc), "http_status", (int)att.http_status,
                 "attempt", attempt + 1, "after_first_token", t.emitted, "error", err);
      if (t.emitted)
        return rc; /* the client has part of an answer: no one else may add to it */
      snprintf(last, sizeof last, "%s", err);
      if (!retry_after_failure(l, "generate", g->name, &att, attempt, track_cb, &t))
        break;
    }
    if (emit(NULL, 0, ud)) {
      snprintf(err, errlen, "the client went away");
      return Q_ECANCELLED;
    }
  }
  if (!l->fallback) {
    snprintf(err, errlen, "%s", last);
    return rc;
  }
  if (l->ngen)
    q_log_warn("every generation provider failed; answering with the built-in answerer",
               "{s:s,s:s}", "fallback", l->fallback->name, "last_error", last);
  const generator_t *g = l->fallback;
  q_attempt_t att;
  int64_t t0 = q_now_ms();
  rc = call_generator(g, query, passages, n, max_tokens, &t, ans, &att, err, errlen);
  count(l, "generate", g->name, outcome_of(rc));
  ans->fallback = l->ngen > 0;
  if (rc == 0) {
    if (ans->fallback)
      q_metrics_inc(l->fallbacks, NULL);
    ans->ttft_ms = (double)(t.first_ms - t0);
    account(l, NULL, g, ans, (double)(q_now_ms() - t0));
  }
  return rc;
}

/* ---- gRPC handlers --------------------------------------------------------- */

static q_err_t check_model(q_grpc_ctx_t *ctx, const char *model, const char *served) {
  if (!model || !model[0])
    return 0;
  if (strlen(model) > Q_LIMIT_MODEL_BYTES) {
    q_grpc_ctx_errorf(ctx, "model: longer than %d bytes", Q_LIMIT_MODEL_BYTES);
    return Q_EINVAL;
  }
  if (strcmp(model, served) != 0) {
    q_grpc_ctx_errorf(ctx, "model: unknown model \"%s\" (this gateway serves \"%s\")",
                      model, served);
    return Q_EINVAL;
  }
  return 0;
}

q_err_t llm_embed_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                     ProtobufCMessage **out, void *ud) {
  llm_t *l = ud;
  const Quarry__V1__EmbedRequest *req = (const Quarry__V1__EmbedRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  const embedder_t *first = l->emb[0].e;
  const size_t dim = (size_t)first->dim;
  char err[512] = "";
  int rc;

  if (req->n_texts == 0) {
    q_grpc_ctx_errorf(ctx, "texts: at least one text is required");
    rc = Q_EINVAL;
    goto invalid;
  }
  if (req->n_texts > Q_LIMIT_EMBED_TEXTS) {
    q_grpc_ctx_errorf(ctx, "texts: at most %d texts per call, got %zu",
                      Q_LIMIT_EMBED_TEXTS, req->n_texts);
    rc = Q_EINVAL;
    goto invalid;
  }
  rc = check_model(ctx, req->model, first->model);
  if (rc)
    goto invalid;

  const char **texts = q_arena_alloc(a, req->n_texts * sizeof *texts);
  size_t *lens = q_arena_alloc(a, req->n_texts * sizeof *lens);
  float *vecs = q_arena_alloc(a, req->n_texts * dim * sizeof *vecs);
  Quarry__V1__Embedding **embs = q_arena_alloc(a, req->n_texts * sizeof *embs);
  Quarry__V1__EmbedResponse *resp = q_arena_alloc(a, sizeof *resp);
  if (!texts || !lens || !vecs || !embs || !resp) {
    q_grpc_ctx_errorf(ctx, "request too large for this server's memory budget");
    return Q_ERESOURCE;
  }
  for (size_t i = 0; i < req->n_texts; i++) {
    const char *t = req->texts[i] ? req->texts[i] : "";
    texts[i] = t;
    lens[i] = strlen(t);
    if (lens[i] == 0 || q_is_blank(t, lens[i])) {
      q_grpc_ctx_errorf(ctx, "texts[%zu]: empty text cannot be embedded", i);
      rc = Q_EINVAL;
      goto invalid;
    }
    if (lens[i] > Q_LIMIT_EMBED_TEXT_BYTES) {
      q_grpc_ctx_errorf(ctx, "texts[%zu]: %zu bytes, at most %d allowed", i, lens[i],
                        Q_LIMIT_EMBED_TEXT_BYTES);
      rc = Q_EINVAL;
      goto invalid;
    }
    if (!q_valid_utf8(t, lens[i])) {
      q_grpc_ctx_errorf(ctx, "texts[%zu]: not valid UTF-8", i);
      rc = Q_EINVAL;
      goto invalid;
    }
  }

  rc = llm_embed(l, texts, lens, req->n_texts, vecs, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }
  quarry__v1__embed_response__init(resp);
  for (size_t i = 0; i < req->n_texts; i++) {
    embs[i] = q_arena_alloc(a, sizeof *embs[i]);
    if (!embs[i]) {
      q_grpc_ctx_errorf(ctx, "request too large for this server's memory budget");
      return Q_ERESOURCE;
    }
    quarry__v1__embedding__init(embs[i]);
    embs[i]->n_values = dim;
    embs[i]->values = vecs + i * dim;
  }
  resp->n_embeddings = req->n_texts;
  resp->embeddings = embs;
  resp->model = (char *)first->model;
  resp->dim = (int32_t)dim;
  *out = &resp->base;
  return 0;

invalid:
  count(l, "embed", first->name, "invalid");
  return rc;
}

/* What send_piece_cb needs: the call, and the answer llm_generate fills,
 * whose passages_used is set before each piece is emitted. */
typedef struct piece_sink {
  q_grpc_ctx_t *ctx;
  const llm_answer_t *ans;
  size_t n; /* passages in the request */
} piece_sink_t;

/* Streams one piece as a GenerateResponse. The model is named only in the
 * final message: it is known for sure once a provider has answered (the
 * fallback may have taken over). Every piece says how many passages at
 * the end of the request the prompt left out, so the gateway never
 * streams a marker of a passage the model did not see. */
static int send_piece_cb(const char *piece, size_t len, void *ud) {
  piece_sink_t *ps = ud;
  q_grpc_ctx_t *ctx = ps->ctx;
  if (len == 0) /* a provider waiting on its server asks whether to go on */
    return q_grpc_ctx_cancelled(ctx);
  Quarry__V1__GenerateResponse msg = QUARRY__V1__GENERATE_RESPONSE__INIT;
  char *text = q_arena_strndup(q_grpc_ctx_arena(ctx), piece, len);
  if (!text)
    return 1;
  msg.text = text;
  if (ps->ans->passages_used < ps->n)
    msg.passages_dropped = (int32_t)(ps->n - ps->ans->passages_used);
  return q_grpc_ctx_send(ctx, &msg.base) != 0;
}

static const char *served_model(const llm_t *l) {
  return l->gen_model ? l->gen_model : l->fallback ? l->fallback->model : "";
}

static const char *served_name(const llm_t *l) {
  return l->ngen ? l->gen[0].g->name : l->fallback ? l->fallback->name : "";
}

static q_err_t validate_generate(q_grpc_ctx_t *ctx, const llm_t *l,
                                 const Quarry__V1__GenerateRequest *req) {
  size_t qlen = req->query ? strlen(req->query) : 0;
  if (qlen == 0 || q_is_blank(req->query, qlen)) {
    q_grpc_ctx_errorf(ctx, "query: required");
    return Q_EINVAL;
  }
  if (qlen > Q_LIMIT_QUERY_BYTES) {
    q_grpc_ctx_errorf(ctx, "query: %zu bytes, at most %d allowed", qlen,
                      Q_LIMIT_QUERY_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_utf8(req->query, qlen)) {
    q_grpc_ctx_errorf(ctx, "query: not valid UTF-8");
    return Q_EINVAL;
  }
  if (req->n_passages > Q_LIMIT_GENERATE_PASSAGES) {
    q_grpc_ctx_errorf(ctx, "passages: at most %d, got %zu", Q_LIMIT_GENERATE_PASSAGES,
                      req->n_passages);
    return Q_EINVAL;
  }
  for (size_t i = 0; i < req->n_passages; i++) {
    const Quarry__V1__Passage *p = req->passages[i];
    size_t tl = p->text ? strlen(p->text) : 0, hl = p->title ? strlen(p->title) : 0;
    if (tl > Q_LIMIT_PASSAGE_TEXT_BYTES) {
      q_grpc_ctx_errorf(ctx, "passages[%zu].text: %zu bytes, at most %d allowed", i, tl,
                        Q_LIMIT_PASSAGE_TEXT_BYTES);
      return Q_EINVAL;
    }
    if (hl > Q_LIMIT_TITLE_BYTES) {
      q_grpc_ctx_errorf(ctx, "passages[%zu].title: %zu bytes, at most %d allowed", i, hl,
                        Q_LIMIT_TITLE_BYTES);
      return Q_EINVAL;
    }
    if (!q_valid_utf8(p->text ? p->text : "", tl) ||
        !q_valid_utf8(p->title ? p->title : "", hl)) {
      q_grpc_ctx_errorf(ctx, "passages[%zu]: not valid UTF-8", i);
      return Q_EINVAL;
    }
  }
  if (req->max_tokens < 0 || req->max_tokens > Q_LIMIT_MAX_TOKENS) {
    q_grpc_ctx_errorf(ctx, "max_tokens: must be 0 (default) .. %d, got %d",
                      Q_LIMIT_MAX_TOKENS, (int)req->max_tokens);
    return Q_EINVAL;
  }
  return check_model(ctx, req->model, served_model(l));
}

q_err_t llm_generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  llm_t *l = ud;
  const Quarry__V1__GenerateRequest *req = (const Quarry__V1__GenerateRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  char err[512] = "";
  llm_answer_t ans;
  int rc;

  rc = validate_generate(ctx, l, req);
  if (rc) {
    count(l, "generate", served_name(l), "invalid");
    return rc;
  }
  gen_passage_t *ps =
      q_arena_alloc(a, (req->n_passages ? req->n_passages : 1) * sizeof *ps);
  if (!ps) {
    q_grpc_ctx_errorf(ctx, "request too large for this server's memory budget");
    return Q_ERESOURCE;
  }
  for (size_t i = 0; i < req->n_passages; i++) {
    ps[i].title = req->passages[i]->title ? req->passages[i]->title : "";
    ps[i].text = req->passages[i]->text ? req->passages[i]->text : "";
    ps[i].text_len = strlen(ps[i].text);
  }

  piece_sink_t sink = {ctx, &ans, req->n_passages};
  rc = llm_generate(l, req->query, ps, req->n_passages, req->max_tokens, send_piece_cb,
                    &sink, &ans, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }

  Quarry__V1__Usage u = QUARRY__V1__USAGE__INIT;
  Quarry__V1__GenerateResponse last = QUARRY__V1__GENERATE_RESPONSE__INIT;
  u.prompt_tokens = ans.usage.prompt_tokens;
  u.completion_tokens = ans.usage.completion_tokens;
  u.cost = ans.cost;
  last.done = 1;
  last.model = (char *)ans.model;
  last.usage = &u;
  last.provider = (char *)ans.provider;
  last.fallback = ans.fallback;
  last.prompt_version = (char *)ans.prompt_version;
  last.passages_dropped = ans.passages_used < req->n_passages
                              ? (int32_t)(req->n_passages - ans.passages_used)
                              : 0;
  if (q_grpc_ctx_send(ctx, &last.base)) {
    q_grpc_ctx_errorf(ctx, "the client went away");
    return Q_ECANCELLED;
  }
  return 0;
}
