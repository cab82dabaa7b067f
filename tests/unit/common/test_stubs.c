/* test_stubs.c - the generated typed client stubs (quarry/stubs.h) against
 * services on loopback gRPC: each stub reaches the method it is named after,
 * replies arrive typed, errors arrive as q_err_t with the server's message,
 * and the streaming wrappers carry their method's messages. */
#include "quarry/error.h"
#include "quarry/metrics.h"
#include "quarry/stubs.h"

#include "grpctest.h"
#include "scrape.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static char err[256];

/* Retriever/Search: one passage per query word, scored by position; query
 * "bad" fails with INVALID_ARGUMENT. */
static int search_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                     ProtobufCMessage **out, void *ud) {
  const Quarry__V1__SearchRequest *req = (const Quarry__V1__SearchRequest *)in;
  if (strcmp(req->query, "bad") == 0) {
    q_grpc_ctx_errorf(ctx, "query is bad");
    return Q_EINVAL;
  }
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__SearchResponse *r = q_arena_alloc(a, sizeof *r);
  quarry__v1__search_response__init(r);
  r->passages = q_arena_alloc(a, 8 * sizeof *r->passages);
  char *copy = q_arena_strdup(a, req->query), *save = NULL;
  for (char *w = strtok_r(copy, " ", &save); w && r->n_passages < 8;
       w = strtok_r(NULL, " ", &save)) {
    Quarry__V1__Passage *p = q_arena_alloc(a, sizeof *p);
    quarry__v1__passage__init(p);
    p->chunk_id = w;
    p->doc_id = req->tenant_id;
    p->score = 1.0f / (float)(r->n_passages + 1);
    r->passages[r->n_passages++] = p;
  }
  *out = &r->base;
  return 0;
}

/* Retriever/Stats: fixed figures, so a call that lands here is told apart
 * from one that lands on Search. */
static int stats_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in, ProtobufCMessage **out,
                    void *ud) {
  Quarry__V1__StatsResponse *r = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *r);
  quarry__v1__stats_response__init(r);
  r->chunks = 7;
  r->documents = 3;
  *out = &r->base;
  return 0;
}

/* Upsert has no handler: UNIMPLEMENTED. */
static const q_grpc_method_t retriever[] = {
    {"Search", Q_GRPC_UNARY, search_cb},
    {"Stats", Q_GRPC_UNARY, stats_cb},
};

/* LlmGateway/Generate: streams the query back word by word, then done. */
static int generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                       ProtobufCMessage **out, void *ud) {
  const Quarry__V1__GenerateRequest *req = (const Quarry__V1__GenerateRequest *)in;
  char *copy = q_arena_strdup(q_grpc_ctx_arena(ctx), req->query), *save = NULL;
  for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
    Quarry__V1__GenerateResponse m = QUARRY__V1__GENERATE_RESPONSE__INIT;
    m.text = w;
    if (q_grpc_ctx_send(ctx, &m.base))
      return Q_ECANCELLED;
  }
  Quarry__V1__GenerateResponse done = QUARRY__V1__GENERATE_RESPONSE__INIT;
  done.done = 1;
  return q_grpc_ctx_send(ctx, &done.base);
}

static const q_grpc_method_t llm[] = {{"Generate", Q_GRPC_SERVER_STREAM, generate_cb}};

/* Ingestion/Upload: the header's title as document id, the bytes as version;
 * a first message without header fails with INVALID_ARGUMENT. */
static int upload_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                     ProtobufCMessage **out, void *ud) {
  const char *title = NULL;
  size_t bytes = 0;
  for (;;) {
    ProtobufCMessage *m = NULL;
    int rc = q_grpc_ctx_recv(ctx, &m);
    if (rc)
      return rc;
    if (!m)
      break;
    const Quarry__V1__UploadRequest *u = (const Quarry__V1__UploadRequest *)m;
    if (!title && !u->header) {
      q_grpc_ctx_errorf(ctx, "first message must carry the header");
      return Q_EINVAL;
    }
    if (!title)
      title = u->header->title;
    bytes += u->data.len;
  }
  Quarry__V1__UploadResponse *r = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *r);
  quarry__v1__upload_response__init(r);
  r->document_id = (char *)title;
  r->version = (int32_t)bytes;
  *out = &r->base;
  return 0;
}

