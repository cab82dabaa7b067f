/* test_docstore.c - documents and jobs in a private PostgreSQL: the
 * migrations leave no chunks table (chunk text is the retriever's), and a
 * job's life cycle records its chunk count and refuses a worker that no
 * longer owns the job; idempotency keys replay the first upload's result,
 * refuse a different upload, serialise uploads racing on one key and
 * expire.
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
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
  cr_assert_eq(docstore_finish(pool, "host:2", &j, 1, 3, "", NULL, err, sizeof err),
               Q_ENOTFOUND);
  cr_assert_eq(docstore_requeue(pool, "host:2", &j, 0, 0, "", err, sizeof err),
               Q_ENOTFOUND);

  cr_assert_eq(docstore_finish(pool, "host:1", &j, 1, 7, "", NULL, err, sizeof err), 0,
               "%s", err);
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
  cr_assert_eq(docstore_finish(pool, "host:1", &j, 1, 7, "", NULL, err, sizeof err),
               Q_ENOTFOUND);
  q_arena_free(a);
}

/* One statement settles a batch: each job still ours is done with its
 * own chunk count and timings, its document follows; a job another
 * instance holds is left alone and reported as not finished. Facts go to
 * each version in one statement too. */
Test(docstore, a_batch_finishes_and_records_facts_in_one_statement) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  upload_result_t up[3];
  for (int i = 0; i < 3; i++) {
    char sha[8], ext[8];
    snprintf(sha, sizeof sha, "b%d", i);
    snprintf(ext, sizeof ext, "e%d", i);
    upload_meta_t m = {.tenant_id = "t1",
                       .external_id = ext,
                       .title = "T",
                       .title_explicit = 1,
                       .filename = "a.md",
                       .content_type = "text/markdown",
                       .sha256 = sha,
                       .size = 1,
                       .trace_id = ""};
    cr_assert_eq(docstore_record_upload(pool, &m, &up[i], err, sizeof err), 0, "%s", err);
  }
  job_t jobs[3];
  int n = 0;
  cr_assert_eq(docstore_claim_batch(pool, "host:1", jobs, 2, 0, &n, err, sizeof err), 0,
               "%s", err);
  cr_assert_eq(n, 2);
  cr_assert_eq(docstore_claim_batch(pool, "host:2", jobs + 2, 1, 0, &n, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(n, 1);

  const job_t *js[3] = {&jobs[0], &jobs[1], &jobs[2]};
  doc_facts_t facts[3] = {
      {.author = "Ann \"Q\" Ó", .language = "en", .page_count = 2, .created = 1700000000},
      {.author = "", .language = "de"},
      {.author = "x"}};
  cr_assert_eq(docstore_set_facts_many(pool, js, facts, 3, err, sizeof err), 0, "%s",
               err);
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  const char *params[1] = {jobs[0].document_id};
  PGresult *r = q_pg_query(c,
                           "SELECT author, language, page_count,"
                           " extract(epoch FROM doc_created_at)::bigint,"
                           " doc_modified_at IS NULL"
                           " FROM document_versions WHERE document_id = $1",
                           1, params, "reading", NULL, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  cr_assert_str_eq(PQgetvalue(r, 0, 0), "Ann \"Q\" Ó");
  cr_assert_str_eq(PQgetvalue(r, 0, 1), "en");
  cr_assert_str_eq(PQgetvalue(r, 0, 2), "2");
  cr_assert_str_eq(PQgetvalue(r, 0, 3), "1700000000");
  cr_assert_str_eq(PQgetvalue(r, 0, 4), "t");
  PQclear(r);
  q_pg_release(pool, c);

  int counts[3] = {4, 5, 6};
  const char *ms[3] = {"{\"extracting\":3}", NULL, ""};
  bool fin[3];
  cr_assert_eq(
      docstore_finish_many(pool, "host:1", js, counts, ms, 3, fin, err, sizeof err), 0,
      "%s", err);
  cr_assert(fin[0] && fin[1]);
  cr_assert_not(fin[2], "host:2's job is not host:1's to finish");
  q_arena_t *a = q_arena_new(0);
  for (int i = 0; i < 3; i++) {
    Quarry__V1__Job *jr = NULL;
    cr_assert_eq(docstore_get_job(pool, "t1", jobs[i].id, a, &jr, err, sizeof err), 0,
                 "%s", err);
    Quarry__V1__Document *d = NULL;
    cr_assert_eq(
        docstore_get_document(pool, "t1", jobs[i].document_id, a, &d, err, sizeof err), 0,
        "%s", err);
    if (i < 2) {
      cr_assert_str_eq(jr->status, "done");
      cr_assert_eq(jr->chunk_count, counts[i]);
      cr_assert_str_eq(d->status, "done");
      cr_assert_eq(d->chunk_count, counts[i]);
    } else {
      cr_assert_str_eq(jr->status, "running");
    }
  }
  q_arena_free(a);
  /* Done: no longer anybody's. */
  cr_assert_eq(
      docstore_finish_many(pool, "host:1", js, counts, ms, 1, fin, err, sizeof err), 0,
      "%s", err);
  cr_assert_not(fin[0]);
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

/* ---- idempotency keys ------------------------------------------------------ */

/* An upload of tenant t1 under key (NULL: none), without external id unless
 * ext is given, so that every stored upload without a key is a document of
 * its own and a duplicate would show. */
static upload_meta_t keyed(const char *key, const char *sha, const char *ext) {
  return (upload_meta_t){
      .tenant_id = "t1",
      .external_id = ext ? ext : "",
      .title = "notes.md",
      .title_explicit = 0,
      .filename = "notes.md",
      .content_type = "text/markdown",
      .sha256 = sha,
      .size = 10,
      .trace_id = "",
      .idempotency_key = key,
      .key_ttl_ms = 60000,
  };
}

static q_err_t record(const upload_meta_t *m, upload_result_t *r, char *err,
                      size_t errlen) {
  return docstore_record_upload(pool, m, r, err, errlen);
}

/* The single value of a one-row, one-column query. */
static long long scalar(const char *sql) {
  char err[256] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  PGresult *r = q_pg_query(c, sql, 0, NULL, "test query", NULL, err, sizeof err);
  cr_assert_not_null(r, "%s: %s", sql, err);
  long long v = atoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  q_pg_release(pool, c);
  return v;
}

static void exec_sql(const char *sql) {
  char err[256] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_exec(c, sql, 0, NULL, "test statement", NULL, err, sizeof err), 0,
               "%s: %s", sql, err);
  q_pg_release(pool, c);
}

Test(docstore, upgrading_adds_the_idempotency_key_table) {
  migrate(2);
  cr_assert_not(table_exists("upload_keys"));
  migrate(docstore_nmigrations);
  cr_assert(table_exists("upload_keys"));
}

Test(docstore, a_retry_with_the_same_key_answers_the_first_result) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  upload_meta_t m = keyed("key-1", "aaaa", NULL);
  upload_result_t first, again;
  cr_assert_eq(record(&m, &first, err, sizeof err), 0, "%s", err);
  cr_assert_not(first.replayed);
  cr_assert_eq(first.version, 1);

  cr_assert_eq(record(&m, &again, err, sizeof err), 0, "%s", err);
  cr_assert(again.replayed);
  cr_assert_str_eq(again.document_id, first.document_id);
  cr_assert_str_eq(again.job_id, first.job_id);
  cr_assert_eq(again.version, 1);
  cr_assert_not(again.unchanged);
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 1, "nothing stored twice");
  cr_assert_eq(scalar("SELECT count(*) FROM jobs"), 1, "nothing queued twice");

  /* Without a key the same bytes are a new document, as before. */
  upload_meta_t plain = keyed(NULL, "aaaa", NULL);
  upload_result_t other;
  cr_assert_eq(record(&plain, &other, err, sizeof err), 0, "%s", err);
  cr_assert_not(other.replayed);
  cr_assert_str_neq(other.document_id, first.document_id);
  cr_assert_eq(scalar("SELECT count(*) FROM upload_keys"), 1);
}

