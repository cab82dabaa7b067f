/* test_engine.c - the contract of engine.h, checked on any engine.
 *
 * Every check takes an engine fixture (an ops table and the configuration to
 * open it with) and uses the engine only through its ops table. The checks
 * are instantiated once per fixture with ENGINE_CONTRACT(suite, fixture); a
 * new engine (Milvus, say) is one more fixture and one more line at the end.
 * The embedded engine runs twice: with its exact scan and with its HNSW
 * graph walk, since the two take different code paths for dense search. */
#include "engine/engine.h"

#include "quarry/arena.h"
#include "quarry/error.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct engine_fixture {
  const engine_ops_t *ops;
  engine_config_t cfg;
} engine_fixture_t;

/* The embedded engine, memory only: exact scan for every tenant... */
static const engine_fixture_t embedded_exact = {
    .ops = &engine_embedded_ops,
    .cfg = {.exact_max = 1000000},
};
/* ... and the HNSW walk for every tenant. */
static const engine_fixture_t embedded_graph = {
    .ops = &engine_embedded_ops,
    .cfg = {.exact_max = 0, .hnsw_ef_search = 64},
};

static char err[512];

static engine_t open_engine(const engine_fixture_t *f) {
  engine_t e;
  cr_assert_eq(engine_open_ops(&e, f->ops, &f->cfg, err, sizeof err), 0, "%s", err);
  return e;
}

static void put(engine_t *e, const char *tenant, const engine_chunk_t *c, size_t n,
                const char *replace, size_t *retired) {
  size_t r = 0;
  int rc = e->ops->upsert(e->st, tenant, c, n, replace, retired ? retired : &r, err,
                          sizeof err);
  cr_assert_eq(rc, 0, "upsert: %s", err);
}

static engine_result_t search(engine_t *e, q_arena_t *a, const char *tenant,
                              unsigned lists, const char *text, const float *vec,
                              size_t dim, size_t k) {
  engine_query_t q = {tenant, lists, text, text ? strlen(text) : 0, vec, dim, k};
  engine_result_t r;
  int rc = e->ops->search(e->st, &q, a, &r, err, sizeof err);
  cr_assert_eq(rc, 0, "search: %s", err);
  return r;
}

static bool has(const engine_cand_t *c, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(c[i].chunk_id, id) == 0)
      return true;
  return false;
}

/* A deterministic pseudo-random vector (xorshift). */
static void rand_vec(uint64_t *state, float *v, size_t dim) {
  for (size_t i = 0; i < dim; i++) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    v[i] = (float)((double)(*state >> 11) / (double)(UINT64_C(1) << 53) - 0.5);
  }
}

/* ---- the checks ------------------------------------------------------------ */

/* Two tenants with the same texts and the same vectors: each sees only its
 * own chunks, in both modalities, and its BM25 statistics are its own. */
