/* handlers.h - the gRPC face of quarry-retriever: Upsert, Search and Stats
 * over the in-memory index and its PostgreSQL store. */
#ifndef QUARRY_RETRIEVER_HANDLERS_H
#define QUARRY_RETRIEVER_HANDLERS_H

#include "index.h"
#include "store.h"

#include "quarry/grpc.h"
#include "quarry/limits.h"
#include "quarry/metrics.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

/* What the handlers work on; the user data of every handler. */
typedef struct retriever {
  index_t *index;
  store_t *store;            /* NULL: memory only (tests) */
  pthread_mutex_t upsert_mu; /* one upsert at a time: store write then index
                                update, so both see the same order */
  int64_t default_top_k;
  int64_t max_top_k;
  double dense_weight;        /* fusion weight of the dense list (BM25: 1) */
  q_metric_t *search_seconds; /* quarry_retriever_search_seconds{mode} */
} retriever_t;

/* Prepares r over index and store (both borrowed) and registers the
 * retriever's metrics. 0 or Q_EINTERNAL. */
q_err_t retriever_init(retriever_t *r, index_t *index, store_t *store,
                       int64_t default_top_k, int64_t max_top_k);

/* Releases what retriever_init made (not the index or store). */
void retriever_cleanup(retriever_t *r);

/* Readiness (q_ready_cb): the database answers. ud is the retriever_t. */
q_err_t retriever_ready_cb(void *ud, char *why, size_t whylen);

/* Handlers for quarry.v1.Retriever; pass the retriever_t as user data. */
extern const q_grpc_method_t retriever_methods[];
extern const size_t retriever_nmethods;

#endif
