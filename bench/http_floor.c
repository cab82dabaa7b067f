/* http_floor.c - the same trivial GET /healthz reply served by three HTTP
 * server libraries, to compare them on this box (docs/edge.md):
 *
 *   http_floor mhd|h2o|evhttp PORT [THREADS]
 *
 *   mhd     libmicrohttpd (what the gateway uses): internal thread pool of
 *           THREADS, epoll, suspend/resume allowed (as the gateway runs it)
 *   h2o     h2o's libh2o-evloop: THREADS event loops, one SO_REUSEPORT
 *           listener each
 *   evhttp  libevent's evhttp: THREADS event bases, one SO_REUSEPORT
 *           listener each
 *
 * Every server answers GET /healthz with 200 {"status":"ok"} as
 * application/json and anything else with 404, over HTTP/1.1 keep-alive.
 * Bench-only: never linked into a service. Prints "listening PORT" once
 * it accepts connections, then serves until killed. */
#define H2O_USE_EPOLL 1
#include <h2o.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY "{\"status\":\"ok\"}"
#define MAX_THREADS 64

static int listener(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4096) != 0) {
    perror("listen");
    exit(1);
  }
  return fd;
}

/* ---- libmicrohttpd -------------------------------------------------------- */

static struct MHD_Response *mhd_ok, *mhd_404;

static enum MHD_Result mhd_access(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size,
                                  void **con_cls) {
  (void)cls, (void)method, (void)version, (void)upload, (void)upload_size;
  if (!*con_cls) { /* first call: the head is in; answer on the next */
    *con_cls = c;
    return MHD_YES;
  }
  bool ok = strcmp(url, "/healthz") == 0;
  return MHD_queue_response(c, ok ? 200 : 404, ok ? mhd_ok : mhd_404);
}

static void run_mhd(int port, int threads) {
  mhd_ok = MHD_create_response_from_buffer(strlen(BODY), BODY, MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(mhd_ok, "Content-Type", "application/json");
  mhd_404 = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
          MHD_ALLOW_SUSPEND_RESUME,
      (uint16_t)port, NULL, NULL, mhd_access, NULL, MHD_OPTION_THREAD_POOL_SIZE,
      (unsigned)threads, MHD_OPTION_CONNECTION_LIMIT, 20000u,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(48u << 10),
      MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "MHD_start_daemon failed\n");
    exit(1);
  }
  printf("listening %d\n", port);
  fflush(stdout);
  pause();
}

/* ---- h2o (libh2o-evloop) -------------------------------------------------- */

static h2o_globalconf_t h2o_config;

static int h2o_on_req(h2o_handler_t *self, h2o_req_t *req) {
  (void)self;
  static h2o_generator_t gen = {NULL, NULL};
  if (!h2o_memis(req->path_normalized.base, req->path_normalized.len,
                 H2O_STRLIT("/healthz")))
    return -1; /* h2o answers 404 */
  req->res.status = 200;
  req->res.reason = "OK";
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                 H2O_STRLIT("application/json"));
  req->res.content_length = strlen(BODY);
  h2o_start_response(req, &gen);
  h2o_iovec_t body = h2o_iovec_init(H2O_STRLIT(BODY));
  h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
  return 0;
}

typedef struct h2o_thread {
  h2o_evloop_t *loop;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx;
  int fd;
} h2o_thread_t;

static void h2o_on_accept(h2o_socket_t *listener_sock, const char *err) {
  if (err)
    return;
  h2o_socket_t *sock = h2o_evloop_socket_accept(listener_sock);
  if (sock)
    h2o_accept(listener_sock->data, sock);
}

static void *h2o_main(void *arg) {
  h2o_thread_t *t = arg;
  t->loop = h2o_evloop_create();
  h2o_context_init(&t->ctx, t->loop, &h2o_config);
  t->accept_ctx.ctx = &t->ctx;
  t->accept_ctx.hosts = h2o_config.hosts;
  h2o_socket_t *sock =
      h2o_evloop_socket_create(t->loop, t->fd, H2O_SOCKET_FLAG_DONT_READ);
  sock->data = &t->accept_ctx;
  h2o_socket_read_start(sock, h2o_on_accept);
  while (h2o_evloop_run(t->loop, INT32_MAX) == 0)
    ;
  return NULL;
}

static void run_h2o(int port, int threads) {
  signal(SIGPIPE, SIG_IGN);
  h2o_config_init(&h2o_config);
  h2o_hostconf_t *host =
      h2o_config_register_host(&h2o_config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  h2o_handler_t *handler = h2o_create_handler(path, sizeof *handler);
  handler->on_req = h2o_on_req;
  static h2o_thread_t ts[MAX_THREADS];
  pthread_t tid[MAX_THREADS];
  for (int i = 0; i < threads; i++) {
    ts[i].fd = listener(port);
    pthread_create(&tid[i], NULL, h2o_main, &ts[i]);
  }
  printf("listening %d\n", port);
  fflush(stdout);
  pthread_join(tid[0], NULL);
}

/* ---- libevent evhttp ------------------------------------------------------ */

static void ev_healthz(struct evhttp_request *req, void *arg) {
  (void)arg;
  struct evbuffer *b = evhttp_request_get_output_buffer(req);
  evbuffer_add(b, BODY, strlen(BODY));
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "application/json");
  evhttp_send_reply(req, 200, "OK", NULL);
}

static void *ev_main(void *arg) {
  int fd = (int)(intptr_t)arg;
  struct event_base *base = event_base_new();
  struct evhttp *http = evhttp_new(base);
  evhttp_set_cb(http, "/healthz", ev_healthz, NULL);
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET);
  if (!evhttp_accept_socket_with_handle(http, fd)) {
    fprintf(stderr, "evhttp_accept_socket failed\n");
    exit(1);
  }
  event_base_dispatch(base);
  return NULL;
}

static void run_evhttp(int port, int threads) {
  signal(SIGPIPE, SIG_IGN);
  pthread_t tid[MAX_THREADS];
  for (int i = 0; i < threads; i++)
    pthread_create(&tid[i], NULL, ev_main, (void *)(intptr_t)listener(port));
  printf("listening %d\n", port);
  fflush(stdout);
  pthread_join(tid[0], NULL);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s mhd|h2o|evhttp PORT [THREADS]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[2]);
  int threads = argc > 3 ? atoi(argv[3]) : 2;
  if (threads < 1 || threads > MAX_THREADS)
    threads = 2;
  if (strcmp(argv[1], "mhd") == 0)
    run_mhd(port, threads);
  else if (strcmp(argv[1], "h2o") == 0)
    run_h2o(port, threads);
  else if (strcmp(argv[1], "evhttp") == 0)
    run_evhttp(port, threads);
  else {
    fprintf(stderr, "unknown server %s\n", argv[1]);
    return 2;
  }
  return 0;
}
