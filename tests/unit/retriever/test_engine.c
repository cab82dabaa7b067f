/* test_engine.c - the contract of engine.h, checked on any engine.
 *
 * Every check takes an engine fixture (an ops table and the configuration to
 * open it with) and uses the engine only through its ops table. The checks
 * are instantiated once per fixture with ENGINE_CONTRACT(suite, fixture); a
 * new engine (Milvus, say) is one more fixture and one more line at the end.
 * The embedded engine runs twice: with its exact scan and with its HNSW
 * graph walk, since the two take different code paths for dense search. */
#include "engine/engine.h"
#include "engine/milvus_client.h"
#include "fusion.h"
#include "search.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/http_client.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct engine_fixture {
  const engine_ops_t *ops;
  engine_config_t cfg;
  /* Opened against tests/fakes/milvus_fake.py, started for the test on a
   * free loopback port, with the test's vector dimension as the collection's
   * (the fixed one of engine.h). */
  bool milvus;
  /* What the engine guarantees where engines differ (engine.h): */
  bool bm25_shared;      /* BM25 statistics are shared by tenants (Milvus) */
  bool replace_overlaps; /* a replace may show both whole versions briefly */
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
/* The Milvus engine against the fake. */
static const engine_fixture_t milvus_fake = {
    .ops = &engine_milvus_ops,
    .milvus = true,
    .bm25_shared = true,
    .replace_overlaps = true,
};

static char err[512];

/* ---- the fake Milvus ---------------------------------------------------------- */

#define FAKE "tests/fakes/milvus_fake.py"
#define FAKE_TOKEN "root:Milvus"

static pid_t fake_pid = -1;
static char fake_dir[64], fake_url[128];

/* Starts the fake once per test process; it dies with the process. */
static void fake_start(void) {
  if (fake_pid > 0)
    return;
  q_http_global_init();
  snprintf(fake_dir, sizeof fake_dir, "/tmp/engine-milvus-XXXXXX");
  cr_assert_not_null(mkdtemp(fake_dir));
  char portfile[128];
  snprintf(portfile, sizeof portfile, "%s/port", fake_dir);
  pid_t parent = getpid();
  fake_pid = fork();
  cr_assert_geq(fake_pid, 0);
  if (fake_pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(1);
    execl("/usr/bin/python3", "python3", FAKE, "--port-file", portfile, "--token",
          FAKE_TOKEN, (char *)NULL);
    _exit(127);
  }
  int port = 0;
  for (int i = 0; i < 400 && port <= 0; i++) { /* up to 20 s on a loaded machine */
    FILE *pf = fopen(portfile, "r");
    if (pf) {
      if (fscanf(pf, "%d", &port) != 1)
        port = 0;
      fclose(pf);
    }
    if (port <= 0)
      usleep(50000);
  }
  cr_assert_gt(port, 0, "the fake Milvus did not start");
  snprintf(fake_url, sizeof fake_url, "http://127.0.0.1:%d", port);
}

static void fake_stop(void) {
  if (fake_pid <= 0)
    return;
  kill(fake_pid, SIGTERM);
  waitpid(fake_pid, NULL, 0);
  fake_pid = -1;
  char path[128];
  snprintf(path, sizeof path, "%s/port", fake_dir);
  unlink(path);
  rmdir(fake_dir);
}

/* Opens the fixture's engine for a test whose vectors have dim dimensions. */
static bool milvus_no_hybrid; /* the next Milvus engine fuses nothing itself */

static engine_t open_engine(const engine_fixture_t *f, size_t dim) {
  static milvus_cfg_t mc;
  engine_config_t cfg = f->cfg;
  if (f->milvus) {
    fake_start();
    mc = (milvus_cfg_t){.url = fake_url,
                        .token = FAKE_TOKEN,
                        .collection = "engine_contract",
                        .max_attempts = 2,
                        .backoff_ms = 10,
                        .no_hybrid = milvus_no_hybrid};
    cfg.milvus = &mc;
    cfg.fixed_dim = dim;
  }
  engine_t e;
  cr_assert_eq(engine_open_ops(&e, f->ops, &cfg, err, sizeof err), 0, "%s", err);
  return e;
}

