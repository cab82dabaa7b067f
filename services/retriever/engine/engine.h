/* engine.h - the retriever's engine seam: where chunks are kept and where
 * candidates come from.
 *
 * An engine stores each tenant's chunks and answers one question: "the best
 * top_k chunks of this tenant for this query text by BM25, and/or for this
 * vector by similarity". It returns the candidates of each modality as a
 * separate scored list; it fuses them only through the optional hybrid op,
 * when search.c asks it to. What the retriever does with the
 * lists is the same whichever engine made them and lives above this seam
 * (search.c): request validation, the request's mode, fusion (fusion.h) and
 * document-level aggregation. An engine is a table of functions (engine_ops_t)
 * chosen once at start by QUARRY_RETRIEVER_ENGINE from engine_registry[]
 * (engine.c), as llm-gateway's providers are:
 *
 *  - "embedded" (default, embedded.c): the in-memory BM25 index (index.c)
 *    with one HNSW graph per tenant for dense candidates (exact scan below a
 *    size threshold), made durable by PostgreSQL (store.c), from which it is
 *    rebuilt at start, kept consistent across replicas by the change log
 *    (store.h).
 *  - "milvus" (milvus.c over milvus_client.c): Milvus does its own BM25 and
 *    dense search with the tenant as partition key; it fits the same table
 *    because it too returns scored candidates per modality. Where it keeps
 *    the contract only in part is said below and in milvus.c.
 *
 * Contract every engine keeps (tests/unit/retriever/test_engine.c checks it
 * for any engine given its ops table):
 *  - Tenants are separate: a search returns only chunks of its tenant, in
 *    either modality, and one tenant's chunks do not change another's scores
 *    (milvus: BM25 statistics are shared by the tenants of a collection or
 *    partition, so scores may change; visibility never does).
 *  - upsert(replace_doc_id = D) is atomic: a search sees the previous
 *    version of D or the new one, never a mix or neither (milvus: new chunks
 *    first, then the old retired, so a search may briefly see both whole
 *    versions, never neither). Chunks of D whose ids are not in the batch
 *    are retired; the rest are added or replaced.
 *  - A chunk id belongs to one tenant for good (Q_ECONFLICT otherwise).
 *  - Vectors: one dimension per tenant (or the configured fixed one), finite
 *    and non-zero; a query vector of another dimension is Q_EINVAL.
 *  - Each list is best first; ties broken by the smaller chunk id. Scores:
 *    BM25 for lexical, cosine similarity for dense.
 *  - Every function may be called from any thread. An engine serialises its
 *    writes (upsert, remove) itself, so that its durable copy and what it
 *    searches change in the same order; searches and stats run beside them
 *    and beside each other.
 *
 * Memory: candidates and their strings are allocated in the caller's arena.
 * Errors are q_err_t with a reason in err (Q_EINVAL: the request is wrong;
 * Q_EUNAVAIL: a dependency is down; Q_ECONFLICT; Q_EUNIMPL: the engine does
 * not do this). */
#ifndef QUARRY_RETRIEVER_ENGINE_ENGINE_H
#define QUARRY_RETRIEVER_ENGINE_ENGINE_H

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest embedding accepted (dimensions): any the llm-gateway may make. */
#define ENGINE_MAX_DIM Q_LIMIT_EMBED_DIM_MAX

/* Where a chunk is in its document's text, in characters (Chunk.start_offset,
 * end_offset, text_offset of common.proto): carried, never looked at. */
typedef struct engine_offsets {
  int32_t start, end, text;
} engine_offsets_t;

