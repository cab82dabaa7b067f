/* Tests of the rerank API clients (remote.c) against a loopback server
 * (libmicrohttpd) speaking TEI's /rerank and Cohere's /v1/rerank: request
 * shape, ordering, checks on the reply, failover down the list, 429 with
 * Retry-After. */
#include "httpfake.h"
#include "remote.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/log.h"
#include "quarry/trace.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OK, BAD_INDEX, HTTP_500, HTTP_429_ONCE } mode_t_;

static struct {
  httpfake_t *d;
  int port;
  mode_t_ mode;
  int requests;
  int64_t times[8];
  json_t *last;
  char last_auth[128];
  pthread_mutex_t mu;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, json_t *body,
                             const char *retry_after) {
  return httpfake_reply_json(c, status, body, retry_after);
}

static enum MHD_Result handler(void *ud, const httpfake_req_t *hr) {
  struct MHD_Connection *c = hr->conn;
  const char *url = hr->url;
  json_t *req = json_loadb(hr->body, hr->len, 0, NULL);
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  pthread_mutex_lock(&srv.mu);
  if (srv.requests < 8)
    srv.times[srv.requests] = q_now_ms();
  int n = srv.requests++;
  json_decref(srv.last);
  srv.last = json_incref(req);
  snprintf(srv.last_auth, sizeof srv.last_auth, "%s", auth ? auth : "");
  mode_t_ mode = srv.mode;
  pthread_mutex_unlock(&srv.mu);

  json_t *texts =
      json_object_get(req, strcmp(url, "/rerank") == 0 ? "texts" : "documents");
  enum MHD_Result ret;
  if (mode == HTTP_500) {
    ret = reply(c, 500, json_pack("{s:s}", "message", "down"), NULL);
  } else if (mode == HTTP_429_ONCE && n == 0) {
    ret = reply(c, 429, json_pack("{s:s}", "message", "slow down"), "1");
  } else {
    /* Score = text length, unsorted, so the client must sort. */
    json_t *arr = json_array();
    for (size_t i = 0; i < json_array_size(texts); i++) {
      size_t idx = mode == BAD_INDEX ? 0 : i;
      double score = (double)json_string_length(json_array_get(texts, i));
      json_array_append_new(
          arr, strcmp(url, "/rerank") == 0
                   ? json_pack("{s:i,s:f}", "index", (int)idx, "score", score)
                   : json_pack("{s:i,s:f}", "index", (int)idx, "relevance_score", score));
    }
    ret = reply(c, 200,
                strcmp(url, "/rerank") == 0 ? arr : json_pack("{s:o}", "results", arr),
                NULL);
  }
  json_decref(req);
  return ret;
}

static void start(void) {
  q_log_init("test-remote", Q_LOG_ERROR);
  q_http_global_init();
  srv.mode = OK;
  srv.requests = 0;
  srv.d = httpfake_start(handler, NULL, HTTPFAKE_ONE_THREAD);
  cr_assert_not_null(srv.d);
  srv.port = httpfake_port(srv.d);
}

static void stop(void) {
  httpfake_stop(srv.d);
  srv.d = NULL;
  json_decref(srv.last);
  srv.last = NULL;
}

TestSuite(remote, .init = start, .fini = stop);

static remote_t *new_remote(const char *entries) {
  char json[1024], err[512] = "";
  snprintf(json, sizeof json,
           "{\"rerank\":[%s],\"retry\":{\"max_attempts\":2,\"base_ms\":10,"
           "\"max_backoff_ms\":20,\"max_retry_after_ms\":2000}}",
           entries);
  for (char *p = strstr(json, "PORT"); p; p = strstr(json, "PORT")) {
    char tail[1024];
    snprintf(tail, sizeof tail, "%s", p + 4);
    snprintf(p, sizeof json - (size_t)(p - json), "%d%s", srv.port, tail);
  }
  json_t *root = json_loads(json, 0, NULL);
  cr_assert_not_null(root, "%s", json);
  q_providers_t p;
  q_providers_init(&p);
  cr_assert_eq(q_providers_parse(&p, root, 1, err, sizeof err), 0, "%s", err);
  json_decref(root);
  remote_t *r = remote_new(&p);
  q_providers_cleanup(&p);
  cr_assert_not_null(r);
  return r;
}

