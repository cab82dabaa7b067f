/* store.h - the retriever's durable copy of its chunks in PostgreSQL.
 *
 * Table retriever_chunks (migrated at start as service "retriever") holds
 * every chunk ever upserted; retired chunks stay with active = false.
 * Embeddings are stored as bytea of little-endian float32. The in-memory
 * index is only a cache of the active rows: an upsert is written here (one
 * transaction) before the index changes, and the index is rebuilt from here
 * at start. Each row has a seq (bigserial, kept when the row is rewritten in
 * place): the stable label of its vector in the embedded engine's graphs.
 *
 * Table retriever_changes is the ordered change log that keeps replicas
 * consistent (docs/retrieval.md, "Replicas"): every upsert or delete appends
 * one row per document it touched (position pos, a bigserial; tenant,
 * document, the writing replica's origin, time) in the transaction that
 * changed the chunks, and notifies channel STORE_CHANNEL at commit. Writers
 * take one advisory lock first, so positions commit in order: a replica
 * that has applied every change up to p and reads the log after p misses
 * nothing. A change names a document, not its contents: applying it means
 * reloading that document's active rows, which is idempotent and converges
 * whatever the order. */
#ifndef QUARRY_RETRIEVER_STORE_H
#define QUARRY_RETRIEVER_STORE_H

#include "engine/engine.h"

#include "quarry/pg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

typedef struct store store_t;

/* Opens a pool of up to pg->pool connections to pg->dsn, waiting up to
 * pg->wait_ms while the database is unreachable (backoff 100 ms doubling to
 * 2 s), and applies the migrations. NULL on failure with the reason in err.
 * The caller owns the store. */
store_t *store_new(const q_pg_cfg_t *pg, char *err, size_t errlen);

/* Closes every connection and frees the store. NULL is fine. */
void store_free(store_t *st);

/* The LISTEN/NOTIFY channel woken at each commit that appends to the log. */
#define STORE_CHANNEL "retriever_changes"

/* Log positions an upsert wrote, first to last. */
typedef struct store_span {
  int64_t first, last;
} store_span_t;

/* Whether the database answers (readiness); when not, why says why. */
bool store_ping(store_t *st, char *why, size_t whylen);

/* Writes one upsert in a single transaction: retires the active chunks of
 * replace_doc_id (if neither NULL nor "") that are not among chunks[], and
 * inserts or updates chunks[] as active rows of tenant, and appends one
 * change per document touched to the log. *retired receives the number of
 * rows retired; seqs (NULL, or room for n) the seq of each chunk's row; span
 * (NULL or) the log positions written, first to last, contiguous since
 * writers hold the log lock ({0, 0}: nothing logged, when the call touched
 * no document). Chunk ids must be unique within the batch.
 * 0; Q_ECONFLICT (nothing written) when a chunk_id belongs to another
 * tenant; Q_EUNAVAIL when the database cannot be reached; Q_EINTERNAL for
 * other database errors. err says why. Thread-safe. */
q_err_t store_upsert(store_t *st, const char *tenant, const engine_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired,
                     uint64_t *seqs, store_span_t *span, char *err, size_t errlen);

/* Stages chunks[0..n) of tenant (a new version of one document, sent in
 * batches): written to retriever_staged, not searchable and not in the
 * change log, until store_commit_staged publishes them. Staging a chunk id
 * again replaces it. 0; Q_ECONFLICT when a chunk id is another tenant's;
 * Q_EUNAVAIL / Q_EINTERNAL with err. Thread-safe. */
q_err_t store_stage(store_t *st, const char *tenant, const engine_chunk_t *chunks,
                    size_t n, char *err, size_t errlen);

/* Publishes the staged version of tenant's doc_id in one transaction, as
 * store_upsert with those chunks and replace_doc_id = doc_id would: they
 * become active rows, the document's other active rows are retired, one
 * change is logged; the staged rows of that version and older ones are
 * deleted. Q_ENOTFOUND (nothing changed) when not exactly expect chunks of
 * that version are staged (a batch never arrived); otherwise as
 * store_upsert. */
q_err_t store_commit_staged(store_t *st, const char *tenant, const char *doc_id,
                            int32_t version, size_t expect, size_t *retired,
                            store_span_t *span, char *err, size_t errlen);

/* This store's name in the log's origin column (unique per process). */
const char *store_origin(const store_t *st);

/* Receives one stored row (borrowed for the call, seq set); returns whether
 * it was taken. */
typedef bool (*store_row_cb)(void *ud, const char *tenant, const engine_chunk_t *chunk);

