/* store.h - the retriever's durable copy of its chunks in PostgreSQL.
 *
 * Table retriever_chunks (migrated at start as service "retriever") holds
 * every chunk ever upserted; retired chunks stay with active = false.
 * Embeddings are stored as bytea of little-endian float32. The in-memory
 * index is only a cache of the active rows: an upsert is written here (one
 * transaction) before the index changes, and the index is rebuilt from here
 * at start. Each row has a seq (bigserial, kept when the row is rewritten in
 * place): the stable label of its vector in the embedded engine's graphs. */
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

/* Whether the database answers (readiness); when not, why says why. */
bool store_ping(store_t *st, char *why, size_t whylen);

/* Writes one upsert in a single transaction: retires the active chunks of
 * replace_doc_id (if neither NULL nor "") that are not among chunks[], and
 * inserts or updates chunks[] as active rows of tenant. *retired receives
 * the number of rows retired; seqs (NULL, or room for n) the seq of each
 * chunk's row. Chunk ids must be unique within the batch.
 * 0; Q_ECONFLICT (nothing written) when a chunk_id belongs to another
 * tenant; Q_EUNAVAIL when the database cannot be reached; Q_EINTERNAL for
 * other database errors. err says why. Thread-safe. */
q_err_t store_upsert(store_t *st, const char *tenant, const engine_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired,
                     uint64_t *seqs, char *err, size_t errlen);

/* Receives one stored row (borrowed for the call, seq set); returns whether
 * it was taken. */
typedef bool (*store_row_cb)(void *ud, const char *tenant, const engine_chunk_t *chunk);

/* Streams every active row to cb (a server-side cursor, 1000 rows per
 * fetch, so memory stays flat however big the table). *loaded receives the
 * number of rows cb took. 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t store_load(store_t *st, store_row_cb cb, void *ud, size_t *loaded, char *err,
                   size_t errlen);

#endif