static const features_passage_t PS[3] = {
    {.text = "short", .len = 5, .score = 0.9},
    {.text = "a much longer passage", .len = 21, .score = 0.1},
    {.text = "medium one", .len = 10, .score = 0.5},
};

Test(remote, tei_rerank_orders_by_score) {
  setenv("QTEST_RERANK_KEY", "rk-1", 1);
  remote_t *r =
      new_remote("{\"kind\":\"tei-rerank\",\"base_url\":\"http://127.0.0.1:PORT\","
                 "\"key_env\":\"QTEST_RERANK_KEY\"}");
  method_result_t out[3];
  char err[256] = "";
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), 0, "%s", err);
  cr_assert_eq(out[0].index, 1);
  cr_assert_eq(out[1].index, 2);
  cr_assert_eq(out[2].index, 0);
  cr_assert_float_eq(out[0].score, 21.0, 1e-9);
  cr_assert_str_eq(json_string_value(json_object_get(srv.last, "query")), "q");
  cr_assert_eq(json_array_size(json_object_get(srv.last, "texts")), 3);
  cr_assert_str_eq(srv.last_auth, "Bearer rk-1");
  remote_free(r);
}

Test(remote, cohere_rerank_sends_model_and_top_n) {
  remote_t *r = new_remote("{\"kind\":\"cohere-rerank\",\"base_url\":\"http://127.0.0.1:"
                           "PORT\",\"model\":\"rerank-v3\"}");
  method_result_t out[3];
  char err[256] = "";
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), 0, "%s", err);
  cr_assert_eq(out[0].index, 1);
  cr_assert_str_eq(json_string_value(json_object_get(srv.last, "model")), "rerank-v3");
  cr_assert_eq(json_integer_value(json_object_get(srv.last, "top_n")), 3);
  cr_assert_eq(json_array_size(json_object_get(srv.last, "documents")), 3);
  remote_free(r);
}

Test(remote, repeated_index_is_refused) {
  remote_t *r =
      new_remote("{\"kind\":\"tei-rerank\",\"base_url\":\"http://127.0.0.1:PORT\"}");
  method_result_t out[3];
  char err[256] = "";
  srv.mode = BAD_INDEX;
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), Q_EUNAVAIL);
  cr_assert(strstr(err, "bad or repeated index"), "%s", err);
  cr_assert_eq(srv.requests, 2, "a malformed reply counts as a failure of the server");
  remote_free(r);
}

Test(remote, fails_over_down_the_list) {
  remote_t *r = new_remote("{\"kind\":\"tei-rerank\",\"name\":\"dead\",\"base_url\":"
                           "\"http://127.0.0.1:1\",\"connect_timeout_ms\":200},"
                           "{\"kind\":\"tei-rerank\",\"name\":\"alive\",\"base_url\":"
                           "\"http://127.0.0.1:PORT\"}");
  method_result_t out[3];
  char err[256] = "";
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), 0, "%s", err);
  cr_assert_eq(srv.requests, 1);
  remote_free(r);

  r = new_remote("{\"kind\":\"tei-rerank\",\"base_url\":\"http://127.0.0.1:PORT\"}");
  srv.mode = HTTP_500;
  srv.requests = 0;
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), Q_EUNAVAIL);
  cr_assert_eq(srv.requests, 2, "500 is retried once (max_attempts 2)");
  cr_assert(strstr(err, "HTTP 500"), "%s", err);
  remote_free(r);
}

Test(remote, retry_after_is_honoured) {
  remote_t *r =
      new_remote("{\"kind\":\"tei-rerank\",\"base_url\":\"http://127.0.0.1:PORT\"}");
  method_result_t out[3];
  char err[256] = "";
  srv.mode = HTTP_429_ONCE;
  cr_assert_eq(remote_rank(r, "q", 1, PS, 3, out, err, sizeof err), 0, "%s", err);
  cr_assert_eq(srv.requests, 2);
  int64_t gap = srv.times[1] - srv.times[0];
  cr_assert_geq(gap, 950, "waited %lld ms", (long long)gap);
  cr_assert_lt(gap, 1500);
  remote_free(r);
}
