/* test_query.c - POST /v1/query at the HTTP edge, over real HTTP (libcurl)
 * against the gateway's server with fake downstream services (gwfake.h):
 * Server-Sent Events (framing, order, tokens as they are generated), the
 * choice of sink, errors before and after the stream starts, a client that
 * goes away, the worker queue and its per-tenant cap, probes while queries
 * wait, and shutting down with queries in flight. */
#include "authn.h"
#include "gateway.h"
#include "ratelimit.h"
#include "server.h"
#include "gwfake.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "quarry/buf.h"
#include "quarry/log.h"
#include "quarry/trace.h"

static gwfake_t fk;
static gw_cfg_t cfg;
static gw_server_t *gw;
static char base[64];

static void setup(void) {
  q_log_init("gateway-test", Q_LOG_ERROR);
  gwfake_start(&fk);
  cfg = (gw_cfg_t){
      .http_listen = "127.0.0.1:0",
      .http_threads = 4,
      .auth_addr = fk.addr,
      .ingestion_addr = fk.addr,
      .retriever_addr = fk.addr,
      .reranker_addr = fk.addr,
      .llm_addr = fk.addr,
      .feedback_addr = fk.addr,
      .redis_addr = "127.0.0.1:1",
      .max_upload_bytes = 1 << 20,
      .max_json_bytes = 8192,
      .query_timeout_ms = 1500,
      .upload_timeout_ms = 10000,
      .rate_limit_rps = 0,
  };
  cr_assert_eq(ratelimit_init(cfg.redis_addr, 0), 0);
  authn_cache_clear();
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Starts the gateway with cfg as the test left it. */
static void start(void) {
  gw = gw_server_start(&cfg);
  cr_assert_not_null(gw);
  snprintf(base, sizeof base, "http://127.0.0.1:%d", gw_server_port(gw));
}

static void teardown(void) {
  atomic_store(&fk.freeze_search, 0);
  if (gw)
    gw_server_stop(gw, 1000);
  gw = NULL;
  ratelimit_shutdown();
  gwfake_stop(&fk);
  q_grpc_client_shutdown();
}

TestSuite(query, .init = setup, .fini = teardown, .timeout = 60);

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- an HTTP client that notes when each SSE event arrived ---------------- */

#define MAX_EVENTS 1024

typedef struct event {
  char name[16];
  json_t *data;
  double at; /* q_now_s() when its last byte arrived */
} event_t;

typedef struct resp {
  long status;
  CURLcode rc;
  q_buf_t body, headers;
  json_t *json; /* the body, when it is JSON */
  event_t ev[MAX_EVENTS];
  int nev;
  size_t parsed;      /* body bytes already split into events */
  int abort_at_token; /* close the connection when this many tokens came */
  double aborted_at;
  double t0, secs;
} resp_t;

/* Splits the complete events at the end of the body. */
static void parse_events(resp_t *r) {
  for (;;) {
    const char *p = r->body.data + r->parsed;
    const char *end = strstr(p, "\n\n");
    if (!end || r->nev == MAX_EVENTS)
      return;
    event_t *e = &r->ev[r->nev++];
    e->at = q_now_s();
    cr_assert_eq(strncmp(p, "event: ", 7), 0, "event block %.40s", p);
    const char *nl = strchr(p, '\n');
    snprintf(e->name, sizeof e->name, "%.*s", (int)(nl - p - 7), p + 7);
    cr_assert_eq(strncmp(nl + 1, "data: ", 6), 0, "data line %.40s", nl + 1);
    const char *d = nl + 7;
    cr_assert_null(memchr(d, '\n', (size_t)(end - d)), "one data line per event");
    e->data = json_loadb(d, (size_t)(end - d), 0, NULL);
    cr_assert_not_null(e->data, "data is JSON: %.*s", (int)(end - d), d);
    r->parsed = (size_t)(end + 2 - r->body.data);
  }
}

static size_t body_cb(char *p, size_t sz, size_t n, void *ud) {
  resp_t *r = ud;
  if (q_buf_append(&r->body, p, sz * n))
    return 0;
  parse_events(r);
  if (r->abort_at_token) {
    int tokens = 0;
    for (int i = 0; i < r->nev; i++)
      tokens += strcmp(r->ev[i].name, "token") == 0;
    if (tokens >= r->abort_at_token) {
      r->aborted_at = q_now_s();
      return 0; /* libcurl closes the connection */
    }
  }
  return sz * n;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud) {
  return q_buf_append(ud, p, sz * n) == 0 ? sz * n : 0;
}

typedef struct req {
  const char *method, *path, *body;
  const char *headers[6];
  long timeout_ms;
  int abort_at_token;
} req_t;

static CURL *easy_for(const req_t *q, resp_t *r, struct curl_slist **h) {
  memset(r, 0, sizeof *r);
  q_buf_init(&r->body, 8 << 20);
  q_buf_init(&r->headers, 64 << 10);
  r->abort_at_token = q->abort_at_token;
  CURL *c = curl_easy_init();
  char url[256];
  snprintf(url, sizeof url, "%s%s", base, q->path);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method ? q->method : "POST");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r->headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, q->timeout_ms ? q->timeout_ms : 20000L);
  curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
  *h = NULL;
  bool typed = false;
  for (int i = 0; i < 6 && q->headers[i]; i++) {
    *h = curl_slist_append(*h, q->headers[i]);
    typed |= strncasecmp(q->headers[i], "Content-Type:", 13) == 0;
  }
  /* JSON routes answer 415 to anything else; curl would send a form type. */
  if (q->body && !typed)
    *h = curl_slist_append(*h, "Content-Type: application/json");
  if (q->body) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(q->body));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, *h);
  r->t0 = q_now_s();
  return c;
}

