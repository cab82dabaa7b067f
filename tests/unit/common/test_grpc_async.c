/* test_grpc_async.c - the asynchronous gRPC client over loopback, through the
 * typed async stubs: replies, statuses, deadlines, cancellation (the server
 * sees it), retries, many calls on a few loop threads, server streaming with
 * flow control, and shutdown with calls in flight. The server is the
 * grpctest fixture serving LlmGateway (Embed unary, Generate streaming) with
 * the test's own handlers. */
#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"

#include "grpctest.h"
#include "loopback.h"
#include "scrape.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A deadline crosses the wire in whole milliseconds, rounded up: the
 * handler may see one more than the caller gave. */
#define ROUNDING_MS 1

#define TRACE "0123456789abcdef0123456789abcdef"

static grpctest_t srv;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- the server's side ---------------------------------------------------- */

static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char seen_trace[80], seen_auth[80];
static int64_t seen_ms_left;
static atomic_int watch_entered, watch_saw_cancel;
static atomic_int stream_server_rc = 1;

/* Embed handlers held until the test opens the gate. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static atomic_int in_gate;

static void gate_set(bool open) {
  pthread_mutex_lock(&gate_lock);
  gate_open = open;
  pthread_cond_broadcast(&gate_cond);
  pthread_mutex_unlock(&gate_lock);
}

/* Embed: model selects the behaviour; the reply echoes texts[0] as model and
 * the number of texts as dim. "bad" fails, "slow" sleeps 400 ms, "watch"
 * waits until the call is cancelled (up to 3 s), "gate" waits for the gate. */
static q_err_t embed_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                        ProtobufCMessage **out, void *ud) {
  const Quarry__V1__EmbedRequest *req = (const Quarry__V1__EmbedRequest *)in;
  const char *auth = q_grpc_ctx_metadata(ctx, "authorization");
  pthread_mutex_lock(&seen_lock);
  snprintf(seen_trace, sizeof seen_trace, "%s", q_trace_id());
  snprintf(seen_auth, sizeof seen_auth, "%s", auth ? auth : "");
  seen_ms_left = q_grpc_ctx_ms_left(ctx);
  pthread_mutex_unlock(&seen_lock);
  const char *model = req->model ? req->model : "";
  if (strcmp(model, "bad") == 0) {
    q_grpc_ctx_errorf(ctx, "model is bad");
    return Q_EINVAL;
  }
  if (strcmp(model, "slow") == 0)
    sleep_ms(400);
  if (strcmp(model, "watch") == 0) {
    atomic_store(&watch_entered, 1);
    for (int i = 0; i < 600 && !q_grpc_ctx_cancelled(ctx); i++)
      sleep_ms(5);
    atomic_store(&watch_saw_cancel, q_grpc_ctx_cancelled(ctx));
    return Q_ECANCELLED;
  }
  if (strcmp(model, "gate") == 0) {
    atomic_fetch_add(&in_gate, 1);
    pthread_mutex_lock(&gate_lock);
    while (!gate_open)
      pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
  }
  Quarry__V1__EmbedResponse *r = q_arena_alloc(q_grpc_ctx_arena(ctx), sizeof *r);
  quarry__v1__embed_response__init(r);
  r->model = req->n_texts ? req->texts[0] : "";
  r->dim = (int32_t)req->n_texts;
  *out = &r->base;
  return Q_OK;
}

/* Generate: "count N" streams "0".."N-1" then ends OK; "fail" streams two
 * messages then fails NOT_FOUND; "endless" streams until the client has
 * gone (up to 3 s) and records how sending ended. */
