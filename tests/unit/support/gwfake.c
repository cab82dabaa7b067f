/* gwfake.c - fake downstream services for the gateway's query tests (see
 * gwfake.h). */
#include "gwfake.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "quarry/v1/auth.pb-c.h"
#include "quarry/v1/feedback.pb-c.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/v1/reranker.pb-c.h"
#include "quarry/v1/retriever.pb-c.h"

#include "quarry/error.h"
#include "quarry/trace.h"

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int gwfake_wait(atomic_int *v, int want, int ms) {
  for (int i = 0; i < ms && atomic_load(v) < want; i++)
    nap_ms(1);
  return atomic_load(v) >= want;
}

static q_err_t authenticate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud) {
  const Quarry__V1__AuthenticateRequest *req = (const void *)in;
  const char *tenant = strcmp(req->credential, "good-key") == 0    ? "t1"
                       : strcmp(req->credential, "other-key") == 0 ? "t2"
                                                                   : NULL;
  if (!tenant) {
    q_grpc_ctx_errorf(ctx, "unknown key");
    return Q_EUNAUTH;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__AuthenticateResponse *r = q_arena_alloc(a, sizeof *r);
  Quarry__V1__Principal *p = q_arena_alloc(a, sizeof *p);
  quarry__v1__authenticate_response__init(r);
  quarry__v1__principal__init(p);
  p->tenant_id = (char *)tenant;
  p->user_id = "key:k1";
  p->key_id = "k1";
  static char *roles[] = {"writer"};
  p->roles = roles;
  p->n_roles = 1;
  r->principal = p;
  *out = &r->base;
  return 0;
}

static q_err_t embed_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  gwfake_t *f = ud;
  atomic_fetch_add(&f->embeds, 1);
  if (atomic_load(&f->embed_fail)) {
    q_grpc_ctx_errorf(ctx, "embedder offline");
    return Q_EUNAVAIL;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__EmbedResponse *r = q_arena_alloc(a, sizeof *r);
  quarry__v1__embed_response__init(r);
  Quarry__V1__Embedding *e = q_arena_alloc(a, sizeof *e);
  quarry__v1__embedding__init(e);
  e->n_values = 4;
  e->values = q_arena_alloc(a, 4 * sizeof(float));
  for (int i = 0; i < 4; i++)
    e->values[i] = 0.5f;
  r->n_embeddings = 1;
  r->embeddings = q_arena_alloc(a, sizeof *r->embeddings);
  r->embeddings[0] = e;
  r->dim = 4;
  r->model = "fake-embed-4";
  *out = &r->base;
  return 0;
}

static Quarry__V1__Passage *passage(q_arena_t *a, int i) {
  Quarry__V1__Passage *p = q_arena_alloc(a, sizeof *p);
  quarry__v1__passage__init(p);
  p->chunk_id = q_arena_printf(a, "c%d", i);
  p->doc_id = q_arena_printf(a, "d%d", i);
  p->title = q_arena_printf(a, "Title %d", i);
  p->text = q_arena_printf(a, "text of passage %d", i);
  p->score = 1.0f / (float)i;
  p->page = i;
  return p;
}

static q_err_t search_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  gwfake_t *f = ud;
  const Quarry__V1__SearchRequest *req = (const void *)in;
  atomic_fetch_add(&f->searches, 1);
  snprintf(f->last_mode, sizeof f->last_mode, "%s", req->mode ? req->mode : "");
  snprintf(f->last_embed_model, sizeof f->last_embed_model, "%s",
           req->embed_model ? req->embed_model : "");
  atomic_store(&f->last_dim, (int)req->n_query_embedding);
  if (req->tenant_id && strcmp(req->tenant_id, "t2") == 0)
    atomic_fetch_add(&f->searches_t2, 1);
  while (atomic_load(&f->freeze_search) && q_grpc_ctx_ms_left(ctx) > 0) {
    if (q_grpc_ctx_cancelled(ctx)) {
      atomic_fetch_add(&f->search_cancelled, 1);
      return Q_ECANCELLED;
    }
    nap_ms(2);
  }
  if (atomic_load(&f->retriever_fail)) {
    q_grpc_ctx_errorf(ctx, "index not loaded");
    return Q_EUNAVAIL;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__SearchResponse *r = q_arena_alloc(a, sizeof *r);
  quarry__v1__search_response__init(r);
  r->n_passages = (size_t)f->npassages;
  r->passages = q_arena_alloc(a, (r->n_passages + 1) * sizeof *r->passages);
  for (int i = 0; i < f->npassages; i++)
    r->passages[i] = passage(a, i + 1);
  r->lexical_only = req->n_query_embedding == 0;
  *out = &r->base;
  return 0;
}

static q_err_t rerank_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  gwfake_t *f = ud;
  const Quarry__V1__RerankRequest *req = (const void *)in;
  if (atomic_load(&f->rerank_fail)) {
    q_grpc_ctx_errorf(ctx, "model crashed");
    return Q_EINTERNAL;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__RerankResponse *r = q_arena_alloc(a, sizeof *r);
  quarry__v1__rerank_response__init(r);
  size_t n = req->n_passages < (size_t)req->top_n ? req->n_passages : (size_t)req->top_n;
  r->n_passages = n;
  r->passages = q_arena_alloc(a, (n + 1) * sizeof *r->passages);
  for (size_t i = 0; i < n; i++)
    r->passages[i] = req->passages[req->n_passages - 1 - i];
  r->method = "reversed";
  *out = &r->base;
  return 0;
}

static q_err_t generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                           ProtobufCMessage **out, void *ud) {
  gwfake_t *f = ud;
  atomic_fetch_add(&f->generates, 1);
  if (atomic_load(&f->gen_fail)) {
    q_grpc_ctx_errorf(ctx, "provider refused");
    return Q_EUNAVAIL;
  }
  const char *ans = f->answer ? f->answer : "";
  size_t len = strlen(ans), step = f->piece_bytes > 0 ? (size_t)f->piece_bytes : 5;
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  for (size_t off = 0; off < len; off += step) {
    int ms = atomic_load(&f->piece_ms);
    if (ms)
      nap_ms(ms);
    Quarry__V1__GenerateResponse m = QUARRY__V1__GENERATE_RESPONSE__INIT;
    m.text = q_arena_strndup(a, ans + off, len - off < step ? len - off : step);
    m.passages_dropped = atomic_load(&f->gen_dropped);
    if (q_grpc_ctx_send(ctx, &m.base)) {
      atomic_store(&f->gen_stop_s, q_now_s());
      atomic_fetch_add(&f->gen_cancelled, 1);
      return Q_ECANCELLED;
    }
    atomic_fetch_add(&f->gen_pieces, 1);
  }
  Quarry__V1__GenerateResponse done = QUARRY__V1__GENERATE_RESPONSE__INIT;
  Quarry__V1__Usage u = QUARRY__V1__USAGE__INIT;
  u.prompt_tokens = 11;
  u.completion_tokens = 7;
  done.done = 1;
  done.usage = &u;
  done.provider = (char *)(f->gen_provider ? f->gen_provider : "fake-0");
  done.model = (char *)(f->gen_model ? f->gen_model : "fake-model");
  done.prompt_version = "answer.v2";
  done.fallback = atomic_load(&f->gen_fallback) != 0;
  done.passages_dropped = atomic_load(&f->gen_dropped);
  return q_grpc_ctx_send(ctx, &done.base);
}

