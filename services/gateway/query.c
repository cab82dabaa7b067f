/* query.c - POST /v1/query: the retrieval-augmented answer pipeline.
 *
 *   llm.Embed(query)          failure: lexical retrieval only ("embed")
 *   retriever.Search(top 50)  failure: the query fails (503/504)
 *   reranker.Rerank(top_k)    failure: retriever order kept ("rerank")
 *   llm.Generate (streamed)   failure: the query fails
 *   [n] markers checked       invalid ones removed ("citations")
 *   feedback.RecordQuery      failure: answer still returned ("record_query")
 *
 * The words in parentheses are what the reply's "degraded" list says when a
 * stage fell back. The whole pipeline runs under the request's deadline
 * (QUARRY_QUERY_TIMEOUT_MS, installed in the thread's trace context so every
 * downstream call inherits it). The optional stages get only a share of the
 * time left, so a hung embedder or reranker degrades the answer instead of
 * using up the time generation needs. */
#include <jansson.h>
#include <limits.h>
#include <string.h>

#include "quarry/v1/feedback.pb-c.h"
#include "quarry/v1/llm.pb-c.h"
#include "quarry/v1/reranker.pb-c.h"
#include "quarry/v1/retriever.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/stubs.h"
#include "quarry/text.h"
#include "quarry/util.h"
#include "quarry/validate.h"

#include "citations.h"
#include "handlers.h"
#include "http_util.h"

#define TOP_K_DEFAULT 8
#define RETRIEVE_TOP_K 50     /* candidates handed to the reranker */
#define RECORD_TIMEOUT_MS 500 /* RecordQuery is bookkeeping: keep it short */
#define EMBED_SHARE 0.4       /* of the time left, at most */
#define RERANK_SHARE 0.5

_Static_assert(RETRIEVE_TOP_K <= Q_LIMIT_RERANK_PASSAGES, "the reranker takes them all");
_Static_assert(TOP_K_DEFAULT <= Q_LIMIT_TOP_K_MAX, "the default top_k is allowed");

typedef struct pipeline {
  gw_req_t *r;
  const char *query;
  int top_k;
  char query_id[37];
  json_t *degraded;
  double ms_embed, ms_retrieve, ms_rerank, ms_generate;
  char err[512];
} pipeline_t;

static double ms_since(double t) {
  return (q_now_s() - t) * 1000.0;
}

/* A timeout for the next call: share of the time left (share 1: all of
 * it), at least 1 ms; 0 when the deadline has passed. */
static int budget(const gw_req_t *r, double share) {
  int64_t left = gw_ms_left(r);
  if (left <= 0)
    return 0;
  double b = (double)left * share;
  if (b < 1)
    b = 1;
  return b > INT_MAX ? INT_MAX : (int)b;
}

/* An optional stage fell back after its call to service failed with rc
 * (detail in p->err): logs what (naming the service and the error) and
 * lists the stage in the reply's "degraded". */
static void degrade(pipeline_t *p, const char *stage, const char *service, int rc,
                    const char *what) {
  char msg[768];
  http_downstream_msg(msg, sizeof msg, service, rc, p->err);
  q_log_warn(what, "{s:s,s:s}", "query_id", p->query_id, "error", msg);
  json_array_append_new(p->degraded, json_string(stage));
}

static void reply_deadline(pipeline_t *p, const char *stage) {
  http_reply_error(p->r, Q_ETIMEDOUT, "query deadline of %lld ms exceeded before %s",
                   (long long)p->r->cfg->query_timeout_ms, stage);
}

/* Embeds the query; on failure leaves *values NULL and notes the
 * degradation. */
static void embed(pipeline_t *p, float **values, size_t *n) {
  gw_req_t *r = p->r;
  double t = q_now_s();
  *values = NULL;
  *n = 0;
  int timeout = budget(r, EMBED_SHARE);
  if (!timeout)
    return;
  Quarry__V1__EmbedRequest req = QUARRY__V1__EMBED_REQUEST__INIT;
  char *texts[1] = {(char *)p->query};
  req.n_texts = 1;
  req.texts = texts;
  Quarry__V1__EmbedResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = timeout, .idempotent = 1};
  int rc = q_rpc_llm_gateway_embed(q_grpc_channel(r->cfg->llm_addr), &req, &resp,
                                   r->arena, &opts, p->err, sizeof p->err);
  if (rc == 0 && (!resp || resp->n_embeddings != 1 || !resp->embeddings[0] ||
                  resp->embeddings[0]->n_values == 0)) {
    rc = Q_EINTERNAL;
    snprintf(p->err, sizeof p->err, "reply holds no embedding for the query");
  }
  if (rc) {
    degrade(p, "embed", "llm-gateway", rc, "embedding failed: retrieving lexically only");
  } else {
    *values = resp->embeddings[0]->values;
    *n = resp->embeddings[0]->n_values;
  }
  p->ms_embed = ms_since(t);
}

