/* grpc.c - the adapter over the gRPC C core. No other file calls grpc_*.
 *
 * Server threading model (the C++ sync server's): one notification queue
 * shared by every worker thread. Each posted request gets its own pluck
 * queue, bound to the call it will deliver; the worker that receives the
 * arrival re-posts a request for the same method, then runs the whole call
 * on that private queue synchronously (unpack, handler, reply). Handlers may
 * block and streaming handlers can wait for their own operations without
 * ever stealing another call's events. A busy pool simply leaves arrivals
 * waiting in the notification queue.
 *
 * Client calls use the same trick: every call has a private pluck queue, so
 * any thread can make blocking calls on a shared channel.
 *
 * Asynchronous client calls are the opposite: nothing waits for them. A few
 * loop threads, started with the first such call, each own a next queue;
 * a call's batches complete on the queue of the loop its arena hashes to,
 * and that thread runs its callbacks, so one request's calls never run
 * callbacks concurrently. Each loop also keeps the calls waiting to retry
 * in a list by due time and waits on its queue only until the earliest
 * (grpc_completion_queue_next's deadline is the timer). Other threads
 * start batches directly (the core allows any thread) and cancel with
 * grpc_call_cancel; to wake a loop early (a cancelled retry, shutdown)
 * they post a completion with a connectivity watch on a lame channel whose
 * deadline has passed. A loop's mutex guards what those threads touch and
 * is never held while a callback runs. */
#include "quarry/grpc.h"

#include "quarry/error.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#include <dlfcn.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <limits.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define DEFAULT_THREADS 8
#define DEFAULT_MAX_MSG (64 * 1024 * 1024)
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_ATTEMPTS 3
/* A retry on UNAVAILABLE waits a random time in [0, b) (full jitter), b
 * doubling from FIRST_BACKOFF_MS up to MAX_BACKOFF_MS. */
#define FIRST_BACKOFF_MS 50
#define MAX_BACKOFF_MS 1000
#define MAX_PATH_LEN 256
#define MAX_MD 32 /* request metadata entries kept per call */

/* ---- metrics -------------------------------------------------------------- */

static q_metric_t *m_srv_started, *m_srv_handled, *m_srv_seconds, *m_srv_msg_in,
    *m_srv_msg_out;
static q_metric_t *m_cli_started, *m_cli_handled, *m_cli_seconds, *m_cli_msg_in,
    *m_cli_msg_out;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_register(void) {
  const char *l3 = "grpc_type,grpc_service,grpc_method";
  const char *l4 = "grpc_type,grpc_service,grpc_method,grpc_code";
  m_srv_started =
      q_metrics_counter("grpc_server_started_total", "RPCs started on the server.", l3);
  m_srv_handled = q_metrics_counter("grpc_server_handled_total",
                                    "RPCs completed on the server, by status code.", l4);
  m_srv_seconds =
      q_metrics_histogram("grpc_server_handling_seconds",
                          "Time the server took to handle RPCs.", l3, NULL, 0);
  m_srv_msg_in = q_metrics_counter("grpc_server_msg_received_total",
                                   "Stream messages received by the server.", l3);
  m_srv_msg_out = q_metrics_counter("grpc_server_msg_sent_total",
                                    "Stream messages sent by the server.", l3);
  m_cli_started =
      q_metrics_counter("grpc_client_started_total", "RPCs started by the client.", l3);
  m_cli_handled = q_metrics_counter("grpc_client_handled_total",
                                    "RPCs completed by the client, by status code.", l4);
  m_cli_seconds =
      q_metrics_histogram("grpc_client_handling_seconds",
                          "Time until the client received the status.", l3, NULL, 0);
  m_cli_msg_in = q_metrics_counter("grpc_client_msg_received_total",
                                   "Stream messages received by the client.", l3);
  m_cli_msg_out = q_metrics_counter("grpc_client_msg_sent_total",
                                    "Stream messages sent by the client.", l3);
}

static const char *kind_label(q_grpc_kind_t k) {
  switch (k) {
  case Q_GRPC_SERVER_STREAM: return "server_stream";
  case Q_GRPC_CLIENT_STREAM: return "client_stream";
  default: return "unary";
  }
}

/* ---- shared helpers ------------------------------------------------------ */

static gpr_timespec deadline_from_ms(int64_t ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                      gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* A per-attempt timeout capped by an absolute deadline (q_now_ms() time, 0:
 * none); at least 1 ms, so a call past its deadline fails with
 * DEADLINE_EXCEEDED like any other. */
static int64_t cap_timeout(int64_t timeout_ms, int64_t deadline_ms) {
  if (deadline_ms) {
    int64_t left = deadline_ms - q_now_ms();
    if (left < timeout_ms)
      timeout_ms = left > 1 ? left : 1;
  }
  return timeout_ms;
}

/* The message of a client call's status: its details, else the core's error
 * string or the code's name; "" for OK without details. */
static void status_text(char *out, size_t outlen, grpc_status_code status,
                        grpc_slice details, const char *error_string) {
  if (!out || !outlen)
    return;
  size_t dl = GRPC_SLICE_LENGTH(details);
  if (dl)
    snprintf(out, outlen, "%.*s", (int)(dl > 1024 ? 1024 : dl),
             (const char *)GRPC_SLICE_START_PTR(details));
  else if (status != GRPC_STATUS_OK)
    snprintf(out, outlen, "%s", error_string ? error_string : q_grpc_code_name(status));
  else
    out[0] = 0;
}

/* Packs msg into a new byte buffer (caller destroys). NULL on failure. */
static grpc_byte_buffer *pack(const ProtobufCMessage *msg, int64_t max) {
  size_t n = protobuf_c_message_get_packed_size(msg);
  if ((int64_t)n > max)
    return NULL;
  grpc_slice s = grpc_slice_malloc(n);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

/* Unpacks a received buffer into arena memory. NULL when malformed. */
static ProtobufCMessage *
unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc, q_arena_t *arena) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb))
    return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  ProtobufCMessage *m = protobuf_c_message_unpack(
      desc, q_arena_pb(arena), GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
  grpc_slice_unref(s);
  return m;
}

static ProtobufCMessage *empty_message(const ProtobufCMessageDescriptor *d,
                                       q_arena_t *arena) {
  ProtobufCMessage *m = q_arena_alloc(arena, d->sizeof_message);
  if (m)
    d->message_init(m);
  return m;
}

/* Runs one batch on a pluck queue and waits for it. Returns the event's
 * success flag (0 also when the batch could not be started). */
static bool run_batch(grpc_call *call, grpc_completion_queue *cq, const grpc_op *ops,
                      size_t n, void *tag) {
  if (grpc_call_start_batch(call, ops, n, tag, NULL) != GRPC_CALL_OK)
    return 0;
  grpc_event ev =
      grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void destroy_cq(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  /* Every batch on a private queue has been plucked, so only the shutdown
   * event is left. */
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
  }
  grpc_completion_queue_destroy(cq);
}

static grpc_channel_args *make_args(grpc_arg *a, int64_t max_msg, int client) {
  int n = 0;
  int max = max_msg > 0 && max_msg < INT32_MAX ? (int)max_msg : DEFAULT_MAX_MSG;
  a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
  a[n++].value.integer = max;
  a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
  a[n++].value.integer = max;
  if (client) {
    /* A restarted peer should be found again within seconds, not after
     * the default two-minute reconnect backoff. */
    a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
    a[n++].value.integer = 100;
    /* The "minimum backoff" is really the timeout of one connection
     * attempt: keep it long enough for a slow peer (valgrind, a loaded
     * node) to send its SETTINGS, while the maximum backoff keeps retries
     * of a refused connection at least once a second. */
    a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
    a[n++].value.integer = 5000;
    a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
    a[n++].value.integer = 1000;
    a[n].type = GRPC_ARG_INTEGER, a[n].key = GRPC_ARG_ENABLE_RETRIES,
    a[n++].value.integer = 0;
  } else {
    a[n].type = GRPC_ARG_INTEGER,
    a[n].key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
    a[n++].value.integer = 10000;
  }
  static __thread grpc_channel_args args;
  args.num_args = (size_t)n;
  args.args = a;
  return &args;
}

/* ---- server --------------------------------------------------------------- */

typedef struct method {
  char path[MAX_PATH_LEN]; /* "/quarry.v1.Retriever/Search" */
  const char *service;     /* "quarry.v1.Retriever" */
  const char *name;        /* "Search" */
  const ProtobufCMethodDescriptor *md;
  q_grpc_kind_t kind;
  q_grpc_handler_fn fn; /* NULL: UNIMPLEMENTED */
  void *ud;
  void *handle; /* from grpc_server_register_method */
} method_t;

/* One posted request; becomes the call once it arrives. */
typedef struct pending {
  q_grpc_server_t *srv;
  method_t *m; /* NULL: the catch-all for unknown methods */
  grpc_completion_queue *cq;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
  grpc_call_details details; /* catch-all only */
} pending_t;

struct q_grpc_ctx {
  pending_t *p;
  q_arena_t *arena;
  const char *md_key[MAX_MD];
  const char *md_val[MAX_MD];
  int nmd;
  int64_t deadline_ms; /* q_now_ms() time; 0: none */
  int sent_initial;
  int cancelled;  /* set by RECV_CLOSE_ON_SERVER */
  int close_done; /* that op has been plucked */
  int64_t max_msg;
  char err[512];
  char tag_close, tag_op; /* addresses used as pluck tags */
};

struct q_grpc_server {
  grpc_server *server;
  grpc_completion_queue *cq;
  char addr[256];
  int nthreads;
  int64_t max_msg;
  pthread_t *threads;
  method_t *methods;
  size_t nmethods, capmethods;
  atomic_int serving;
  q_grpc_health_cb health_cb; /* set before start, read by workers */
  void *health_ud;
  atomic_int stopping;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int shutdown_done;
  char shutdown_tag;
};

