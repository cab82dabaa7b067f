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
 * any thread can make blocking calls on a shared channel. */
#include "quarry/grpc.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"
#include "quarry/util.h"

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
  grpc_init();
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
    grpc_event ev = grpc_completion_queue_pluck(ctx->p->cq, &ctx->tag_close,
                                                deadline_from_ms(50), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
      ctx->close_done = 1;
      if (ctx->cancelled)
        return Q_ECANCELLED;
    }
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
      grpc_init();
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

void q_grpc_client_shutdown(void) {
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

struct q_grpc_call {
  grpc_call *call;
  grpc_completion_queue *cq;
  const ProtobufCMethodDescriptor *md;
  const char *service;
  const char *kind; /* grpc_type label */
  int64_t max_msg;
  int sent_initial, got_initial, closed_send, failed, eos;
  grpc_metadata_array initial_md;
  grpc_metadata send_md[3];
  grpc_slice md_slices[6];
  int nmd;
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
  int64_t inherited = q_trace_deadline();
  if (inherited) {
    int64_t left = inherited - q_now_ms();
    if (left < timeout)
      timeout = left > 1 ? left : 1;
  }
  char path[MAX_PATH_LEN];
  snprintf(path, sizeof path, "/%s/%s", svc->name, method);
  c->cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_slice mslice = grpc_slice_from_copied_string(path);
  c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, mslice,
                                     NULL, deadline_from_ms(timeout), NULL);
  grpc_slice_unref(mslice);

  /* Outgoing metadata: trace context and credentials. */
  const char *trace = q_trace_id();
  char tp[80];
  if (trace[0]) {
    char span[17];
    q_trace_new_id(tp); /* reuse as randomness for the span id */
    memcpy(span, tp, 16);
    span[16] = 0;
    snprintf(tp, sizeof tp, "00-%.32s-%s-01", trace, span);
    c->md_slices[0] = grpc_slice_from_static_string("x-trace-id");
    c->md_slices[1] = grpc_slice_from_copied_string(trace);
    c->send_md[c->nmd].key = c->md_slices[0];
    c->send_md[c->nmd++].value = c->md_slices[1];
    if (strlen(trace) == Q_TRACE_ID_LEN) {
      c->md_slices[2] = grpc_slice_from_static_string("traceparent");
      c->md_slices[3] = grpc_slice_from_copied_string(tp);
      c->send_md[c->nmd].key = c->md_slices[2];
      c->send_md[c->nmd++].value = c->md_slices[3];
    }
  }
  if (opts && opts->authorization) {
    c->md_slices[4] = grpc_slice_from_static_string("authorization");
    c->md_slices[5] = grpc_slice_from_copied_string(opts->authorization);
    c->send_md[c->nmd].key = c->md_slices[4];
    c->send_md[c->nmd++].value = c->md_slices[5];
  }
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
  ops[n].data.send_initial_metadata.count = (size_t)c->nmd;
  ops[n].data.send_initial_metadata.metadata = c->send_md;
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
  if (err && errlen) {
    size_t dl = GRPC_SLICE_LENGTH(details);
    if (dl)
      snprintf(err, errlen, "%.*s", (int)(dl > 1024 ? 1024 : dl),
               (const char *)GRPC_SLICE_START_PTR(details));
    else if (status != GRPC_STATUS_OK)
      snprintf(err, errlen, "%s", error_string ? error_string : q_grpc_code_name(status));
    else
      err[0] = 0;
  }
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
  for (int i = 0; i < 6; i++)
    grpc_slice_unref(c->md_slices[i]);
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
  int64_t backoff = 50;
  for (int i = 1;; i++) {
    int rc = unary_once(ch, svc, method, req, resp, arena, opts, err, errlen);
    if (rc != Q_EUNAVAIL || i >= attempts)
      return rc;
    /* Full jitter: sleep a random time in [0, backoff), never past the
     * inherited deadline. */
    int64_t sleep_ms = (int64_t)randombytes_uniform((uint32_t)backoff);
    int64_t dl = q_trace_deadline();
    if (dl && q_now_ms() + sleep_ms >= dl)
      return rc;
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
  }
}