static q_err_t record_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  gwfake_t *f = ud;
  atomic_fetch_add(&f->records, 1);
  if (atomic_load(&f->record_fail)) {
    q_grpc_ctx_errorf(ctx, "broker down");
    return Q_EUNAVAIL;
  }
  Quarry__V1__QueryEventResponse *r = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *r);
  quarry__v1__query_event_response__init(r);
  *out = &r->base;
  return 0;
}

void gwfake_start(gwfake_t *f) {
  memset(f, 0, sizeof *f);
  f->piece_bytes = 5;
  f->npassages = 10;
  f->answer = "Alpha [1]. Beta [2][3]. Bogus [9].";
  q_grpc_server_opts_t o = {
      .addr = "127.0.0.1:0", .threads = 16, .max_msg_bytes = 8 << 20};
  f->srv = q_grpc_server_new(&o);
  cr_assert_not_null(f->srv);
  static const q_grpc_method_t auth[] = {{"Authenticate", Q_GRPC_UNARY, authenticate_cb}};
  static const q_grpc_method_t ret[] = {{"Search", Q_GRPC_UNARY, search_cb}};
  static const q_grpc_method_t rr[] = {{"Rerank", Q_GRPC_UNARY, rerank_cb}};
  static const q_grpc_method_t llm[] = {{"Embed", Q_GRPC_UNARY, embed_cb},
                                        {"Generate", Q_GRPC_SERVER_STREAM, generate_cb}};
  static const q_grpc_method_t fb[] = {{"RecordQuery", Q_GRPC_UNARY, record_cb}};
  cr_assert_eq(
      q_grpc_server_add_service(f->srv, &quarry__v1__auth__descriptor, auth, 1, f), 0);
  cr_assert_eq(
      q_grpc_server_add_service(f->srv, &quarry__v1__retriever__descriptor, ret, 1, f),
      0);
  cr_assert_eq(
      q_grpc_server_add_service(f->srv, &quarry__v1__reranker__descriptor, rr, 1, f), 0);
  cr_assert_eq(
      q_grpc_server_add_service(f->srv, &quarry__v1__llm_gateway__descriptor, llm, 2, f),
      0);
  cr_assert_eq(
      q_grpc_server_add_service(f->srv, &quarry__v1__feedback__descriptor, fb, 1, f), 0);
  int port = q_grpc_server_start(f->srv);
  cr_assert_gt(port, 0);
  snprintf(f->addr, sizeof f->addr, "127.0.0.1:%d", port);
}

void gwfake_stop(gwfake_t *f) {
  atomic_store(&f->freeze_search, 0);
  if (f->srv)
    q_grpc_server_shutdown(f->srv, 1000);
  f->srv = NULL;
}
