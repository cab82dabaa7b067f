/* test_jobs.c - the job queue in a private PostgreSQL: the claim is fair
 * across tenants (one tenant's bulk load does not starve another's single
 * document), a queued job is announced by NOTIFY (a LISTENing connection
 * hears it at once), a running job records stage, progress and timings that
 * GetJob returns, and a job queued again because a dependency was down
 * does not spend an attempt but starts the retry window. Also the
 * worker's error classification and dependency backoff.
 *
 * The runner process starts one server (tests/unit/support/pgtest.h); each
 * test creates its own database in it. */
#include "docstore.h"
#include "pgtest.h"
#include "worker.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/pg.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <poll.h>
#include <stdio.h>
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
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_migrate(c, "ingestion", docstore_migrations, docstore_nmigrations,
                            err, sizeof err),
               0, "%s", err);
  q_pg_release(pool, c);
}

static void teardown(void) {
  q_pg_pool_free(pool);
}

TestSuite(jobs, .init = setup, .fini = teardown);

/* Uploads a new document of tenant (content sha) and returns its job id. */
static void upload(const char *tenant, const char *sha, upload_result_t *res) {
  upload_meta_t m = {
      .tenant_id = tenant,
      .external_id = "",
      .title = "doc",
      .title_explicit = 1,
      .filename = "doc.md",
      .content_type = "text/markdown",
      .sha256 = sha,
      .size = 10,
      .trace_id = "",
  };
  char err[512] = "";
  cr_assert_eq(docstore_record_upload(pool, &m, res, err, sizeof err), 0, "%s", err);
}

static void claim(const char *instance, job_t *j) {
  char err[512] = "";
  cr_assert_eq(docstore_claim(pool, instance, j, err, sizeof err), 0, "%s", err);
}

static void finish(const char *instance, const job_t *j) {
  char err[512] = "";
  cr_assert_eq(docstore_finish(pool, instance, j, 1, 1, "", NULL, err, sizeof err), 0,
               "%s", err);
}

Test(jobs, a_busy_tenant_does_not_starve_another_tenants_single_document) {
  upload_result_t bulk[6], small;
  char sha[16];
  for (int i = 0; i < 6; i++) {
    snprintf(sha, sizeof sha, "bulk%d", i);
    upload("bulk", sha, &bulk[i]);
  }
  upload("small", "small0", &small);

  /* Two workers: the first takes the oldest job, the second goes to the
   * tenant with nothing running although five older jobs wait. */
  job_t a, b;
  claim("host:1", &a);
  cr_assert_str_eq(a.id, bulk[0].job_id);
  cr_assert_str_eq(a.tenant_id, "bulk");
  claim("host:2", &b);
  cr_assert_str_eq(b.id, small.job_id, "the small tenant's job goes second");
}

Test(jobs, one_worker_serves_tenants_in_turn) {
  upload_result_t bulk[4], other[2];
  char sha[16];
  for (int i = 0; i < 4; i++) {
    snprintf(sha, sizeof sha, "bulk%d", i);
    upload("bulk", sha, &bulk[i]);
  }
  for (int i = 0; i < 2; i++) {
    snprintf(sha, sizeof sha, "other%d", i);
    upload("other", sha, &other[i]);
  }
  /* One worker, one job at a time: bulk, other, bulk, other, bulk, bulk. */
  const char *want[6] = {bulk[0].job_id,  other[0].job_id, bulk[1].job_id,
                         other[1].job_id, bulk[2].job_id,  bulk[3].job_id};
  for (int i = 0; i < 6; i++) {
    job_t j;
    claim("host:1", &j);
    cr_assert_str_eq(j.id, want[i], "claim %d", i);
    finish("host:1", &j);
  }
  job_t j;
  char err[256];
  cr_assert_eq(docstore_claim(pool, "host:1", &j, err, sizeof err), Q_ENOTFOUND);
}