static q_err_t generate_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                           ProtobufCMessage **out, void *ud) {
  const Quarry__V1__GenerateRequest *req = (const Quarry__V1__GenerateRequest *)in;
  char text[32];
  Quarry__V1__GenerateResponse m = QUARRY__V1__GENERATE_RESPONSE__INIT;
  m.text = text;
  int n = 0;
  if (sscanf(req->query, "count %d", &n) == 1) {
    for (int i = 0; i < n; i++) {
      snprintf(text, sizeof text, "%d", i);
      if (q_grpc_ctx_send(ctx, &m.base))
        return Q_ECANCELLED;
    }
    return Q_OK;
  }
  if (strcmp(req->query, "fail") == 0) {
    for (int i = 0; i < 2; i++) {
      snprintf(text, sizeof text, "%d", i);
      q_grpc_ctx_send(ctx, &m.base);
    }
    q_grpc_ctx_errorf(ctx, "no such model");
    return Q_ENOTFOUND;
  }
  for (int i = 0; i < 300; i++) {
    snprintf(text, sizeof text, "%d", i);
    q_err_t rc = q_grpc_ctx_send(ctx, &m.base);
    if (rc) {
      atomic_store(&stream_server_rc, rc);
      return rc;
    }
    sleep_ms(10);
  }
  atomic_store(&stream_server_rc, 0);
  return Q_OK;
}

static void setup(void) {
  static const q_grpc_method_t llm[] = {
      {"Embed", Q_GRPC_UNARY, embed_cb},
      {"Generate", Q_GRPC_SERVER_STREAM, generate_cb},
  };
  gate_set(false);
  grpctest_start(&srv, &quarry__v1__llm_gateway__descriptor, llm, 2, NULL);
}

static void teardown(void) {
  gate_set(true); /* no handler may stay blocked */
  grpctest_stop(&srv);
}

TestSuite(grpc_async, .init = setup, .fini = teardown, .timeout = 90);

/* ---- the client's side ---------------------------------------------------- */

/* What the callbacks of one call saw, and a way to wait for them. */
typedef struct outcome {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int replies;  /* final callbacks */
  int messages; /* stream messages */
  int at_done;  /* messages seen when on_done ran */
  q_err_t rc;
  Quarry__V1__EmbedResponse *resp;
  char status[256];
  char text[4096]; /* stream: the texts, comma-separated */
  pthread_t thread;
  bool pause;             /* stream: on_message returns false */
  int cancel_after;       /* stream: cancel in on_message after that many */
  bool resume_early;      /* stream: resume in on_message before pausing */
  q_grpc_async_t *handle; /* set by the test before it can be needed */
  int64_t done_ms;        /* q_now_ms() of the final callback */
} outcome_t;

static void outcome_init(outcome_t *o) {
  memset(o, 0, sizeof *o);
  pthread_mutex_init(&o->lock, NULL);
  pthread_cond_init(&o->cond, NULL);
  o->rc = 1;
}

static void outcome_cleanup(outcome_t *o) {
  pthread_mutex_destroy(&o->lock);
  pthread_cond_destroy(&o->cond);
}

/* Waits until *field >= n (up to ms); true when reached. */
static bool outcome_wait(outcome_t *o, const int *field, int n, int ms) {
  int64_t until = q_now_ms() + ms;
  pthread_mutex_lock(&o->lock);
  while (*field < n && q_now_ms() < until) {
    pthread_mutex_unlock(&o->lock);
    sleep_ms(2);
    pthread_mutex_lock(&o->lock);
  }
  bool ok = *field >= n;
  pthread_mutex_unlock(&o->lock);
  return ok;
}

/* Cancels or resumes o's call from this thread, the way the handle's
 * contract asks: under the owner's lock, which the final callback also
 * takes, so the handle is still valid. false when the call had ended. */
static bool outcome_cancel(outcome_t *o) {
  pthread_mutex_lock(&o->lock);
  bool live = o->replies == 0;
  if (live)
    q_grpc_async_cancel(o->handle);
  pthread_mutex_unlock(&o->lock);
  return live;
}

static bool outcome_resume(outcome_t *o) {
  pthread_mutex_lock(&o->lock);
  bool live = o->replies == 0;
  if (live)
    q_grpc_stream_async_resume(o->handle);
  pthread_mutex_unlock(&o->lock);
  return live;
}

