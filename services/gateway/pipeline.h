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
 * the run: whichever call is in flight - a unary one (Embed, Search,
 * Rerank, RecordQuery) or the Generate stream - is cancelled at once
 * (q_grpc_async_cancel: the downstream service sees the call cancelled),
 * its callback ends the run at the stage boundary, and the sink gets
 * error(Q_ECANCELLED) and nothing else.
 *
 * Threads. No thread waits for a downstream service. Each stage is a small
 * state machine step: `<stage>_start` builds the request, issues the
 * asynchronous call (quarry/grpc.h, q_rpc_*_async) and returns;
 * the call's final callback, on one of the gRPC client's loop threads,
 * runs `<stage>_done` (the result, the fallback, the next stage) and then
 * `advance`, which starts the next stage; generate gets `generate_piece`
 * per streamed message. A query's calls share its arena, so all of its
 * callbacks run on one loop thread, one at a time, and its state needs no
 * lock; only the handle of the call in flight is shared (with
 * pipeline_cancel and pipeline_resume, under a mutex). pipeline_start runs
 * the first stages on the caller's thread up to the first call (admit and
 * cache do not block: the edge applied the rate limit). A query in flight
 * costs its arena and a gRPC call, not a thread, so the edge caps
 * pipelines in flight (pool.h) for memory and fairness, not for threads.
 * The deadline and the trace id travel in each call's options
 * (deadline_ms, trace_id); the callbacks also set the loop thread's trace
 * context while they run, so the logs carry the query's trace id.
 *
 * Flow control. When the owner gives sink_full (the SSE edge does), each
 * streamed message is followed by sink_full(flow_ud): true pauses the
 * Generate stream (no further message is read, and HTTP/2 flow control
 * soon holds the llm-gateway back) until the owner calls pipeline_resume
 * once its reader has drained the sink. A resume that comes before the
 * pause took effect is not lost: the adapter remembers it
 * (q_grpc_stream_async_resume). */
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
  const char *mode;     /* retrieval mode: "lexical", "dense", "hybrid"; NULL or
                           "": the retriever's default. lexical skips embedding */
  const char *filter;   /* metadata filter as compact JSON, checked by the
                           caller (quarry/filter.h); NULL or "": none */
  const char *trace_id; /* for the downstream calls and logs */
  int64_t deadline_ms;  /* absolute, q_now_ms() time */
  double t0;            /* q_now_s() at the request's arrival */
  /* Flow control (optional, see above): whether the sink's reader is so
   * far behind that generation should pause. Called on the pipeline's
   * thread after each streamed message; must not block. */
  bool (*sink_full)(void *ud);
  void *flow_ud;
  /* Optional: told once, just before the Generate call starts, that the
   * run's CPU stages are over and it waits on the model from now on
   * (admission stops counting it against its tenant: pool_yield). On the
   * pipeline's thread; must not block. */
  void (*generating)(void *ud);
  void *generating_ud;
} pipeline_req_t;

/* Told that a run is over: the sink has had its done or error, and the
 * pipeline touches nothing any more (ud's owner may free it here). */
typedef void (*pipeline_end_fn)(void *ud);

typedef struct pipeline pipeline_t;

/* A pipeline for req reporting to sink (borrowed: it must outlive the
 * pipeline's run). NULL when out of memory. */
pipeline_t *pipeline_new(const pipeline_req_t *req, sink_t *sink);

/* The query's id (a UUID, also in the sink's events). */
const char *pipeline_query_id(const pipeline_t *p);

/* Starts the run: the stages up to the first downstream call run on the
 * calling thread, the rest on the gRPC client's loop threads; returns
 * without waiting. on_end(ud) runs once at the end, on whichever thread
 * ended it (the caller's, when the run ends before any call, e.g.
 * cancelled or past its deadline). Counts the outcome in
 * quarry_queries_total and the stage times in
 * quarry_stage_duration_seconds. Call once (or pipeline_run). */
void pipeline_start(pipeline_t *p, pipeline_end_fn on_end, void *ud);

/* pipeline_start, then waits for the end on the calling thread (tests,
 * tools). Call once. */
void pipeline_run(pipeline_t *p);

/* The sink's reader has drained (see "Flow control"): resumes a paused
 * Generate stream; a no-op when none is paused. Thread-safe. */
void pipeline_resume(pipeline_t *p);

/* Asks the run to stop (see above). Thread-safe; idempotent; fine before,
 * during and after the run. */
void pipeline_cancel(pipeline_t *p);

/* Frees the pipeline: before pipeline_start, or once its on_end has been
 * called (in on_end itself is fine); not while pipeline_cancel or
 * pipeline_resume is in progress on another thread. NULL is fine. */
void pipeline_free(pipeline_t *p);

#endif
