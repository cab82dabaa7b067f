/* handlers.h - the gRPC face of quarry-reranker: Rerank over the lexical
 * scorer (scorer.h). */
#ifndef QUARRY_RERANKER_HANDLERS_H
#define QUARRY_RERANKER_HANDLERS_H

#include "quarry/grpc.h"

#include <stddef.h>

/* Request limits. */
#define Q_RERANKER_MAX_QUERY 8192 /* bytes */
#define Q_RERANKER_MAX_PASSAGES 1000
#define Q_RERANKER_MAX_TEXT 65536 /* bytes of one passage's text */
#define Q_RERANKER_DEFAULT_TOP_N 8
#define Q_RERANKER_MAX_TOP_N 100

/* Handlers for quarry.v1.Reranker (no user data needed). */
extern const q_grpc_method_t reranker_methods[];
extern const size_t reranker_nmethods;

#endif