static void finish(CURL *c, resp_t *r, struct curl_slist *h) {
  r->secs = q_now_s() - r->t0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  if (r->body.len && r->body.data[0] == '{')
    r->json = json_loadb(r->body.data, r->body.len, 0, NULL);
}

static resp_t *do_http(const req_t *q) {
  resp_t *r = malloc(sizeof *r);
  struct curl_slist *h;
  CURL *c = easy_for(q, r, &h);
  r->rc = curl_easy_perform(c);
  finish(c, r, h);
  return r;
}

static void resp_free(resp_t *r) {
  for (int i = 0; i < r->nev; i++)
    json_decref(r->ev[i].data);
  q_buf_cleanup(&r->body);
  q_buf_cleanup(&r->headers);
  json_decref(r->json);
  free(r);
}

#define KEY "Authorization: Bearer good-key"
#define HTTP(...) do_http(&(req_t){__VA_ARGS__})

static const char *header(const resp_t *r, const char *name, char *out, size_t outlen) {
  out[0] = '\0';
  size_t nl = strlen(name);
  for (const char *line = r->headers.data ? r->headers.data : ""; *line;) {
    const char *end = strstr(line, "\r\n");
    size_t ll = end ? (size_t)(end - line) : strlen(line);
    if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
      const char *v = line + nl + 1;
      while (*v == ' ')
        v++;
      snprintf(out, outlen, "%.*s", (int)(ll - (size_t)(v - line)), v);
    }
    line += ll + (end ? 2 : 0);
  }
  return out;
}

static resp_t *sse_query(const char *body) {
  return HTTP(.path = "/v1/query", .body = body,
              .headers = {KEY, "Content-Type: application/json"});
}

static const char *names(const resp_t *r, char *out, size_t outlen) {
  out[0] = '\0';
  for (int i = 0; i < r->nev; i++) {
    const char *n = r->ev[i].name;
    size_t o = strlen(out);
    if (strcmp(n, "token") == 0 && i > 0 && strcmp(r->ev[i - 1].name, "token") == 0)
      continue;
    snprintf(out + o, outlen - o, "%s%s", o ? "," : "",
             strcmp(n, "token") ? n : "token*");
  }
  return out;
}

static const char *jstr(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  cr_assert(json_is_string(v), "field %s", k);
  return json_string_value(v);
}

/* ---- SSE -------------------------------------------------------------------- */

