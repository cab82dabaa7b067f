/* pipeline.h - the query pipeline: one question in, an answer with
 * citations out, reported to a sink (sink.h). It never touches HTTP: the
 * same pipeline serves a JSON reply, a Server-Sent Event stream, and any
 * later edge (an OpenAI-compatible route, a gRPC API).
 *
 * Stages, in order (the word in parentheses is what "degraded" says when
 * an optional stage fell back):
 *
 *   admit      the authentication result (the edge established the
 *              principal) and the per-principal rate limit (429), unless
 *              the edge applied it already: the HTTP edge does, at
 *              admission, so a client over its limit is refused before
 *              it sends its body
 *   cache      hook point for the semantic cache, before embed (below)
 *   embed      llm.Embed(query), at most 40% of the time left
 *              failure: lexical retrieval only ("embed")
 *   retrieve   retriever.Search(tenant, query, embedding, top 50)
 *              failure: the query fails (503 / 504)
 *   rerank     reranker.Rerank(top_k), at most 50% of the time left
 *              failure: the retriever's order is kept ("rerank")
 *   generate   llm.Generate, streamed: each piece goes to the sink as it
 *              arrives; past Q_LIMIT_ANSWER_BYTES it is cut
 *              ("answer_truncated"); failure: the query fails
 *   cite       [n] markers checked; invalid ones removed ("citations")
 *   record     feedback.RecordQuery, 500 ms at most
 *              failure: the answer still goes out ("record_query")
 *
 * Everything runs under the request's deadline (QUARRY_QUERY_TIMEOUT_MS
 * from arrival, time spent queued included). The optional stages get only
 * a share of the time left, so a hung embedder or reranker degrades the
 * answer instead of using up the time generation needs.
 *
 * The cache hook. A semantic cache (DESIGN.md: Redis, scoped by tenant
 * and the tenant's index version) plugs into the `cache` stage: it is
 * called with the tenant id and the query before anything is embedded. A
 * miss continues with embed (today every lookup misses, and cache_hit is
 * false). A hit will report the cached passages, answer and citations to
 * the sink in the usual order with cache_hit true, and skip to `record`;
 * storing an answer belongs after `cite`, for answers that did not
 * degrade.
 *
 * Cancellation. pipeline_cancel (any thread: the client went away) stops
 * the run: a Generate stream in flight is cancelled at once, so the
 * llm-gateway stops generating; a unary call in flight (Embed, Search,
 * Rerank, RecordQuery) cannot be interrupted and runs to its own timeout,
 * but the pipeline checks at every stage boundary and goes no further. The
 * sink then gets error(Q_ECANCELLED) and nothing else.
 *
 * Threads, today and next. Each stage is written as a small state
 * machine step: `<stage>_start` builds the request and makes the call,
 * `<stage>_done` takes the result, decides the fallback and sets the next
 * stage; generate adds `generate_piece` per streamed message. Today the
 * calls are the blocking typed stubs (quarry/stubs.h) and pipeline_run
 * drives the steps on a worker of the gateway's pipeline pool (query.c,
 * pool.h), so the HTTP threads never wait for a downstream service.
 *
 * The switch to the asynchronous gRPC client is local to pipeline.c: each
 * `_start` issues the asynchronous call instead of the blocking one and
 * returns; the call's completion callback (on the completion-queue thread)
 * runs the same `_done` (or `generate_piece` per message) and then
 * `advance`, which starts the next stage - the loop in pipeline_run
 * becomes that chain of callbacks, and the pool's workers go away. The
 * sinks, the wake-ups of query.c and the suspended connections stay as
 * they are, because they already receive every event from a thread that
 * is not an HTTP thread. pipeline_cancel then cancels whichever call is in
 * flight, unary ones included. */
#ifndef QUARRY_GW_PIPELINE_H
#define QUARRY_GW_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "sink.h"

/* Candidates retrieved per query, all handed to the reranker. */
#define PIPELINE_RETRIEVE_TOP_K 50
/* top_k when the request does not say. */
#define PIPELINE_TOP_K_DEFAULT 8

/* What one query needs, taken from the edge. Strings are copied. */
typedef struct pipeline_req {
  const gw_cfg_t *cfg;             /* outlives the pipeline */
  const gw_principal_t *principal; /* the authentication result */
  double auth_ms;                  /* time authentication took */
  bool rate_limited;               /* the edge applied the rate limit */
  const char *query;               /* 1..Q_LIMIT_QUERY_BYTES, not blank */
  int top_k;                       /* 1..Q_LIMIT_TOP_K_MAX */
  const char *trace_id;            /* for the downstream calls and logs */
  int64_t deadline_ms;             /* absolute, q_now_ms() time */
  double t0;                       /* q_now_s() at the request's arrival */
} pipeline_req_t;

typedef struct pipeline pipeline_t;

/* A pipeline for req reporting to sink (borrowed: it must outlive the
 * pipeline's run). NULL when out of memory. */
pipeline_t *pipeline_new(const pipeline_req_t *req, sink_t *sink);

/* The query's id (a UUID, also in the sink's events). */
const char *pipeline_query_id(const pipeline_t *p);

/* Runs every stage on the calling thread, with its trace context set to
 * the query's trace id and deadline, and returns once the sink has had
 * its done or error. Counts the outcome in quarry_queries_total and the
 * stage times in quarry_stage_duration_seconds. Call once. */
void pipeline_run(pipeline_t *p);

/* Asks the run to stop (see above). Thread-safe; idempotent; fine before,
 * during and after the run. */
void pipeline_cancel(pipeline_t *p);

/* Frees the pipeline; not while pipeline_run or pipeline_cancel is in
 * progress on another thread. NULL is fine. */
void pipeline_free(pipeline_t *p);

#endif
