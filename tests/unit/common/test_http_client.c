/* test_http_client.c - q_http_json against a small libmicrohttpd server on a
 * loopback port chosen at run time: JSON round trip, non-JSON and empty
 * replies, error statuses, the reply size cap, timeouts (own and inherited
 * from the thread's deadline), refused connections and header checks. */
#include "httpfake.h"

#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/trace.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static httpfake_t *server;
static int port;
static atomic_int stopping;

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status,
                                 const char *type, const char *body, size_t len) {
  return httpfake_reply(c, status, type, body, len, NULL);
}

static enum MHD_Result serve_cb(void *ud, const httpfake_req_t *hr) {
  struct MHD_Connection *c = hr->conn;
  const char *url = hr->url, *method = hr->method;
  if (strcmp(url, "/echo") == 0) {
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    const char *xt = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Test");
    json_t *body = json_loadb(hr->body, hr->len, 0, NULL);
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:o}", "method", method, "content_type", ct ? ct : "",
                  "x_test", xt ? xt : "", "body", body ? body : json_null());
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    enum MHD_Result ret = send_text(c, 200, "application/json", s, strlen(s));
    free(s);
    return ret;
  }
  if (strcmp(url, "/text") == 0)
    return send_text(c, 200, "text/plain", "hello, not json", 15);
  if (strcmp(url, "/empty") == 0)
    return send_text(c, 204, NULL, "", 0);
  if (strcmp(url, "/error") == 0)
    return send_text(c, 500, "application/json", "{\"error\":\"boom\"}", 16);
  if (strcmp(url, "/huge") == 0) {
    size_t n = 1u << 20;
    char *big = malloc(n + 3);
    big[0] = '"';
    memset(big + 1, 'a', n);
    big[n + 1] = '"';
    big[n + 2] = '\0';
    enum MHD_Result ret = send_text(c, 200, "application/json", big, n + 2);
    free(big);
    return ret;
  }
  if (strcmp(url, "/slow") == 0) {
    for (int i = 0; i < 300 && !atomic_load(&stopping); i++)
      usleep(10000);
    return send_text(c, 200, "application/json", "{}", 2);
  }
  return send_text(c, 404, "application/json", "{\"error\":\"not found\"}", 21);
}

static void start_server(void) {
  q_http_global_init();
  server = httpfake_start(serve_cb, NULL, HTTPFAKE_THREAD_PER_CONNECTION);
  cr_assert_not_null(server);
  port = httpfake_port(server);
}

static void stop_server(void) {
  atomic_store(&stopping, 1);
  httpfake_stop(server);
  server = NULL;
}

TestSuite(http_client, .init = start_server, .fini = stop_server);

static void url(char *out, size_t n, const char *path) {
  snprintf(out, n, "http://127.0.0.1:%d%s", port, path);
}

Test(http_client, posts_json_and_parses_the_reply) {
  char u[128];
  url(u, sizeof u, "/echo");
  json_t *body = json_pack("{s:s,s:i}", "q", "caf\xc3\xa9", "n", 7);
  const char *hdrs[] = {"X-Test: yes", NULL};
  q_http_req_t req = {.url = u, .body = body, .headers = hdrs, .timeout_ms = 5000};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  int rc = q_http_json(&req, &status, &reply, err, sizeof err);
  cr_assert_eq(rc, 0, "%s", err);
  cr_assert_eq(status, 200);
  cr_assert_not_null(reply);
  cr_assert_str_eq(json_string_value(json_object_get(reply, "method")), "POST");
  cr_assert_str_eq(json_string_value(json_object_get(reply, "content_type")),
                   "application/json");
  cr_assert_str_eq(json_string_value(json_object_get(reply, "x_test")), "yes");
  cr_assert(json_equal(json_object_get(reply, "body"), body));
  json_decref(reply);
  json_decref(body);
}

Test(http_client, get_without_body) {
  char u[128];
  url(u, sizeof u, "/echo");
  q_http_req_t req = {.method = "GET", .url = u};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), 0, "%s", err);
  cr_assert_eq(status, 200);
  cr_assert_str_eq(json_string_value(json_object_get(reply, "method")), "GET");
  cr_assert_str_eq(json_string_value(json_object_get(reply, "content_type")), "");
  cr_assert(json_is_null(json_object_get(reply, "body")));
  json_decref(reply);
}