Test(query, sse_events_arrive_framed_and_in_order) {
  start();
  resp_t *r = sse_query("{\"query\":\"what is alpha?\",\"top_k\":3,\"stream\":true}");
  char v[256];
  cr_assert_eq(r->rc, CURLE_OK);
  cr_assert_eq(r->status, 200, "%s", r->body.data);
  cr_assert_str_eq(header(r, "Content-Type", v, sizeof v), "text/event-stream");
  cr_assert_eq(strlen(header(r, "X-Request-Id", v, sizeof v)), 36);
  cr_assert_eq(strlen(header(r, "traceparent", v, sizeof v)), 55);
  cr_assert_str_eq(header(r, "Cache-Control", v, sizeof v), "no-store");
  cr_assert_eq(r->parsed, r->body.len, "the body is whole events");
  cr_assert_str_eq(names(r, v, sizeof v),
                   "retrieval,token*,citation,citation,citation,done");

  json_t *retr = r->ev[0].data;
  json_t *passages = json_object_get(retr, "passages");
  cr_assert_eq(json_array_size(passages), 3);
  cr_assert_str_eq(jstr(json_array_get(passages, 0), "chunk_id"), "c10");
  json_t *done = r->ev[r->nev - 1].data;
  cr_assert_str_eq(jstr(retr, "query_id"), jstr(done, "query_id"));

  q_buf_t joined;
  q_buf_init(&joined, 1 << 20);
  for (int i = 0; i < r->nev; i++)
    if (strcmp(r->ev[i].name, "token") == 0)
      q_buf_puts(&joined, jstr(r->ev[i].data, "text"));
  cr_assert_str_eq(jstr(done, "answer"), "Alpha [1]. Beta [2][3]. Bogus.");
  cr_assert_str_eq(joined.data, jstr(done, "answer"), "tokens add up to the answer");
  q_buf_cleanup(&joined);
  for (int i = 0; i < 3; i++) {
    json_t *c = r->ev[r->nev - 4 + i].data;
    cr_assert(
        json_equal(c, json_array_get(json_object_get(done, "citations"), (size_t)i)));
  }
  cr_assert_eq(atomic_load(&fk.records), 1);
  resp_free(r);
}

Test(query, sse_done_is_the_json_reply) {
  start();
  resp_t *j = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"top_k\":4}",
                   .headers = {KEY});
  resp_t *s = sse_query("{\"query\":\"q\",\"top_k\":4,\"stream\":true}");
  cr_assert_eq(j->status, 200);
  char v[64];
  cr_assert_str_eq(header(j, "Content-Type", v, sizeof v), "application/json");
  cr_assert_not_null(j->json);
  json_t *done = s->ev[s->nev - 1].data;
  cr_assert_str_eq(s->ev[s->nev - 1].name, "done");
  /* Same keys in the same order, same values but the id and the times. */
  const char *k1, *k2;
  void *i1 = json_object_iter(j->json), *i2 = json_object_iter(done);
  for (; i1 && i2;
       i1 = json_object_iter_next(j->json, i1), i2 = json_object_iter_next(done, i2)) {
    k1 = json_object_iter_key(i1);
    k2 = json_object_iter_key(i2);
    cr_assert_str_eq(k1, k2);
    if (strcmp(k1, "query_id") && strcmp(k1, "timings_ms"))
      cr_assert(json_equal(json_object_iter_value(i1), json_object_iter_value(i2)),
                "field %s differs", k1);
  }
  cr_assert(!i1 && !i2);
  resp_free(j);
  resp_free(s);
}

Test(query, accept_header_or_body_picks_the_sink) {
  start();
  char v[64];
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}",
                   .headers = {KEY, "Accept: application/json, text/event-stream"});
  cr_assert_str_eq(header(r, "Content-Type", v, sizeof v), "text/event-stream");
  resp_free(r);
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}",
           .headers = {KEY, "Accept: TEXT/Event-Stream;q=0"});
  cr_assert_str_eq(header(r, "Content-Type", v, sizeof v), "application/json");
  resp_free(r);
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"stream\":false}",
           .headers = {KEY, "Accept: text/event-stream"});
  cr_assert_str_eq(header(r, "Content-Type", v, sizeof v), "application/json",
                   "the body wins");
  resp_free(r);
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"stream\":\"yes\"}",
           .headers = {KEY});
  cr_assert_eq(r->status, 400);
  cr_assert(strstr(r->body.data, "stream"), "%s", r->body.data);
  resp_free(r);
}