/* Searches the principal's tenant. 0 with the candidates, or replied. */
static q_err_t retrieve(pipeline_t *p, float *emb, size_t nemb,
                        Quarry__V1__SearchResponse **out) {
  gw_req_t *r = p->r;
  double t = q_now_s();
  int timeout = budget(r, 1);
  if (!timeout) {
    reply_deadline(p, "retrieval");
    return Q_ETIMEDOUT;
  }
  Quarry__V1__SearchRequest req = QUARRY__V1__SEARCH_REQUEST__INIT;
  req.tenant_id = r->principal.tenant_id;
  req.query = (char *)p->query;
  req.query_embedding = emb;
  req.n_query_embedding = nemb;
  req.top_k = RETRIEVE_TOP_K;
  q_grpc_call_opts_t opts = {.timeout_ms = timeout, .idempotent = 1};
  int rc = q_rpc_retriever_search(q_grpc_channel(r->cfg->retriever_addr), &req, out,
                                  r->arena, &opts, p->err, sizeof p->err);
  p->ms_retrieve = ms_since(t);
  if (rc) {
    http_reply_downstream(r, "retriever", rc, p->err);
    return rc;
  }
  if (!*out) {
    http_reply_downstream(r, "retriever", Q_EINTERNAL, "empty reply");
    return Q_EINTERNAL;
  }
  return 0;
}

/* Reorders the candidates; on failure keeps the retriever's order. The
 * passages to generate from end up in *sent[0..*nsent). */
static void rerank(pipeline_t *p, Quarry__V1__Passage **cand, size_t ncand,
                   Quarry__V1__Passage ***sent, size_t *nsent) {
  gw_req_t *r = p->r;
  double t = q_now_s();
  size_t k = (size_t)p->top_k;
  int rc;
  int timeout = budget(r, RERANK_SHARE);
  Quarry__V1__RerankResponse *resp = NULL;
  if (!timeout) {
    rc = Q_ETIMEDOUT;
    snprintf(p->err, sizeof p->err, "no time left");
  } else {
    Quarry__V1__RerankRequest req = QUARRY__V1__RERANK_REQUEST__INIT;
    req.query = (char *)p->query;
    req.passages = cand;
    req.n_passages = ncand;
    req.top_n = p->top_k;
    q_grpc_call_opts_t opts = {.timeout_ms = timeout, .idempotent = 1};
    rc = q_rpc_reranker_rerank(q_grpc_channel(r->cfg->reranker_addr), &req, &resp,
                               r->arena, &opts, p->err, sizeof p->err);
    if (rc == 0 && (!resp || resp->n_passages == 0)) {
      rc = Q_EINTERNAL;
      snprintf(p->err, sizeof p->err, "reply holds no passages");
    }
    for (size_t i = 0; rc == 0 && i < resp->n_passages; i++)
      if (!resp->passages[i]) {
        rc = Q_EINTERNAL;
        snprintf(p->err, sizeof p->err, "reply holds an empty passage");
      }
  }
  if (rc) {
    degrade(p, "rerank", "reranker", rc, "rerank failed: keeping retriever order");
    *sent = cand;
    *nsent = ncand < k ? ncand : k;
  } else {
    *sent = resp->passages;
    *nsent = resp->n_passages < k ? resp->n_passages : k;
  }
  p->ms_rerank = ms_since(t);
}