static void embed_done(void *ud, q_err_t rc, Quarry__V1__EmbedResponse *resp,
                       const char *status_message) {
  outcome_t *o = ud;
  pthread_mutex_lock(&o->lock);
  o->replies++;
  o->rc = rc;
  o->resp = resp;
  o->thread = pthread_self();
  o->done_ms = q_now_ms();
  snprintf(o->status, sizeof o->status, "%s", status_message);
  pthread_cond_broadcast(&o->cond);
  pthread_mutex_unlock(&o->lock);
}

static bool generate_message(void *ud, Quarry__V1__GenerateResponse *msg) {
  outcome_t *o = ud;
  pthread_mutex_lock(&o->lock);
  size_t len = strlen(o->text);
  snprintf(o->text + len, sizeof o->text - len, "%s%s", len ? "," : "", msg->text);
  o->messages++;
  bool cancel = o->cancel_after && o->messages == o->cancel_after;
  bool more = !o->pause;
  bool early = o->resume_early;
  q_grpc_async_t *h = o->handle;
  pthread_mutex_unlock(&o->lock);
  if (cancel)
    q_grpc_async_cancel(h); /* from the loop thread, inside the callback */
  if (early)
    q_grpc_stream_async_resume(h); /* before the pause it is about to ask for */
  return more;
}

static void generate_done(void *ud, q_err_t rc, const char *status_message) {
  outcome_t *o = ud;
  pthread_mutex_lock(&o->lock); /* orders outcome_cancel before the free */
  o->replies++;
  o->at_done = o->messages;
  o->rc = rc;
  o->thread = pthread_self();
  o->done_ms = q_now_ms();
  snprintf(o->status, sizeof o->status, "%s", status_message);
  pthread_mutex_unlock(&o->lock);
}

static void untyped_done(void *ud, q_err_t rc, ProtobufCMessage *resp,
                         const char *status_message) {
  outcome_t *o = ud;
  pthread_mutex_lock(&o->lock);
  o->replies++;
  pthread_mutex_unlock(&o->lock);
}

static q_err_t embed_async(const char *target, const char *model, const char *text,
                           q_grpc_call_opts_t *opts, q_arena_t *arena, outcome_t *o) {
  char *texts[] = {(char *)text};
  Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
  req.model = (char *)model;
  req.texts = texts;
  req.n_texts = 1;
  /* Started under the owner's lock, which the callbacks take too: the call
   * may complete before the start returns, and its callbacks then wait
   * until o->handle is stored. */
  pthread_mutex_lock(&o->lock);
  q_err_t rc = q_rpc_llm_gateway_embed_async(q_grpc_channel(target), &req, arena, opts,
                                             embed_done, o, &o->handle);
  pthread_mutex_unlock(&o->lock);
  return rc;
}

static q_err_t generate_async(const char *query, q_grpc_call_opts_t *opts,
                              q_arena_t *arena, outcome_t *o) {
  Quarry__V1__GenerateRequest req = QUARRY__V1__GENERATE_REQUEST__INIT;
  req.query = (char *)query;
  pthread_mutex_lock(&o->lock);
  q_err_t rc = q_rpc_llm_gateway_generate_async_start(q_grpc_channel(srv.target), &req,
                                                      arena, opts, generate_message,
                                                      generate_done, o, &o->handle);
  pthread_mutex_unlock(&o->lock);
  return rc;
}

static int count_threads(void) {
  DIR *d = opendir("/proc/self/task");
  cr_assert_not_null(d);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n;
}

#define EMBED_LABELS                                                                     \
  "grpc_type=\"unary\",grpc_service=\"quarry.v1.LlmGateway\",grpc_method=\"Embed\""

/* ---- unary ------------------------------------------------------------------ */

