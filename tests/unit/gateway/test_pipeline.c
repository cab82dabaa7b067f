/* test_pipeline.c - the query pipeline without HTTP: a recording sink and
 * fake downstream services (gwfake.h). Each case is a query -> the events
 * the sink saw, in order, plus what the fakes saw. */
#include "gateway.h"
#include "pipeline.h"
#include "ratelimit.h"
#include "sink.h"
#include "gwfake.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/util.h"

/* ---- a sink that writes down what it is told ------------------------------ */

typedef struct rec {
  sink_t base;
  pthread_mutex_t mu;
  q_buf_t log;    /* one line per call: "retrieval 3", "token", "citation 2", ... */
  q_buf_t tokens; /* the tokens, joined */
  int ntokens;
  int nretrieval;
  char query_id[40];
  /* done */
  int done;
  char answer[1024];
  char degraded[256]; /* names joined by ',' */
  size_t ncitations;
  unsigned cited[16];
  char cited_chunk0[32];
  bool cache_hit;
  char rerank_method[32];
  char provider[32], model[32], prompt_version[32]; /* "(null)": not given */
  bool fallback, has_usage;
  int prompt_tokens, completion_tokens;
  double total_ms;
  /* error */
  int errors;
  q_err_t err;
  char message[1024];
  int retry_after;
  /* behaviour */
  int refuse_after_tokens; /* token returns an error after this many (0: never) */
} rec_t;

static void note(rec_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(rec_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&r->mu);
  q_buf_vprintf(&r->log, fmt, ap);
  q_buf_puts(&r->log, "\n");
  pthread_mutex_unlock(&r->mu);
  va_end(ap);
}

static q_err_t rec_retrieval(sink_t *s, const char *query_id,
                             Quarry__V1__Passage *const *ps, size_t n) {
  rec_t *r = (rec_t *)s;
  snprintf(r->query_id, sizeof r->query_id, "%s", query_id);
  r->nretrieval++;
  note(r, "retrieval %zu%s%s", n, n ? " " : "", n ? ps[0]->chunk_id : "");
  return 0;
}

static q_err_t rec_token(sink_t *s, const char *text, size_t len) {
  rec_t *r = (rec_t *)s;
  pthread_mutex_lock(&r->mu);
  q_buf_append(&r->tokens, text, len);
  r->ntokens++;
  int n = r->ntokens;
  pthread_mutex_unlock(&r->mu);
  note(r, "token");
  return r->refuse_after_tokens && n >= r->refuse_after_tokens ? Q_ECANCELLED : 0;
}

static q_err_t rec_citation(sink_t *s, const sink_citation_t *c) {
  note((rec_t *)s, "citation %u %s", c->n, c->passage->chunk_id);
  return 0;
}

static void rec_done(sink_t *s, const sink_summary_t *sum) {
  rec_t *r = (rec_t *)s;
  r->done++;
  snprintf(r->answer, sizeof r->answer, "%.*s", (int)sum->answer_len, sum->answer);
  r->degraded[0] = '\0';
  for (size_t i = 0; i < sum->ndegraded; i++) {
    size_t l = strlen(r->degraded);
    snprintf(r->degraded + l, sizeof r->degraded - l, "%s%s", i ? "," : "",
             sum->degraded[i]);
  }
  r->ncitations = sum->ncitations;
  for (size_t i = 0; i < sum->ncitations && i < 16; i++)
    r->cited[i] = sum->citations[i].n;
  if (sum->ncitations)
    snprintf(r->cited_chunk0, sizeof r->cited_chunk0, "%s",
             sum->citations[0].passage->chunk_id);
  r->cache_hit = sum->cache_hit;
  snprintf(r->rerank_method, sizeof r->rerank_method, "%s", sum->rerank_method);
  snprintf(r->provider, sizeof r->provider, "%s",
           sum->provider ? sum->provider : "(null)");
  snprintf(r->model, sizeof r->model, "%s", sum->model ? sum->model : "(null)");
  snprintf(r->prompt_version, sizeof r->prompt_version, "%s",
           sum->prompt_version ? sum->prompt_version : "(null)");
  r->fallback = sum->fallback;
  r->has_usage = sum->has_usage;
  r->prompt_tokens = sum->prompt_tokens;
  r->completion_tokens = sum->completion_tokens;
  r->total_ms = sum->timings_ms.total;
  note(r, "done");
}

