/* main.c - quarry-retriever: lexical, dense and hybrid retrieval per tenant.
 *
 * Opens the configured engine (engine/engine.h; the embedded one waits for
 * PostgreSQL, migrates retriever_chunks and rebuilds its index from it), then
 * serves quarry.v1.Retriever (handlers.c). */
#include "engine/engine.h"
#include "engine/hnsw.h"
#include "engine/milvus_client.h"
#include "handlers.h"
#include "search.h"

#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/service.h"
#include "quarry/trace.h"
#include "quarry/v1/retriever.pb-c.h"

#include "quarry/text.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static q_common_cfg_t common;
static q_pg_cfg_t pg;
static const char *engine_name, *fusion_weights, *metric, *vector_type, *data_dir;
static const char *bm25_k1, *bm25_b, *title_weight, *stopwords;
static const char *mv_url, *mv_token, *mv_token_file, *mv_db, *mv_collection;
static int64_t mv_timeout_ms, mv_attempts, mv_backoff_ms, mv_max_backoff_ms, mv_hnsw_m,
    mv_hnsw_efc, mv_search_ef;
static int mv_hybrid;
static int64_t default_top_k, max_top_k, embed_dim, rrf_k, hnsw_m, hnsw_efc, hnsw_efs,
    exact_max, poll_ms, max_lag_ms, snapshot_changes, snapshot_interval_ms,
    replica_ttl_ms, prune_interval_ms, log_retain_ms;

static q_err_t validate_engine(const char *value, char *err, size_t errlen) {
  if (engine_find(value))
    return 0;
  snprintf(err, errlen, "no engine \"%s\" (there are: %s)", value, engine_names());
  return Q_EINVAL;
}

static q_err_t validate_metric(const char *value, char *err, size_t errlen) {
  if (strcmp(value, "cosine") == 0 || strcmp(value, "inner_product") == 0)
    return 0;
  snprintf(err, errlen, "\"%s\" is neither cosine nor inner_product", value);
  return Q_EINVAL;
}

static q_err_t validate_vector_type(const char *value, char *err, size_t errlen) {
  if (strcmp(value, "float32") == 0 || strcmp(value, "int8") == 0)
    return 0;
  snprintf(err, errlen, "\"%s\" is neither float32 nor int8", value);
  return Q_EINVAL;
}