Test(grpc_async, typed_reply_with_trace_and_authorization) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  double handled0 =
      scrape_value("grpc_client_handled_total{" EMBED_LABELS ",grpc_code=\"OK\"} ");
  /* The thread's context is not the call's: only opts count. */
  q_trace_set("ffffffffffffffffffffffffffffffff", q_now_ms() + 1);
  q_grpc_call_opts_t opts = {
      .timeout_ms = 5000, .trace_id = TRACE, .authorization = "Bearer k"};
  cr_assert_eq(embed_async(srv.target, "", "hello", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, 0, "%s: %s", q_err_name(o.rc), o.status);
  cr_assert_not_null(o.resp);
  cr_assert_str_eq(o.resp->model, "hello");
  cr_assert_eq(o.resp->dim, 1);
  cr_assert_str_eq(o.status, "");
  cr_assert(!pthread_equal(o.thread, pthread_self()), "callbacks run on a loop thread");
  pthread_mutex_lock(&seen_lock);
  cr_assert_str_eq(seen_trace, TRACE);
  cr_assert_str_eq(seen_auth, "Bearer k");
  cr_assert_gt(seen_ms_left, 1000, "the thread's deadline must not apply");
  pthread_mutex_unlock(&seen_lock);

  /* Without a trace id none is sent: the server makes its own. */
  outcome_t o2;
  outcome_init(&o2);
  q_grpc_call_opts_t plain = {.timeout_ms = 5000};
  cr_assert_eq(embed_async(srv.target, "", "again", &plain, a, &o2), 0);
  cr_assert(outcome_wait(&o2, &o2.replies, 1, 5000));
  cr_assert_eq(o2.rc, 0);
  pthread_mutex_lock(&seen_lock);
  cr_assert_str_neq(seen_trace, "ffffffffffffffffffffffffffffffff");
  cr_assert_str_neq(seen_trace, TRACE);
  cr_assert_str_eq(seen_auth, "");
  pthread_mutex_unlock(&seen_lock);
  q_trace_clear();

  sleep_ms(50);
  cr_assert_eq(o.replies, 1, "exactly one callback");
  cr_assert_float_eq(
      scrape_value("grpc_client_handled_total{" EMBED_LABELS ",grpc_code=\"OK\"} ") -
          handled0,
      2.0, 1e-9);
  outcome_cleanup(&o);
  outcome_cleanup(&o2);
  q_arena_free(a);
}

Test(grpc_async, error_status_with_message) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 5000};
  cr_assert_eq(embed_async(srv.target, "bad", "x", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, Q_EINVAL, "got %s", q_err_name(o.rc));
  cr_assert_null(o.resp);
  cr_assert_str_eq(o.status, "model is bad");
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, deadline_exceeded_per_attempt_and_absolute) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 100};
  int64_t t0 = q_now_ms();
  cr_assert_eq(embed_async(srv.target, "slow", "x", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, Q_ETIMEDOUT, "got %s", q_err_name(o.rc));
  cr_assert_lt(o.done_ms - t0, 350, "the call must end at its deadline");
  cr_assert_null(o.resp);

  /* An absolute deadline caps a longer per-attempt timeout. */
  sleep_ms(400); /* let the first slow handler finish */
  outcome_t o2;
  outcome_init(&o2);
  t0 = q_now_ms();
  q_grpc_call_opts_t capped = {.timeout_ms = 5000, .deadline_ms = t0 + 150};
  cr_assert_eq(embed_async(srv.target, "slow", "x", &capped, a, &o2), 0);
  cr_assert(outcome_wait(&o2, &o2.replies, 1, 5000));
  cr_assert_eq(o2.rc, Q_ETIMEDOUT, "got %s", q_err_name(o2.rc));
  cr_assert_lt(o2.done_ms - t0, 400);
  pthread_mutex_lock(&seen_lock);
  cr_assert_leq(seen_ms_left, 150 + ROUNDING_MS, "the server saw the capped deadline");
  pthread_mutex_unlock(&seen_lock);
  outcome_cleanup(&o);
  outcome_cleanup(&o2);
  q_arena_free(a);
}