static void rec_error(sink_t *s, q_err_t err, const char *message, int retry_after_s) {
  rec_t *r = (rec_t *)s;
  r->errors++;
  r->err = err;
  snprintf(r->message, sizeof r->message, "%s", message);
  r->retry_after = retry_after_s;
  note(r, "error %s", q_err_slug(err));
}

static void rec_init(rec_t *r) {
  memset(r, 0, sizeof *r);
  r->base = (sink_t){.name = "record",
                     .retrieval = rec_retrieval,
                     .token = rec_token,
                     .citation = rec_citation,
                     .done = rec_done,
                     .error = rec_error};
  pthread_mutex_init(&r->mu, NULL);
  q_buf_init(&r->log, 1 << 20);
  q_buf_init(&r->tokens, 1 << 20);
}

static void rec_cleanup(rec_t *r) {
  q_buf_cleanup(&r->log);
  q_buf_cleanup(&r->tokens);
  pthread_mutex_destroy(&r->mu);
}

/* The log with the token lines squeezed into one "token*". */
static void shape(rec_t *r, char *out, size_t outlen) {
  out[0] = '\0';
  const char *p = r->log.data ? r->log.data : "";
  int in_tokens = 0;
  while (*p) {
    const char *nl = strchr(p, '\n');
    size_t l = nl ? (size_t)(nl - p) : strlen(p);
    int tok = l == 5 && strncmp(p, "token", 5) == 0;
    if (!tok || !in_tokens) {
      size_t o = strlen(out);
      snprintf(out + o, outlen - o, "%s%.*s", o ? "|" : "", (int)(tok ? 6 : l),
               tok ? "token*" : p);
    }
    in_tokens = tok;
    p += l + (nl ? 1 : 0);
  }
}

/* ---- fixture -------------------------------------------------------------- */

static gwfake_t fk;
static gw_cfg_t cfg;
static gw_principal_t principal = {
    .tenant_id = "t1", .user_id = "key:k1", .key_id = "k1"};

static void setup(void) {
  q_log_init("pipeline-test", Q_LOG_ERROR);
  gw_metrics_init();
  gwfake_start(&fk);
  cfg = (gw_cfg_t){
      .auth_addr = fk.addr,
      .retriever_addr = fk.addr,
      .reranker_addr = fk.addr,
      .llm_addr = fk.addr,
      .feedback_addr = fk.addr,
      .query_timeout_ms = 1500,
      .rate_limit_rps = 0,
  };
  cr_assert_eq(ratelimit_init("127.0.0.1:1", 0), 0);
}

static void teardown(void) {
  gwfake_stop(&fk);
  ratelimit_shutdown();
  q_grpc_client_shutdown();
}

TestSuite(pipeline, .init = setup, .fini = teardown, .timeout = 30);

static pipeline_req_t request(const char *query, int top_k) {
  return (pipeline_req_t){
      .cfg = &cfg,
      .principal = &principal,
      .auth_ms = 0.25,
      .query = query,
      .top_k = top_k,
      .trace_id = "0af7651916cd43dd8448eb211c80319c",
      .deadline_ms = q_now_ms() + cfg.query_timeout_ms,
      .t0 = q_now_s(),
  };
}

static void run(rec_t *r, const char *query, int top_k) {
  pipeline_req_t req = request(query, top_k);
  pipeline_t *p = pipeline_new(&req, &r->base);
  cr_assert_not_null(p);
  pipeline_run(p);
  pipeline_free(p);
}

/* ---- cases ------------------------------------------------------------------ */