/* Streams the answer into *answer (arena). 0, or replied. */
static q_err_t generate(pipeline_t *p, Quarry__V1__Passage **sent, size_t nsent,
                        char **answer, size_t *len) {
  gw_req_t *r = p->r;
  double t = q_now_s();
  int timeout = budget(r, 1);
  if (!timeout) {
    reply_deadline(p, "generation");
    return Q_ETIMEDOUT;
  }
  Quarry__V1__GenerateRequest req = QUARRY__V1__GENERATE_REQUEST__INIT;
  req.query = (char *)p->query;
  req.passages = sent;
  req.n_passages = nsent;
  q_grpc_call_opts_t opts = {.timeout_ms = timeout};
  q_rpc_llm_gateway_generate_call_t *call =
      q_rpc_llm_gateway_generate_start(q_grpc_channel(r->cfg->llm_addr), &opts);
  if (!call) {
    http_reply_error(r, Q_EINTERNAL, "cannot start llm-gateway Generate call");
    return Q_EINTERNAL;
  }
  q_buf_t buf;
  q_buf_init(&buf, Q_LIMIT_ANSWER_BYTES);
  int truncated = 0;
  int rc = q_rpc_llm_gateway_generate_send(call, &req);
  if (rc == 0)
    rc = q_rpc_llm_gateway_generate_close_send(call);
  while (rc == 0) {
    Quarry__V1__GenerateResponse *msg = NULL;
    rc = q_rpc_llm_gateway_generate_recv(call, r->arena, &msg);
    if (rc || !msg)
      break;
    if (msg->text && msg->text[0] && !truncated && q_buf_puts(&buf, msg->text) != 0)
      truncated = 1; /* keep reading: the status comes after the stream */
  }
  int frc = q_rpc_llm_gateway_generate_finish(call, p->err, sizeof p->err);
  p->ms_generate = ms_since(t);
  if (frc || rc) {
    q_buf_cleanup(&buf);
    http_reply_downstream(r, "llm-gateway", frc ? frc : rc, p->err);
    return frc ? frc : rc;
  }
  if (truncated) {
    q_log_warn("answer truncated", "{s:s,s:i}", "query_id", p->query_id, "max_bytes",
               Q_LIMIT_ANSWER_BYTES);
    json_array_append_new(p->degraded, json_string("answer_truncated"));
  }
  *len = buf.len;
  *answer = q_arena_strndup(r->arena, buf.data ? buf.data : "", buf.len);
  q_buf_cleanup(&buf);
  if (!*answer) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return Q_ENOMEM;
  }
  return 0;
}

/* Publishes the query event; failure only degrades the reply. */
static void record(pipeline_t *p, const char *answer, char **chunk_ids, size_t nchunks) {
  gw_req_t *r = p->r;
  double t = q_now_s();
  int timeout = budget(r, 1);
  int rc;
  if (timeout > RECORD_TIMEOUT_MS)
    timeout = RECORD_TIMEOUT_MS;
  if (!timeout) {
    rc = Q_ETIMEDOUT;
    snprintf(p->err, sizeof p->err, "no time left");
  } else {
    Quarry__V1__QueryEvent ev = QUARRY__V1__QUERY_EVENT__INIT;
    ev.query_id = p->query_id;
    ev.tenant_id = r->principal.tenant_id;
    ev.user_id = r->principal.user_id;
    ev.query = (char *)p->query;
    ev.chunk_ids = chunk_ids;
    ev.n_chunk_ids = nchunks;
    ev.latency_ms = (int64_t)ms_since(r->t0);
    /* The event carries the answer as the client sees it (valid UTF-8),
     * cut to what the feedback service accepts. */
    size_t alen = strlen(answer);
    ev.answer = q_arena_strndup(r->arena, answer,
                                q_text_cut(answer, alen, Q_LIMIT_EVENT_ANSWER_BYTES));
    ev.ts_unix_ms = q_wall_ms();
    Quarry__V1__QueryEventResponse *resp = NULL;
    q_grpc_call_opts_t opts = {.timeout_ms = timeout};
    rc = q_rpc_feedback_record_query(q_grpc_channel(r->cfg->feedback_addr), &ev, &resp,
                                     r->arena, &opts, p->err, sizeof p->err);
  }
  gw_observe_stage("record_query", q_now_s() - t);
  if (rc)
    degrade(p, "record_query", "feedback", rc, "query event not recorded");
}

static json_t *text_json(const char *s) {
  return http_json_text(s ? s : "", s ? strlen(s) : 0);
}

static json_t *citation_json(unsigned n, const Quarry__V1__Passage *ps) {
  const char *text = ps->text ? ps->text : "";
  size_t sl = q_text_cut(text, strlen(text), Q_LIMIT_SNIPPET_BYTES);
  return json_pack("{s:i,s:o,s:o,s:o,s:o,s:f,s:i}", "n", (int)n, "document_id",
                   text_json(ps->doc_id), "title", text_json(ps->title), "chunk_id",
                   text_json(ps->chunk_id), "snippet", http_json_text(text, sl), "score",
                   (double)ps->score, "page", (int)ps->page);
}

static double round3(double ms) {
  return (double)(int64_t)(ms * 1000.0 + 0.5) / 1000.0;
}

