/* pg.h - PostgreSQL access for services: a small connection pool, one way
 * to run and report statements, and versioned migrations.
 *
 * The pool hands out libpq connections; a connection that turns out to be
 * broken is reset on release. Migrations are applied at start, each in its
 * own transaction, recorded in schema_migrations(service, version) so
 * several services can share one database. */
#ifndef QUARRY_PG_H
#define QUARRY_PG_H

#include <libpq-fe.h>
#include <stddef.h>

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

/* 1 when a connection can be had and answers "SELECT 1". */
int q_pg_ping(q_pg_pool_t *p, char *err, size_t errlen);

/* Describes a failed libpq call in err as "<what>: <reason>" (the primary
 * message of r when there is one, else the connection's; no trailing
 * newline) and classifies it: Q_EUNAVAIL when the connection is gone (the
 * database is unavailable; worth retrying), Q_EINTERNAL when the statement
 * itself failed. r may be NULL. Returns that code. */
int q_pg_fail(PGconn *c, const PGresult *r, const char *what, char *err, size_t errlen);

/* Runs sql, a statement without parameters whose rows are not needed
 * (BEGIN, COMMIT, DDL, SELECT pg_advisory_lock(...)). 0, or q_pg_fail's
 * code with err naming what. */
int q_pg_exec(PGconn *c, const char *sql, const char *what, char *err, size_t errlen);

/* Applies, in order, the migrations of service not yet recorded. Serialised
 * across processes with an advisory lock. 0, or Q_EUNAVAIL / Q_EINTERNAL
 * with the reason in err. */
int q_pg_migrate(PGconn *c, const char *service, const q_pg_migration_t *m,
                 size_t n, char *err, size_t errlen);

#endif