Test(query, mode_reaches_the_retriever) {
  start();
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"mode\":\"lexical\"}",
                   .headers = {KEY, "Accept: application/json"});
  cr_assert_eq(r->status, 200, "%s", r->body.data);
  cr_assert_str_eq(fk.last_mode, "lexical");
  cr_assert_eq(atomic_load(&fk.last_dim), 0, "lexical sends no embedding");
  cr_assert_eq(atomic_load(&fk.embeds), 0, "lexical embeds nothing");
  resp_free(r);
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"mode\":\"hybrid\"}",
           .headers = {KEY, "Accept: application/json"});
  cr_assert_eq(r->status, 200, "%s", r->body.data);
  cr_assert_str_eq(fk.last_mode, "hybrid");
  cr_assert_eq(atomic_load(&fk.last_dim), 4);
  cr_assert_eq(atomic_load(&fk.embeds), 1);
  cr_assert_str_eq(fk.last_embed_model, "fake-embed-4", "the embedder is named");
  resp_free(r);
  /* absent: the retriever's default */
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}",
           .headers = {KEY, "Accept: application/json"});
  cr_assert_eq(r->status, 200, "%s", r->body.data);
  cr_assert_str_eq(fk.last_mode, "");
  resp_free(r);
  const char *bad[] = {"{\"query\":\"q\",\"mode\":\"semantic\"}",
                       "{\"query\":\"q\",\"mode\":3}", "{\"query\":\"q\",\"mode\":\"\"}"};
  for (size_t i = 0; i < 3; i++) {
    int before = atomic_load(&fk.searches);
    r = HTTP(.path = "/v1/query", .body = bad[i], .headers = {KEY});
    cr_assert_eq(r->status, 400, "case %zu", i);
    cr_assert(strstr(r->body.data, "mode"), "case %zu: %s", i, r->body.data);
    cr_assert_eq(atomic_load(&fk.searches), before);
    resp_free(r);
  }
}

Test(query, errors_before_the_stream_keep_their_status) {
  atomic_store(&fk.retriever_fail, 1);
  start();
  resp_t *r = sse_query("{\"query\":\"q\",\"stream\":true}");
  char v[64];
  cr_assert_eq(r->status, 503);
  cr_assert_str_eq(header(r, "Content-Type", v, sizeof v), "application/json");
  cr_assert_str_eq(jstr(json_object_get(r->json, "error"), "message"),
                   "retriever unavailable: index not loaded");
  resp_free(r);
  r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"stream\":true}",
           .headers = {"Authorization: Bearer nope"});
  cr_assert_eq(r->status, 401);
  resp_free(r);
}

Test(query, errors_after_the_stream_started_are_events) {
  atomic_store(&fk.gen_fail, 1);
  start();
  resp_t *r = sse_query("{\"query\":\"q\",\"stream\":true}");
  char v[128];
  cr_assert_eq(r->status, 200);
  cr_assert_str_eq(names(r, v, sizeof v), "retrieval,error");
  json_t *e = json_object_get(r->ev[1].data, "error");
  cr_assert_str_eq(jstr(e, "code"), "unavailable");
  cr_assert_str_eq(jstr(e, "message"), "llm-gateway unavailable: provider refused");
  resp_free(r);
}

Test(query, tokens_reach_the_client_as_they_are_generated) {
  fk.answer = "one two three four five six ";
  fk.piece_bytes = 4;
  atomic_store(&fk.piece_ms, 100);
  start();
  resp_t *r = sse_query("{\"query\":\"q\",\"stream\":true}");
  cr_assert_eq(r->status, 200);
  double first = 0, done = 0;
  int tokens = 0;
  for (int i = 0; i < r->nev; i++) {
    if (strcmp(r->ev[i].name, "token") == 0 && !tokens++)
      first = r->ev[i].at;
    if (strcmp(r->ev[i].name, "done") == 0)
      done = r->ev[i].at;
  }
  fprintf(stderr, "sse: %d tokens, first %.0f ms after the request, done %.0f ms after\n",
          tokens, (first - r->t0) * 1000, (done - r->t0) * 1000);
  cr_assert_geq(tokens, 5);
  /* Seven pieces 100 ms apart: the first is out long before the last. */
  cr_assert_gt(done - first, 0.4, "first token %.3f s before done", done - first);
  resp_free(r);
}

/* ---- clients that go away ---------------------------------------------------- */

static char long_answer[4001];

static void slow_generator(void) {
  for (size_t i = 0; i < sizeof long_answer - 1; i++)
    long_answer[i] = "word [1] "[i % 9];
  fk.answer = long_answer;
  atomic_store(&fk.piece_ms, 10); /* 800 pieces: 8 s */
  cfg.query_timeout_ms = 30000;
}

Test(query, sse_client_leaving_stops_generation_within_100_ms) {
  slow_generator();
  start();
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\",\"stream\":true}",
                   .headers = {KEY}, .abort_at_token = 3);
  cr_assert_eq(r->rc, CURLE_WRITE_ERROR, "the client hung up");
  cr_assert(gwfake_wait(&fk.gen_cancelled, 1, 3000), "generation was cancelled");
  double ms = (atomic_load(&fk.gen_stop_s) - r->aborted_at) * 1000.0;
  fprintf(stderr, "sse hang-up: generator stopped %.1f ms after the client left\n", ms);
  cr_assert_lt(ms, 100.0, "generator stopped %.1f ms after the client left", ms);
  cr_assert_lt(atomic_load(&fk.gen_pieces), 100);
  resp_free(r);
}

