/* test_grpc.c - the gRPC adapter end to end over loopback: unary, server- and
 * client-streaming calls, status codes, deadlines, metadata propagation,
 * retries and graceful shutdown. The handlers are the test's own, mounted on
 * real Quarry service descriptors. */
#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"

#include "grpc/health/v1/health.pb-c.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/v1/reranker.pb-c.h"
#include "quarry/v1/retriever.pb-c.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A deadline crosses the wire in whole milliseconds, rounded up: the
 * handler may see one more than the caller gave. */
#define ROUNDING_MS 1

static q_grpc_server_t *srv;
static char target[64];
static char seen_trace[64];
static int64_t seen_ms_left;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Rerank: echoes the passages in reverse order; query "slow" sleeps 400 ms,
 * query "bad" fails with INVALID_ARGUMENT. */
static q_err_t rerank_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  const Quarry__V1__RerankRequest *req = (const Quarry__V1__RerankRequest *)in;
  const char *t = q_trace_id();
  snprintf(seen_trace, sizeof seen_trace, "%s", t);
  seen_ms_left = q_grpc_ctx_ms_left(ctx);
  if (strcmp(req->query, "bad") == 0) {
    q_grpc_ctx_errorf(ctx, "query is bad");
    return Q_EINVAL;
  }
  if (strcmp(req->query, "slow") == 0)
    sleep_ms(400);
  q_arena_t *a = q_grpc_ctx_arena(ctx);
  Quarry__V1__RerankResponse *r = q_arena_alloc(a, sizeof *r);
  quarry__v1__rerank_response__init(r);
  r->n_passages = req->n_passages;
  r->passages = q_arena_alloc(a, sizeof(*r->passages) * (req->n_passages + 1));
  for (size_t i = 0; i < req->n_passages; i++)
    r->passages[i] = req->passages[req->n_passages - 1 - i];
  *out = &r->base;
  return 0;
}

/* Generate: streams the query back word by word. */
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

/* Upload: counts the bytes of every message after the header. */
static q_err_t upload_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  size_t bytes = 0, msgs = 0;
  for (;;) {
    ProtobufCMessage *m = NULL;
    int rc = q_grpc_ctx_recv(ctx, &m);
    if (rc)
      return rc;
    if (!m)
      break;
    const Quarry__V1__UploadRequest *u = (const Quarry__V1__UploadRequest *)m;
    if (msgs++ == 0 && !u->header) {
      q_grpc_ctx_errorf(ctx, "first message must carry the header");
      return Q_EINVAL;
    }
    bytes += u->data.len;
  }
  Quarry__V1__UploadResponse *r = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *r);
  quarry__v1__upload_response__init(r);
  r->version = (int32_t)bytes;
  r->document_id = q_arena_printf(q_grpc_ctx_arena(ctx), "msgs=%zu", msgs);
  *out = &r->base;
  return 0;
}

static q_err_t search_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                         ProtobufCMessage **out, void *ud) {
  return 0; /* empty reply */
}

static void setup(void) {
  q_grpc_server_opts_t o = {
      .addr = "127.0.0.1:0", .threads = 4, .max_msg_bytes = 1 << 20};
  srv = q_grpc_server_new(&o);
  cr_assert_not_null(srv);
  static const q_grpc_method_t rr[] = {{"Rerank", Q_GRPC_UNARY, rerank_cb}};
  static const q_grpc_method_t llm[] = {{"Generate", Q_GRPC_SERVER_STREAM, generate_cb}};
  static const q_grpc_method_t ing[] = {{"Upload", Q_GRPC_CLIENT_STREAM, upload_cb}};
  static const q_grpc_method_t ret[] = {{"Search", Q_GRPC_UNARY, search_cb}};
  cr_assert_eq(
      q_grpc_server_add_service(srv, &quarry__v1__reranker__descriptor, rr, 1, NULL), 0);
  cr_assert_eq(
      q_grpc_server_add_service(srv, &quarry__v1__llm_gateway__descriptor, llm, 1, NULL),
      0);
  cr_assert_eq(
      q_grpc_server_add_service(srv, &quarry__v1__ingestion__descriptor, ing, 1, NULL),
      0);
  cr_assert_eq(
      q_grpc_server_add_service(srv, &quarry__v1__retriever__descriptor, ret, 1, NULL),
      0);
  int port = q_grpc_server_start(srv);
  cr_assert_gt(port, 0);
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
}

static void teardown(void) {
  if (srv)
    q_grpc_server_shutdown(srv, 1000);
  srv = NULL;
  q_grpc_client_shutdown();
}

