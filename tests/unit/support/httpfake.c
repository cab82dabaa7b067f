/* httpfake.c - a loopback HTTP server for unit tests (see httpfake.h). */
#include "httpfake.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct httpfake {
  struct MHD_Daemon *d;
  int port;
  httpfake_fn fn;
  void *ud;
};

typedef struct pending {
  char *data;
  size_t len, cap;
} pending_t;

static bool pending_append(pending_t *p, const char *data, size_t n) {
  if (n > HTTPFAKE_BODY_MAX - p->len)
    n = HTTPFAKE_BODY_MAX - p->len;
  if (p->len + n + 1 > p->cap) {
    size_t cap = p->cap ? p->cap : 4096;
    while (cap < p->len + n + 1)
      cap *= 2;
    char *grown = realloc(p->data, cap);
    if (!grown)
      return false;
    p->data = grown;
    p->cap = cap;
  }
  memcpy(p->data + p->len, data, n);
  p->len += n;
  p->data[p->len] = '\0';
  return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size,
                                  void **con_cls) {
  httpfake_t *f = cls;
  pending_t *p = *con_cls;
  if (!p) { /* first call: headers only */
    *con_cls = p = calloc(1, sizeof *p);
    return p ? MHD_YES : MHD_NO;
  }
  if (*upload_size) {
    bool ok = pending_append(p, upload, *upload_size);
    *upload_size = 0;
    return ok ? MHD_YES : MHD_NO;
  }
  httpfake_req_t req = {.conn = c,
                        .method = method,
                        .url = url,
                        .body = p->data ? p->data : "",
                        .len = p->len};
  return f->fn(f->ud, &req);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  pending_t *p = *con_cls;
  if (p) {
    free(p->data);
    free(p);
    *con_cls = NULL;
  }
}

httpfake_t *httpfake_start(httpfake_fn fn, void *ud, httpfake_threads_t threads) {
  httpfake_t *f = calloc(1, sizeof *f);
  if (!f)
    return NULL;
  f->fn = fn;
  f->ud = ud;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD;
  if (threads == HTTPFAKE_THREAD_PER_CONNECTION)
    flags |= MHD_USE_THREAD_PER_CONNECTION | MHD_USE_AUTO;
  f->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, f, MHD_OPTION_SOCK_ADDR,
                          (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
                          on_completed, NULL, MHD_OPTION_END);
  const union MHD_DaemonInfo *info =
      f->d ? MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
  if (!info || info->port == 0) {
    httpfake_stop(f);
    return NULL;
  }
  f->port = info->port;
  return f;
}

void httpfake_stop(httpfake_t *f) {
  if (!f)
    return;
  if (f->d)
    MHD_stop_daemon(f->d);
  free(f);
}

int httpfake_port(const httpfake_t *f) {
  return f->port;
}

void httpfake_url(const httpfake_t *f, char *out, size_t n, const char *path) {
  snprintf(out, n, "http://127.0.0.1:%d%s", f->port, path);
}

enum MHD_Result httpfake_reply(struct MHD_Connection *c, unsigned status,
                               const char *type, const char *body, size_t len,
                               const char *retry_after) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (!r)
    return MHD_NO;
  if (type)
    MHD_add_response_header(r, "Content-Type", type);
  if (retry_after)
    MHD_add_response_header(r, "Retry-After", retry_after);
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

enum MHD_Result httpfake_reply_json(struct MHD_Connection *c, unsigned status,
                                    json_t *body, const char *retry_after) {
  char *s = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
  json_decref(body);
  if (!s)
    return MHD_NO;
  enum MHD_Result ret =
      httpfake_reply(c, status, "application/json", s, strlen(s), retry_after);
  free(s);
  return ret;
}