/* A chunk to store: every pointer is borrowed for the duration of the call. */
typedef struct engine_chunk {
  const char *chunk_id; /* unique within the tenant (and across tenants) */
  const char *doc_id;
  const char *title; /* may be NULL */
  const char *text;
  int32_t version, ordinal, page;
  engine_offsets_t at;
  const float *embedding; /* dim floats, not necessarily normalised */
  size_t dim;             /* 0: the chunk has no vector */
  /* A stable integer naming the chunk (its row's sequence number in
   * PostgreSQL): the label of its vector in an ANN graph. 0: the engine
   * assigns one. */
  uint64_t seq;
  /* Fields of the chunk's document that filters look at (quarry/filter.h);
   * every chunk of a document version carries the same. An engine keeps
   * them per document where it can (the embedded engine does). */
  const char *content_type; /* may be NULL */
  const char *author;       /* the file's author; NULL or "" none */
  const char *language;     /* BCP 47 tag; NULL or "" unknown */
  int64_t created_at;       /* unix seconds; 0 unknown */
  const char *metadata;     /* user metadata, compact JSON object; NULL or ""
                               none (checked with q_meta_check by the caller) */
  /* Access groups allowed to read the chunk (Chunk.access_groups): stored,
   * not yet enforced; empty until per-document permissions exist. Room kept
   * so that the same in-engine filter can enforce them. */
  const char *const *access_groups;
  size_t naccess_groups;
} engine_chunk_t;

/* One candidate. Strings are copies in the caller's arena. */
typedef struct engine_cand {
  const char *chunk_id, *doc_id, *title, *text;
  int32_t version, ordinal, page;
  engine_offsets_t at;
  double score; /* BM25 (lexical list) or similarity (dense list: cosine, or
                   inner product when the engine is configured so) */
} engine_cand_t;

/* Which candidate lists a search asks for. */
enum { ENGINE_LEXICAL = 1, ENGINE_DENSE = 2 };

/* A search of one tenant. */
typedef struct engine_query {
  const char *tenant;
  unsigned lists;   /* ENGINE_LEXICAL | ENGINE_DENSE */
  const char *text; /* lexical: the query text */
  size_t text_len;
  const float *embedding; /* dense: the query vector */
  size_t dim;
  size_t top_k; /* > 0: depth of each list */
  /* A metadata filter (quarry/filter.h), NULL: none. Applied INSIDE the
   * engine while candidates are gathered, never to the lists afterwards, so
   * a selective filter still fills top_k: the embedded engine's lexical
   * top-k loop skips documents that do not pass; its HNSW walk treats them
   * as traversable but not returnable (and switches to an exact scan of the
   * passing vectors when few pass, hnsw.h); its exact scan filters inline.
   * A filter only narrows: candidates come from q->tenant alone whatever it
   * says.
   *
   * The Milvus engine translates the compiled filter into a Milvus boolean
   * expression over the scalar fields stored with each chunk
   * (engine/milvus_expr.h: content_type, created_ms, metadata JSON, with
   * dates also as numbers), ANDed after the tenant partition key's
   * conjunct and passed as the `filter` of both its searches, so Milvus
   * filters while it searches. */
  const q_filter_t *filter;
} engine_query_t;

/* What a search found: the lists asked for, each best first, in the arena. */
typedef struct engine_result {
  engine_cand_t *lexical;
  size_t nlexical;
  engine_cand_t *dense;
  size_t ndense;
  /* The dense list was searched: the tenant has vectors (of the query's
   * dimension). False when ENGINE_DENSE was not asked for or the tenant has
   * no vectors. */
  bool dense_used;
  /* The dense list came from an exact scan (all of the tenant's vectors)
   * rather than an approximate graph walk. */
  bool dense_exact;
} engine_result_t;

typedef struct engine_stats {
  int64_t chunks;    /* live chunks */
  int64_t documents; /* documents with at least one live chunk */
  int64_t terms;     /* distinct terms (0 when the engine cannot say) */
  int64_t vectors;   /* live chunks with a vector */
} engine_stats_t;

/* What an engine is opened with: settings from main.c's config table. An
 * engine reads the ones it needs. */
