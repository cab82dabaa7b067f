/* embedded.c - the embedded engine (see engine.h): the in-memory index
 * (index.h: BM25 and an HNSW graph per tenant) made durable by PostgreSQL
 * (store.h).
 *
 * An upsert is checked against the index, written to PostgreSQL in one
 * transaction (which gives each chunk its stable seq, the label of its
 * vector), and only then applied to the index; upserts are serialised, so
 * the table and the index change in the same order. An acknowledged upsert
 * is therefore durable: if the process dies before the index changed, the
 * next start rebuilds the index from the table. open rebuilds it.
 *
 * A background thread unlinks deleted vectors from the graphs once enough
 * have piled up (index_compact_vectors), beside searches and upserts. */
#include "engine/engine.h"
#include "index.h"
#include "store.h"

#include "quarry/log.h"
#include "quarry/pg.h"
#include "quarry/trace.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the maintenance thread looks for graphs worth compacting. */
#define MAINTAIN_MS 1000

typedef struct embedded {
  index_t *index;
  store_t *store;           /* NULL: memory only (tests) */
  pthread_mutex_t write_mu; /* one upsert at a time: table, then index */
  pthread_t maint;
  bool maint_started;
  pthread_mutex_t maint_mu;
  pthread_cond_t maint_cv;
  bool stopping;
} embedded_t;

static void *maintain_main(void *ud) {
  embedded_t *e = ud;
  pthread_mutex_lock(&e->maint_mu);
  while (!e->stopping) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += MAINTAIN_MS / 1000;
    ts.tv_nsec += (long)(MAINTAIN_MS % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&e->maint_cv, &e->maint_mu, &ts);
    if (e->stopping)
      break;
    pthread_mutex_unlock(&e->maint_mu);
    double t0 = q_now_s();
    size_t purged = index_compact_vectors(e->index, false);
    if (purged)
      q_log_info("retriever: deleted vectors unlinked from the graphs", "{s:I,s:f}",
                 "purged", (json_int_t)purged, "seconds", q_now_s() - t0);
    pthread_mutex_lock(&e->maint_mu);
  }
  pthread_mutex_unlock(&e->maint_mu);
  return NULL;
}

/* store_load's row callback: a stored vector the index refuses (another
 * dimension than the tenant's, say, after QUARRY_EMBED_DIM changed) is
 * dropped and the chunk loaded without it. */
static bool load_row_cb(void *ud, const char *tenant, const engine_chunk_t *chunk) {
  index_t *idx = ud;
  char why[256];
  if (index_upsert(idx, tenant, chunk, 1, NULL, NULL, why, sizeof why) == 0)
    return true;
  q_log_warn("retriever: stored vector refused; chunk loaded without it", "{s:s,s:s,s:s}",
             "chunk_id", chunk->chunk_id, "tenant_id", tenant, "reason", why);
  engine_chunk_t c = *chunk;
  c.dim = 0;
  c.embedding = NULL;
  return index_upsert(idx, tenant, &c, 1, NULL, NULL, why, sizeof why) == 0;
}

static void embedded_close(void *st) {
  embedded_t *e = st;
  if (!e)
    return;
  if (e->maint_started) {
    pthread_mutex_lock(&e->maint_mu);
    e->stopping = true;
    pthread_cond_signal(&e->maint_cv);
    pthread_mutex_unlock(&e->maint_mu);
    pthread_join(e->maint, NULL);
  }
  index_free(e->index);
  store_free(e->store);
  pthread_mutex_destroy(&e->write_mu);
  pthread_mutex_destroy(&e->maint_mu);
  pthread_cond_destroy(&e->maint_cv);
  free(e);
}

static q_err_t embedded_open(const engine_config_t *cfg, void **out, char *err,
                             size_t errlen) {
  embedded_t *e = calloc(1, sizeof *e);
  if (!e) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  pthread_mutex_init(&e->write_mu, NULL);
  pthread_mutex_init(&e->maint_mu, NULL);
  pthread_cond_init(&e->maint_cv, NULL);
  index_params_t ip = {
      .fixed_dim = cfg->fixed_dim,
      .m = cfg->hnsw_m,
      .ef_construction = cfg->hnsw_ef_construction,
      .ef_search = cfg->hnsw_ef_search,
      .exact_max = cfg->exact_max,
      .inner_product = cfg->inner_product,
  };
  q_err_t rc = 0;
  e->index = index_new(&ip);
  if (!e->index) {
    snprintf(err, errlen,
             "cannot create the index (out of memory or a parameter "
             "out of range)");
    rc = Q_EINVAL;
    goto fail;
  }
  if (cfg->pg) {
    e->store = store_new(cfg->pg, err, errlen);
    if (!e->store) {
      rc = Q_EUNAVAIL;
      goto fail;
    }
    int64_t t0 = q_now_ms();
    size_t loaded = 0;
    rc = store_load(e->store, load_row_cb, e->index, &loaded, err, errlen);
    if (rc)
      goto fail;
    q_log_info("index rebuilt", "{s:I,s:I}", "chunks", (json_int_t)loaded, "ms",
               (json_int_t)(q_now_ms() - t0));
  }
  if (pthread_create(&e->maint, NULL, maintain_main, e) != 0) {
    snprintf(err, errlen, "cannot start the maintenance thread");
    rc = Q_EINTERNAL;
    goto fail;
  }
  e->maint_started = true;
  *out = e;
  return 0;
fail:
  embedded_close(e);
  return rc;
}

