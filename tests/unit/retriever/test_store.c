/* test_store.c - retriever_chunks in a private PostgreSQL: upserts are
 * durable and exact, retirements and tenant ownership hold, and the index
 * rebuilt from the table equals the one built directly.
 *
 * The runner process starts one server (tests/unit/support/pgtest.h); each
 * test creates its own database in it so tests running side by side cannot
 * see each other's rows. */
#include "index.h"
#include "store.h"
#include "pgtest.h"

#include "quarry/arena.h"
#include "quarry/error.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a private server (runner process) ------------------------------------ */

static pgtest_t shared;

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
  pgtest_share(&shared);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  pgtest_remove(&shared);
}

/* ---- per test: a fresh database ------------------------------------------- */

static char test_dsn[256];
static store_t *store;
static q_arena_t *arena;

static PGconn *connect_to(const char *dsn) {
  PGconn *c = PQconnectdb(dsn);
  cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
  return c;
}

static void setup(void) {
  pgtest_shared_fresh_db(test_dsn, sizeof test_dsn);
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 4, .wait_ms = 5000};
  store = store_new(&pg, err, sizeof err);
  cr_assert_not_null(store, "%s", err);
  arena = q_arena_new(0);
}

static void teardown(void) {
  store_free(store);
  q_arena_free(arena);
}

TestSuite(store, .init = setup, .fini = teardown);

static long query_long(const char *sql) {
  PGconn *c = connect_to(test_dsn);
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql, PQerrorMessage(c));
  long v = PQgetisnull(r, 0, 0) ? -1 : atol(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return v;
}

static void store_put(const char *tenant, const engine_chunk_t *c, size_t n,
                      const char *replace, size_t *retired) {
  char err[512] = "";
  size_t r;
  int rc = store_upsert(store, tenant, c, n, replace, retired ? retired : &r, NULL, NULL,
                        err, sizeof err);
  cr_assert_eq(rc, 0, "store upsert: %s", err);
}

static bool load_cb(void *ud, const char *tenant, const engine_chunk_t *c) {
  char err[256];
  cr_assert_neq(c->seq, 0, "rows come with their seq");
  return index_upsert(ud, tenant, c, 1, NULL, NULL, err, sizeof err) == 0;
}

static index_t *load(size_t *n) {
  index_t *idx = index_new(NULL);
  char err[512] = "";
  int rc = store_load(store, load_cb, idx, n, NULL, err, sizeof err);
  cr_assert_eq(rc, 0, "load: %s", err);
  return idx;
}

/* The candidate lists of both kinds must agree between a and b. */
static void same_lists(const engine_cand_t *a, size_t na, const engine_cand_t *b,
                       size_t nb) {
  cr_assert_eq(na, nb);
  for (size_t k = 0; k < na; k++) {
    cr_assert_str_eq(a[k].chunk_id, b[k].chunk_id);
    cr_assert_str_eq(a[k].text, b[k].text);
    cr_assert_str_eq(a[k].title, b[k].title);
    cr_assert_eq(a[k].page, b[k].page);
    cr_assert_eq(a[k].at.start, b[k].at.start);
    cr_assert_eq(a[k].at.end, b[k].at.end);
    cr_assert_eq(a[k].at.text, b[k].at.text);
    cr_assert_eq(a[k].version, b[k].version);
    cr_assert_eq(a[k].score, b[k].score); /* bit for bit */
  }
}