static void check_tenants_are_isolated(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  q_arena_t *a = q_arena_new(0);
  enum { N = 300, DIM = 8 };
  static char ids[2][N][32];
  static float vec[N][DIM];
  static engine_chunk_t c[2][N];
  uint64_t st = 42;
  for (int i = 0; i < N; i++)
    rand_vec(&st, vec[i], DIM);
  const char *tenants[2] = {"alpha", "beta"};
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < N; i++) {
      snprintf(ids[t][i], sizeof ids[t][i], "%s:%d", tenants[t], i);
      c[t][i] = (engine_chunk_t){
          .chunk_id = ids[t][i],
          .doc_id = "doc",
          .text = (t ? i % 3 == 0 : i % 2 == 1) ? "shared words here" : "shared other",
          .embedding = vec[i],
          .dim = DIM};
    }
    /* beta has a third of the chunks and "words" in a third of them (alpha:
     * half): its statistics differ */
    put(&e, tenants[t], c[t], t ? N / 3 : N, NULL, NULL);
  }
  for (int t = 0; t < 2; t++) {
    for (int qi = 0; qi < 20; qi++) {
      engine_result_t r = search(&e, a, tenants[t], ENGINE_LEXICAL | ENGINE_DENSE,
                                 "shared words", vec[qi * 7], DIM, 50);
      cr_assert(r.dense_used);
      cr_assert_gt(r.nlexical, 0);
      cr_assert_gt(r.ndense, 0);
      size_t plen = strlen(tenants[t]);
      for (size_t i = 0; i < r.nlexical; i++)
        cr_assert(strncmp(r.lexical[i].chunk_id, tenants[t], plen) == 0,
                  "tenant %s got %s", tenants[t], r.lexical[i].chunk_id);
      for (size_t i = 0; i < r.ndense; i++)
        cr_assert(strncmp(r.dense[i].chunk_id, tenants[t], plen) == 0,
                  "tenant %s got %s (dense)", tenants[t], r.dense[i].chunk_id);
    }
  }
  /* an unknown tenant sees nothing at all */
  engine_result_t r =
      search(&e, a, "gamma", ENGINE_LEXICAL | ENGINE_DENSE, "shared", vec[0], DIM, 50);
  cr_assert_eq(r.nlexical + r.ndense, 0);
  cr_assert(!r.dense_used);
  /* BM25 is per tenant: the same chunk text scores differently */
  engine_result_t ra = search(&e, a, "alpha", ENGINE_LEXICAL, "words", NULL, 0, 1);
  engine_result_t rb = search(&e, a, "beta", ENGINE_LEXICAL, "words", NULL, 0, 1);
  cr_assert_neq(ra.lexical[0].score, rb.lexical[0].score);
  engine_stats_t sa, sb;
  cr_assert_eq(e.ops->stats(e.st, "alpha", &sa, err, sizeof err), 0);
  cr_assert_eq(e.ops->stats(e.st, "beta", &sb, err, sizeof err), 0);
  cr_assert_eq(sa.chunks, N);
  cr_assert_eq(sb.chunks, N / 3);
  cr_assert_eq(sa.vectors, N);
  q_arena_free(a);
  engine_close(&e);
}

/* Replacing a document retires its chunks not in the batch in both lists,
 * and a removed document is gone from both. */
static void check_replace_and_remove(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  q_arena_t *a = q_arena_new(0);
  float v0[] = {1, 0, 0}, v1[] = {0, 1, 0}, v2[] = {0, 0, 1}, v3[] = {1, 1, 0};
  engine_chunk_t first[] = {
      {.chunk_id = "d:1:0",
       .doc_id = "d",
       .text = "alpha beta",
       .embedding = v0,
       .dim = 3},
      {.chunk_id = "d:1:1",
       .doc_id = "d",
       .text = "gamma delta",
       .embedding = v1,
       .dim = 3},
      {.chunk_id = "o:1:0",
       .doc_id = "o",
       .text = "alpha other",
       .embedding = v2,
       .dim = 3},
  };
  put(&e, "t", first, 3, NULL, NULL);
  engine_chunk_t second[] = {
      {.chunk_id = "d:2:0",
       .doc_id = "d",
       .text = "alpha epsilon",
       .embedding = v3,
       .dim = 3},
  };
  size_t retired = 0;
  put(&e, "t", second, 1, "d", &retired);
  cr_assert_eq(retired, 2);
  engine_result_t r =
      search(&e, a, "t", ENGINE_LEXICAL | ENGINE_DENSE, "alpha gamma", v1, 3, 10);
  cr_assert(!has(r.lexical, r.nlexical, "d:1:0") && !has(r.lexical, r.nlexical, "d:1:1"));
  cr_assert(!has(r.dense, r.ndense, "d:1:0") && !has(r.dense, r.ndense, "d:1:1"));
  cr_assert(has(r.lexical, r.nlexical, "d:2:0") && has(r.dense, r.ndense, "d:2:0"));
  cr_assert(has(r.dense, r.ndense, "o:1:0"));
  cr_assert_eq(r.ndense, 2);

  /* remove: another tenant's call changes nothing; the owner's retires */
  cr_assert_eq(e.ops->remove(e.st, "u", "d", &retired, err, sizeof err), 0, "%s", err);
  cr_assert_eq(retired, 0);
  cr_assert_eq(e.ops->remove(e.st, "t", "d", &retired, err, sizeof err), 0, "%s", err);
  cr_assert_eq(retired, 1);
  r = search(&e, a, "t", ENGINE_LEXICAL | ENGINE_DENSE, "alpha", v3, 3, 10);
  cr_assert_eq(r.nlexical, 1);
  cr_assert_str_eq(r.lexical[0].chunk_id, "o:1:0");
  cr_assert_eq(r.ndense, 1);
  cr_assert_str_eq(r.dense[0].chunk_id, "o:1:0");
  engine_stats_t st;
  cr_assert_eq(e.ops->stats(e.st, "t", &st, err, sizeof err), 0);
  cr_assert_eq(st.chunks, 1);
  cr_assert_eq(st.documents, 1);
  cr_assert_eq(st.vectors, 1);
  q_arena_free(a);
  engine_close(&e);
}