Test(pipeline, events_come_in_order_and_tokens_add_up_to_the_answer) {
  rec_t r;
  rec_init(&r);
  run(&r, "what is alpha?", 3);
  char s[512];
  shape(&r, s, sizeof s);
  /* Reranked order reverses the retriever's: [1] is c10. */
  cr_assert_str_eq(
      s, "retrieval 3 c10|token*|citation 1 c10|citation 2 c9|citation 3 c8|done", "%s",
      r.log.data);
  cr_assert_eq(r.done, 1);
  cr_assert_eq(r.errors, 0);
  cr_assert_str_eq(r.answer, "Alpha [1]. Beta [2][3]. Bogus.");
  cr_assert_str_eq(r.tokens.data, r.answer, "tokens say %s", r.tokens.data);
  cr_assert_gt(r.ntokens, 3, "streamed in pieces");
  cr_assert_str_eq(r.degraded, "citations");
  cr_assert_eq(r.ncitations, 3);
  cr_assert_eq(strlen(r.query_id), 36);
  cr_assert_not(r.cache_hit);
  cr_assert_str_eq(r.rerank_method, "reversed", "the reranker's own name for its method");
  cr_assert_gt(r.total_ms, 0);
  cr_assert_eq(atomic_load(&fk.records), 1);
  rec_cleanup(&r);
}

/* The llm-gateway says with every piece that the prompt left the last
 * passage out: no token carries its marker, and the tokens still add up
 * to the checked answer (before, an SSE client saw "[3]" that done.answer
 * then lacked). */
Test(pipeline, a_marker_of_a_passage_the_model_did_not_see_is_never_streamed) {
  atomic_store(&fk.gen_dropped, 1);
  rec_t r;
  rec_init(&r);
  run(&r, "what is alpha?", 3);
  cr_assert_str_eq(r.answer, "Alpha [1]. Beta [2]. Bogus.");
  cr_assert_str_eq(r.tokens.data, r.answer, "tokens say %s", r.tokens.data);
  cr_assert_null(strstr(r.tokens.data, "[3]"));
  cr_assert_eq(r.ncitations, 2);
  rec_cleanup(&r);
}

Test(pipeline, optional_stages_degrade) {
  atomic_store(&fk.embed_fail, 1);
  atomic_store(&fk.rerank_fail, 1);
  atomic_store(&fk.record_fail, 1);
  fk.answer = "Only [2].";
  rec_t r;
  rec_init(&r);
  run(&r, "q", 3);
  cr_assert_eq(r.done, 1, "%s", r.log.data);
  cr_assert_str_eq(r.degraded, "embed,rerank,record_query");
  /* Retriever order kept: [2] is c2. */
  cr_assert_str_eq(r.cited_chunk0, "c2");
  cr_assert_str_eq(r.rerank_method, "none");
  cr_assert_str_eq(r.answer, "Only [2].");
  rec_cleanup(&r);
}

Test(pipeline, retriever_failure_is_an_error_before_any_event) {
  atomic_store(&fk.retriever_fail, 1);
  rec_t r;
  rec_init(&r);
  run(&r, "q", 3);
  char s[256];
  shape(&r, s, sizeof s);
  cr_assert_str_eq(s, "error unavailable");
  cr_assert_eq(r.err, Q_EUNAVAIL);
  cr_assert_str_eq(r.message, "retriever unavailable: index not loaded");
  cr_assert_eq(atomic_load(&fk.generates), 0);
  rec_cleanup(&r);
}

Test(pipeline, the_summary_names_who_answered) {
  rec_t r;
  rec_init(&r);
  run(&r, "what is alpha?", 3);
  cr_assert_eq(r.done, 1, "%s", r.log.data);
  cr_assert_str_eq(r.provider, "fake-0");
  cr_assert_str_eq(r.model, "fake-model");
  cr_assert_str_eq(r.prompt_version, "answer.v2");
  cr_assert_not(r.fallback);
  cr_assert(r.has_usage);
  cr_assert_eq(r.prompt_tokens, 11);
  cr_assert_eq(r.completion_tokens, 7);
  cr_assert_str_eq(r.degraded, "citations");
  rec_cleanup(&r);
}

Test(pipeline, a_fallback_answer_is_named_and_degraded) {
  fk.gen_provider = "extractive";
  fk.gen_model = "quarry-extractive";
  atomic_store(&fk.gen_fallback, 1);
  fk.answer = "Only [2].";
  rec_t r;
  rec_init(&r);
  run(&r, "q", 3);
  cr_assert_eq(r.done, 1, "%s", r.log.data);
  cr_assert_str_eq(r.provider, "extractive");
  cr_assert_str_eq(r.model, "quarry-extractive");
  cr_assert(r.fallback);
  cr_assert_str_eq(r.degraded, "generate");
  rec_cleanup(&r);
}