Test(grpc_async, cancel_before_completion) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 10000};
  cr_assert_eq(embed_async(srv.target, "watch", "x", &opts, a, &o), 0);
  for (int i = 0; i < 500 && !atomic_load(&watch_entered); i++)
    sleep_ms(5);
  cr_assert(atomic_load(&watch_entered), "the handler never ran");
  int64_t t0 = q_now_ms();
  cr_assert(outcome_cancel(&o), "the call ended before it was cancelled");
  cr_assert(outcome_wait(&o, &o.replies, 1, 2000));
  cr_assert_eq(o.rc, Q_ECANCELLED, "got %s", q_err_name(o.rc));
  cr_assert_null(o.resp);
  cr_assert_lt(o.done_ms - t0, 1000);
  /* The server sees the cancellation. */
  for (int i = 0; i < 400 && !atomic_load(&watch_saw_cancel); i++)
    sleep_ms(5);
  cr_assert(atomic_load(&watch_saw_cancel), "the handler did not see the cancel");
  sleep_ms(100);
  cr_assert_eq(o.replies, 1, "exactly one callback");
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, unavailable_is_retried_until_the_server_is_up) {
  int port = loopback_free_port();
  cr_assert_gt(port, 0);
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port);
  double unavailable0 = scrape_value("grpc_client_handled_total{" EMBED_LABELS
                                     ",grpc_code=\"Unavailable\"} ");
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 2000,
                             .idempotent = 1,
                             .max_attempts = 30,
                             .deadline_ms = q_now_ms() + 20000};
  cr_assert_eq(embed_async(target, "", "late", &opts, a, &o), 0);
  /* Wait for a failed attempt, then start the server on that port. */
  for (int i = 0;
       i < 1000 && scrape_value("grpc_client_handled_total{" EMBED_LABELS
                                ",grpc_code=\"Unavailable\"} ") == unavailable0;
       i++)
    sleep_ms(5);
  cr_assert_gt(scrape_value("grpc_client_handled_total{" EMBED_LABELS
                            ",grpc_code=\"Unavailable\"} "),
               unavailable0, "no attempt failed");
  cr_assert_eq(o.replies, 0, "the call gave up after one attempt");
  static const q_grpc_method_t llm[] = {{"Embed", Q_GRPC_UNARY, embed_cb}};
  q_grpc_server_opts_t so = {.addr = target, .threads = 2};
  q_grpc_server_t *late = q_grpc_server_new(&so);
  cr_assert_not_null(late);
  cr_assert_eq(
      q_grpc_server_add_service(late, &quarry__v1__llm_gateway__descriptor, llm, 1, NULL),
      0);
  cr_assert_gt(q_grpc_server_start(late), 0, "port %d was taken meanwhile", port);
  cr_assert(outcome_wait(&o, &o.replies, 1, 15000));
  cr_assert_eq(o.rc, 0, "got %s: %s", q_err_name(o.rc), o.status);
  cr_assert_str_eq(o.resp->model, "late");
  q_grpc_server_shutdown(late, 1000);
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, only_idempotent_calls_are_retried) {
  int port = loopback_free_port();
  char target[64];
  snprintf(target, sizeof target, "127.0.0.1:%d", port); /* nothing listens */
  const char *started = "grpc_client_started_total{" EMBED_LABELS "} ";
  q_arena_t *a = q_arena_new(0);
  for (int idempotent = 0; idempotent <= 1; idempotent++) {
    double s0 = scrape_value(started);
    outcome_t o;
    outcome_init(&o);
    q_grpc_call_opts_t opts = {
        .timeout_ms = 2000, .idempotent = idempotent, .max_attempts = 3};
    cr_assert_eq(embed_async(target, "", "x", &opts, a, &o), 0);
    cr_assert(outcome_wait(&o, &o.replies, 1, 10000));
    cr_assert_eq(o.rc, Q_EUNAVAIL, "got %s", q_err_name(o.rc));
    cr_assert_float_eq(scrape_value(started) - s0, idempotent ? 3.0 : 1.0, 1e-9,
                       "attempts of a%s call", idempotent ? "n idempotent" : " plain");
    outcome_cleanup(&o);
  }
  q_arena_free(a);
}

