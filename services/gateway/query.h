/* query.h - query.c's seam for the edges that answer with the pipeline:
 * POST /v1/query (query.c itself) and POST /v1/chat/completions
 * (chat.c). An edge validates its request, builds a pipeline_req_t and
 * hands it here with the sink it answers through; query.c does the rest
 * (workers, suspended connections, hang-ups, the reply). */
#ifndef QUARRY_GW_QUERY_H
#define QUARRY_GW_QUERY_H

#include <jansson.h>
#include <stdbool.h>

#include "gateway.h"
#include "pipeline.h"
#include "sink.h"

/* What an SSE reader may fall behind before the query stops: more than an
 * answer of Q_LIMIT_ANSWER_BYTES with its events and citations. */
#define QUERY_SSE_MAX_BYTES (8u << 20)

/* Builds the sink the pipeline reports to, waking the reader through
 * wake(wake_ud), and sets *reader to the sink query.c reads: a JSON sink
 * (sink_json_take) or, when the query was submitted with sse, an SSE sink
 * (sink_sse_begin / sink_sse_read) - the sink itself or one it owns. The
 * returned sink is owned by query.c (freed with its free). NULL when out
 * of memory. */
typedef sink_t *(*query_sink_fn)(void *ud, sink_wake_fn wake, void *wake_ud,
                                 sink_t **reader);

/* Checks a request's metadata filter v (q_filter_compile, then at most
 * Q_LIMIT_FILTER_BYTES as compact JSON): 0 with *compact set (free() it),
 * or the error with err naming the place from "filter" on ("filter.and[1]:
 * ..."). The one rule for /v1/query's "filter" and the chat endpoint's
 * "quarry.filter". */
q_err_t query_filter_compact(const json_t *v, char **compact, char *err, size_t errlen);

/* Starts a pipeline for query (copied) with top_k passages and the
 * metadata filter (compact JSON already checked with q_filter_compile,
 * copied; NULL: none), for r's
 * principal, trace and deadline, once admission control lets it (the
 * pipeline runs on asynchronous gRPC completions), and answers r
 * when the sink has something: through make(ud, ...) or, when make is
 * NULL, a JSON sink or (sse) an SSE sink with POST /v1/query's shapes.
 * Replies itself on failure (503 when the queue is full or the gateway
 * stops, 500 out of memory) and counts it. On the request's thread. */
void query_submit(gw_req_t *r, const char *query, int top_k, const char *filter, bool sse,
                  query_sink_fn make, void *ud);

#endif