Test(docstore, the_same_key_with_another_upload_is_a_conflict_naming_the_difference) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  upload_meta_t m = keyed("key-2", "aaaa", "ext-2");
  upload_result_t first, r;
  cr_assert_eq(record(&m, &first, err, sizeof err), 0, "%s", err);

  upload_meta_t content = keyed("key-2", "bbbb", "ext-2");
  cr_assert_eq(record(&content, &r, err, sizeof err), Q_ECONFLICT);
  cr_assert(strstr(err, "Idempotency-Key") && strstr(err, "content (sha256) differs"),
            "%s", err);

  upload_meta_t ext = keyed("key-2", "aaaa", "ext-other");
  cr_assert_eq(record(&ext, &r, err, sizeof err), Q_ECONFLICT);
  cr_assert(strstr(err, "(external_id differs)"), "%s", err);

  upload_meta_t meta = keyed("key-2", "aaaa", "ext-2");
  meta.title = "Another title";
  meta.title_explicit = 1;
  meta.filename = "other.md";
  cr_assert_eq(record(&meta, &r, err, sizeof err), Q_ECONFLICT);
  cr_assert(strstr(err, "(title, filename differs)"), "%s", err);

  /* Nothing of the refused uploads was stored. */
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 1);
  cr_assert_eq(scalar("SELECT max(version) FROM documents"), 1);
  cr_assert_eq(scalar("SELECT count(*) FROM jobs"), 1);
  /* And the first upload is still what the key replays. */
  cr_assert_eq(record(&m, &r, err, sizeof err), 0, "%s", err);
  cr_assert(r.replayed);
  cr_assert_str_eq(r.document_id, first.document_id);
}

