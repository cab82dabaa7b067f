/* test_commit.c - group commit of single uploads (commit.h): uploads from
 * many threads at once are all stored, each with its own document and
 * blob, in fewer groups than uploads; an upload whose blob cannot be
 * stored fails alone.
 *
 * The runner process starts one server (tests/unit/support/pgtest.h); each
 * test creates its own database in it. */
#include "commit.h"
#include "pgtest.h"

#include "quarry/error.h"
#include "quarry/pg.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pgtest_t shared;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
  pgtest_share(&shared);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  pgtest_remove(&shared);
}

static char test_dsn[256];
static q_pg_pool_t *pool;
static char dir[64];

static void setup(void) {
  pgtest_shared_fresh_db(test_dsn, sizeof test_dsn);
  pool = q_pg_pool_new(test_dsn, 4);
  cr_assert_not_null(pool);
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_migrate(c, "ingestion", docstore_migrations, docstore_nmigrations,
                            err, sizeof err),
               0, "%s", err);
  q_pg_release(pool, c);
  snprintf(dir, sizeof dir, "/tmp/quarry-commit-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  q_pg_pool_free(pool);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(commit, .init = setup, .fini = teardown);

#define THREADS 24

static pthread_barrier_t ready; /* every thread has its blob written */

typedef struct arg {
  bool together; /* wait at ready before committing */
  commit_queue_t *q;
  int i;
  q_err_t rc;
  bool blob_failed;
  char sha[65];
  upload_result_t r;
  char err[256];
} arg_t;

static void *upload_main(void *p) {
  arg_t *a = p;
  char err[256], body[64], ext[16];
  blob_writer_t w;
  cr_assert_eq(blob_begin(&w, dir, 1 << 20, err, sizeof err), 0, "%s", err);
  int n = snprintf(body, sizeof body, "document %d", a->i);
  cr_assert_eq(blob_write(&w, body, (size_t)n, err, sizeof err), 0, "%s", err);
  snprintf(ext, sizeof ext, "e%d", a->i);
  upload_meta_t m = {.tenant_id = "t1",
                     .external_id = ext,
                     .title = "T",
                     .title_explicit = 1,
                     .filename = "a.txt",
                     .content_type = "text/plain",
                     .size = n,
                     .trace_id = ""};
  if (a->together)
    pthread_barrier_wait(&ready);
  a->rc = commit_upload(a->q, pool, &w, &m, a->sha, &a->r, &a->blob_failed, a->err,
                        sizeof a->err);
  return NULL;
}

Test(commit, concurrent_uploads_are_stored_in_groups) {
  commit_queue_t q;
  commit_queue_init(&q);
  pthread_t t[THREADS];
  arg_t args[THREADS];
  pthread_barrier_init(&ready, NULL, THREADS);
  for (int i = 0; i < THREADS; i++) {
    args[i] = (arg_t){.together = true, .q = &q, .i = i};
    cr_assert_eq(pthread_create(&t[i], NULL, upload_main, &args[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < THREADS; i++) {
    cr_assert_eq(args[i].rc, 0, "upload %d: %s", i, args[i].err);
    cr_assert_not(args[i].blob_failed);
    cr_assert_eq(args[i].r.version, 1);
    char path[160];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, args[i].sha);
    cr_assert_eq(stat(path, &st), 0, "blob of upload %d is in place", i);
    for (int k = 0; k < i; k++) {
      cr_assert_str_neq(args[i].r.document_id, args[k].r.document_id);
      cr_assert_str_neq(args[i].sha, args[k].sha);
    }
  }
  pthread_barrier_destroy(&ready);
  cr_assert_eq(q.uploads, THREADS);
  /* Released together, they cannot all have gone one by one: those that
   * queued while the first group was written went in a later group. */
  cr_assert_lt(q.groups, THREADS);
  cr_log_info("%d uploads in %ld groups", THREADS, q.groups);
  /* Everything is in the database, one job each. */
  char err[256] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  PGresult *r = q_pg_query(c, "SELECT count(*), count(DISTINCT document_id) FROM jobs", 0,
                           NULL, "counting", NULL, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  char want[8];
  snprintf(want, sizeof want, "%d", THREADS);
  cr_assert_str_eq(PQgetvalue(r, 0, 0), want);
  cr_assert_str_eq(PQgetvalue(r, 0, 1), want);
  PQclear(r);
  q_pg_release(pool, c);
  commit_queue_cleanup(&q);
}

Test(commit, a_lone_upload_commits_at_once) {
  commit_queue_t q;
  commit_queue_init(&q);
  arg_t a = {.q = &q, .i = 7};
  upload_main(&a);
  cr_assert_eq(a.rc, 0, "%s", a.err);
  cr_assert_eq(q.groups, 1);
  cr_assert_eq(q.uploads, 1);
  commit_queue_cleanup(&q);
}

Test(commit, a_blob_that_cannot_be_stored_fails_alone) {
  commit_queue_t q;
  commit_queue_init(&q);
  /* The writer's temporary file is gone before the commit: its rename
   * fails, and only this upload reports it. */
  char err[256];
  blob_writer_t w;
  cr_assert_eq(blob_begin(&w, dir, 1 << 20, err, sizeof err), 0, "%s", err);
  cr_assert_eq(blob_write(&w, "gone", 4, err, sizeof err), 0, "%s", err);
  cr_assert_eq(unlink(w.tmp), 0);
  upload_meta_t m = {.tenant_id = "t1",
                     .external_id = "",
                     .title = "T",
                     .title_explicit = 1,
                     .filename = "a.txt",
                     .content_type = "text/plain",
                     .size = 4,
                     .trace_id = ""};
  char sha[65];
  upload_result_t r;
  bool blob_failed = false;
  q_err_t rc = commit_upload(&q, pool, &w, &m, sha, &r, &blob_failed, err, sizeof err);
  cr_assert_neq(rc, 0);
  cr_assert(blob_failed, "%s", err);
  arg_t a = {.q = &q, .i = 8};
  upload_main(&a);
  cr_assert_eq(a.rc, 0, "%s", a.err);
  commit_queue_cleanup(&q);
}