static int rerank(const char *query, int timeout_ms, Quarry__V1__RerankResponse **resp,
                  q_arena_t *a, char *err, size_t errlen) {
  Quarry__V1__Passage p1 = QUARRY__V1__PASSAGE__INIT, p2 = QUARRY__V1__PASSAGE__INIT;
  p1.chunk_id = "one";
  p2.chunk_id = "two";
  Quarry__V1__Passage *ps[] = {&p1, &p2};
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = (char *)query;
  req.n_passages = 2;
  req.passages = ps;
  q_grpc_call_opts_t o = {.timeout_ms = timeout_ms};
  return q_rpc_reranker_rerank(q_grpc_channel(target), &req, resp, a, &o, err, errlen);
}

TestSuite(grpc, .init = setup, .fini = teardown, .timeout = 30);

Test(grpc, unary_round_trip) {
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankResponse *r = NULL;
  char err[256];
  cr_assert_eq(rerank("q", 2000, &r, a, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r->n_passages, 2);
  cr_assert_str_eq(r->passages[0]->chunk_id, "two");
  cr_assert_str_eq(r->passages[1]->chunk_id, "one");
  q_arena_free(a);
}

Test(grpc, handler_error_becomes_status_with_message) {
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankResponse *r = NULL;
  char err[256];
  cr_assert_eq(rerank("bad", 2000, &r, a, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "query is bad");
  cr_assert_null(r);
  q_arena_free(a);
}

Test(grpc, deadline_exceeded_and_propagated) {
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankResponse *r = NULL;
  char err[256];
  int64_t t0 = q_now_ms();
  cr_assert_eq(rerank("slow", 100, &r, a, err, sizeof err), Q_ETIMEDOUT);
  cr_assert_lt(q_now_ms() - t0, 350, "call must give up at its deadline");
  /* The handler saw the caller's deadline. */
  cr_assert_leq(seen_ms_left, 100 + ROUNDING_MS);
  /* An inherited (thread) deadline caps a longer per-call timeout. */
  q_trace_set("0123456789abcdef0123456789abcdef", q_now_ms() + 150);
  cr_assert_eq(rerank("q", 5000, &r, a, err, sizeof err), 0, "%s", err);
  cr_assert_leq(seen_ms_left, 150 + ROUNDING_MS);
  cr_assert_str_eq(seen_trace, "0123456789abcdef0123456789abcdef");
  q_trace_clear();
  q_arena_free(a);
}

Test(grpc, options_deadline_and_trace_id) {
  /* opts->deadline_ms caps the per-attempt timeout of a blocking call too,
   * and opts->trace_id wins over the thread's. */
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = "q";
  Quarry__V1__RerankResponse *r = NULL;
  char err[256];
  q_trace_set("ffffffffffffffffffffffffffffffff", 0);
  q_grpc_call_opts_t o = {.timeout_ms = 5000,
                          .deadline_ms = q_now_ms() + 150,
                          .trace_id = "0123456789abcdef0123456789abcdef"};
  cr_assert_eq(
      q_rpc_reranker_rerank(q_grpc_channel(target), &req, &r, a, &o, err, sizeof err), 0,
      "%s", err);
  cr_assert_leq(seen_ms_left, 150 + ROUNDING_MS);
  cr_assert_str_eq(seen_trace, "0123456789abcdef0123456789abcdef");
  req.query = "slow";
  o.deadline_ms = q_now_ms() + 100;
  cr_assert_eq(
      q_rpc_reranker_rerank(q_grpc_channel(target), &req, &r, a, &o, err, sizeof err),
      Q_ETIMEDOUT);
  /* A trace id that could not travel as metadata is refused. */
  o.trace_id = "not a trace id";
  cr_assert_eq(
      q_rpc_reranker_rerank(q_grpc_channel(target), &req, &r, a, &o, err, sizeof err),
      Q_EINTERNAL);
  q_trace_clear();
  q_arena_free(a);
}

Test(grpc, server_streaming) {
  Quarry__V1__GenerateRequest req = QUARRY__V1__GENERATE_REQUEST__INIT;
  req.query = "alpha beta gamma";
  q_grpc_call_opts_t o = {.timeout_ms = 2000, .kind = Q_GRPC_SERVER_STREAM};
  q_grpc_call_t *c = q_grpc_call_start(
      q_grpc_channel(target), &quarry__v1__llm_gateway__descriptor, "Generate", &o);
  cr_assert_not_null(c);
  cr_assert_eq(q_grpc_call_send(c, &req.base), 0);
  cr_assert_eq(q_grpc_call_close_send(c), 0);
  q_arena_t *a = q_arena_new(0);
  char words[128] = "";
  int done = 0, n = 0;
  for (;;) {
    ProtobufCMessage *m = NULL;
    cr_assert_eq(q_grpc_call_recv(c, a, &m), 0);
    if (!m)
      break;
    Quarry__V1__GenerateResponse *g = (Quarry__V1__GenerateResponse *)m;
    if (g->done)
      done = 1;
    else
      strncat(words, g->text, sizeof words - strlen(words) - 1);
    n++;
  }
  char err[128];
  cr_assert_eq(q_grpc_call_finish(c, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(words, "alphabetagamma");
  cr_assert_eq(n, 4);
  cr_assert(done);
  q_arena_free(a);
}

Test(grpc, client_streaming) {
  q_grpc_call_opts_t o = {.timeout_ms = 5000, .kind = Q_GRPC_CLIENT_STREAM};
  q_grpc_call_t *c = q_grpc_call_start(q_grpc_channel(target),
                                       &quarry__v1__ingestion__descriptor, "Upload", &o);
  Quarry__V1__UploadHeader h = QUARRY__V1__UPLOAD_HEADER__INIT;
  h.tenant_id = "t";
  static uint8_t block[100000];
  for (int i = 0; i < 20; i++) {
    Quarry__V1__UploadRequest u = QUARRY__V1__UPLOAD_REQUEST__INIT;
    if (i == 0)
      u.header = &h;
    u.data.data = block;
    u.data.len = sizeof block;
    cr_assert_eq(q_grpc_call_send(c, &u.base), 0);
  }
  cr_assert_eq(q_grpc_call_close_send(c), 0);
  q_arena_t *a = q_arena_new(0);
  ProtobufCMessage *m = NULL;
  cr_assert_eq(q_grpc_call_recv(c, a, &m), 0);
  cr_assert_not_null(m);
  char err[128];
  cr_assert_eq(q_grpc_call_finish(c, err, sizeof err), 0, "%s", err);
  Quarry__V1__UploadResponse *r = (Quarry__V1__UploadResponse *)m;
  cr_assert_eq(r->version, 20 * 100000);
  cr_assert_str_eq(r->document_id, "msgs=20");
  q_arena_free(a);
}

Test(grpc, client_streaming_error_status) {
  q_grpc_call_opts_t o = {.timeout_ms = 2000, .kind = Q_GRPC_CLIENT_STREAM};
  q_grpc_call_t *c = q_grpc_call_start(q_grpc_channel(target),
                                       &quarry__v1__ingestion__descriptor, "Upload", &o);
  Quarry__V1__UploadRequest u = QUARRY__V1__UPLOAD_REQUEST__INIT; /* no header */
  q_grpc_call_send(c, &u.base);
  q_grpc_call_close_send(c);
  q_arena_t *a = q_arena_new(0);
  ProtobufCMessage *m = NULL;
  q_grpc_call_recv(c, a, &m);
  char err[128];
  cr_assert_eq(q_grpc_call_finish(c, err, sizeof err), Q_EINVAL);
  cr_assert_str_eq(err, "first message must carry the header");
  q_arena_free(a);
}

Test(grpc, method_without_handler_is_unimplemented) {
  Quarry__V1__StatsRequest req = QUARRY__V1__STATS_REQUEST__INIT;
  q_arena_t *a = q_arena_new(0);
  ProtobufCMessage *r = NULL;
  char err[128];
  cr_assert_eq(q_grpc_unary(q_grpc_channel(target), &quarry__v1__retriever__descriptor,
                            "Stats", &req.base, &r, a, NULL, err, sizeof err),
               Q_EUNIMPL);
  /* An empty reply from a handler arrives as an empty message. */
  Quarry__V1__SearchRequest s = QUARRY__V1__SEARCH_REQUEST__INIT;
  cr_assert_eq(q_grpc_unary(q_grpc_channel(target), &quarry__v1__retriever__descriptor,
                            "Search", &s.base, &r, a, NULL, err, sizeof err),
               0, "%s", err);
  cr_assert_not_null(r);
  q_arena_free(a);
}

Test(grpc, health_check) {
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  q_arena_t *a = q_arena_new(0);
  Grpc__Health__V1__HealthCheckResponse *r = NULL;
  char err[128];
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(target), &req, &r, a, NULL, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(r->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  q_grpc_server_set_serving(srv, 0);
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(target), &req, &r, a, NULL, err, sizeof err), 0);
  cr_assert_eq(r->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  req.service = "no.such.Service";
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(target), &req, &r, a, NULL, err, sizeof err),
      Q_ENOTFOUND);
  q_arena_free(a);
}

static atomic_int ready_flag;
static bool ready_cb(void *ud) {
  (void)ud;
  return atomic_load(&ready_flag) != 0;
}

Test(grpc, health_check_follows_the_readiness_callback) {
  q_grpc_server_opts_t o = {.addr = "127.0.0.1:0", .threads = 2};
  q_grpc_server_t *s = q_grpc_server_new(&o);
  cr_assert_not_null(s);
  q_grpc_server_set_health_cb(s, ready_cb, NULL);
  int port = q_grpc_server_start(s);
  cr_assert_gt(port, 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Grpc__Health__V1__HealthCheckResponse *r = NULL;
  q_arena_t *a = q_arena_new(0);
  char err[128];
  atomic_store(&ready_flag, 0);
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(addr), &req, &r, a, NULL, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(r->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  atomic_store(&ready_flag, 1);
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(addr), &req, &r, a, NULL, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(r->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  /* Ready or not, a server marked not serving (stopping) says so. */
  q_grpc_server_set_serving(s, 0);
  cr_assert_eq(
      q_rpc_health_check(q_grpc_channel(addr), &req, &r, a, NULL, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(r->status,
               GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  q_arena_free(a);
  q_grpc_server_shutdown(s, 0);
}

Test(grpc, unavailable_is_retried_then_reported) {
  /* A port nobody listens on: bind and close to get one. */
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = "q";
  ProtobufCMessage *r = NULL;
  char err[256];
  q_grpc_call_opts_t o = {.timeout_ms = 500, .idempotent = 1, .max_attempts = 3};
  int64_t t0 = q_now_ms();
  int rc = q_grpc_unary(q_grpc_channel("127.0.0.1:1"), &quarry__v1__reranker__descriptor,
                        "Rerank", &req.base, &r, a, &o, err, sizeof err);
  cr_assert_eq(rc, Q_EUNAVAIL, "got %s: %s", q_err_name(rc), err);
  cr_assert_lt(q_now_ms() - t0, 3000);
  q_arena_free(a);
}

static void *slow_call(void *arg) {
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__RerankResponse *r = NULL;
  char err[256];
  *(int *)arg = rerank("slow", 5000, &r, a, err, sizeof err);
  q_arena_free(a);
  return NULL;
}

Test(grpc, shutdown_lets_in_flight_calls_finish) {
  int rc = -1;
  pthread_t t;
  pthread_create(&t, NULL, slow_call, &rc);
  sleep_ms(100); /* the call is now inside its 400 ms handler */
  q_grpc_server_shutdown(srv, 3000);
  srv = NULL;
  pthread_join(t, NULL);
  cr_assert_eq(rc, 0, "in-flight call got %s", q_err_name(rc));
}

static atomic_int upload_rc = 1;

static int counting_upload_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                              ProtobufCMessage **out, void *ud) {
  for (;;) {
    ProtobufCMessage *m = NULL;
    int rc = q_grpc_ctx_recv(ctx, &m);
    if (rc || !m) {
      atomic_store(&upload_rc, rc);
      return rc;
    }
  }
}

Test(grpc, cancelled_client_stream_is_not_end_of_stream) {
  /* A second server whose Upload handler records how its stream ended. */
  q_grpc_server_opts_t o = {.addr = "127.0.0.1:0", .threads = 2};
  q_grpc_server_t *s2 = q_grpc_server_new(&o);
  static const q_grpc_method_t ing[] = {
      {"Upload", Q_GRPC_CLIENT_STREAM, counting_upload_cb}};
  q_grpc_server_add_service(s2, &quarry__v1__ingestion__descriptor, ing, 1, NULL);
  int port = q_grpc_server_start(s2);
  char t2[64];
  snprintf(t2, sizeof t2, "127.0.0.1:%d", port);
  for (int cancel = 1; cancel >= 0; cancel--) {
    atomic_store(&upload_rc, 1);
    q_grpc_call_opts_t co = {.timeout_ms = 2000, .kind = Q_GRPC_CLIENT_STREAM};
    q_grpc_call_t *c = q_grpc_call_start(
        q_grpc_channel(t2), &quarry__v1__ingestion__descriptor, "Upload", &co);
    Quarry__V1__UploadRequest u = QUARRY__V1__UPLOAD_REQUEST__INIT;
    cr_assert_eq(q_grpc_call_send(c, &u.base), 0);
    if (cancel)
      q_grpc_call_cancel(c);
    char err[128];
    int rc = q_grpc_call_finish(c, err, sizeof err);
    for (int i = 0; i < 100 && atomic_load(&upload_rc) == 1; i++)
      sleep_ms(10);
    if (cancel) {
      cr_assert_eq(rc, Q_ECANCELLED, "got %s", q_err_name(rc));
      cr_assert_eq(atomic_load(&upload_rc), Q_ECANCELLED,
                   "handler saw a complete stream");
    } else {
      cr_assert_eq(rc, 0, "%s", err);
      cr_assert_eq(atomic_load(&upload_rc), 0);
    }
  }
  q_grpc_server_shutdown(s2, 1000);
}