typedef struct engine_config {
  const void *pg;   /* const q_pg_cfg_t *: PostgreSQL (embedded); NULL: memory
                       only (tests) */
  size_t fixed_dim; /* > 0: every vector has this dimension */
  /* HNSW (embedded): 0 takes hnsw.h's defaults. */
  uint32_t hnsw_m, hnsw_ef_construction, hnsw_ef_search;
  /* Tenants with at most this many vectors are searched by exact scan. */
  size_t exact_max;
  /* Dense similarity: false cosine, true inner product. */
  bool inner_product;
  /* Vectors in memory (embedded): false float32; true int8 codes with a
   * scale per vector, a quarter of the memory, approximate scores
   * (QUARRY_RETRIEVER_VECTOR_TYPE, docs/retrieval.md "int8"). */
  bool int8_vectors;
  /* Milvus (milvus.c): const milvus_cfg_t * (engine/milvus_client.h), whose
   * dim is taken from fixed_dim; NULL when not configured. */
  const void *milvus;
  /* Replicas (embedded): the change log is polled every poll_ms when no
   * notification wakes the tailer sooner (0: 1000); a replica whose oldest
   * unapplied change is older than max_lag_ms is not ready (0: 5000). */
  int64_t poll_ms, max_lag_ms;
  /* Snapshots (embedded): the directory (NULL or "": none), and when to take
   * one in the background: after snapshot_changes changes, or every
   * snapshot_interval_ms when anything changed (0: never by time). */
  const char *data_dir;
  int64_t snapshot_changes, snapshot_interval_ms;
  /* Pruning the change log (embedded; store.h): a replica whose heartbeat
   * is older than replica_ttl_ms is not live (0: 60000); every
   * prune_interval_ms (0: never) a replica deletes the changes no live
   * replica needs that are older than log_retain_ms (the retention floor). */
  int64_t replica_ttl_ms, prune_interval_ms, log_retain_ms;
  /* Lexical scoring (embedded): with bm25 set, BM25F's k1, b and title
   * weight (index.h); otherwise index.h's defaults. stopwords: "english"
   * (NULL too), "none" or a file (quarry/text.h, q_text_stopwords_new). */
  bool bm25;
  double bm25_k1, bm25_b, title_weight;
  const char *stopwords;
} engine_config_t;

/* How an engine that fuses by itself (engine_ops_t.hybrid) combines the
 * lexical and the dense list. */
typedef struct engine_fusion {
  bool weighted;         /* false: reciprocal rank fusion */
  unsigned rrf_k;        /* RRF constant (> 0) */
  double w_lex, w_dense; /* weighted: each in [0, 1] */
} engine_fusion_t;

typedef struct engine engine_t;