/* A decimal number in [lo, hi]; *out set when it is. */
static bool parse_number(const char *value, double lo, double hi, double *out) {
  char *end;
  double v = strtod(value, &end);
  if (end == value || *end || !isfinite(v) || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

static q_err_t validate_k1(const char *value, char *err, size_t errlen) {
  double v;
  if (parse_number(value, 0, 1000, &v))
    return 0;
  snprintf(err, errlen, "\"%s\" is not a number from 0 to 1000", value);
  return Q_EINVAL;
}

static q_err_t validate_unit(const char *value, char *err, size_t errlen) {
  double v;
  if (parse_number(value, 0, 1, &v))
    return 0;
  snprintf(err, errlen, "\"%s\" is not a number from 0 to 1", value);
  return Q_EINVAL;
}

static q_err_t validate_stopwords(const char *value, char *err, size_t errlen) {
  q_text_stopwords_t *sw = NULL;
  q_err_t rc = q_text_stopwords_new(value, &sw, err, errlen);
  q_text_stopwords_free(sw);
  return rc;
}

static q_cfg_entry_t cfg[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7003", "127.0.0.1:9103"),
    Q_CFG_PG_ENTRIES(pg),
    {"QUARRY_RETRIEVER_ENGINE", Q_CFG_STRING, "embedded", 0, 0, validate_engine,
     "Retrieval engine: embedded (in-memory BM25 and HNSW, rebuilt from PostgreSQL "
     "at start) or milvus (a Milvus server: QUARRY_MILVUS_*, docs/milvus.md).",
     0, &engine_name},
    {"QUARRY_RETRIEVER_DEFAULT_TOP_K", Q_CFG_INT, "50", 1, 100000, NULL,
     "Passages returned by Search when the request sets no top_k.", 0, &default_top_k},
    {"QUARRY_RETRIEVER_MAX_TOP_K", Q_CFG_INT, "1000", 1, HNSW_MAX_K, NULL,
     "Largest top_k a Search may ask for (larger is refused).", 0, &max_top_k},
    {"QUARRY_EMBED_DIM", Q_CFG_INT, "0", 0, ENGINE_MAX_DIM, NULL,
     "Dimensions every stored and query embedding must have; 0 lets each "
     "tenant's first stored vector decide.",
     0, &embed_dim},
    {"QUARRY_RETRIEVER_FUSION_WEIGHTS", Q_CFG_STRING, "quarry-hash-=rrf:0,*=rrf:100", 0,
     0, search_policy_validate,
     "How hybrid search fuses the lexical and dense lists, per embedder: "
     "comma-separated PREFIX=METHOD:PERCENT rules; the first whose PREFIX begins "
     "the query's embed_model (* matches any) gives the method (rrf or weighted) "
     "and the dense weight in percent of the lexical one. 0 marks a weak embedder: "
     "the lexical ranking is kept and dense-only hits follow it. The default was "
     "chosen by cross-validation on SciFact (docs/retrieval.md).",
     0, &fusion_weights},
    {"QUARRY_RETRIEVER_METRIC", Q_CFG_STRING, "cosine", 0, 0, validate_metric,
     "Dense similarity: cosine (vectors normalised) or inner_product (vectors as "
     "given, for embedders trained for it).",
     0, &metric},
    {"QUARRY_RETRIEVER_VECTOR_TYPE", Q_CFG_STRING, "float32", 0, 0, validate_vector_type,
     "Embedded engine: how the HNSW graphs keep vectors in memory. float32 (4 bytes a "
     "dimension, exact scores) or int8 (1 byte a dimension plus a 4-byte scale per "
     "vector: a 384-d index takes a third of the memory; graph and search on the "
     "codes, so scores are approximate and recall@10 levels off near 0.95 on tightly "
     "clustered data; docs/retrieval.md, int8). A snapshot of the other type is "
     "discarded and the index rebuilt from PostgreSQL.",
     0, &vector_type},
    {"QUARRY_RETRIEVER_RRF_K", Q_CFG_INT, "60", 1, 10000, NULL,
     "Constant k of reciprocal rank fusion, 1 / (k + rank).", 0, &rrf_k},
    {"QUARRY_RETRIEVER_HNSW_M", Q_CFG_INT, "16", 2, HNSW_MAX_M, NULL,
     "HNSW links per node and layer (2M on layer 0): recall against memory.", 0, &hnsw_m},
    {"QUARRY_RETRIEVER_HNSW_EF_CONSTRUCTION", Q_CFG_INT, "200", 1, HNSW_MAX_EF, NULL,
     "HNSW candidates kept while inserting: graph quality against insert time.", 0,
     &hnsw_efc},
    {"QUARRY_RETRIEVER_HNSW_EF_SEARCH", Q_CFG_INT, "64", 1, HNSW_MAX_EF, NULL,
     "HNSW candidates kept while searching (at least top_k is always used): recall "
     "against latency.",
     0, &hnsw_efs},
    {"QUARRY_RETRIEVER_BM25_K1", Q_CFG_STRING, "1.2", 0, 0, validate_k1,
     "BM25F term-frequency saturation k1 (0 to 1000; 0: a term counts once however "
     "often it occurs). Embedded engine.",
     0, &bm25_k1},
    {"QUARRY_RETRIEVER_BM25_B", Q_CFG_STRING, "0.75", 0, 0, validate_unit,
     "BM25F length normalisation b (0: none, 1: full). Embedded engine.", 0, &bm25_b},
    {"QUARRY_RETRIEVER_BM25_TITLE_WEIGHT", Q_CFG_STRING, "1", 0, 0, validate_k1,
     "BM25F weight of the title field: a title occurrence of a term counts as this "
     "many occurrences in the text, in tf and in length (0: titles are not searched). "
     "Applied at search time, so a change needs no rebuild. The default was chosen "
     "by cross-validation on SciFact (docs/retrieval.md). Embedded engine.",
     0, &title_weight},
    {"QUARRY_RETRIEVER_STOPWORDS", Q_CFG_STRING, "english", 0, 0, validate_stopwords,
     "Words the lexical index leaves out: english (the tokenizer's built-in list, "
     "docs/retrieval.md), none, or the path of a file with one word per line (# "
     "comments). A change rebuilds the index at the next start (the snapshot records "
     "the list). Embedded engine.",
     0, &stopwords},
    {"QUARRY_RETRIEVER_EXACT_MAX", Q_CFG_INT, "20000", 0, 1000000000, NULL,
     "A tenant with at most this many vectors is searched exactly (every vector "
     "compared) instead of by an HNSW walk.",
     0, &exact_max},
    {"QUARRY_MILVUS_URL", Q_CFG_STRING, "", 0, 0, NULL,
     "Milvus engine: base URL of the Milvus server (2.5 or later, REST v2), e.g. "
     "http://127.0.0.1:19530; required with QUARRY_RETRIEVER_ENGINE=milvus, which also "
     "needs QUARRY_EMBED_DIM (docs/milvus.md).",
     0, &mv_url},
    {"QUARRY_MILVUS_TOKEN", Q_CFG_STRING, "", 0, 0, NULL,
     "Milvus engine: sent as Authorization: Bearer (user:password, or an API key of "
     "the managed service); empty: none.",
     1, &mv_token},
    {"QUARRY_MILVUS_TOKEN_FILE", Q_CFG_STRING, "", 0, 0, NULL,
     "Milvus engine: file whose first line is the token (a mounted secret), read when "
     "QUARRY_MILVUS_TOKEN is empty.",
     0, &mv_token_file},
    {"QUARRY_MILVUS_DB", Q_CFG_STRING, "", 0, 0, NULL,
     "Milvus engine: database (dbName); empty: the server's default.", 0, &mv_db},
    {"QUARRY_MILVUS_COLLECTION", Q_CFG_STRING, "quarry_chunks", 0, 0, NULL,
     "Milvus engine: the collection holding every tenant's chunks (created with its "
     "schema when missing).",
     0, &mv_collection},
    {"QUARRY_MILVUS_TIMEOUT_MS", Q_CFG_INT, "5000", 1, 600000, NULL,
     "Milvus engine: time allowed to one request (never past the caller's deadline).", 0,
     &mv_timeout_ms},
    {"QUARRY_MILVUS_ATTEMPTS", Q_CFG_INT, "4", 1, 20, NULL,
     "Milvus engine: attempts per request, the first included (retries on connection "
     "errors, HTTP 5xx/429 and Milvus's retriable codes).",
     0, &mv_attempts},
    {"QUARRY_MILVUS_BACKOFF_MS", Q_CFG_INT, "100", 1, 60000, NULL,
     "Milvus engine: wait before the first retry, doubling each retry.", 0,
     &mv_backoff_ms},
    {"QUARRY_MILVUS_MAX_BACKOFF_MS", Q_CFG_INT, "2000", 1, 600000, NULL,
     "Milvus engine: longest wait between retries.", 0, &mv_max_backoff_ms},
    {"QUARRY_MILVUS_HNSW_M", Q_CFG_INT, "16", 2, 2048, NULL,
     "Milvus engine: HNSW M of the dense index (used only when creating the "
     "collection).",
     0, &mv_hnsw_m},
    {"QUARRY_MILVUS_HNSW_EF_CONSTRUCTION", Q_CFG_INT, "200", 1, 65536, NULL,
     "Milvus engine: HNSW efConstruction (used only when creating the collection).", 0,
     &mv_hnsw_efc},
    {"QUARRY_MILVUS_SEARCH_EF", Q_CFG_INT, "64", 1, 65536, NULL,
     "Milvus engine: HNSW ef at search time (raised to top_k).", 0, &mv_search_ef},
    {"QUARRY_MILVUS_HYBRID_SEARCH", Q_CFG_BOOL, "true", 0, 0, NULL,
     "Milvus engine: a hybrid search whose fusion rule Milvus can express (plain RRF, "
     "or weighted) is one hybrid_search request fused by Milvus; false: two searches "
     "fused by the retriever (which also reports each list's score).",
     0, &mv_hybrid},
    {"QUARRY_RETRIEVER_LOG_POLL_MS", Q_CFG_INT, "500", 10, 60000, NULL,
     "How often a replica reads the change log when no notification woke it "
     "(LISTEN/NOTIFY wakes it at once after each write of another replica; the "
     "poll covers lost notifications).",
     0, &poll_ms},
    {"QUARRY_RETRIEVER_MAX_LAG_MS", Q_CFG_INT, "5000", 1, 86400000, NULL,
     "A replica whose oldest change not yet applied from the change log is older "
     "than this is not ready (/readyz 503 naming the lag).",
     0, &max_lag_ms},
    {"QUARRY_RETRIEVER_DATA_DIR", Q_CFG_STRING, "./data/retriever", 0, 0, NULL,
     "Directory of the embedded engine's snapshot (index.snap and one graph file per "
     "tenant), loaded at start so only the change log after it is replayed; empty: no "
     "snapshots, rebuild from PostgreSQL at every start. One directory per replica.",
     0, &data_dir},
    {"QUARRY_RETRIEVER_SNAPSHOT_CHANGES", Q_CFG_INT, "10000", 1, 1000000000, NULL,
     "A snapshot is written in the background after this many changes (upserts, "
     "deletes, changes applied from other replicas), and at a clean shutdown.",
     0, &snapshot_changes},
    {"QUARRY_RETRIEVER_SNAPSHOT_INTERVAL_MS", Q_CFG_INT, "600000", 0, 86400000, NULL,
     "A snapshot is also written this often when anything changed since the last "
     "one; 0: only by count and at shutdown.",
     0, &snapshot_interval_ms},
    {"QUARRY_RETRIEVER_REPLICA_TTL_MS", Q_CFG_INT, "60000", 1000, 86400000, NULL,
     "A replica records a heartbeat in retriever_replicas every quarter of this; one "
     "silent longer is not live, and no longer holds the change log back from pruning "
     "(it then rebuilds from PostgreSQL if its snapshot is older than what was pruned).",
     0, &replica_ttl_ms},
    {"QUARRY_RETRIEVER_PRUNE_INTERVAL_MS", Q_CFG_INT, "60000", 0, 86400000, NULL,
     "How often each replica prunes the change log: deletes the changes that every live "
     "replica's snapshot (or, without snapshots, what it applied) already covers, older "
     "than QUARRY_RETRIEVER_LOG_RETAIN_MS. 0: never prune.",
     0, &prune_interval_ms},
    {"QUARRY_RETRIEVER_LOG_RETAIN_MS", Q_CFG_INT, "86400000", 0, 31536000000, NULL,
     "Retention floor of the change log: a change younger than this is never pruned, "
     "whatever the replicas' positions.",
     0, &log_retain_ms},
};

int main(int argc, char **argv) {
  q_service_t svc;
  engine_t engine = {0};
  retriever_t r;
  int r_ok = 0;
  char err[512] = "";
  int rc =
      q_service_init(&svc, "quarry-retriever",
                     "Lexical, dense and hybrid retrieval over each tenant's chunks.",
                     cfg, Q_NELEM(cfg), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  if (default_top_k > max_top_k) {
    q_log_error("QUARRY_RETRIEVER_DEFAULT_TOP_K exceeds QUARRY_RETRIEVER_MAX_TOP_K",
                NULL);
    rc = 2;
    goto done;
  }

  engine_config_t ec = {
      .pg = &pg,
      .fixed_dim = (size_t)embed_dim,
      .hnsw_m = (uint32_t)hnsw_m,
      .hnsw_ef_construction = (uint32_t)hnsw_efc,
      .hnsw_ef_search = (uint32_t)hnsw_efs,
      .exact_max = (size_t)exact_max,
      .inner_product = strcmp(metric, "inner_product") == 0,
      .int8_vectors = strcmp(vector_type, "int8") == 0,
      .poll_ms = poll_ms,
      .max_lag_ms = max_lag_ms,
      .data_dir = data_dir,
      .snapshot_changes = snapshot_changes,
      .snapshot_interval_ms = snapshot_interval_ms,
      .replica_ttl_ms = replica_ttl_ms,
      .prune_interval_ms = prune_interval_ms,
      .log_retain_ms = log_retain_ms,
      .bm25 = true,
      .bm25_k1 = strtod(bm25_k1, NULL),
      .bm25_b = strtod(bm25_b, NULL),
      .title_weight = strtod(title_weight, NULL),
      .stopwords = stopwords,
  };
  milvus_cfg_t mc = {
      .url = mv_url,
      .token = *mv_token ? mv_token : NULL,
      .token_file = *mv_token_file ? mv_token_file : NULL,
      .db = mv_db,
      .collection = mv_collection,
      .timeout_ms = (int)mv_timeout_ms,
      .max_attempts = (int)mv_attempts,
      .backoff_ms = (int)mv_backoff_ms,
      .max_backoff_ms = (int)mv_max_backoff_ms,
      .hnsw_m = (int)mv_hnsw_m,
      .hnsw_ef_construction = (int)mv_hnsw_efc,
      .search_ef = (int)mv_search_ef,
      .no_hybrid = !mv_hybrid,
  };
  if (*mv_url)
    ec.milvus = &mc;
  if (engine_open(&engine, engine_name, &ec, err, sizeof err) != 0) {
    q_log_error("cannot open the retrieval engine; exiting", "{s:s,s:s,s:I}", "engine",
                engine_name, "reason", err, "pg_wait_ms", (json_int_t)pg.wait_ms);
    rc = 1;
    goto done;
  }
  if (retriever_init(&r, &engine, default_top_k, max_top_k) != 0) {
    rc = 1;
    goto done;
  }
  r_ok = 1;
  r.policy.rrf_k = (unsigned)rrf_k;
  if (search_policy_parse(fusion_weights, &r.policy, err, sizeof err) != 0) {
    q_log_error("QUARRY_RETRIEVER_FUSION_WEIGHTS", "{s:s}", "reason", err);
    rc = 2;
    goto done;
  }
  q_log_info("retrieval engine open", "{s:s,s:s}", "engine", engine_name, "fusion",
             fusion_weights);
  if (q_service_start(&svc, &quarry__v1__retriever__descriptor, retriever_methods,
                      retriever_nmethods, &r, retriever_ready_cb, &r)) {
    rc = 1;
    goto done;
  }
  q_service_wait(&svc);
  rc = 0;
done:
  /* The side port (whose /metrics reads the engine) stops first. */
  q_service_cleanup(&svc);
  if (r_ok)
    retriever_cleanup(&r);
  engine_close(&engine);
  return rc;
}