Test(grpc_async, start_errors_call_no_callback) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
  q_grpc_async_t *h = (q_grpc_async_t *)&o; /* must be reset */
  cr_assert_eq(q_rpc_llm_gateway_embed_async(q_grpc_channel(srv.target), &req, NULL, NULL,
                                             embed_done, &o, &h),
               Q_EINVAL);
  cr_assert_null(h);
  q_grpc_call_opts_t bad_trace = {.trace_id = "no spaces allowed"};
  cr_assert_eq(embed_async(srv.target, "", "x", &bad_trace, a, &o), Q_EINVAL);
  cr_assert_null(o.handle);
  q_grpc_call_opts_t small = {.max_msg_bytes = 8};
  cr_assert_eq(
      embed_async(srv.target, "", "a text longer than eight bytes", &small, a, &o),
      Q_ETOOBIG);
  /* A method index the service does not have. */
  cr_assert_eq(q_grpc_unary_async(q_grpc_channel(srv.target),
                                  &quarry__v1__llm_gateway__descriptor, 7, &req.base, a,
                                  NULL, untyped_done, &o, &h),
               Q_EINVAL);
  sleep_ms(50);
  cr_assert_eq(o.replies, 0);
  outcome_cleanup(&o);
  q_arena_free(a);
}

/* 1,000 calls in flight from this thread, held by the server until the gate
 * opens, cost no thread each: the loop threads serve them all. */
Test(grpc_async, thousand_calls_in_flight_on_a_few_threads) {
  enum { CALLS = 1000, LOOPS = 4 };
  cr_assert_eq(q_grpc_async_set_threads(LOOPS), 0);
  /* Warm up: loops, channel and connection exist before counting. */
  q_arena_t *wa = q_arena_new(0);
  outcome_t w;
  outcome_init(&w);
  q_grpc_call_opts_t opts = {.timeout_ms = 60000};
  cr_assert_eq(embed_async(srv.target, "", "warm", &opts, wa, &w), 0);
  cr_assert(outcome_wait(&w, &w.replies, 1, 5000));
  cr_assert_eq(w.rc, 0);
  int before = count_threads();

  outcome_t *o = calloc(CALLS, sizeof *o);
  q_arena_t **arenas = calloc(CALLS, sizeof *arenas);
  char text[32];
  for (int i = 0; i < CALLS; i++) {
    outcome_init(&o[i]);
    arenas[i] = q_arena_new(0);
    snprintf(text, sizeof text, "call-%d", i);
    cr_assert_eq(embed_async(srv.target, "gate", text, &opts, arenas[i], &o[i]), 0);
  }
  /* Both server workers are held; the other calls wait at the server. */
  for (int i = 0; i < 1000 && atomic_load(&in_gate) < 2; i++)
    sleep_ms(5);
  cr_assert_geq(atomic_load(&in_gate), 2);
  sleep_ms(200);
  int during = count_threads();
  int done = 0;
  for (int i = 0; i < CALLS; i++)
    done += o[i].replies;
  cr_assert_eq(done, 0, "calls completed before the gate opened");
  cr_log_info("%d threads before, %d with %d calls in flight", before, during, CALLS);
  cr_assert_lt(during - before, 16, "%d threads before, %d with %d calls in flight",
               before, during, CALLS);

  gate_set(true);
  pthread_t seen[CALLS];
  int nseen = 0;
  for (int i = 0; i < CALLS; i++) {
    cr_assert(outcome_wait(&o[i], &o[i].replies, 1, 60000), "call %d never ended", i);
    cr_assert_eq(o[i].rc, 0, "call %d: %s: %s", i, q_err_name(o[i].rc), o[i].status);
    snprintf(text, sizeof text, "call-%d", i);
    cr_assert_str_eq(o[i].resp->model, text);
    int k = 0;
    while (k < nseen && !pthread_equal(seen[k], o[i].thread))
      k++;
    if (k == nseen)
      seen[nseen++] = o[i].thread;
  }
  cr_assert_leq(nseen, LOOPS, "callbacks ran on %d threads", nseen);
  cr_assert_gt(nseen, 1, "the calls of different arenas spread over the loops");
  sleep_ms(50);
  for (int i = 0; i < CALLS; i++) {
    cr_assert_eq(o[i].replies, 1, "call %d: %d callbacks", i, o[i].replies);
    outcome_cleanup(&o[i]);
    q_arena_free(arenas[i]);
  }
  free(o);
  free(arenas);
  outcome_cleanup(&w);
  q_arena_free(wa);
}

