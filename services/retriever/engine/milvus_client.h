/* milvus_client.h - a Milvus REST v2 client (docs/milvus.md).
 *
 * What the Milvus engine needs from a Milvus server, over libcurl through
 * q_http_json (quarry/http_client.h): one collection with an explicit schema
 * (chunk_id primary key, tenant_id as partition key, text with a BM25
 * function, a dense vector), upsert of chunks, delete by document, dense,
 * BM25 and hybrid search. Every read and delete is scoped to one tenant: the
 * filter always starts with `tenant_id == "<tenant>"`, and every hit is checked
 * against the tenant again before it is returned, so a server that ignored
 * the filter still could not hand one tenant another's chunk.
 *
 * Errors: every reply's `code` is read, also on HTTP 200. Connection errors,
 * HTTP 5xx/429 and Milvus's retriable codes (rate limits, service not ready)
 * are retried with exponential backoff and jitter, at most max_attempts times
 * and never past the calling thread's deadline (quarry/trace.h); anything else
 * fails at once.
 *
 * Thread-safety: a client is immutable after milvus_client_new; every call
 * may run on any thread at once. */
#ifndef QUARRY_RETRIEVER_MILVUS_CLIENT_H
#define QUARRY_RETRIEVER_MILVUS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarry/arena.h"
#include "quarry/buf.h"
#include "quarry/error.h"

/* Room left in the schema for per-chunk access groups (not yet sent by any
 * service): at most this many groups of at most this many bytes each. When
 * access groups travel between services these become Q_LIMIT_* entries. */
#define MILVUS_ACCESS_GROUPS_MAX 64
#define MILVUS_ACCESS_GROUP_BYTES 128
/* Longest content type kept per chunk ("application/pdf"). */
#define MILVUS_CONTENT_TYPE_BYTES 128
/* Longest metadata JSON text kept per chunk. */
#define MILVUS_METADATA_BYTES 16384
/* Most doc_ids one search may be restricted to. */
#define MILVUS_FILTER_DOCS_MAX 1024
/* Largest top_k (limit) Milvus accepts for a search. */
#define MILVUS_TOP_K_MAX 16384

/* Settings; strings are copied by milvus_client_new. Zero/NULL fields take
 * the default named beside them. When wired into the retriever, each maps to
 * the QUARRY_MILVUS_* variable listed in docs/milvus.md. */
typedef struct milvus_cfg {
  const char *url;          /* base URL, "http://127.0.0.1:19530"; required */
  const char *token;        /* "user:password" or an API token; NULL: none */
  const char *token_file;   /* file holding the token (first line), used when
                               token is NULL; NULL: none */
  const char *db;           /* dbName; NULL or "": the server's default */
  const char *collection;   /* "quarry_chunks" */
  int dim;                  /* dense vector dimensions; required (1..8192) */
  int timeout_ms;           /* per attempt, capped by the thread's deadline; 5000 */
  int max_attempts;         /* attempts per call, first included; 4 */
  int backoff_ms;           /* first retry wait; 100 (doubles each retry) */
  int max_backoff_ms;       /* longest retry wait; 2000 */
  int hnsw_m;               /* HNSW M; 16 */
  int hnsw_ef_construction; /* HNSW efConstruction; 200 */
  int search_ef;            /* HNSW ef at search time (raised to top_k); 64 */
  double bm25_k1;           /* 1.2 */
  double bm25_b;            /* 0.75 */
  size_t max_reply_bytes;   /* cap on one reply; 16 MiB */
  /* The engine (milvus.c) does not fuse in Milvus: its hybrid op declines
   * and the retriever fuses the two lists itself. The client ignores it. */
  bool no_hybrid;
} milvus_cfg_t;

typedef struct milvus_client milvus_client_t;

/* Checks cfg, reads the token file if one is named, and creates a client.
 * Q_EINVAL (bad setting, unreadable token file; err says which) or Q_ENOMEM.
 * The caller frees *out with milvus_client_free. Makes no request. */
q_err_t milvus_client_new(const milvus_cfg_t *cfg, milvus_client_t **out, char *err,
                          size_t errlen);

/* Frees the client (wiping its copy of the token). NULL is fine. */
void milvus_client_free(milvus_client_t *c);

