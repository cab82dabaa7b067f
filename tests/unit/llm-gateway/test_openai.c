/* Tests of the OpenAI-compatible providers against a loopback HTTP server
 * (libmicrohttpd) that speaks the /v1/embeddings and /v1/chat/completions
 * protocol, plus the fallback to the extractive answerer. */
#include "httpfake.h"
#include "llm.h"
#include "provider.h"
#include "scrape.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/log.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 8

/* ---- the fake provider ------------------------------------------------------ */

typedef enum {
  MODE_OK,
  MODE_WRONG_DIM,
  MODE_HTTP_500,
  MODE_HTTP_400,
  MODE_HTTP_429,
  MODE_NO_CONTENT,
  MODE_TRUNCATED /* a stream that stops after its text, without [DONE] */
} fake_mode_t;

static struct {
  httpfake_t *d;
  int port;
  fake_mode_t mode;
  pthread_mutex_t mu;
  json_t *last_body; /* last request body seen */
  char last_auth[256];
  char last_url[128];
  int requests;
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* A streamed chat completion: one SSE event per word, then usage, then
 * [DONE]. All of it in one reply body: the parser must not care how the
 * bytes arrive (test_sse.c splits them at every boundary). */
static enum MHD_Result reply_sse(struct MHD_Connection *c, const char *answer,
                                 bool with_content, bool truncated) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  q_buf_puts(&b, ": keep-alive comment\n\n");
  q_buf_puts(
      &b,
      "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n");
  const char *p = answer;
  while (with_content && *p) {
    const char *sp = strchr(p, ' ');
    size_t n = sp ? (size_t)(sp - p) + 1 : strlen(p);
    json_t *piece = json_stringn(p, n);
    json_t *ev = json_pack("{s:[{s:i,s:{s:o}}]}", "choices", "index", 0, "delta",
                           "content", piece);
    char *text = json_dumps(ev, JSON_COMPACT);
    q_buf_printf(&b, "data: %s\n\n", text);
    free(text);
    json_decref(ev);
    p += n;
  }
  if (truncated)
    goto send;
  q_buf_puts(
      &b,
      "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
  q_buf_puts(
      &b,
      "data: "
      "{\"choices\":[],\"usage\":{\"prompt_tokens\":123,\"completion_tokens\":11}}\n\n");
  q_buf_puts(&b, "data: [DONE]\n\n");
send:;
  enum MHD_Result ret = httpfake_reply(c, 200, "text/event-stream", b.data, b.len, NULL);
  q_buf_cleanup(&b);
  return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, json_t *body) {
  return httpfake_reply_json(c, status, body, NULL);
}

/* A vector whose components say which input it belongs to, so the test can
 * check that "index" was honoured. */
static json_t *vector_for(size_t input, int dim) {
  json_t *v = json_array();
  for (int d = 0; d < dim; d++)
    json_array_append_new(v, json_real(d == 0 ? 3.0 : (d == 1 ? (double)input : 0.0)));
  return v;
}

static enum MHD_Result handler(void *ud, const httpfake_req_t *hr) {
  struct MHD_Connection *c = hr->conn;
  const char *url = hr->url, *method = hr->method;
  json_error_t jerr;
  json_t *req = json_loadb(hr->body, hr->len, 0, &jerr);
  const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
  pthread_mutex_lock(&srv.mu);
  json_decref(srv.last_body);
  srv.last_body = json_incref(req);
  snprintf(srv.last_auth, sizeof srv.last_auth, "%s", auth ? auth : "");
  snprintf(srv.last_url, sizeof srv.last_url, "%s", url);
  srv.requests++;
  fake_mode_t mode = srv.mode;
  pthread_mutex_unlock(&srv.mu);

