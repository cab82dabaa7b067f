/* hnsw.h - an approximate nearest-neighbour index: Hierarchical Navigable Small
 * World graphs (Malkov & Yashunin, "Efficient and robust approximate nearest
 * neighbor search using HNSW graphs", TPAMI 2018).
 *
 * One index holds vectors of one dimension under one metric, each with a
 * caller-chosen uint64 label. It answers "the k stored vectors most similar to
 * this one" in roughly logarithmic time by a greedy walk through a layered
 * proximity graph, with recall (the share of the true top k it finds) traded
 * against time by ef_search. docs/retrieval.md describes the algorithm and its
 * parameters; docs/benchmarks.md has measured recall, latency and memory.
 *
 * Besides plain search: deletes by tombstone with a repair routine
 * (hnsw_compact) that can run on a background thread; filtered search with a
 * caller's predicate, switching to an exact scan when the filter passes few
 * items; int8 scalar quantisation; and snapshots to a file.
 *
 * Thread-safety: any number of searches run concurrently with one mutating
 * call (hnsw_add, hnsw_delete, hnsw_compact); mutating calls are serialised
 * among themselves by the index. A mutating call does its expensive part
 * (finding neighbours) beside the searches and blocks them only while it
 * publishes its result (a few link lists). hnsw_save may run beside searches;
 * hnsw_free must not run beside anything. */
#ifndef QUARRY_RETRIEVER_ENGINE_HNSW_H
#define QUARRY_RETRIEVER_ENGINE_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"
#include "quarry/limits.h"

/* Defaults (see docs/retrieval.md, "HNSW", for the measurements behind them). */
#define HNSW_DEFAULT_M 16
#define HNSW_DEFAULT_EF_CONSTRUCTION 200
#define HNSW_DEFAULT_EF_SEARCH 64

/* Bounds on the parameters. */
#define HNSW_MAX_DIM Q_LIMIT_EMBED_DIM_MAX
#define HNSW_MAX_M 64
#define HNSW_MAX_EF 8192
#define HNSW_MAX_K 8192
/* Most nodes an index holds (internal ids are uint32). */
#define HNSW_MAX_NODES (UINT32_C(1) << 31)

/* How similarity is measured. Scores are "higher is more similar". */
typedef enum hnsw_metric {
  /* Cosine similarity: vectors are L2-normalised when added and queries when
   * searched, then compared by dot product. Score in [-1, 1]. Zero vectors
   * are refused. */
  HNSW_COSINE = 0,
  /* Inner product of the vectors as given (maximum inner product search). */
  HNSW_INNER_PRODUCT = 1,
} hnsw_metric_t;

/* How vectors are kept in memory. */
typedef enum hnsw_storage {
  /* float32 only: dim * 4 bytes per vector. */
  HNSW_FLOAT = 0,
  /* int8 only, one scale per vector (x[i] ~ scale * code[i], scale =
   * max |x[i]| / 127): dim + 4 bytes per vector, a quarter of HNSW_FLOAT. The
   * graph is built and searched on the codes, and scores are approximate;
   * docs/benchmarks.md has the recall cost. */
  HNSW_INT8 = 1,
  /* Both: the graph is built on floats; searches walk it on the int8 codes
   * (a quarter of the memory traffic) and re-rank the ef best candidates
   * with the floats, so scores are exact. More memory than HNSW_FLOAT. */
  HNSW_INT8_RERANK = 2,
} hnsw_storage_t;

