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
 * Replicas: every write also appends to the change log (store.h,
 * retriever_changes) in its transaction. A tailer thread per engine reads
 * the log after the last position it applied, woken by LISTEN/NOTIFY at
 * each commit and polling every poll_ms in case a notification is lost (a
 * dropped listening connection is reopened), and applies in position order
 * the changes other replicas made: for each, the document's active rows are
 * reloaded and replace the document in the index, under the write lock, so
 * that a local upsert and a replayed one never interleave. The replica that
 * served a write applied it at once and skips its own entries. Readiness
 * fails while the oldest unapplied change is older than max_lag_ms.
 *
 * A background thread unlinks deleted vectors from the graphs once enough
 * have piled up (index_compact_vectors), beside searches and upserts. */
#include "engine/engine.h"
#include "engine/snapshot.h"
#include "index.h"
#include "store.h"

#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/pg.h"
#include "quarry/trace.h"

#include <errno.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How often the maintenance thread looks for graphs worth compacting. */
#define MAINTAIN_MS 1000
/* Changes read from the log per query. */
#define TAIL_BATCH 256
/* The tailer checks for a stop request at least this often (ms). */
#define TAIL_SLICE_MS 100
/* After a snapshot failed (disk full, directory not writable), the next try
 * waits this long. */
#define SNAPSHOT_RETRY_MS 60000

typedef struct embedded {
  index_t *index;
  store_t *store;           /* NULL: memory only (tests) */
  pthread_mutex_t write_mu; /* one upsert at a time: table, then index */
  pthread_t maint;
  bool maint_started;
  pthread_mutex_t maint_mu;
  pthread_cond_t maint_cv;
  bool stopping;

  /* Change log (store.h). tail_pos: every change up to it is reflected in
   * the index; written by the tailer under write_mu. */
  int64_t tail_pos;
  _Atomic int64_t lag_ms, head;
  int64_t poll_ms, max_lag_ms;
  char *dsn; /* for the listening connection */
  pthread_t tailer;
  bool tailer_started;
  atomic_bool tail_stop;
  /* What the gauges read (q_metrics_gauge_fn at scrape time: the threads
   * never call the registry, which the service frees before the engine). */
  _Atomic int64_t pos_pub, applied_n, snap_ms, snap_bytes;

  /* Snapshots (engine/snapshot.h): dir NULL when off. changed counts the
   * changes (local or applied) since the last snapshot or load. */
  char *snap_dir;
  int64_t snap_changes, snap_interval_ms, snap_at_ms;
  int64_t snap_retry_ms; /* after a failed write, none before this time */
  _Atomic int64_t changed;
  snapshot_meta_t snap_meta;
  /* Pruning (store.h): the position of the durable snapshot a restart
   * would load (-1: none), the heartbeat and prune schedule, and whether
   * the log was pruned past what this replica applied (it then missed
   * changes: not ready until restarted). */
  _Atomic int64_t snap_pos;
  int64_t replica_ttl_ms, prune_interval_ms, log_retain_ms;
  int64_t beat_at_ms, prune_at_ms;
  atomic_bool pruned_past;
  _Atomic int64_t pruned_through;
  q_text_stopwords_t *stopwords; /* the lexical index's list (NULL: built-in) */
  bool opened; /* open succeeded: the index is whole (a failed open's is not) */
} embedded_t;

static bool snapshot_due(embedded_t *e);
static void take_snapshot(embedded_t *e, const char *why);
static void beat(embedded_t *e);
static void prune(embedded_t *e);

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
    if (snapshot_due(e))
      take_snapshot(e, "background");
    if (e->store) {
      int64_t now = q_now_ms();
      if (now - e->beat_at_ms >= e->replica_ttl_ms / 4)
        beat(e);
      if (e->prune_interval_ms > 0 && now - e->prune_at_ms >= e->prune_interval_ms)
        prune(e);
    }
    pthread_mutex_lock(&e->maint_mu);
  }
  pthread_mutex_unlock(&e->maint_mu);
  return NULL;
}

/* ---- snapshots ------------------------------------------------------------ */

/* Whether the maintenance thread should write a snapshot now. */
static bool snapshot_due(embedded_t *e) {
  if (!e->snap_dir)
    return false;
  int64_t changed = atomic_load(&e->changed);
  if (changed <= 0 || q_now_ms() < e->snap_retry_ms)
    return false;
  if (changed >= e->snap_changes)
    return true;
  return e->snap_interval_ms > 0 && q_now_ms() - e->snap_at_ms >= e->snap_interval_ms;
}

