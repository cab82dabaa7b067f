/* test_docstore.c - documents and jobs in a private PostgreSQL: the
 * migrations leave no chunks table (chunk text is the retriever's), and a
 * job's life cycle records its chunk count and refuses a worker that no
 * longer owns the job.
 *
 * The runner process starts one server (tests/unit/support/pgtest.h); each
 * test creates its own database in it. */
#include "docstore.h"
#include "pgtest.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/pg.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdlib.h>
#include <string.h>

static pgtest_t shared;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
  pgtest_share(&shared);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  pgtest_remove(&shared);
}

static char test_dsn[256];
static q_pg_pool_t *pool;

static void setup(void) {
  pgtest_shared_fresh_db(test_dsn, sizeof test_dsn);
  pool = q_pg_pool_new(test_dsn, 2);
  cr_assert_not_null(pool);
}

static void teardown(void) {
  q_pg_pool_free(pool);
}

TestSuite(docstore, .init = setup, .fini = teardown);

/* Applies the first n ingestion migrations. */
static void migrate(size_t n) {
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_migrate(c, "ingestion", docstore_migrations, n, err, sizeof err), 0,
               "%s", err);
  q_pg_release(pool, c);
}

/* Whether a table of that name exists. */
static bool table_exists(const char *name) {
  char err[256] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  const char *params[1] = {name};
  PGresult *r = q_pg_query(c, "SELECT to_regclass($1) IS NOT NULL", 1, params, "looking",
                           NULL, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  bool exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
  PQclear(r);
  q_pg_release(pool, c);
  return exists;
}

Test(docstore, migrations_leave_documents_and_jobs_but_no_chunks) {
  migrate(docstore_nmigrations);
  cr_assert(table_exists("documents"));
  cr_assert(table_exists("jobs"));
  cr_assert_not(table_exists("chunks"), "chunk text lives in the retriever only");
}

Test(docstore, upgrading_drops_the_old_chunks_table) {
  migrate(1); /* a database from before the change */
  cr_assert(table_exists("chunks"));
  migrate(docstore_nmigrations);
  cr_assert_not(table_exists("chunks"));
  cr_assert(table_exists("documents"));
}

static void upload(const char *sha, upload_result_t *res) {
  upload_meta_t m = {
      .tenant_id = "t1",
      .external_id = "ext-1",
      .title = "A title",
      .title_explicit = 1,
      .filename = "a.md",
      .content_type = "text/markdown",
      .sha256 = sha,
      .size = 42,
      .trace_id = "",
  };
  char err[512] = "";
  cr_assert_eq(docstore_record_upload(pool, &m, res, err, sizeof err), 0, "%s", err);
}

Test(docstore, a_finished_job_records_its_chunk_count) {
  migrate(docstore_nmigrations);
  upload_result_t up;
  upload("aaaa", &up);
  cr_assert_eq(up.version, 1);

  char err[512] = "";
  job_t j;
  cr_assert_eq(docstore_claim(pool, "host:1", &j, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(j.id, up.job_id);
  int doc_version = 0;
  cr_assert_eq(docstore_heartbeat(pool, "host:1", &j, &doc_version, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(doc_version, 1);
  /* Another instance does not own the job: every update refuses it. */
  cr_assert_eq(docstore_heartbeat(pool, "host:2", &j, &doc_version, err, sizeof err),
               Q_ENOTFOUND);
  cr_assert_eq(docstore_finish(pool, "host:2", &j, 1, 3, "", err, sizeof err),
               Q_ENOTFOUND);
  cr_assert_eq(docstore_requeue(pool, "host:2", &j, 0, 0, "", err, sizeof err),
               Q_ENOTFOUND);

  cr_assert_eq(docstore_finish(pool, "host:1", &j, 1, 7, "", err, sizeof err), 0, "%s",
               err);
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__Document *d = NULL;
  cr_assert_eq(docstore_get_document(pool, "t1", up.document_id, a, &d, err, sizeof err),
               0, "%s", err);
  cr_assert_str_eq(d->status, "done");
  cr_assert_eq(d->chunk_count, 7);
  Quarry__V1__Job *jr = NULL;
  cr_assert_eq(docstore_get_job(pool, "t1", up.job_id, a, &jr, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(jr->status, "done");
  cr_assert_eq(jr->chunk_count, 7);
  /* Finished: it is nobody's any more. */
  cr_assert_eq(docstore_finish(pool, "host:1", &j, 1, 7, "", err, sizeof err),
               Q_ENOTFOUND);
  q_arena_free(a);
}

Test(docstore, stale_jobs_of_a_restarted_host_are_queued_again) {
  migrate(docstore_nmigrations);
  upload_result_t up;
  upload("bbbb", &up);
  char err[512] = "";
  job_t j;
  cr_assert_eq(docstore_claim(pool, "host:1", &j, err, sizeof err), 0, "%s", err);
  int n = -1;
  cr_assert_eq(docstore_requeue_stale(pool, "other", 300000, 5, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 0, "a fresh heartbeat of another host is left alone");
  cr_assert_eq(docstore_requeue_stale(pool, "host", 300000, 5, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_eq(docstore_claim(pool, "host:2", &j, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(j.id, up.job_id);
  cr_assert_eq(docstore_requeue(pool, "host:2", &j, 0, 0, "stopping", err, sizeof err), 0,
               "%s", err);
}
