/* pg.h - PostgreSQL access for services: a small connection pool, one way
 * to run and report statements, and versioned migrations.
 *
 * The pool hands out libpq connections; a connection that turns out to be
 * broken is reset on release. Migrations are applied at start, each in its
 * own transaction, recorded in schema_migrations(service, version) so
 * several services can share one database. */
#ifndef QUARRY_PG_H
#define QUARRY_PG_H

#include "quarry/error.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct q_pg_pool q_pg_pool_t;

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
q_err_t q_pg_migrate(PGconn *c, const char *service, const q_pg_migration_t *m,
                     size_t n, char *err, size_t errlen);

#endif
