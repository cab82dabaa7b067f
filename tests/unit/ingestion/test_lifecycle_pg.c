/* test_lifecycle_pg.c - the document and job lists against a private
 * PostgreSQL (lifecycle.h): keyset pages cover every row exactly once in
 * order, filters and tenants hold, deleted documents are left out, versions
 * are recorded by the trigger, and on a tenant of 50 000 documents a deep
 * page is an index range scan (no sort, no offset).
 *
 * The runner process starts one server (tests/unit/support/pgtest.h); each
 * test creates its own database in it. */
#include "docstore.h"
#include "lifecycle.h"
#include "pgtest.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/pg.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
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

static void exec(const char *sql) {
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  cr_assert_eq(q_pg_exec(c, sql, 0, NULL, "test", NULL, err, sizeof err), 0, "%s: %s",
               sql, err);
  q_pg_release(pool, c);
}

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

TestSuite(lifecycle_pg, .init = setup, .fini = teardown, .timeout = 120);

/* n documents of tenant, one a second back from now: the title is
 * "<prefix> <i>", every third one markdown, every fifth one failed. */
static void add_docs(const char *tenant, const char *prefix, int n) {
  char sql[1024];
  snprintf(
      sql, sizeof sql,
      "INSERT INTO documents (id, tenant_id, title, filename, content_type, version, "
      "sha256, size_bytes, status, created_at) "
      "SELECT gen_random_uuid(), '%s', '%s ' || i, 'f' || i || '.txt', "
      "CASE WHEN i %% 3 = 0 THEN 'text/markdown' ELSE 'text/plain' END, 1, "
      "md5(i::text) || md5(i::text), i, "
      "CASE WHEN i %% 5 = 0 THEN 'failed' ELSE 'done' END, "
      "now() - make_interval(secs => i) FROM generate_series(1, %d) i",
      tenant, prefix, n);
  exec(sql);
}

/* Every page of tenant's list with filter f, pages of limit; returns the
 * number of rows and checks they come newest first, each once. */
static int walk(const char *tenant, const doc_filter_t *f, int limit, int *pages) {
  list_pos_t pos;
  const list_pos_t *after = NULL;
  char last_created[64] = "";
  int rows = 0;
  *pages = 0;
  for (;;) {
    q_arena_t *a = q_arena_new(8 << 20);
    Quarry__V1__ListDocumentsResponse *resp = NULL;
    char err[512] = "";
    cr_assert_eq(lifecycle_list_documents(pool, tenant, f, after, limit, a, &resp, err,
                                          sizeof err),
                 0, "%s", err);
    cr_assert_leq(resp->n_documents, (size_t)limit);
    for (size_t i = 0; i < resp->n_documents; i++) {
      const Quarry__V1__Document *d = resp->documents[i];
      cr_assert_str_eq(d->tenant_id, tenant);
      if (last_created[0])
        cr_assert_leq(strcmp(d->created_at, last_created), 0, "newest first: %s after %s",
                      d->created_at, last_created);
      snprintf(last_created, sizeof last_created, "%s", d->created_at);
      rows++;
    }
    (*pages)++;
    bool more = resp->next_cursor[0] != '\0';
    if (more)
      cr_assert_eq(lifecycle_cursor_decode(resp->next_cursor, &pos), 0);
    q_arena_free(a);
    if (!more)
      break;
    after = &pos;
    cr_assert_lt(*pages, 10000, "paging does not end");
  }
  return rows;
}

Test(lifecycle_pg, pages_cover_every_row_once_with_filters_and_tenants) {
  add_docs("t1", "Report", 1000);
  add_docs("t2", "Other", 10);
  exec("UPDATE documents SET deleted_at = now() WHERE tenant_id = 't1' AND title IN "
       "('Report 7', 'Report 8')");
  doc_filter_t none = {0};
  int pages;
  cr_assert_eq(walk("t1", &none, 100, &pages), 998);
  cr_assert_eq(pages, 10);
  cr_assert_eq(walk("t1", &none, 7, &pages), 998);
  cr_assert_eq(pages, 143);
  cr_assert_eq(walk("t2", &none, 500, &pages), 10);
  cr_assert_eq(walk("nobody", &none, 50, &pages), 0);

  doc_filter_t md = {.content_type = "text/markdown"};
  cr_assert_eq(walk("t1", &md, 50, &pages), 333);
  doc_filter_t failed = {.state = "failed"};
  cr_assert_eq(walk("t1", &failed, 50, &pages), 200);
  doc_filter_t q = {.q = "REPORT 99"}; /* 99, 990..999 */
  cr_assert_eq(walk("t1", &q, 3, &pages), 11);
  doc_filter_t like = {.q = "%"}; /* a literal %, not a wildcard */
  cr_assert_eq(walk("t1", &like, 50, &pages), 0);
  doc_filter_t recent = {.created_after = "2000-01-01T00:00:00Z",
                         .created_before = "2999-01-01T00:00:00+02:00"};
  cr_assert_eq(walk("t1", &recent, 500, &pages), 998);
}