/* Writes a snapshot of the index at the current log position. Upserts and
 * the tailer wait meanwhile (the write lock keeps the position and the
 * contents together); searches go on. Failure is logged: the previous
 * snapshot stays, and PostgreSQL holds everything anyway. */
static void take_snapshot(embedded_t *e, const char *why) {
  char err[512] = "";
  snapshot_info_t info = {0};
  double t0 = q_now_s();
  pthread_mutex_lock(&e->write_mu);
  int64_t changed = atomic_load(&e->changed);
  q_err_t rc = snapshot_write(e->index, e->snap_dir, e->tail_pos, &e->snap_meta, &info,
                              err, sizeof err);
  if (!rc) {
    atomic_fetch_sub(&e->changed, changed);
    atomic_store(&e->snap_pos, info.pos);
    e->beat_at_ms = 0; /* tell the pruner soon: the log before it may go */
  }
  pthread_mutex_unlock(&e->write_mu);
  e->snap_at_ms = q_now_ms();
  double took = q_now_s() - t0;
  if (rc) {
    q_log_warn("retriever: snapshot not written; the previous one stays, retried in a "
               "minute",
               "{s:s,s:s,s:s}", "dir", e->snap_dir, "why", why, "reason", err);
    e->snap_retry_ms = q_now_ms() + SNAPSHOT_RETRY_MS;
    return;
  }
  atomic_store(&e->snap_ms, (int64_t)(took * 1000));
  atomic_store(&e->snap_bytes, (int64_t)info.bytes);
  q_log_info("snapshot written", "{s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "dir", e->snap_dir,
             "why", why, "log_position", (json_int_t)info.pos, "tenants",
             (json_int_t)info.tenants, "chunks", (json_int_t)info.chunks, "bytes",
             (json_int_t)info.bytes, "seconds", took);
}

/* ---- pruning the change log ---------------------------------------------- */

/* Where this replica still needs the log from to restart quickly: after its
 * durable snapshot, or, without one, after what it applied (a start without
 * a snapshot rebuilds from retriever_chunks and needs no older change). */
static int64_t keep_after(embedded_t *e) {
  int64_t snap = atomic_load(&e->snap_pos);
  return snap >= 0 ? snap : atomic_load(&e->pos_pub);
}

/* Records the heartbeat; notices a log pruned past what was applied. */
static void beat(embedded_t *e) {
  char err[256];
  int64_t through = 0, applied = atomic_load(&e->pos_pub);
  e->beat_at_ms = q_now_ms();
  if (store_replica_beat(e->store, store_origin(e->store), keep_after(e),
                         atomic_load(&e->snap_pos), applied, &through, err,
                         sizeof err) != 0) {
    q_log_warn("retriever: heartbeat not recorded", "{s:s}", "reason", err);
    return;
  }
  atomic_store(&e->pruned_through, through);
  /* Changes after what was applied, up to the pruned head, may be gone: this
   * replica's heartbeat lapsed while another pruned. It cannot replay them. */
  if (through > applied && !atomic_exchange(&e->pruned_past, true))
    q_log_error("retriever: the change log was pruned past what this replica applied; "
                "restart it to rebuild from PostgreSQL",
                "{s:I,s:I}", "applied", (json_int_t)applied, "pruned_through",
                (json_int_t)through);
}

/* Prunes in batches (store_prune's), until a batch is not full or the
 * engine closes (tail_stop is set first thing in close). */
static void prune(embedded_t *e) {
  char err[256];
  store_prune_t p;
  int64_t deleted = 0;
  double t0 = q_now_s();
  e->prune_at_ms = q_now_ms();
  do {
    if (store_prune(e->store, e->replica_ttl_ms, e->log_retain_ms, &p, err, sizeof err) !=
        0) {
      q_log_warn("retriever: change log not pruned", "{s:s}", "reason", err);
      break;
    }
    deleted += p.deleted;
  } while (p.deleted >= STORE_PRUNE_BATCH && !atomic_load(&e->tail_stop));
  if (deleted > 0)
    q_log_info("change log pruned", "{s:I,s:I,s:I,s:I,s:f}", "deleted",
               (json_int_t)deleted, "pruned_through", (json_int_t)p.through, "bound",
               (json_int_t)p.bound, "live_replicas", (json_int_t)p.live, "seconds",
               q_now_s() - t0);
}

