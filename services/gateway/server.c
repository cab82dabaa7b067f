/* server.c - libmicrohttpd wiring and the life of one request: routing,
 * admission (credential, rate limit), body handling, dispatch to the
 * handler, metrics and the access log (see server.h). */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/util.h"

#include "authn.h"
#include "depwatch.h"
#include "guard.h"
#include "handlers.h"
#include "http_util.h"
#include "params.h"
#include "ratelimit.h"
#include "routes.h"

#define REQ_ARENA_MAX (64u << 20) /* everything one request may allocate */
#define AUTH_TIMEOUT_MS 3000
#define DRAIN_SLACK (64ull << 20) /* body bytes read past a limit to reply */

struct gw_server {
  struct MHD_Daemon *d;
  guard_t *guard; /* connection caps, deadlines, framing (guard.h) */
  const gw_cfg_t *cfg;
  int port;
  atomic_int active;    /* requests between arrival and completion */
  atomic_int admitting; /* connections suspended for their admission */
};

gw_metrics_t gw_metrics;

void gw_metrics_init(void) {
  gw_metrics.http_requests = q_metrics_counter(
      "http_requests_total", "HTTP requests by route template, method and status code.",
      "route,method,code");
  gw_metrics.http_seconds = q_metrics_histogram(
      "http_request_duration_seconds",
      "Time from an HTTP request's arrival to its completion.", "route,method", NULL, 0);
  gw_metrics.stage_seconds = q_metrics_histogram(
      "quarry_stage_duration_seconds",
      "Time spent in each stage of a query (auth, embed, retrieve, rerank, generate, "
      "record_query, total).",
      "stage", NULL, 0);
  gw_metrics.queries = q_metrics_counter("quarry_queries_total",
                                         "Queries by outcome: ok, degraded (a stage fell "
                                         "back), rejected (4xx), failed (5xx).",
                                         "outcome");
  gw_metrics.rate_limited =
      q_metrics_counter("quarry_rate_limited_total",
                        "Requests refused by the per-principal rate limit.", "");
}

void gw_observe_stage(const char *stage, double seconds) {
  const char *labels[] = {stage};
  q_metrics_observe(gw_metrics.stage_seconds, labels, seconds);
}

int64_t gw_ms_left(const gw_req_t *r) {
  return r->deadline_ms ? r->deadline_ms - q_now_ms() : INT64_MAX;
}

/* A bounded set of method names for metric labels. */
static const char *method_label(const char *m) {
  static const char *const known[] = {"GET",   "POST", "PUT",     "DELETE",
                                      "PATCH", "HEAD", "OPTIONS", NULL};
  for (const char *const *k = known; *k; k++)
    if (strcmp(*k, m) == 0)
      return *k;
  return "OTHER";
}

static gw_req_t *req_new(gw_server_t *s, struct MHD_Connection *conn) {
  q_arena_t *arena = q_arena_new(REQ_ARENA_MAX);
  gw_req_t *r = arena ? q_arena_alloc(arena, sizeof *r) : NULL;
  if (!r) {
    q_arena_free(arena);
    return NULL;
  }
  r->arena = arena;
  r->conn = conn;
  r->cfg = s->cfg;
  r->t0 = q_now_s();
  r->start_ms = q_now_ms();
  r->route_label = "unmatched";
  q_buf_init(&r->body, (size_t)s->cfg->max_json_bytes);
  uint64_t biggest = (uint64_t)(s->cfg->max_upload_bytes > s->cfg->max_json_bytes
                                    ? s->cfg->max_upload_bytes
                                    : s->cfg->max_json_bytes);
  r->drain_cap = biggest + DRAIN_SLACK;
  atomic_fetch_add(&s->active, 1);
  return r;
}

/* Content-Length, Transfer-Encoding and Expect, as far as admission needs
 * them. Returns whether a body is coming. */
static bool body_expected(gw_req_t *r, int *expect_continue) {
  const char *cl = http_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    if (errno == 0 && end != cl && *end == '\0' && cl[0] != '-') {
      r->declared_len = v;
      r->has_declared_len = 1;
    }
  }
  const char *te = http_header(r, MHD_HTTP_HEADER_TRANSFER_ENCODING);
  const char *ex = http_header(r, MHD_HTTP_HEADER_EXPECT);
  *expect_continue = ex && strcasecmp(ex, "100-continue") == 0;
  return (r->has_declared_len && r->declared_len > 0) ||
         (te && strcasestr(te, "chunked") != NULL);
}