/* Lists are best first with exact scores: BM25 > 0 descending, cosine as
 * computed by hand; equal scores by chunk id. */
static void check_order_and_scores(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  q_arena_t *a = q_arena_new(0);
  float v1[] = {1, 0}, v2[] = {3, 4}, v3[] = {0, 1}, v4[] = {0, 2};
  engine_chunk_t c[] = {
      {.chunk_id = "b", .doc_id = "d", .text = "solar", .embedding = v3, .dim = 2},
      {.chunk_id = "a", .doc_id = "d", .text = "solar", .embedding = v4, .dim = 2},
      {.chunk_id = "c",
       .doc_id = "d",
       .text = "solar solar wind",
       .embedding = v2,
       .dim = 2},
      {.chunk_id = "z", .doc_id = "d", .text = "wind", .embedding = v1, .dim = 2},
  };
  put(&e, "t", c, 4, NULL, NULL);
  float q[] = {0, 1};
  engine_result_t r =
      search(&e, a, "t", ENGINE_LEXICAL | ENGINE_DENSE, "solar", q, 2, 10);
  cr_assert_eq(r.nlexical, 3);
  for (size_t i = 1; i < r.nlexical; i++)
    cr_assert_geq(r.lexical[i - 1].score, r.lexical[i].score);
  /* "a" and "b" tie on BM25 (same text and length): a first */
  size_t ia = 0, ib = 0;
  for (size_t i = 0; i < r.nlexical; i++) {
    ia = strcmp(r.lexical[i].chunk_id, "a") == 0 ? i : ia;
    ib = strcmp(r.lexical[i].chunk_id, "b") == 0 ? i : ib;
  }
  cr_assert_lt(ia, ib);
  cr_assert_eq(r.ndense, 4);
  /* cosines: a 1, b 1 (tie: a first), c 0.8, z 0 */
  cr_assert_str_eq(r.dense[0].chunk_id, "a");
  cr_assert_str_eq(r.dense[1].chunk_id, "b");
  cr_assert_str_eq(r.dense[2].chunk_id, "c");
  cr_assert_float_eq(r.dense[0].score, 1.0, 1e-6);
  cr_assert_float_eq(r.dense[2].score, 0.8, 1e-6);
  cr_assert_float_eq(r.dense[3].score, 0.0, 1e-6);
  /* only the lists asked for come back */
  r = search(&e, a, "t", ENGINE_LEXICAL, "solar", q, 2, 10);
  cr_assert_eq(r.ndense, 0);
  cr_assert(!r.dense_used);
  r = search(&e, a, "t", ENGINE_DENSE, "solar", q, 2, 2);
  cr_assert_eq(r.nlexical, 0);
  cr_assert_eq(r.ndense, 2);
  q_arena_free(a);
  engine_close(&e);
}

/* Dense recall against brute force on random vectors: the exact scan is
 * exact, the graph walk finds nearly all of the true top 10. */