static q_err_t health_check_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud);

static q_err_t add_method(q_grpc_server_t *s, const ProtobufCServiceDescriptor *svc,
                          const ProtobufCMethodDescriptor *md, const q_grpc_method_t *h,
                          void *ud) {
  if (s->nmethods == s->capmethods) {
    size_t cap = s->capmethods ? s->capmethods * 2 : 16;
    method_t *nm = realloc(s->methods, cap * sizeof *nm);
    if (!nm)
      return Q_ENOMEM;
    s->methods = nm;
    s->capmethods = cap;
  }
  method_t *m = &s->methods[s->nmethods++];
  memset(m, 0, sizeof *m);
  snprintf(m->path, sizeof m->path, "/%s/%s", svc->name, md->name);
  m->service = svc->name;
  m->name = md->name;
  m->md = md;
  m->kind = h ? h->kind : Q_GRPC_UNARY;
  m->fn = h ? h->fn : NULL;
  m->ud = ud;
  return Q_OK;
}

/* Debian's abseil is built without NDEBUG, which leaves absl::Mutex's
 * deadlock detection on: every lock the gRPC core takes records itself in
 * a global lock graph (GraphCycles, under one global mutex), a few percent
 * of the CPU of every service, all of it contended. The detector finds
 * lock-order bugs in gRPC itself, not in Quarry, and release builds of
 * abseil have it off: it is turned off before gRPC starts. Looked up at
 * run time by its mangled name (it is C++), so a different abseil simply
 * keeps its default. */
static void absl_detection_off(void) {
  static const char *const names[] = {
      "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
      "_ZN4absl12lts_2022062329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE",
      "_ZN4absl29SetMutexDeadlockDetectionModeENS_15OnDeadlockCycleE", NULL};
  for (const char *const *n = names; *n; n++) {
    void *f = dlsym(RTLD_DEFAULT, *n);
    if (f) {
      ((void (*)(int))f)(0); /* absl::OnDeadlockCycle::kIgnore */
      return;
    }
  }
}

/* grpc_init, with abseil's deadlock detection off first. */
static void grpc_init_fast(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, absl_detection_off);
  grpc_init();
}

q_grpc_server_t *q_grpc_server_new(const q_grpc_server_opts_t *opts) {
  pthread_once(&metrics_once, metrics_register);
  q_grpc_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  snprintf(s->addr, sizeof s->addr, "%s", opts->addr ? opts->addr : "127.0.0.1:0");
  s->nthreads = opts->threads > 0 ? opts->threads : DEFAULT_THREADS;
  s->max_msg = opts->max_msg_bytes > 0 ? opts->max_msg_bytes : DEFAULT_MAX_MSG;
  pthread_mutex_init(&s->lock, NULL);
  q_cond_init_monotonic(&s->cond);
  grpc_init_fast();
  static const q_grpc_method_t health[] = {{"Check", Q_GRPC_UNARY, health_check_cb}};
  if (q_grpc_server_add_service(s, &grpc__health__v1__health__descriptor, health, 1, s)) {
    q_grpc_server_shutdown(s, 0);
    return NULL;
  }
  return s;
}

q_err_t q_grpc_server_add_service(q_grpc_server_t *s,
                                  const ProtobufCServiceDescriptor *svc,
                                  const q_grpc_method_t *methods, size_t n, void *ud) {
  for (size_t i = 0; i < n; i++) {
    if (!protobuf_c_service_descriptor_get_method_by_name(svc, methods[i].name)) {
      q_log_error("unknown method in handler table", "{s:s,s:s}", "service", svc->name,
                  "method", methods[i].name);
      return Q_EINVAL;
    }
  }
  for (unsigned i = 0; i < svc->n_methods; i++) {
    const ProtobufCMethodDescriptor *md = &svc->methods[i];
    const q_grpc_method_t *h = NULL;
    for (size_t j = 0; j < n; j++)
      if (strcmp(methods[j].name, md->name) == 0)
        h = &methods[j];
    int rc = add_method(s, svc, md, h, ud);
    if (rc)
      return rc;
  }
  return Q_OK;
}

/* Posts a request for method m (NULL: unknown methods). */
static q_err_t post_request(q_grpc_server_t *s, method_t *m) {
  pending_t *p = calloc(1, sizeof *p);
  if (!p)
    return Q_ENOMEM;
  p->srv = s;
  p->m = m;
  p->cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_metadata_array_init(&p->md);
  grpc_call_error e;
  if (m) {
    int wants_payload = m->kind != Q_GRPC_CLIENT_STREAM;
    e = grpc_server_request_registered_call(s->server, m->handle, &p->call, &p->deadline,
                                            &p->md, wants_payload ? &p->payload : NULL,
                                            p->cq, s->cq, p);
  } else {
    grpc_call_details_init(&p->details);
    e = grpc_server_request_call(s->server, &p->call, &p->details, &p->md, p->cq, s->cq,
                                 p);
  }
  if (e != GRPC_CALL_OK) {
    grpc_metadata_array_destroy(&p->md);
    if (!m)
      grpc_call_details_destroy(&p->details);
    destroy_cq(p->cq);
    free(p);
    return Q_EINTERNAL;
  }
  return Q_OK;
}

static void pending_free(pending_t *p) {
  if (p->payload)
    grpc_byte_buffer_destroy(p->payload);
  grpc_metadata_array_destroy(&p->md);
  if (!p->m)
    grpc_call_details_destroy(&p->details);
  if (p->call)
    grpc_call_unref(p->call);
  destroy_cq(p->cq);
  free(p);
}

static char *slice_dup(q_arena_t *a, grpc_slice s) {
  return q_arena_strndup(a, (const char *)GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
}

/* Sends the final status (and initial metadata if not yet sent). */
static void send_status(q_grpc_ctx_t *ctx, grpc_byte_buffer *msg, grpc_status_code code,
                        const char *details) {
  grpc_op ops[3];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!ctx->sent_initial) {
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    n++;
    ctx->sent_initial = 1;
  }
  if (msg) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = msg;
    n++;
  }
  grpc_slice det = grpc_slice_from_copied_string(details ? details : "");
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n].data.send_status_from_server.status_details = details ? &det : NULL;
  n++;
  run_batch(ctx->p->call, ctx->p->cq, ops, n, &ctx->tag_op);
  grpc_slice_unref(det);
}

static void serve_unknown(pending_t *p) {
  q_grpc_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.p = p;
  int cancelled = 0;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &cancelled;
  if (grpc_call_start_batch(p->call, &op, 1, &ctx.tag_close, NULL) != GRPC_CALL_OK)
    return;
  char msg[MAX_PATH_LEN + 32];
  int len = (int)GRPC_SLICE_LENGTH(p->details.method);
  snprintf(msg, sizeof msg, "unknown method %.*s",
           len > MAX_PATH_LEN ? MAX_PATH_LEN : len,
           (const char *)GRPC_SLICE_START_PTR(p->details.method));
  send_status(&ctx, NULL, GRPC_STATUS_UNIMPLEMENTED, msg);
  grpc_completion_queue_pluck(p->cq, &ctx.tag_close, gpr_inf_future(GPR_CLOCK_REALTIME),
                              NULL);
}