Test(pipeline, generation_failure_comes_after_retrieval) {
  atomic_store(&fk.gen_fail, 1);
  rec_t r;
  rec_init(&r);
  run(&r, "q", 3);
  char s[256];
  shape(&r, s, sizeof s);
  cr_assert_str_eq(s, "retrieval 3 c10|error unavailable");
  cr_assert_str_eq(r.message, "llm-gateway unavailable: provider refused");
  cr_assert_eq(atomic_load(&fk.records), 0, "a failed query is not recorded");
  rec_cleanup(&r);
}

Test(pipeline, no_match_answers_without_sources) {
  fk.npassages = 0;
  rec_t r;
  rec_init(&r);
  run(&r, "q", 3);
  char s[256];
  shape(&r, s, sizeof s);
  cr_assert_str_eq(s, "retrieval 0|token*|done");
  cr_assert_str_eq(r.tokens.data, r.answer);
  cr_assert_eq(r.ncitations, 0);
  cr_assert_eq(atomic_load(&fk.generates), 0);
  cr_assert_str_eq(r.provider, "(null)", "no model was asked: nobody is named");
  rec_cleanup(&r);
}

Test(pipeline, a_passed_deadline_is_504_before_retrieval) {
  rec_t r;
  rec_init(&r);
  pipeline_req_t req = request("q", 3);
  req.deadline_ms = q_now_ms() - 1;
  pipeline_t *p = pipeline_new(&req, &r.base);
  pipeline_run(p);
  pipeline_free(p);
  cr_assert_eq(r.err, Q_ETIMEDOUT);
  cr_assert(strstr(r.message, "before retrieval"), "%s", r.message);
  cr_assert_eq(atomic_load(&fk.searches), 0);
  rec_cleanup(&r);
}

Test(pipeline, cancelled_before_running_calls_nothing) {
  rec_t r;
  rec_init(&r);
  pipeline_req_t req = request("q", 3);
  pipeline_t *p = pipeline_new(&req, &r.base);
  pipeline_cancel(p);
  pipeline_run(p);
  pipeline_free(p);
  char s[256];
  shape(&r, s, sizeof s);
  cr_assert_str_eq(s, "error unavailable");
  cr_assert_eq(r.err, Q_ECANCELLED);
  cr_assert_eq(atomic_load(&fk.searches), 0);
  rec_cleanup(&r);
}

typedef struct runner {
  pipeline_t *p;
  double ended;
} runner_t;

static void *run_thread(void *arg) {
  runner_t *rn = arg;
  pipeline_run(rn->p);
  rn->ended = q_now_s();
  return NULL;
}

/* A long answer streamed slowly: 400 pieces, 10 ms apart. */
static char long_answer[2001];

static void slow_generator(void) {
  for (size_t i = 0; i < sizeof long_answer - 1; i++)
    long_answer[i] = "word [1] "[i % 9];
  fk.answer = long_answer;
  atomic_store(&fk.piece_ms, 10);
}

Test(pipeline, cancel_stops_generation_within_100_ms) {
  slow_generator();
  cfg.query_timeout_ms = 20000;
  rec_t r;
  rec_init(&r);
  pipeline_req_t req = request("q", 3);
  pipeline_t *p = pipeline_new(&req, &r.base);
  runner_t rn = {.p = p};
  pthread_t th;
  pthread_create(&th, NULL, run_thread, &rn);
  cr_assert(gwfake_wait(&fk.gen_pieces, 5, 5000), "generation started");
  double t = q_now_s();
  pipeline_cancel(p);
  cr_assert(gwfake_wait(&fk.gen_cancelled, 1, 2000), "the generator noticed");
  double stop_ms = (atomic_load(&fk.gen_stop_s) - t) * 1000.0;
  pthread_join(th, NULL);
  double run_ms = (rn.ended - t) * 1000.0;
  fprintf(stderr,
          "pipeline cancel: generator stopped after %.1f ms, run ended after %.1f ms\n",
          stop_ms, run_ms);
  cr_assert_lt(stop_ms, 100.0, "generator stopped %.1f ms after the cancel", stop_ms);
  cr_assert_lt(atomic_load(&fk.gen_pieces), 100, "far from the 400 pieces");
  cr_assert_eq(r.errors, 1);
  cr_assert_eq(r.err, Q_ECANCELLED);
  cr_assert_eq(r.done, 0);
  cr_assert_eq(atomic_load(&fk.records), 0);
  pipeline_free(p);
  rec_cleanup(&r);
}