static void close_engine(engine_t *e) {
  engine_close(e);
  fake_stop();
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
  engine_query_t q = {tenant, lists, text, text ? strlen(text) : 0, vec, dim, k, NULL};
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
  enum { N = 300, DIM = 8 };
  engine_t e = open_engine(f, DIM);
  q_arena_t *a = q_arena_new(0);
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
  /* BM25 is per tenant: the same chunk text scores differently. Where the
   * statistics are shared (Milvus) the same text scores the same in both
   * tenants: what the engine says it gives, checked. */
  engine_result_t ra = search(&e, a, "alpha", ENGINE_LEXICAL, "words", NULL, 0, 1);
  engine_result_t rb = search(&e, a, "beta", ENGINE_LEXICAL, "words", NULL, 0, 1);
  if (f->bm25_shared)
    cr_assert_float_eq(ra.lexical[0].score, rb.lexical[0].score, 1e-9);
  else
    cr_assert_neq(ra.lexical[0].score, rb.lexical[0].score);
  engine_stats_t sa, sb;
  cr_assert_eq(e.ops->stats(e.st, "alpha", &sa, err, sizeof err), 0);
  cr_assert_eq(e.ops->stats(e.st, "beta", &sb, err, sizeof err), 0);
  cr_assert_eq(sa.chunks, N);
  cr_assert_eq(sb.chunks, N / 3);
  cr_assert_eq(sa.vectors, N);
  q_arena_free(a);
  close_engine(&e);
}

/* Replacing a document retires its chunks not in the batch in both lists,
 * and a removed document is gone from both. */
static void check_replace_and_remove(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 3);
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
  close_engine(&e);
}

/* Lists are best first with exact scores: BM25 > 0 descending, cosine as
 * computed by hand; equal scores by chunk id. */
static void check_order_and_scores(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 2);
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
  close_engine(&e);
}

/* Dense recall against brute force on random vectors: the exact scan is
 * exact, the graph walk finds nearly all of the true top 10. */
static void check_dense_recall(const engine_fixture_t *f) {
  enum { N = 3000, DIM = 24, K = 10, Q = 50 };
  engine_t e = open_engine(f, DIM);
  q_arena_t *a = q_arena_new(0);
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
  close_engine(&e);
}

/* Vectors must agree with the tenant's dimension and be usable. */
static void check_vector_validation(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 2);
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
  /* another tenant has its own dimension, unless the engine has a fixed one */
  if (f->milvus)
    cr_assert_eq(e.ops->upsert(e.st, "u", &wrong, 1, NULL, &retired, err, sizeof err),
                 Q_EINVAL);
  else
    put(&e, "u", &wrong, 1, NULL, NULL);
  engine_chunk_t z = {
      .chunk_id = "c", .doc_id = "d", .text = "t", .embedding = zero, .dim = 2};
  cr_assert_eq(e.ops->upsert(e.st, "t", &z, 1, NULL, &retired, err, sizeof err),
               Q_EINVAL);
  engine_query_t q = {"t", ENGINE_DENSE, NULL, 0, v3, 3, 5, NULL};
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
  close_engine(&e);
}

/* A search beside replaces of one document sees one whole version of it:
 * never a mix of versions, never none, in either list. An engine that
 * replaces "new before old" (Milvus) may show two whole versions, the old
 * and the next, for a moment: never a partial version, never none. */
typedef struct race {
  engine_t *e;
  bool overlaps;
  int stop, bad, seen_two;
  char why[160];
} race_t;

static void *race_searcher(void *ud) {
  race_t *rc = ud;
  float q[] = {1, 1, 1, 1};
  while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE)) {
    q_arena_t *a = q_arena_new(0);
    engine_query_t qq = {"t", ENGINE_LEXICAL | ENGINE_DENSE, "moving", 6, q, 4, 50, NULL};
    engine_result_t r;
    char why[256];
    if (rc->e->ops->search(rc->e->st, &qq, a, &r, why, sizeof why) != 0) {
      snprintf(rc->why, sizeof rc->why, "search failed: %.100s", why);
      __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
      q_arena_free(a);
      break;
    }
    for (int list = 0; list < 2; list++) {
      const engine_cand_t *c = list ? r.dense : r.lexical;
      size_t n = list ? r.ndense : r.nlexical;
      /* chunks per version seen: at most two versions, each whole */
      int32_t ver[2] = {0, 0};
      size_t cnt[2] = {0, 0}, nver = 0;
      for (size_t i = 0; i < n; i++) {
        size_t v = 0;
        while (v < nver && ver[v] != c[i].version)
          v++;
        if (v == nver && nver < 2)
          ver[nver++] = c[i].version;
        if (v < 2)
          cnt[v]++;
        else {
          snprintf(rc->why, sizeof rc->why, "%s list holds three versions",
                   list ? "dense" : "lexical");
          __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
        }
      }
      if (nver == 0 || nver > (rc->overlaps ? 2u : 1u)) {
        snprintf(rc->why, sizeof rc->why, "%s list holds %zu versions",
                 list ? "dense" : "lexical", nver);
        __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
      }
      for (size_t v = 0; v < nver; v++)
        if (cnt[v] != 8) {
          snprintf(rc->why, sizeof rc->why, "%s list has %zu of 8 chunks of version %d",
                   list ? "dense" : "lexical", cnt[v], ver[v]);
          __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
        }
      if (nver == 2)
        __atomic_store_n(&rc->seen_two, 1, __ATOMIC_RELEASE);
    }
    q_arena_free(a);
  }
  return NULL;
}