/* Parameters of an index. Zero fields take the defaults. */
typedef struct hnsw_params {
  size_t dim; /* required: 1..HNSW_MAX_DIM */
  hnsw_metric_t metric;
  hnsw_storage_t storage;
  /* Links per node and layer (2 * m on layer 0): more raises recall and
   * memory (8 * m bytes per vector on layer 0). 2..HNSW_MAX_M. */
  uint32_t m;
  /* Candidates kept while inserting: more builds a better graph, slower. */
  uint32_t ef_construction;
  /* Candidates kept while searching, unless a query says otherwise; at least
   * k is always used. */
  uint32_t ef_search;
  /* A filtered search whose filter is expected to pass at most this many
   * items scans them exactly instead of walking the graph. 0: decide by a
   * cost model measured on this code (about sqrt(24 * ef * live) items;
   * docs/retrieval.md). */
  uint32_t exact_max;
  /* Seeds the random layer assignment; 0 means a fixed default, so the same
   * inserts in the same order always build the same graph. */
  uint64_t seed;
  /* Use the portable distance code even where AVX2 is available. */
  bool portable_kernels;
} hnsw_params_t;

typedef struct hnsw hnsw_t;

/* One search result. */
typedef struct hnsw_hit {
  uint64_t label;
  float score; /* similarity: cosine or inner product */
} hnsw_hit_t;

/* A caller's predicate for filtered search: true keeps the item. It is
 * called with the index's read lock held, from the searching thread, and must
 * not call into the index. */
typedef bool (*hnsw_filter_cb)(uint64_t label, void *ud);

/* How a search runs. */
typedef enum hnsw_plan {
  HNSW_PLAN_AUTO = 0, /* graph, or exact scan for a selective filter */
  HNSW_PLAN_GRAPH,    /* always walk the graph */
  HNSW_PLAN_EXACT,    /* always scan every vector (exact; for tests, truth) */
} hnsw_plan_t;

/* A query. vec holds the index's dim floats; the other fields may be zero. */
typedef struct hnsw_query {
  const float *vec;
  size_t k;    /* results wanted, 1..HNSW_MAX_K */
  uint32_t ef; /* 0: the index's ef_search; raised to k when smaller */
  hnsw_filter_cb filter;
  void *filter_ud;
  /* The caller's estimate of how many items pass the filter (for instance a
   * tenant's chunk count); 0 lets the index estimate it by sampling. */
  size_t filter_estimate;
  hnsw_plan_t plan;
} hnsw_query_t;

/* What a search did (optional output). */
typedef struct hnsw_search_info {
  bool exact;       /* the exact scan ran, not the graph walk */
  size_t distances; /* distance computations */
  size_t estimate;  /* items expected to pass the filter (filtered only) */
} hnsw_search_info_t;

/* Counts and sizes. */
typedef struct hnsw_stats {
  size_t live;    /* searchable vectors */
  size_t deleted; /* tombstones still linked into the graph */
  size_t free;    /* slots freed by compaction, reused by later adds */
  size_t slots;   /* live + deleted + free */
  size_t bytes;   /* memory held by the index (capacity, not just use) */
  int max_level;  /* top layer of the graph, -1 when empty */
  size_t dim;
} hnsw_stats_t;

/* The parameters of an index with every default filled in. */
void hnsw_params_resolve(const hnsw_params_t *in, hnsw_params_t *out);

/* Creates an empty index. 0 and *out set, the caller owning it (free with
 * hnsw_free); Q_EINVAL with err saying which parameter is out of range;
 * Q_ENOMEM. */
q_err_t hnsw_new(const hnsw_params_t *params, hnsw_t **out, char *err, size_t errlen);

/* Frees the index. Nothing may be running on it. NULL is fine. */
void hnsw_free(hnsw_t *h);

/* The parameters the index runs with (defaults resolved). */
void hnsw_params_get(const hnsw_t *h, hnsw_params_t *out);

/* The distance kernels in use ("avx2" or "portable"). */
const char *hnsw_kernels(const hnsw_t *h);

/* Allocates room for n slots in one go, so later adds do not grow the arrays
 * (growth holds the write lock while realloc runs). 0 or Q_ENOMEM/Q_EINVAL. */
q_err_t hnsw_reserve(hnsw_t *h, size_t n);

/* Adds vec (dim floats, copied) under label. A label already present is
 * replaced: its old vector becomes a tombstone in the same step, so a search
 * sees either the old or the new vector, never both or neither. 0; Q_EINVAL
 * (err says why: non-finite component, zero vector under HNSW_COSINE);
 * Q_ERESOURCE when the index is full; Q_ENOMEM. Serialised with other
 * mutating calls; runs beside searches. */