/* Streams every active row to cb (a server-side cursor, 1000 rows per
 * fetch, so memory stays flat however big the table). *loaded receives the
 * number of rows cb took; head (when not NULL) the log position the rows
 * reflect (read in the same database snapshot: every change up to it and
 * none after). 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t store_load(store_t *st, store_row_cb cb, void *ud, size_t *loaded, int64_t *head,
                   char *err, size_t errlen);

/* Receives the active chunks of one document (borrowed for the call; n may
 * be 0: the document has none left). Returns 0 or an error passed on. */
typedef q_err_t (*store_doc_cb)(void *ud, const char *tenant, const char *doc_id,
                                const engine_chunk_t *chunks, size_t n, char *err,
                                size_t errlen);

/* Reads the active chunks of tenant's doc_id and hands them to cb in one
 * call. 0, cb's error, or Q_EUNAVAIL / Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t store_load_doc(store_t *st, const char *tenant, const char *doc_id,
                       store_doc_cb cb, void *ud, char *err, size_t errlen);

/* One entry of the change log. */
typedef struct store_change {
  int64_t pos;
  char *tenant, *doc_id; /* owned by the array */
  bool own;              /* written by this store (same origin) */
  int64_t at_ms;         /* commit-side clock, ms since the epoch */
} store_change_t;

/* Up to max changes after position after, in position order: *out (the
 * caller frees it with store_changes_free) and *n. 0, or Q_EUNAVAIL /
 * Q_EINTERNAL / Q_ENOMEM with err. */
q_err_t store_changes(store_t *st, int64_t after, size_t max, store_change_t **out,
                      size_t *n, char *err, size_t errlen);
void store_changes_free(store_change_t *ch, size_t n);

/* The log's head position (the largest written, which pruning never
 * lowers) and the age in ms of its oldest change after
 * position after (0 when there is none): a replica's lag. 0, or Q_EUNAVAIL /
 * Q_EINTERNAL with err. */
q_err_t store_log_state(store_t *st, int64_t after, int64_t *head, int64_t *age_ms,
                        char *err, size_t errlen);

/* ---- pruning the change log ------------------------------------------------
 * The log would grow forever; a restart only needs the part after the
 * snapshot it loads. Each replica records in retriever_replicas, with a
 * heartbeat, keep_after: the position after which it still needs the log
 * (its latest durable snapshot's position; without snapshots what it has
 * applied, since it rebuilds from retriever_chunks at start). A prune
 * deletes the changes up to the smallest keep_after of the live replicas
 * (heartbeat younger than live_ms) that are also older than the retention
 * floor, and records the largest position deleted as the pruned head
 * (retriever_log_meta.pruned_through). A replica whose snapshot is older
 * than the pruned head rebuilds instead of replaying (docs/retrieval.md,
 * "Pruning the change log"). */

/* This database's identity: 16 random bytes made when the retriever's
 * tables were first migrated (retriever_log_meta.db_id). Snapshots record
 * it, so one made from another database is never loaded. */
const uint8_t *store_db_id(const store_t *st);

/* Records replica's heartbeat now with keep_after, its snapshot's position
 * (snapshot_pos, -1: none) and what it has applied, under the prune lock,
 * and reads the pruned head in the same transaction into *pruned_through
 * (may be NULL). A replica that registers before it loads learns whether
 * the tail it needs is still there; and no prune passes keep_after while
 * its heartbeat is live. 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t store_replica_beat(store_t *st, const char *replica, int64_t keep_after,
                           int64_t snapshot_pos, int64_t applied_pos,
                           int64_t *pruned_through, char *err, size_t errlen);

/* What a prune did. */
typedef struct store_prune {
  int64_t deleted; /* changes deleted */
  int64_t through; /* the pruned head after it */
  int64_t bound;   /* smallest keep_after of the live replicas, -1: none live */
  int64_t live;    /* live replicas */
} store_prune_t;

/* Most changes one store_prune deletes (one transaction): a long backlog
 * goes in several calls. */
#define STORE_PRUNE_BATCH 100000

/* Deletes what no live replica needs (see above): changes at or below the
 * smallest keep_after of the replicas whose heartbeat is younger than
 * live_ms, and older than retain_ms, the oldest first, at most
 * STORE_PRUNE_BATCH of them (out->deleted says how many; call again while
 * it is the batch). With no live replica nothing is deleted. Rows of replicas silent for
 * 7 days are dropped. Safe to run from every replica at once. 0 with *out, or Q_EUNAVAIL
 * / Q_EINTERNAL. */
q_err_t store_prune(store_t *st, int64_t live_ms, int64_t retain_ms, store_prune_t *out,
                    char *err, size_t errlen);

#endif