static void check_replace_is_atomic(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 4);
  race_t rc = {.e = &e, .overlaps = f->replace_overlaps};
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
  close_engine(&e);
}

/* A candidate carries its chunk as stored: title, text, version, ordinal,
 * page; a word of the title alone finds the chunk by BM25. */
static void check_candidate_fields(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 2);
  q_arena_t *a = q_arena_new(0);
  float v[] = {1, 2};
  engine_chunk_t c[] = {
      {.chunk_id = "h:3:2",
       .doc_id = "h",
       .title = "Harbour manual",
       .text = "the tide tables",
       .version = 3,
       .ordinal = 2,
       .page = 5,
       .embedding = v,
       .dim = 2},
      {.chunk_id = "o:1:0", .doc_id = "o", .text = "tide", .embedding = v, .dim = 2},
  };
  put(&e, "t", c, 2, NULL, NULL);
  engine_result_t r =
      search(&e, a, "t", ENGINE_LEXICAL | ENGINE_DENSE, "harbour", v, 2, 10);
  cr_assert_eq(r.nlexical, 1);
  cr_assert_eq(r.ndense, 2);
  const engine_cand_t *l = &r.lexical[0], *d = &r.dense[0];
  cr_assert_str_eq(d->chunk_id, "h:3:2"); /* equal cosine: the smaller id */
  for (int i = 0; i < 2; i++) {
    const engine_cand_t *x = i ? d : l;
    cr_assert_str_eq(x->chunk_id, "h:3:2");
    cr_assert_str_eq(x->doc_id, "h");
    cr_assert_str_eq(x->title, "Harbour manual");
    cr_assert_str_eq(x->text, "the tide tables");
    cr_assert_eq(x->version, 3);
    cr_assert_eq(x->ordinal, 2);
    cr_assert_eq(x->page, 5);
  }
  q_arena_free(a);
  close_engine(&e);
}

/* Snapshot/restore: an engine either does them or says it does not. */
static void check_snapshot_says_what_it_does(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 2);
  int rc = e.ops->snapshot(e.st, "/proc/nonexistent-dir", err, sizeof err);
  cr_assert(rc == Q_EUNIMPL || rc == Q_EIO, "rc %d", rc);
  cr_assert_neq(err[0], '\0');
  char why[128];
  cr_assert(e.ops->ready(e.st, why, sizeof why));
  cr_assert_geq(e.ops->lag_ms(e.st), 0);
  close_engine(&e);
}

/* ---- filters ------------------------------------------------------------------- */

enum { FDOCS = 24, FDIM = 4 };

/* What a filter must reach in the engine's fields: strings with quotes,
 * backslashes and an injected `||`, lists, numbers, booleans, dates as
 * strings, absent values. */
static const char *const hostile = "say \"hi\" \\ || tenant_id != \"t2\" \\\"";

/* Document i of the filter fixture (the same in both tenants but for the
 * chunk id): its chunk and the metadata text behind it. */
