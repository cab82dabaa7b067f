/* test_sidecar.c - the side port on a loopback port chosen at run time:
 * /metrics, /healthz, /readyz (ready and not), 404 and 405, fetched with
 * libcurl; a slow readiness check does not hold up scrapes. */
#include "quarry/buf.h"
#include "quarry/metrics.h"
#include "quarry/sidecar.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct reply {
  int port; /* only for fetch_ready */
  long status;
  char ctype[128];
  q_buf_t body;
} reply_t;

static size_t collect_cb(char *p, size_t size, size_t n, void *ud) {
  return q_buf_append(ud, p, size * n) ? 0 : size * n;
}

static void fetch(int port, const char *method, const char *path, reply_t *r) {
  char url[256];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  memset(r, 0, sizeof *r);
  r->port = port;
  q_buf_init(&r->body, 16u << 20);
  CURL *h = curl_easy_init();
  cr_assert_not_null(h);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r->body);
  CURLcode cc = curl_easy_perform(h);
  cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(cc));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  char *ct = NULL;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
  snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
  curl_easy_cleanup(h);
}

static json_t *body_json(const reply_t *r) {
  json_t *j = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
  cr_assert_not_null(j, "not JSON: %s", r->body.data ? r->body.data : "");
  return j;
}

static const char *str_at(json_t *j, const char *key) {
  const char *s = json_string_value(json_object_get(j, key));
  return s ? s : "";
}

static q_sidecar_t *start(q_ready_cb ready, void *ud) {
  q_sidecar_t *s = q_sidecar_start("127.0.0.1:0", ready, ud);
  cr_assert_not_null(s);
  cr_assert(q_sidecar_port(s) > 0);
  return s;
}

Test(sidecar, metrics_are_served_as_prometheus_text) {
  q_metric_t *c = q_metrics_counter("quarry_sidecar_test_total", "For the test.", "k");
  q_metrics_add(c, (const char *[]){"v"}, 3);
  q_sidecar_t *s = start(NULL, NULL);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/metrics", &r);
  cr_assert_eq(r.status, 200);
  cr_assert(strncmp(r.ctype, "text/plain; version=0.0.4", 25) == 0, "%s", r.ctype);
  cr_assert_not_null(strstr(r.body.data, "# TYPE quarry_sidecar_test_total counter\n"));
  cr_assert_not_null(strstr(r.body.data, "quarry_sidecar_test_total{k=\"v\"} 3\n"));
  cr_assert_not_null(strstr(r.body.data, "process_resident_memory_bytes "));
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
  q_metrics_shutdown();
}

Test(sidecar, healthz_is_ok) {
  q_sidecar_t *s = start(NULL, NULL);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/healthz", &r);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.ctype, "application/json");
  json_t *j = body_json(&r);
  cr_assert_str_eq(str_at(j, "status"), "ok");
  json_decref(j);
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
}

static int ready_flag_cb(void *ud, char *why, size_t whylen) {
  if (*(int *)ud)
    return 0;
  snprintf(why, whylen, "postgres: connection refused \"x\"");
  return 1;
}

Test(sidecar, readyz_follows_the_callback) {
  int ready = 0;
  q_sidecar_t *s = start(ready_flag_cb, &ready);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/readyz", &r);
  cr_assert_eq(r.status, 503);
  json_t *j = body_json(&r);
  cr_assert_str_eq(str_at(j, "status"), "not ready");
  cr_assert_str_eq(str_at(j, "reason"), "postgres: connection refused \"x\"");
  json_decref(j);
  q_buf_cleanup(&r.body);

  ready = 1;
  fetch(q_sidecar_port(s), "GET", "/readyz", &r);
  cr_assert_eq(r.status, 200);
  j = body_json(&r);
  cr_assert_str_eq(str_at(j, "status"), "ready");
  json_decref(j);
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
}

Test(sidecar, readyz_without_callback_is_ready) {
  q_sidecar_t *s = start(NULL, NULL);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/readyz", &r);
  cr_assert_eq(r.status, 200);
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
}

Test(sidecar, unknown_route_is_404_json) {
  q_sidecar_t *s = start(NULL, NULL);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/nope", &r);
  cr_assert_eq(r.status, 404);
  cr_assert_str_eq(r.ctype, "application/json");
  json_t *j = body_json(&r);
  json_t *e = json_object_get(j, "error");
  cr_assert_str_eq(str_at(e, "code"), "not_found");
  cr_assert_not_null(strstr(str_at(e, "message"), "/nope"));
  json_decref(j);
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
}

Test(sidecar, wrong_method_is_405_json) {
  q_sidecar_t *s = start(NULL, NULL);
  reply_t r;
  fetch(q_sidecar_port(s), "POST", "/metrics", &r);
  cr_assert_eq(r.status, 405);
  json_t *j = body_json(&r);
  cr_assert_str_eq(str_at(json_object_get(j, "error"), "code"), "method_not_allowed");
  json_decref(j);
  q_buf_cleanup(&r.body);
  q_sidecar_stop(s);
}

Test(sidecar, bad_addresses_are_refused) {
  cr_assert_null(q_sidecar_start("no-port", NULL, NULL));
  cr_assert_null(q_sidecar_start("127.0.0.1:99999", NULL, NULL));
  /* A port already taken cannot be bound twice. */
  q_sidecar_t *s = start(NULL, NULL);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", q_sidecar_port(s));
  cr_assert_null(q_sidecar_start(addr, NULL, NULL));
  q_sidecar_stop(s);
  q_sidecar_stop(NULL);
}

static int slow_ready_cb(void *ud, char *why, size_t whylen) {
  usleep(1500000);
  return 0;
}

static void *fetch_ready(void *arg) {
  reply_t *r = arg;
  fetch(r->port, "GET", "/readyz", r);
  return NULL;
}

Test(sidecar, slow_readiness_does_not_block_metrics) {
  q_sidecar_t *s = start(slow_ready_cb, NULL);
  reply_t slow = {.port = q_sidecar_port(s)};
  pthread_t th;
  pthread_create(&th, NULL, fetch_ready, &slow);
  usleep(200000); /* the readiness check is now running */
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  reply_t r;
  fetch(q_sidecar_port(s), "GET", "/metrics", &r);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  cr_assert_eq(r.status, 200);
  cr_assert(ms < 1000, "metrics took %ld ms behind a slow /readyz", ms);
  q_buf_cleanup(&r.body);
  pthread_join(th, NULL);
  cr_assert_eq(slow.status, 200);
  q_buf_cleanup(&slow.body);
  q_sidecar_stop(s);
}