static void serve_call(pending_t *p) {
  method_t *m = p->m;
  q_grpc_server_t *s = p->srv;
  int64_t t0 = q_now_ms();
  double t0s = q_now_s();
  const char *labels[4] = {kind_label(m->kind), m->service, m->name, NULL};
  q_metrics_inc(m_srv_started, labels);

  q_grpc_ctx_t ctx;
  memset(&ctx, 0, sizeof ctx);
  ctx.p = p;
  ctx.max_msg = s->max_msg;
  ctx.arena = q_arena_new((size_t)s->max_msg * 4 + (1u << 20));

  /* RECV_CLOSE_ON_SERVER first: it completes when the client is done or
   * gone, and must be pending while the handler runs. */
  grpc_op close_op;
  memset(&close_op, 0, sizeof close_op);
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &ctx.cancelled;
  int close_posted =
      grpc_call_start_batch(p->call, &close_op, 1, &ctx.tag_close, NULL) == GRPC_CALL_OK;

  /* Request metadata, copied into the arena. */
  for (size_t i = 0; ctx.arena && i < p->md.count && ctx.nmd < MAX_MD; i++) {
    ctx.md_key[ctx.nmd] = slice_dup(ctx.arena, p->md.metadata[i].key);
    ctx.md_val[ctx.nmd] = slice_dup(ctx.arena, p->md.metadata[i].value);
    ctx.nmd++;
  }

  /* Trace id and deadline for this thread, inherited by outgoing calls. */
  char trace[Q_TRACE_ID_LEN + 1] = "";
  const char *tid = q_grpc_ctx_metadata(&ctx, "x-trace-id");
  const char *tp = q_grpc_ctx_metadata(&ctx, "traceparent");
  if (tid && q_trace_id_valid(tid))
    snprintf(trace, sizeof trace, "%s", tid);
  else if (!tp || q_trace_parse_traceparent(tp, trace))
    q_trace_new_id(trace);
  gpr_timespec dl = gpr_convert_clock_type(p->deadline, GPR_CLOCK_MONOTONIC);
  if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) != 0) {
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    int64_t ms = gpr_time_to_millis(left);
    ctx.deadline_ms = t0 + (ms > 0 ? ms : 0);
  }
  q_trace_set(trace, ctx.deadline_ms);

  int rc = Q_OK;
  ProtobufCMessage *req = NULL, *resp = NULL;
  if (!ctx.arena) {
    rc = Q_ENOMEM;
  } else if (!m->fn) {
    rc = Q_EUNIMPL;
    q_grpc_ctx_errorf(&ctx, "method %s is not implemented", m->path);
  } else if (!close_posted) {
    rc = Q_ECANCELLED;
  } else {
    if (m->kind != Q_GRPC_CLIENT_STREAM) {
      if (!p->payload) {
        rc = Q_EINVAL;
        q_grpc_ctx_errorf(&ctx, "missing request message");
      } else if (!(req = unpack(p->payload, m->md->input, ctx.arena))) {
        rc = Q_EINVAL;
        q_grpc_ctx_errorf(&ctx, "malformed %s message", m->md->input->name);
      } else {
        q_metrics_inc(m_srv_msg_in, labels);
      }
    }
    if (!rc)
      rc = m->fn(&ctx, req, &resp, m->ud);
  }

  grpc_byte_buffer *out = NULL;
  if (!rc && m->kind != Q_GRPC_SERVER_STREAM) {
    if (!resp)
      resp = empty_message(m->md->output, ctx.arena);
    if (!resp) {
      rc = Q_ENOMEM;
    } else if (!(out = pack(resp, s->max_msg))) {
      rc = Q_ETOOBIG;
      q_grpc_ctx_errorf(&ctx, "reply exceeds the %lld-byte message limit",
                        (long long)s->max_msg);
    } else {
      q_metrics_inc(m_srv_msg_out, labels);
    }
  }
  grpc_status_code code = rc ? (grpc_status_code)q_err_to_grpc(rc) : GRPC_STATUS_OK;
  send_status(&ctx, out, code, rc ? (ctx.err[0] ? ctx.err : q_strerror(rc)) : NULL);
  if (out)
    grpc_byte_buffer_destroy(out);
  if (close_posted && !ctx.close_done)
    grpc_completion_queue_pluck(p->cq, &ctx.tag_close, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);

  double secs = q_now_s() - t0s;
  labels[3] = q_grpc_code_name(code);
  q_metrics_inc(m_srv_handled, labels);
  q_metrics_observe(m_srv_seconds, labels, secs);
  if (rc && code != GRPC_STATUS_NOT_FOUND && code != GRPC_STATUS_INVALID_ARGUMENT &&
      code != GRPC_STATUS_UNAUTHENTICATED)
    q_log_warn("rpc failed", "{s:s,s:s,s:s,s:f}", "method", m->path, "code",
               q_grpc_code_name(code), "error", ctx.err[0] ? ctx.err : q_strerror(rc),
               "seconds", secs);
  else
    q_log_debug("rpc", "{s:s,s:s,s:f}", "method", m->path, "code", q_grpc_code_name(code),
                "seconds", secs);
  q_trace_clear();
  q_arena_free(ctx.arena);
}

static void *worker_main(void *arg) {
  q_grpc_server_t *s = arg;
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type != GRPC_OP_COMPLETE)
      continue;
    if (ev.tag == &s->shutdown_tag) {
      pthread_mutex_lock(&s->lock);
      s->shutdown_done = 1;
      pthread_cond_broadcast(&s->cond);
      pthread_mutex_unlock(&s->lock);
      continue;
    }
    pending_t *p = ev.tag;
    if (!ev.success) {
      /* Requests still posted when the server shuts down come back failed:
       * free them and post nothing new. */
      pending_free(p);
      continue;
    }
    /* A call that arrived is served even while stopping (it is in flight);
     * only the replacement request is no longer posted. */
    if (!atomic_load(&s->stopping) && post_request(s, p->m))
      q_log_error("cannot post a new gRPC request", NULL);
    if (p->m)
      serve_call(p);
    else
      serve_unknown(p);
    pending_free(p);
  }
  return NULL;
}

int q_grpc_server_start(q_grpc_server_t *s) {
  grpc_arg a[8];
  s->server = grpc_server_create(make_args(a, s->max_msg, 0), NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  for (size_t i = 0; i < s->nmethods; i++) {
    method_t *m = &s->methods[i];
    m->handle = grpc_server_register_method(
        s->server, m->path, NULL,
        m->kind == Q_GRPC_CLIENT_STREAM ? GRPC_SRM_PAYLOAD_NONE
                                        : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
        0);
    if (!m->handle) {
      q_log_error("cannot register gRPC method", "{s:s}", "method", m->path);
      return Q_EINTERNAL;
    }
  }
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(s->server, s->addr, creds);
  grpc_server_credentials_release(creds);
  if (port <= 0) {
    q_log_error("cannot listen for gRPC", "{s:s}", "addr", s->addr);
    return Q_EUNAVAIL;
  }
  grpc_server_start(s->server);
  /* A few requests per method so bursts do not wait for a re-post, and one
   * catch-all per worker for unknown methods. */
  for (size_t i = 0; i < s->nmethods; i++)
    for (int k = 0; k < 2; k++)
      if (post_request(s, &s->methods[i]))
        return Q_EINTERNAL;
  if (post_request(s, NULL))
    return Q_EINTERNAL;
  s->threads = calloc((size_t)s->nthreads, sizeof *s->threads);
  if (!s->threads)
    return Q_ENOMEM;
  for (int i = 0; i < s->nthreads; i++) {
    if (pthread_create(&s->threads[i], NULL, worker_main, s)) {
      s->nthreads = i;
      return Q_EINTERNAL;
    }
  }
  atomic_store(&s->serving, 1);
  return port;
}

void q_grpc_server_set_serving(q_grpc_server_t *s, int serving) {
  atomic_store(&s->serving, serving ? 1 : 0);
}

void q_grpc_server_set_health_cb(q_grpc_server_t *s, q_grpc_health_cb ready, void *ud) {
  s->health_cb = ready;
  s->health_ud = ud;
}

void q_grpc_server_shutdown(q_grpc_server_t *s, int64_t grace_ms) {
  if (!s)
    return;
  atomic_store(&s->serving, 0);
  if (s->server) {
    atomic_store(&s->stopping, 1);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    if (s->threads && s->nthreads > 0) {
      struct timespec until;
      q_cond_deadline(&until, grace_ms > INT_MAX ? INT_MAX : (int)grace_ms);
      pthread_mutex_lock(&s->lock);
      while (!s->shutdown_done)
        if (pthread_cond_timedwait(&s->cond, &s->lock, &until))
          break;
      int done = s->shutdown_done;
      pthread_mutex_unlock(&s->lock);
      if (!done) {
        q_log_warn("grace period over: cancelling in-flight calls", "{s:i}", "grace_ms",
                   (int)grace_ms);
        grpc_server_cancel_all_calls(s->server);
        pthread_mutex_lock(&s->lock);
        while (!s->shutdown_done)
          pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
      }
    } else {
      grpc_server_cancel_all_calls(s->server);
      for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.tag == &s->shutdown_tag)
          break;
        if (ev.type == GRPC_OP_COMPLETE && ev.tag)
          pending_free(ev.tag);
      }
    }
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    for (int i = 0; s->threads && i < s->nthreads; i++)
      pthread_join(s->threads[i], NULL);
    if (!s->threads || s->nthreads == 0)
      while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                 .type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
  }
  free(s->threads);
  free(s->methods);
  pthread_mutex_destroy(&s->lock);
  pthread_cond_destroy(&s->cond);
  free(s);
  grpc_shutdown();
}

q_arena_t *q_grpc_ctx_arena(q_grpc_ctx_t *ctx) {
  return ctx->arena;
}

const char *q_grpc_ctx_metadata(q_grpc_ctx_t *ctx, const char *key) {
  for (int i = 0; i < ctx->nmd; i++)
    if (strcmp(ctx->md_key[i], key) == 0)
      return ctx->md_val[i];
  return NULL;
}

int64_t q_grpc_ctx_ms_left(q_grpc_ctx_t *ctx) {
  if (!ctx->deadline_ms)
    return INT64_MAX;
  int64_t left = ctx->deadline_ms - q_now_ms();
  return left > 0 ? left : 0;
}

bool q_grpc_ctx_cancelled(q_grpc_ctx_t *ctx) {
  /* RECV_CLOSE_ON_SERVER has been pending since the call arrived; look
   * whether it has completed without waiting for it. */
  if (!ctx->close_done) {
    grpc_event ev = grpc_completion_queue_pluck(ctx->p->cq, &ctx->tag_close,
                                                gpr_inf_past(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_OP_COMPLETE)
      ctx->close_done = 1;
  }
  return ctx->close_done && ctx->cancelled;
}

void q_grpc_ctx_errorf(q_grpc_ctx_t *ctx, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
  va_end(ap);
}

q_err_t q_grpc_ctx_send(q_grpc_ctx_t *ctx, const ProtobufCMessage *msg) {
  grpc_byte_buffer *bb = pack(msg, ctx->max_msg);
  if (!bb)
    return Q_ETOOBIG;
  grpc_op ops[2];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  if (!ctx->sent_initial) {
    ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ctx->sent_initial = 1;
  }
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].data.send_message.send_message = bb;
  n++;
  int ok = run_batch(ctx->p->call, ctx->p->cq, ops, n, &ctx->tag_op);
  grpc_byte_buffer_destroy(bb);
  if (!ok)
    return Q_ECANCELLED;
  const char *labels[3] = {kind_label(ctx->p->m->kind), ctx->p->m->service,
                           ctx->p->m->name};
  q_metrics_inc(m_srv_msg_out, labels);
  return Q_OK;
}

q_err_t q_grpc_ctx_recv(q_grpc_ctx_t *ctx, ProtobufCMessage **msg) {
  return q_grpc_ctx_recv_into(ctx, ctx->arena, msg);
}

