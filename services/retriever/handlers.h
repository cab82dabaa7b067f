/* handlers.h - the gRPC face of quarry-retriever: Upsert, Search, Stats and
 * Delete over a retrieval engine (engine/engine.h). */
#ifndef QUARRY_RETRIEVER_HANDLERS_H
#define QUARRY_RETRIEVER_HANDLERS_H

#include "engine/engine.h"
#include "search.h"

#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/metrics.h"

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

/* What the handlers work on; the user data of every handler. */
typedef struct retriever {
  engine_t *engine; /* borrowed */
  int64_t default_top_k;
  int64_t max_top_k;
  search_policy_t policy;     /* fusion rules (search.h) */
  q_metric_t *search_seconds; /* quarry_retriever_search_seconds{mode} */
} retriever_t;

/* Prepares r over engine (borrowed) with an empty fusion policy (plain RRF,
 * k 60) and registers the retriever's metrics. 0 or Q_EINTERNAL. */
q_err_t retriever_init(retriever_t *r, engine_t *engine, int64_t default_top_k,
                       int64_t max_top_k);

/* Releases what retriever_init made (not the engine). */
void retriever_cleanup(retriever_t *r);

/* Readiness (q_ready_cb): the engine can serve. ud is the retriever_t. */
q_err_t retriever_ready_cb(void *ud, char *why, size_t whylen);

/* Handlers for quarry.v1.Retriever; pass the retriever_t as user data. */
extern const q_grpc_method_t retriever_methods[];
extern const size_t retriever_nmethods;

#endif