static void filter_doc(int i, const char *tenant, char ids[][32], char docs[][16],
                       char titles[][64], char metas[][512], float vecs[][FDIM],
                       engine_chunk_t *c) {
  static const char *const teams[] = {"legal", "hr", "eng"};
  snprintf(ids[i], sizeof ids[i], "%s-d%d:1:0", tenant, i);
  snprintf(docs[i], sizeof docs[i], "d%d", i);
  if (i == 7)
    snprintf(titles[i], sizeof titles[i], "x\" || tenant_id != \"%s", tenant);
  else
    snprintf(titles[i], sizeof titles[i], "Title %d", i);
  json_t *m =
      json_pack("{s:s,s:i,s:b}", "team", teams[i % 3], "n", i, "flag", i % 2 == 0);
  if (i % 2 == 0)
    json_object_set_new(
        m, "tags", json_pack("[s,s]", i % 4 ? "red" : "blue", i % 3 ? "green" : "x"));
  if (i % 5 != 0) {
    char when[32];
    snprintf(when, sizeof when, "2024-01-%02dT00:00:00Z", i + 1);
    json_object_set_new(m, "when", json_string(when));
  }
  if (i % 2 == 1)
    json_object_set_new(m, "frac", json_real(i + 0.5));
  if (i == 11)
    json_object_set_new(m, "q", json_string(hostile));
  if (i == 12)
    json_object_set_new(m, "q", json_string("back\\slash"));
  char *text = json_dumps(m, JSON_COMPACT);
  snprintf(metas[i], sizeof metas[i], "%s", text);
  free(text);
  json_decref(m);
  for (int d = 0; d < FDIM; d++)
    vecs[i][d] = (float)((i * 7 + d * 3) % 11) + 1.0f;
  *c = (engine_chunk_t){
      .chunk_id = ids[i],
      .doc_id = docs[i],
      .title = titles[i],
      .text = "common words of every document",
      .version = 1,
      .embedding = vecs[i],
      .dim = FDIM,
      .content_type = i % 3 == 0   ? "application/pdf"
                      : i % 3 == 1 ? "text/plain"
                                   : NULL,
      .created_at = i % 4 == 3 ? 0 : 1600000000 + (int64_t)i * 86400,
      .metadata = metas[i],
  };
}

/* Filters of every kind; the expected documents come from q_filter_match
 * over the fixture's fields (the definition of a filter, quarry/filter.h). */
static const char *const filters[] = {
    "{\"field\":\"meta.team\",\"eq\":\"legal\"}",
    "{\"field\":\"meta.team\",\"in\":[\"legal\",\"hr\"]}",
    "{\"field\":\"meta.tags\",\"eq\":\"red\"}",
    "{\"field\":\"meta.tags\",\"in\":[\"blue\",\"nope\"]}",
    "{\"field\":\"meta.n\",\"gte\":5,\"lt\":12}",
    "{\"field\":\"meta.n\",\"eq\":7}",
    "{\"field\":\"meta.n\",\"in\":[3,9.0,\"x\"]}",
    "{\"field\":\"meta.flag\",\"eq\":true}",
    "{\"field\":\"meta.flag\",\"eq\":false}",
    "{\"field\":\"meta.when\",\"gte\":\"2024-01-05\",\"lte\":\"2024-01-10T00:00:00Z\"}",
    "{\"field\":\"meta.when\",\"lt\":1704326400}",
    "{\"field\":\"meta.frac\",\"gt\":3.25,\"lte\":9.5}",
    "{\"field\":\"created_at\",\"gt\":1600172800,\"lte\":1600864000.5}",
    "{\"field\":\"created_at\",\"eq\":1600086400}",
    "{\"field\":\"created_at\",\"in\":[1600000000,1600172800.5,\"2020-09-15T12:26:40Z\"]"
    "}",
    "{\"field\":\"created_at\",\"lt\":\"2020-09-18\"}",
    "{\"not\":{\"field\":\"created_at\",\"gte\":0}}",
    "{\"field\":\"content_type\",\"eq\":\"application/pdf\"}",
    "{\"field\":\"content_type\",\"in\":[\"text/plain\",\"application/pdf\"]}",
    "{\"not\":{\"field\":\"content_type\",\"eq\":\"text/plain\"}}",
    "{\"and\":[{\"field\":\"meta.team\",\"eq\":\"eng\"},{\"or\":[{\"field\":\"meta.n\","
    "\"lt\":6},{\"not\":{\"field\":\"meta.flag\",\"eq\":true}}]}]}",
    "{\"or\":[{\"field\":\"doc_id\",\"in\":[\"d3\",\"d4\",\"zz\"]},{\"field\":\"title\","
    "\"eq\":\"Title 5\"}]}",
    "{\"field\":\"meta.q\",\"eq\":\"say \\\"hi\\\" \\\\ || tenant_id != \\\"t2\\\" "
    "\\\\\\\"\"}",
    "{\"field\":\"meta.q\",\"in\":[\"back\\\\slash\",\"\\\" || true || \\\"\"]}",
    "{\"field\":\"title\",\"eq\":\"x\\\" || tenant_id != \\\"t1\"}",
    "{\"field\":\"title\",\"eq\":\"x\\\" || tenant_id != \\\"t2\"}",
    "{\"field\":\"meta.missing\",\"eq\":\"x\"}",
    "{\"not\":{\"field\":\"meta.missing\",\"eq\":\"x\"}}",
    "{\"not\":{\"or\":[{\"field\":\"meta.tags\",\"eq\":\"green\"},{\"field\":\"meta."
    "when\","
    "\"gte\":\"2024-01-20\"}]}}",
};