q_err_t q_grpc_ctx_recv_into(q_grpc_ctx_t *ctx, q_arena_t *arena,
                             ProtobufCMessage **msg) {
  *msg = NULL;
  grpc_byte_buffer *bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &bb;
  if (!run_batch(ctx->p->call, ctx->p->cq, &op, 1, &ctx->tag_op))
    return Q_ECANCELLED;
  if (!bb) {
    /* No message: either the client half-closed (end of stream) or the
     * call was cancelled, which the core reports the same way here. A
     * cancelled call has its close op completed with cancelled set. */
    /* The close op may complete a moment after the empty receive; a short
     * wait tells the two apart (it only delays the end of an upload). */
    if (!ctx->close_done) {
      grpc_event ev = grpc_completion_queue_pluck(ctx->p->cq, &ctx->tag_close,
                                                  deadline_from_ms(50), NULL);
      if (ev.type == GRPC_OP_COMPLETE)
        ctx->close_done = 1;
    }
    if (ctx->close_done && ctx->cancelled)
      return Q_ECANCELLED;
    return Q_OK; /* end of stream */
  }
  *msg = unpack(bb, ctx->p->m->md->input, arena);
  grpc_byte_buffer_destroy(bb);
  if (!*msg) {
    q_grpc_ctx_errorf(ctx, "malformed %s message", ctx->p->m->md->input->name);
    return Q_EINVAL;
  }
  const char *labels[3] = {kind_label(ctx->p->m->kind), ctx->p->m->service,
                           ctx->p->m->name};
  q_metrics_inc(m_srv_msg_in, labels);
  return Q_OK;
}

static q_err_t health_check_cb(q_grpc_ctx_t *ctx, const ProtobufCMessage *in,
                               ProtobufCMessage **out, void *ud) {
  q_grpc_server_t *s = ud;
  const Grpc__Health__V1__HealthCheckRequest *req =
      (const Grpc__Health__V1__HealthCheckRequest *)in;
  if (req->service && req->service[0]) {
    int known = 0;
    for (size_t i = 0; i < s->nmethods && !known; i++)
      known = strcmp(s->methods[i].service, req->service) == 0;
    if (!known) {
      q_grpc_ctx_errorf(ctx, "unknown service %.200s", req->service);
      return Q_ENOTFOUND;
    }
  }
  Grpc__Health__V1__HealthCheckResponse *r = q_arena_alloc(ctx->arena, sizeof *r);
  if (!r)
    return Q_ENOMEM;
  grpc__health__v1__health_check_response__init(r);
  int serving = atomic_load(&s->serving) && (!s->health_cb || s->health_cb(s->health_ud));
  r->status = serving
                  ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                  : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
  *out = &r->base;
  return Q_OK;
}

/* ---- client --------------------------------------------------------------- */

struct q_grpc_channel {
  char *target;
  grpc_channel *ch;
  struct q_grpc_channel *next;
};

static pthread_mutex_t chan_lock = PTHREAD_MUTEX_INITIALIZER;
static q_grpc_channel_t *channels;

q_grpc_channel_t *q_grpc_channel(const char *target) {
  pthread_once(&metrics_once, metrics_register);
  pthread_mutex_lock(&chan_lock);
  q_grpc_channel_t *c;
  for (c = channels; c; c = c->next)
    if (strcmp(c->target, target) == 0)
      break;
  if (!c && (c = calloc(1, sizeof *c)) && (c->target = strdup(target))) {
    if (!channels)
      grpc_init_fast();
    grpc_arg a[8];
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->ch = grpc_channel_create(target, creds, make_args(a, DEFAULT_MAX_MSG, 1));
    grpc_channel_credentials_release(creds);
    c->next = channels;
    channels = c;
  } else if (c && !c->target) {
    free(c);
    c = NULL;
  }
  pthread_mutex_unlock(&chan_lock);
  return c;
}

static void loops_stop(void);

void q_grpc_client_shutdown(void) {
  /* Asynchronous calls first: they hold calls on the channels. */
  loops_stop();
  pthread_mutex_lock(&chan_lock);
  int had = channels != NULL;
  while (channels) {
    q_grpc_channel_t *c = channels;
    channels = c->next;
    grpc_channel_destroy(c->ch);
    free(c->target);
    free(c);
  }
  pthread_mutex_unlock(&chan_lock);
  if (had)
    grpc_shutdown();
}

/* The metadata a call attempt sends: trace context and credentials. */
typedef struct out_md {
  grpc_metadata md[3];
  grpc_slice slices[6]; /* keys and values; zeroed ones are empty slices */
  size_t n;
} out_md_t;

/* Fills m with x-trace-id and traceparent (a fresh span id) for trace when
 * it is not "", and authorization when it is not NULL. Released with
 * out_md_cleanup. */
static void out_md_init(out_md_t *m, const char *trace, const char *authorization) {
  memset(m, 0, sizeof *m);
  if (trace[0]) {
    char tp[80], span[17];
    q_trace_new_id(tp); /* reuse as randomness for the span id */
    memcpy(span, tp, 16);
    span[16] = 0;
    snprintf(tp, sizeof tp, "00-%.32s-%s-01", trace, span);
    m->slices[0] = grpc_slice_from_static_string("x-trace-id");
    m->slices[1] = grpc_slice_from_copied_string(trace);
    m->md[m->n].key = m->slices[0];
    m->md[m->n++].value = m->slices[1];
    if (strlen(trace) == Q_TRACE_ID_LEN) {
      m->slices[2] = grpc_slice_from_static_string("traceparent");
      m->slices[3] = grpc_slice_from_copied_string(tp);
      m->md[m->n].key = m->slices[2];
      m->md[m->n++].value = m->slices[3];
    }
  }
  if (authorization) {
    m->slices[4] = grpc_slice_from_static_string("authorization");
    m->slices[5] = grpc_slice_from_copied_string(authorization);
    m->md[m->n].key = m->slices[4];
    m->md[m->n++].value = m->slices[5];
  }
}

static void out_md_cleanup(out_md_t *m) {
  for (int i = 0; i < 6; i++)
    grpc_slice_unref(m->slices[i]);
  memset(m, 0, sizeof *m);
}

struct q_grpc_call {
  grpc_call *call;
  grpc_completion_queue *cq;
  const ProtobufCMethodDescriptor *md;
  const char *service;
  const char *kind; /* grpc_type label */
  int64_t max_msg;
  int sent_initial, got_initial, closed_send, failed, eos;
  grpc_metadata_array initial_md;
  out_md_t omd;
  double t0; /* q_now_s() at start */
  char tag_op;
};

q_grpc_call_t *q_grpc_call_start(q_grpc_channel_t *ch,
                                 const ProtobufCServiceDescriptor *svc,
                                 const char *method, const q_grpc_call_opts_t *opts) {
  if (!ch)
    return NULL;
  const ProtobufCMethodDescriptor *md =
      protobuf_c_service_descriptor_get_method_by_name(svc, method);
  if (!md)
    return NULL;
  /* The options' trace id, else the thread's. */
  const char *trace = opts && opts->trace_id && opts->trace_id[0] ? opts->trace_id : "";
  if (trace[0] && !q_trace_id_valid(trace))
    return NULL;
  if (!trace[0])
    trace = q_trace_id();
  q_grpc_call_t *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->md = md;
  c->service = svc->name;
  c->kind = kind_label(opts ? opts->kind : Q_GRPC_UNARY);
  c->max_msg = opts && opts->max_msg_bytes > 0 ? opts->max_msg_bytes : DEFAULT_MAX_MSG;
  c->t0 = q_now_s();
  grpc_metadata_array_init(&c->initial_md);

  int64_t timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
  timeout = cap_timeout(timeout, opts ? opts->deadline_ms : 0);
  timeout = cap_timeout(timeout, q_trace_deadline());
  char path[MAX_PATH_LEN];
  snprintf(path, sizeof path, "/%s/%s", svc->name, method);
  c->cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice mslice = grpc_slice_from_copied_string(path);
  c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, mslice,
                                     NULL, deadline_from_ms(timeout), NULL);
  grpc_slice_unref(mslice);

  out_md_init(&c->omd, trace, opts ? opts->authorization : NULL);
  const char *labels[3] = {c->kind, c->service, md->name};
  q_metrics_inc(m_cli_started, labels);
  /* The initial metadata rides with the first batch that sends anything,
   * so a unary call is one batch in all. */
  return c;
}

/* Adds SEND_INITIAL_METADATA to ops if it has not gone out yet. */
static size_t add_initial(q_grpc_call_t *c, grpc_op *ops, size_t n) {
  if (c->sent_initial)
    return n;
  ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[n].data.send_initial_metadata.count = c->omd.n;
  ops[n].data.send_initial_metadata.metadata = c->omd.md;
  c->sent_initial = 1;
  return n + 1;
}

q_err_t q_grpc_call_send(q_grpc_call_t *c, const ProtobufCMessage *msg) {
  if (c->failed || c->closed_send)
    return Q_EUNAVAIL;
  grpc_byte_buffer *bb = pack(msg, c->max_msg);
  if (!bb)
    return Q_ETOOBIG;
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = add_initial(c, ops, 0);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n].data.send_message.send_message = bb;
  int ok = run_batch(c->call, c->cq, ops, n + 1, &c->tag_op);
  grpc_byte_buffer_destroy(bb);
  if (!ok) {
    c->failed = 1;
    return Q_EUNAVAIL;
  }
  const char *labels[3] = {c->kind, c->service, c->md->name};
  q_metrics_inc(m_cli_msg_out, labels);
  return Q_OK;
}

q_err_t q_grpc_call_close_send(q_grpc_call_t *c) {
  if (c->closed_send)
    return Q_OK;
  c->closed_send = 1;
  if (c->failed)
    return Q_EUNAVAIL;
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = add_initial(c, ops, 0);
  ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  if (!run_batch(c->call, c->cq, ops, n + 1, &c->tag_op)) {
    c->failed = 1;
    return Q_EUNAVAIL;
  }
  return Q_OK;
}