Test(jobs, a_queued_job_is_announced_to_listeners) {
  PGconn *l = PQconnectdb(test_dsn);
  cr_assert_eq(PQstatus(l), CONNECTION_OK, "%s", PQerrorMessage(l));
  PQclear(PQexec(l, "LISTEN " DOCSTORE_CHANNEL));

  upload_result_t up;
  int64_t t0 = q_now_ms();
  upload("t1", "notify0", &up);
  int heard = 0;
  while (!heard && q_now_ms() - t0 < 2000) {
    struct pollfd pfd = {.fd = PQsocket(l), .events = POLLIN};
    poll(&pfd, 1, 100);
    PQconsumeInput(l);
    PGnotify *n;
    while ((n = PQnotifies(l)) != NULL) {
      heard = strcmp(n->relname, DOCSTORE_CHANNEL) == 0;
      PQfreemem(n);
    }
  }
  int64_t latency = q_now_ms() - t0;
  cr_assert(heard, "no notification within 2 s");
  cr_assert_lt(latency, 500, "notified after %lld ms", (long long)latency);

  /* A job queued again is announced too. */
  job_t j;
  claim("host:1", &j);
  char err[256];
  cr_assert_eq(
      docstore_requeue(pool, "host:1", &j, 0, REQUEUE_GIVE_BACK, "", err, sizeof err), 0,
      "%s", err);
  heard = 0;
  t0 = q_now_ms();
  while (!heard && q_now_ms() - t0 < 2000) {
    struct pollfd pfd = {.fd = PQsocket(l), .events = POLLIN};
    poll(&pfd, 1, 100);
    PQconsumeInput(l);
    PGnotify *n;
    while ((n = PQnotifies(l)) != NULL) {
      heard = 1;
      PQfreemem(n);
    }
  }
  cr_assert(heard);
  PQfinish(l);
}