/* The collection name the client uses. */
const char *milvus_collection(const milvus_client_t *c);

/* Makes sure the collection exists with the schema of docs/milvus.md, its
 * indexes built and loaded: creates it when `has` says it does not exist,
 * checks an existing one's fields (a missing field or another dim is
 * Q_ECONFLICT: the collection was made by something else), then loads it
 * unless get_load_state already says loaded. */
q_err_t milvus_ensure_collection(milvus_client_t *c, char *err, size_t errlen);

/* Whether the collection is loaded (get_load_state answers LoadStateLoaded);
 * false on any error. One request, no retry. */
bool milvus_ready(milvus_client_t *c);

/* One chunk to store. Strings are UTF-8; NULL strings are stored empty. */
typedef struct milvus_chunk {
  const char *chunk_id;  /* 1..Q_LIMIT_CHUNK_ID_BYTES */
  const char *doc_id;    /* 1..Q_LIMIT_DOCUMENT_ID_BYTES */
  const char *tenant_id; /* 1..Q_LIMIT_TENANT_ID_BYTES */
  const char *title;     /* ..Q_LIMIT_TITLE_BYTES */
  const char *text;      /* ..Q_LIMIT_CHUNK_BYTES; what BM25 indexes */
  int64_t page, ordinal, version;
  int64_t created_ms;               /* Unix time in ms */
  const char *content_type;         /* ..MILVUS_CONTENT_TYPE_BYTES */
  const char *metadata_json;        /* a JSON object's text, or NULL for {} */
  const char *const *access_groups; /* n_access_groups strings */
  size_t n_access_groups;           /* ..MILVUS_ACCESS_GROUPS_MAX */
  const float *dense;               /* cfg.dim floats, finite */
} milvus_chunk_t;

/* Upserts chunks[0..n) in one request (n <= Q_LIMIT_UPSERT_CHUNKS). Every
 * chunk is checked first: a bad one is Q_EINVAL naming its index, and nothing
 * is sent. Upsert replaces rows by chunk_id, so a retry is harmless. */
q_err_t milvus_upsert(milvus_client_t *c, const milvus_chunk_t *chunks, size_t n,
                      char *err, size_t errlen);

/* Deletes the chunks of document doc_id of tenant, all of them when
 * keep_version < 0, else those whose version is not keep_version (what an
 * atomic replace does after upserting the new version's chunks). */
q_err_t milvus_delete_doc(milvus_client_t *c, const char *tenant, const char *doc_id,
                          int64_t keep_version, char *err, size_t errlen);

/* What a delete or count of a document keeps out of its filter: the chunks
 * named (`chunk_id not in [...]`, what an atomic replace retires after
 * upserting the new chunks), and/or only each document's first chunk
 * (`ordinal == 0`, to count documents). */
typedef struct milvus_keep {
  const char *const *chunk_ids; /* n_chunk_ids of them */
  size_t n_chunk_ids;
  bool first_chunks;
} milvus_keep_t;

/* Deletes the chunks of doc_id of tenant that keep does not keep out (all of
 * them when keep is NULL). */
q_err_t milvus_delete_where(milvus_client_t *c, const char *tenant, const char *doc_id,
                            const milvus_keep_t *keep, char *err, size_t errlen);

/* Number of chunks of tenant (of its document doc_id when not NULL) that the
 * filter keep describes, or a q_err_t. tenant NULL or "": over every tenant
 * (a count(*) without filter; only the number leaves Milvus). */
int64_t milvus_count_where(milvus_client_t *c, const char *tenant, const char *doc_id,
                           const milvus_keep_t *keep, char *err, size_t errlen);

/* Whether one of ids[0..n) is stored under a tenant other than tenant (the
 * primary key is the whole collection's, so an upsert of it would move that
 * row): 0 with *foreign NULL when none, or 0 with *foreign the first such id
 * (in arena); a q_err_t when Milvus cannot say. A query
 * `chunk_id in [...] && tenant_id != "<tenant>"` returning only ids. */
q_err_t milvus_foreign_chunk(milvus_client_t *c, const char *tenant,
                             const char *const *ids, size_t n, q_arena_t *arena,
                             const char **foreign, char *err, size_t errlen);