q_err_t q_grpc_call_recv(q_grpc_call_t *c, q_arena_t *arena, ProtobufCMessage **msg) {
  *msg = NULL;
  if (c->failed)
    return Q_OK; /* the status says what happened */
  grpc_byte_buffer *bb = NULL;
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = add_initial(c, ops, 0);
  if (!c->got_initial) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    n++;
    c->got_initial = 1;
  }
  ops[n].op = GRPC_OP_RECV_MESSAGE;
  ops[n].data.recv_message.recv_message = &bb;
  n++;
  if (!run_batch(c->call, c->cq, ops, n, &c->tag_op) || !bb) {
    if (bb)
      grpc_byte_buffer_destroy(bb);
    c->eos = 1;
    return Q_OK;
  }
  *msg = unpack(bb, c->md->output, arena);
  grpc_byte_buffer_destroy(bb);
  if (!*msg) {
    c->failed = 1;
    return Q_EINVAL;
  }
  const char *labels[3] = {c->kind, c->service, c->md->name};
  q_metrics_inc(m_cli_msg_in, labels);
  return Q_OK;
}

/* Ends the call in one batch: sends last (if not NULL) and the half-close
 * when they have not gone out, receives what is pending (the reply into
 * *reply when reply is not NULL, else discarded) and the status; then frees
 * the call. Returns 0 or the q_err_t of the status. */
static int finish_with(q_grpc_call_t *c, grpc_byte_buffer *last, grpc_byte_buffer **reply,
                       char *err, size_t errlen) {
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_metadata_array trailing;
  grpc_metadata_array_init(&trailing);
  const char *error_string = NULL;
  grpc_op ops[7];
  size_t n = 0;
  grpc_byte_buffer *unread = NULL;
  memset(ops, 0, sizeof ops);
  if (!c->failed)
    n = add_initial(c, ops, n);
  if (last && !c->failed && !c->closed_send) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = last;
    n++;
  }
  if (!c->closed_send && !c->failed) {
    ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    c->closed_send = 1;
  }
  size_t nsend = n;
  /* The status is only delivered once the initial metadata and any reply
   * the caller never read have been received: ask for them too, or a call
   * the server refused early would wait until its deadline. */
  if (!c->got_initial) {
    ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    n++;
    c->got_initial = 1;
  }
  if (!c->eos) {
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = reply ? reply : &unread;
    n++;
  }
  ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[n].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[n].data.recv_status_on_client.status = &status;
  ops[n].data.recv_status_on_client.status_details = &details;
  ops[n].data.recv_status_on_client.error_string = &error_string;
  n++;
  if (grpc_call_start_batch(c->call, ops, n, &c->tag_op, NULL) != GRPC_CALL_OK) {
    /* Sending may be refused once the call has failed; ask for the status
     * without it. */
    if (grpc_call_start_batch(c->call, ops + nsend, n - nsend, &c->tag_op, NULL) !=
        GRPC_CALL_OK)
      status = GRPC_STATUS_INTERNAL;
    else
      grpc_completion_queue_pluck(c->cq, &c->tag_op, gpr_inf_future(GPR_CLOCK_REALTIME),
                                  NULL);
  } else {
    /* RECV_STATUS_ON_CLIENT always completes with success: read the code. */
    grpc_completion_queue_pluck(c->cq, &c->tag_op, gpr_inf_future(GPR_CLOCK_REALTIME),
                                NULL);
  }
  status_text(err, errlen, status, details, error_string);
  if (unread)
    grpc_byte_buffer_destroy(unread);
  if (error_string)
    gpr_free((void *)error_string);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&trailing);
  grpc_metadata_array_destroy(&c->initial_md);

  double secs = q_now_s() - c->t0;
  const char *labels[4] = {c->kind, c->service, c->md->name, q_grpc_code_name(status)};
  q_metrics_inc(m_cli_handled, labels);
  q_metrics_observe(m_cli_seconds, labels, secs);

  grpc_call_unref(c->call);
  destroy_cq(c->cq);
  out_md_cleanup(&c->omd);
  free(c);
  return status == GRPC_STATUS_OK ? Q_OK : q_err_from_grpc(status);
}

q_err_t q_grpc_call_finish(q_grpc_call_t *c, char *err, size_t errlen) {
  if (!c) {
    if (err && errlen)
      snprintf(err, errlen, "cannot start call");
    return Q_EINTERNAL;
  }
  return finish_with(c, NULL, NULL, err, errlen);
}

void q_grpc_call_cancel(q_grpc_call_t *c) {
  if (!c)
    return;
  grpc_call_cancel(c->call, NULL);
  c->failed = 1;
  c->closed_send = 1; /* never half-close a cancelled call */
}

static q_err_t unary_once(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                          const char *method, const ProtobufCMessage *req,
                          ProtobufCMessage **resp, q_arena_t *arena,
                          const q_grpc_call_opts_t *opts, char *err, size_t errlen) {
  q_grpc_call_opts_t o = opts ? *opts : (q_grpc_call_opts_t){0};
  o.kind = Q_GRPC_UNARY;
  q_grpc_call_t *c = q_grpc_call_start(ch, svc, method, &o);
  if (!c) {
    if (err && errlen)
      snprintf(err, errlen, "cannot start call to %s/%s", svc->name, method);
    return Q_EINTERNAL;
  }
  grpc_byte_buffer *out = pack(req, c->max_msg);
  if (!out) {
    q_grpc_call_cancel(c);
    q_grpc_call_finish(c, NULL, 0);
    if (err && errlen)
      snprintf(err, errlen, "request exceeds the message size limit");
    return Q_ETOOBIG;
  }
  /* One batch: metadata, request, half-close, reply and status. The call
   * is freed by finish_with, so keep the reply type first. */
  const ProtobufCMessageDescriptor *reply_desc = c->md->output;
  grpc_byte_buffer *in = NULL;
  const char *labels[3] = {"unary", svc->name, method};
  int rc = finish_with(c, out, &in, err, errlen);
  grpc_byte_buffer_destroy(out);
  q_metrics_inc(m_cli_msg_out, labels);
  ProtobufCMessage *m = NULL;
  if (in) {
    q_metrics_inc(m_cli_msg_in, labels);
    m = unpack(in, reply_desc, arena);
    grpc_byte_buffer_destroy(in);
    if (!m && !rc) {
      rc = Q_EINTERNAL;
      if (err && errlen)
        snprintf(err, errlen, "malformed reply from %s/%s", svc->name, method);
    }
  }
  if (!rc && !m) {
    rc = Q_EINTERNAL;
    if (err && errlen)
      snprintf(err, errlen, "no reply message from %s/%s", svc->name, method);
  }
  if (!rc)
    *resp = m;
  return rc;
}

q_err_t q_grpc_unary(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                     const char *method, const ProtobufCMessage *req,
                     ProtobufCMessage **resp, q_arena_t *arena,
                     const q_grpc_call_opts_t *opts, char *err, size_t errlen) {
  *resp = NULL;
  int attempts = opts && opts->max_attempts > 0 ? opts->max_attempts : DEFAULT_ATTEMPTS;
  if (!opts || !opts->idempotent)
    attempts = 1;
  int64_t backoff = FIRST_BACKOFF_MS;
  for (int i = 1;; i++) {
    int rc = unary_once(ch, svc, method, req, resp, arena, opts, err, errlen);
    if (rc != Q_EUNAVAIL || i >= attempts)
      return rc;
    /* Full jitter: sleep a random time in [0, backoff), never past the
     * options' or the inherited deadline. */
    int64_t sleep_ms = (int64_t)randombytes_uniform((uint32_t)backoff);
    int64_t dl = q_trace_deadline(), odl = opts->deadline_ms;
    if ((dl && q_now_ms() + sleep_ms >= dl) || (odl && q_now_ms() + sleep_ms >= odl))
      return rc;
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    backoff = backoff * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : backoff * 2;
  }
}

/* ---- asynchronous client -------------------------------------------------- */

#define DEFAULT_LOOPS 2
#define MAX_LOOPS 16

/* What a completion is about: ev.tag points at one of these, inside the
 * call it belongs to (or the loop, for a wake-up). */
typedef enum { EV_BATCH, EV_MSG, EV_STATUS, EV_WAKE } ev_kind_t;

typedef struct ev_tag {
  q_grpc_async_t *h; /* NULL for EV_WAKE */
  ev_kind_t kind;
} ev_tag_t;

typedef struct loop {
  pthread_t thread;
  grpc_completion_queue *cq;
  /* Guards the lists and flags below and, in every call this loop serves,
   * the fields marked "loop lock". Never held while a callback runs. */
  pthread_mutex_t lock;
  q_grpc_async_t *live;   /* every call started and not yet freed */
  q_grpc_async_t *timers; /* calls waiting to retry, earliest first */
  bool stopping;          /* q_grpc_client_shutdown: start nothing new */
  bool woken;             /* a wake-up is queued on cq */
  bool cq_down;           /* cq shut down: queue nothing more on it */
  ev_tag_t wake;
} loop_t;