Test(store, round_trip_is_exact) {
  float v1[] = {0.1f, -2.5f, 3.25e-7f, 1e30f}, v2[] = {1, 1, 1, 1};
  const char *awkward =
      "tabs\there, new\nlines, back\\slashes, \\N, caf\xc3\xa9 \xe6\x9d\xb1";
  engine_chunk_t c[] = {
      {.chunk_id = "d1:1:0",
       .doc_id = "d1",
       .title = "Title\tone",
       .text = awkward,
       .version = 1,
       .ordinal = 0,
       .page = 7,
       .at = {1000, 1051, 12},
       .embedding = v1,
       .dim = 4},
      {.chunk_id = "d1:1:1",
       .doc_id = "d1",
       .title = "",
       .text = "plain text here",
       .version = 1,
       .ordinal = 1,
       .page = 8,
       .embedding = v2,
       .dim = 4},
      {.chunk_id = "d2:3:0",
       .doc_id = "d2",
       .title = "No vector",
       .text = "lexical only here",
       .version = 3},
  };
  store_put("t1", c, 3, NULL, NULL);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks WHERE active"), 3);
  cr_assert_eq(query_long("SELECT length(embedding) FROM retriever_chunks "
                          "WHERE chunk_id = 'd1:1:0'"),
               16);
  cr_assert_eq(
      query_long("SELECT count(*) FROM retriever_chunks WHERE embedding IS NULL"), 1);

  size_t n;
  index_t *idx = load(&n);
  cr_assert_eq(n, 3);
  index_t *direct = index_new(NULL);
  char err[256];
  cr_assert_eq(index_upsert(direct, "t1", c, 3, NULL, NULL, err, sizeof err), 0);

  float q[] = {0.3f, -1, 0.5f, 2e29f};
  const char *queries[] = {"tabs lines caf\xc3\xa9", "plain text", "lexical here", ""};
  for (int i = 0; i < 4; i++) {
    engine_cand_t *a, *b;
    size_t na, nb;
    bool used, exact;
    cr_assert_eq(index_lexical(idx, "t1", queries[i], strlen(queries[i]), 10, NULL, arena,
                               &a, &na, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(index_lexical(direct, "t1", queries[i], strlen(queries[i]), 10, NULL,
                               arena, &b, &nb, err, sizeof err),
                 0, "%s", err);
    same_lists(a, na, b, nb);
    cr_assert_eq(index_dense(idx, "t1", q, 4, 10, NULL, arena, &a, &na, &used, &exact,
                             err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(index_dense(direct, "t1", q, 4, 10, NULL, arena, &b, &nb, &used, &exact,
                             err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(na, 2);
    same_lists(a, na, b, nb);
  }
  /* the awkward text survived byte for byte */
  engine_cand_t *h;
  size_t nh;
  cr_assert_eq(
      index_lexical(idx, "t1", "slashes", 7, 10, NULL, arena, &h, &nh, err, sizeof err),
      0);
  cr_assert_eq(nh, 1);
  cr_assert_str_eq(h[0].text, awkward);
  cr_assert_str_eq(h[0].title, "Title\tone");
  index_free(idx);
  index_free(direct);
}

Test(store, replace_retires_rows_and_load_skips_them) {
  engine_chunk_t v1[] = {
      {.chunk_id = "d:1:0", .doc_id = "d", .text = "one"},
      {.chunk_id = "d:1:1", .doc_id = "d", .text = "two"},
      {.chunk_id = "e:1:0", .doc_id = "e", .text = "other document"},
  };
  store_put("t", v1, 3, NULL, NULL);
  /* the same document id in another tenant is not touched */
  engine_chunk_t other[] = {{.chunk_id = "u:d:1:0", .doc_id = "d", .text = "one"}};
  store_put("u", other, 1, NULL, NULL);

  engine_chunk_t v2[] = {{.chunk_id = "d:2:0", .doc_id = "d", .text = "three"},
                         {.chunk_id = "d:1:1", .doc_id = "d", .text = "two again"}};
  size_t retired = 0;
  store_put("t", v2, 2, "d", &retired);
  cr_assert_eq(retired, 1);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks WHERE NOT active"), 1);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks "
                          "WHERE chunk_id = 'd:1:0' AND NOT active"),
               1);

  size_t n;
  index_t *idx = load(&n);
  cr_assert_eq(n, 4);
  index_stats_t st;
  index_stats(idx, "t", &st);
  cr_assert_eq(st.chunks, 3);
  cr_assert_eq(st.documents, 2);
  index_stats(idx, "u", &st);
  cr_assert_eq(st.chunks, 1);
  index_free(idx);

  /* a retired chunk comes back when upserted again */
  engine_chunk_t back[] = {{.chunk_id = "d:1:0", .doc_id = "d", .text = "one"}};
  store_put("t", back, 1, NULL, NULL);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks WHERE NOT active"), 0);

  /* replacing with no chunks retires the whole document */
  store_put("t", NULL, 0, "d", &retired);
  cr_assert_eq(retired, 3);
}

Test(store, chunk_ids_of_another_tenant_are_refused) {
  engine_chunk_t a[] = {{.chunk_id = "shared", .doc_id = "d", .text = "tenant a's"}};
  store_put("a", a, 1, NULL, NULL);
  engine_chunk_t b[] = {
      {.chunk_id = "fresh", .doc_id = "d", .text = "fine"},
      {.chunk_id = "shared", .doc_id = "d", .text = "tenant b's"},
  };
  char err[512] = "";
  size_t retired;
  int rc = store_upsert(store, "b", b, 2, "d", &retired, NULL, NULL, err, sizeof err);
  cr_assert_eq(rc, Q_ECONFLICT, "rc %d: %s", rc, err);
  cr_assert(strstr(err, "shared"), "%s", err);
  /* nothing of the batch was written, a's row is intact */
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks"), 1);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks "
                          "WHERE tenant_id = 'a' AND text = 'tenant a''s' AND active"),
               1);
  /* the store stays usable */
  store_put("b", b, 1, NULL, NULL);
}

Test(store, load_streams_many_rows) {
  enum { N = 2500 };
  static char ids[N][24], texts[N][48];
  static engine_chunk_t c[N];
  static float vec[N][3];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof ids[i], "doc%d:1:%d", i / 10, i % 10);
    snprintf(texts[i], sizeof texts[i], "row %d word%d", i, i % 37);
    vec[i][0] = (float)i;
    vec[i][1] = 1;
    vec[i][2] = (float)(i % 5);
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = ids[i],
                            .text = texts[i],
                            .embedding = vec[i],
                            .dim = 3};
  }
  /* two batches, two tenants */
  store_put("big", c, 2000, NULL, NULL);
  store_put("small", c + 2000, N - 2000, NULL, NULL);
  size_t n;
  index_t *idx = load(&n);
  cr_assert_eq(n, N);
  index_stats_t st;
  index_stats(idx, "big", &st);
  cr_assert_eq(st.chunks, 2000);
  index_stats(idx, "small", &st);
  cr_assert_eq(st.chunks, 500);
  index_free(idx);
}

Test(store, ping_answers) {
  char why[256] = "";
  cr_assert(store_ping(store, why, sizeof why), "%s", why);
}