/* ---- admission: the principal and the rate limit -------------------------
 *
 * No HTTP thread waits on auth or Redis. A principal the cache knows, with
 * the rate limit off, is admitted at once. Otherwise the request's
 * connection is suspended in its first call while auth.Authenticate runs
 * on the asynchronous gRPC stub (authn.h) and the rate limiter's thread
 * asks Redis (ratelimit.h); the last of them records the outcome in the
 * request's gw_admission and resumes the connection, and libmicrohttpd
 * calls the handler's first call again, which applies it (admit_finish).
 * The guard is told (guard_first_call_again) so that repeat call is not
 * taken for the end of the body.
 *
 * `done` and `suspended` under mu decide who resumes: the handler suspends
 * only when the outcome is not in yet; a completion that finds the
 * connection suspended resumes it. The handler takes mu once after the
 * resume before it reads the outcome, so the completion has let go of the
 * request (whose arena holds the admission) before it can be freed. */
typedef struct gw_admission {
  pthread_mutex_t mu;
  bool done;
  bool suspended;
  gw_server_t *s;
  struct MHD_Connection *conn;
  double t0;
  q_err_t rc;   /* of the principal */
  bool limited; /* over the rate limit */
  gw_principal_t principal;
  char err[512];
} gw_admission_t;

/* The outcome is in (any thread, once). */
static void admission_done(gw_admission_t *a) {
  pthread_mutex_lock(&a->mu);
  a->done = true;
  gw_server_t *s = a->s;
  bool resume = a->suspended;
  if (resume)
    MHD_resume_connection(a->conn);
  pthread_mutex_unlock(&a->mu);
  if (resume)
    atomic_fetch_sub(&s->admitting, 1);
}

static void admission_limit_cb(void *ud, bool allowed) {
  gw_admission_t *a = ud;
  a->limited = !allowed;
  admission_done(a);
}

static void admission_limit(gw_admission_t *a) {
  if (ratelimit_enabled())
    ratelimit_check(&a->principal, admission_limit_cb, a);
  else
    admission_done(a);
}

static void admission_auth_cb(void *ud, q_err_t rc, const gw_principal_t *p,
                              const char *err) {
  gw_admission_t *a = ud;
  a->rc = rc;
  if (rc) {
    snprintf(a->err, sizeof a->err, "%s", err);
    admission_done(a);
    return;
  }
  a->principal = *p;
  admission_limit(a);
}

/* Applies the outcome to the request; a refusal is left pending. */
static void admit_finish(gw_req_t *r) {
  gw_admission_t *a = r->admission;
  pthread_mutex_lock(&a->mu); /* the completion has let go of a */
  pthread_mutex_unlock(&a->mu);
  r->admission = NULL;
  r->auth_ms = (q_now_s() - a->t0) * 1000.0;
  if (a->rc == Q_EUNAUTH) {
    http_reject_err(r, Q_EUNAUTH, "%s", a->err);
    return;
  }
  if (a->rc) {
    char msg[768];
    http_downstream_msg(msg, sizeof msg, "auth", a->rc, a->err);
    http_reject_err(r, a->rc, "%s", msg);
    return;
  }
  r->principal = a->principal;
  r->authenticated = 1;
  if (a->limited) {
    q_metrics_inc(gw_metrics.rate_limited, NULL);
    http_add_header(r, "Retry-After", "1");
    http_reject_err(r, Q_ERESOURCE, "rate limit of %lld requests per second exceeded",
                    (long long)r->cfg->rate_limit_rps);
  }
}

/* Starts establishing the principal and applying the rate limit. false:
 * the outcome is in, applied (a refusal left pending); true: the
 * connection is suspended until it comes (then admit_finish). */
