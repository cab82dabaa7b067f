/* test_pg.c - the connection pool and migrations against a private
 * PostgreSQL started by the test run itself (tests/unit/support/pgtest.h).
 *
 * The tests share one server started in the runner process; the test that
 * stops a server runs its own instance so it cannot disturb tests running
 * beside it. */
#include "loopback.h"
#include "pgtest.h"

#include "quarry/error.h"
#include "quarry/pg.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the shared server: runner process only --------------------------------- */

static pgtest_t shared;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
  pgtest_share(&shared);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  pgtest_remove(&shared);
}

/* The shared server's "postgres" database; fails the test without one. */
static const char *dsn(void) {
  static char d[192];
  pgtest_shared_dsn("postgres", d, sizeof d);
  return d;
}

static PGconn *connect_direct(void) {
  PGconn *c = PQconnectdb(dsn());
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
  return c;
}

/* The single value of a one-row query. */
static long query_long(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql,
               PQresultErrorMessage(r));
  cr_assert_eq(PQntuples(r), 1);
  long v = PQgetisnull(r, 0, 0) ? -1 : atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  return v;
}

/* ---- statements ------------------------------------------------------------- */

Test(pg, exec_runs_commands_and_counts_their_rows) {
  PGconn *c = connect_direct();
  char err[256] = "";
  int64_t rows = -1;
  cr_assert_eq(q_pg_exec(c, "CREATE TEMP TABLE pgt_exec (id int PRIMARY KEY, name text)",
                         0, NULL, "creating", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 0, "a command without a count gives 0");

  const char *one[2] = {"1", "one"};
  cr_assert_eq(q_pg_exec(c, "INSERT INTO pgt_exec VALUES ($1::int, $2)", 2, one,
                         "inserting", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 1);
  cr_assert_eq(q_pg_exec(c,
                         "INSERT INTO pgt_exec SELECT g, 'n' || g "
                         "FROM generate_series(2, 4) g",
                         0, NULL, "inserting", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 3);
  const char *upd[2] = {"x", "2"};
  cr_assert_eq(q_pg_exec(c, "UPDATE pgt_exec SET name = $1 WHERE id >= $2::int", 2, upd,
                         "updating", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 3);
  cr_assert_eq(q_pg_exec(c, "UPDATE pgt_exec SET name = 'y' WHERE id > 100", 0, NULL,
                         "updating", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 0, "no row matched");

  /* A NULL value is SQL NULL; rows may be NULL when the count is not needed. */
  const char *null[1] = {NULL};
  cr_assert_eq(q_pg_exec(c, "UPDATE pgt_exec SET name = $1 WHERE id = 1", 1, null,
                         "updating", NULL, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pgt_exec WHERE name IS NULL"), 1);

  /* Without parameters several statements may be sent at once (migrations);
   * the count is the last one's. */
  cr_assert_eq(q_pg_exec(c, "DELETE FROM pgt_exec WHERE id = 4; DELETE FROM pgt_exec", 0,
                         NULL, "deleting", &rows, err, sizeof err),
               Q_OK, "%s", err);
  cr_assert_eq(rows, 3);
  cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
  PQfinish(c);
}

Test(pg, query_returns_rows_the_caller_frees) {
  PGconn *c = connect_direct();
  char err[256] = "";
  const char *three[1] = {"3"};
  q_err_t rc = Q_EINTERNAL;
  PGresult *r = q_pg_query(c, "SELECT g, 'n' || g FROM generate_series(1, $1::int) g", 1,
                           three, "listing", &rc, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  cr_assert_eq(rc, Q_OK);
  cr_assert_eq(PQntuples(r), 3);
  cr_assert_str_eq(PQgetvalue(r, 2, 1), "n3");
  PQclear(r);

  /* A command's RETURNING rows are rows too; rc may be NULL. */
  cr_assert_eq(q_pg_exec(c, "CREATE TEMP TABLE pgt_query (id serial, name text)", 0, NULL,
                         "creating", NULL, err, sizeof err),
               Q_OK, "%s", err);
  const char *name[1] = {"a"};
  r = q_pg_query(c, "INSERT INTO pgt_query (name) VALUES ($1) RETURNING id, name", 1,
                 name, "inserting", NULL, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  cr_assert_eq(PQntuples(r), 1);
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "1");
  cr_assert_str_eq(PQgetvalue(r, 0, 1), "a");
  PQclear(r);

  r = q_pg_query(c, "SELECT * FROM pgt_query WHERE id > 1", 0, NULL, "reading", &rc, err,
                 sizeof err);
  cr_assert_not_null(r, "%s", err);
  cr_assert_eq(PQntuples(r), 0, "no rows is a result, not an error");
  PQclear(r);
  PQfinish(c);
}

Test(pg, a_failing_statement_is_internal_and_named) {
  PGconn *c = connect_direct();
  char err[256] = "";
  int64_t rows = 7;
  cr_assert_eq(q_pg_exec(c, "SELECT no_such_column FROM pg_class", 0, NULL,
                         "listing classes", &rows, err, sizeof err),
               Q_EINTERNAL);
  /* "<what>: <primary message>": no severity, no DETAIL, no newline. */
  cr_assert_eq(strncmp(err, "listing classes: ", 17), 0, "%s", err);
  cr_assert_not_null(strstr(err, "no_such_column"), "%s", err);
  cr_assert_null(strstr(err, "ERROR"), "%s", err);
  cr_assert_null(strchr(err, '\n'), "%s", err);
  cr_assert_eq(rows, 7, "rows is left alone on failure");

  q_err_t rc = Q_OK;
  const char *bad[1] = {"abc"};
  err[0] = '\0';
  cr_assert_null(
      q_pg_query(c, "SELECT $1::int", 1, bad, "converting", &rc, err, sizeof err));
  cr_assert_eq(rc, Q_EINTERNAL);
  cr_assert_not_null(strstr(err, "converting: "), "%s", err);
  cr_assert_not_null(strstr(err, "abc"), "%s", err);

  /* The connection is still usable, and a failure inside a transaction
   * leaves it aborted for the caller to roll back. */
  cr_assert_eq(query_long(c, "SELECT 1"), 1);
  cr_assert_eq(q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, sizeof err), Q_OK);
  cr_assert_null(q_pg_query(c, "SELECT * FROM pgt_no_such_table", 0, NULL, "reading", &rc,
                            err, sizeof err));
  cr_assert_eq(rc, Q_EINTERNAL);
  cr_assert_not_null(strstr(err, "pgt_no_such_table"), "%s", err);
  cr_assert_eq(PQtransactionStatus(c), PQTRANS_INERROR);
  cr_assert_eq(q_pg_exec(c, "ROLLBACK", 0, NULL, "rollback", NULL, err, sizeof err), Q_OK,
               "%s", err);
  PQfinish(c);
}

Test(pg, a_dead_connection_is_unavailable) {
  PGconn *c = connect_direct();
  PGconn *killer = connect_direct();
  char sql[96], err[256] = "";
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)::int", PQbackendPID(c));
  cr_assert_eq(query_long(killer, sql), 1);
  PQfinish(killer);
  usleep(200000); /* let the server close the socket */

  cr_assert_eq(q_pg_exec(c, "SELECT 1", 0, NULL, "pinging", NULL, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert_eq(strncmp(err, "pinging: ", 9), 0, "%s", err);
  cr_assert(strlen(err) > 9, "%s", err);
  q_err_t rc = Q_OK;
  const char *one[1] = {"1"};
  cr_assert_null(
      q_pg_query(c, "SELECT $1::int", 1, one, "reading", &rc, err, sizeof err));
  cr_assert_eq(rc, Q_EUNAVAIL, "%s", err);
  PQfinish(c);

  /* No connection at all reads the same way. */
  cr_assert_eq(q_pg_exec(NULL, "SELECT 1", 0, NULL, "pinging", NULL, err, sizeof err),
               Q_EUNAVAIL);
  cr_assert_null(q_pg_query(NULL, "SELECT 1", 0, NULL, "reading", &rc, err, sizeof err));
  cr_assert_eq(rc, Q_EUNAVAIL);
}

/* ---- migrations ------------------------------------------------------------- */

Test(pg, migrate_applies_in_order_and_is_idempotent) {
  PGconn *c = connect_direct();
  q_pg_migration_t m[] = {
      {1, "items", "CREATE TABLE pgt_items (id int PRIMARY KEY, name text)"},
      {2, "seed",
       "ALTER TABLE pgt_items ADD COLUMN n int;"
       "INSERT INTO pgt_items VALUES (1, 'one', 10)"},
      {3, "index", "CREATE INDEX pgt_items_n ON pgt_items (n)"},
  };
  char err[512] = "";
  cr_assert_eq(q_pg_migrate(c, "t_idem", m, 2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM schema_migrations "
                             "WHERE service = 't_idem'"),
               2);
  cr_assert_eq(query_long(c, "SELECT n FROM pgt_items WHERE id = 1"), 10);

  /* A second run changes nothing (the INSERT would fail if re-run). */
  cr_assert_eq(q_pg_migrate(c, "t_idem", m, 2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pgt_items"), 1);

  /* A new migration is applied on its own. */
  cr_assert_eq(q_pg_migrate(c, "t_idem", m, 3, err, sizeof err), 0, "%s", err);
  cr_assert_eq(query_long(c, "SELECT max(version) FROM schema_migrations "
                             "WHERE service = 't_idem'"),
               3);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pg_indexes "
                             "WHERE indexname = 'pgt_items_n'"),
               1);
  /* Versions belong to their service: another one starts from scratch. */
  q_pg_migration_t other[] = {{1, "other", "CREATE TABLE pgt_other (x int)"}};
  cr_assert_eq(q_pg_migrate(c, "t_idem_other", other, 1, err, sizeof err), 0, "%s", err);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM schema_migrations "
                             "WHERE service = 't_idem_other'"),
               1);
  cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
  PQfinish(c);
}

Test(pg, failing_migration_rolls_back_and_reports) {
  PGconn *c = connect_direct();
  q_pg_migration_t m[] = {
      {1, "ok", "CREATE TABLE pgt_fail_ok (a int)"},
      {2, "broken", "CREATE TABLE pgt_half (a int); SELECT no_such_column FROM pgt_half"},
      {3, "never", "CREATE TABLE pgt_never (a int)"},
  };
  char err[512] = "";
  int rc = q_pg_migrate(c, "t_fail", m, 3, err, sizeof err);
  cr_assert_eq(rc, Q_EINTERNAL, "rc %d: %s", rc, err);
  cr_assert_not_null(strstr(err, "v2"), "%s", err);
  cr_assert_not_null(strstr(err, "broken"), "%s", err);
  cr_assert_not_null(strstr(err, "no_such_column"), "%s", err);
  /* v1 stays, v2 left nothing behind, v3 was not tried. */
  cr_assert_eq(query_long(c, "SELECT count(*) FROM schema_migrations "
                             "WHERE service = 't_fail'"),
               1);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pg_tables WHERE tablename IN "
                             "('pgt_half', 'pgt_never')"),
               0);
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pg_tables "
                             "WHERE tablename = 'pgt_fail_ok'"),
               1);
  cr_assert_eq(PQtransactionStatus(c), PQTRANS_IDLE);
  /* The advisory lock was released: another session can take it. */
  PGconn *d = connect_direct();
  PGresult *r = PQexec(d, "SELECT pg_try_advisory_lock(hashtext('quarry-migrate'))");
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "t");
  PQclear(r);
  PQfinish(d);
  PQfinish(c);
}

Test(pg, invalid_migration_lists_are_refused) {
  PGconn *c = connect_direct();
  char err[256];
  q_pg_migration_t zero[] = {{0, "zero", "SELECT 1"}};
  cr_assert_eq(q_pg_migrate(c, "t_bad", zero, 1, err, sizeof err), Q_EINVAL);
  q_pg_migration_t order[] = {{2, "b", "SELECT 1"}, {1, "a", "SELECT 1"}};
  cr_assert_eq(q_pg_migrate(c, "t_bad", order, 2, err, sizeof err), Q_EINVAL);
  cr_assert_eq(q_pg_migrate(c, "", order, 0, err, sizeof err), Q_EINVAL);
  cr_assert_eq(q_pg_migrate(NULL, "t_bad", order, 0, err, sizeof err), Q_EINVAL);
  PQclear(PQexec(c, "BEGIN"));
  q_pg_migration_t ok[] = {{1, "a", "CREATE TABLE pgt_in_tx (a int)"}};
  cr_assert_eq(q_pg_migrate(c, "t_bad", ok, 1, err, sizeof err), Q_EINVAL);
  PQclear(PQexec(c, "ROLLBACK"));
  PQfinish(c);
}

static pthread_barrier_t race_barrier;
static const char *race_dsn; /* set before the threads start */

static void *migrate_thread(void *arg) {
  q_pg_migration_t m[] = {
      {1, "counter", "CREATE TABLE pgt_race (n int)"},
      {2, "row", "INSERT INTO pgt_race VALUES (1)"},
  };
  PGconn *c = PQconnectdb(race_dsn);
  char *err = arg;
  pthread_barrier_wait(&race_barrier);
  intptr_t rc = q_pg_migrate(c, "t_race", m, 2, err, 256);
  PQfinish(c);
  return (void *)rc;
}

Test(pg, concurrent_migrations_apply_once) {
  race_dsn = dsn();
  enum { N = 4 };
  pthread_t th[N];
  char errs[N][256];
  pthread_barrier_init(&race_barrier, NULL, N);
  for (int i = 0; i < N; i++)
    pthread_create(&th[i], NULL, migrate_thread, errs[i]);
  for (int i = 0; i < N; i++) {
    void *rc;
    pthread_join(th[i], &rc);
    cr_assert_eq((intptr_t)rc, 0, "%s", errs[i]);
  }
  PGconn *c = connect_direct();
  cr_assert_eq(query_long(c, "SELECT count(*) FROM pgt_race"), 1);
  PQfinish(c);
}

/* ---- the pool ---------------------------------------------------------------- */

static long elapsed_ms(const struct timespec *t0) {
  struct timespec t1;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return (t1.tv_sec - t0->tv_sec) * 1000 + (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

Test(pg, acquire_release_and_reuse) {
  q_pg_pool_t *p = q_pg_pool_new(dsn(), 2);
  cr_assert_not_null(p);
  char err[256];
  PGconn *a = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(a, "%s", err);
  int pid_a = PQbackendPID(a);
  PGconn *b = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(b, "%s", err);
  cr_assert_neq(PQbackendPID(b), pid_a);
  /* connect_timeout was added without overriding anything else. */
  cr_assert_str_eq(PQuser(a), "quarry");

  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  cr_assert_null(q_pg_acquire(p, 150, err, sizeof err));
  long ms = elapsed_ms(&t0);
  cr_assert(ms >= 140 && ms < 2000, "waited %ld ms", ms);
  cr_assert_not_null(strstr(err, "busy"), "%s", err);

  q_pg_release(p, a);
  PGconn *again = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(again, "%s", err);
  cr_assert_eq(PQbackendPID(again), pid_a, "an idle connection is reused");
  q_pg_release(p, again);
  q_pg_release(p, b);
  q_pg_pool_free(p);
}

typedef struct waiter {
  q_pg_pool_t *p;
  PGconn *got;
  char err[256];
} waiter_t;

static void *wait_thread(void *arg) {
  waiter_t *w = arg;
  w->got = q_pg_acquire(w->p, 5000, w->err, sizeof w->err);
  return NULL;
}

Test(pg, a_waiting_borrower_gets_the_released_connection) {
  q_pg_pool_t *p = q_pg_pool_new(dsn(), 1);
  char err[256];
  PGconn *a = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(a, "%s", err);
  waiter_t w = {.p = p};
  pthread_t th;
  pthread_create(&th, NULL, wait_thread, &w);
  usleep(100000);
  int pid = PQbackendPID(a);
  q_pg_release(p, a);
  pthread_join(th, NULL);
  cr_assert_not_null(w.got, "%s", w.err);
  cr_assert_eq(PQbackendPID(w.got), pid);
  q_pg_release(p, w.got);
  q_pg_pool_free(p);
}

Test(pg, mid_transaction_release_closes_the_connection) {
  q_pg_pool_t *p = q_pg_pool_new(dsn(), 1);
  char err[256];
  PGconn *a = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(a, "%s", err);
  int pid = PQbackendPID(a);
  PQclear(PQexec(a, "BEGIN"));
  cr_assert_eq(PQtransactionStatus(a), PQTRANS_INTRANS);
  q_pg_release(p, a);
  PGconn *b = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(b, "%s", err);
  cr_assert_neq(PQbackendPID(b), pid);
  cr_assert_eq(PQtransactionStatus(b), PQTRANS_IDLE);
  q_pg_release(p, b);
  q_pg_pool_free(p);
}

Test(pg, a_killed_idle_connection_is_replaced) {
  q_pg_pool_t *p = q_pg_pool_new(dsn(), 1);
  char err[256];
  PGconn *a = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(a, "%s", err);
  int pid = PQbackendPID(a);
  q_pg_release(p, a);
  PGconn *killer = connect_direct();
  char sql[96];
  snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)::int", pid);
  cr_assert_eq(query_long(killer, sql), 1);
  PQfinish(killer);
  usleep(200000); /* let the server close the socket */
  cr_assert(q_pg_ping(p, err, sizeof err), "%s", err);
  PGconn *b = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(b, "%s", err);
  cr_assert_neq(PQbackendPID(b), pid);
  q_pg_release(p, b);
  q_pg_pool_free(p);
}

/* The connect_timeout of a connection the pool opens for conninfo ("" when
 * it has none), into out. */
static void pool_connect_timeout(const char *conninfo, char *out, size_t outlen) {
  q_pg_pool_t *p = q_pg_pool_new(conninfo, 1);
  char err[256];
  PGconn *c = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  PQconninfoOption *opts = PQconninfo(c);
  out[0] = '\0';
  for (PQconninfoOption *o = opts; o && o->keyword; o++)
    if (strcmp(o->keyword, "connect_timeout") == 0 && o->val)
      snprintf(out, outlen, "%s", o->val);
  PQconninfoFree(opts);
  q_pg_release(p, c);
  q_pg_pool_free(p);
}

Test(pg, uri_conninfo_and_its_own_timeout_are_honoured) {
  const char *port = strstr(dsn(), "port=") + 5;
  char uri[160], timeout[16];
  snprintf(uri, sizeof uri, "postgresql://quarry@127.0.0.1:%d/postgres?connect_timeout=7",
           atoi(port));
  pool_connect_timeout(uri, timeout, sizeof timeout);
  cr_assert_str_eq(timeout, "7");
}

Test(pg, default_connect_timeout_is_added) {
  char timeout[16];
  pool_connect_timeout(dsn(), timeout, sizeof timeout);
  cr_assert_str_eq(timeout, "5");
}

Test(pg, unreachable_server_fails_fast_with_a_reason) {
  char conninfo[128];
  snprintf(conninfo, sizeof conninfo, "host=127.0.0.1 port=%d user=quarry",
           loopback_free_port());
  q_pg_pool_t *p = q_pg_pool_new(conninfo, 2);
  char err[256] = "";
  cr_assert_null(q_pg_acquire(p, 1000, err, sizeof err));
  cr_assert(strlen(err) > 10, "%s", err);
  cr_assert_not(q_pg_ping(p, err, sizeof err));
  /* Failed connects give their slot back: the pool is not exhausted. */
  cr_assert_null(q_pg_acquire(p, 1000, err, sizeof err));
  cr_assert_null(strstr(err, "busy"), "%s", err);
  q_pg_pool_free(p);
}

/* A server of its own, so stopping it cannot disturb other tests. */
static pgtest_t own;

static void own_start(void) {
  char why[512];
  if (pgtest_start(&own, why, sizeof why) != 0) {
    pgtest_remove(&own);
    cr_assert_fail("cannot start a private PostgreSQL: %s", why);
  }
}

static void own_stop(void) {
  pgtest_remove(&own);
}

Test(pg, ping_fails_once_the_server_is_stopped, .init = own_start, .fini = own_stop,
     .timeout = 60) {
  char conninfo[128], err[256] = "";
  pgtest_dsn(&own, "postgres", conninfo, sizeof conninfo);
  q_pg_pool_t *p = q_pg_pool_new(conninfo, 2);
  cr_assert(q_pg_ping(p, err, sizeof err), "%s", err);
  PGconn *held = q_pg_acquire(p, 1000, err, sizeof err);
  cr_assert_not_null(held, "%s", err);
  pgtest_stop(&own);
  cr_assert_not(q_pg_ping(p, err, sizeof err));
  cr_assert(err[0] != '\0');
  /* A migration on a connection whose server went away is "unavailable",
   * which q_pg_wait_migrate retries, not "internal". */
  q_pg_migration_t m[] = {{1, "a", "CREATE TABLE pgt_gone (a int)"}};
  cr_assert_eq(q_pg_migrate(held, "t_gone", m, 1, err, sizeof err), Q_EUNAVAIL, "%s",
               err);
  q_pg_release(p, held);
  PGconn *c = q_pg_acquire(p, 500, err, sizeof err);
  cr_assert_null(c);
  q_pg_pool_free(p);
}