/* Loads the snapshot into the (empty) index: true with e->tail_pos set, or
 * false (logged) with the index emptied again: a corrupt, old or foreign
 * snapshot is never served. */
static bool load_snapshot(embedded_t *e, const index_params_t *ip) {
  char err[512] = "";
  snapshot_info_t info = {0};
  int64_t t0 = q_now_ms();
  q_err_t rc =
      snapshot_read(e->index, e->snap_dir, &e->snap_meta, &info, err, sizeof err);
  if (!rc) {
    /* A snapshot ahead of the log belongs to another database (or one
     * restored from an older backup): its contents cannot be trusted. */
    int64_t head = 0, age = 0;
    rc = store_log_state(e->store, 0, &head, &age, err, sizeof err);
    if (!rc && info.pos > head) {
      snprintf(err, sizeof err,
               "snapshot at log position %lld, but the log ends at %lld (another "
               "database?)",
               (long long)info.pos, (long long)head);
      rc = Q_EINVAL;
    }
    /* The changes between the snapshot and the pruned head are gone: the
     * tail cannot be replayed (the heartbeat registered before this read
     * keeps the head where it is now). */
    int64_t through = atomic_load(&e->pruned_through);
    if (!rc && info.pos < through) {
      snprintf(err, sizeof err,
               "snapshot at log position %lld, but the log is pruned through %lld",
               (long long)info.pos, (long long)through);
      rc = Q_EINVAL;
    }
  }
  if (rc == Q_ENOTFOUND) {
    q_log_info("no snapshot; rebuilding the index from PostgreSQL", "{s:s}", "dir",
               e->snap_dir);
  } else if (rc) {
    q_log_warn("snapshot discarded; rebuilding the index from PostgreSQL", "{s:s,s:s}",
               "dir", e->snap_dir, "reason", err);
  }
  if (rc) {
    index_free(e->index);
    e->index = index_new(ip);
    return false;
  }
  e->tail_pos = info.pos;
  atomic_store(&e->snap_pos, info.pos);
  q_log_info("index loaded from snapshot", "{s:I,s:I,s:I,s:I}", "chunks",
             (json_int_t)info.chunks, "tenants", (json_int_t)info.tenants, "ms",
             (json_int_t)(q_now_ms() - t0), "log_position", (json_int_t)info.pos);
  return true;
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

/* ---- gauges ---------------------------------------------------------------- */

static double gauge_applied_cb(void *ud) {
  return (double)atomic_load(&((embedded_t *)ud)->applied_n);
}

static double gauge_lag_cb(void *ud) {
  return (double)atomic_load(&((embedded_t *)ud)->lag_ms) / 1000.0;
}

static double gauge_pos_cb(void *ud) {
  return (double)atomic_load(&((embedded_t *)ud)->pos_pub);
}

static double gauge_snap_seconds_cb(void *ud) {
  return (double)atomic_load(&((embedded_t *)ud)->snap_ms) / 1000.0;
}

static double gauge_snap_bytes_cb(void *ud) {
  return (double)atomic_load(&((embedded_t *)ud)->snap_bytes);
}

/* ---- the change log tailer ---------------------------------------------- */

/* store_load_doc's callback: the document's active rows replace it in the
 * index. A vector the index refuses is dropped as at load (logged). */
static q_err_t apply_doc_cb(void *ud, const char *tenant, const char *doc_id,
                            const engine_chunk_t *chunks, size_t n, char *err,
                            size_t errlen) {
  embedded_t *e = ud;
  size_t retired = 0;
  if (index_upsert(e->index, tenant, chunks, n, doc_id, &retired, err, errlen) == 0)
    return 0;
  q_log_warn("retriever: replicated vectors refused; document applied without them",
             "{s:s,s:s,s:s}", "tenant_id", tenant, "doc_id", doc_id, "reason", err);
  engine_chunk_t *bare = malloc((n ? n : 1) * sizeof *bare);
  if (!bare) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    bare[i] = chunks[i];
    bare[i].embedding = NULL;
    bare[i].dim = 0;
  }
  q_err_t rc = index_upsert(e->index, tenant, bare, n, doc_id, &retired, err, errlen);
  free(bare);
  return rc;
}