Test(http_client, non_json_and_empty_replies_give_null) {
  char u[128];
  long status = 0;
  json_t *reply = (json_t *)1;
  char err[256];
  url(u, sizeof u, "/text");
  q_http_req_t req = {.method = "GET", .url = u};
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), 0, "%s", err);
  cr_assert_eq(status, 200);
  cr_assert_null(reply);
  url(u, sizeof u, "/empty");
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), 0, "%s", err);
  cr_assert_eq(status, 204);
  cr_assert_null(reply);
}

Test(http_client, error_status_is_a_completed_exchange) {
  char u[128];
  url(u, sizeof u, "/error");
  q_http_req_t req = {.url = u};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), 0, "%s", err);
  cr_assert_eq(status, 500);
  cr_assert_str_eq(json_string_value(json_object_get(reply, "error")), "boom");
  json_decref(reply);
}

Test(http_client, oversized_reply_is_etoobig) {
  char u[128];
  url(u, sizeof u, "/huge");
  q_http_req_t req = {.method = "GET", .url = u, .max_reply_bytes = 65536};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_ETOOBIG);
  cr_assert_null(reply);
  cr_assert_not_null(strstr(err, "65536"), "%s", err);
  /* With the default cap (16 MiB) the same reply is fine. */
  req.max_reply_bytes = 0;
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), 0, "%s", err);
  cr_assert_eq(json_string_length(reply), 1u << 20);
  json_decref(reply);
}

static long elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

Test(http_client, slow_reply_times_out) {
  char u[128];
  url(u, sizeof u, "/slow");
  q_http_req_t req = {.method = "GET", .url = u, .timeout_ms = 200};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_ETIMEDOUT, "%s",
               err);
  long ms = elapsed_ms(&t0);
  cr_assert(ms >= 150 && ms < 1500, "took %ld ms", ms);
}

Test(http_client, thread_deadline_caps_the_timeout) {
  char u[128];
  url(u, sizeof u, "/slow");
  q_http_req_t req = {.method = "GET", .url = u, .timeout_ms = 10000};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  q_trace_set(NULL, q_now_ms() + 200);
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_ETIMEDOUT, "%s",
               err);
  cr_assert(elapsed_ms(&t0) < 1500);
  q_trace_set(NULL, q_now_ms() - 1); /* already past: no call at all */
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_ETIMEDOUT);
  q_trace_clear();
}

Test(http_client, refused_port_is_eunavail) {
  /* A bound but not listening socket: connections to it are refused, and
   * nothing else can take the port while we hold it. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t len = sizeof sa;
  getsockname(fd, (struct sockaddr *)&sa, &len);
  char u[128];
  snprintf(u, sizeof u, "http://127.0.0.1:%d/x?api_key=secret", ntohs(sa.sin_port));
  q_http_req_t req = {.url = u, .timeout_ms = 2000};
  long status = 0;
  json_t *reply = NULL;
  char err[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_EUNAVAIL);
  cr_assert(err[0] != '\0');
  cr_assert_null(strstr(err, "secret"), "query string leaked: %s", err);
  close(fd);
}

Test(http_client, bad_requests_are_einval) {
  char u[128];
  url(u, sizeof u, "/echo");
  long status;
  json_t *reply;
  char err[256];
  const char *inject[] = {"X-A: 1\r\nX-B: 2", NULL};
  q_http_req_t req = {.url = u, .headers = inject};
  cr_assert_eq(q_http_json(&req, &status, &reply, err, sizeof err), Q_EINVAL);
  q_http_req_t nourl = {.url = NULL};
  cr_assert_eq(q_http_json(&nourl, &status, &reply, err, sizeof err), Q_EINVAL);
  q_http_req_t badmethod = {.url = u, .method = "GE T"};
  cr_assert_eq(q_http_json(&badmethod, &status, &reply, err, sizeof err), Q_EINVAL);
  q_http_req_t ftp = {.url = "ftp://127.0.0.1/x"};
  cr_assert_eq(q_http_json(&ftp, &status, &reply, err, sizeof err), Q_EINVAL, "%s", err);
}