struct q_grpc_async {
  loop_t *loop;
  q_grpc_async_t *prev, *next; /* loop->live (loop lock) */
  q_grpc_async_t *tnext;       /* loop->timers (loop lock) */
  bool stream;
  /* The call, fixed at start. */
  grpc_channel *ch;
  const char *service;
  const ProtobufCMethodDescriptor *md;
  grpc_slice path, req; /* req: packed once, sent by every attempt */
  q_arena_t *arena;
  char trace[Q_LIMIT_REQUEST_ID_BYTES + 1];
  char *authorization;
  int64_t timeout_ms, deadline_ms, backoff_ms;
  int attempts, attempt;
  bool idempotent;
  q_grpc_unary_cb on_reply;
  q_grpc_stream_msg_cb on_message;
  q_grpc_stream_done_cb on_done;
  void *ud;
  /* Loop lock: what other threads (cancel, resume) look at. */
  grpc_call *call;   /* the current attempt's; NULL between attempts */
  int pending;       /* batches started and not completed */
  int64_t due;       /* in loop->timers: retry at this q_now_ms() */
  bool in_timer;     /* in loop->timers */
  bool cancelled;    /* q_grpc_async_cancel was called */
  bool paused;       /* stream: on_message returned false, no read posted */
  bool resume_early; /* stream: resumed while not paused (on_message may be
                        about to ask for a pause: the resume must win) */
  bool status_done;  /* stream: RECV_STATUS_ON_CLIENT has completed */
  bool done;         /* the final callback is decided: cancel/resume no-ops */
  q_err_t local_rc;  /* stream: an error of ours (malformed message) */
  /* The current attempt: set up before its batches start, then read and
   * released by the loop thread once they have completed. */
  bool in_attempt;
  out_md_t omd;
  grpc_metadata_array initial_md, trailing_md;
  grpc_byte_buffer *send_bb, *recv_bb;
  grpc_status_code status;
  grpc_slice details;
  const char *error_string;
  double t0; /* q_now_s() at the attempt's start */
  char msg[512];
  ev_tag_t tag_batch, tag_msg, tag_status;
};

/* The loops. loops_lock guards the state and is taken before a loop's lock,
 * never after. */
static pthread_mutex_t loops_lock = PTHREAD_MUTEX_INITIALIZER;
static enum { LOOPS_STOPPED, LOOPS_RUNNING, LOOPS_STOPPING } loops_state;
static loop_t *loops;
static int nloops;
static int loops_wanted = DEFAULT_LOOPS;
/* A lame channel: watching its connectivity never sees a change, so the
 * watch completes at its deadline. With a deadline in the past that is a
 * wake-up posted to a loop's queue from any thread, which the C core has no
 * other public way to do (grpc_alarm is C++ only). */
static grpc_channel *wake_ch;

/* Queues a wake-up on l's queue unless one is pending. Loop lock held. */
static void wake_locked(loop_t *l) {
  if (l->woken || l->cq_down)
    return;
  l->woken = true;
  grpc_channel_watch_connectivity_state(wake_ch, GRPC_CHANNEL_TRANSIENT_FAILURE,
                                        gpr_inf_past(GPR_CLOCK_MONOTONIC), l->cq,
                                        &l->wake);
}

static void timer_insert_locked(loop_t *l, q_grpc_async_t *h, int64_t due) {
  q_grpc_async_t **pp = &l->timers;
  while (*pp && (*pp)->due <= due)
    pp = &(*pp)->tnext;
  h->due = due;
  h->tnext = *pp;
  *pp = h;
  h->in_timer = true;
}

static void timer_remove_locked(loop_t *l, q_grpc_async_t *h) {
  for (q_grpc_async_t **pp = &l->timers; *pp; pp = &(*pp)->tnext)
    if (*pp == h) {
      *pp = h->tnext;
      break;
    }
  h->tnext = NULL;
  h->in_timer = false;
}

static void cancel_locked(q_grpc_async_t *h) {
  if (h->done || h->cancelled)
    return;
  h->cancelled = true;
  if (h->call)
    grpc_call_cancel(h->call, NULL);
  if (h->in_timer) {
    /* Waiting to retry: end it now rather than at its time. */
    timer_remove_locked(h->loop, h);
    timer_insert_locked(h->loop, h, 0);
    wake_locked(h->loop);
  }
}

void q_grpc_async_cancel(q_grpc_async_t *h) {
  if (!h)
    return;
  pthread_mutex_lock(&h->loop->lock);
  cancel_locked(h);
  pthread_mutex_unlock(&h->loop->lock);
}

static void handle_free(q_grpc_async_t *h) {
  grpc_slice_unref(h->path);
  grpc_slice_unref(h->req);
  free(h->authorization);
  free(h);
}

/* Checks the arguments, packs the request and fills a new call (not yet
 * known to any loop). */
static q_err_t async_new(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                         unsigned method_index, const ProtobufCMessage *req,
                         q_arena_t *arena, const q_grpc_call_opts_t *opts, void *ud,
                         q_grpc_async_t **out) {
  *out = NULL;
  if (!ch || !svc || method_index >= svc->n_methods || !req || !arena)
    return Q_EINVAL;
  const ProtobufCMethodDescriptor *md = &svc->methods[method_index];
  if (req->descriptor != md->input)
    return Q_EINVAL;
  const char *trace = opts && opts->trace_id ? opts->trace_id : "";
  if (trace[0] && !q_trace_id_valid(trace))
    return Q_EINVAL;
  char path[MAX_PATH_LEN];
  if (snprintf(path, sizeof path, "/%s/%s", svc->name, md->name) >= (int)sizeof path)
    return Q_EINVAL;
  int64_t max = opts && opts->max_msg_bytes > 0 ? opts->max_msg_bytes : DEFAULT_MAX_MSG;
  size_t size = protobuf_c_message_get_packed_size(req);
  if ((int64_t)size > max)
    return Q_ETOOBIG;
  q_grpc_async_t *h = calloc(1, sizeof *h);
  if (!h)
    return Q_ENOMEM;
  if (opts && opts->authorization && !(h->authorization = strdup(opts->authorization))) {
    free(h);
    return Q_ENOMEM;
  }
  h->ch = ch->ch;
  h->service = svc->name;
  h->md = md;
  h->path = grpc_slice_from_copied_string(path);
  h->req = grpc_slice_malloc(size);
  protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(h->req));
  h->arena = arena;
  snprintf(h->trace, sizeof h->trace, "%s", trace);
  h->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
  h->deadline_ms = opts ? opts->deadline_ms : 0;
  h->idempotent = opts && opts->idempotent;
  h->attempts = h->idempotent && opts->max_attempts > 0 ? opts->max_attempts
                : h->idempotent                         ? DEFAULT_ATTEMPTS
                                                        : 1;
  h->backoff_ms = FIRST_BACKOFF_MS;
  h->ud = ud;
  h->details = grpc_empty_slice();
  h->tag_batch = (ev_tag_t){h, EV_BATCH};
  h->tag_msg = (ev_tag_t){h, EV_MSG};
  h->tag_status = (ev_tag_t){h, EV_STATUS};
  *out = h;
  return Q_OK;
}

static void *loop_main(void *arg);

/* Starts the loop threads. loops_lock held. */
static q_err_t loops_start_locked(void) {
  grpc_init_fast();
  wake_ch = grpc_lame_client_channel_create("quarry-async-wakeup",
                                            GRPC_STATUS_UNAVAILABLE, "wake-up channel");
  loops = calloc((size_t)loops_wanted, sizeof *loops);
  if (!wake_ch || !loops) {
    free(loops);
    loops = NULL;
    if (wake_ch)
      grpc_channel_destroy(wake_ch);
    wake_ch = NULL;
    grpc_shutdown();
    return Q_ENOMEM;
  }
  for (nloops = 0; nloops < loops_wanted; nloops++) {
    loop_t *l = &loops[nloops];
    pthread_mutex_init(&l->lock, NULL);
    l->cq = grpc_completion_queue_create_for_next(NULL);
    l->wake.kind = EV_WAKE;
    if (pthread_create(&l->thread, NULL, loop_main, l)) {
      grpc_completion_queue_shutdown(l->cq);
      while (grpc_completion_queue_next(l->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL)
                 .type != GRPC_QUEUE_SHUTDOWN)
        ;
      grpc_completion_queue_destroy(l->cq);
      pthread_mutex_destroy(&l->lock);
      break;
    }
    pthread_setname_np(l->thread, "q-grpc-loop");
  }
  if (nloops < loops_wanted)
    q_log_warn("fewer gRPC client loop threads than configured", "{s:i,s:i}", "started",
               nloops, "wanted", loops_wanted);
  loops_state = LOOPS_RUNNING;
  if (nloops == 0)
    return Q_ERESOURCE; /* running with no loop: q_grpc_client_shutdown cleans up */
  return Q_OK;
}

/* The loop serving arena's calls: a hash of the pointer, so the calls of
 * one request share a thread and requests spread over the threads. */
static loop_t *loop_for(const void *arena) {
  uint64_t x = (uint64_t)(uintptr_t)arena;
  x ^= x >> 29;
  x *= 0x9e3779b97f4a7c15ull;
  return &loops[(x >> 32) % (uint64_t)nloops];
}

/* Hands h to its loop, starting the loops on first use. Q_ECANCELLED while
 * q_grpc_client_shutdown is under way. */
static q_err_t async_register(q_grpc_async_t *h) {
  q_err_t rc = Q_OK;
  pthread_mutex_lock(&loops_lock);
  if (loops_state == LOOPS_STOPPED)
    rc = loops_start_locked();
  else if (loops_state == LOOPS_STOPPING)
    rc = Q_ECANCELLED;
  if (!rc && nloops == 0)
    rc = Q_ERESOURCE;
  if (!rc) {
    loop_t *l = h->loop = loop_for(h->arena);
    pthread_mutex_lock(&l->lock);
    if (l->stopping) {
      rc = Q_ECANCELLED;
    } else {
      h->next = l->live;
      if (l->live)
        l->live->prev = h;
      l->live = h;
    }
    pthread_mutex_unlock(&l->lock);
  }
  pthread_mutex_unlock(&loops_lock);
  return rc;
}

static void unlink_locked(q_grpc_async_t *h) {
  loop_t *l = h->loop;
  if (h->prev)
    h->prev->next = h->next;
  else
    l->live = h->next;
  if (h->next)
    h->next->prev = h->prev;
  /* A stopping loop waits for its last call: wake it if that was this one
   * and it is not the loop thread itself that ends it. */
  if (l->stopping && !l->live)
    wake_locked(l);
}