q_err_t hnsw_add(hnsw_t *h, uint64_t label, const float *vec, char *err, size_t errlen);

/* Marks label deleted: searches stop returning it at once. Its node stays in
 * the graph (searches still walk through it) until hnsw_compact. 0 or
 * Q_ENOTFOUND. */
q_err_t hnsw_delete(hnsw_t *h, uint64_t label);

/* Whether label is live in the index. */
bool hnsw_contains(hnsw_t *h, uint64_t label);

/* Finds the q->k live items most similar to q->vec that pass q->filter (when
 * set), best first, into out[0..q->k). Returns how many were found (fewer
 * than k only when fewer pass, or, on the graph walk, when the filter
 * disconnects them), or a negative q_err_t: Q_EINVAL (k or ef out of range,
 * zero query under HNSW_COSINE), Q_ENOMEM. info, when not NULL, says how it
 * ran. Runs beside other searches and one mutating call. */
int hnsw_search(hnsw_t *h, const hnsw_query_t *q, hnsw_hit_t *out,
                hnsw_search_info_t *info);

/* Exact search among the given labels only (labels not in the index are
 * skipped): for filters that are a short list of items, such as the chunks of
 * a few documents. Returns how many were written to out[0..k), best first, or
 * a negative q_err_t (Q_EINVAL, Q_ENOMEM). */
int hnsw_search_labels(hnsw_t *h, const float *vec, size_t k, const uint64_t *labels,
                       size_t nlabels, hnsw_hit_t *out);

/* What hnsw_compact did. */
typedef struct hnsw_compact_stats {
  size_t purged;   /* tombstones unlinked and their slots freed */
  size_t repaired; /* nodes whose links were rebuilt */
} hnsw_compact_stats_t;

/* Unlinks every node deleted before the call: each node that links to one
 * gets new links chosen (by the same heuristic as inserts) among its other
 * neighbours and the deleted node's neighbours, then the deleted slots are
 * freed for reuse. Works in batches and lets adds and deletes run between
 * them, and searches all along, so it may run on a background thread. 0 or
 * Q_ENOMEM (the index stays consistent; a later call finishes the work).
 * stats may be NULL. */
q_err_t hnsw_compact(hnsw_t *h, hnsw_compact_stats_t *stats);

/* Whether enough deletes have piled up for hnsw_compact to be worth running:
 * tombstones are more than a tenth of the nodes (and at least 64). */
bool hnsw_compaction_due(hnsw_t *h);

/* Counts and memory. */
void hnsw_stats(hnsw_t *h, hnsw_stats_t *out);

/* Writes a snapshot of the index to path: written to path + ".tmp", flushed
 * to disk and renamed, so path holds either the old or the new snapshot.
 * The format (docs/retrieval.md) is a fixed header with a version, the
 * arrays, and a BLAKE2b checksum of everything before it. tag is stored in
 * the header for the caller (for instance the last database change the
 * snapshot includes, so a restart replays only what came after). 0; Q_EIO
 * with err naming the failing step. Runs beside searches; mutating calls
 * wait. */
q_err_t hnsw_save(hnsw_t *h, const char *path, uint64_t tag, char *err, size_t errlen);

/* Reads a snapshot written by hnsw_save. 0, *out set (the caller owns it)
 * and *tag (when not NULL) set to the saved tag; Q_EIO when the file cannot
 * be read; Q_EINVAL with err saying what is wrong when it is not a snapshot,
 * has another version, is truncated, fails its checksum or holds an
 * inconsistent graph; Q_ENOMEM. portable_kernels chooses the distance code as
 * in hnsw_params_t. */
q_err_t hnsw_load(const char *path, bool portable_kernels, hnsw_t **out, uint64_t *tag,
                  char *err, size_t errlen);

#endif
