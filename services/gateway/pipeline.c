/* pipeline.c - the query pipeline's stages and their driver (see
 * pipeline.h for the stages, the fallbacks and the threads). Each stage is
 * a `_start` that issues its asynchronous call and returns true, or, when
 * it needs no call (or cannot make one), sets p->stage itself and returns
 * false; the call's completion callback hands the result to the stage's
 * `_done`, which sets p->stage, and then calls advance, which starts the
 * next stage. Nothing here knows about HTTP: results go to the sink. */
#include "pipeline.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/v1/feedback.pb-c.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/v1/reranker.pb-c.h"
#include "quarry/v1/retriever.pb-c.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/stubs.h"
#include "quarry/text.h"
#include "quarry/trace.h"
#include "quarry/util.h"
#include "quarry/validate.h"

#include "citations.h"
#include "depwatch.h"
#include "downstream.h"
#include "ratelimit.h"

#define ARENA_MAX (64u << 20) /* everything one query may allocate */
#define RECORD_TIMEOUT_MS 500 /* RecordQuery is bookkeeping: keep it short */
#define EMBED_SHARE 0.4       /* of the time left, at most */
#define RERANK_SHARE 0.5
#define MAX_DEGRADED 8

/* Said when nothing in the tenant's index matches: answering would mean
 * answering without sources, which a grounded system must not do. */
static const char no_match_answer[] = "No indexed passage matches this query.";

_Static_assert(PIPELINE_RETRIEVE_TOP_K <= Q_LIMIT_RERANK_PASSAGES,
               "the reranker takes them all");
_Static_assert(PIPELINE_TOP_K_DEFAULT <= Q_LIMIT_TOP_K_MAX,
               "the default top_k is allowed");

typedef enum {
  ST_ADMIT,
  ST_CACHE,
  ST_EMBED,
  ST_RETRIEVE,
  ST_RERANK,
  ST_GENERATE,
  ST_CITE,
  ST_RECORD,
  ST_END,
} stage_t;

struct pipeline {
  q_arena_t *arena;
  sink_t *sink;
  const gw_cfg_t *cfg;
  gw_principal_t principal;
  bool has_principal;
  bool rate_limited; /* by the edge */
  double auth_ms, t0;
  const char *query;
  int top_k;
  const char *mode;        /* "" unless the request chose one */
  const char *filter;      /* compact JSON for SearchRequest.filter; "" none */
  const char *embed_model; /* the model that made emb (Embed's reply) */
  char trace_id[Q_TRACE_ID_LEN + 1];
  int64_t deadline_ms;
  char query_id[37];

  stage_t stage;
  bool failed; /* the sink has had its error */
  atomic_bool cancelled;
  /* The asynchronous call in flight (any stage's), so pipeline_cancel and
   * pipeline_resume can reach it from another thread: set by the start
   * functions and cleared by the final callbacks, both under call_mu
   * ("Handle" in quarry/grpc.h). paused: the Generate stream's on_message
   * asked for a pause and no message has arrived since. */
  pthread_mutex_t call_mu;
  q_grpc_async_t *call;
  bool paused;
  double t_call; /* q_now_s() when the call in flight started */

  /* Flow control of the answer's stream (pipeline_req_t), and who hears
   * of the end. */
  bool (*sink_full)(void *ud);
  void *flow_ud;
  void (*generating)(void *ud);
  void *generating_ud;
  pipeline_end_fn on_end;
  void *end_ud;

  /* What the stages produce. */
  float *emb;
  size_t nemb;
  Quarry__V1__Passage **cand; /* the retriever's candidates */
  size_t ncand;
  Quarry__V1__Passage **sent; /* what generation is given: [1] is sent[0] */
  size_t nsent;               /* of them, those the model saw (may be cited) */
  size_t ngenerate;           /* passages in the Generate request */
  q_buf_t answer;             /* as generated, at most Q_LIMIT_ANSWER_BYTES */
  bool truncated;
  citations_stream_t stream; /* the checked pieces sent as tokens */
  const char *checked;       /* the answer with invalid markers removed */
  size_t checked_len;
  citations_t cites;
  sink_citation_t *citations;
  char **chunk_ids;
  const char *degraded[MAX_DEGRADED];
  size_t ndegraded;
  Quarry__V1__Usage usage; /* the llm-gateway's, from its last message */
  bool has_usage;
  /* Who answered, from the same message (in the arena); NULL: no answer was
   * generated. */
  const char *gen_provider, *gen_model, *gen_prompt_version;
  bool gen_fallback;
  double ms_embed, ms_retrieve, ms_rerank, ms_generate;
  const char *rerank_method; /* what ordered `sent`; "none": retrieval order */
  char err[512];             /* status message of the last failed call */
};

