/* pgtest.h - a private PostgreSQL server for unit tests.
 *
 * pgtest_start runs initdb and pg_ctl of the newest server installed under
 * /usr/lib/postgresql, in a fresh directory under /tmp, on a free loopback
 * port, with durability off (test data only). The cluster's superuser is
 * "quarry", trusted without a password. PostgreSQL refuses to run as root,
 * so when the tests run as root its tools run as the postgres user via
 * runuser.
 *
 * Criterion runs each test in a worker process of its own. A server that
 * every test of a binary shares is started once in the runner process from
 * ReportHook(PRE_ALL) with pgtest_share, which hands its address to the
 * workers in the environment (QUARRY_TEST_PG_BASE, or QUARRY_TEST_PG_ERROR
 * saying why there is none); ReportHook(POST_ALL) removes it with
 * pgtest_remove. Workers reach it through pgtest_shared_dsn and
 * pgtest_shared_fresh_db. A test that stops its server starts one of its
 * own instead, so it cannot disturb the tests running beside it. */
#ifndef QUARRY_TEST_PGTEST_H
#define QUARRY_TEST_PGTEST_H

#include <stddef.h>

/* pgtest_start's answer when this machine cannot run PostgreSQL at all
 * (server not installed, or root without a postgres user): tests that may
 * be skipped skip then; the others fail with the message. */
#define PGTEST_ABSENT 1

typedef struct pgtest {
  char bin[128]; /* the server's bin directory */
  char dir[64];  /* temporary directory: data/, log, cmd.log */
  char data[96]; /* the cluster */
  int port;
  int running;
} pgtest_t;

/* Creates a cluster and starts it. Returns 0; PGTEST_ABSENT; or -1 when
 * initdb or pg_ctl failed. err says why, naming the log to read. The
 * directory is kept on failure so that log can be read: call pgtest_remove
 * in any case. Not thread-safe (one call per pgtest_t). */
int pgtest_start(pgtest_t *pg, char *err, size_t errlen);

/* Stops the server (pg_ctl stop -m fast) and waits for it; the cluster
 * stays. Does nothing when it is not running. */
void pgtest_stop(pgtest_t *pg);

/* Stops the server if it runs and deletes its directory. Safe to call more
 * than once, and after a failed pgtest_start. */
void pgtest_remove(pgtest_t *pg);

/* Writes the libpq conninfo of database dbname on pg's server into out and
 * returns out. */
const char *pgtest_dsn(const pgtest_t *pg, const char *dbname, char *out, size_t outlen);

/* In the runner process (ReportHook(PRE_ALL)): starts pg and publishes it
 * to the workers, or publishes why it could not be started. */
void pgtest_share(pgtest_t *pg);

/* In a test: the conninfo of database dbname on the shared server, into
 * out. Fails the test, with the reason pgtest_share recorded, when there is
 * no shared server. */
void pgtest_shared_dsn(const char *dbname, char *out, size_t outlen);

/* In a test: creates an empty database on the shared server, named after
 * the worker process so tests running side by side cannot see each other's
 * rows, and writes its conninfo into out. Fails the test when that is not
 * possible. */
void pgtest_shared_fresh_db(char *out, size_t outlen);

#endif