Test(lifecycle_pg, versions_are_recorded_by_the_trigger) {
  exec("INSERT INTO documents (id, tenant_id, filename, content_type, version, sha256, "
       "size_bytes, status) VALUES ('11111111-2222-3333-4444-555555555555', 't', 'a.md', "
       "'text/markdown', 1, 'aa', 10, 'done')");
  exec("UPDATE documents SET version = 2, sha256 = 'bb', size_bytes = 20, filename = "
       "'b.md' WHERE id = '11111111-2222-3333-4444-555555555555'");
  exec("UPDATE documents SET status = 'queued' WHERE id = "
       "'11111111-2222-3333-4444-555555555555'"); /* no new version */
  q_arena_t *a = q_arena_new(1 << 20);
  Quarry__V1__Document d = QUARRY__V1__DOCUMENT__INIT;
  d.id = "11111111-2222-3333-4444-555555555555";
  char err[256] = "";
  cr_assert_eq(lifecycle_versions(pool, &d, a, err, sizeof err), 0, "%s", err);
  cr_assert_eq(d.n_versions, 2);
  cr_assert_eq(d.versions[0]->version, 2);
  cr_assert_str_eq(d.versions[0]->filename, "b.md");
  cr_assert_eq(d.versions[0]->size_bytes, 20);
  cr_assert_eq(d.versions[1]->version, 1);
  cr_assert_str_eq(d.versions[1]->sha256, "aa");
  q_arena_free(a);
}

/* Uploads version content sha of external id "ext" with metadata meta. */
static void upload_meta(const char *sha, const char *meta, upload_result_t *r) {
  upload_meta_t m = {.tenant_id = "t",
                     .external_id = "ext",
                     .title = "doc",
                     .filename = "doc.md",
                     .content_type = "text/markdown",
                     .sha256 = sha,
                     .size = 10,
                     .trace_id = "",
                     .metadata = meta};
  char err[512] = "";
  cr_assert_eq(docstore_record_upload(pool, &m, r, err, sizeof err), 0, "%s", err);
}

/* The versions of document id, newest first, as GetDocument reads them. */
static Quarry__V1__Document *versions_of(const char *id, q_arena_t *a) {
  Quarry__V1__Document *d = q_arena_alloc(a, sizeof *d);
  quarry__v1__document__init(d);
  d->id = q_arena_strdup(a, id);
  char err[256] = "";
  cr_assert_eq(lifecycle_versions(pool, d, a, err, sizeof err), 0, "%s", err);
  return d;
}

