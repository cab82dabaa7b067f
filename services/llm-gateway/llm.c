/* llm.c - the LlmGateway service: validates requests, dispatches them to the
 * providers chosen at start, falls back from a failing generator to the
 * built-in one, and counts requests and tokens. */
#include "llm.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void llm_init(llm_t *l, embedder_t *embedder, generator_t *generator,
              generator_t *fallback) {
  memset(l, 0, sizeof *l);
  l->embedder = embedder;
  l->generator = generator;
  l->fallback = fallback;
  l->tokens = q_metrics_counter("quarry_llm_tokens_total",
                                "Tokens processed by generation providers.", "kind");
  l->requests = q_metrics_counter("quarry_llm_requests_total",
                                  "LLM gateway provider calls by operation, provider "
                                  "and outcome (ok, invalid, error, cancelled).",
                                  "op,provider,outcome");
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

q_err_t llm_embed(llm_t *l, const char *const *texts, const size_t *lens, size_t n,
                  float *out, char *err, size_t errlen) {
  int rc = l->embedder->embed(l->embedder, texts, lens, n, out, err, errlen);
  count(l, "embed", l->embedder->name, outcome_of(rc));
  if (rc && rc != Q_EINVAL)
    q_log_warn("embedding provider failed", "{s:s,s:s,s:s}", "provider",
               l->embedder->name, "code", q_err_name(rc), "error", err);
  return rc;
}

/* Wraps the caller's emit to know whether anything went out: a generator
 * that has emitted cannot be replaced by the fallback. */
typedef struct emit_track {
  gen_emit_cb emit;
  void *ud;
  int emitted;
} emit_track_t;

static int track_cb(const char *piece, size_t len, void *ud) {
  emit_track_t *t = ud;
  t->emitted = 1;
  return t->emit(piece, len, t->ud);
}

static void count_tokens(llm_t *l, const gen_usage_t *u) {
  const char *prompt[1] = {"prompt"}, *completion[1] = {"completion"};
  q_metrics_add(l->tokens, prompt, u->prompt_tokens);
  q_metrics_add(l->tokens, completion, u->completion_tokens);
}

q_err_t llm_generate(llm_t *l, const char *query, const gen_passage_t *passages, size_t n,
                     int max_tokens, gen_emit_cb emit, void *ud, gen_usage_t *usage,
                     const char **model_used, char *err, size_t errlen) {
  emit_track_t t = {.emit = emit, .ud = ud};
  const generator_t *g = l->generator;
  int rc =
      g->generate(g, query, passages, n, max_tokens, track_cb, &t, usage, err, errlen);
  count(l, "generate", g->name, outcome_of(rc));
  if (rc && rc != Q_ECANCELLED && !t.emitted && l->fallback && l->fallback != g) {
    q_log_warn("generation provider failed; answering with the fallback",
               "{s:s,s:s,s:s,s:s}", "provider", g->name, "fallback", l->fallback->name,
               "code", q_err_name(rc), "error", err);
    g = l->fallback;
    rc = g->generate(g, query, passages, n, max_tokens, track_cb, &t, usage, err, errlen);
    count(l, "generate", g->name, outcome_of(rc));
  } else if (rc && rc != Q_ECANCELLED) {
    q_log_warn("generation provider failed", "{s:s,s:s,s:s}", "provider", g->name, "code",
               q_err_name(rc), "error", err);
  }
  if (rc == 0)
    count_tokens(l, usage);
  if (model_used)
    *model_used = g->model;
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
  const size_t dim = (size_t)l->embedder->dim;
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
  rc = check_model(ctx, req->model, l->embedder->model);
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
  resp->model = (char *)l->embedder->model;
  resp->dim = (int32_t)dim;
  *out = &resp->base;
  return 0;

invalid:
  count(l, "embed", l->embedder->name, "invalid");
  return rc;
}

/* Streams one piece as a GenerateResponse. The model is named only in the
 * final message: it is known for sure once a provider has answered (the
 * fallback may have taken over). */
static int send_piece_cb(const char *piece, size_t len, void *ud) {
  q_grpc_ctx_t *ctx = ud;
  Quarry__V1__GenerateResponse msg = QUARRY__V1__GENERATE_RESPONSE__INIT;
  char *text = q_arena_strndup(q_grpc_ctx_arena(ctx), piece, len);
  if (!text)
    return 1;
  msg.text = text;
  return q_grpc_ctx_send(ctx, &msg.base) != 0;
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
  return check_model(ctx, req->model, l->generator->model);
}

q_err_t llm_generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  llm_t *l = ud;
  const Quarry__V1__GenerateRequest *req = (const Quarry__V1__GenerateRequest *)in;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  char err[512] = "";
  gen_usage_t usage = {0};
  const char *model = l->generator->model;
  int rc;

  rc = validate_generate(ctx, l, req);
  if (rc) {
    count(l, "generate", l->generator->name, "invalid");
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

  rc = llm_generate(l, req->query, ps, req->n_passages, req->max_tokens, send_piece_cb,
                    ctx, &usage, &model, err, sizeof err);
  if (rc) {
    q_grpc_ctx_errorf(ctx, "%s", err);
    return rc;
  }

  Quarry__V1__Usage u = QUARRY__V1__USAGE__INIT;
  Quarry__V1__GenerateResponse last = QUARRY__V1__GENERATE_RESPONSE__INIT;
  u.prompt_tokens = usage.prompt_tokens;
  u.completion_tokens = usage.completion_tokens;
  last.done = 1;
  last.model = (char *)model;
  last.usage = &u;
  if (q_grpc_ctx_send(ctx, &last.base)) {
    q_grpc_ctx_errorf(ctx, "the client went away");
    return Q_ECANCELLED;
  }
  return 0;
}