static void check_dense_recall(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  q_arena_t *a = q_arena_new(0);
  enum { N = 3000, DIM = 24, K = 10, Q = 50 };
  static char ids[N][16];
  static float vec[N][DIM];
  static engine_chunk_t c[N];
  uint64_t st = 7;
  for (int i = 0; i < N; i++) {
    rand_vec(&st, vec[i], DIM);
    snprintf(ids[i], sizeof ids[i], "v%d", i);
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = ids[i],
                            .text = "x",
                            .embedding = vec[i],
                            .dim = DIM};
  }
  put(&e, "t", c, N, NULL, NULL);
  size_t found = 0;
  bool all_exact = true;
  for (int qi = 0; qi < Q; qi++) {
    float q[DIM];
    rand_vec(&st, q, DIM);
    /* brute force: cosine of every vector */
    double best[K];
    int besti[K];
    for (int k = 0; k < K; k++)
      best[k] = -2, besti[k] = -1;
    double qn = 0;
    for (int d = 0; d < DIM; d++)
      qn += (double)q[d] * q[d];
    for (int i = 0; i < N; i++) {
      double dot = 0, vn = 0;
      for (int d = 0; d < DIM; d++) {
        dot += (double)q[d] * vec[i][d];
        vn += (double)vec[i][d] * vec[i][d];
      }
      double cs = dot / sqrt(qn * vn);
      for (int k = 0; k < K; k++)
        if (cs > best[k]) {
          memmove(&best[k + 1], &best[k], (K - 1 - k) * sizeof *best);
          memmove(&besti[k + 1], &besti[k], (K - 1 - k) * sizeof *besti);
          best[k] = cs;
          besti[k] = i;
          break;
        }
    }
    engine_result_t r = search(&e, a, "t", ENGINE_DENSE, NULL, q, DIM, K);
    cr_assert_eq(r.ndense, K);
    all_exact = all_exact && r.dense_exact;
    for (int k = 0; k < K; k++)
      found += has(r.dense, r.ndense, ids[besti[k]]);
    cr_assert_float_eq(r.dense[0].score, best[0], 1e-4);
  }
  double recall = (double)found / (Q * K);
  if (f->cfg.exact_max >= N) {
    cr_assert(all_exact);
    cr_assert_eq(found, Q * K, "exact scan recall %.4f", recall);
  } else {
    cr_assert(!all_exact);
    cr_assert_geq(recall, 0.9, "graph recall@10 %.4f", recall);
  }
  q_arena_free(a);
  engine_close(&e);
}

/* Vectors must agree with the tenant's dimension and be usable. */
static void check_vector_validation(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  q_arena_t *a = q_arena_new(0);
  float v2[] = {1, 0}, v3[] = {1, 0, 0}, zero[] = {0, 0}, bad[] = {NAN, 1};
  engine_chunk_t ok = {
      .chunk_id = "a", .doc_id = "d", .text = "t", .embedding = v2, .dim = 2};
  put(&e, "t", &ok, 1, NULL, NULL);
  engine_chunk_t wrong = {
      .chunk_id = "b", .doc_id = "d", .text = "t", .embedding = v3, .dim = 3};
  size_t retired;
  cr_assert_eq(e.ops->upsert(e.st, "t", &wrong, 1, NULL, &retired, err, sizeof err),
               Q_EINVAL);
  /* another tenant has its own dimension */
  put(&e, "u", &wrong, 1, NULL, NULL);
  engine_chunk_t z = {
      .chunk_id = "c", .doc_id = "d", .text = "t", .embedding = zero, .dim = 2};
  cr_assert_eq(e.ops->upsert(e.st, "t", &z, 1, NULL, &retired, err, sizeof err),
               Q_EINVAL);
  engine_query_t q = {"t", ENGINE_DENSE, NULL, 0, v3, 3, 5};
  engine_result_t r;
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "dimensions"), "%s", err);
  q.embedding = bad;
  q.dim = 2;
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), Q_EINVAL);
  engine_stats_t st;
  cr_assert_eq(e.ops->stats(e.st, "t", &st, err, sizeof err), 0);
  cr_assert_eq(st.chunks, 1);
  q_arena_free(a);
  engine_close(&e);
}

/* A search beside replaces of one document sees one whole version of it:
 * never a mix of versions, never none, in either list. */
typedef struct race {
  engine_t *e;
  int stop, bad;
  char why[160];
} race_t;