/* The functions of one engine. st is what open returned. */
typedef struct engine_ops {
  const char *name; /* the QUARRY_RETRIEVER_ENGINE value */

  /* Connects and loads (the embedded engine rebuilds its index from
   * PostgreSQL here). 0 and *st set, or an error with err. */
  q_err_t (*open)(const engine_config_t *cfg, void **st, char *err, size_t errlen);
  /* Releases everything open made. Nothing may be running. */
  void (*close)(void *st);

  /* Stores chunks[0..n) for tenant, durably when the engine is durable, and
   * makes them searchable. With replace_doc_id (neither NULL nor ""), the
   * document's live chunks not among chunks[] are retired in the same atomic
   * step; *retired receives how many. n may be 0 (then it only retires).
   * Validates the vectors first (dimension, finite, non-zero): Q_EINVAL with
   * err naming the chunk, nothing stored. */
  q_err_t (*upsert)(void *st, const char *tenant, const engine_chunk_t *chunks, size_t n,
                    const char *replace_doc_id, size_t *retired, char *err,
                    size_t errlen);
  /* A new version in batches, swapped in atomically (UpsertRequest.stage):
   * stage stores chunks[0..n) durably without making them searchable
   * (validated as upsert does); commit makes the staged chunks of doc_id's
   * version live, exactly expect of them, and retires the document's other
   * live chunks, in one step for every search (Q_ENOTFOUND, nothing changed,
   * when not exactly expect are staged). NULL where the engine cannot
   * (Milvus): the service answers UNIMPLEMENTED. */
  q_err_t (*stage)(void *st, const char *tenant, const engine_chunk_t *chunks, size_t n,
                   char *err, size_t errlen);
  q_err_t (*commit)(void *st, const char *tenant, const char *doc_id, int32_t version,
                    size_t expect, size_t *retired, char *err, size_t errlen);
  /* Retires every chunk of doc_id: *retired receives how many (0 when the
   * document has none). */
  q_err_t (*remove)(void *st, const char *tenant, const char *doc_id, size_t *retired,
                    char *err, size_t errlen);

  /* The candidate lists q asks for (see engine_result_t). */
  q_err_t (*search)(void *st, const engine_query_t *q, q_arena_t *arena,
                    engine_result_t *out, char *err, size_t errlen);

  /* Optional (NULL: the engine only returns lists). Both lists of q
   * (q->lists is ENGINE_LEXICAL | ENGINE_DENSE, text and vector given)
   * fused by the engine itself, in one request, as how says: *out (in the
   * arena) holds at most q->top_k candidates, best first, each scored by
   * its fused score; the per-list scores and ranks are not known. search.c
   * calls it for a hybrid search when the fusion policy's rule is one the
   * engine can express (plain RRF, or weighted scores), and falls back to
   * search and fusion_merge when it returns Q_EUNIMPL (the engine declines
   * this query, e.g. because it is configured not to fuse). An engine
   * offers it only where every chunk has a vector, so a non-empty answer
   * means the dense list took part. The Milvus engine's is one
   * hybrid_search request. */
  q_err_t (*hybrid)(void *st, const engine_query_t *q, const engine_fusion_t *how,
                    q_arena_t *arena, engine_cand_t **out, size_t *n, char *err,
                    size_t errlen);

  /* Counts for tenant, or all tenants when tenant is NULL or "". */
  q_err_t (*stats)(void *st, const char *tenant, engine_stats_t *out, char *err,
                   size_t errlen);
  /* Live chunks over all tenants, cheaply (the quarry_index_chunks gauge). */
  int64_t (*chunk_count)(void *st);

  /* Writes the engine's in-memory state to dir so a start can skip the
   * rebuild, and reads it back. Q_EUNIMPL where the engine keeps no such
   * state (Milvus). The embedded engine snapshots to engine_config_t's
   * data_dir by itself and restores from it in open; its restore, on a
   * running engine, is Q_EUNIMPL (docs/retrieval.md, "Snapshots"). */
  q_err_t (*snapshot)(void *st, const char *dir, char *err, size_t errlen);
  q_err_t (*restore)(void *st, const char *dir, char *err, size_t errlen);

  /* Readiness: whether the engine can serve (its database or server
   * answers); when not, why says why. */
  bool (*ready)(void *st, char *why, size_t whylen);
  /* Writes acknowledged but not yet searchable, in milliseconds (an engine
   * that indexes asynchronously, like Milvus, lags; the embedded engine is
   * searchable on the replica that served the upsert when it returns, and
   * reports the age of the oldest change of another replica it has not
   * applied from the change log yet). Negative: unknown. */
  int64_t (*lag_ms)(void *st);
} engine_ops_t;

/* An open engine: its table and its state. */
struct engine {
  const engine_ops_t *ops;
  void *st;
};

/* The engines this binary has, NULL-terminated. */
extern const engine_ops_t *const engine_registry[];

/* The engine called name, or NULL. */
const engine_ops_t *engine_find(const char *name);

/* Names of the registered engines, comma-separated (for messages). */
const char *engine_names(void);

/* Opens the engine called name into e (caller-owned). 0; Q_EINVAL when no
 * engine has that name; or what its open returns. err says why. */
q_err_t engine_open(engine_t *e, const char *name, const engine_config_t *cfg, char *err,
                    size_t errlen);

/* Opens an engine given its table (tests run one suite over several). */
q_err_t engine_open_ops(engine_t *e, const engine_ops_t *ops, const engine_config_t *cfg,
                        char *err, size_t errlen);

/* Closes what engine_open opened. A zeroed e is fine. */
void engine_close(engine_t *e);

/* The embedded engine's table (embedded.c). */
extern const engine_ops_t engine_embedded_ops;

/* The Milvus engine's table (milvus.c). */
extern const engine_ops_t engine_milvus_ops;

#endif