static void run(pipeline_t *p) {
  gw_req_t *r = p->r;

  float *emb;
  size_t nemb;
  embed(p, &emb, &nemb);

  Quarry__V1__SearchResponse *found = NULL;
  if (retrieve(p, emb, nemb, &found))
    return;
  for (size_t i = 0; i < found->n_passages; i++)
    if (!found->passages[i]) {
      http_reply_downstream(r, "retriever", Q_EINTERNAL, "reply holds an empty passage");
      return;
    }

  Quarry__V1__Passage **sent = NULL;
  size_t nsent = 0;
  char *answer = NULL;
  size_t alen = 0;
  citations_t cites;
  memset(&cites, 0, sizeof cites);
  if (found->n_passages > 0) {
    rerank(p, found->passages, found->n_passages, &sent, &nsent);
    if (generate(p, sent, nsent, &answer, &alen))
      return;
    char *checked = q_arena_alloc(r->arena, alen + 1);
    if (!checked) {
      http_reply_error(r, Q_ENOMEM, "out of memory");
      return;
    }
    alen = citations_extract(answer, alen, nsent, &cites, checked, alen + 1);
    answer = checked;
    if (cites.ninvalid) {
      q_log_warn("answer cited passages that were not sent: markers removed",
                 "{s:s,s:i,s:i}", "query_id", p->query_id, "invalid", (int)cites.ninvalid,
                 "passages", (int)nsent);
      json_array_append_new(p->degraded, json_string("citations"));
    }
  } else {
    /* Nothing in the tenant's index matches: answering would mean
     * answering without sources, which a grounded system must not do. */
    answer = "No indexed passage matches this query.";
    alen = strlen(answer);
  }

  json_t *citations = json_array();
  char **chunk_ids = q_arena_alloc(r->arena, (cites.ncited + 1) * sizeof *chunk_ids);
  if (!citations || !chunk_ids) {
    json_decref(citations);
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < cites.ncited; i++) {
    const Quarry__V1__Passage *ps = sent[cites.cited[i] - 1];
    json_array_append_new(citations, citation_json(cites.cited[i], ps));
    chunk_ids[i] = ps->chunk_id ? ps->chunk_id : "";
  }

  json_t *answer_json = http_json_text(answer, alen);
  if (!answer_json) {
    json_decref(citations);
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  record(p, json_string_value(answer_json), chunk_ids, cites.ncited);

  double total = ms_since(r->t0);
  gw_observe_stage("auth", r->auth_ms / 1000.0);
  gw_observe_stage("embed", p->ms_embed / 1000.0);
  gw_observe_stage("retrieve", p->ms_retrieve / 1000.0);
  if (nsent) {
    gw_observe_stage("rerank", p->ms_rerank / 1000.0);
    gw_observe_stage("generate", p->ms_generate / 1000.0);
  }
  gw_observe_stage("total", total / 1000.0);

  json_t *timings = json_pack("{s:f,s:f,s:f,s:f,s:f,s:f}", "auth", round3(r->auth_ms),
                              "embed", round3(p->ms_embed), "retrieve",
                              round3(p->ms_retrieve), "rerank", round3(p->ms_rerank),
                              "generate", round3(p->ms_generate), "total", round3(total));
  json_t *body = json_pack("{s:s,s:o,s:o,s:o,s:b,s:O}", "query_id", p->query_id, "answer",
                           answer_json, "citations", citations, "timings_ms", timings,
                           "cache_hit", 0, "degraded", p->degraded);
  if (!body) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  q_log_info("query answered", "{s:s,s:s,s:i,s:i,s:i,s:I}", "query_id", p->query_id,
             "tenant_id", r->principal.tenant_id, "candidates", (int)found->n_passages,
             "passages", (int)nsent, "cited", (int)cites.ncited, "ms",
             (json_int_t)(total + 0.5));
  http_reply_json(r, 200, body);
}

static const char *outcome(const gw_req_t *r, const json_t *degraded) {
  if (r->status >= 500 || !r->responded)
    return "failed";
  if (r->status >= 400)
    return "rejected";
  return json_array_size(degraded) ? "degraded" : "ok";
}

void query_post(gw_req_t *r) {
  static const char *const keys[] = {"query", "top_k", NULL};
  pipeline_t p;
  memset(&p, 0, sizeof p);
  p.r = r;
  p.degraded = json_array();
  q_uuid4(p.query_id);

  json_t *body = NULL;
  const char *query;
  json_int_t top_k;
  if (http_parse_json_object(r, &body) || http_json_only_keys(r, body, keys) ||
      http_json_string(r, body, "query", 1, 1, Q_LIMIT_QUERY_BYTES, &query) ||
      http_json_int(r, body, "top_k", 0, TOP_K_DEFAULT, 1, Q_LIMIT_TOP_K_MAX, &top_k))
    goto done;
  if (q_is_blank(query, strlen(query))) {
    http_reply_error(r, Q_EINVAL, "field \"query\" must not be blank");
    goto done;
  }
  p.query = query;
  p.top_k = (int)top_k;
  run(&p);

done:
  if (!r->responded)
    http_reply_error(r, Q_EINTERNAL, "query produced no reply");
  const char *labels[] = {outcome(r, p.degraded)};
  q_metrics_inc(gw_metrics.queries, labels);
  json_decref(p.degraded);
  json_decref(body);
}