Test(query, json_client_leaving_stops_generation) {
  slow_generator();
  start();
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}", .headers = {KEY},
                   .timeout_ms = 300);
  cr_assert_eq(r->rc, CURLE_OPERATION_TIMEDOUT);
  double left = q_now_s();
  cr_assert(gwfake_wait(&fk.gen_cancelled, 1, 3000), "generation was cancelled");
  double ms = (atomic_load(&fk.gen_stop_s) - left) * 1000.0;
  fprintf(stderr, "json hang-up: generator stopped %.1f ms after the client left\n", ms);
  cr_assert_lt(ms, 100.0);
  resp_free(r);
}

Test(query, client_leaving_during_search_cancels_the_call) {
  cfg.query_timeout_ms = 20000;
  atomic_store(&fk.freeze_search, 1);
  start();
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}", .headers = {KEY},
                   .timeout_ms = 300);
  cr_assert_eq(r->rc, CURLE_OPERATION_TIMEDOUT);
  cr_assert(gwfake_wait(&fk.search_cancelled, 1, 3000),
            "the retriever saw its call cancelled when the client left");
  cr_assert_eq(atomic_load(&fk.generates), 0);
  atomic_store(&fk.freeze_search, 0);
  resp_free(r);
}

/* ---- many queries at once ------------------------------------------------------- */

typedef struct batch {
  int n;
  const char *key;
  long status[128];
  int ok;
} batch_t;

/* Sends b->n queries at once and waits for all of them. */
static void *batch_main(void *arg) {
  batch_t *b = arg;
  CURLM *m = curl_multi_init();
  CURL *c[128];
  resp_t *r[128];
  struct curl_slist *h[128];
  req_t q = {.path = "/v1/query", .body = "{\"query\":\"q\"}", .headers = {b->key}};
  for (int i = 0; i < b->n; i++) {
    r[i] = malloc(sizeof *r[i]);
    c[i] = easy_for(&q, r[i], &h[i]);
    curl_multi_add_handle(m, c[i]);
  }
  int running = 1;
  while (running) {
    curl_multi_perform(m, &running);
    if (running)
      curl_multi_poll(m, NULL, 0, 100, NULL);
  }
  for (int i = 0; i < b->n; i++) {
    curl_multi_remove_handle(m, c[i]);
    finish(c[i], r[i], h[i]);
    b->status[i] = r[i]->status;
    b->ok += r[i]->status == 200;
    resp_free(r[i]);
  }
  curl_multi_cleanup(m);
  return NULL;
}

/* The value of a metric without labels, from /metrics. */
static double metric(const char *name) {
  resp_t *r = HTTP(.method = "GET", .path = "/metrics");
  char pat[128];
  snprintf(pat, sizeof pat, "\n%s ", name);
  const char *p = strstr(r->body.data, pat);
  double v = p ? strtod(p + strlen(pat), NULL) : -1;
  resp_free(r);
  return v;
}

static int wait_in_flight(int want, int ms) {
  for (int i = 0; i < ms / 10; i++) {
    if (metric("quarry_pipeline_queued") + metric("quarry_pipeline_running") >= want)
      return 1;
    nap_ms(10);
  }
  return 0;
}

Test(query, probes_answer_while_64_queries_wait_on_a_frozen_retriever) {
  cfg.query_timeout_ms = 20000;
  atomic_store(&fk.freeze_search, 1);
  start();
  batch_t b = {.n = 64, .key = KEY};
  pthread_t th;
  pthread_create(&th, NULL, batch_main, &b);
  cr_assert(wait_in_flight(64, 10000), "64 queries in flight");
  cr_assert_eq(metric("quarry_pipeline_running"), GW_TENANT_MAX_INFLIGHT_DEFAULT,
               "one tenant holds at most its cap of workers");
  const char *probes[] = {"/healthz", "/metrics", "/healthz"};
  for (int i = 0; i < 3; i++) {
    resp_t *r = HTTP(.method = "GET", .path = probes[i], .timeout_ms = 5000);
    fprintf(stderr, "%s with 64 queries waiting: %ld in %.2f ms\n", probes[i], r->status,
            r->secs * 1000);
    cr_assert_eq(r->status, 200);
    cr_assert_lt(r->secs, 1.0, "%s took %.3f s", probes[i], r->secs);
    resp_free(r);
  }
  atomic_store(&fk.freeze_search, 0);
  pthread_join(th, NULL);
  cr_assert_eq(b.ok, 64, "every query answered once the retriever thawed");
}