static q_err_t embedded_upsert(void *st, const char *tenant, const engine_chunk_t *chunks,
                               size_t n, const char *replace_doc_id, size_t *retired,
                               char *err, size_t errlen) {
  embedded_t *e = st;
  size_t retired_db = 0, retired_mem = 0;
  engine_chunk_t *labelled = NULL;
  uint64_t *seqs = NULL;
  *retired = 0;
  pthread_mutex_lock(&e->write_mu);
  q_err_t rc = index_check(e->index, tenant, chunks, n, err, errlen);
  if (rc)
    goto unlock;
  if (e->store) {
    seqs = calloc(n ? n : 1, sizeof *seqs);
    labelled = malloc((n ? n : 1) * sizeof *labelled);
    if (!seqs || !labelled) {
      snprintf(err, errlen, "out of memory");
      rc = Q_ENOMEM;
      goto unlock;
    }
    rc = store_upsert(e->store, tenant, chunks, n, replace_doc_id, &retired_db, seqs, err,
                      errlen);
    if (rc)
      goto unlock;
    for (size_t i = 0; i < n; i++) {
      labelled[i] = chunks[i];
      labelled[i].seq = seqs[i];
    }
    chunks = labelled;
  }
  rc = index_upsert(e->index, tenant, chunks, n, replace_doc_id, &retired_mem, err,
                    errlen);
  if (rc) {
    /* Cannot happen after index_check under the same lock; if it does, the
     * table and the index disagree until a restart. */
    q_log_error("retriever: stored upsert not applied to the index", "{s:s,s:s}",
                "tenant_id", tenant, "reason", err);
    rc = Q_EINTERNAL;
    goto unlock;
  }
  if (!e->store)
    retired_db = retired_mem;
  else if (retired_db != retired_mem)
    q_log_warn("retriever: table and index retired different counts", "{s:s,s:i,s:i}",
               "tenant_id", tenant, "table", (int)retired_db, "index", (int)retired_mem);
  *retired = retired_db;
unlock:
  pthread_mutex_unlock(&e->write_mu);
  free(seqs);
  free(labelled);
  return rc;
}

static q_err_t embedded_remove(void *st, const char *tenant, const char *doc_id,
                               size_t *retired, char *err, size_t errlen) {
  return embedded_upsert(st, tenant, NULL, 0, doc_id, retired, err, errlen);
}

static q_err_t embedded_search(void *st, const engine_query_t *q, q_arena_t *arena,
                               engine_result_t *out, char *err, size_t errlen) {
  embedded_t *e = st;
  memset(out, 0, sizeof *out);
  q_err_t rc = 0;
  if (q->lists & ENGINE_DENSE) {
    rc = index_dense(e->index, q->tenant, q->embedding, q->dim, q->top_k, q->filter,
                     arena, &out->dense, &out->ndense, &out->dense_used,
                     &out->dense_exact, err, errlen);
    if (rc)
      return rc;
  }
  if (q->lists & ENGINE_LEXICAL)
    rc = index_lexical(e->index, q->tenant, q->text, q->text_len, q->top_k, q->filter,
                       arena, &out->lexical, &out->nlexical, err, errlen);
  return rc;
}

static q_err_t embedded_stats(void *st, const char *tenant, engine_stats_t *out,
                              char *err, size_t errlen) {
  (void)err;
  (void)errlen;
  embedded_t *e = st;
  index_stats_t s;
  index_stats(e->index, tenant, &s);
  *out = (engine_stats_t){s.chunks, s.documents, s.terms, s.vectors};
  return 0;
}

static int64_t embedded_chunk_count(void *st) {
  return index_chunk_count(((embedded_t *)st)->index);
}

static q_err_t embedded_snapshot(void *st, const char *dir, char *err, size_t errlen) {
  (void)st;
  (void)dir;
  snprintf(err, errlen,
           "the embedded engine has no snapshots yet: it rebuilds its "
           "index from PostgreSQL at start");
  return Q_EUNIMPL;
}

static bool embedded_ready(void *st, char *why, size_t whylen) {
  embedded_t *e = st;
  return !e->store || store_ping(e->store, why, whylen);
}

static int64_t embedded_lag_ms(void *st) {
  (void)st;
  return 0; /* searchable when upsert returns */
}

const engine_ops_t engine_embedded_ops = {
    .name = "embedded",
    .open = embedded_open,
    .close = embedded_close,
    .upsert = embedded_upsert,
    .remove = embedded_remove,
    .search = embedded_search,
    .stats = embedded_stats,
    .chunk_count = embedded_chunk_count,
    .snapshot = embedded_snapshot,
    .restore = embedded_snapshot,
    .ready = embedded_ready,
    .lag_ms = embedded_lag_ms,
};
