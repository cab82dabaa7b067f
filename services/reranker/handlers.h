/* handlers.h - the gRPC face of quarry-reranker: Rerank with one of the
 * methods of method.h, optionally returning the feature vectors
 * (features.h). */
#ifndef QUARRY_RERANKER_HANDLERS_H
#define QUARRY_RERANKER_HANDLERS_H

#include "quarry/grpc.h"
#include "quarry/limits.h"

#include <stddef.h>

/* Request limits: query Q_LIMIT_QUERY_BYTES, Q_LIMIT_RERANK_PASSAGES
 * passages of Q_LIMIT_PASSAGE_TEXT_BYTES text and Q_LIMIT_TITLE_BYTES
 * title each, top_n up to Q_LIMIT_GENERATE_PASSAGES (what is kept goes to
 * generation). */
#define Q_RERANKER_DEFAULT_TOP_N 8

/* Handlers for quarry.v1.Reranker; their user data is the service's
 * reranker_t (method.h), which must outlive the server. */
extern const q_grpc_method_t reranker_methods[];
extern const size_t reranker_nmethods;

#endif