Test(query, a_full_queue_is_503_with_retry_after) {
  cfg.pipeline_max_inflight = 1;
  cfg.pipeline_queue = 1;
  cfg.query_timeout_ms = 20000;
  atomic_store(&fk.freeze_search, 1);
  start();
  batch_t b = {.n = 2, .key = KEY};
  pthread_t th;
  pthread_create(&th, NULL, batch_main, &b);
  cr_assert(wait_in_flight(2, 10000), "one running, one queued");
  resp_t *r = HTTP(.path = "/v1/query", .body = "{\"query\":\"q\"}", .headers = {KEY});
  char v[16];
  cr_assert_eq(r->status, 503, "%s", r->body.data);
  cr_assert_str_eq(header(r, "Retry-After", v, sizeof v), "1");
  cr_assert_str_eq(jstr(json_object_get(r->json, "error"), "code"), "unavailable");
  resp_free(r);
  cr_assert_eq(metric("quarry_pipeline_queued"), 1);
  atomic_store(&fk.freeze_search, 0);
  pthread_join(th, NULL);
  cr_assert_eq(b.ok, 2);
}

Test(query, one_tenant_cannot_take_every_worker) {
  cfg.pipeline_max_inflight = 2;
  cfg.tenant_max_inflight = 1;
  cfg.query_timeout_ms = 20000;
  atomic_store(&fk.freeze_search, 1);
  start();
  batch_t t1 = {.n = 3, .key = KEY};
  pthread_t th1, th2;
  pthread_create(&th1, NULL, batch_main, &t1);
  cr_assert(wait_in_flight(3, 10000));
  nap_ms(100);
  cr_assert_eq(atomic_load(&fk.searches), 1, "t1 runs one query, two wait");
  batch_t t2 = {.n = 1, .key = "Authorization: Bearer other-key"};
  pthread_create(&th2, NULL, batch_main, &t2);
  cr_assert(gwfake_wait(&fk.searches_t2, 1, 5000), "t2 overtakes t1's waiting queries");
  cr_assert_eq(atomic_load(&fk.searches), 2);
  atomic_store(&fk.freeze_search, 0);
  pthread_join(th1, NULL);
  pthread_join(th2, NULL);
  cr_assert_eq(t1.ok + t2.ok, 4);
}

Test(query, stopping_with_queries_in_flight_closes_them) {
  atomic_store(&fk.freeze_search, 1);
  start();
  batch_t b = {.n = 8, .key = KEY};
  pthread_t th;
  pthread_create(&th, NULL, batch_main, &b);
  cr_assert(wait_in_flight(8, 10000));
  double t = q_now_s();
  gw_server_stop(gw, 100); /* libmicrohttpd aborts if a connection stays suspended */
  gw = NULL;
  double secs = q_now_s() - t;
  fprintf(stderr, "stopped with 8 queries in flight in %.3f s\n", secs);
  cr_assert_lt(secs, 5.0);
  pthread_join(th, NULL);
  cr_assert_eq(b.ok, 0);
}

Test(query, the_tenant_cap_counts_cpu_work_not_answers_being_generated) {
  /* One slot per tenant; each answer streams for about a second. */
  cfg.tenant_max_inflight = 1;
  cfg.query_timeout_ms = 20000;
  fk.answer = "one two three four five six ";
  fk.piece_bytes = 4;
  atomic_store(&fk.piece_ms, 150);
  start();
  batch_t b = {.n = 4, .key = KEY};
  pthread_t th;
  pthread_create(&th, NULL, batch_main, &b);
  /* A query gives its tenant slot back when its answer starts, so the
   * four answers are generated at once rather than one after the other. */
  cr_assert(gwfake_wait(&fk.generates, 4, 3000), "four answers under way, %d seen",
            atomic_load(&fk.generates));
  cr_assert_eq(metric("quarry_pipeline_running"), 4,
               "the waiting answers still count as in flight");
  pthread_join(th, NULL);
  cr_assert_eq(b.ok, 4);
  cr_assert_eq(metric("quarry_pipeline_running"), 0);
}