Test(lifecycle_pg, each_version_keeps_the_metadata_it_was_uploaded_with) {
  upload_result_t r1, r2, r3, r4;
  upload_meta("sha-one", "{\"team\":\"legal\",\"year\":2019}", &r1);
  upload_meta("sha-two", "{\"team\":\"eng\"}", &r2);
  cr_assert_str_eq(r2.document_id, r1.document_id);
  cr_assert_eq(r2.version, 2);
  q_arena_t *a = q_arena_new(1 << 20);
  Quarry__V1__Document *d = versions_of(r1.document_id, a);
  cr_assert_eq(d->n_versions, 2);
  cr_assert_str_eq(d->versions[0]->metadata, "{\"team\": \"eng\"}");
  cr_assert_str_eq(d->versions[1]->metadata, "{\"team\": \"legal\", \"year\": 2019}",
                   "version 1 keeps its own metadata, not its successor's");

  /* The same content again: without metadata or with the same metadata
   * nothing changes; with other metadata the current version's changes
   * and it is indexed again (a new job of the same version). */
  upload_meta("sha-two", "", &r3);
  cr_assert(r3.unchanged);
  upload_meta("sha-two", "{\"team\":\"eng\"}", &r3);
  cr_assert(r3.unchanged);
  cr_assert_str_eq(r3.job_id, r2.job_id);
  upload_meta("sha-two", "{\"team\":\"ops\"}", &r4);
  cr_assert_not(r4.unchanged);
  cr_assert_eq(r4.version, 2);
  cr_assert_str_neq(r4.job_id, r2.job_id);
  d = versions_of(r1.document_id, a);
  cr_assert_eq(d->n_versions, 2);
  cr_assert_str_eq(d->versions[0]->metadata, "{\"team\": \"ops\"}");
  cr_assert_str_eq(d->versions[1]->metadata, "{\"team\": \"legal\", \"year\": 2019}");
  /* The job the worker claims carries the current version's metadata; the
   * older queued job of that version was superseded. */
  job_t j;
  char err[256] = "";
  cr_assert_eq(docstore_claim(pool, "host:1", &j, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(j.id, r4.job_id);
  cr_assert_str_eq(j.metadata, "{\"team\": \"ops\"}");
  cr_assert_eq(docstore_claim(pool, "host:1", &j, err, sizeof err), Q_ENOTFOUND);
  q_arena_free(a);
}

/* The plan of a deep page, in the shape lifecycle.c builds it. */
static char *explain(const char *sql) {
  char err[512] = "";
  PGconn *c = q_pg_acquire(pool, 2000, err, sizeof err);
  cr_assert_not_null(c, "%s", err);
  q_err_t rc = Q_OK;
  PGresult *r = q_pg_query(c, sql, 0, NULL, "explain", &rc, err, sizeof err);
  cr_assert_not_null(r, "%s", err);
  size_t len = 0;
  for (int i = 0; i < PQntuples(r); i++)
    len += strlen(PQgetvalue(r, i, 0)) + 1;
  char *out = calloc(1, len + 1);
  cr_assert_not_null(out);
  size_t used = 0;
  for (int i = 0; i < PQntuples(r); i++)
    used += (size_t)snprintf(out + used, len + 1 - used, "%s\n", PQgetvalue(r, i, 0));
  PQclear(r);
  q_pg_release(pool, c);
  return out;
}

Test(lifecycle_pg, a_deep_page_of_a_big_tenant_is_an_index_range_scan) {
  add_docs("big", "Doc", 50000);
  add_docs("small", "Doc", 100);
  exec("ANALYZE documents");
  /* The position of row 40000 (newest first), through the list itself. */
  char err[512] = "";
  q_arena_t *a = q_arena_new(64 << 20);
  doc_filter_t none = {0};
  Quarry__V1__ListDocumentsResponse *resp = NULL;
  list_pos_t pos;
  const list_pos_t *after = NULL;
  for (int page = 0; page < 80; page++) {
    cr_assert_eq(lifecycle_list_documents(pool, "big", &none, after, 500, a, &resp, err,
                                          sizeof err),
                 0, "%s", err);
    cr_assert_eq(resp->n_documents, 500);
    cr_assert_eq(lifecycle_cursor_decode(resp->next_cursor, &pos), 0);
    after = &pos;
  }
  /* Rows 40001.. are "Doc 40001".. (one a second back from now). */
  int64_t t0 = q_now_ms();
  cr_assert_eq(
      lifecycle_list_documents(pool, "big", &none, after, 50, a, &resp, err, sizeof err),
      0, "%s", err);
  int64_t ms = q_now_ms() - t0;
  cr_assert_str_eq(resp->documents[0]->title, "Doc 40001");
  cr_assert_str_eq(resp->documents[49]->title, "Doc 40050");
  fprintf(stderr, "lifecycle_pg: page 801 of 50-row pages (row 40001) in %lld ms\n",
          (long long)ms);

  char sql[1024];
  snprintf(sql, sizeof sql,
           "EXPLAIN SELECT d.id FROM documents d WHERE d.tenant_id = 'big' AND "
           "d.deleted_at IS NULL AND (d.created_at, d.id) < ('epoch'::timestamptz + "
           "%lld::bigint * interval '1 microsecond', '%s'::uuid) "
           "ORDER BY d.created_at DESC, d.id DESC LIMIT 51",
           (long long)pos.micros, pos.id);
  char *plan = explain(sql);
  cr_assert(strstr(plan, "documents_tenant_list_idx"), "no list index in the plan:\n%s",
            plan);
  cr_assert(!strstr(plan, "Sort"), "the plan sorts:\n%s", plan);
  cr_assert(!strstr(plan, "Seq Scan"), "the plan scans the table:\n%s", plan);
  free(plan);
  q_arena_free(a);
}