static bool admit(gw_server_t *s, gw_req_t *r) {
  char err[512] = "";
  const char *key;
  size_t len;
  double t0 = q_now_s();
  q_err_t rc = authn_extract(http_header(r, MHD_HTTP_HEADER_AUTHORIZATION),
                             http_header(r, "X-API-Key"), &key, &len, err, sizeof err);
  if (rc) {
    http_reject_err(r, Q_EUNAUTH, "%s", err);
    return false;
  }
  gw_admission_t *a = q_arena_alloc(r->arena, sizeof *a);
  if (!a) {
    http_reject_err(r, Q_ENOMEM, "out of memory");
    return false;
  }
  memset(a, 0, sizeof *a);
  pthread_mutex_init(&a->mu, NULL);
  a->s = s;
  a->conn = r->conn;
  a->t0 = t0;
  r->admission = a;
  if (authn_cached(key, len, &a->principal)) {
    admission_limit(a);
  } else {
    rc = authn_principal_async(r->cfg->auth_addr, key, len, AUTH_TIMEOUT_MS,
                               r->deadline_ms, r->trace_id, admission_auth_cb, a, a->err,
                               sizeof a->err);
    if (rc) {
      a->rc = rc;
      admission_done(a);
    }
  }
  pthread_mutex_lock(&a->mu);
  bool wait = !a->done;
  if (wait) {
    a->suspended = true;
    atomic_fetch_add(&s->admitting, 1);
    guard_first_call_again(r->conn);
    MHD_suspend_connection(r->conn);
  }
  pthread_mutex_unlock(&a->mu);
  if (!wait)
    admit_finish(r);
  return wait;
}

/* First call for a request: the headers are in, the body (if any) is not. */
static void request_admitted(gw_req_t *r);
static void request_early_refusal(gw_req_t *r);

static void request_begin(gw_server_t *s, gw_req_t *r, const char *url,
                          const char *method, const char *version) {
  http_init_ids(r);
  r->method_label = method_label(method);

  route_match_t m;
  route_status_t st = router_match(gw_routes, gw_nroutes, method, url, &m);
  if (m.tmpl)
    r->route_label = m.tmpl;
  r->route = m.route;
  if (st == ROUTE_OK && m.route->body != BODY_STREAM)
    r->deadline_ms = r->start_ms + r->cfg->query_timeout_ms;
  q_trace_set(r->trace_id, r->deadline_ms);
  int expect_continue;
  body_expected(r, &expect_continue); /* Content-Length, for the checks below */

  /* A head whose framing cannot be trusted is answered at once and the
   * connection closed: where its body ends is unknown. */
  guard_verdict_t v;
  if (guard_check_head(r->conn, method, url, version, &v)) {
    http_add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    http_reply_status(r, v.status, v.slug, "%s", v.msg);
    return;
  }

  if (st == ROUTE_NOT_FOUND) {
    http_reject(r, 404, "not_found", "no route for %s %.200s", method, url);
  } else if (st == ROUTE_BAD_METHOD) {
    http_add_header(r, MHD_HTTP_HEADER_ALLOW, q_arena_strdup(r->arena, m.allow));
    http_reject(r, 405, "method_not_allowed",
                "method %s is not allowed on %s (allowed: %s)", method, m.tmpl, m.allow);
  } else {
    if (m.param) {
      memcpy(r->param, m.param, m.param_len);
      r->param[m.param_len] = '\0';
    }
    if (!r->route->is_public && admit(s, r))
      return; /* suspended: request_admitted comes with the resume */
    request_admitted(r);
    return;
  }
  request_early_refusal(r);
}

/* The checks that follow admission, then request_early_refusal. */
static void request_admitted(gw_req_t *r) {
  if (!r->pending && r->route->roles && !(r->principal.roles & r->route->roles)) {
    char need[64];
    params_role_need(r->route->roles, need, sizeof need);
    http_reject_err(r, Q_EPERM, "%s needs the %s role", r->route->action, need);
  }
  if (!r->pending && r->route->body == BODY_JSON &&
      !http_json_media(http_header(r, MHD_HTTP_HEADER_CONTENT_TYPE))) {
    guard_count("content_type");
    http_reject_err(r, Q_EUNSUPPORTED,
                    "Content-Type must be application/json (optionally with "
                    "charset=utf-8)");
  }
  if (!r->pending && r->route->body == BODY_JSON && r->has_declared_len &&
      r->declared_len > (uint64_t)r->cfg->max_json_bytes)
    http_reject_err(r, Q_ETOOBIG, "JSON body larger than %lld bytes",
                    (long long)r->cfg->max_json_bytes);
  if (!r->pending && r->route->body == BODY_STREAM)
    r->route->stream->begin(r);
  request_early_refusal(r);
}