/* Every filter gives, in both lists, exactly the tenant's documents that
 * pass it (top_k above the document count, so nothing is cut), and never a
 * chunk of the other tenant, which holds the same documents. */
static void check_filters(const engine_fixture_t *f) {
  static char ids[2][FDOCS][32], docs[2][FDOCS][16], titles[2][FDOCS][64],
      metas[2][FDOCS][512];
  static float vecs[2][FDOCS][FDIM];
  const char *tenants[] = {"t1", "t2"};
  engine_t e = open_engine(f, FDIM);
  engine_chunk_t c[FDOCS];
  for (int t = 0; t < 2; t++) {
    for (int i = 0; i < FDOCS; i++)
      filter_doc(i, tenants[t], ids[t], docs[t], titles[t], metas[t], vecs[t], &c[i]);
    put(&e, tenants[t], c, FDOCS, NULL, NULL);
  }
  q_arena_t *a = q_arena_new(0);
  size_t partial = 0;
  for (size_t fi = 0; fi < sizeof filters / sizeof filters[0]; fi++) {
    q_filter_t *flt = NULL;
    int rc = q_filter_parse(filters[fi], strlen(filters[fi]), &flt, err, sizeof err);
    cr_assert_eq(rc, 0, "filter %zu: %s", fi, err);
    for (int t = 0; t < 2; t++) {
      bool want[FDOCS];
      size_t nwant = 0;
      for (int i = 0; i < FDOCS; i++) {
        engine_chunk_t ch;
        filter_doc(i, tenants[t], ids[t], docs[t], titles[t], metas[t], vecs[t], &ch);
        json_t *m = json_loads(ch.metadata, 0, NULL);
        q_filter_doc_t d = {.doc_id = ch.doc_id,
                            .title = ch.title,
                            .content_type = ch.content_type,
                            .created_at = ch.created_at,
                            .meta = m};
        want[i] = q_filter_match(flt, &d);
        nwant += want[i];
        json_decref(m);
      }
      if (t == 0)
        partial += nwant > 0 && nwant < FDOCS;
      engine_query_t q = {
          tenants[t], ENGINE_LEXICAL | ENGINE_DENSE, "common", 6, vecs[t][0], FDIM, 100,
          flt};
      engine_result_t r;
      rc = e.ops->search(e.st, &q, a, &r, err, sizeof err);
      cr_assert_eq(rc, 0, "filter %s: %s", filters[fi], err);
      for (int l = 0; l < 2; l++) {
        const engine_cand_t *cand = l ? r.dense : r.lexical;
        size_t n = l ? r.ndense : r.nlexical;
        cr_assert_eq(n, nwant, "filter %s, tenant %s, %s list: %zu found, %zu pass",
                     filters[fi], tenants[t], l ? "dense" : "lexical", n, nwant);
        for (size_t k = 0; k < n; k++) {
          int i = atoi(cand[k].doc_id + 1);
          cr_assert(strncmp(cand[k].chunk_id, tenants[t], 2) == 0 && want[i],
                    "filter %s, tenant %s: %s should not be found", filters[fi],
                    tenants[t], cand[k].chunk_id);
        }
      }
    }
    q_filter_free(flt);
  }
  /* Not a table of trivial filters: most pass some documents, not all. */
  cr_assert_geq(partial, 22, "%zu filters pass part of the documents", partial);
  q_arena_free(a);
  close_engine(&e);
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
  Test(suite, candidate_fields) {                                                        \
    check_candidate_fields(&fixture);                                                    \
  }                                                                                      \
  Test(suite, snapshot_says_what_it_does) {                                              \
    check_snapshot_says_what_it_does(&fixture);                                          \
  }                                                                                      \
  Test(suite, filters, .timeout = 120) {                                                 \
    check_filters(&fixture);                                                             \
  }

ENGINE_CONTRACT(embedded_exact, embedded_exact)
ENGINE_CONTRACT(embedded_graph, embedded_graph)
ENGINE_CONTRACT(milvus_fake, milvus_fake)

/* A chunk id belongs to one tenant for good (engine.h): another tenant's
 * upsert of it is Q_ECONFLICT and moves nothing. The embedded engine checks
 * this in PostgreSQL (store.c, tested with its store), so only the Milvus
 * engine, whose primary key is the collection's, runs it here. */
static void check_chunk_ids_belong_to_one_tenant(const engine_fixture_t *f) {
  engine_t e = open_engine(f, 2);
  q_arena_t *a = q_arena_new(0);
  float v[] = {1, 0};
  engine_chunk_t mine = {.chunk_id = "x:1:0",
                         .doc_id = "x",
                         .text = "owned words",
                         .embedding = v,
                         .dim = 2};
  put(&e, "t", &mine, 1, NULL, NULL);
  engine_chunk_t theirs[] = {
      {.chunk_id = "y:1:0", .doc_id = "y", .text = "fresh", .embedding = v, .dim = 2},
      {.chunk_id = "x:1:0", .doc_id = "y", .text = "stolen", .embedding = v, .dim = 2},
  };
  size_t retired = 0;
  cr_assert_eq(e.ops->upsert(e.st, "u", theirs, 2, "y", &retired, err, sizeof err),
               Q_ECONFLICT);
  cr_assert(strstr(err, "x:1:0"), "%s", err);
  engine_result_t r = search(&e, a, "t", ENGINE_LEXICAL, "owned", NULL, 0, 10);
  cr_assert_eq(r.nlexical, 1);
  cr_assert_str_eq(r.lexical[0].text, "owned words");
  r = search(&e, a, "u", ENGINE_LEXICAL | ENGINE_DENSE, "fresh stolen", v, 2, 10);
  cr_assert_eq(r.nlexical + r.ndense, 0, "nothing of the refused batch is stored");
  q_arena_free(a);
  close_engine(&e);
}

Test(milvus_fake, chunk_ids_belong_to_one_tenant) {
  check_chunk_ids_belong_to_one_tenant(&milvus_fake);
}

/* POSTs a JSON text to the fake (path from its root) with the token. */
static void fake_post(const char *path, const char *body) {
  char url[256];
  snprintf(url, sizeof url, "%s%s", fake_url, path);
  json_t *b = json_loads(body, 0, NULL);
  const char *headers[] = {"Authorization: Bearer " FAKE_TOKEN, NULL};
  q_http_req_t req = {.method = "POST", .url = url, .body = b, .headers = headers};
  long status = 0;
  json_t *reply = NULL;
  char e[256];
  cr_assert_eq(q_http_json(&req, &status, &reply, e, sizeof e), 0, "%s", e);
  cr_assert_eq(status, 200);
  json_decref(reply);
  json_decref(b);
}

/* What a failing Milvus is to the retriever's callers: unavailable (never
 * 401, 429 or 404 for the operator's problem), a dropped collection made
 * again, and readiness false with the reason once the server is gone. */
Test(milvus_fake, failures_are_unavailable) {
  engine_t e = open_engine(&milvus_fake, 2);
  q_arena_t *a = q_arena_new(0);
  float v[] = {1, 0};
  engine_chunk_t c = {
      .chunk_id = "k:1:0", .doc_id = "k", .text = "kept words", .embedding = v, .dim = 2};
  put(&e, "t", &c, 1, NULL, NULL);
  engine_query_t q = {"t", ENGINE_LEXICAL, "kept", 4, NULL, 0, 5, NULL};
  engine_result_t r;
  fake_post("/_fake/fault", "{\"mode\": \"auth\", \"path\": \"entities/search\"}");
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), Q_EUNAVAIL);
  cr_assert(strstr(err, "milvus"), "%s", err);
  fake_post("/_fake/fault", "{\"mode\": \"http429\", \"path\": \"entities/search\", "
                            "\"times\": 5}");
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), Q_EUNAVAIL);
  fake_post("/_fake/reset", "{}");
  /* the collection dropped behind the engine's back: unavailable once, then
   * made again (empty) */
  fake_post("/v2/vectordb/collections/drop", "{\"collectionName\": \"engine_contract\"}");
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), Q_EUNAVAIL);
  cr_assert_eq(e.ops->search(e.st, &q, a, &r, err, sizeof err), 0, "%s", err);
  cr_assert_eq(r.nlexical, 0);
  char why[256] = "";
  cr_assert(e.ops->ready(e.st, why, sizeof why));
  fake_stop();
  cr_assert_not(e.ops->ready(e.st, why, sizeof why));
  cr_assert(strstr(why, "milvus at http://127.0.0.1:"), "%s", why);
  q_arena_free(a);
  engine_close(&e);
}

