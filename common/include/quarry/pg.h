/* pg.h - PostgreSQL access for services: a small connection pool, one way
 * to run and report statements, and versioned migrations.
 *
 * The pool hands out libpq connections; a connection that turns out to be
 * broken is reset on release. Migrations are applied at start, each in its
 * own transaction, recorded in schema_migrations(service, version) so
 * several services can share one database. */
#ifndef QUARRY_PG_H
#define QUARRY_PG_H

#include "quarry/config.h"
#include "quarry/error.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct q_pg_pool q_pg_pool_t;

/* The PostgreSQL settings of a service that owns tables; fill with
 * Q_CFG_PG_ENTRIES, or with the single entries below when a table needs only
 * some of them. One declaration, so their names, defaults, bounds and help
 * text are the same in every service and in docs/configuration.md. */
typedef struct q_pg_cfg {
  const char *dsn; /* QUARRY_PG_DSN */
  int64_t pool;    /* QUARRY_PG_POOL: most connections open at once */
  int64_t wait_ms; /* QUARRY_PG_WAIT_MS: how long start-up waits for the database */
} q_pg_cfg_t;

#define Q_PG_DSN_DEFAULT "postgresql://quarry@127.0.0.1:5432/quarry"

/* Entries for q_pg_cfg_t c (a variable name, not a pointer); a table row per
 * entry, laid out by hand. */
/* clang-format off */
#define Q_CFG_PG_DSN_ENTRY(c)                                                            \
  {"QUARRY_PG_DSN", Q_CFG_STRING, Q_PG_DSN_DEFAULT, 0, 0, NULL,                          \
   "PostgreSQL connection string (libpq URI or key=value form).", 1, &(c).dsn}
#define Q_CFG_PG_POOL_ENTRY(c)                                                           \
  {"QUARRY_PG_POOL", Q_CFG_INT, "8", 1, 256, NULL,                                       \
   "Most database connections kept open.", 0, &(c).pool}
#define Q_CFG_PG_WAIT_ENTRY(c)                                                           \
  {"QUARRY_PG_WAIT_MS", Q_CFG_INT, "30000", 0, 3600000, NULL,                            \
   "At start, how long to keep retrying an unreachable database before exiting.",        \
   0, &(c).wait_ms}
/* clang-format on */

/* What a service that migrates its tables before serving needs: where the
 * database is, how many connections, how long to wait for it at start. */
#define Q_CFG_PG_ENTRIES(c)                                                              \
  Q_CFG_PG_DSN_ENTRY(c), Q_CFG_PG_POOL_ENTRY(c), Q_CFG_PG_WAIT_ENTRY(c)

/* One versioned migration: versions start at 1 and only ever grow. */
typedef struct q_pg_migration {
  int version;
  const char *name;
  const char *sql; /* may hold several statements */
} q_pg_migration_t;

/* Creates a pool of up to size connections to conninfo (libpq keyword or
 * URI form). Connections are opened lazily. NULL when out of memory. */
q_pg_pool_t *q_pg_pool_new(const char *conninfo, int size);

/* Borrows a connection, waiting up to timeout_ms for one to be free.
 * NULL when none can be had (database down: err says why). */
PGconn *q_pg_acquire(q_pg_pool_t *p, int timeout_ms, char *err, size_t errlen);

/* Returns a borrowed connection. */
void q_pg_release(q_pg_pool_t *p, PGconn *c);

/* Closes every connection and frees the pool. */
void q_pg_pool_free(q_pg_pool_t *p);

/* Whether a connection can be had and answers "SELECT 1" (readiness);
 * when not, err says why. */
bool q_pg_ping(q_pg_pool_t *p, char *err, size_t errlen);

/* Describes a failed libpq call in err as "<what>: <reason>" (the primary
 * message of r when there is one, else the connection's; no trailing
 * newline) and classifies it: Q_EUNAVAIL when the connection is gone (the
 * database is unavailable; worth retrying), Q_EINTERNAL when the statement
 * itself failed. r may be NULL. Returns that code. q_pg_exec and q_pg_query
 * report through it; call it directly only for what they do not cover
 * (COPY, binary results). */
q_err_t q_pg_fail(PGconn *c, const PGresult *r, const char *what, char *err,
                  size_t errlen);

/* Statements. Both run sql on c with n parameters $1..$n: values[i] is
 * NUL-terminated text, or NULL for SQL NULL (values may be NULL when n is
 * 0). Rows come back as text. what names the statement in errors
 * ("storing document"), so err reads "<what>: <reason>". A failure is
 * classified by q_pg_fail: Q_EUNAVAIL when the connection is gone,
 * Q_EINTERNAL when the statement failed (the connection is then still
 * usable, though a transaction it was in is aborted). Not thread-safe per
 * connection, like libpq. */

/* Runs a command whose rows are not needed (INSERT, UPDATE, DELETE, DDL,
 * BEGIN, COMMIT, SELECT pg_advisory_lock(...)). When rows is not NULL it
 * receives the number of rows the command affected or returned (0 for
 * commands without a count, such as BEGIN). Returns 0 or a negative code
 * with err set. */
q_err_t q_pg_exec(PGconn *c, const char *sql, int n, const char *const *values,
                  const char *what, int64_t *rows, char *err, size_t errlen);

/* Runs a statement whose rows are wanted (SELECT, ... RETURNING). Returns
 * its result, which the caller owns and frees with PQclear; or NULL with the
 * code in *rc (when rc is not NULL) and err set. */
PGresult *q_pg_query(PGconn *c, const char *sql, int n, const char *const *values,
                     const char *what, q_err_t *rc, char *err, size_t errlen);

/* Applies, in order, the migrations of service not yet recorded. Serialised
 * across processes with an advisory lock. 0, or Q_EUNAVAIL / Q_EINTERNAL
 * with the reason in err. */
q_err_t q_pg_migrate(PGconn *c, const char *service, const q_pg_migration_t *m, size_t n,
                     char *err, size_t errlen);

#endif
