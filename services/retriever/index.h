/* index.h - the embedded engine's in-memory index: BM25 and HNSW per tenant.
 *
 * One shard per tenant, so a search only ever sees its own tenant's chunks
 * and BM25 statistics (N, df, average length) are per tenant too. Each shard
 * holds an inverted index for BM25F over title and text (compressed
 * postings, block-max MaxScore top k) and, for the chunks
 * that have one, their vectors in an HNSW graph (engine/hnsw.h) labelled by
 * each chunk's stable sequence number; a shard with at most exact_max
 * vectors is searched by an exact scan of that graph's vectors instead of a
 * walk. The index returns each modality's candidates as its own list
 * (index_lexical, index_dense); fusing them is the caller's business
 * (search.c, fusion.h).
 *
 * Thread-safety: every function may be called from any thread. Searches and
 * stats share a read lock; upserts are serialised among themselves and take
 * the write lock only to apply work prepared (tokenised) beforehand; their
 * vectors go into the graph after the write lock is released (the graph
 * runs searches beside one writer), and index_upsert returns once they are
 * in. A search running meanwhile may miss a new chunk's vector, but never
 * returns a retired chunk. Running out of memory inside the index aborts the process
 * (redis's policy): PostgreSQL holds everything acknowledged, and a restart
 * rebuilds the index from it. */
#ifndef QUARRY_RETRIEVER_INDEX_H
#define QUARRY_RETRIEVER_INDEX_H

#include "engine/engine.h"

#include "quarry/arena.h"
#include "quarry/limits.h"
#include "quarry/text.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

/* BM25F defaults: k1 and b are Lucene's; the title weight was chosen by
 * cross-validation on SciFact (docs/retrieval.md). */
#define INDEX_BM25_K1 1.2
#define INDEX_BM25_B 0.75
#define INDEX_TITLE_WEIGHT 1.0

/* Largest embedding accepted (dimensions): any the llm-gateway may make. */
#define Q_INDEX_MAX_DIM ENGINE_MAX_DIM

typedef struct index index_t;

/* A chunk to add (engine.h): pointers borrowed for the call; seq 0 lets the
 * index assign a label of its own (memory-only use). */
typedef engine_chunk_t index_chunk_t;

/* Settings of an index; zero fields take the defaults. */
typedef struct index_params {
  /* > 0: every vector (stored or query) has exactly this many dimensions;
   * 0 lets each tenant's first stored vector decide. */
  size_t fixed_dim;
  /* HNSW graph of each tenant (engine/hnsw.h): 0 takes its defaults. */
  uint32_t m, ef_construction, ef_search;
  /* Tenants with at most this many vectors are searched exactly (a scan of
   * every vector) instead of by a graph walk. */
  size_t exact_max;
  /* Similarity: false cosine (vectors normalised), true inner product of
   * the vectors as given (for embedders trained for it). */
  bool inner_product;
  /* Vectors kept as int8 codes (engine/hnsw.h HNSW_INT8: dim + 4 bytes a
   * vector instead of 4 * dim; graph and search on the codes, scores
   * approximate), not float32. */
  bool int8_vectors;
  /* BM25F (index.c): set bm25 to use k1 (>= 0), b (0..1) and title_weight
   * (>= 0: a title occurrence counts that many text occurrences, in tf and
   * in length); false takes INDEX_BM25_K1, INDEX_BM25_B, INDEX_TITLE_WEIGHT. */
  bool bm25;
  double k1, b, title_weight;
  /* The stopwords text is tokenised with (borrowed: must outlive the index;
   * NULL: the built-in English list). */
  const q_text_stopwords_t *stopwords;
  /* Score every chunk that has a query term instead of pruning with
   * block-max MaxScore (same results; for tests and benchmarks). */
  bool exhaustive;
} index_params_t;

typedef struct index_stats {
  int64_t chunks;    /* live chunks */
  int64_t documents; /* documents with at least one live chunk */
  int64_t terms;     /* distinct terms in live chunks (summed over tenants
                        when all tenants are counted) */
  int64_t vectors;   /* live chunks with a vector */
} index_stats_t;

/* Creates an empty index with params (NULL: all defaults). The caller owns
 * it; free with index_free. NULL when out of memory or a parameter is out of
 * range. */
index_t *index_new(const index_params_t *params);

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

/* The top_k chunks of tenant by BM25 for text[0..text_len), best first
 * (ties: smaller chunk_id), with score = BM25, allocated in arena. 0 or
 * Q_ENOMEM (the arena is full). An unknown tenant or a text without
 * indexed terms gives no candidates. With filter (quarry/filter.h; NULL:
 * none) only chunks whose document passes are candidates: the filter runs
 * before the top k is taken, so it never starves the list. */
q_err_t index_lexical(index_t *idx, const char *tenant, const char *text, size_t text_len,
                      size_t top_k, const q_filter_t *filter, q_arena_t *arena,
                      engine_cand_t **out, size_t *n, char *err, size_t errlen);

/* Checks a query vector: finite, not all zeros, at most Q_INDEX_MAX_DIM and
 * of the fixed dimension if there is one. 0 or Q_EINVAL with err. */