static const q_grpc_method_t ingestion[] = {{"Upload", Q_GRPC_CLIENT_STREAM, upload_cb}};

#define START(t, svc, methods)                                                           \
  grpctest_start(&(t), &quarry__v1__##svc##__descriptor, methods,                        \
                 sizeof methods / sizeof methods[0], NULL)

TestSuite(stubs, .timeout = 30);

Test(stubs, unary_stub_returns_the_typed_reply) {
  grpctest_t t;
  START(t, retriever, retriever);
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = "acme";
  req.query = "refund policy";
  Quarry__V1__SearchResponse *resp = NULL;
  cr_assert_eq(grpctest_call(&t, q_rpc_retriever_search, &req, &resp, err, sizeof err), 0,
               "%s", err);
  cr_assert_not_null(resp);
  cr_assert_eq(resp->base.descriptor, &quarry__v1__search_response__descriptor);
  cr_assert_eq(resp->n_passages, 2);
  cr_assert_str_eq(resp->passages[0]->chunk_id, "refund");
  cr_assert_str_eq(resp->passages[1]->chunk_id, "policy");
  cr_assert_str_eq(resp->passages[1]->doc_id, "acme");
  cr_assert_float_eq(resp->passages[1]->score, 0.5f, 1e-6);
  grpctest_stop(&t);
}