/* ---- server streaming --------------------------------------------------------- */

Test(grpc_async, server_stream_in_order_then_status) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 5000};
  const char *stream_started = "grpc_client_started_total{grpc_type=\"server_stream\","
                               "grpc_service=\"quarry.v1.LlmGateway\","
                               "grpc_method=\"Generate\"} ";
  const char *stream_received = "grpc_client_msg_received_total{"
                                "grpc_type=\"server_stream\","
                                "grpc_service=\"quarry.v1.LlmGateway\","
                                "grpc_method=\"Generate\"} ";
  double s0 = scrape_value(stream_started), r0 = scrape_value(stream_received);
  cr_assert_eq(generate_async("count 50", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, 0, "%s: %s", q_err_name(o.rc), o.status);
  cr_assert_eq(o.messages, 50);
  cr_assert_eq(o.at_done, 50, "on_done comes after the last message");
  char want[4096] = "";
  for (int i = 0; i < 50; i++) {
    size_t len = strlen(want);
    snprintf(want + len, sizeof want - len, "%s%d", i ? "," : "", i);
  }
  cr_assert_str_eq(o.text, want);
  cr_assert_float_eq(scrape_value(stream_started) - s0, 1.0, 1e-9);
  cr_assert_float_eq(scrape_value(stream_received) - r0, 50.0, 1e-9);
  sleep_ms(50);
  cr_assert_eq(o.replies, 1);
  outcome_cleanup(&o);
  q_arena_free(a);
}

/* A consumer that returns false gets nothing more until it resumes: the
 * stream is read at the consumer's pace, and still complete and in order. */
Test(grpc_async, server_stream_pauses_until_resumed) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  o.pause = true;
  q_grpc_call_opts_t opts = {.timeout_ms = 10000};
  cr_assert_eq(generate_async("count 10", &opts, a, &o), 0);
  for (int n = 1; n <= 10; n++) {
    cr_assert(outcome_wait(&o, &o.messages, n, 5000), "message %d never came", n);
    sleep_ms(30);
    pthread_mutex_lock(&o.lock);
    cr_assert_eq(o.messages, n, "a message arrived while paused");
    pthread_mutex_unlock(&o.lock);
    /* From another thread than the loop's. After the last message the
     * stream may already have ended: then there is nothing to resume. */
    cr_assert(outcome_resume(&o) || n == 10, "the stream ended early");
  }
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, 0, "%s: %s", q_err_name(o.rc), o.status);
  cr_assert_str_eq(o.text, "0,1,2,3,4,5,6,7,8,9");
  outcome_cleanup(&o);
  q_arena_free(a);
}

/* A resume that comes before the pause took effect (the consumer drained
 * while on_message was deciding to pause) is not lost: the stream goes on. */
Test(grpc_async, server_stream_resume_before_pause_wins) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  o.pause = true;
  o.resume_early = true;
  q_grpc_call_opts_t opts = {.timeout_ms = 10000};
  cr_assert_eq(generate_async("count 10", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000), "the stream was left paused");
  cr_assert_eq(o.rc, 0, "%s: %s", q_err_name(o.rc), o.status);
  cr_assert_str_eq(o.text, "0,1,2,3,4,5,6,7,8,9");
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, server_stream_error_status) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  q_grpc_call_opts_t opts = {.timeout_ms = 5000};
  cr_assert_eq(generate_async("fail", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, Q_ENOTFOUND, "got %s", q_err_name(o.rc));
  cr_assert_str_eq(o.status, "no such model");
  cr_assert_str_eq(o.text, "0,1");
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, cancel_mid_stream) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  o.cancel_after = 3;
  q_grpc_call_opts_t opts = {.timeout_ms = 10000};
  cr_assert_eq(generate_async("endless", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.replies, 1, 5000));
  cr_assert_eq(o.rc, Q_ECANCELLED, "got %s", q_err_name(o.rc));
  cr_assert_eq(o.messages, 3, "no message after the cancel");
  cr_assert_str_eq(o.status, "cancelled by the caller");
  for (int i = 0; i < 400 && atomic_load(&stream_server_rc) == 1; i++)
    sleep_ms(5);
  cr_assert_eq(atomic_load(&stream_server_rc), Q_ECANCELLED,
               "the server's send did not fail");
  sleep_ms(50);
  cr_assert_eq(o.replies, 1);
  cr_assert_eq(o.messages, 3);
  outcome_cleanup(&o);
  q_arena_free(a);
}