/* Applies the log after tail_pos, in order, until it is exhausted or an
 * error stops it (retried at the next wake-up). Returns how many changes of
 * other replicas were applied; *failed tells whether it stopped early. */
static size_t apply_tail(embedded_t *e, bool *failed) {
  size_t applied = 0;
  char err[512];
  *failed = false;
  for (;;) {
    store_change_t *ch = NULL;
    size_t n = 0;
    q_err_t rc = store_changes(e->store, atomic_load(&e->pos_pub), TAIL_BATCH, &ch, &n,
                               err, sizeof err);
    if (rc) {
      q_log_warn("retriever: cannot read the change log", "{s:s}", "reason", err);
      *failed = true;
      return applied;
    }
    for (size_t i = 0; i < n; i++) {
      pthread_mutex_lock(&e->write_mu);
      rc = ch[i].own ? 0
                     : store_load_doc(e->store, ch[i].tenant, ch[i].doc_id, apply_doc_cb,
                                      e, err, sizeof err);
      if (!rc && ch[i].pos > e->tail_pos) {
        e->tail_pos = ch[i].pos;
        atomic_store(&e->pos_pub, ch[i].pos);
      }
      pthread_mutex_unlock(&e->write_mu);
      if (rc) {
        q_log_warn("retriever: cannot apply a change from the log", "{s:I,s:s,s:s,s:s}",
                   "pos", (json_int_t)ch[i].pos, "tenant_id", ch[i].tenant, "doc_id",
                   ch[i].doc_id, "reason", err);
        *failed = true;
        break;
      }
      if (!ch[i].own) {
        atomic_fetch_add(&e->changed, 1);
        applied++;
        atomic_fetch_add(&e->applied_n, 1);
      }
    }
    store_changes_free(ch, n);
    if (*failed || n < TAIL_BATCH)
      return applied;
  }
}

/* Refreshes head and lag from the database (and the gauges). */
static void observe_lag(embedded_t *e) {
  int64_t head = 0, age = 0;
  char err[256];
  if (store_log_state(e->store, atomic_load(&e->pos_pub), &head, &age, err, sizeof err) !=
      0)
    return;
  atomic_store(&e->head, head);
  atomic_store(&e->lag_ms, age);
}

static PGconn *listen_open(const char *dsn) {
  PGconn *c = PQconnectdb(dsn);
  if (PQstatus(c) != CONNECTION_OK) {
    PQfinish(c);
    return NULL;
  }
  PGresult *r = PQexec(c, "LISTEN " STORE_CHANNEL);
  bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  if (!ok || PQsetnonblocking(c, 1) != 0) {
    PQfinish(c);
    return NULL;
  }
  return c;
}

/* Waits up to poll_ms for a notification on *listen (reopened when NULL or
 * broken), checking for a stop request every TAIL_SLICE_MS. */