static void *race_searcher(void *ud) {
  race_t *rc = ud;
  float q[] = {1, 1, 1, 1};
  while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE)) {
    q_arena_t *a = q_arena_new(0);
    engine_query_t qq = {"t", ENGINE_LEXICAL | ENGINE_DENSE, "moving", 6, q, 4, 50};
    engine_result_t r;
    char why[256];
    if (rc->e->ops->search(rc->e->st, &qq, a, &r, why, sizeof why) != 0) {
      snprintf(rc->why, sizeof rc->why, "search failed: %.100s", why);
      __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
    }
    for (int list = 0; list < 2; list++) {
      const engine_cand_t *c = list ? r.dense : r.lexical;
      size_t n = list ? r.ndense : r.nlexical;
      if (n != 8) {
        snprintf(rc->why, sizeof rc->why, "%s list has %zu of 8 chunks",
                 list ? "dense" : "lexical", n);
        __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
      }
      for (size_t i = 1; i < n; i++)
        if (c[i].version != c[0].version) {
          snprintf(rc->why, sizeof rc->why, "%s list mixes versions %d and %d",
                   list ? "dense" : "lexical", c[0].version, c[i].version);
          __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
        }
    }
    q_arena_free(a);
  }
  return NULL;
}

static void check_replace_is_atomic(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  race_t rc = {.e = &e};
  pthread_t th[3];
  static char ids[2][8][32];
  static float vec[8][4];
  uint64_t st = 99;
  for (int i = 0; i < 8; i++) {
    rand_vec(&st, vec[i], 4);
    vec[i][0] = 0.6f + (float)i / 100; /* every vector points near (1,1,1,1) */
  }
  for (int round = 0; round < 120; round++) {
    engine_chunk_t c[8];
    for (int i = 0; i < 8; i++) {
      snprintf(ids[round % 2][i], sizeof ids[round % 2][i], "m:%d:%d", round, i);
      c[i] = (engine_chunk_t){.chunk_id = ids[round % 2][i],
                              .doc_id = "m",
                              .text = "moving target",
                              .version = round,
                              .embedding = vec[i],
                              .dim = 4};
    }
    size_t retired;
    put(&e, "t", c, 8, "m", &retired);
    cr_assert_eq(retired, round ? 8 : 0);
    if (round == 0) /* searchers start once the document exists */
      for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, race_searcher, &rc);
  }
  __atomic_store_n(&rc.stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  cr_assert_eq(rc.bad, 0, "%s", rc.why);
  engine_close(&e);
}

/* Snapshot/restore: an engine either does them or says it does not. */
static void check_snapshot_says_what_it_does(const engine_fixture_t *f) {
  engine_t e = open_engine(f);
  int rc = e.ops->snapshot(e.st, "/proc/nonexistent-dir", err, sizeof err);
  cr_assert(rc == Q_EUNIMPL || rc == Q_EIO, "rc %d", rc);
  cr_assert_neq(err[0], '\0');
  char why[128];
  cr_assert(e.ops->ready(e.st, why, sizeof why));
  cr_assert_geq(e.ops->lag_ms(e.st), 0);
  engine_close(&e);
}

/* ---- instances -------------------------------------------------------------- */

#define ENGINE_CONTRACT(suite, fixture)                                                  \
  Test(suite, tenants_are_isolated, .timeout = 60) {                                     \
    check_tenants_are_isolated(&fixture);                                                \
  }                                                                                      \
  Test(suite, replace_and_remove) {                                                      \
    check_replace_and_remove(&fixture);                                                  \
  }                                                                                      \
  Test(suite, order_and_scores) {                                                        \
    check_order_and_scores(&fixture);                                                    \
  }                                                                                      \
  Test(suite, dense_recall, .timeout = 120) {                                            \
    check_dense_recall(&fixture);                                                        \
  }                                                                                      \
  Test(suite, vector_validation) {                                                       \
    check_vector_validation(&fixture);                                                   \
  }                                                                                      \
  Test(suite, replace_is_atomic, .timeout = 120) {                                       \
    check_replace_is_atomic(&fixture);                                                   \
  }                                                                                      \
  Test(suite, snapshot_says_what_it_does) {                                              \
    check_snapshot_says_what_it_does(&fixture);                                          \
  }

ENGINE_CONTRACT(embedded_exact, embedded_exact)
ENGINE_CONTRACT(embedded_graph, embedded_graph)