q_err_t index_check_query(const index_t *idx, const float *vec, size_t dim, char *err,
                          size_t errlen);

/* The top_k chunks of tenant by cosine similarity to vec[0..dim), best first,
 * with score = cosine, in arena. *used is set when the tenant has vectors
 * (else no candidates), *exact when every vector was compared rather than
 * the graph walked. 0; Q_EINVAL when the vector fails index_check_query or
 * its dimension differs from the tenant's vectors; Q_ENOMEM. With filter,
 * only chunks whose document passes are returned; the graph walk passes
 * through the others (engine.h, engine_query_t.filter). */
q_err_t index_dense(index_t *idx, const char *tenant, const float *vec, size_t dim,
                    size_t top_k, const q_filter_t *filter, q_arena_t *arena,
                    engine_cand_t **out, size_t *n, bool *used, bool *exact, char *err,
                    size_t errlen);

/* Counts for tenant, or for all tenants when tenant is NULL or "". */
void index_stats(index_t *idx, const char *tenant, index_stats_t *out);

/* Live chunks over all tenants (a relaxed atomic read; no lock). */
int64_t index_chunk_count(const index_t *idx);

/* Removes the postings of retired chunks and the terms no live chunk uses.
 * Upserts do this on their own once a quarter of the postings are dead;
 * exposed for tests and tools. */
void index_compact(index_t *idx);

/* Unlinks deleted vectors from the HNSW graphs where enough have piled up
 * (hnsw_compaction_due), or from every graph with any when force is set.
 * Runs beside searches and upserts (the embedded engine calls it from a
 * background thread). Returns the number of vectors purged. */
size_t index_compact_vectors(index_t *idx, bool force);

/* Snapshots (engine/snapshot.h writes and reads the files). */

typedef struct hnsw hnsw_t;

/* What the lexical index knows of a chunk (index_visit, index_restore_shard):
 * the kept terms of its text and of its title, and its distinct terms: how
 * many, and their numbers (by rank among the shard's terms in visit order)
 * ascending, as varints (LEB128) of their differences, terms[0..terms_len). */
typedef struct index_chunk_lex {
  uint32_t len_text, len_title, nterms;
  const uint8_t *terms;
  uint32_t terms_len;
} index_chunk_lex_t;

/* One term of a shard as index_visit hands it out and index_restore_shard
 * takes it back: its text and its postings encoded as postings.h says
 * (counts[0..nblocks) postings per block, data[0..nbytes)), slots numbered
 * by the rank of their chunk among the shard's live chunks in visit order.
 * Pointers borrowed for the call. */
typedef struct index_term_data {
  const char *text;
  size_t len;
  const uint8_t *counts;
  uint32_t nblocks;
  const uint8_t *data;
  size_t nbytes;
} index_term_data_t;

/* What index_visit hands out: each shard, then each of its live chunks,
 * then each of its terms. */
typedef struct index_visitor {
  /* A shard: its tenant, its graph (NULL when it has no live vector; it
   * may hold deleted nodes too), the dimension of its vectors and its live
   * chunk count. */
  q_err_t (*shard)(void *ud, const char *tenant, hnsw_t *graph, size_t dim, size_t live);
  /* One live chunk of the last shard: strings borrowed for the call, seq =
   * the label of its vector, dim > 0 when its vector is in the graph,
   * embedding NULL (the vector is in the graph). */
  q_err_t (*chunk)(void *ud, const engine_chunk_t *chunk, const index_chunk_lex_t *lex);
  /* The shard's number of terms (after its chunks), then each term with its
   * postings (only live ones, renumbered: index_term_data_t). */
  q_err_t (*terms)(void *ud, size_t nterms);
  q_err_t (*term)(void *ud, const index_term_data_t *term);
} index_visitor_t;

/* Walks the whole index, shard by shard, holding off upserts (searches run
 * meanwhile; a graph may be saved from the shard callback: hnsw_save runs
 * beside searches). Stops at the first callback error and returns it; 0
 * otherwise. */
q_err_t index_visit(index_t *idx, const index_visitor_t *v, void *ud);

/* Adds a shard restored from a snapshot to an index that has no shard for
 * tenant: graph (NULL when it has no vector; the index takes it in every
 * case, and frees it on an error) holds the vectors under the chunks' seq;
 * chunks[0..n) with lex[0..n) become slots
 * 0..n-1 and terms[0..nterms) their postings, taken as they are (nothing is
 * tokenised); a chunk with dim > 0 has its vector in the graph. 0; Q_EINVAL
 * with err when a chunk's vector is not in the graph or has another
 * dimension, the tenant is there already (nothing added in both cases), or
 * the postings are malformed or disagree with the chunks
 * (the index then holds part of the shard and must be discarded). */
q_err_t index_restore_shard(index_t *idx, const char *tenant, hnsw_t *graph,
                            const engine_chunk_t *chunks, const index_chunk_lex_t *lex,
                            size_t n, const index_term_data_t *terms, size_t nterms,
                            char *err, size_t errlen);

/* A fingerprint of the settings that shape the lexical index's contents
 * (the stopword list): a snapshot made under another one is not used. */
uint64_t index_lexical_fingerprint(const index_t *idx);

#endif
