/* sidecar.c - the plain-HTTP side port (/metrics, /healthz, /readyz) on
 * libmicrohttpd's internal polling thread.
 *
 * The side port is for scrapers and orchestrators, so its own traffic is not
 * counted in the http_* families (those describe the gateway's REST API). */
#include "quarry/sidecar.h"

#include "quarry/buf.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/util.h"

#include <jansson.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define METRICS_MAX_BYTES (64u << 20) /* far above any real scrape */
#define WHY_MAX 256

struct q_sidecar {
  struct MHD_Daemon *daemon;
  q_ready_cb ready;
  void *ud;
  int port;
};

/* Queues body (taken over: freed by MHD) with the given status and type. */
static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status,
                               const char *type, char *body, const char *allow) {
  if (!body)
    return MHD_NO; /* out of memory: MHD closes the connection */
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (allow)
    MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result respond_json(struct MHD_Connection *conn, unsigned status,
                                    json_t *obj, const char *allow) {
  char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  return respond(conn, status, "application/json", body, allow);
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, unsigned status,
                                     const char *code, const char *message,
                                     const char *allow) {
  return respond_json(
      conn, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message),
      allow);
}

static enum MHD_Result serve_metrics(struct MHD_Connection *conn) {
  q_buf_t b;
  q_buf_init(&b, METRICS_MAX_BYTES);
  int rc = q_metrics_render(&b);
  if (rc) {
    q_buf_cleanup(&b);
    q_log_error("sidecar: rendering metrics failed", "{s:i}", "rc", rc);
    return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                         "rendering metrics failed", NULL);
  }
  return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                 q_buf_steal(&b), NULL);
}

static enum MHD_Result serve_ready(struct MHD_Connection *conn, q_sidecar_t *s) {
  char why[WHY_MAX] = "";
  if (!s->ready || s->ready(s->ud, why, sizeof why) == 0)
    return respond_json(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "ready"), NULL);
  why[sizeof why - 1] = '\0'; /* the callback is trusted, but not that far */
  /* json_pack refuses invalid UTF-8; fall back to a fixed reason then. */
  json_t *body = json_pack("{s:s,s:s}", "status", "not ready", "reason",
                           why[0] ? why : "dependencies not reachable");
  if (!body)
    body = json_pack("{s:s,s:s}", "status", "not ready", "reason",
                     "dependencies not reachable");
  return respond_json(conn, MHD_HTTP_SERVICE_UNAVAILABLE, body, NULL);
}

static enum MHD_Result handler_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  q_sidecar_t *s = cls;
  int is_get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
               strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
  int route = strcmp(url, "/metrics") == 0   ? 1
              : strcmp(url, "/healthz") == 0 ? 2
              : strcmp(url, "/readyz") == 0  ? 3
                                             : 0;
  /* Answering on the first call is fine for these bodiless routes: MHD
   * discards (or closes on) any request body it has not read. */
  if (!route) {
    char msg[300];
    snprintf(msg, sizeof msg, "no route for %.200s", url);
    json_t *body =
        json_pack("{s:{s:s,s:s}}", "error", "code", "not_found", "message", msg);
    if (!body) /* the path was not valid UTF-8 */
      body = json_pack("{s:{s:s,s:s}}", "error", "code", "not_found", "message",
                       "no such route");
    return respond_json(conn, MHD_HTTP_NOT_FOUND, body, NULL);
  }
  if (!is_get)
    return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
                         "only GET is allowed here", "GET, HEAD");
  if (route == 1)
    return serve_metrics(conn);
  if (route == 2)
    return respond_json(conn, MHD_HTTP_OK, json_pack("{s:s}", "status", "ok"), NULL);
  return serve_ready(conn, s);
}

q_sidecar_t *q_sidecar_start(const char *addr, q_ready_cb ready, void *ud) {
  struct sockaddr_storage ss;
  char why[256];
  int port = 0;
  if (q_addr_listen(addr, &ss, &port, why, sizeof why)) {
    q_log_error("sidecar: bad listen address", "{s:s,s:s}", "addr",
                addr ? addr : "(null)", "error", why);
    return NULL;
  }

  q_sidecar_t *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->ready = ready;
  s->ud = ud;
  /* MHD_USE_AUTO picks epoll/poll: select() breaks past fd 1023, which a
   * busy service can reach. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  s->daemon = MHD_start_daemon(
      flags, (uint16_t)port, NULL, NULL, handler_cb, s,
      /* The logger first, so it also hears about the options after it. */
      MHD_OPTION_EXTERNAL_LOGGER, q_log_library_cb, "sidecar: libmicrohttpd",
      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned)128,
      /* Two threads: a readiness check stuck on a dependency (up to its
       * connect timeout) must not hold up a metrics scrape. */
      MHD_OPTION_THREAD_POOL_SIZE, (unsigned)2, MHD_OPTION_END);
  if (!s->daemon) {
    q_log_error("sidecar: cannot listen", "{s:s}", "addr", addr);
    free(s);
    return NULL;
  }
  const union MHD_DaemonInfo *info =
      MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  s->port = info && info->port ? (int)info->port : port;
  return s;
}

int q_sidecar_port(const q_sidecar_t *s) {
  return s ? s->port : 0;
}

void q_sidecar_stop(q_sidecar_t *s) {
  if (!s)
    return;
  MHD_stop_daemon(s->daemon);
  free(s);
}