Test(store_down, unreachable_database_gives_up_after_the_wait) {
  char err[512] = "";
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  q_pg_cfg_t pg = {.dsn = "host=127.0.0.1 port=1 user=quarry connect_timeout=2",
                   .pool = 4,
                   .wait_ms = 400};
  store_t *st = store_new(&pg, err, sizeof err);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
  cr_assert_null(st);
  cr_assert(strstr(err, "unreachable"), "%s", err);
  cr_assert(ms >= 300 && ms < 5000, "gave up after %ld ms", ms);
}

Test(store, seq_is_returned_and_stable) {
  engine_chunk_t c[] = {
      {.chunk_id = "s:1:0", .doc_id = "s", .text = "first"},
      {.chunk_id = "s:1:1", .doc_id = "s", .text = "second"},
  };
  uint64_t seq[2], again[2];
  size_t retired;
  char err[512] = "";
  cr_assert_eq(store_upsert(store, "t", c, 2, NULL, &retired, seq, NULL, err, sizeof err),
               0, "%s", err);
  cr_assert_neq(seq[0], 0);
  cr_assert_neq(seq[1], 0);
  cr_assert_neq(seq[0], seq[1]);
  cr_assert_eq(query_long("SELECT seq FROM retriever_chunks WHERE chunk_id = 's:1:1'"),
               (long)seq[1]);
  /* rewritten in place (new text, and in the other order): the same numbers */
  engine_chunk_t d[] = {
      {.chunk_id = "s:1:1", .doc_id = "s", .text = "second, edited"},
      {.chunk_id = "s:1:0", .doc_id = "s", .text = "first, edited"},
  };
  cr_assert_eq(
      store_upsert(store, "t", d, 2, "s", &retired, again, NULL, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(again[0], seq[1]);
  cr_assert_eq(again[1], seq[0]);
}

/* The embedded engine over this database: what it answers after a restart
 * (rebuilt from the table, vector labels from seq) is what it answered
 * before, in both lists, with replaced and removed documents gone. */
static void both_lists(engine_t *e, const char *text, const float *q, engine_cand_t **lex,
                       size_t *nlex, engine_cand_t **den, size_t *nden) {
  char err[256];
  engine_query_t qq = {"t", ENGINE_LEXICAL | ENGINE_DENSE, text, strlen(text), q, 4, 50,
                       NULL};
  engine_result_t r;
  cr_assert_eq(e->ops->search(e->st, &qq, arena, &r, err, sizeof err), 0, "%s", err);
  *lex = r.lexical;
  *nlex = r.nlexical;
  *den = r.dense;
  *nden = r.ndense;
}

Test(store, embedded_engine_answers_the_same_after_a_restart) {
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .exact_max = 0}; /* the graph walk */
  engine_t e;
  cr_assert_eq(engine_open_ops(&e, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  enum { N = 200 };
  static char ids[N][32], docs[N][16];
  static float vec[N][4];
  static engine_chunk_t c[N];
  for (int i = 0; i < N; i++) {
    snprintf(docs[i], sizeof docs[i], "doc%d", i / 4);
    snprintf(ids[i], sizeof ids[i], "doc%d:1:%d", i / 4, i % 4);
    vec[i][0] = (float)(i % 7) + 0.5f;
    vec[i][1] = (float)(i % 11);
    vec[i][2] = (float)(i % 5);
    vec[i][3] = 1;
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = docs[i],
                            .text = i % 2 ? "river stone" : "river delta",
                            .version = 1,
                            .ordinal = i % 4,
                            .embedding = vec[i],
                            .dim = 4};
  }
  size_t retired;
  cr_assert_eq(e.ops->upsert(e.st, "t", c, N, NULL, &retired, err, sizeof err), 0, "%s",
               err);
  /* doc0 gets a new version with one chunk; doc1 is removed */
  float nv[] = {9, 9, 9, 9};
  engine_chunk_t v2 = {.chunk_id = "doc0:2:0",
                       .doc_id = "doc0",
                       .text = "river mouth",
                       .version = 2,
                       .embedding = nv,
                       .dim = 4};
  cr_assert_eq(e.ops->upsert(e.st, "t", &v2, 1, "doc0", &retired, err, sizeof err), 0);
  cr_assert_eq(retired, 4);
  cr_assert_eq(e.ops->remove(e.st, "t", "doc1", &retired, err, sizeof err), 0);
  cr_assert_eq(retired, 4);

  float q[] = {1, 2, 3, 1};
  engine_cand_t *l1, *d1, *l2, *d2;
  size_t nl1, nd1, nl2, nd2;
  both_lists(&e, "river stone", q, &l1, &nl1, &d1, &nd1);
  engine_close(&e);

  cr_assert_eq(engine_open_ops(&e, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_stats_t st;
  cr_assert_eq(e.ops->stats(e.st, "t", &st, err, sizeof err), 0);
  cr_assert_eq(st.chunks, N - 8 + 1);
  cr_assert_eq(st.vectors, N - 8 + 1);
  both_lists(&e, "river stone", q, &l2, &nl2, &d2, &nd2);
  same_lists(l1, nl1, l2, nl2);
  /* the graph is rebuilt in another order: the same neighbours, with the
   * same scores, up to the walk's approximation; here it is exact */
  same_lists(d1, nd1, d2, nd2);
  for (size_t i = 0; i < nd2; i++)
    cr_assert(strncmp(d2[i].chunk_id, "doc1:", 5) != 0 &&
                  strncmp(d2[i].chunk_id, "doc0:1:", 7) != 0,
              "%s came back", d2[i].chunk_id);
  engine_close(&e);
}

/* Lexical hits of word on e (tenant t), their chunk ids, sorted. */
static size_t hits(engine_t *e, const char *word, char ids[][32], size_t max) {
  char err[256];
  engine_query_t qq = {"t", ENGINE_LEXICAL, word, strlen(word), NULL, 0, 50, NULL};
  engine_result_t r;
  cr_assert_eq(e->ops->search(e->st, &qq, arena, &r, err, sizeof err), 0, "%s", err);
  size_t n = r.nlexical < max ? r.nlexical : max;
  for (size_t i = 0; i < n; i++)
    snprintf(ids[i], sizeof ids[i], "%s", r.lexical[i].chunk_id);
  qsort(ids, n, sizeof ids[0], (int (*)(const void *, const void *))strcmp);
  return n;
}

Test(store, a_staged_version_is_invisible_until_its_commit_swaps_it_in) {
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg};
  engine_t e;
  cr_assert_eq(engine_open_ops(&e, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t v1[2] = {
      {.chunk_id = "d:1:0", .doc_id = "d", .text = "harbour one", .version = 1},
      {.chunk_id = "d:1:1", .doc_id = "d", .text = "harbour two", .version = 1}};
  size_t retired;
  cr_assert_eq(e.ops->upsert(e.st, "t", v1, 2, "d", &retired, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t v2[3] = {
      {.chunk_id = "d:2:0", .doc_id = "d", .text = "harbour new", .version = 2},
      {.chunk_id = "d:2:1", .doc_id = "d", .text = "harbour newer", .version = 2},
      {.chunk_id = "d:2:2", .doc_id = "d", .text = "harbour newest", .version = 2}};
  /* two batches staged: searches still see version 1 alone */
  cr_assert_eq(e.ops->stage(e.st, "t", v2, 2, err, sizeof err), 0, "%s", err);
  cr_assert_eq(e.ops->stage(e.st, "t", v2 + 2, 1, err, sizeof err), 0, "%s", err);
  char ids[8][32];
  cr_assert_eq(hits(&e, "harbour", ids, 8), 2);
  cr_assert_str_eq(ids[0], "d:1:0");
  cr_assert_str_eq(ids[1], "d:1:1");
  /* a commit expecting a chunk that never came changes nothing */
  cr_assert_eq(e.ops->commit(e.st, "t", "d", 2, 4, &retired, err, sizeof err),
               Q_ENOTFOUND);
  cr_assert(strstr(err, "3 chunks of version 2"), "%s", err);
  cr_assert_eq(hits(&e, "harbour", ids, 8), 2);
  /* the commit: version 2 whole, version 1 gone, in the table too */
  cr_assert_eq(e.ops->commit(e.st, "t", "d", 2, 3, &retired, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(retired, 2);
  cr_assert_eq(hits(&e, "harbour", ids, 8), 3);
  cr_assert_str_eq(ids[0], "d:2:0");
  cr_assert_str_eq(ids[2], "d:2:2");
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_chunks WHERE doc_id = 'd' AND "
                          "active AND version = 2"),
               3);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_staged"), 0);
  /* a restart loads the committed version */
  engine_close(&e);
  cr_assert_eq(engine_open_ops(&e, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(hits(&e, "harbour", ids, 8), 3);
  cr_assert_str_eq(ids[1], "d:2:1");
  engine_close(&e);
}

Test(store, filter_fields_survive_a_rebuild) {
  const char *groups[] = {"eng", "we \"quote\" and \\ back"};
  engine_chunk_t c[] = {
      {.chunk_id = "f:1:0",
       .doc_id = "f",
       .text = "filter fields",
       .content_type = "application/pdf",
       .author = "Ada Byron",
       .language = "en",
       .created_at = 1700000000,
       .metadata = "{\"team\":\"legal\",\"tags\":[\"a\",\"b\"],\"year\":2021}",
       .access_groups = groups,
       .naccess_groups = 2},
      {.chunk_id = "g:1:0", .doc_id = "g", .text = "filter fields"},
  };
  store_put("t", c, 2, NULL, NULL);
  cr_assert_eq(
      query_long("SELECT count(*) FROM retriever_chunks WHERE chunk_id = 'f:1:0' "
                 "AND content_type = 'application/pdf' AND created_at = 1700000000 "
                 "AND author = 'Ada Byron' AND language = 'en' "
                 "AND metadata->>'team' = 'legal' AND access_groups = "
                 "ARRAY['eng', 'we \"quote\" and \\ back']"),
      1);
  cr_assert_eq(
      query_long("SELECT count(*) FROM retriever_chunks WHERE chunk_id = 'g:1:0' "
                 "AND metadata IS NULL AND access_groups = '{}'"),
      1);
  size_t n;
  index_t *idx = load(&n);
  cr_assert_eq(n, 2);
  const char *f =
      "{\"and\":[{\"field\":\"content_type\",\"eq\":\"application/pdf\"},"
      "{\"field\":\"created_at\",\"gte\":\"2023-11-14T22:13:20Z\"},"
      "{\"field\":\"meta.tags\",\"eq\":\"b\"},{\"field\":\"meta.year\",\"eq\":2021},"
      "{\"field\":\"author\",\"eq\":\"Ada "
      "Byron\"},{\"field\":\"language\",\"eq\":\"EN\"}]}";
  char err[256];
  q_filter_t *flt = NULL;
  cr_assert_eq(q_filter_parse(f, strlen(f), &flt, err, sizeof err), 0, "%s", err);
  engine_cand_t *out;
  size_t nout;
  cr_assert_eq(
      index_lexical(idx, "t", "filter", 6, 10, flt, arena, &out, &nout, err, sizeof err),
      0);
  cr_assert_eq(nout, 1);
  cr_assert_str_eq(out[0].doc_id, "f");
  q_filter_free(flt);
  index_free(idx);
}
/* ---- the change log ------------------------------------------------------- */

Test(store, every_write_logs_its_documents_in_order) {
  engine_chunk_t c[] = {
      {.chunk_id = "a:1:0", .doc_id = "a", .text = "one"},
      {.chunk_id = "b:1:0", .doc_id = "b", .text = "two"},
  };
  size_t retired;
  store_span_t s1, s2, s3;
  char err[512] = "";
  cr_assert_eq(store_upsert(store, "t", c, 2, NULL, &retired, NULL, &s1, err, sizeof err),
               0, "%s", err);
  cr_assert_eq(
      store_upsert(store, "t", NULL, 0, "a", &retired, NULL, &s2, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(retired, 1);
  /* nothing touched: nothing logged */
  cr_assert_eq(
      store_upsert(store, "t", NULL, 0, NULL, &retired, NULL, &s3, err, sizeof err), 0,
      "%s", err);
  cr_assert_eq(s3.first, 0);
  cr_assert_eq(s3.last, 0);
  cr_assert_eq(s1.last, s1.first + 1, "two documents: two contiguous positions");
  cr_assert_eq(s2.first, s2.last);
  cr_assert_gt(s2.first, s1.last);
  int64_t p1 = s1.last, p2 = s2.last;

  store_change_t *ch;
  size_t n;
  cr_assert_eq(store_changes(store, 0, 100, &ch, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 3, "one change per document: a, b, then a again");
  cr_assert_str_eq(ch[0].doc_id, "a");
  cr_assert_str_eq(ch[1].doc_id, "b");
  cr_assert_str_eq(ch[2].doc_id, "a");
  cr_assert_eq(ch[1].pos, p1);
  cr_assert_eq(ch[2].pos, p2);
  for (size_t i = 0; i < n; i++) {
    cr_assert_str_eq(ch[i].tenant, "t");
    cr_assert(ch[i].own, "written by this store");
    if (i)
      cr_assert_gt(ch[i].pos, ch[i - 1].pos);
  }
  store_changes_free(ch, n);
  /* after a position: only the tail */
  cr_assert_eq(store_changes(store, p1, 100, &ch, &n, err, sizeof err), 0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_eq(ch[0].pos, p2);
  store_changes_free(ch, n);

  int64_t head, age;
  cr_assert_eq(store_log_state(store, p1, &head, &age, err, sizeof err), 0, "%s", err);
  cr_assert_eq(head, p2);
  cr_assert_geq(age, 0);
  cr_assert_eq(store_log_state(store, p2, &head, &age, err, sizeof err), 0, "%s", err);
  cr_assert_eq(age, 0, "caught up: no lag");

  /* the load reports the head its rows reflect */
  size_t loaded;
  int64_t at = -1;
  index_t *idx = index_new(NULL);
  cr_assert_eq(store_load(store, load_cb, idx, &loaded, &at, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(loaded, 1);
  cr_assert_eq(at, p2);
  index_free(idx);
}

/* Lexical hits of tenant "t" for word on e, as a count; polls until it is
 * want or ms have passed. Returns the last count. */
static size_t wait_count(engine_t *e, const char *word, size_t want, int ms) {
  char err[256];
  size_t got = 0;
  for (int waited = 0;; waited += 10) {
    engine_query_t qq = {"t", ENGINE_LEXICAL, word, strlen(word), NULL, 0, 50, NULL};
    engine_result_t r;
    cr_assert_eq(e->ops->search(e->st, &qq, arena, &r, err, sizeof err), 0, "%s", err);
    got = r.nlexical;
    if (got == want || waited >= ms)
      return got;
    struct timespec ts = {0, 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Two engines over one database are two replicas: what one writes, the
 * other serves within a second (notification), replacements and deletes
 * included; vectors travel too. */
Test(store, a_second_engine_applies_the_first_ones_writes) {
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .poll_ms = 60000}; /* notifications only */
  engine_t a, b;
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(engine_open_ops(&b, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  float v[] = {1, 0, 0, 0}, w[] = {0, 1, 0, 0};
  engine_chunk_t c[] = {
      {.chunk_id = "k:1:0",
       .doc_id = "k",
       .text = "kestrel hover",
       .embedding = v,
       .dim = 4},
      {.chunk_id = "k:1:1",
       .doc_id = "k",
       .text = "kestrel dive",
       .embedding = w,
       .dim = 4},
  };
  size_t retired;
  cr_assert_eq(a.ops->upsert(a.st, "t", c, 2, "k", &retired, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(wait_count(&b, "kestrel", 2, 1000), 2, "B sees A's upsert within 1 s");
  engine_query_t dq = {"t", ENGINE_DENSE, NULL, 0, w, 4, 1, NULL};
  engine_result_t r;
  cr_assert_eq(b.ops->search(b.st, &dq, arena, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.ndense, 1);
  cr_assert_str_eq(r.dense[0].chunk_id, "k:1:1", "the vectors came along");

  /* a new version with one chunk, written through B */
  engine_chunk_t c2 = {.chunk_id = "k:2:0", .doc_id = "k", .text = "falcon stoop"};
  cr_assert_eq(b.ops->upsert(b.st, "t", &c2, 1, "k", &retired, err, sizeof err), 0);
  cr_assert_eq(retired, 2);
  cr_assert_eq(wait_count(&a, "falcon", 1, 1000), 1);
  cr_assert_eq(wait_count(&a, "kestrel", 0, 0), 0, "the old version left A too");

  cr_assert_eq(a.ops->remove(a.st, "t", "k", &retired, err, sizeof err), 0);
  cr_assert_eq(wait_count(&b, "falcon", 0, 1000), 0, "the delete reached B");
  cr_assert_eq(b.ops->lag_ms(b.st), 0);
  char why[256] = "";
  cr_assert(b.ops->ready(b.st, why, sizeof why), "%s", why);
  engine_close(&b);
  engine_close(&a);
}

/* A replica that was closed catches up from the log when it opens again,
 * and one that falls behind past max_lag_ms is not ready. */
Test(store, a_reopened_engine_replays_what_it_missed) {
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg};
  engine_t a, b;
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t c = {.chunk_id = "m:1:0", .doc_id = "m", .text = "merlin"};
  size_t retired;
  cr_assert_eq(a.ops->upsert(a.st, "t", &c, 1, "m", &retired, err, sizeof err), 0);
  cr_assert_eq(engine_open_ops(&b, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(wait_count(&b, "merlin", 1, 0), 1, "loaded at open");
  engine_close(&b);
  cr_assert_eq(a.ops->remove(a.st, "t", "m", &retired, err, sizeof err), 0);
  cr_assert_eq(engine_open_ops(&b, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(wait_count(&b, "merlin", 0, 0), 0, "the delete is not served");
  engine_close(&b);

  /* An old unapplied change makes a replica not ready: write a change of
   * a foreign origin dated a minute ago, with a tailer that cannot apply it
   * in time (the log's first read happens at open; here max_lag_ms is
   * tiny and the change old). */
  engine_config_t strict = {.pg = &pg, .max_lag_ms = 1, .poll_ms = 60000};
  cr_assert_eq(engine_open_ops(&b, &engine_embedded_ops, &strict, err, sizeof err), 0,
               "%s", err);
  char why[256] = "";
  cr_assert(b.ops->ready(b.st, why, sizeof why), "caught up: %s", why);
  /* let the tailer reach its wait (it read the log once when it started) */
  struct timespec ts = {0, 300 * 1000000L};
  nanosleep(&ts, NULL);
  PGconn *pc = connect_to(test_dsn);
  PGresult *pr =
      PQexec(pc, "INSERT INTO retriever_changes (tenant_id, doc_id, origin, at) "
                 "VALUES ('t', 'zz', 'elsewhere', now() - interval '1 minute')");
  cr_assert_eq(PQresultStatus(pr), PGRES_COMMAND_OK, "%s", PQerrorMessage(pc));
  PQclear(pr);
  PQfinish(pc);
  /* no notification was sent and the poll is a minute away: B lags */
  cr_assert_not(b.ops->ready(b.st, why, sizeof why));
  cr_assert(strstr(why, "behind the change log"), "%s", why);
  engine_close(&b);
  engine_close(&a);
}

/* ---- snapshots ------------------------------------------------------------ */

static char snap_dir[256];

static void rm_dir(const char *d) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
  cr_assert_eq(system(cmd), 0);
}

static void exec_sql(const char *sql) {
  PGconn *c = connect_to(test_dsn);
  PGresult *r = PQexec(c, sql);
  cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
  PQclear(r);
  PQfinish(c);
}

/* The text of chunk id in tenant "t" as e serves it ("" when absent). */
static const char *served_text(engine_t *e, const char *word, const char *id) {
  char err[256];
  engine_query_t qq = {"t", ENGINE_LEXICAL, word, strlen(word), NULL, 0, 100, NULL};
  engine_result_t r;
  cr_assert_eq(e->ops->search(e->st, &qq, arena, &r, err, sizeof err), 0, "%s", err);
  for (size_t i = 0; i < r.nlexical; i++)
    if (strcmp(r.lexical[i].chunk_id, id) == 0)
      return r.lexical[i].text;
  return "";
}

/* A restart loads the snapshot written at shutdown and replays only the
 * log after it: a row edited behind the log's back (which a rebuild would
 * pick up) is served as snapshotted, a change logged meanwhile by another
 * replica is applied. A damaged snapshot is discarded and the index
 * rebuilt from the table. */
Test(store, a_restart_loads_the_snapshot_and_replays_the_tail) {
  snprintf(snap_dir, sizeof snap_dir, "/tmp/quarry-snapstore-%d", (int)getpid());
  rm_dir(snap_dir);
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .data_dir = snap_dir, .snapshot_changes = 1000000};
  engine_config_t plain = {.pg = &pg};
  engine_t a, other;
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  float v[] = {1, 2, 3, 4};
  engine_chunk_t c[] = {
      {.chunk_id = "p:1:0",
       .doc_id = "p",
       .text = "osprey nest",
       .embedding = v,
       .dim = 4},
      {.chunk_id = "p:1:1", .doc_id = "p", .text = "osprey fish"},
  };
  size_t retired;
  cr_assert_eq(a.ops->upsert(a.st, "t", c, 2, "p", &retired, err, sizeof err), 0, "%s",
               err);
  engine_close(&a); /* writes the snapshot */
  char p[400];
  snprintf(p, sizeof p, "%s/index.snap", snap_dir);
  cr_assert_eq(access(p, F_OK), 0, "a snapshot was written at close");

  /* behind the log's back: only a rebuild would see this */
  exec_sql("UPDATE retriever_chunks SET text = 'osprey edited' WHERE chunk_id = 'p:1:1'");
  /* through the log, by another replica, while a was down */
  cr_assert_eq(engine_open_ops(&other, &engine_embedded_ops, &plain, err, sizeof err), 0,
               "%s", err);
  engine_chunk_t q = {.chunk_id = "q:1:0", .doc_id = "q", .text = "osprey dive"};
  cr_assert_eq(other.ops->upsert(other.st, "t", &q, 1, "q", &retired, err, sizeof err),
               0);
  engine_close(&other);

  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "osprey", "p:1:1"), "osprey fish",
                   "served from the snapshot, not rebuilt");
  cr_assert_str_eq(served_text(&a, "osprey", "q:1:0"), "osprey dive",
                   "the tail replayed");
  engine_query_t dq = {"t", ENGINE_DENSE, NULL, 0, v, 4, 5, NULL};
  engine_result_t r;
  cr_assert_eq(a.ops->search(a.st, &dq, arena, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.ndense, 1, "the vector came back from the graph file");
  cr_assert_str_eq(r.dense[0].chunk_id, "p:1:0");
  engine_close(&a); /* the replayed change makes a new snapshot */

  /* a flipped byte: discarded, rebuilt from the table (which has the edit) */
  FILE *f = fopen(p, "r+b");
  cr_assert_not_null(f);
  fseek(f, 60, SEEK_SET);
  int ch = fgetc(f);
  fseek(f, 60, SEEK_SET);
  fputc(ch ^ 1, f);
  fclose(f);
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "osprey", "p:1:1"), "osprey edited",
                   "rebuilt from PostgreSQL");
  cr_assert_str_eq(served_text(&a, "osprey", "q:1:0"), "osprey dive");
  engine_close(&a);
  rm_dir(snap_dir);
}

/* ---- pruning the change log ------------------------------------------------ */

static int64_t log_head(void) {
  char err[256];
  int64_t head = 0, age = 0;
  cr_assert_eq(store_log_state(store, 0, &head, &age, err, sizeof err), 0, "%s", err);
  return head;
}

static void beat_as(const char *replica, int64_t keep_after, int64_t *through) {
  char err[256];
  cr_assert_eq(store_replica_beat(store, replica, keep_after, -1, keep_after, through,
                                  err, sizeof err),
               0, "%s", err);
}

static store_prune_t prune_now(int64_t live_ms, int64_t retain_ms) {
  char err[256];
  store_prune_t p;
  cr_assert_eq(store_prune(store, live_ms, retain_ms, &p, err, sizeof err), 0, "%s", err);
  return p;
}

/* A prune deletes exactly what no live replica needs: up to the smallest
 * keep_after of the live ones, never a change younger than the retention
 * floor, nothing when none is live; a silent replica stops holding the log
 * back. The pruned head is recorded and the log's head survives an empty
 * log. */
Test(store, prune_keeps_what_live_replicas_need) {
  engine_chunk_t c = {.text = "x"};
  const char *docs[] = {"a", "b", "c", "d"};
  char id[16];
  for (int i = 0; i < 3; i++) {
    snprintf(id, sizeof id, "%s:1:0", docs[i]);
    c.chunk_id = id;
    c.doc_id = docs[i];
    store_put("t", &c, 1, docs[i], NULL);
  }
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_changes"), 3);
  int64_t head = log_head();
  store_prune_t p = prune_now(60000, 0);
  cr_assert_eq(p.deleted, 0, "no replica is live: nothing goes");
  cr_assert_eq(p.bound, -1);

  int64_t through = -1;
  beat_as("r1", head - 1, &through);
  cr_assert_eq(through, 0);
  beat_as("r2", head, NULL);
  p = prune_now(60000, 0);
  cr_assert_eq(p.live, 2);
  cr_assert_eq(p.bound, head - 1);
  cr_assert_eq(p.deleted, 2, "the two changes r1 still has before its position");
  cr_assert_eq(p.through, head - 1);
  cr_assert_eq(query_long("SELECT min(pos) FROM retriever_changes"), head);

  /* the retention floor: young changes stay whatever the replicas say */
  c.chunk_id = "d:1:0";
  c.doc_id = "d";
  store_put("t", &c, 1, "d", NULL);
  head = log_head();
  beat_as("r1", head, NULL);
  beat_as("r2", head, NULL);
  p = prune_now(60000, 3600000);
  cr_assert_eq(p.deleted, 0, "younger than the floor");

  /* r2 holds the log back, then falls silent: it no longer counts */
  beat_as("r2", 0, NULL);
  cr_assert_eq(prune_now(60000, 0).deleted, 0, "r2 needs everything");
  exec_sql("UPDATE retriever_replicas SET heartbeat_at = now() - interval '1 hour' "
           "WHERE replica_id = 'r2'");
  p = prune_now(60000, 0);
  cr_assert_eq(p.live, 1);
  cr_assert_eq(p.deleted, 2);
  cr_assert_eq(p.through, head);
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_changes"), 0);
  cr_assert_eq(log_head(), head, "the head survives an empty log");
  beat_as("r3", 0, &through);
  cr_assert_eq(through, head, "a replica learns the pruned head when it beats");
}

/* Every replica but the test's "pruner" is made silent, and the log pruned
 * through its head. */
static int64_t prune_everything(void) {
  exec_sql("UPDATE retriever_replicas SET heartbeat_at = now() - interval '1 hour'");
  beat_as("pruner", log_head(), NULL);
  store_prune_t p = prune_now(60000, 0);
  cr_assert_gt(p.deleted, 0);
  return p.through;
}

/* A replica whose snapshot is older than the pruned head cannot replay the
 * changes after it (they are gone): it rebuilds from PostgreSQL instead.
 * The edit behind the log's back tells a rebuild from a snapshot load. */
Test(store, a_snapshot_older_than_the_pruned_log_is_rebuilt) {
  snprintf(snap_dir, sizeof snap_dir, "/tmp/quarry-snapprune-%d", (int)getpid());
  rm_dir(snap_dir);
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .data_dir = snap_dir, .snapshot_changes = 1000000};
  engine_config_t plain = {.pg = &pg};
  engine_t a, other;
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t p = {.chunk_id = "p:1:0", .doc_id = "p", .text = "heron wade"};
  size_t retired;
  cr_assert_eq(a.ops->upsert(a.st, "t", &p, 1, "p", &retired, err, sizeof err), 0, "%s",
               err);
  engine_close(&a); /* snapshot at the position of p */
  exec_sql("UPDATE retriever_chunks SET text = 'heron edited' WHERE chunk_id = 'p:1:0'");
  cr_assert_eq(engine_open_ops(&other, &engine_embedded_ops, &plain, err, sizeof err), 0,
               "%s", err);
  engine_chunk_t q = {.chunk_id = "q:1:0", .doc_id = "q", .text = "heron fly"};
  cr_assert_eq(other.ops->upsert(other.st, "t", &q, 1, "q", &retired, err, sizeof err),
               0);
  engine_close(&other);
  int64_t through = prune_everything();
  cr_assert_eq(query_long("SELECT count(*) FROM retriever_changes"), 0);

  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "heron", "q:1:0"), "heron fly",
                   "the pruned change is in the rebuilt index");
  cr_assert_str_eq(served_text(&a, "heron", "p:1:0"), "heron edited",
                   "rebuilt from PostgreSQL, not loaded from the snapshot");
  char why[256] = "";
  cr_assert(a.ops->ready(a.st, why, sizeof why), "%s", why);
  cr_assert_geq(query_long("SELECT max(applied_pos) FROM retriever_replicas "
                           "WHERE replica_id <> 'pruner' AND heartbeat_at > now() - "
                           "interval '1 minute'"),
                through, "the reopened replica registered what it applied");
  engine_close(&a);

  /* its new snapshot (written at close) covers the pruned head: loaded */
  exec_sql("UPDATE retriever_chunks SET text = 'heron again' WHERE chunk_id = 'p:1:0'");
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "heron", "p:1:0"), "heron edited",
                   "loaded from the snapshot");
  engine_close(&a);
  rm_dir(snap_dir);
}

/* A snapshot names the database it came from (retriever_log_meta.db_id):
 * the same directory opened against another database (here: the identity
 * changed) is rebuilt from that database, never loaded. */
Test(store, a_snapshot_of_another_database_is_rebuilt) {
  snprintf(snap_dir, sizeof snap_dir, "/tmp/quarry-snapdb-%d", (int)getpid());
  rm_dir(snap_dir);
  char err[512] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .data_dir = snap_dir, .snapshot_changes = 1000000};
  engine_t a;
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t p = {.chunk_id = "p:1:0", .doc_id = "p", .text = "egret stand"};
  size_t retired;
  cr_assert_eq(a.ops->upsert(a.st, "t", &p, 1, "p", &retired, err, sizeof err), 0, "%s",
               err);
  engine_close(&a);
  exec_sql("UPDATE retriever_chunks SET text = 'egret edited' WHERE chunk_id = 'p:1:0'");
  /* same database, same identity: the snapshot is loaded */
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "egret", "p:1:0"), "egret stand");
  engine_close(&a);
  exec_sql("UPDATE retriever_log_meta SET db_id = gen_random_uuid()");
  cr_assert_eq(engine_open_ops(&a, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert_str_eq(served_text(&a, "egret", "p:1:0"), "egret edited",
                   "another database's snapshot is not served");
  engine_close(&a);
  rm_dir(snap_dir);
}

/* A running replica whose heartbeat lapsed while another pruned past what
 * it applied (simulated: the pruned head moved beyond its position) learns
 * it at its next heartbeat and stops being ready, saying to restart it. */
Test(store, a_replica_passed_by_the_pruner_is_not_ready) {
  char err[512] = "", why[256] = "";
  q_pg_cfg_t pg = {.dsn = test_dsn, .pool = 2, .wait_ms = 5000};
  engine_config_t cfg = {.pg = &pg, .replica_ttl_ms = 1000};
  engine_t b;
  cr_assert_eq(engine_open_ops(&b, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  cr_assert(b.ops->ready(b.st, why, sizeof why), "%s", why);
  exec_sql("UPDATE retriever_log_meta SET pruned_through = 1000");
  bool ready = true;
  for (int i = 0; i < 60 && ready; i++) { /* a heartbeat each maintenance round (1 s) */
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    ready = b.ops->ready(b.st, why, sizeof why);
  }
  cr_assert_not(ready, "still ready after the log was pruned past it");
  cr_assert(strstr(why, "pruned through 1000") && strstr(why, "restart"), "%s", why);
  engine_close(&b);
}