static double ms_since(double t) {
  return (q_now_s() - t) * 1000.0;
}

/* A timeout for the next call: share of the time left (share 1: all of
 * it), at least 1 ms; 0 when the deadline has passed. */
static int budget(const pipeline_t *p, double share) {
  int64_t left = p->deadline_ms ? p->deadline_ms - q_now_ms() : INT_MAX;
  if (left <= 0)
    return 0;
  double b = (double)left * share;
  if (b < 1)
    b = 1;
  return b > INT_MAX ? INT_MAX : (int)b;
}

static q_metric_t *m_paused;

static void paused_register(void) {
  m_paused = q_metrics_counter("quarry_pipeline_stream_paused_total",
                               "Times an answer's Generate stream was paused because "
                               "the client read the stream slower than it came.",
                               "");
}

static q_metric_t *paused_metric(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, paused_register);
  return m_paused;
}

static void count_outcome(const char *outcome) {
  const char *labels[] = {outcome};
  q_metrics_inc(gw_metrics.queries, labels);
}

/* Ends the run with an error: counts the outcome and tells the sink. */
static void fail(pipeline_t *p, q_err_t err, int retry_after_s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(pipeline_t *p, q_err_t err, int retry_after_s, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->stage = ST_END;
  p->failed = true;
  count_outcome(err == Q_ECANCELLED         ? "cancelled"
                : q_err_to_http(err) >= 500 ? "failed"
                                            : "rejected");
  q_logf(err == Q_ECANCELLED ? Q_LOG_INFO : Q_LOG_WARN, "query failed", "{s:s,s:s,s:s}",
         "query_id", p->query_id, "code", q_err_slug(err), "error", msg);
  p->sink->error(p->sink, err, msg, retry_after_s);
}

/* Ends the run for a failed call to service. */
static void fail_downstream(pipeline_t *p, const char *service, q_err_t err,
                            const char *detail) {
  char msg[768];
  downstream_msg(msg, sizeof msg, service, err, detail);
  fail(p, err, 0, "%s", msg);
}

static void fail_deadline(pipeline_t *p, const char *before) {
  fail(p, Q_ETIMEDOUT, 0, "query deadline of %lld ms exceeded before %s",
       (long long)p->cfg->query_timeout_ms, before);
}

/* An optional stage fell back after its call to service failed with rc
 * (detail in p->err): logs what (naming the service and the error) and
 * lists the stage in the reply's "degraded". */
static void degrade(pipeline_t *p, const char *stage, const char *service, int rc,
                    const char *what) {
  char msg[768];
  downstream_msg(msg, sizeof msg, service, rc, p->err);
  q_log_warn(what, "{s:s,s:s}", "query_id", p->query_id, "error", msg);
  if (p->ndegraded < MAX_DEGRADED)
    p->degraded[p->ndegraded++] = stage;
}

/* A progress call of the sink refused: its reader is gone or too far
 * behind, so the query stops. */
static void progress(pipeline_t *p, q_err_t rc) {
  if (rc)
    pipeline_cancel(p);
}

/* Sends out[0..n) of checked answer as a token. */
static void emit_token(pipeline_t *p, const char *text, size_t n) {
  if (n && !atomic_load(&p->cancelled))
    progress(p, p->sink->token(p->sink, text, n));
}

/* Feeds a piece of the answer through the marker check and sends what it
 * lets through. */
static void stream_piece(pipeline_t *p, const char *piece, size_t len, bool last) {
  char *out = malloc(len + CITATIONS_STREAM_SLACK);
  if (!out) {
    pipeline_cancel(p);
    return;
  }
  size_t n = citations_stream_feed(&p->stream, piece, len, last, out);
  emit_token(p, out, n);
  free(out);
}

/* ---- asynchronous calls ----------------------------------------------------- */

/* Options of a downstream call: the query's deadline and trace id travel
 * in them, since an asynchronous call reads no thread context. */
static q_grpc_call_opts_t call_opts(const pipeline_t *p, int timeout_ms,
                                    bool idempotent) {
  return (q_grpc_call_opts_t){
      .timeout_ms = timeout_ms,
      .idempotent = idempotent,
      .deadline_ms = p->deadline_ms,
      .trace_id = q_trace_id_valid(p->trace_id) ? p->trace_id : NULL,
  };
}

/* Under call_mu, right after a start function returned rc into p->call: a
 * pipeline_cancel that came before the handle existed is applied now. */
static void call_started_locked(pipeline_t *p, q_err_t rc) {
  if (rc == 0 && atomic_load(&p->cancelled))
    q_grpc_async_cancel(p->call);
}

/* A call that never started: the stage's _done gets rc with this detail. */
static void call_not_started(pipeline_t *p, q_err_t rc) {
  snprintf(p->err, sizeof p->err, "call not started: %s", q_err_name(rc));
}

/* First thing in a final callback (on the call's loop thread): the handle
 * dies when the callback returns, so it is dropped under call_mu; the
 * status message is kept for the stage's _done; logs carry the query's
 * trace id. */
static void call_ended(pipeline_t *p, q_err_t rc, const char *status_message) {
  q_trace_set(p->trace_id, p->deadline_ms);
  pthread_mutex_lock(&p->call_mu);
  p->call = NULL;
  p->paused = false;
  pthread_mutex_unlock(&p->call_mu);
  if (rc)
    snprintf(p->err, sizeof p->err, "%s", status_message ? status_message : "");
}

static void advance(pipeline_t *p);

/* ---- admit: the principal and the rate limit ------------------------------ */

static bool admit_start(pipeline_t *p) {
  if (!p->has_principal) {
    fail(p, Q_EUNAUTH, 0, "no authenticated principal");
    return false;
  }
  if (!p->rate_limited && !ratelimit_allow(&p->principal)) {
    q_metrics_inc(gw_metrics.rate_limited, NULL);
    fail(p, Q_ERESOURCE, 1, "rate limit of %lld requests per second exceeded",
         (long long)p->cfg->rate_limit_rps);
    return false;
  }
  p->stage = ST_CACHE;
  return false;
}

/* ---- cache: the semantic cache's hook ------------------------------------- */

/* Looks the query up for the tenant (pipeline.h, "The cache hook"). There
 * is no cache yet: always a miss. */
static bool cache_lookup(const char *tenant_id, const char *query) {
  (void)tenant_id;
  (void)query;
  return false;
}

static bool cache_start(pipeline_t *p) {
  if (cache_lookup(p->principal.tenant_id, p->query)) {
    /* Unreachable until a cache exists; a hit will report its answer to
     * the sink and continue with ST_RECORD. */
  }
  p->stage = ST_EMBED;
  return false;
}

/* ---- embed ---------------------------------------------------------------- */

static void embed_done(pipeline_t *p, double t, q_err_t rc,
                       Quarry__V1__EmbedResponse *resp) {
  if (rc == 0 && (!resp || resp->n_embeddings != 1 || !resp->embeddings[0] ||
                  resp->embeddings[0]->n_values == 0)) {
    rc = Q_EINTERNAL;
    snprintf(p->err, sizeof p->err, "reply holds no embedding for the query");
  }
  if (rc) {
    degrade(p, "embed", "llm-gateway", rc, "embedding failed: retrieving lexically only");
  } else {
    p->emb = resp->embeddings[0]->values;
    p->nemb = resp->embeddings[0]->n_values;
    p->embed_model = resp->model;
  }
  p->ms_embed = ms_since(t);
  p->stage = ST_RETRIEVE;
}

static void embed_cb(void *ud, q_err_t rc, Quarry__V1__EmbedResponse *resp,
                     const char *status_message) {
  pipeline_t *p = ud;
  call_ended(p, rc, status_message);
  embed_done(p, p->t_call, rc, resp);
  advance(p);
  q_trace_clear();
}

static bool embed_start(pipeline_t *p) {
  p->t_call = q_now_s();
  if (strcmp(p->mode, "lexical") == 0) {
    p->stage = ST_RETRIEVE; /* no vector wanted */
    return false;
  }
  int timeout = budget(p, EMBED_SHARE);
  if (!timeout) {
    p->stage = ST_RETRIEVE; /* retrieval reports the deadline */
    return false;
  }
  Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
  char *texts[1] = {(char *)p->query};
  req.n_texts = 1;
  req.texts = texts;
  q_grpc_call_opts_t opts = call_opts(p, timeout, true);
  pthread_mutex_lock(&p->call_mu);
  q_err_t rc = q_rpc_llm_gateway_embed_async(q_grpc_channel(p->cfg->llm_addr), &req,
                                             p->arena, &opts, embed_cb, p, &p->call);
  call_started_locked(p, rc);
  pthread_mutex_unlock(&p->call_mu);
  if (rc == 0)
    return true; /* p is the callback's now */
  call_not_started(p, rc);
  embed_done(p, p->t_call, rc, NULL);
  return false;
}

/* ---- retrieve ------------------------------------------------------------- */

static void retrieve_done(pipeline_t *p, double t, q_err_t rc,
                          Quarry__V1__SearchResponse *resp) {
  p->ms_retrieve = ms_since(t);
  if (rc) {
    fail_downstream(p, "retriever", rc, p->err);
    return;
  }
  if (!resp) {
    fail_downstream(p, "retriever", Q_EINTERNAL, "empty reply");
    return;
  }
  for (size_t i = 0; i < resp->n_passages; i++)
    if (!resp->passages[i]) {
      fail_downstream(p, "retriever", Q_EINTERNAL, "reply holds an empty passage");
      return;
    }
  p->cand = resp->passages;
  p->ncand = resp->n_passages;
  if (p->ncand > 0) {
    p->stage = ST_RERANK;
    return;
  }
  /* Nothing matches: no generation, and the answer says so. */
  progress(p, p->sink->retrieval(p->sink, p->query_id, NULL, 0));
  p->checked = no_match_answer;
  p->checked_len = strlen(no_match_answer);
  emit_token(p, p->checked, p->checked_len);
  p->stage = ST_CITE;
}

static void retrieve_cb(void *ud, q_err_t rc, Quarry__V1__SearchResponse *resp,
                        const char *status_message) {
  pipeline_t *p = ud;
  call_ended(p, rc, status_message);
  retrieve_done(p, p->t_call, rc, resp);
  advance(p);
  q_trace_clear();
}

static bool retrieve_start(pipeline_t *p) {
  p->t_call = q_now_s();
  int timeout = budget(p, 1);
  if (!timeout) {
    fail_deadline(p, "retrieval");
    return false;
  }
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = p->principal.tenant_id;
  req.query = (char *)p->query;
  req.query_embedding = p->emb;
  req.n_query_embedding = p->nemb;
  req.top_k = PIPELINE_RETRIEVE_TOP_K;
  req.mode = (char *)p->mode;
  req.filter = (char *)p->filter;
  if (p->embed_model)
    req.embed_model = (char *)p->embed_model;
  q_grpc_call_opts_t opts = call_opts(p, timeout, true);
  pthread_mutex_lock(&p->call_mu);
  q_err_t rc = q_rpc_retriever_search_async(q_grpc_channel(p->cfg->retriever_addr), &req,
                                            p->arena, &opts, retrieve_cb, p, &p->call);
  call_started_locked(p, rc);
  pthread_mutex_unlock(&p->call_mu);
  if (rc == 0)
    return true;
  call_not_started(p, rc);
  retrieve_done(p, p->t_call, rc, NULL);
  return false;
}

/* ---- rerank --------------------------------------------------------------- */

static void rerank_done(pipeline_t *p, double t, q_err_t rc,
                        Quarry__V1__RerankResponse *resp) {
  size_t k = (size_t)p->top_k;
  if (rc == 0 && (!resp || resp->n_passages == 0)) {
    rc = Q_EINTERNAL;
    snprintf(p->err, sizeof p->err, "reply holds no passages");
  }
  for (size_t i = 0; rc == 0 && i < resp->n_passages; i++)
    if (!resp->passages[i]) {
      rc = Q_EINTERNAL;
      snprintf(p->err, sizeof p->err, "reply holds an empty passage");
    }
  if (rc) {
    degrade(p, "rerank", "reranker", rc, "rerank failed: keeping retriever order");
    p->sent = p->cand;
    p->nsent = p->ncand < k ? p->ncand : k;
  } else {
    p->sent = resp->passages;
    p->nsent = resp->n_passages < k ? resp->n_passages : k;
    /* In the reply's arena, as the passages are. */
    p->rerank_method = resp->method && resp->method[0] ? resp->method : "unknown";
  }
  p->ms_rerank = ms_since(t);
  progress(p, p->sink->retrieval(p->sink, p->query_id, p->sent, p->nsent));
  p->stage = ST_GENERATE;
}

static void rerank_cb(void *ud, q_err_t rc, Quarry__V1__RerankResponse *resp,
                      const char *status_message) {
  pipeline_t *p = ud;
  call_ended(p, rc, status_message);
  rerank_done(p, p->t_call, rc, resp);
  advance(p);
  q_trace_clear();
}

static bool rerank_start(pipeline_t *p) {
  p->t_call = q_now_s();
  if (depwatch_rerank_is_none()) {
    /* The reranker ranks with `none` (depwatch.h): its reply would be the
     * first top_k candidates in retrieval order with their scores, so the
     * call is skipped and the reply still names the method that ordered
     * them. */
    p->sent = p->cand;
    p->nsent = p->ncand < (size_t)p->top_k ? p->ncand : (size_t)p->top_k;
    p->rerank_method = "none";
    p->ms_rerank = ms_since(p->t_call);
    progress(p, p->sink->retrieval(p->sink, p->query_id, p->sent, p->nsent));
    p->stage = ST_GENERATE;
    return false;
  }
  int timeout = budget(p, RERANK_SHARE);
  if (!timeout) {
    snprintf(p->err, sizeof p->err, "no time left");
    rerank_done(p, p->t_call, Q_ETIMEDOUT, NULL);
    return false;
  }
  Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
  req.query = (char *)p->query;
  req.passages = p->cand;
  req.n_passages = p->ncand;
  req.top_n = p->top_k;
  q_grpc_call_opts_t opts = call_opts(p, timeout, true);
  pthread_mutex_lock(&p->call_mu);
  q_err_t rc = q_rpc_reranker_rerank_async(q_grpc_channel(p->cfg->reranker_addr), &req,
                                           p->arena, &opts, rerank_cb, p, &p->call);
  call_started_locked(p, rc);
  pthread_mutex_unlock(&p->call_mu);
  if (rc == 0)
    return true;
  call_not_started(p, rc);
  rerank_done(p, p->t_call, rc, NULL);
  return false;
}

/* ---- generate (streamed) -------------------------------------------------- */

/* A name the llm-gateway sent (provider, model, prompt version), copied into
 * the arena and cut to Q_LIMIT_MODEL_BYTES; "" for none or out of memory. */
static const char *arena_name(pipeline_t *p, const char *s) {
  if (!s)
    return "";
  const char *c =
      q_arena_strndup(p->arena, s, q_text_cut(s, strlen(s), Q_LIMIT_MODEL_BYTES));
  return c ? c : "";
}

/* One streamed message: its text joins the answer (until the answer is
 * full: then the rest is dropped, but the stream is read to its end for
 * the status) and goes to the sink checked. */
static void generate_piece(pipeline_t *p, const Quarry__V1__GenerateResponse *msg) {
  /* The passages the prompt left out may not be cited: known with the
   * first piece, so no marker of theirs is streamed on (the check of the
   * pieces and the final check agree), and again in the last message. */
  if (msg->passages_dropped > 0 && (size_t)msg->passages_dropped <= p->ngenerate) {
    size_t seen = p->ngenerate - (size_t)msg->passages_dropped;
    if (seen < p->nsent)
      p->nsent = seen;
    if (seen < p->stream.npassages)
      p->stream.npassages = seen;
  }
  if (msg->done) {
    /* Usage as the provider counted it; the passages it could not fit in
     * its prompt may not be cited; the built-in answer is a degradation. */
    if (msg->usage) {
      p->usage = *msg->usage;
      p->has_usage = true;
    }
    if (msg->fallback && p->ndegraded < MAX_DEGRADED)
      p->degraded[p->ndegraded++] = "generate";
    p->gen_provider = arena_name(p, msg->provider);
    p->gen_model = arena_name(p, msg->model);
    p->gen_prompt_version = arena_name(p, msg->prompt_version);
    p->gen_fallback = msg->fallback;
  }
  if (!msg->text || !msg->text[0] || p->truncated)
    return;
  size_t len = strlen(msg->text);
  if (q_buf_append(&p->answer, msg->text, len) != 0) {
    p->truncated = true;
    return;
  }
  stream_piece(p, msg->text, len, false);
}

static void generate_done(pipeline_t *p, double t, q_err_t rc) {
  p->ms_generate = ms_since(t);
  if (atomic_load(&p->cancelled))
    return; /* the driver ends the run */
  if (rc) {
    fail_downstream(p, "llm-gateway", rc, p->err);
    return;
  }
  stream_piece(p, "", 0, true);
  if (p->truncated) {
    q_log_warn("answer truncated", "{s:s,s:i}", "query_id", p->query_id, "max_bytes",
               Q_LIMIT_ANSWER_BYTES);
    if (p->ndegraded < MAX_DEGRADED)
      p->degraded[p->ndegraded++] = "answer_truncated";
  }
  p->stage = ST_CITE;
}

/* One streamed message (on the loop thread). Returns false to pause the
 * stream while the sink's reader is behind (pipeline_req_t.sink_full):
 * the llm-gateway is then held back by HTTP/2 flow control until
 * pipeline_resume. */
static bool generate_msg_cb(void *ud, Quarry__V1__GenerateResponse *msg) {
  pipeline_t *p = ud;
  q_trace_set(p->trace_id, p->deadline_ms);
  generate_piece(p, msg);
  bool more = true;
  pthread_mutex_lock(&p->call_mu);
  p->paused = false; /* a message came: any pause before this one is over */
  if (p->sink_full && !atomic_load(&p->cancelled) && p->sink_full(p->flow_ud)) {
    p->paused = true;
    more = false;
  }
  pthread_mutex_unlock(&p->call_mu);
  if (!more)
    q_metrics_inc(paused_metric(), NULL);
  q_trace_clear();
  return more;
}

static void generate_done_cb(void *ud, q_err_t rc, const char *status_message) {
  pipeline_t *p = ud;
  call_ended(p, rc, status_message);
  generate_done(p, p->t_call, rc);
  advance(p);
  q_trace_clear();
}

static bool generate_start(pipeline_t *p) {
  p->t_call = q_now_s();
  int timeout = budget(p, 1);
  if (!timeout) {
    fail_deadline(p, "generation");
    return false;
  }
  /* From here the run waits on the model: admission may let another
   * query of the tenant into its CPU stages (which may start on this
   * thread now, before the call below). */
  if (p->generating) {
    void (*generating)(void *) = p->generating;
    p->generating = NULL;
    generating(p->generating_ud);
  }
  Quarry__V1__GenerateRequest req = QUARRY__V1__GENERATE_REQUEST__INIT;
  req.query = (char *)p->query;
  req.passages = p->sent;
  req.n_passages = p->nsent;
  p->ngenerate = p->nsent;
  q_grpc_call_opts_t opts = call_opts(p, timeout, false);
  citations_stream_init(&p->stream, p->nsent);

  pthread_mutex_lock(&p->call_mu);
  q_err_t rc = q_rpc_llm_gateway_generate_async_start(
      q_grpc_channel(p->cfg->llm_addr), &req, p->arena, &opts, generate_msg_cb,
      generate_done_cb, p, &p->call);
  call_started_locked(p, rc);
  pthread_mutex_unlock(&p->call_mu);
  if (rc == 0)
    return true;
  fail(p, Q_EINTERNAL, 0, "cannot start llm-gateway Generate call");
  return false;
}

/* ---- cite: [n] markers ------------------------------------------------------ */

static bool cite_start(pipeline_t *p) {
  if (p->nsent > 0) {
    size_t alen = p->answer.len;
    char *checked = q_arena_alloc(p->arena, alen + 1);
    if (!checked) {
      fail(p, Q_ENOMEM, 0, "out of memory");
      return false;
    }
    p->checked_len = citations_extract(p->answer.data ? p->answer.data : "", alen,
                                       p->nsent, &p->cites, checked, alen + 1);
    p->checked = checked;
    citations_count_invalid(p->cites.ninvalid);
    if (p->cites.ninvalid) {
      q_log_warn("answer cited passages that were not sent: markers removed",
                 "{s:s,s:i,s:i}", "query_id", p->query_id, "invalid",
                 (int)p->cites.ninvalid, "passages", (int)p->nsent);
      if (p->ndegraded < MAX_DEGRADED)
        p->degraded[p->ndegraded++] = "citations";
    }
  }
  size_t nc = p->cites.ncited;
  p->citations = q_arena_alloc(p->arena, (nc + 1) * sizeof *p->citations);
  p->chunk_ids = q_arena_alloc(p->arena, (nc + 1) * sizeof *p->chunk_ids);
  if (!p->citations || !p->chunk_ids) {
    fail(p, Q_ENOMEM, 0, "out of memory");
    return false;
  }
  for (size_t i = 0; i < nc; i++) {
    const Quarry__V1__Passage *ps = p->sent[p->cites.cited[i] - 1];
    sink_citation_t *c = &p->citations[i];
    *c = (sink_citation_t){.n = p->cites.cited[i], .passage = ps};
    citations_locate(p->checked, p->checked_len, c->n, ps->text ? ps->text : "",
                     ps->text ? strlen(ps->text) : 0, Q_LIMIT_SNIPPET_BYTES,
                     &c->snippet_start, &c->snippet_end);
    p->chunk_ids[i] = ps->chunk_id ? ps->chunk_id : "";
    if (!atomic_load(&p->cancelled))
      progress(p, p->sink->citation(p->sink, c));
  }
  p->stage = ST_RECORD;
  return false;
}

/* ---- record: the query event ---------------------------------------------- */

/* text[0..n) with every byte that is not UTF-8 replaced by U+FFFD (as the
 * client sees it: http_json_text repairs the same way), in the arena. */
static char *utf8_repaired(q_arena_t *a, const char *text, size_t n) {
  if (q_valid_utf8(text, n))
    return q_arena_strndup(a, text, n);
  char *out = q_arena_alloc(a, 3 * n + 1);
  size_t o = 0;
  for (size_t i = 0; out && i < n;) {
    size_t l = q_valid_utf8_seq(text + i, n - i);
    if (l) {
      memcpy(out + o, text + i, l);
      o += l;
      i += l;
    } else {
      memcpy(out + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    }
  }
  if (out)
    out[o] = '\0';
  return out;
}

static void record_done(pipeline_t *p, double t, q_err_t rc) {
  gw_observe_stage("record_query", q_now_s() - t);
  if (rc)
    degrade(p, "record_query", "feedback", rc, "query event not recorded");
  p->stage = ST_END;
}

static void record_cb(void *ud, q_err_t rc, Quarry__V1__QueryEventResponse *resp,
                      const char *status_message) {
  pipeline_t *p = ud;
  (void)resp;
  call_ended(p, rc, status_message);
  record_done(p, p->t_call, rc);
  advance(p);
  q_trace_clear();
}

static bool record_start(pipeline_t *p) {
  double t = p->t_call = q_now_s();
  int timeout = budget(p, 1);
  if (timeout > RECORD_TIMEOUT_MS)
    timeout = RECORD_TIMEOUT_MS;
  if (!timeout) {
    snprintf(p->err, sizeof p->err, "no time left");
    record_done(p, t, Q_ETIMEDOUT);
    return false;
  }
  const char *answer = utf8_repaired(p->arena, p->checked, p->checked_len);
  if (!answer) {
    snprintf(p->err, sizeof p->err, "out of memory");
    record_done(p, t, Q_ENOMEM);
    return false;
  }
  Quarry__V1__QueryEvent ev = QUARRY__V1__QUERY_EVENT__INIT;
  ev.query_id = p->query_id;
  ev.tenant_id = p->principal.tenant_id;
  ev.user_id = p->principal.user_id;
  ev.query = (char *)p->query;
  ev.chunk_ids = p->chunk_ids;
  ev.n_chunk_ids = p->cites.ncited;
  ev.latency_ms = (int64_t)ms_since(p->t0);
  /* The event carries the answer as the client sees it, cut to what the
   * feedback service accepts. */
  ev.answer = q_arena_strndup(
      p->arena, answer, q_text_cut(answer, strlen(answer), Q_LIMIT_EVENT_ANSWER_BYTES));
  ev.ts_unix_ms = q_wall_ms();
  q_grpc_call_opts_t opts = call_opts(p, timeout, false);
  pthread_mutex_lock(&p->call_mu);
  q_err_t rc =
      q_rpc_feedback_record_query_async(q_grpc_channel(p->cfg->feedback_addr), &ev,
                                        p->arena, &opts, record_cb, p, &p->call);
  call_started_locked(p, rc);
  pthread_mutex_unlock(&p->call_mu);
  if (rc == 0)
    return true;
  call_not_started(p, rc);
  record_done(p, t, rc);
  return false;
}

/* ---- the end ---------------------------------------------------------------- */

static void finish(pipeline_t *p) {
  double total = ms_since(p->t0);
  gw_observe_stage("auth", p->auth_ms / 1000.0);
  gw_observe_stage("embed", p->ms_embed / 1000.0);
  gw_observe_stage("retrieve", p->ms_retrieve / 1000.0);
  if (p->nsent) {
    gw_observe_stage("rerank", p->ms_rerank / 1000.0);
    gw_observe_stage("generate", p->ms_generate / 1000.0);
  }
  gw_observe_stage("total", total / 1000.0);
  q_log_info("query answered", "{s:s,s:s,s:i,s:i,s:i,s:I}", "query_id", p->query_id,
             "tenant_id", p->principal.tenant_id, "candidates", (int)p->ncand, "passages",
             (int)p->nsent, "cited", (int)p->cites.ncited, "ms",
             (json_int_t)(total + 0.5));
  count_outcome(p->ndegraded ? "degraded" : "ok");
  sink_summary_t s = {
      .query_id = p->query_id,
      .answer = p->checked,
      .answer_len = p->checked_len,
      .citations = p->citations,
      .ncitations = p->cites.ncited,
      .timings_ms = {.auth = p->auth_ms,
                     .embed = p->ms_embed,
                     .retrieve = p->ms_retrieve,
                     .rerank = p->ms_rerank,
                     .generate = p->ms_generate,
                     .total = total},
      .degraded = p->degraded,
      .ndegraded = p->ndegraded,
      .cache_hit = false,
      .rerank_method = p->rerank_method,
      .has_usage = p->has_usage,
      .prompt_tokens = p->usage.prompt_tokens,
      .completion_tokens = p->usage.completion_tokens,
      .cost = p->usage.cost,
      .provider = p->gen_provider,
      .model = p->gen_model,
      .prompt_version = p->gen_prompt_version,
      .fallback = p->gen_fallback,
  };
  p->sink->done(p->sink, &s);
}

/* ---- driver ------------------------------------------------------------------ */

/* What each stage starts: true when a call is in flight (its final
 * callback runs the stage's _done and advance), false when the stage has
 * set p->stage itself. */
typedef bool (*stage_fn)(pipeline_t *p);

static const stage_fn stages[ST_END] = {
    [ST_ADMIT] = admit_start,   [ST_CACHE] = cache_start,
    [ST_EMBED] = embed_start,   [ST_RETRIEVE] = retrieve_start,
    [ST_RERANK] = rerank_start, [ST_GENERATE] = generate_start,
    [ST_CITE] = cite_start,     [ST_RECORD] = record_start,
};

/* Runs stages until one has a call in flight, or the run is over: then
 * the sink gets done (unless it had an error) and the owner hears of the
 * end. p must not be touched after this returns: the call in flight may
 * already have ended it on a loop thread, or on_end freed it. */
static void advance(pipeline_t *p) {
  for (;;) {
    if (p->stage != ST_END && atomic_load(&p->cancelled))
      fail(p, Q_ECANCELLED, 0, "query cancelled: the client went away");
    if (p->stage == ST_END)
      break;
    if (stages[p->stage](p))
      return;
  }
  if (!p->failed)
    finish(p);
  p->on_end(p->end_ud);
}

void pipeline_start(pipeline_t *p, pipeline_end_fn on_end, void *ud) {
  p->on_end = on_end;
  p->end_ud = ud;
  advance(p);
}

/* pipeline_run's wait for the end. */
typedef struct run_wait {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool ended;
} run_wait_t;

static void run_ended_cb(void *ud) {
  run_wait_t *w = ud;
  pthread_mutex_lock(&w->mu);
  w->ended = true;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

void pipeline_run(pipeline_t *p) {
  run_wait_t w = {.ended = false};
  pthread_mutex_init(&w.mu, NULL);
  pthread_cond_init(&w.cv, NULL);
  pipeline_start(p, run_ended_cb, &w);
  pthread_mutex_lock(&w.mu);
  while (!w.ended)
    pthread_cond_wait(&w.cv, &w.mu);
  pthread_mutex_unlock(&w.mu);
  pthread_cond_destroy(&w.cv);
  pthread_mutex_destroy(&w.mu);
}

/* Whichever call is in flight is cancelled through the adapter, whose
 * q_grpc_async_cancel is thread-safe; call_mu orders this before the
 * final callback drops the handle. The run stops at its next stage
 * boundary, which the cancelled call's callback reaches promptly. */
void pipeline_cancel(pipeline_t *p) {
  if (!p)
    return;
  atomic_store(&p->cancelled, true);
  pthread_mutex_lock(&p->call_mu);
  if (p->call)
    q_grpc_async_cancel(p->call);
  pthread_mutex_unlock(&p->call_mu);
}

void pipeline_resume(pipeline_t *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->call_mu);
  if (p->paused && p->call)
    q_grpc_stream_async_resume(p->call);
  pthread_mutex_unlock(&p->call_mu);
}

const char *pipeline_query_id(const pipeline_t *p) {
  return p->query_id;
}

pipeline_t *pipeline_new(const pipeline_req_t *req, sink_t *sink) {
  q_arena_t *arena = q_arena_new(ARENA_MAX);
  pipeline_t *p = arena ? q_arena_alloc(arena, sizeof *p) : NULL;
  if (!p) {
    q_arena_free(arena);
    return NULL;
  }
  memset(p, 0, sizeof *p);
  p->arena = arena;
  p->sink = sink;
  p->cfg = req->cfg;
  if (req->principal) {
    p->principal = *req->principal;
    p->has_principal = true;
  }
  p->auth_ms = req->auth_ms;
  p->rate_limited = req->rate_limited;
  p->t0 = req->t0;
  p->query = q_arena_strdup(arena, req->query);
  p->top_k = req->top_k;
  p->rerank_method = "none";
  p->mode = q_arena_strdup(arena, req->mode ? req->mode : "");
  p->filter = q_arena_strdup(arena, req->filter ? req->filter : "");
  snprintf(p->trace_id, sizeof p->trace_id, "%s", req->trace_id ? req->trace_id : "");
  p->deadline_ms = req->deadline_ms;
  p->sink_full = req->sink_full;
  p->flow_ud = req->flow_ud;
  p->generating = req->generating;
  p->generating_ud = req->generating_ud;
  q_uuid4(p->query_id);
  p->stage = ST_ADMIT;
  atomic_init(&p->cancelled, false);
  pthread_mutex_init(&p->call_mu, NULL);
  q_buf_init(&p->answer, Q_LIMIT_ANSWER_BYTES);
  if (!p->query || !p->mode || !p->filter) {
    pipeline_free(p);
    return NULL;
  }
  return p;
}

void pipeline_free(pipeline_t *p) {
  if (!p)
    return;
  q_buf_cleanup(&p->answer);
  pthread_mutex_destroy(&p->call_mu);
  q_arena_free(p->arena);
}