Test(pipeline, a_sink_that_refuses_stops_the_query) {
  slow_generator();
  cfg.query_timeout_ms = 20000;
  rec_t r;
  rec_init(&r);
  r.refuse_after_tokens = 3;
  double t = q_now_s();
  run(&r, "q", 3);
  cr_assert_lt(q_now_s() - t, 1.0);
  cr_assert_eq(r.err, Q_ECANCELLED);
  cr_assert_eq(r.ntokens, 3);
  cr_assert(gwfake_wait(&fk.gen_cancelled, 1, 2000), "the generator was cancelled");
  rec_cleanup(&r);
}

Test(pipeline, cancel_during_search_cancels_the_call) {
  cfg.query_timeout_ms = 20000;
  atomic_store(&fk.freeze_search, 1);
  rec_t r;
  rec_init(&r);
  pipeline_req_t req = request("q", 3);
  pipeline_t *p = pipeline_new(&req, &r.base);
  runner_t rn = {.p = p};
  pthread_t th;
  pthread_create(&th, NULL, run_thread, &rn);
  cr_assert(gwfake_wait(&fk.searches, 1, 5000), "retrieval started");
  double t = q_now_s();
  pipeline_cancel(p);
  cr_assert(gwfake_wait(&fk.search_cancelled, 1, 2000),
            "the retriever saw its call cancelled");
  pthread_join(th, NULL);
  double run_ms = (rn.ended - t) * 1000.0;
  fprintf(stderr, "pipeline cancel during Search: run ended after %.1f ms\n", run_ms);
  cr_assert_lt(run_ms, 1000.0, "the run ended %.1f ms after the cancel", run_ms);
  cr_assert_eq(r.errors, 1);
  cr_assert_eq(r.err, Q_ECANCELLED);
  cr_assert_eq(atomic_load(&fk.generates), 0);
  cr_assert_eq(atomic_load(&fk.records), 0);
  atomic_store(&fk.freeze_search, 0);
  pipeline_free(p);
  rec_cleanup(&r);
}

static atomic_int hold_stream; /* sink_full's answer */
static atomic_int full_asked;

static bool full_cb(void *ud) {
  (void)ud;
  atomic_fetch_add(&full_asked, 1);
  return atomic_load(&hold_stream) != 0;
}

static int tokens_of(rec_t *r) {
  pthread_mutex_lock(&r->mu);
  int n = r->ntokens;
  pthread_mutex_unlock(&r->mu);
  return n;
}

Test(pipeline, a_full_sink_pauses_generation_until_resumed) {
  slow_generator();
  atomic_store(&fk.piece_ms, 1);
  cfg.query_timeout_ms = 20000;
  atomic_store(&hold_stream, 1);
  atomic_store(&full_asked, 0);
  rec_t r;
  rec_init(&r);
  pipeline_req_t req = request("q", 3);
  req.sink_full = full_cb;
  pipeline_t *p = pipeline_new(&req, &r.base);
  runner_t rn = {.p = p};
  pthread_t th;
  pthread_create(&th, NULL, run_thread, &rn);
  cr_assert(gwfake_wait(&full_asked, 1, 5000), "the first piece arrived");
  usleep(300 * 1000); /* ~300 pieces sent meanwhile, none read */
  int held = tokens_of(&r);
  cr_assert_eq(atomic_load(&full_asked), 1, "no message read while paused");
  cr_assert_leq(held, 1, "%d tokens while paused", held);
  atomic_store(&hold_stream, 0);
  pipeline_resume(p);
  pthread_join(th, NULL);
  fprintf(stderr, "flow control: %d token(s) while paused, %d in all\n", held,
          tokens_of(&r));
  cr_assert_eq(r.done, 1, "the answer completed after the resume");
  cr_assert_gt(r.tokens.len, 1000, "the whole answer streamed");
  pipeline_free(p);
  rec_cleanup(&r);
}