Test(stubs, each_stub_reaches_its_own_method) {
  grpctest_t t;
  START(t, retriever, retriever);
  Quarry__V1__StatsRequest req = QUARRY__V1__STATS_REQUEST__INIT;
  Quarry__V1__StatsResponse *resp = NULL;
  cr_assert_eq(grpctest_call(&t, q_rpc_retriever_stats, &req, &resp, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(resp->base.descriptor, &quarry__v1__stats_response__descriptor);
  cr_assert_eq(resp->chunks, 7);
  cr_assert_eq(resp->documents, 3);
  /* The client metrics name the method the stub called. */
  cr_assert_geq(scrape_value("grpc_client_handled_total{grpc_type=\"unary\","
                             "grpc_service=\"quarry.v1.Retriever\",grpc_method=\"Stats\","
                             "grpc_code=\"OK\"} "),
                1);
  grpctest_stop(&t);
}

Test(stubs, errors_come_back_as_q_err_with_the_message_and_no_reply) {
  grpctest_t t;
  START(t, retriever, retriever);
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.query = "bad";
  Quarry__V1__SearchResponse *resp =
      (Quarry__V1__SearchResponse *)&req; /* not left as is */
  cr_assert_eq(grpctest_call(&t, q_rpc_retriever_search, &req, &resp, err, sizeof err),
               Q_EINVAL);
  cr_assert_str_eq(err, "query is bad");
  cr_assert_null(resp);

  /* A method the server has no handler for. */
  Quarry__V1__UpsertRequest up = QUARRY__V1__UPSERT_REQUEST__INIT;
  Quarry__V1__UpsertResponse *uresp = NULL;
  cr_assert_eq(grpctest_call(&t, q_rpc_retriever_upsert, &up, &uresp, err, sizeof err),
               Q_EUNIMPL);
  cr_assert_null(uresp);
  grpctest_stop(&t);

  /* Nobody listening: UNAVAILABLE, with a message. */
  q_arena_t *a = q_arena_new(0);
  q_grpc_call_opts_t o = {.timeout_ms = 500};
  req.query = "q";
  err[0] = '\0';
  cr_assert_eq(q_rpc_retriever_search(q_grpc_channel("127.0.0.1:1"), &req, &resp, a, &o,
                                      err, sizeof err),
               Q_EUNAVAIL);
  cr_assert_neq(err[0], '\0');
  cr_assert_null(resp);
  q_grpc_client_shutdown();
  q_arena_free(a);
}

Test(stubs, health_check_stub) {
  grpctest_t t;
  START(t, retriever, retriever);
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = "quarry.v1.Retriever";
  Grpc__Health__V1__HealthCheckResponse *resp = NULL;
  cr_assert_eq(grpctest_call(&t, q_rpc_health_check, &req, &resp, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(resp->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  req.service = "quarry.v1.Nothing";
  cr_assert_eq(grpctest_call(&t, q_rpc_health_check, &req, &resp, err, sizeof err),
               Q_ENOTFOUND);
  grpctest_stop(&t);
}

Test(stubs, server_streaming_wrappers_carry_typed_messages) {
  grpctest_t t;
  START(t, llm_gateway, llm);
  q_rpc_llm_gateway_generate_call_t *c =
      q_rpc_llm_gateway_generate_start(q_grpc_channel(t.target), &grpctest_opts);
  cr_assert_not_null(c);
  Quarry__V1__GenerateRequest req = QUARRY__V1__GENERATE_REQUEST__INIT;
  req.query = "alpha beta";
  cr_assert_eq(q_rpc_llm_gateway_generate_send(c, &req), 0);
  cr_assert_eq(q_rpc_llm_gateway_generate_close_send(c), 0);
  char words[64] = "";
  int n = 0, done = 0;
  for (;;) {
    Quarry__V1__GenerateResponse *m = NULL;
    cr_assert_eq(q_rpc_llm_gateway_generate_recv(c, t.arena, &m), 0);
    if (!m)
      break;
    n++;
    if (m->done)
      done = 1;
    else
      strncat(words, m->text, sizeof words - strlen(words) - 1);
  }
  cr_assert_eq(q_rpc_llm_gateway_generate_finish(c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(words, "alphabeta");
  cr_assert_eq(n, 3);
  cr_assert(done);
  /* The stub labels the call with the method's kind, not the options'. */
  cr_assert_geq(scrape_value("grpc_client_handled_total{grpc_type=\"server_stream\","
                             "grpc_service=\"quarry.v1.LlmGateway\","
                             "grpc_method=\"Generate\",grpc_code=\"OK\"} "),
                1);
  grpctest_stop(&t);
}

Test(stubs, client_streaming_wrappers_carry_typed_messages) {
  grpctest_t t;
  START(t, ingestion, ingestion);
  q_rpc_ingestion_upload_call_t *c =
      q_rpc_ingestion_upload_start(q_grpc_channel(t.target), &grpctest_opts);
  cr_assert_not_null(c);
  Quarry__V1__UploadHeader h = QUARRY__V1__UPLOAD_HEADER__INIT;
  h.title = "notes";
  static uint8_t block[1000];
  for (int i = 0; i < 3; i++) {
    Quarry__V1__UploadRequest u = QUARRY__V1__UPLOAD_REQUEST__INIT;
    u.header = i == 0 ? &h : NULL;
    u.data.data = block;
    u.data.len = sizeof block;
    cr_assert_eq(q_rpc_ingestion_upload_send(c, &u), 0);
  }
  cr_assert_eq(q_rpc_ingestion_upload_close_send(c), 0);
  Quarry__V1__UploadResponse *resp = NULL;
  cr_assert_eq(q_rpc_ingestion_upload_recv(c, t.arena, &resp), 0);
  cr_assert_eq(q_rpc_ingestion_upload_finish(c, err, sizeof err), 0, "%s", err);
  cr_assert_not_null(resp);
  cr_assert_str_eq(resp->document_id, "notes");
  cr_assert_eq(resp->version, 3000);

  /* The server's error reaches finish; a cancelled call reports CANCELLED. */
  c = q_rpc_ingestion_upload_start(q_grpc_channel(t.target), &grpctest_opts);
  Quarry__V1__UploadRequest bad = QUARRY__V1__UPLOAD_REQUEST__INIT;
  q_rpc_ingestion_upload_send(c, &bad);
  q_rpc_ingestion_upload_close_send(c);
  resp = NULL;
  q_rpc_ingestion_upload_recv(c, t.arena, &resp);
  cr_assert_null(resp);
  cr_assert_eq(q_rpc_ingestion_upload_finish(c, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "first message must carry the header");
  c = q_rpc_ingestion_upload_start(q_grpc_channel(t.target), &grpctest_opts);
  q_rpc_ingestion_upload_cancel(c);
  cr_assert_eq(q_rpc_ingestion_upload_finish(c, err, sizeof err), Q_ECANCELLED);
  grpctest_stop(&t);
}
