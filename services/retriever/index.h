/* index.h - the retriever's in-memory hybrid index.
 *
 * One shard per tenant, so a search only ever sees its own tenant's chunks
 * and BM25 statistics (N, df, average length) are per tenant too. Each shard
 * holds an inverted index for BM25 over title + text and one L2-normalised
 * vector per chunk for cosine similarity (brute force). Search runs both,
 * fuses the two rankings with Reciprocal Rank Fusion (fusion.h) and returns
 * the best top_k.
 *
 * Thread-safety: every function may be called from any thread. Searches and
 * stats share a read lock; upserts take the write lock only to apply work
 * prepared (tokenised, normalised) beforehand. Running out of memory inside
 * the index aborts the process (redis's policy): PostgreSQL holds everything
 * acknowledged, and a restart rebuilds the index from it. */
#ifndef QUARRY_RETRIEVER_INDEX_H
#define QUARRY_RETRIEVER_INDEX_H

#include "quarry/arena.h"
#include "quarry/limits.h"

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

/* BM25 parameters (Lucene's defaults). */
#define Q_BM25_K1 1.2
#define Q_BM25_B 0.75

/* Largest embedding accepted (dimensions): any the llm-gateway may make. */
#define Q_INDEX_MAX_DIM Q_LIMIT_EMBED_DIM_MAX

typedef struct index index_t;

/* A chunk to add: every pointer is borrowed for the duration of the call. */
typedef struct index_chunk {
  const char *chunk_id; /* unique within the tenant */
  const char *doc_id;
  const char *title; /* may be NULL */
  const char *text;
  int32_t version, ordinal, page;
  const float *embedding; /* dim floats, not necessarily normalised */
  size_t dim;             /* 0: the chunk has no vector */
} index_chunk_t;

/* One search result. Strings are copies in the caller's arena. */
typedef struct index_hit {
  const char *chunk_id, *doc_id, *title, *text;
  int32_t version, ordinal, page;
  double fused;          /* RRF score: what the results are ordered by */
  double lexical;        /* BM25 score, 0 when no query term matched */
  double dense;          /* cosine similarity, 0 when no vector compared */
  uint32_t lexical_rank; /* 1-based rank in the BM25 list, 0 if absent */
  uint32_t dense_rank;   /* 1-based rank in the dense list, 0 if absent */
} index_hit_t;

typedef struct index_stats {
  int64_t chunks;    /* live chunks */
  int64_t documents; /* documents with at least one live chunk */
  int64_t terms;     /* distinct terms in live chunks (summed over tenants
                        when all tenants are counted) */
} index_stats_t;

/* Creates an empty index. fixed_dim > 0 makes every vector (stored or
 * query) have exactly that many dimensions; 0 lets each tenant's first
 * stored vector decide. The caller owns it; free with index_free. */
index_t *index_new(size_t fixed_dim);

/* Frees the index. No call may be running. NULL is fine. */
void index_free(index_t *idx);

/* Checks that chunks[0..n) can be added to tenant's shard: every embedding
 * finite, non-zero, at most Q_INDEX_MAX_DIM and of the tenant's (or the
 * fixed) dimension, all of one dimension. 0 or Q_EINVAL with err naming the
 * chunk. The store writes only checked batches, so index_upsert after a
 * successful check cannot fail on them as long as upserts are serialised. */
q_err_t index_check(index_t *idx, const char *tenant, const index_chunk_t *chunks,
                    size_t n, char *err, size_t errlen);

/* Adds or replaces chunks[0..n) in tenant's shard. A chunk whose chunk_id is
 * already there replaces it. When replace_doc_id is neither NULL nor "",
 * live chunks of that document whose ids are not among chunks[] are retired
 * first; *retired (if not NULL) receives how many. Runs index_check first:
 * 0 or Q_EINVAL (nothing changed). */
q_err_t index_upsert(index_t *idx, const char *tenant, const index_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired, char *err,
                     size_t errlen);

/* A search of one tenant's shard. */
typedef struct index_query {
  const char *tenant;
  const char *text; /* may be NULL or empty: dense only */
  size_t text_len;
  const float *embedding; /* NULL or dim 0: lexical only */
  size_t dim;
  size_t top_k;        /* > 0: how many results, and the depth of each list fused */
  double dense_weight; /* weight of the dense list in the fusion, BM25's
                          being 1.0; 0 means 1.0 (plain RRF) */
} index_query_t;

/* Runs BM25 and (when an embedding is given and the tenant has vectors)
 * cosine similarity, fuses the two lists with RRF and returns at most top_k
 * hits, best first, allocated in arena. *dense_used is set to 1 when the
 * embedding took part. 0; Q_EINVAL when the embedding's dimension differs
 * from the tenant's vectors, or it is not finite or zero (err says which);
 * Q_ENOMEM when the arena is full. */
q_err_t index_search(index_t *idx, const index_query_t *q, q_arena_t *arena,
                     index_hit_t **hits, size_t *nhits, int *dense_used, char *err,
                     size_t errlen);

/* Counts for tenant, or for all tenants when tenant is NULL or "". */
void index_stats(index_t *idx, const char *tenant, index_stats_t *out);

/* Live chunks over all tenants (a relaxed atomic read; no lock). */
int64_t index_chunk_count(const index_t *idx);

/* Removes the postings of retired chunks and the terms no live chunk uses.
 * Upserts do this on their own once a quarter of the postings are dead;
 * exposed for tests and tools. */
void index_compact(index_t *idx);

#endif