Test(docstore, keys_belong_to_a_tenant) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  upload_meta_t a = keyed("shared-key", "aaaa", NULL);
  upload_meta_t b = keyed("shared-key", "bbbb", NULL);
  b.tenant_id = "t2";
  upload_result_t ra, rb;
  cr_assert_eq(record(&a, &ra, err, sizeof err), 0, "%s", err);
  cr_assert_eq(record(&b, &rb, err, sizeof err), 0, "%s", err);
  cr_assert_not(rb.replayed, "another tenant's key is another key");
  cr_assert_str_neq(ra.document_id, rb.document_id);
}

Test(docstore, keys_and_external_ids_work_together) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  /* Version 1 under key A. */
  upload_meta_t v1 = keyed("key-a", "aaaa", "ext-3");
  upload_result_t r1, r;
  cr_assert_eq(record(&v1, &r1, err, sizeof err), 0, "%s", err);
  /* The same bytes under a new key: the external id's no-op, recorded under
   * the new key as such. */
  upload_meta_t same = keyed("key-b", "aaaa", "ext-3");
  cr_assert_eq(record(&same, &r, err, sizeof err), 0, "%s", err);
  cr_assert(r.unchanged);
  cr_assert_not(r.replayed);
  cr_assert_str_eq(r.document_id, r1.document_id);
  /* Version 2 under key C. */
  upload_meta_t v2 = keyed("key-c", "cccc", "ext-3");
  upload_result_t r2;
  cr_assert_eq(record(&v2, &r2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r2.version, 2);
  /* Key A retried after the document moved on: still version 1's result, and
   * the document is left at version 2. */
  cr_assert_eq(record(&v1, &r, err, sizeof err), 0, "%s", err);
  cr_assert(r.replayed);
  cr_assert_eq(r.version, 1);
  cr_assert_str_eq(r.job_id, r1.job_id);
  cr_assert_eq(scalar("SELECT version FROM documents"), 2);
  /* Key B replays its own (unchanged) answer. */
  cr_assert_eq(record(&same, &r, err, sizeof err), 0, "%s", err);
  cr_assert(r.replayed && r.unchanged);
}