/* Sets up an attempt: its call on the loop's queue and what its batches
 * send and receive. Q_EINTERNAL when the core refuses the call. */
static q_err_t attempt_prepare(q_grpc_async_t *h, grpc_call **call) {
  int64_t timeout = cap_timeout(h->timeout_ms, h->deadline_ms);
  *call = grpc_channel_create_call(h->ch, NULL, GRPC_PROPAGATE_DEFAULTS, h->loop->cq,
                                   h->path, NULL, deadline_from_ms(timeout), NULL);
  if (!*call)
    return Q_EINTERNAL;
  h->in_attempt = true;
  h->attempt++;
  out_md_init(&h->omd, h->trace, h->authorization);
  grpc_metadata_array_init(&h->initial_md);
  grpc_metadata_array_init(&h->trailing_md);
  h->send_bb = grpc_raw_byte_buffer_create(&h->req, 1);
  h->recv_bb = NULL;
  h->status = GRPC_STATUS_UNKNOWN;
  h->details = grpc_empty_slice();
  h->error_string = NULL;
  h->t0 = q_now_s();
  return Q_OK;
}

static void attempt_cleanup(q_grpc_async_t *h) {
  if (!h->in_attempt)
    return;
  h->in_attempt = false;
  out_md_cleanup(&h->omd);
  grpc_metadata_array_destroy(&h->initial_md);
  grpc_metadata_array_destroy(&h->trailing_md);
  if (h->send_bb)
    grpc_byte_buffer_destroy(h->send_bb);
  if (h->recv_bb)
    grpc_byte_buffer_destroy(h->recv_bb);
  h->send_bb = h->recv_bb = NULL;
  grpc_slice_unref(h->details);
  h->details = grpc_empty_slice();
  if (h->error_string)
    gpr_free((void *)h->error_string);
  h->error_string = NULL;
}

static void set_initial_md(grpc_op *op, q_grpc_async_t *h) {
  op->op = GRPC_OP_SEND_INITIAL_METADATA;
  op->data.send_initial_metadata.count = h->omd.n;
  op->data.send_initial_metadata.metadata = h->omd.md;
}

static void set_recv_status(grpc_op *op, q_grpc_async_t *h) {
  op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op->data.recv_status_on_client.trailing_metadata = &h->trailing_md;
  op->data.recv_status_on_client.status = &h->status;
  op->data.recv_status_on_client.status_details = &h->details;
  op->data.recv_status_on_client.error_string = &h->error_string;
}

/* The end of starting an attempt, the loop lock released: when the batch
 * was refused (ok false) the call is dropped and Q_EINTERNAL returned (no
 * callback will come), else the call is counted as started under labels
 * (grpc_type, service, method), which the caller took before the batch
 * started: once the lock is released, the loop thread may complete the
 * call and free h before this runs. */
static q_err_t attempt_launched(q_grpc_async_t *h, grpc_call *call, bool ok,
                                const char *const labels[3]) {
  if (!ok) {
    grpc_call_unref(call);
    attempt_cleanup(h);
    return Q_EINTERNAL;
  }
  q_metrics_inc(m_cli_started, labels);
  return Q_OK;
}

/* Starts one attempt of a unary call: a single batch, as q_grpc_unary's.
 * From the starting thread (first attempt) or the loop thread (retries).
 * Q_EINTERNAL when the core refuses it; nothing is pending then. */
static q_err_t unary_attempt_start(q_grpc_async_t *h) {
  grpc_call *call;
  if (attempt_prepare(h, &call))
    return Q_EINTERNAL;
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  set_initial_md(&ops[0], h);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = h->send_bb;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &h->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &h->recv_bb;
  set_recv_status(&ops[5], h);
  /* Under the loop lock: the completion cannot be handled before h is
   * consistent, and a cancel sees the call. */
  const char *labels[3] = {"unary", h->service, h->md->name};
  loop_t *l = h->loop;
  pthread_mutex_lock(&l->lock);
  bool ok = grpc_call_start_batch(call, ops, 6, &h->tag_batch, NULL) == GRPC_CALL_OK;
  if (ok) {
    h->call = call;
    h->pending++;
    if (h->cancelled)
      grpc_call_cancel(call, NULL);
  }
  pthread_mutex_unlock(&l->lock);
  return attempt_launched(h, call, ok, labels);
}

/* Posts the next RECV_MESSAGE of a stream. Loop lock held. */
static void post_read_locked(q_grpc_async_t *h) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &h->recv_bb;
  if (grpc_call_start_batch(h->call, &op, 1, &h->tag_msg, NULL) == GRPC_CALL_OK) {
    h->pending++;
  } else {
    /* Cannot happen with one read at a time; end the call rather than
     * hang. */
    if (!h->local_rc) {
      h->local_rc = Q_EINTERNAL;
      snprintf(h->msg, sizeof h->msg, "cannot read from %s/%s", h->service, h->md->name);
    }
    grpc_call_cancel(h->call, NULL);
  }
}

/* Starts a stream: the status is asked for first, so the call always has a
 * pending batch that completes when it ends; then request and half-close,
 * then the first read. Q_EINTERNAL (nothing pending) when refused. */