Test(jobs, stage_progress_and_timings_are_recorded_and_read_back) {
  upload_result_t up;
  upload("t1", "stage0", &up);
  q_arena_t *a = q_arena_new(0);
  char err[512] = "";
  Quarry__V1__Job *jr = NULL;
  cr_assert_eq(docstore_get_job(pool, "t1", up.job_id, a, &jr, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(jr->status, "queued");
  cr_assert_str_eq(jr->stage, "");
  cr_assert_eq(jr->n_stage_ms, 0);

  job_t j;
  claim("host:1", &j);
  cr_assert_eq(docstore_progress(pool, "host:1", &j, "extracting", 0, 0,
                                 "{\"extracting\":5}", err, sizeof err),
               0, "%s", err);
  cr_assert_eq(docstore_progress(pool, "host:1", &j, "embedding", 64, 200,
                                 "{\"extracting\":12,\"chunking\":3,\"embedding\":40}",
                                 err, sizeof err),
               0, "%s", err);
  /* Not ours: refused. */
  cr_assert_eq(
      docstore_progress(pool, "host:2", &j, "indexing", 0, 0, "{}", err, sizeof err),
      Q_ENOTFOUND);
  cr_assert_eq(docstore_get_job(pool, "t1", up.job_id, a, &jr, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(jr->status, "running");
  cr_assert_str_eq(jr->stage, "embedding");
  cr_assert_eq(jr->progress_done, 64);
  cr_assert_eq(jr->progress_total, 200);
  cr_assert_eq(jr->n_stage_ms, 3);
  cr_assert_str_eq(jr->stage_ms[0]->stage, "extracting");
  cr_assert_eq(jr->stage_ms[0]->ms, 12);
  cr_assert_str_eq(jr->stage_ms[2]->stage, "embedding");
  cr_assert_eq(jr->stage_ms[2]->ms, 40);

  /* Failing keeps the stage it failed in and says why. */
  cr_assert_eq(docstore_finish(pool, "host:1", &j, 0, 0, "embedding service rejected it",
                               NULL, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(docstore_get_job(pool, "t1", up.job_id, a, &jr, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(jr->status, "failed");
  cr_assert_str_eq(jr->stage, "embedding");
  cr_assert_str_eq(jr->error, "embedding service rejected it");
  q_arena_free(a);
}

Test(jobs, a_dependency_retry_spends_no_attempt_and_starts_the_window) {
  upload_result_t up;
  upload("t1", "dep0", &up);
  char err[512] = "";
  job_t j;
  claim("host:1", &j);
  cr_assert_eq(j.attempts, 1);
  cr_assert_eq(j.dep_retries, 0);
  cr_assert_eq(j.dep_retry_ms, 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(docstore_requeue(pool, "host:1", &j, 0, REQUEUE_DEPENDENCY,
                                  "embedding service unavailable", err, sizeof err),
                 0, "%s", err);
    claim("host:1", &j);
    cr_assert_eq(j.attempts, 1, "a dependency retry is not an attempt");
    cr_assert_eq(j.dep_retries, i + 1);
  }
  /* An ordinary retry counts. */
  cr_assert_eq(docstore_requeue(pool, "host:1", &j, 0, REQUEUE_ATTEMPT, "internal", err,
                                sizeof err),
               0, "%s", err);
  claim("host:1", &j);
  cr_assert_eq(j.attempts, 2);
  cr_assert_eq(j.dep_retries, 3);
  q_arena_t *a = q_arena_new(0);
  Quarry__V1__Job *jr = NULL;
  cr_assert_eq(docstore_get_job(pool, "t1", up.job_id, a, &jr, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(jr->dependency_retries, 3);
  q_arena_free(a);
}

Test(jobs, the_retry_window_is_measured_from_the_first_dependency_retry) {
  upload_result_t up;
  upload("t1", "dep1", &up);
  char err[512] = "";
  job_t j;
  claim("host:1", &j);
  cr_assert_eq(docstore_requeue(pool, "host:1", &j, 0, REQUEUE_DEPENDENCY, "down", err,
                                sizeof err),
               0, "%s", err);
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c);
  cr_assert_eq(
      q_pg_exec(c, "UPDATE jobs SET dep_retry_since = now() - interval '90 seconds'", 0,
                NULL, "aging", NULL, err, sizeof err),
      0, "%s", err);
  q_pg_release(pool, c);
  claim("host:1", &j);
  cr_assert_geq(j.dep_retry_ms, 90000);
  cr_assert_lt(j.dep_retry_ms, 100000);
}

Test(jobs, queue_stats_count_states_and_the_oldest_wait) {
  upload_result_t a, b;
  upload("t1", "st0", &a);
  upload("t2", "st1", &b);
  job_t j;
  claim("host:1", &j);
  queue_stats_t st;
  char err[256];
  cr_assert_eq(docstore_queue_stats(pool, &st, err, sizeof err), 0, "%s", err);
  cr_assert_eq(st.queued, 1);
  cr_assert_eq(st.running, 1);
  cr_assert_eq(st.done, 0);
  cr_assert_geq(st.oldest_queued_s, 0);
  cr_assert_eq(st.next_due_ms, 0, "the queued job may run now");
  finish("host:1", &j);
  cr_assert_eq(docstore_queue_stats(pool, &st, err, sizeof err), 0, "%s", err);
  cr_assert_eq(st.done, 1);
  cr_assert_eq(st.running, 0);
}

/* ---- the worker's policy (no database) ---------------------------------- */

Test(jobs, dependency_errors_wait_content_errors_fail) {
  cr_assert_eq(worker_classify(Q_EUNAVAIL), OUT_DEPEND);
  cr_assert_eq(worker_classify(Q_ETIMEDOUT), OUT_DEPEND);
  cr_assert_eq(worker_classify(Q_ERESOURCE), OUT_DEPEND);
  cr_assert_eq(worker_classify(Q_EINTERNAL), OUT_RETRY);
  cr_assert_eq(worker_classify(Q_ECANCELLED), OUT_RETRY);
  cr_assert_eq(worker_classify(Q_EINVAL), OUT_FAILED);
  cr_assert_eq(worker_classify(Q_ENOTFOUND), OUT_FAILED);
}

Test(jobs, dependency_backoff_doubles_to_a_cap_with_jitter) {
  ingest_cfg_t cfg = {.backoff_ms = 1000, .retry_max_backoff_ms = 30000};
  /* rnd 0: the fixed half; a large rnd stays within the whole. */
  cr_assert_eq(worker_dependency_backoff_ms(&cfg, 0, 0), 500);
  cr_assert_eq(worker_dependency_backoff_ms(&cfg, 1, 0), 1000);
  cr_assert_eq(worker_dependency_backoff_ms(&cfg, 3, 0), 4000);
  cr_assert_eq(worker_dependency_backoff_ms(&cfg, 10, 0), 15000);
  cr_assert_eq(worker_dependency_backoff_ms(&cfg, 1000, 0), 15000, "capped");
  for (unsigned r = 0; r < 1000; r += 7) {
    int d = worker_dependency_backoff_ms(&cfg, 2, r * 2654435761u);
    cr_assert(d >= 2000 && d <= 4000, "%d", d);
  }
}

/* ---- batches ---------------------------------------------------------------- */

Test(jobs, a_batch_claim_interleaves_tenants_and_takes_only_small_documents) {
  upload_result_t a[3], b[2];
  char sha[16];
  for (int i = 0; i < 3; i++) {
    snprintf(sha, sizeof sha, "a%d", i);
    upload("ta", sha, &a[i]);
  }
  for (int i = 0; i < 2; i++) {
    snprintf(sha, sizeof sha, "b%d", i);
    upload("tb", sha, &b[i]);
  }
  /* Every tenant's first job before any tenant's second. */
  job_t jobs[4];
  int n = 0;
  char err[512] = "";
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 4, 0, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 4);
  cr_assert_str_eq(jobs[0].id, a[0].job_id);
  cr_assert_str_eq(jobs[1].id, b[0].job_id);
  cr_assert_str_eq(jobs[2].id, a[1].job_id);
  cr_assert_str_eq(jobs[3].id, b[1].job_id);
  /* The rest, but only documents up to 5 bytes: none (they have 10). */
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 4, 5, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 0);
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 4, 10, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(jobs[0].id, a[2].job_id);
}

Test(jobs, one_statement_records_a_batchs_stage_and_skips_lost_jobs) {
  upload_result_t r[2];
  upload("t", "s0", &r[0]);
  upload("t", "s1", &r[1]);
  job_t jobs[2];
  int n = 0;
  char err[512] = "";
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 2, 0, &n, err, sizeof err), 0);
  cr_assert_eq(n, 2);
  const char *ids[3] = {jobs[0].id, jobs[1].id, "00000000-0000-4000-8000-000000000000"};
  int totals[3] = {3, 5, 1};
  bool updated[3];
  cr_assert_eq(docstore_progress_many(pool, "host:1", "embedding", ids, totals, 3,
                                      updated, err, sizeof err),
               0, "%s", err);
  cr_assert(updated[0] && updated[1]);
  cr_assert_not(updated[2], "a job that is not ours is not touched");
  /* Another instance owns nothing here. */
  cr_assert_eq(docstore_progress_many(pool, "host:2", "indexing", ids, totals, 2, updated,
                                      err, sizeof err),
               0);
  cr_assert_not(updated[0] || updated[1]);
  q_arena_t *a = q_arena_new(1 << 20);
  Quarry__V1__Job *j;
  cr_assert_eq(docstore_get_job(pool, "t", jobs[1].id, a, &j, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(j->stage, "embedding");
  cr_assert_eq(j->progress_total, 5);
  q_arena_free(a);
}

Test(jobs, a_batch_of_uploads_is_recorded_together_and_a_conflict_fails_alone) {
  upload_meta_t m[3];
  const char *shas[3] = {"x0", "x1", "x2"};
  const char *keys[3] = {"k#0", "k#1", "k#2"};
  for (int i = 0; i < 3; i++)
    m[i] = (upload_meta_t){.tenant_id = "t",
                           .external_id = "",
                           .title = "doc",
                           .title_explicit = 1,
                           .filename = "doc.txt",
                           .content_type = "text/plain",
                           .sha256 = shas[i],
                           .size = 2,
                           .trace_id = "",
                           .idempotency_key = keys[i],
                           .metadata = i == 1 ? "{\"shelf\": 1}" : ""};
  upload_result_t r[3];
  q_err_t rcs[3];
  char errs[3][256];
  cr_assert_eq(docstore_record_uploads(pool, m, 3, r, rcs, errs), 0);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(rcs[i], 0, "%d: %s", i, errs[i]);
  /* The same batch again replays; one changed document conflicts alone. */
  m[2].sha256 = "changed";
  upload_result_t again[3];
  cr_assert_eq(docstore_record_uploads(pool, m, 3, again, rcs, errs), 0);
  cr_assert_eq(rcs[0], 0);
  cr_assert(again[0].replayed);
  cr_assert_str_eq(again[1].document_id, r[1].document_id);
  cr_assert_eq(rcs[2], Q_ECONFLICT, "%s", errs[2]);
  /* Three jobs queued, and the metadata kept. */
  job_t jobs[4];
  int n = 0;
  char err[512] = "";
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 4, 0, &n, err, sizeof err), 0);
  cr_assert_eq(n, 3);
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  const char *params[1] = {r[1].document_id};
  PGresult *res = q_pg_query(c, "SELECT metadata->>'shelf' FROM documents WHERE id = $1",
                             1, params, "reading", NULL, err, sizeof err);
  cr_assert_not_null(res, "%s", err);
  cr_assert_str_eq(PQgetvalue(res, 0, 0), "1");
  PQclear(res);
  q_pg_release(pool, c);
}

static void exec_sql(const char *sql) {
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_exec(c, sql, 0, NULL, "test", NULL, err, sizeof err), 0, "%s: %s",
               err, sql);
  q_pg_release(pool, c);
}

/* The claim on a big queue reads per tenant, not per job: on 20,000 queued
 * jobs (and as many finished ones) of 20 tenants no plan node handles more
 * than a few hundred rows, none scans jobs sequentially, and the tenants
 * come from jobs_tenant_queued_idx. The old DISTINCT over queued jobs read
 * all 20,000 (make bench-claim measures the same at 100,000). */
Test(jobs, the_claim_reads_per_tenant_not_per_queued_job, .timeout = 120) {
  exec_sql("INSERT INTO documents (id, tenant_id, title, content_type, version, sha256,"
           "  size_bytes, status, created_at) SELECT gen_random_uuid(),"
           "  'tenant' || (i % 20), 'd', 'text/plain', 1, md5(i::text), 10, 'queued',"
           "  now() - make_interval(secs => 20000 - i) FROM generate_series(0, 19999) i");
  exec_sql(
      "INSERT INTO jobs (id, document_id, tenant_id, version, status, created_at,"
      "  run_after) SELECT gen_random_uuid(), id, tenant_id, 1, 'queued', created_at,"
      "  created_at FROM documents");
  exec_sql(
      "INSERT INTO jobs (id, document_id, tenant_id, version, status, created_at,"
      "  claimed_by, claimed_at) SELECT gen_random_uuid(), document_id, tenant_id, 1,"
      "  'done', created_at - interval '1 day', 'old:1', created_at - interval '1 day'"
      "  FROM jobs");
  exec_sql("ANALYZE jobs");
  exec_sql("ANALYZE documents");

  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  char sql[16384];
  snprintf(sql, sizeof sql, "EXPLAIN (ANALYZE) %s", docstore_claim_sql);
  const char *params[3] = {"host:1", "1", "0"};
  PQclear(PQexec(c, "BEGIN"));
  PGresult *r = PQexecParams(c, sql, 3, NULL, params, NULL, NULL, 0);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
  long most = 0;
  bool skip_scan = false;
  for (int i = 0; i < PQntuples(r); i++) {
    const char *line = PQgetvalue(r, i, 0);
    cr_assert_null(strstr(line, "Seq Scan on jobs"), "%s", line);
    if (strstr(line, "jobs_tenant_queued_idx"))
      skip_scan = true;
    const char *at = strstr(line, "(actual time=");
    const char *rows = at ? strstr(at, " rows=") : NULL;
    if (rows && strtol(rows + 6, NULL, 10) > most)
      most = strtol(rows + 6, NULL, 10);
  }
  PQclear(r);
  PQclear(PQexec(c, "ROLLBACK"));
  q_pg_release(pool, c);
  cr_assert(skip_scan, "the tenants do not come from jobs_tenant_queued_idx");
  cr_assert_lt(most, 1000, "a plan node handled %ld rows", most);

  /* and fair: the first 20 claims serve the 20 tenants */
  char seen[20][Q_LIMIT_TENANT_ID_BYTES + 1];
  int distinct = 0;
  for (int i = 0; i < 20; i++) {
    job_t j;
    claim("host:1", &j);
    int k = 0;
    while (k < distinct && strcmp(seen[k], j.tenant_id) != 0)
      k++;
    if (k == distinct)
      snprintf(seen[distinct++], sizeof seen[0], "%s", j.tenant_id);
    finish("host:1", &j);
  }
  cr_assert_eq(distinct, 20);
}
