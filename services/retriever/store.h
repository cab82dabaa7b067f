/* store.h - the retriever's durable copy of its chunks in PostgreSQL.
 *
 * Table retriever_chunks (migrated at start as service "retriever") holds
 * every chunk ever upserted; retired chunks stay with active = false.
 * Embeddings are stored as bytea of little-endian float32. The in-memory
 * index is only a cache of the active rows: an upsert is written here (one
 * transaction) before the index changes, and the index is rebuilt from here
 * at start. */
#ifndef QUARRY_RETRIEVER_STORE_H
#define QUARRY_RETRIEVER_STORE_H

#include "index.h"

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
 * the number of rows retired. Chunk ids must be unique within the batch.
 * 0; Q_ECONFLICT (nothing written) when a chunk_id belongs to another
 * tenant; Q_EUNAVAIL when the database cannot be reached; Q_EINTERNAL for
 * other database errors. err says why. Thread-safe. */
q_err_t store_upsert(store_t *st, const char *tenant, const index_chunk_t *chunks,
                     size_t n, const char *replace_doc_id, size_t *retired, char *err,
                     size_t errlen);

/* Streams every active row into idx (a server-side cursor, 1000 rows per
 * fetch, so memory stays flat however big the table). Rows whose vector
 * the index refuses are loaded without it (logged). *loaded receives the
 * rows loaded. 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t store_load(store_t *st, index_t *idx, size_t *loaded, char *err, size_t errlen);

#endif