Test(docstore, an_expired_key_is_a_new_key_and_is_cleaned_up) {
  migrate(docstore_nmigrations);
  char err[512] = "";
  upload_meta_t m = keyed("old-key", "aaaa", NULL);
  upload_result_t first, r;
  cr_assert_eq(record(&m, &first, err, sizeof err), 0, "%s", err);
  upload_meta_t live = keyed("live-key", "aaaa", NULL);
  cr_assert_eq(record(&live, &r, err, sizeof err), 0, "%s", err);
  exec_sql("UPDATE upload_keys SET expires_at = now() - interval '1 second' "
           "WHERE idem_key = 'old-key'");

  /* Expired: another upload may take the key, and is stored. */
  upload_meta_t other = keyed("old-key", "bbbb", NULL);
  cr_assert_eq(record(&other, &r, err, sizeof err), 0, "%s", err);
  cr_assert_not(r.replayed);
  cr_assert_str_neq(r.document_id, first.document_id);
  cr_assert_eq(scalar("SELECT count(*) FROM upload_keys"), 2);
  cr_assert_eq(scalar("SELECT count(*) FROM upload_keys WHERE idem_key = 'old-key' AND "
                      "sha256 = 'bbbb' AND expires_at > now() + interval '50 seconds'"),
               1, "the key now belongs to the new upload, with a fresh lifetime");

  /* Clean-up takes only expired keys, at most limit of them. */
  exec_sql("UPDATE upload_keys SET expires_at = now() - interval '1 second'");
  int n = -1;
  cr_assert_eq(docstore_expire_keys(pool, 1, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_eq(docstore_expire_keys(pool, 16, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_eq(docstore_expire_keys(pool, 16, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 0);
  cr_assert_eq(scalar("SELECT count(*) FROM upload_keys"), 0);
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 3, "documents stay");
}

/* ---- the same key at the same time ----------------------------------------- */

typedef struct racer {
  upload_meta_t m;
  upload_result_t r;
  q_err_t rc;
  char err[512];
  atomic_int done;
} racer_t;

static void *race_cb(void *arg) {
  racer_t *x = arg;
  x->rc = record(&x->m, &x->r, x->err, sizeof x->err);
  atomic_store(&x->done, 1);
  return NULL;
}

/* Holds the key in an open transaction on a connection of its own, as an
 * upload that claimed it and has not committed yet does. */
static PGconn *hold_key(const char *key, const char *doc_id, const char *sha) {
  char dsn[256], err[256] = "";
  snprintf(dsn, sizeof dsn, "%s", test_dsn);
  PGconn *c = PQconnectdb(dsn);
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
  const char *params[3] = {key, doc_id, sha};
  cr_assert_eq(q_pg_exec(c, "BEGIN", 0, NULL, "begin", NULL, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(
      q_pg_exec(c,
                "INSERT INTO documents (id, tenant_id, content_type, version, sha256, "
                "size_bytes, status, filename) "
                "VALUES ($1, 't1', 'text/markdown', 1, $2, 10, 'queued', 'notes.md')",
                2, params + 1, "holder document", NULL, err, sizeof err),
      0, "%s", err);
  cr_assert_eq(q_pg_exec(c,
                         "INSERT INTO upload_keys (tenant_id, idem_key, sha256, "
                         "content_type, external_id, title, filename, document_id, "
                         "job_id, version, expires_at) "
                         "VALUES ('t1', $1, $3, 'text/markdown', '', '', 'notes.md', $2, "
                         "'holder-job', 1, now() + interval '1 hour')",
                         3, params, "holder key", NULL, err, sizeof err),
               0, "%s", err);
  return c;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

Test(docstore, a_second_upload_waits_for_the_first_then_replays_its_result) {
  migrate(docstore_nmigrations);
  const char *doc = "00000000-0000-4000-8000-00000000000a";
  PGconn *holder = hold_key("race-key", doc, "aaaa");
  racer_t x = {.m = keyed("race-key", "aaaa", NULL)};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, race_cb, &x), 0);
  sleep_ms(300);
  cr_assert_not(atomic_load(&x.done), "the second upload waits for the first's commit");
  char err[256] = "";
  cr_assert_eq(q_pg_exec(holder, "COMMIT", 0, NULL, "commit", NULL, err, sizeof err), 0,
               "%s", err);
  pthread_join(t, NULL);
  PQfinish(holder);
  cr_assert_eq(x.rc, 0, "%s", x.err);
  cr_assert(x.r.replayed);
  cr_assert_str_eq(x.r.document_id, doc);
  cr_assert_str_eq(x.r.job_id, "holder-job");
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 1);
}

Test(docstore, a_second_upload_with_other_content_waits_then_conflicts) {
  migrate(docstore_nmigrations);
  PGconn *holder = hold_key("race-key", "00000000-0000-4000-8000-00000000000b", "aaaa");
  racer_t x = {.m = keyed("race-key", "bbbb", NULL)};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, race_cb, &x), 0);
  sleep_ms(200);
  char err[256] = "";
  cr_assert_eq(q_pg_exec(holder, "COMMIT", 0, NULL, "commit", NULL, err, sizeof err), 0,
               "%s", err);
  pthread_join(t, NULL);
  PQfinish(holder);
  cr_assert_eq(x.rc, Q_ECONFLICT, "%d %s", x.rc, x.err);
}

Test(docstore, when_the_first_upload_rolls_back_the_second_proceeds) {
  migrate(docstore_nmigrations);
  PGconn *holder = hold_key("race-key", "00000000-0000-4000-8000-00000000000c", "aaaa");
  racer_t x = {.m = keyed("race-key", "aaaa", NULL)};
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, race_cb, &x), 0);
  sleep_ms(200);
  cr_assert_not(atomic_load(&x.done));
  PQclear(PQexec(holder, "ROLLBACK"));
  pthread_join(t, NULL);
  PQfinish(holder);
  cr_assert_eq(x.rc, 0, "%s", x.err);
  cr_assert_not(x.r.replayed, "the key was free again: this upload is the first");
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 1);
  cr_assert_eq(scalar("SELECT count(*) FROM upload_keys WHERE document_id IS NOT NULL"),
               1);
}

Test(docstore, racing_uploads_with_one_key_store_one_document) {
  migrate(docstore_nmigrations);
  for (int round = 0; round < 20; round++) {
    char key[32];
    snprintf(key, sizeof key, "round-%d", round);
    racer_t a = {.m = keyed(key, "aaaa", NULL)}, b = {.m = keyed(key, "aaaa", NULL)};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, race_cb, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, race_cb, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a.rc, 0, "%s", a.err);
    cr_assert_eq(b.rc, 0, "%s", b.err);
    cr_assert_eq(a.r.replayed + b.r.replayed, 1, "round %d: exactly one stored", round);
    cr_assert_str_eq(a.r.document_id, b.r.document_id);
    cr_assert_str_eq(a.r.job_id, b.r.job_id);
  }
  cr_assert_eq(scalar("SELECT count(*) FROM documents"), 20);
  cr_assert_eq(scalar("SELECT count(*) FROM jobs"), 20);
}