/* ---- hybrid_search: fusion by the engine --------------------------------------- */

enum { HDOCS = 40, HDIM = 6, HK = 10 };

static void hybrid_load(engine_t *e) {
  static char ids[HDOCS][16], docs[HDOCS][16], texts[HDOCS][256], metas[HDOCS][32];
  static float vecs[HDOCS][HDIM];
  engine_chunk_t c[HDOCS];
  uint64_t seed = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < HDOCS; i++) {
    snprintf(ids[i], sizeof ids[i], "h%02d:1:0", i);
    snprintf(docs[i], sizeof docs[i], "h%02d", i);
    size_t off = 0;
    for (int w = 0; w < i % 5 + 1; w++)
      off += (size_t)snprintf(texts[i] + off, sizeof texts[i] - off, "alpha ");
    for (int w = 0; w < i % 3; w++)
      off += (size_t)snprintf(texts[i] + off, sizeof texts[i] - off, "beta ");
    snprintf(texts[i] + off, sizeof texts[i] - off, "filler%d words", i % 7);
    snprintf(metas[i], sizeof metas[i], "{\"n\":%d}", i);
    rand_vec(&seed, vecs[i], HDIM);
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = docs[i],
                            .text = texts[i],
                            .embedding = vecs[i],
                            .dim = HDIM,
                            .metadata = metas[i]};
  }
  put(e, "t", c, HDOCS, NULL, NULL);
}