static q_err_t stream_attempt_start(q_grpc_async_t *h) {
  grpc_call *call;
  if (attempt_prepare(h, &call))
    return Q_EINTERNAL;
  grpc_op status, send[4];
  memset(&status, 0, sizeof status);
  memset(send, 0, sizeof send);
  set_recv_status(&status, h);
  set_initial_md(&send[0], h);
  send[1].op = GRPC_OP_SEND_MESSAGE;
  send[1].data.send_message.send_message = h->send_bb;
  send[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  send[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  send[3].data.recv_initial_metadata.recv_initial_metadata = &h->initial_md;
  const char *labels[3] = {"server_stream", h->service, h->md->name};
  loop_t *l = h->loop;
  pthread_mutex_lock(&l->lock);
  bool ok = grpc_call_start_batch(call, &status, 1, &h->tag_status, NULL) == GRPC_CALL_OK;
  if (ok) {
    h->call = call;
    h->pending++;
    if (grpc_call_start_batch(call, send, 4, &h->tag_batch, NULL) == GRPC_CALL_OK) {
      h->pending++;
      post_read_locked(h);
    } else {
      h->local_rc = Q_EINTERNAL;
      snprintf(h->msg, sizeof h->msg, "cannot send to %s/%s", h->service, h->md->name);
      grpc_call_cancel(call, NULL);
    }
    if (h->cancelled)
      grpc_call_cancel(call, NULL);
  }
  pthread_mutex_unlock(&l->lock);
  return attempt_launched(h, call, ok, labels);
}

/* Runs the final callback and frees h. Loop thread only, with nothing
 * pending. A cancel that came first wins over whatever happened. */
static void finish(q_grpc_async_t *h, q_err_t rc, ProtobufCMessage *resp) {
  loop_t *l = h->loop;
  pthread_mutex_lock(&l->lock);
  h->done = true;
  if (h->cancelled) {
    rc = Q_ECANCELLED;
    resp = NULL;
    snprintf(h->msg, sizeof h->msg, "cancelled by the caller");
  }
  grpc_call *call = h->call;
  h->call = NULL;
  pthread_mutex_unlock(&l->lock);
  if (call)
    grpc_call_unref(call);
  attempt_cleanup(h);
  if (!rc)
    h->msg[0] = '\0';
  if (h->stream)
    h->on_done(h->ud, rc, h->msg);
  else
    h->on_reply(h->ud, rc, resp, h->msg);
  pthread_mutex_lock(&l->lock);
  unlink_locked(h);
  pthread_mutex_unlock(&l->lock);
  handle_free(h);
}

/* Schedules the next attempt after a full-jitter backoff. false when the
 * wait would pass the deadline or the call was cancelled. */
static bool retry_later(q_grpc_async_t *h) {
  int64_t due = q_now_ms() + (int64_t)randombytes_uniform((uint32_t)h->backoff_ms);
  if (h->deadline_ms && due >= h->deadline_ms)
    return false;
  h->backoff_ms = h->backoff_ms * 2 > MAX_BACKOFF_MS ? MAX_BACKOFF_MS : h->backoff_ms * 2;
  loop_t *l = h->loop;
  pthread_mutex_lock(&l->lock);
  bool ok = !h->cancelled;
  if (ok)
    timer_insert_locked(l, h, due);
  pthread_mutex_unlock(&l->lock);
  return ok;
}

/* A unary attempt's batch has completed: report, or retry. */
static void unary_done(q_grpc_async_t *h) {
  loop_t *l = h->loop;
  pthread_mutex_lock(&l->lock);
  grpc_call *call = h->call;
  h->call = NULL;
  h->pending--;
  bool cancelled = h->cancelled;
  pthread_mutex_unlock(&l->lock);
  grpc_call_unref(call);

  const char *labels[4] = {"unary", h->service, h->md->name, NULL};
  q_metrics_inc(m_cli_msg_out, labels);
  status_text(h->msg, sizeof h->msg, h->status, h->details, h->error_string);
  q_err_t rc = h->status == GRPC_STATUS_OK ? Q_OK : q_err_from_grpc(h->status);
  ProtobufCMessage *resp = NULL;
  if (h->recv_bb) {
    q_metrics_inc(m_cli_msg_in, labels);
    if (!cancelled && !(resp = unpack(h->recv_bb, h->md->output, h->arena)) && !rc) {
      rc = Q_EINTERNAL;
      snprintf(h->msg, sizeof h->msg, "malformed reply from %s/%s", h->service,
               h->md->name);
    }
  }
  if (!rc && !resp && !cancelled) {
    rc = Q_EINTERNAL;
    snprintf(h->msg, sizeof h->msg, "no reply message from %s/%s", h->service,
             h->md->name);
  }
  labels[3] = q_grpc_code_name(h->status);
  q_metrics_inc(m_cli_handled, labels);
  q_metrics_observe(m_cli_seconds, labels, q_now_s() - h->t0);
  attempt_cleanup(h);
  if (rc == Q_EUNAVAIL && !cancelled && h->attempt < h->attempts && retry_later(h))
    return;
  finish(h, rc, resp);
}

/* A retry is due (or the call was cancelled while it waited). */
static void timer_fired(q_grpc_async_t *h) {
  pthread_mutex_lock(&h->loop->lock);
  bool cancelled = h->cancelled;
  pthread_mutex_unlock(&h->loop->lock);
  q_err_t rc = cancelled ? Q_ECANCELLED : unary_attempt_start(h);
  if (rc) {
    if (rc == Q_EINTERNAL)
      snprintf(h->msg, sizeof h->msg, "cannot start call to %s/%s", h->service,
               h->md->name);
    finish(h, rc, NULL);
  }
}

/* Ends a stream once nothing is pending: status, metrics, on_done. */
static void stream_finish(q_grpc_async_t *h) {
  const char *labels[4] = {"server_stream", h->service, h->md->name,
                           q_grpc_code_name(h->status)};
  q_metrics_inc(m_cli_handled, labels);
  q_metrics_observe(m_cli_seconds, labels, q_now_s() - h->t0);
  q_err_t rc = h->local_rc;
  if (!rc) {
    status_text(h->msg, sizeof h->msg, h->status, h->details, h->error_string);
    rc = h->status == GRPC_STATUS_OK ? Q_OK : q_err_from_grpc(h->status);
  }
  finish(h, rc, NULL);
}

/* One of a stream's batches has completed. */
static void stream_event(q_grpc_async_t *h, ev_kind_t kind, bool success) {
  loop_t *l = h->loop;
  const char *labels[3] = {"server_stream", h->service, h->md->name};
  grpc_byte_buffer *bb = NULL;
  pthread_mutex_lock(&l->lock);
  h->pending--;
  bool cancelled = h->cancelled;
  if (kind == EV_STATUS)
    h->status_done = true;
  if (kind == EV_MSG) {
    bb = h->recv_bb;
    h->recv_bb = NULL;
  }
  pthread_mutex_unlock(&l->lock);

  if (kind == EV_BATCH && success)
    q_metrics_inc(m_cli_msg_out, labels);
  bool delivered = false, more = false;
  if (bb && !cancelled) {
    ProtobufCMessage *m = unpack(bb, h->md->output, h->arena);
    if (m) {
      q_metrics_inc(m_cli_msg_in, labels);
      delivered = true;
      more = h->on_message(h->ud, m);
    } else {
      pthread_mutex_lock(&l->lock);
      if (!h->local_rc) {
        h->local_rc = Q_EINTERNAL;
        snprintf(h->msg, sizeof h->msg, "malformed message from %s/%s", h->service,
                 h->md->name);
      }
      grpc_call_cancel(h->call, NULL);
      pthread_mutex_unlock(&l->lock);
    }
  }
  if (bb)
    grpc_byte_buffer_destroy(bb);

  pthread_mutex_lock(&l->lock);
  /* No read after the end of the stream (an empty read), after the status
   * or once cancelled. A resume that came while on_message ran (before
   * the pause it asked for took effect) cancels that pause. */
  bool early = h->resume_early;
  h->resume_early = false;
  if (delivered && !more && !early)
    h->paused = true;
  else if (delivered && !h->cancelled && !h->status_done)
    post_read_locked(h);
  bool over = h->pending == 0 && !h->done;
  pthread_mutex_unlock(&l->lock);
  if (over)
    stream_finish(h);
}

void q_grpc_stream_async_resume(q_grpc_async_t *h) {
  if (!h || !h->stream)
    return;
  pthread_mutex_lock(&h->loop->lock);
  /* A paused stream still has its status pending (else it would be done),
   * so the call is alive and the read may be posted from here. */
  if (h->paused && !h->done && !h->cancelled) {
    h->paused = false;
    post_read_locked(h);
  } else if (!h->paused && !h->done) {
    h->resume_early = true;
  }
  pthread_mutex_unlock(&h->loop->lock);
}

static void dispatch(loop_t *l, ev_tag_t *tag, bool success) {
  if (tag->kind == EV_WAKE) {
    pthread_mutex_lock(&l->lock);
    l->woken = false;
    pthread_mutex_unlock(&l->lock);
  } else if (tag->h->stream) {
    stream_event(tag->h, tag->kind, success);
  } else {
    unary_done(tag->h); /* RECV_STATUS_ON_CLIENT: always a success */
  }
}

/* Runs every retry that is due. */
static void run_timers(loop_t *l) {
  int64_t now = q_now_ms();
  for (;;) {
    pthread_mutex_lock(&l->lock);
    q_grpc_async_t *h = l->timers;
    if (h && h->due <= now)
      timer_remove_locked(l, h);
    else
      h = NULL;
    pthread_mutex_unlock(&l->lock);
    if (!h)
      return;
    timer_fired(h);
  }
}

/* A loop thread: waits on its queue until the next completion or the
 * earliest retry, whichever comes first. Stops when its queue is shut down,
 * which it does itself once stopping and without calls. */
static void *loop_main(void *arg) {
  loop_t *l = arg;
  for (;;) {
    pthread_mutex_lock(&l->lock);
    bool timed = l->timers != NULL;
    int64_t wait_ms = timed ? l->timers->due - q_now_ms() : 0;
    if (l->stopping && !l->live && !l->cq_down) {
      l->cq_down = true;
      grpc_completion_queue_shutdown(l->cq);
    }
    pthread_mutex_unlock(&l->lock);
    gpr_timespec until = !timed ? gpr_inf_future(GPR_CLOCK_MONOTONIC)
                                : deadline_from_ms(wait_ms > 0 ? wait_ms : 0);
    grpc_event ev = grpc_completion_queue_next(l->cq, until, NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN)
      break;
    if (ev.type == GRPC_OP_COMPLETE)
      dispatch(l, ev.tag, ev.success);
    run_timers(l);
  }
  return NULL;
}

/* Cancels every call, waits for their callbacks and stops the loops. */
static void loops_stop(void) {
  pthread_mutex_lock(&loops_lock);
  if (loops_state != LOOPS_RUNNING) {
    pthread_mutex_unlock(&loops_lock);
    return;
  }
  loops_state = LOOPS_STOPPING;
  pthread_mutex_unlock(&loops_lock);
  for (int i = 0; i < nloops; i++) {
    loop_t *l = &loops[i];
    pthread_mutex_lock(&l->lock);
    l->stopping = true;
    for (q_grpc_async_t *h = l->live; h; h = h->next)
      cancel_locked(h);
    wake_locked(l);
    pthread_mutex_unlock(&l->lock);
  }
  for (int i = 0; i < nloops; i++) {
    pthread_join(loops[i].thread, NULL);
    grpc_completion_queue_destroy(loops[i].cq);
    pthread_mutex_destroy(&loops[i].lock);
  }
  pthread_mutex_lock(&loops_lock);
  free(loops);
  loops = NULL;
  nloops = 0;
  grpc_channel_destroy(wake_ch);
  wake_ch = NULL;
  loops_state = LOOPS_STOPPED;
  pthread_mutex_unlock(&loops_lock);
  grpc_shutdown();
}

q_err_t q_grpc_async_set_threads(int n) {
  if (n < 1 || n > MAX_LOOPS)
    return Q_EINVAL;
  pthread_mutex_lock(&loops_lock);
  loops_wanted = n;
  pthread_mutex_unlock(&loops_lock);
  return Q_OK;
}

/* Registers h and starts its first attempt; on failure frees it. */
static q_err_t async_launch(q_grpc_async_t *h, q_grpc_async_t **handle) {
  q_err_t rc = async_register(h);
  if (rc) {
    handle_free(h);
    return rc;
  }
  if (handle)
    *handle = h; /* before anything can complete */
  rc = h->stream ? stream_attempt_start(h) : unary_attempt_start(h);
  if (rc) {
    if (handle)
      *handle = NULL;
    pthread_mutex_lock(&h->loop->lock);
    unlink_locked(h);
    pthread_mutex_unlock(&h->loop->lock);
    handle_free(h);
  }
  return rc;
}

q_err_t q_grpc_unary_async(q_grpc_channel_t *ch, const ProtobufCServiceDescriptor *svc,
                           unsigned method_index, const ProtobufCMessage *req,
                           q_arena_t *arena, const q_grpc_call_opts_t *opts,
                           q_grpc_unary_cb cb, void *ud, q_grpc_async_t **handle) {
  if (handle)
    *handle = NULL;
  if (!cb)
    return Q_EINVAL;
  q_grpc_async_t *h;
  q_err_t rc = async_new(ch, svc, method_index, req, arena, opts, ud, &h);
  if (rc)
    return rc;
  h->on_reply = cb;
  return async_launch(h, handle);
}

q_err_t q_grpc_stream_async_start(q_grpc_channel_t *ch,
                                  const ProtobufCServiceDescriptor *svc,
                                  unsigned method_index, const ProtobufCMessage *req,
                                  q_arena_t *arena, const q_grpc_call_opts_t *opts,
                                  q_grpc_stream_msg_cb on_message,
                                  q_grpc_stream_done_cb on_done, void *ud,
                                  q_grpc_async_t **handle) {
  if (handle)
    *handle = NULL;
  if (!on_message || !on_done)
    return Q_EINVAL;
  q_grpc_async_t *h;
  q_err_t rc = async_new(ch, svc, method_index, req, arena, opts, ud, &h);
  if (rc)
    return rc;
  h->stream = true;
  h->attempts = 1; /* messages may have been handled: never replayed */
  h->on_message = on_message;
  h->on_done = on_done;
  return async_launch(h, handle);
}