Test(grpc_async, cancel_paused_stream_from_another_thread) {
  q_arena_t *a = q_arena_new(0);
  outcome_t o;
  outcome_init(&o);
  o.pause = true;
  q_grpc_call_opts_t opts = {.timeout_ms = 10000};
  cr_assert_eq(generate_async("endless", &opts, a, &o), 0);
  cr_assert(outcome_wait(&o, &o.messages, 1, 5000));
  int64_t t0 = q_now_ms();
  cr_assert(outcome_cancel(&o), "the stream ended early");
  cr_assert(outcome_wait(&o, &o.replies, 1, 2000));
  cr_assert_eq(o.rc, Q_ECANCELLED, "got %s", q_err_name(o.rc));
  cr_assert_lt(o.done_ms - t0, 1000);
  cr_assert_eq(o.messages, 1);
  outcome_cleanup(&o);
  q_arena_free(a);
}

/* ---- shutdown --------------------------------------------------------------- */

/* q_grpc_client_shutdown ends what is in flight (a call at the server, a call
 * waiting to retry) with Q_ECANCELLED before it returns; the client works
 * again afterwards. */
Test(grpc_async, shutdown_cancels_calls_in_flight) {
  char dead[64];
  snprintf(dead, sizeof dead, "127.0.0.1:%d", loopback_free_port());
  q_arena_t *a = q_arena_new(0), *b = q_arena_new(0);
  outcome_t held, retrying;
  outcome_init(&held);
  outcome_init(&retrying);
  q_grpc_call_opts_t opts = {.timeout_ms = 30000};
  q_grpc_call_opts_t retry = {
      .timeout_ms = 30000, .idempotent = 1, .max_attempts = 1000, .deadline_ms = 0};
  cr_assert_eq(embed_async(srv.target, "gate", "held", &opts, a, &held), 0);
  cr_assert_eq(embed_async(dead, "", "retrying", &retry, b, &retrying), 0);
  for (int i = 0; i < 1000 && atomic_load(&in_gate) < 1; i++)
    sleep_ms(5);
  sleep_ms(1500); /* the retrying call now waits up to a second between tries */
  cr_assert_eq(held.replies + retrying.replies, 0);
  int64_t t0 = q_now_ms();
  q_grpc_client_shutdown();
  cr_assert_lt(q_now_ms() - t0, 1000, "shutdown must not wait for the calls' ends");
  cr_assert_eq(held.replies, 1);
  cr_assert_eq(retrying.replies, 1);
  cr_assert_eq(held.rc, Q_ECANCELLED, "got %s", q_err_name(held.rc));
  cr_assert_eq(retrying.rc, Q_ECANCELLED, "got %s", q_err_name(retrying.rc));
  gate_set(true);

  outcome_t again;
  outcome_init(&again);
  cr_assert_eq(embed_async(srv.target, "", "again", &opts, a, &again), 0);
  cr_assert(outcome_wait(&again, &again.replies, 1, 5000));
  cr_assert_eq(again.rc, 0, "%s: %s", q_err_name(again.rc), again.status);
  outcome_cleanup(&held);
  outcome_cleanup(&retrying);
  outcome_cleanup(&again);
  q_arena_free(a);
  q_arena_free(b);
}