/* The doc_id of up to limit (1..MILVUS_TOP_K_MAX) chunks of tenant, one per
 * chunk (so repeated), in arena: what the engine counts documents with. */
q_err_t milvus_doc_ids(milvus_client_t *c, const char *tenant, int limit,
                       q_arena_t *arena, const char ***ids, size_t *n, char *err,
                       size_t errlen);

/* Restrictions of a search beyond its tenant; all optional. */
typedef struct milvus_filter {
  const char *const *doc_ids; /* only these documents (n_doc_ids of them) */
  size_t n_doc_ids;
  const char *const *access_groups; /* only chunks sharing one of these groups */
  size_t n_access_groups;
  /* A Milvus boolean expression over the row's fields (milvus_filter_expr
   * of engine/milvus_expr.h), ANDed in parentheses after the tenant's
   * conjunct; NULL or "": none. Built by this program, never by a client:
   * its strings must already be quoted. */
  const char *expr;
} milvus_filter_t;

/* A search. tenant is required; text for BM25, dense (cfg.dim floats) for
 * the vector search; top_k 1..MILVUS_TOP_K_MAX (candidates for
 * fusion and reranking, not the final answer). */
typedef struct milvus_query {
  const char *tenant;
  const milvus_filter_t *filter; /* NULL: none */
  const char *text;
  const float *dense;
  int top_k;
} milvus_query_t;

/* How hybrid_search combines its two lists. */
typedef enum { MILVUS_RANK_RRF, MILVUS_RANK_WEIGHTED } milvus_rank_kind_t;

typedef struct milvus_rank {
  milvus_rank_kind_t kind;
  int rrf_k;                 /* RRF: 1..16384 (60 is usual) */
  double dense_w, lexical_w; /* WEIGHTED: each in [0, 1] */
} milvus_rank_t;

/* One candidate, strings in the caller's arena. score: cosine similarity
 * (dense), BM25 score (lexical) or the fused score (hybrid); higher is
 * better. */
typedef struct milvus_hit {
  const char *chunk_id;
  const char *doc_id;
  double score;
  const char *title, *text; /* NULL when the reply lacks them */
  int64_t version, ordinal, page;
} milvus_hit_t;

/* Dense search with query->dense; BM25 search with query->text. On success
 * *hits (in arena, best first) holds *n <= top_k candidates of the query's
 * tenant. Q_EINVAL for a bad query; a hit of another tenant in the reply is
 * dropped and logged, never returned. */
q_err_t milvus_search_dense(milvus_client_t *c, const milvus_query_t *q, q_arena_t *arena,
                            milvus_hit_t **hits, size_t *n, char *err, size_t errlen);
q_err_t milvus_search_text(milvus_client_t *c, const milvus_query_t *q, q_arena_t *arena,
                           milvus_hit_t **hits, size_t *n, char *err, size_t errlen);

/* Both searches in one hybrid_search request, fused by the server as rank
 * says; needs query->text and query->dense. Same results as above. */
q_err_t milvus_hybrid_search(milvus_client_t *c, const milvus_query_t *q,
                             const milvus_rank_t *rank, q_arena_t *arena,
                             milvus_hit_t **hits, size_t *n, char *err, size_t errlen);

/* Number of stored chunks of tenant (a count(*) query), or a q_err_t. */
int64_t milvus_count(milvus_client_t *c, const char *tenant, char *err, size_t errlen);

/* Appends to b a Milvus string literal holding s (as milvus_quote). */
q_err_t milvus_quote_append(q_buf_t *b, const char *s);

/* Appends to out (size outlen, always terminated) a Milvus string literal
 * holding s: double quotes, with ", \ and control characters escaped.
 * Q_ETOOBIG when it does not fit, Q_EINVAL when s is not valid UTF-8. Public
 * for the tests of hostile ids. */
q_err_t milvus_quote(char *out, size_t outlen, const char *s);

/* Whether a body `code` of Milvus is worth retrying (rate limits, service not
 * ready, collection still loading). */
bool milvus_code_retriable(long code);

/* The wait before retry number `retry` (1 for the first retry): backoff_ms
 * doubling up to max_backoff_ms, of which the upper half is random. */
int milvus_backoff_ms(const milvus_client_t *c, int retry);

#endif
