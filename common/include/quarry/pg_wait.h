/* pg_wait.h - start-up helper for services that own tables: wait for the
 * database to come up, then migrate.
 *
 * Services start in any order, often before PostgreSQL accepts connections
 * (containers, the local launcher). Instead of failing at once they retry
 * for a bounded time and then give up with a clear reason. */
#ifndef QUARRY_PG_WAIT_H
#define QUARRY_PG_WAIT_H

#include "quarry/pg.h"

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"

/* Acquires a connection from p and applies service's migrations, retrying
 * with exponential backoff (100 ms doubling to 2 s) while the database is
 * unreachable, for at most wait_ms in total (0: one attempt). Each failed
 * attempt is logged at warn level. Returns 0, Q_EUNAVAIL when the database
 * could not be reached in time, or Q_EINTERNAL when a migration itself
 * failed (not retried: retrying a broken migration cannot help); err says
 * why. Call once at start, before serving. */
q_err_t q_pg_wait_migrate(q_pg_pool_t *p, const char *service, const q_pg_migration_t *m,
                          size_t n, int64_t wait_ms, char *err, size_t errlen);

#endif
