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
  int rc = store_upsert(store, tenant, c, n, replace, retired ? retired : &r, NULL, err,
                        sizeof err);
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
  int rc = store_load(store, load_cb, idx, n, err, sizeof err);
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
  int rc = store_upsert(store, "b", b, 2, "d", &retired, NULL, err, sizeof err);
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
  cr_assert_eq(store_upsert(store, "t", c, 2, NULL, &retired, seq, err, sizeof err), 0,
               "%s", err);
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
  cr_assert_eq(store_upsert(store, "t", d, 2, "s", &retired, again, err, sizeof err), 0,
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

Test(store, filter_fields_survive_a_rebuild) {
  const char *groups[] = {"eng", "we \"quote\" and \\ back"};
  engine_chunk_t c[] = {
      {.chunk_id = "f:1:0",
       .doc_id = "f",
       .text = "filter fields",
       .content_type = "application/pdf",
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
      "{\"field\":\"meta.tags\",\"eq\":\"b\"},{\"field\":\"meta.year\",\"eq\":2021}]}";
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