static search_out_t hybrid_run(engine_t *e, q_arena_t *a, const char *rules,
                               const float *qv, const q_filter_t *flt) {
  search_policy_t pol = {0};
  cr_assert_eq(search_policy_parse(rules, &pol, err, sizeof err), 0, "%s", err);
  search_req_t rq = {.tenant = "t",
                     .mode = "hybrid",
                     .text = "alpha beta",
                     .text_len = 10,
                     .embedding = qv,
                     .dim = HDIM,
                     .top_k = HK,
                     .filter = flt};
  search_out_t out;
  cr_assert_eq(search_run(e, &pol, &rq, a, &out, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(out.mode, "hybrid");
  return out;
}

/* A hybrid search on Milvus with plain RRF is one hybrid_search that Milvus
 * fuses: each hit's score is the RRF of its ranks in the engine's own two
 * lists of the same depth, the ranking is the one the retriever's fusion
 * gives those lists, a filter applies inside both sub-searches, and with
 * QUARRY_MILVUS_HYBRID_SEARCH off the retriever fuses the same lists to the
 * same scores. */
Test(milvus_fake, hybrid_search_fuses_in_milvus_with_rrf, .timeout = 60) {
  engine_t e = open_engine(&milvus_fake, HDIM);
  hybrid_load(&e);
  q_arena_t *a = q_arena_new(0);
  uint64_t seed = 42;
  float qv[HDIM];
  rand_vec(&seed, qv, HDIM);
  search_out_t out = hybrid_run(&e, a, "*=rrf:100", qv, NULL);
  cr_assert(strncmp(out.fusion, "engine milvus: rrf k=60", 23) == 0, "%s", out.fusion);
  cr_assert_eq(out.n, HK);
  cr_assert(out.dense_used);
  engine_result_t r =
      search(&e, a, "t", ENGINE_LEXICAL | ENGINE_DENSE, "alpha beta", qv, HDIM, HK);
  fusion_params_t fp = {.method = FUSION_RRF, .k = 60, .w_lex = 1, .w_dense = 1};
  fusion_hit_t *local;
  size_t nlocal;
  cr_assert_eq(
      fusion_merge(r.lexical, r.nlexical, r.dense, r.ndense, &fp, a, &local, &nlocal), 0);
  cr_assert_geq(nlocal, HK);
  for (size_t i = 0; i < out.n; i++) {
    uint32_t lr = 0, dr = 0;
    for (size_t k = 0; k < r.nlexical; k++)
      if (strcmp(r.lexical[k].chunk_id, out.hits[i].cand->chunk_id) == 0)
        lr = (uint32_t)k + 1;
    for (size_t k = 0; k < r.ndense; k++)
      if (strcmp(r.dense[k].chunk_id, out.hits[i].cand->chunk_id) == 0)
        dr = (uint32_t)k + 1;
    cr_assert(lr || dr, "%s is in neither list", out.hits[i].cand->chunk_id);
    cr_assert_float_eq(out.hits[i].fused, fusion_rrf_score(lr, dr, 60), 1e-9, "hit %zu",
                       i);
    cr_assert_float_eq(out.hits[i].fused, local[i].fused, 1e-9, "rank %zu", i);
    cr_assert_not_null(out.hits[i].cand->text);
  }

  /* a filter reaches both sub-searches */
  const char *fj = "{\"field\":\"meta.n\",\"gte\":30}";
  q_filter_t *flt = NULL;
  cr_assert_eq(q_filter_parse(fj, strlen(fj), &flt, err, sizeof err), 0, "%s", err);
  search_out_t fo = hybrid_run(&e, a, "*=rrf:100", qv, flt);
  cr_assert_eq(fo.n, HK);
  for (size_t i = 0; i < fo.n; i++)
    cr_assert_geq(atoi(fo.hits[i].cand->doc_id + 1), 30, "%s", fo.hits[i].cand->doc_id);
  q_filter_free(flt);
  engine_close(&e);

  /* the same fusion by the retriever: the same scores, and each list's */
  milvus_no_hybrid = true;
  engine_t off = open_engine(&milvus_fake, HDIM);
  milvus_no_hybrid = false;
  search_out_t lo = hybrid_run(&off, a, "*=rrf:100", qv, NULL);
  cr_assert(strncmp(lo.fusion, "rrf k=60", 8) == 0, "%s", lo.fusion);
  for (size_t i = 0; i < HK; i++) {
    cr_assert_float_eq(lo.hits[i].fused, out.hits[i].fused, 1e-9, "rank %zu", i);
    cr_assert(lo.hits[i].lexical > 0 || lo.hits[i].dense != 0);
  }
  q_arena_free(a);
  close_engine(&off);
}

/* Weighted rules go to Milvus with the weights scaled into [0, 1]; rules
 * Milvus cannot express (weighted RRF, the lexical fallback) are fused by
 * the retriever from the two lists. */
Test(milvus_fake, hybrid_search_weighted_and_what_milvus_cannot_express, .timeout = 60) {
  engine_t e = open_engine(&milvus_fake, HDIM);
  hybrid_load(&e);
  q_arena_t *a = q_arena_new(0);
  uint64_t seed = 7;
  float qv[HDIM];
  rand_vec(&seed, qv, HDIM);
  search_out_t w = hybrid_run(&e, a, "*=weighted:50", qv, NULL);
  cr_assert(strncmp(w.fusion, "engine milvus: weighted w_lex=1.00 w_dense=0.50", 47) == 0,
            "%s", w.fusion);
  cr_assert_eq(w.n, HK);
  for (size_t i = 1; i < w.n; i++)
    cr_assert_geq(w.hits[i - 1].fused, w.hits[i].fused);
  cr_assert_leq(w.hits[0].fused, 1.5, "weights 1 and 0.5 of scores in [0, 1]");
  w = hybrid_run(&e, a, "*=weighted:200", qv, NULL);
  cr_assert(strncmp(w.fusion, "engine milvus: weighted w_lex=0.50 w_dense=1.00", 47) == 0,
            "%s", w.fusion);
  search_out_t l = hybrid_run(&e, a, "*=rrf:50", qv, NULL);
  cr_assert(strncmp(l.fusion, "rrf k=60 w_lex=1.00 w_dense=0.50", 32) == 0, "%s",
            l.fusion);
  l = hybrid_run(&e, a, "*=rrf:0", qv, NULL);
  cr_assert(strncmp(l.fusion, "lexical fallback", 16) == 0, "%s", l.fusion);
  q_arena_free(a);
  close_engine(&e);
}