static void wait_change(embedded_t *e, PGconn **listen) {
  if (!*listen)
    *listen = listen_open(e->dsn);
  for (int64_t waited = 0; waited < e->poll_ms && !atomic_load(&e->tail_stop);
       waited += TAIL_SLICE_MS) {
    if (!*listen) {
      struct timespec ts = {0, TAIL_SLICE_MS * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    struct pollfd pfd = {.fd = PQsocket(*listen), .events = POLLIN};
    int pr = poll(&pfd, 1, TAIL_SLICE_MS);
    if (pr < 0 && errno != EINTR)
      goto broken;
    if (pr <= 0)
      continue;
    if (!PQconsumeInput(*listen))
      goto broken;
    bool woken = false;
    PGnotify *nt;
    while ((nt = PQnotifies(*listen)) != NULL) {
      PQfreemem(nt);
      woken = true;
    }
    if (woken)
      return;
  }
  return;
broken:
  q_log_warn("retriever: change log notifications lost; polling until reconnected",
             "{s:s}", "reason", PQerrorMessage(*listen));
  PQfinish(*listen);
  *listen = NULL;
}

static void *tail_main(void *ud) {
  embedded_t *e = ud;
  PGconn *listen = listen_open(e->dsn);
  while (!atomic_load(&e->tail_stop)) {
    bool failed;
    size_t applied = apply_tail(e, &failed);
    if (applied)
      q_log_debug("retriever: changes of other replicas applied", "{s:I,s:I}", "changes",
                  (json_int_t)applied, "pos", (json_int_t)atomic_load(&e->pos_pub));
    observe_lag(e);
    wait_change(e, &listen);
  }
  PQfinish(listen);
  return NULL;
}

static void embedded_close(void *st) {
  embedded_t *e = st;
  if (!e)
    return;
  if (e->tailer_started) {
    atomic_store(&e->tail_stop, true);
    pthread_join(e->tailer, NULL);
  }
  if (e->maint_started) {
    pthread_mutex_lock(&e->maint_mu);
    e->stopping = true;
    pthread_cond_signal(&e->maint_cv);
    pthread_mutex_unlock(&e->maint_mu);
    pthread_join(e->maint, NULL);
  }
  /* A clean shutdown leaves a snapshot of everything applied. */
  if (e->opened && e->snap_dir && atomic_load(&e->changed) > 0)
    take_snapshot(e, "shutdown");
  index_free(e->index);
  q_text_stopwords_free(e->stopwords);
  store_free(e->store);
  free(e->dsn);
  free(e->snap_dir);
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
  e->poll_ms = cfg->poll_ms > 0 ? cfg->poll_ms : 1000;
  e->max_lag_ms = cfg->max_lag_ms > 0 ? cfg->max_lag_ms : 5000;
  q_err_t rc = 0;
  if (cfg->stopwords && strcmp(cfg->stopwords, "english") != 0) {
    rc = q_text_stopwords_new(cfg->stopwords, &e->stopwords, err, errlen);
    if (rc)
      goto fail;
  }
  index_params_t ip = {
      .fixed_dim = cfg->fixed_dim,
      .m = cfg->hnsw_m,
      .ef_construction = cfg->hnsw_ef_construction,
      .ef_search = cfg->hnsw_ef_search,
      .exact_max = cfg->exact_max,
      .inner_product = cfg->inner_product,
      .int8_vectors = cfg->int8_vectors,
      .bm25 = cfg->bm25,
      .k1 = cfg->bm25_k1,
      .b = cfg->bm25_b,
      .title_weight = cfg->title_weight,
      .stopwords = e->stopwords,
  };
  e->snap_meta = (snapshot_meta_t){
      .fixed_dim = cfg->fixed_dim,
      .inner_product = cfg->inner_product,
      .int8_vectors = cfg->int8_vectors,
  };
  atomic_store(&e->snap_pos, -1);
  e->replica_ttl_ms = cfg->replica_ttl_ms > 0 ? cfg->replica_ttl_ms : 60000;
  e->prune_interval_ms = cfg->prune_interval_ms;
  e->log_retain_ms = cfg->log_retain_ms;
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
    memcpy(e->snap_meta.db_id, store_db_id(e->store), sizeof e->snap_meta.db_id);
    /* Registered before loading, with keep_after 0: no prune passes this
     * replica while it loads, and the pruned head read here is the one the
     * snapshot is checked against. */
    int64_t through = 0;
    rc = store_replica_beat(e->store, store_origin(e->store), 0, -1, 0, &through, err,
                            errlen);
    if (rc)
      goto fail;
    atomic_store(&e->pruned_through, through);
    e->snap_changes = cfg->snapshot_changes > 0 ? cfg->snapshot_changes : 10000;
    e->snap_interval_ms = cfg->snapshot_interval_ms;
    e->snap_at_ms = q_now_ms();
    if (cfg->data_dir && *cfg->data_dir && !(e->snap_dir = strdup(cfg->data_dir))) {
      snprintf(err, errlen, "out of memory");
      rc = Q_ENOMEM;
      goto fail;
    }
    if (!e->snap_dir || !load_snapshot(e, &ip)) {
      if (!e->index) {
        snprintf(err, errlen, "out of memory");
        rc = Q_ENOMEM;
        goto fail;
      }
      int64_t t0 = q_now_ms();
      size_t loaded = 0;
      rc =
          store_load(e->store, load_row_cb, e->index, &loaded, &e->tail_pos, err, errlen);
      if (rc)
        goto fail;
      q_log_info("index rebuilt", "{s:I,s:I,s:I}", "chunks", (json_int_t)loaded, "ms",
                 (json_int_t)(q_now_ms() - t0), "log_position", (json_int_t)e->tail_pos);
      /* The next background round writes the first snapshot. */
      if (e->snap_dir)
        atomic_store(&e->changed, e->snap_changes);
    }
    /* Loading freed as much as it kept (row buffers, term bags, snapshot
     * sections): hand the free pages back rather than keep them resident. */
    malloc_trim(0);
    q_metrics_gauge_fn("quarry_retriever_snapshot_seconds",
                       "Time the last snapshot took to write (0: none yet).",
                       gauge_snap_seconds_cb, e);
    q_metrics_gauge_fn("quarry_retriever_snapshot_bytes",
                       "Size on disk of the last snapshot written (0: none yet).",
                       gauge_snap_bytes_cb, e);
    atomic_store(&e->pos_pub, e->tail_pos);
    q_metrics_gauge_fn("quarry_retriever_changes_applied",
                       "Changes made by other retriever replicas (or while this one "
                       "was down) applied from the change log since start.",
                       gauge_applied_cb, e);
    q_metrics_gauge_fn("quarry_retriever_replica_lag_seconds",
                       "Age of the oldest change in the log this replica has not "
                       "applied yet (0: caught up).",
                       gauge_lag_cb, e);
    q_metrics_gauge_fn("quarry_retriever_log_position",
                       "Position in the change log up to which this replica has "
                       "applied every change.",
                       gauge_pos_cb, e);
    e->dsn = strdup(((const q_pg_cfg_t *)cfg->pg)->dsn);
    if (!e->dsn) {
      snprintf(err, errlen, "out of memory");
      rc = Q_ENOMEM;
      goto fail;
    }
    /* Catch up with what was written while loading before serving. */
    bool failed;
    size_t replayed = apply_tail(e, &failed);
    q_log_info("change log tail replayed", "{s:I,s:I}", "changes", (json_int_t)replayed,
               "log_position", (json_int_t)e->tail_pos);
    beat(e); /* what this replica needs from now on */
    e->prune_at_ms = q_now_ms();
    if (pthread_create(&e->tailer, NULL, tail_main, e) != 0) {
      snprintf(err, errlen, "cannot start the change log tailer");
      rc = Q_EINTERNAL;
      goto fail;
    }
    e->tailer_started = true;
  }
  if (pthread_create(&e->maint, NULL, maintain_main, e) != 0) {
    snprintf(err, errlen, "cannot start the maintenance thread");
    rc = Q_EINTERNAL;
    goto fail;
  }
  e->maint_started = true;
  e->opened = true;
  *out = e;
  return 0;
fail:
  embedded_close(e);
  return rc;
}

/* Staged chunks go to PostgreSQL only (retriever_staged): the index, and so
 * every search, sees nothing of them until embedded_commit. */
static q_err_t embedded_stage(void *st, const char *tenant, const engine_chunk_t *chunks,
                              size_t n, char *err, size_t errlen) {
  embedded_t *e = st;
  if (!e->store) {
    snprintf(err, errlen, "staging needs the database (memory-only engine)");
    return Q_EUNIMPL;
  }
  pthread_mutex_lock(&e->write_mu);
  q_err_t rc = index_check(e->index, tenant, chunks, n, err, errlen);
  pthread_mutex_unlock(&e->write_mu);
  return rc ? rc : store_stage(e->store, tenant, chunks, n, err, errlen);
}

/* One transaction publishes the staged version in the table; then the
 * document's active rows replace it in the index in one index_upsert (one
 * hold of the index's write lock), as a replica applies a change. Searches
 * see the old version until that call and the new one from it on. */
static q_err_t embedded_commit(void *st, const char *tenant, const char *doc_id,
                               int32_t version, size_t expect, size_t *retired, char *err,
                               size_t errlen) {
  embedded_t *e = st;
  store_span_t span = {0, 0};
  *retired = 0;
  if (!e->store) {
    snprintf(err, errlen, "staging needs the database (memory-only engine)");
    return Q_EUNIMPL;
  }
  pthread_mutex_lock(&e->write_mu);
  q_err_t rc = store_commit_staged(e->store, tenant, doc_id, version, expect, retired,
                                   &span, err, errlen);
  if (!rc) {
    rc = store_load_doc(e->store, tenant, doc_id, apply_doc_cb, e, err, errlen);
    if (rc)
      /* The table holds the new version; this replica's index catches up
       * at its next start (other replicas reload it from the change log). */
      q_log_error("retriever: committed version not loaded into the index",
                  "{s:s,s:s,s:s}", "tenant_id", tenant, "doc_id", doc_id, "reason", err);
    atomic_fetch_add(&e->changed, 1);
    if (!rc && span.first && span.first == e->tail_pos + 1) {
      e->tail_pos = span.last;
      atomic_store(&e->pos_pub, span.last);
    }
  }
  pthread_mutex_unlock(&e->write_mu);
  return rc;
}

static q_err_t embedded_upsert(void *st, const char *tenant, const engine_chunk_t *chunks,
                               size_t n, const char *replace_doc_id, size_t *retired,
                               char *err, size_t errlen) {
  embedded_t *e = st;
  size_t retired_db = 0, retired_mem = 0;
  store_span_t span = {0, 0};
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
    rc = store_upsert(e->store, tenant, chunks, n, replace_doc_id, &retired_db, seqs,
                      &span, err, errlen);
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
  atomic_fetch_add(&e->changed, 1);
  /* When this write follows the applied position directly, the position
   * moves past it now (else the tailer passes it when it gets there): a
   * snapshot taken next then does not replay it needlessly. */
  if (span.first && span.first == e->tail_pos + 1) {
    e->tail_pos = span.last;
    atomic_store(&e->pos_pub, span.last);
  }
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

/* Writes a snapshot to dir now (the engine also does it by itself when
 * configured with a data_dir). */
static q_err_t embedded_snapshot(void *st, const char *dir, char *err, size_t errlen) {
  embedded_t *e = st;
  pthread_mutex_lock(&e->write_mu);
  q_err_t rc =
      snapshot_write(e->index, dir, e->tail_pos, &e->snap_meta, NULL, err, errlen);
  pthread_mutex_unlock(&e->write_mu);
  return rc;
}

static q_err_t embedded_restore(void *st, const char *dir, char *err, size_t errlen) {
  (void)st;
  (void)dir;
  snprintf(err, errlen,
           "the embedded engine restores its snapshot when it opens "
           "(QUARRY_RETRIEVER_DATA_DIR), not while it serves");
  return Q_EUNIMPL;
}

/* Ready when the database answers and the replica is not more than
 * max_lag_ms behind the change log (measured now, not by the tailer, which
 * may be the thing that is stuck). */
static bool embedded_ready(void *st, char *why, size_t whylen) {
  embedded_t *e = st;
  if (!e->store)
    return true;
  if (!store_ping(e->store, why, whylen))
    return false;
  if (atomic_load(&e->pruned_past)) {
    snprintf(why, whylen,
             "the change log was pruned through %lld, past what this replica applied "
             "(%lld): restart it to rebuild from PostgreSQL",
             (long long)atomic_load(&e->pruned_through),
             (long long)atomic_load(&e->pos_pub));
    return false;
  }
  /* Not under the write lock: a snapshot holds it for seconds at scale. */
  int64_t tail = atomic_load(&e->pos_pub);
  int64_t head = 0, age = 0;
  if (store_log_state(e->store, tail, &head, &age, why, whylen) != 0)
    return false;
  atomic_store(&e->lag_ms, age);
  if (age <= e->max_lag_ms)
    return true;
  snprintf(why, whylen,
           "replica behind the change log: %lld changes, oldest %lld ms ago (limit "
           "%lld ms)",
           (long long)(head - tail), (long long)age, (long long)e->max_lag_ms);
  return false;
}

/* How far behind the change log: the age of the oldest change of another
 * replica not applied yet (0 caught up; a local upsert is searchable when
 * it returns). */
static int64_t embedded_lag_ms(void *st) {
  embedded_t *e = st;
  return e->store ? atomic_load(&e->lag_ms) : 0;
}

const engine_ops_t engine_embedded_ops = {
    .name = "embedded",
    .open = embedded_open,
    .close = embedded_close,
    .upsert = embedded_upsert,
    .stage = embedded_stage,
    .commit = embedded_commit,
    .remove = embedded_remove,
    .search = embedded_search,
    .stats = embedded_stats,
    .chunk_count = embedded_chunk_count,
    .snapshot = embedded_snapshot,
    .restore = embedded_restore,
    .ready = embedded_ready,
    .lag_ms = embedded_lag_ms,
};