static void request_early_refusal(gw_req_t *r) {
  int expect_continue;
  int has_body = body_expected(r, &expect_continue);

  /* A refusal goes out now, unread body and all (libmicrohttpd then
   * closes the connection), when the client waits for "100 Continue"
   * before sending its body, announced more than would be drained, or has
   * no valid credential and a body larger than QUARRY_HTTP_DRAIN_BYTES or
   * of unknown length: a stranger's upload costs nothing. Otherwise it goes
   * out at the end of the body (at once for a bodiless request), which
   * keeps the connection usable and spares a client that writes its whole
   * body before reading a reset instead of the answer. */
  int stranger = !r->authenticated && (!r->has_declared_len ||
                                       r->declared_len > (uint64_t)r->cfg->drain_bytes);
  if (r->pending && has_body &&
      (expect_continue || stranger ||
       (r->has_declared_len && r->declared_len > r->drain_cap))) {
    if (!expect_continue)
      guard_count("unread_body");
    http_add_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    http_reply_pending(r);
  }
}

static void request_body(gw_req_t *r, const char *p, size_t n) {
  r->body_bytes += n;
  if (r->responded || r->pending || !r->route)
    return; /* draining */
  switch (r->route->body) {
  case BODY_JSON:
    if (q_buf_append(&r->body, p, n) != 0)
      http_reject_err(r, Q_ETOOBIG, "JSON body larger than %lld bytes",
                      (long long)r->cfg->max_json_bytes);
    break;
  case BODY_STREAM: r->route->stream->data(r, p, n); break;
  case BODY_NONE: break; /* a body on a GET means nothing: ignore it */
  }
}

static void request_end(gw_req_t *r) {
  if (r->responded)
    return;
  if (r->route && r->route->body == BODY_STREAM && r->stream)
    r->route->stream->end(r); /* aborts the upload itself when pending */
  else if (r->pending)
    http_reply_pending(r);
  else if (r->route && r->route->handle)
    r->route->handle(r);
  if (!r->responded && !r->async)
    http_reply_error(r, Q_EINTERNAL, "the handler produced no reply");
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version,
                                 const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
  gw_server_t *s = cls;
  gw_req_t *r = *con_cls;
  if (!r) {
    r = req_new(s, conn);
    if (!r)
      return MHD_NO;
    *con_cls = r;
    request_begin(s, r, url, method, version);
    q_trace_clear();
    return r->responded && !r->queue_ok ? MHD_NO : MHD_YES;
  }
  q_trace_set(r->trace_id, r->deadline_ms);
  enum MHD_Result ret = MHD_YES;
  if (r->admission) { /* the first call again, after the admission's resume */
    admit_finish(r);
    request_admitted(r);
    ret = r->responded && !r->queue_ok ? MHD_NO : MHD_YES;
  } else if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    request_body(r, upload_data, n);
    /* A refused body is drained only so far; past that the connection is
     * closed without a reply. */
    if ((r->pending || r->responded) && r->body_bytes > r->drain_cap)
      ret = MHD_NO;
  } else if (r->async) {
    ret = r->async->resume(r); /* called again after MHD_resume_connection */
  } else {
    request_end(r);
    ret = r->queue_ok || (r->async && !r->responded) ? MHD_YES : MHD_NO;
  }
  q_trace_clear();
  return ret;
}

static void completed_cb(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  gw_server_t *s = cls;
  gw_req_t *r = *con_cls;
  if (!r)
    return;
  *con_cls = NULL;
  q_trace_set(r->trace_id, 0);
  if (r->route && r->route->body == BODY_STREAM && r->stream)
    r->route->stream->cleanup(r);
  if (r->async)
    r->async->close(r, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK);

  double secs = q_now_s() - r->t0;
  /* No reply reached the client: 499 as nginx logs it. */
  unsigned code =
      r->responded && r->queue_ok && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK
          ? r->status
          : 499;
  if (code == 499 && guard_answered(conn))
    code = guard_answered(conn); /* the guard's 408 */
  char code_s[8];
  snprintf(code_s, sizeof code_s, "%u", code);
  const char *labels[] = {r->route_label, r->method_label, code_s};
  q_metrics_inc(gw_metrics.http_requests, labels);
  q_metrics_observe(gw_metrics.http_seconds, labels, secs);

  int probe = r->route && r->route->is_public;
  q_logf(probe && code < 400 ? Q_LOG_DEBUG : Q_LOG_INFO, "http request",
         "{s:s,s:s,s:i,s:I,s:I,s:s,s:s}", "method", r->method_label, "route",
         r->route_label, "status", (int)code, "ms", (json_int_t)(secs * 1000.0 + 0.5),
         "body_bytes", (json_int_t)r->body_bytes, "request_id", r->request_id,
         "tenant_id", r->authenticated ? r->principal.tenant_id : "");
  q_trace_clear();
  q_buf_cleanup(&r->body);
  q_arena_free(r->arena);
  atomic_fetch_sub(&s->active, 1);
}