  enum MHD_Result ret;
  if (!req || strcmp(method, "POST") != 0) {
    ret = reply(c, 400, json_pack("{s:{s:s}}", "error", "message", "bad request"));
  } else if (mode == MODE_HTTP_500) {
    ret = reply(c, 500, json_pack("{s:{s:s}}", "error", "message", "model overloaded"));
  } else if (mode == MODE_HTTP_400) {
    /* Some providers send the reason as a plain string. */
    ret = reply(c, 400, json_pack("{s:s}", "error", "input too long"));
  } else if (mode == MODE_HTTP_429) {
    ret = reply(c, 429, json_pack("{s:{s:s}}", "error", "message", "slow down"));
  } else if (strcmp(url, "/v1/embeddings") == 0) {
    json_t *input = json_object_get(req, "input");
    json_t *data = json_array();
    /* Reverse order: the client must place vectors by "index". */
    for (size_t i = json_array_size(input); i-- > 0;)
      json_array_append_new(
          data,
          json_pack("{s:s,s:i,s:o}", "object", "embedding", "index", (int)i, "embedding",
                    vector_for(i, mode == MODE_WRONG_DIM ? DIM + 1 : DIM)));
    ret = reply(c, 200,
                json_pack("{s:s,s:o,s:s,s:{s:i,s:i}}", "object", "list", "data", data,
                          "model", "fake-embed", "usage", "prompt_tokens", 5,
                          "total_tokens", 5));
  } else if (strcmp(url, "/v1/chat/completions") == 0) {
    ret = reply_sse(c, "Paris is the capital of France [1]. It is large [1].",
                    mode != MODE_NO_CONTENT, mode == MODE_TRUNCATED);
  } else if (strcmp(url, "/embed") == 0) {
    json_t *inputs = json_object_get(req, "inputs");
    json_t *vecs = json_array();
    for (size_t i = 0; i < json_array_size(inputs); i++)
      json_array_append_new(vecs, vector_for(i, mode == MODE_WRONG_DIM ? DIM + 1 : DIM));
    ret = reply(c, 200, vecs);
  } else {
    ret = reply(c, 404, json_pack("{s:{s:s}}", "error", "message", "no such route"));
  }
  json_decref(req);
  return ret;
}

static void start_server(void) {
  q_log_init("test-openai", Q_LOG_ERROR);
  q_http_global_init();
  srv.mode = MODE_OK;
  srv.requests = 0;
  srv.d = httpfake_start(handler, NULL, HTTPFAKE_ONE_THREAD);
  cr_assert_not_null(srv.d);
  srv.port = httpfake_port(srv.d);
}

static void stop_server(void) {
  httpfake_stop(srv.d);
  srv.d = NULL;
  json_decref(srv.last_body);
  srv.last_body = NULL;
}

static char *url(const char *path) {
  static char buf[4][128];
  static int k;
  char *b = buf[k++ % 4];
  snprintf(b, sizeof buf[0], "http://127.0.0.1:%d%s", srv.port, path);
  return b;
}

TestSuite(openai, .init = start_server, .fini = stop_server);

/* ---- embeddings -------------------------------------------------------------- */

static embedder_t *new_embedder(int send_dim) {
  embed_openai_opts_t o = {.url = url("/v1/embeddings"),
                           .model = "fake-embed",
                           .api_key = "sk-test-123",
                           .dim = DIM,
                           .send_dim = send_dim,
                           .timeout_ms = 5000};
  embedder_t *e = embed_openai_new(&o);
  cr_assert_not_null(e);
  return e;
}

Test(openai, embeddings_round_trip) {
  embedder_t *e = new_embedder(1);
  const char *texts[3] = {"one", "two", "three"};
  size_t lens[3] = {3, 3, 5};
  float out[3 * DIM];
  char err[256] = "";
  cr_assert_eq(e->embed(e, texts, lens, 3, out, err, sizeof err), 0, "%s", err);

  for (int i = 0; i < 3; i++) {
    const float *v = out + i * DIM;
    double n = 0;
    for (int d = 0; d < DIM; d++)
      n += (double)v[d] * v[d];
    cr_assert_float_eq(n, 1.0, 1e-5, "vector %d not normalised", i);
    /* (3, i, 0...) normalised: the second component identifies the input. */
    cr_assert_float_eq(v[1], i / sqrt(9.0 + i * i), 1e-5, "vector %d out of place", i);
  }
  pthread_mutex_lock(&srv.mu);
  cr_assert_str_eq(srv.last_url, "/v1/embeddings");
  cr_assert_str_eq(srv.last_auth, "Bearer sk-test-123");
  cr_assert_str_eq(json_string_value(json_object_get(srv.last_body, "model")),
                   "fake-embed");
  cr_assert_eq(json_integer_value(json_object_get(srv.last_body, "dimensions")), DIM);
  json_t *input = json_object_get(srv.last_body, "input");
  cr_assert_eq(json_array_size(input), 3);
  cr_assert_str_eq(json_string_value(json_array_get(input, 2)), "three");
  pthread_mutex_unlock(&srv.mu);
  e->free(e);
}

Test(openai, embeddings_without_dimensions_field) {
  embedder_t *e = new_embedder(0);
  const char *texts[1] = {"x"};
  size_t lens[1] = {1};
  float out[DIM];
  char err[256] = "";
  cr_assert_eq(e->embed(e, texts, lens, 1, out, err, sizeof err), 0, "%s", err);
  pthread_mutex_lock(&srv.mu);
  cr_assert_null(json_object_get(srv.last_body, "dimensions"));
  pthread_mutex_unlock(&srv.mu);
  e->free(e);
}

Test(openai, embeddings_of_wrong_size_are_refused) {
  embedder_t *e = new_embedder(1);
  const char *texts[1] = {"x"};
  size_t lens[1] = {1};
  float out[DIM];
  char err[256] = "";
  srv.mode = MODE_WRONG_DIM;
  cr_assert_eq(e->embed(e, texts, lens, 1, out, err, sizeof err), Q_EUNAVAIL);
  cr_assert(strstr(err, "dimensions") != NULL, "%s", err);
  e->free(e);
}

Test(openai, embeddings_http_error_is_unavailable) {
  embedder_t *e = new_embedder(1);
  const char *texts[1] = {"x"};
  size_t lens[1] = {1};
  float out[DIM];
  char err[256] = "";
  srv.mode = MODE_HTTP_500;
  cr_assert_eq(e->embed(e, texts, lens, 1, out, err, sizeof err), Q_EUNAVAIL);
  cr_assert(strstr(err, "500") && strstr(err, "model overloaded"), "%s", err);
  e->free(e);
}

Test(openai, embeddings_provider_down_is_unavailable) {
  embed_openai_opts_t o = {.url = "http://127.0.0.1:1/v1/embeddings",
                           .model = "m",
                           .dim = DIM,
                           .timeout_ms = 2000};
  embedder_t *e = embed_openai_new(&o);
  const char *texts[1] = {"x"};
  size_t lens[1] = {1};
  float out[DIM];
  char err[256] = "";
  int rc = e->embed(e, texts, lens, 1, out, err, sizeof err);
  cr_assert(rc == Q_EUNAVAIL || rc == Q_ETIMEDOUT, "rc %d: %s", rc, err);
  e->free(e);
}

/* ---- chat completions ---------------------------------------------------------- */

typedef struct collected {
  char text[4096];
  size_t len;
  int pieces;
} collected_t;

static int collect_cb(const char *piece, size_t len, void *ud) {
  collected_t *c = ud;
  if (len == 0)
    return 0; /* "is the client still there?": yes */
  cr_assert_lt(c->len + len, sizeof c->text);
  memcpy(c->text + c->len, piece, len);
  c->len += len;
  c->text[c->len] = '\0';
  c->pieces++;
  return 0;
}

static const char TEMPLATE[] = "Context:\n{{context}}\n\nQ: {{question}}\nA:";

static generator_t *new_generator(void) {
  gen_openai_opts_t o = {.url = url("/v1/chat/completions"),
                         .model = "fake-chat",
                         .api_key = "sk-gen",
                         .template = TEMPLATE,
                         .timeout_ms = 5000,
                         .max_tokens = 256,
                         .stream_usage = 1};
  generator_t *g = gen_openai_new(&o);
  cr_assert_not_null(g);
  return g;
}

static gen_passage_t passages[2] = {
    {"Geography", "Paris is the capital of France.", 31},
    {"Trap", "Ignore this {{question}} placeholder.", 37},
};

Test(openai, chat_completion_streams_the_answer) {
  generator_t *g = new_generator();
  collected_t c = {0};
  gen_usage_t u;
  char err[256] = "";
  cr_assert_eq(g->generate(g, "What is the capital of France?", passages, 2, 0,
                           collect_cb, &c, &u, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(c.text, "Paris is the capital of France [1]. It is large [1].");
  cr_assert_eq(c.pieces, 11, "one piece per event, got %d", c.pieces);
  cr_assert_eq(u.prompt_tokens, 123);
  cr_assert_eq(u.completion_tokens, 11);

  pthread_mutex_lock(&srv.mu);
  cr_assert_str_eq(srv.last_url, "/v1/chat/completions");
  cr_assert_str_eq(srv.last_auth, "Bearer sk-gen");
  cr_assert_str_eq(json_string_value(json_object_get(srv.last_body, "model")),
                   "fake-chat");
  cr_assert_eq(json_integer_value(json_object_get(srv.last_body, "max_tokens")), 256);
  cr_assert(json_is_true(json_object_get(srv.last_body, "stream")));
  cr_assert(json_is_true(json_object_get(json_object_get(srv.last_body, "stream_options"),
                                         "include_usage")));
  const char *prompt = json_string_value(json_object_get(
      json_array_get(json_object_get(srv.last_body, "messages"), 0), "content"));
  cr_assert_str_eq(prompt, "Context:\n[1] Geography\nParis is the capital of France.\n\n"
                           "[2] Trap\nIgnore this {{question}} placeholder.\n\n"
                           "Q: What is the capital of France?\nA:");
  pthread_mutex_unlock(&srv.mu);
  g->free(g);
}

/* 400 is the caller's fault only where the input is the caller's own text;
 * a refused prompt is the generation provider failing. */
Test(openai, http_statuses_map_to_errors_per_provider) {
  embedder_t *e = new_embedder(1);
  generator_t *g = new_generator();
  const char *texts[1] = {"x"};
  size_t lens[1] = {1};
  float out[DIM];
  collected_t c = {0};
  gen_usage_t u;
  char err[256] = "";
  srv.mode = MODE_HTTP_400;
  cr_assert_eq(e->embed(e, texts, lens, 1, out, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "embeddings provider answered HTTP 400: input too long"), "%s",
            err);
  cr_assert_eq(g->generate(g, "q", passages, 1, 0, collect_cb, &c, &u, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert(strstr(err, "openai answered HTTP 400: input too long"), "%s", err);
  srv.mode = MODE_HTTP_429;
  cr_assert_eq(e->embed(e, texts, lens, 1, out, err, sizeof err), Q_ERESOURCE);
  cr_assert(strstr(err, "slow down"), "%s", err);
  cr_assert_eq(g->generate(g, "q", passages, 1, 0, collect_cb, &c, &u, err, sizeof err),
               Q_ERESOURCE);
  cr_assert_eq(c.len, 0);
  e->free(e);
  g->free(g);
}

Test(openai, malformed_reply_is_an_error) {
  generator_t *g = new_generator();
  collected_t c = {0};
  gen_usage_t u;
  char err[256] = "";
  srv.mode = MODE_NO_CONTENT;
  cr_assert_eq(g->generate(g, "q", passages, 1, 0, collect_cb, &c, &u, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert_eq(c.len, 0, "nothing may be emitted by a failing generator");
  g->free(g);
}

Test(openai, falls_back_to_extractive_when_the_provider_fails) {
  generator_t *g = new_generator();
  generator_t *x = gen_extractive_new();
  llm_t l;
  q_retry_policy_t once = Q_RETRY_POLICY_DEFAULT;
  once.max_attempts = 1;
  llm_init(&l, &once, x);
  llm_add_generator(&l, g, 0, 0, 5, 1000);
  collected_t c = {0};
  llm_answer_t ans;
  char err[256] = "";

  srv.mode = MODE_HTTP_500;
  cr_assert_eq(llm_generate(&l, "What is the capital of France?", passages, 2, 0,
                            collect_cb, &c, &ans, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(ans.model, "quarry-extractive");
  cr_assert(ans.fallback, "the built-in answer must be marked as a fallback");
  cr_assert_str_eq(c.text, "Paris is the capital of France. [1]");
  cr_assert_eq(srv.requests, 1, "the provider must have been tried first");
  cr_assert_float_eq(
      scrape_value("quarry_llm_requests_total{op=\"generate\",provider=\"openai\","
                   "outcome=\"error\"} "),
      1.0, 1e-9);
  cr_assert_float_eq(
      scrape_value("quarry_llm_requests_total{op=\"generate\",provider=\"extractive\","
                   "outcome=\"ok\"} "),
      1.0, 1e-9);
  cr_assert_float_eq(scrape_value("quarry_llm_tokens_total{kind=\"completion\"} "), 7.0,
                     1e-9);

  /* Provider healthy again: its answer is used. */
  srv.mode = MODE_OK;
  memset(&c, 0, sizeof c);
  cr_assert_eq(llm_generate(&l, "What is the capital of France?", passages, 2, 0,
                            collect_cb, &c, &ans, err, sizeof err),
               0);
  cr_assert_str_eq(ans.model, "fake-chat");
  cr_assert_str_eq(ans.provider, "openai");
  cr_assert(!ans.fallback);
  cr_assert_eq(ans.usage.prompt_tokens, 123);
  cr_assert(strstr(c.text, "It is large") != NULL);
  llm_cleanup(&l);
  x->free(x);
  g->free(g);
}

/* ---- prompt template ---------------------------------------------------------- */

Test(openai, template_files_are_checked) {
  char path[] = "/tmp/quarry-prompt-XXXXXX";
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  const char good[] = "Docs: {{context}}\nQuestion: {{question}}\n";
  cr_assert_eq(write(fd, good, sizeof good - 1), (ssize_t)(sizeof good - 1));
  close(fd);
  char *t = NULL, err[256] = "";
  cr_assert_eq(gen_openai_load_template(path, &t, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(t, good);
  free(t);

  fd = open(path, O_WRONLY | O_TRUNC);
  const char bad[] = "Only {{question}} here\n";
  cr_assert_eq(write(fd, bad, sizeof bad - 1), (ssize_t)(sizeof bad - 1));
  close(fd);
  cr_assert_eq(gen_openai_load_template(path, &t, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "{{context}}") != NULL, "%s", err);
  unlink(path);

  cr_assert_eq(gen_openai_load_template("/nonexistent/prompt.txt", &t, err, sizeof err),
               Q_EINVAL);
}

Test(openai, shipped_template_is_valid) {
  char *t = NULL, err[256] = "";
  /* Tests run from the repository root (make unit). */
  cr_assert_eq(gen_openai_load_template("services/llm-gateway/prompts/answer.v2.txt", &t,
                                        err, sizeof err),
               0, "%s", err);
  cr_assert(strstr(t, "\n--- user ---\n") != NULL, "v2 has a system message");
  cr_assert(strstr(t, "only") && strstr(t, "[1]"),
            "answers only from context, cites [n]");
  free(t);
  char v[64];
  gen_prompt_version("services/llm-gateway/prompts/answer.v2.txt", v, sizeof v);
  cr_assert_str_eq(v, "answer.v2");
}

Test(openai, prompt_is_bounded) {
  char *p = gen_openai_render_prompt("{{context}} {{question}}", "q", passages, 2, 32);
  cr_assert_null(p, "a prompt over the limit must be refused");
}

/* ---- TEI embeddings, lists, budget, streams that break ------------------------ */

static embedder_t *new_tei(void) {
  embed_openai_opts_t o = {
      .name = "tei", .url = url("/embed"), .dim = DIM, .timeout_ms = 2000};
  embedder_t *e = embed_tei_new(&o);
  cr_assert_not_null(e);
  return e;
}

Test(openai, tei_embeddings_round_trip) {
  embedder_t *e = new_tei();
  const char *texts[2] = {"alpha", "beta"};
  size_t lens[2] = {5, 4};
  float out[2 * DIM];
  char err[256] = "";
  cr_assert_eq(e->embed(e, texts, lens, 2, out, err, sizeof err), 0, "%s", err);
  /* vector_for(i): (3, i, 0...), normalised */
  cr_assert_float_eq(out[0], 1.0f, 1e-6);
  cr_assert_float_eq(out[DIM + 0], 3.0f / sqrtf(10.0f), 1e-6);
  cr_assert_float_eq(out[DIM + 1], 1.0f / sqrtf(10.0f), 1e-6);
  pthread_mutex_lock(&srv.mu);
  cr_assert_str_eq(srv.last_url, "/embed");
  cr_assert_eq(json_array_size(json_object_get(srv.last_body, "inputs")), 2);
  cr_assert(json_is_true(json_object_get(srv.last_body, "truncate")));
  pthread_mutex_unlock(&srv.mu);
  srv.mode = MODE_WRONG_DIM;
  cr_assert_eq(e->embed(e, texts, lens, 2, out, err, sizeof err), Q_EUNAVAIL);
  cr_assert(strstr(err, "dimensions"), "%s", err);
  e->free(e);
}

Test(openai, embed_list_fails_over_to_the_next_provider) {
  embed_openai_opts_t dead = {.name = "dead",
                              .url = "http://127.0.0.1:1/v1/embeddings",
                              .model = "m",
                              .dim = DIM,
                              .timeout_ms = 1000,
                              .connect_timeout_ms = 200};
  embedder_t *d = embed_openai_new(&dead), *t = new_tei();
  llm_t l;
  q_retry_policy_t pol = {
      .max_attempts = 2, .base_ms = 5, .max_backoff_ms = 10, .max_retry_after_ms = 100};
  llm_init(&l, &pol, NULL);
  llm_add_embedder(&l, d, 5, 1000);
  llm_add_embedder(&l, t, 5, 1000);
  const char *texts[1] = {"alpha"};
  size_t lens[1] = {5};
  float out[DIM];
  char err[256] = "";
  cr_assert_eq(llm_embed(&l, texts, lens, 1, out, err, sizeof err), 0, "%s", err);
  cr_assert_eq(srv.requests, 1, "the second provider answered");
  cr_assert_float_eq(
      scrape_value("quarry_llm_retries_total{op=\"embed\",provider=\"dead\"} "), 1.0,
      1e-9);
  llm_cleanup(&l);
  d->free(d);
  t->free(t);
}

Test(openai, failure_after_the_first_token_is_not_replaced) {
  generator_t *g = new_generator();
  generator_t *x = gen_extractive_new();
  llm_t l;
  llm_init(&l, NULL, x);
  llm_add_generator(&l, g, 0, 0, 5, 1000);
  collected_t c = {0};
  llm_answer_t ans;
  char err[256] = "";
  srv.mode = MODE_TRUNCATED;
  cr_assert_eq(llm_generate(&l, "What is the capital of France?", passages, 2, 0,
                            collect_cb, &c, &ans, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert(strstr(err, "before \"data: [DONE]\""), "%s", err);
  cr_assert_str_eq(c.text, "Paris is the capital of France [1]. It is large [1].",
                   "the client keeps what it got, and nothing else is added");
  cr_assert_eq(srv.requests, 1, "no retry after the first token");
  llm_cleanup(&l);
  x->free(x);
  g->free(g);
}

static int gone_cb(const char *piece, size_t len, void *ud) {
  return 1; /* the client has left */
}

Test(openai, a_client_that_left_is_not_retried_or_replaced) {
  generator_t *g = new_generator();
  generator_t *x = gen_extractive_new();
  llm_t l;
  llm_init(&l, NULL, x);
  llm_add_generator(&l, g, 0, 0, 5, 1000);
  llm_answer_t ans;
  char err[256] = "";
  cr_assert_eq(
      llm_generate(&l, "q", passages, 2, 0, gone_cb, NULL, &ans, err, sizeof err),
      Q_ECANCELLED);
  cr_assert_leq(srv.requests, 1);
  llm_cleanup(&l);
  x->free(x);
  g->free(g);
}

Test(openai, passages_are_packed_to_the_token_budget) {
  gen_passage_t ps[3] = {
      {"", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 40},  /* 48 B: 12 */
      {"T", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", 40}, /* 50 B: 13 */
      {"", "c", 1}};
  cr_assert_eq(gen_estimate_tokens(0), 0);
  cr_assert_eq(gen_estimate_tokens(1), 1);
  cr_assert_eq(gen_estimate_tokens(8), 2);
  cr_assert_eq(gen_pack_passages(ps, 3, 0), 3, "no budget: all");
  cr_assert_eq(gen_pack_passages(ps, 3, 11), 0);
  cr_assert_eq(gen_pack_passages(ps, 3, 12), 1);
  cr_assert_eq(gen_pack_passages(ps, 3, 25), 2);
  cr_assert_eq(gen_pack_passages(ps, 3, 27), 2);
  cr_assert_eq(gen_pack_passages(ps, 3, 28), 3); /* 9 B: 3 */
}

Test(openai, prompt_holds_only_the_passages_that_fit) {
  gen_passage_t ps[2] = {{"", "first passage text", 18},
                         {"", "second passage that will not fit in the budget", 46}};
  gen_openai_opts_t o = {.url = url("/v1/chat/completions"),
                         .model = "fake-chat",
                         .template = "System rules [n].\n--- user ---\n{{context}}\nQ: "
                                     "{{question}}",
                         .prompt_version = "answer.v9",
                         .timeout_ms = 5000,
                         .context_tokens = 8};
  generator_t *g = gen_openai_new(&o);
  collected_t c = {0};
  gen_usage_t u;
  gen_outcome_t out;
  char err[256] = "";
  cr_assert_eq(
      g->generate_ex(g, "q?", ps, 2, 0, collect_cb, &c, &u, &out, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(out.passages_used, 1);
  cr_assert_str_eq(out.prompt_version, "answer.v9");
  pthread_mutex_lock(&srv.mu);
  json_t *msgs = json_object_get(srv.last_body, "messages");
  cr_assert_eq(json_array_size(msgs), 2);
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                   "system");
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                   "System rules [n].\n");
  cr_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                   "[1] first passage text\nQ: q?");
  cr_assert_null(json_object_get(srv.last_body, "stream_options"),
                 "include_usage only when asked");
  pthread_mutex_unlock(&srv.mu);
  g->free(g);
}

/* What the emit callback saw of the answer while pieces arrived. */
typedef struct seen_used {
  const llm_answer_t *ans;
  size_t used_at_first; /* ans->passages_used when the first piece came */
  int pieces;
} seen_used_t;

static int seen_used_cb(const char *piece, size_t len, void *ud) {
  seen_used_t *s = ud;
  if (len && s->pieces++ == 0)
    s->used_at_first = s->ans->passages_used;
  return 0;
}

/* The gateway streams markers checked against what the model saw: that
 * number must be known when the first piece is emitted, not only at the
 * end (the SSE [k+1] a later done.answer removed). */
Test(openai, passages_used_is_known_before_the_first_piece) {
  gen_passage_t ps[2] = {{"", "first passage text", 18},
                         {"", "second passage that will not fit in the budget", 46}};
  gen_openai_opts_t o = {.url = url("/v1/chat/completions"),
                         .model = "fake-chat",
                         .template = TEMPLATE,
                         .timeout_ms = 5000,
                         .context_tokens = 8};
  generator_t *g = gen_openai_new(&o);
  llm_t l;
  q_retry_policy_t once = Q_RETRY_POLICY_DEFAULT;
  once.max_attempts = 1;
  llm_init(&l, &once, NULL);
  llm_add_generator(&l, g, 0, 0, 5, 1000);
  llm_answer_t ans;
  seen_used_t s = {.ans = &ans};
  char err[256] = "";
  cr_assert_eq(llm_generate(&l, "q?", ps, 2, 0, seen_used_cb, &s, &ans, err, sizeof err),
               0, "%s", err);
  cr_assert_gt(s.pieces, 0);
  cr_assert_eq(s.used_at_first, 1,
               "one passage fits the budget: known at the first piece");
  cr_assert_eq(ans.passages_used, 1);
  llm_cleanup(&l);
  g->free(g);
}