gw_server_t *gw_server_start(const gw_cfg_t *cfg) {
  gw_metrics_init();
  struct sockaddr_storage ss;
  char why[256];
  int port;
  if (q_addr_listen(cfg->http_listen, &ss, &port, why, sizeof why)) {
    q_log_error("bad QUARRY_HTTP_LISTEN", "{s:s,s:s}", "addr", cfg->http_listen, "error",
                why);
    return NULL;
  }
  int v6 = ss.ss_family == AF_INET6;

  gw_server_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->cfg = cfg;
  if (query_start(cfg)) {
    free(s);
    return NULL;
  }
  if (depwatch_start(cfg)) {
    query_stop();
    free(s);
    return NULL;
  }
  s->guard = guard_new(cfg, access_cb, s, completed_cb, s);
  if (!s->guard) {
    depwatch_stop();
    query_stop();
    free(s);
    return NULL;
  }
  /* epoll(7) by default: with poll(2) every wake of an HTTP thread walks
   * all its sockets, so 10,000 idle keep-alive connections cut /healthz
   * from ~15K to ~1.3K requests/s (docs/benchmarks.md). With epoll,
   * libmicrohttpd 0.9.75 does not notice a client that closes its
   * connection mid-body; the guard's sweeper does (guard.c, peer_gone).
   * Suspend/resume: a query's connection waits suspended while its
   * pipeline runs elsewhere (query.c), and so does a request's while its
   * admission is under way (above). */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                   (cfg->http_epoll ? MHD_USE_EPOLL : MHD_USE_POLL) |
                   MHD_ALLOW_SUSPEND_RESUME | (v6 ? MHD_USE_IPv6 : 0);
  /* The guard wraps access_cb and completed_cb and brings the connection
   * limits, timeouts and notifications (MHD_OPTION_ARRAY). */
  s->d = MHD_start_daemon(
      flags, (uint16_t)port, guard_accept_cb, s->guard, guard_access_cb, s->guard,
      MHD_OPTION_EXTERNAL_LOGGER, q_log_library_cb, "libmicrohttpd", MHD_OPTION_SOCK_ADDR,
      (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->http_threads,
      MHD_OPTION_ARRAY, guard_mhd_options(s->guard), MHD_OPTION_END);
  if (!s->d || guard_start(s->guard)) {
    q_log_error("cannot start the HTTP server", "{s:s}", "addr", cfg->http_listen);
    if (s->d)
      MHD_stop_daemon(s->d);
    guard_free(s->guard);
    depwatch_stop();
    query_stop();
    free(s);
    return NULL;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info ? info->port : port;
  q_log_info("HTTP server listening", "{s:s,s:i,s:i}", "addr", cfg->http_listen, "port",
             s->port, "threads", (int)cfg->http_threads);
  return s;
}

int gw_server_port(const gw_server_t *s) {
  return s->port;
}

void gw_server_stop(gw_server_t *s, int64_t grace_ms) {
  if (!s)
    return;
  MHD_socket ls = MHD_quiesce_daemon(s->d);
  if (ls != MHD_INVALID_SOCKET)
    close(ls);
  int64_t until = q_now_ms() + grace_ms;
  while (atomic_load(&s->active) > 0 && q_now_ms() < until) {
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  if (atomic_load(&s->active) > 0)
    q_log_warn("grace period over: closing HTTP requests in progress", "{s:i}",
               "requests", atomic_load(&s->active));
  /* Nor with connections suspended for their admission: each is resumed
   * within the auth call's timeout and the rate limiter's round trip. */
  until = q_now_ms() + AUTH_TIMEOUT_MS + 1000;
  while (atomic_load(&s->admitting) > 0 && q_now_ms() < until) {
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  /* libmicrohttpd must not be stopped with suspended connections: end the
   * queries still waiting first (their connections are resumed). */
  query_quiesce();
  MHD_stop_daemon(s->d);
  guard_free(s->guard);
  depwatch_stop();
  query_stop();
  free(s);
}
