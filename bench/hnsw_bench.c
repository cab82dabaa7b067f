/* hnsw_bench.c - micro-benchmark of the retriever's HNSW index
 * (services/retriever/engine/hnsw.c) beside the exact scan it replaces.
 *
 * Builds an index of synthetic vectors (seeded, so every run sees the same
 * data), then reports build time, memory per vector, search latency (p50,
 * p99) and recall@10 against exact brute force for a list of ef values, the
 * brute-force scan itself, and optionally filtered search (graph walk vs
 * exact scan over a range of filter selectivities), deletes with compaction,
 * snapshot save/load, and the distance kernels alone. Not part of make test:
 *   make bench-hnsw HNSW_BENCH_ARGS="--n 100000 --dim 128"
 * Figures are recorded in docs/benchmarks.md. */
#include "engine/hnsw.h"
#include "engine/vecdist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define K 10

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = (*s += UINT64_C(0x9e3779b97f4a7c15));
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static double uniform(uint64_t *s) {
  return (double)((rng_next(s) >> 11) + 1) * 0x1p-53;
}

static float gauss(uint64_t *s) {
  return (float)(sqrt(-2.0 * log(uniform(s))) * cos(6.283185307179586 * uniform(s)));
}

static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

typedef struct opts {
  size_t n, dim, queries;
  const char *data; /* random | clustered */
  hnsw_params_t p;
  const char *efs;
  bool filters, deletes, snapshot, kernels, brute;
  const char *dump; /* directory for the data, queries and truth (hnsw_peer.py) */
} opts_t;

/* Writes n * size bytes to dir/name; exits on failure (a benchmark). */
static void dump_file(const char *dir, const char *name, const void *p, size_t size,
                      size_t n) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, size, n, f) != n || fclose(f) != 0) {
    fprintf(stderr, "cannot write %s\n", path);
    exit(1);
  }
}

/* Data: iid gaussian vectors ("random": no structure, the hardest case),
 * gaussian clusters around centres ("clustered": one centre per 100 vectors,
 * noise 0.35 of the centres' spread), or "lowrank". Queries come from the
 * same distribution with another seed. */
static void gen(const opts_t *o, float *out, size_t n, uint64_t seed) {
  uint64_t s = seed;
  if (!strcmp(o->data, "lowrank")) {
    /* Intrinsic dimension 16: a random 16-d subspace plus 5% isotropic
     * noise, the shape of real embeddings (as in test_hnsw.c). */
    uint64_t as = 77;
    float *a = malloc(o->dim * 16 * sizeof *a);
    for (size_t i = 0; i < o->dim * 16; i++)
      a[i] = gauss(&as);
    for (size_t i = 0; i < n; i++) {
      float z[16];
      for (size_t j = 0; j < 16; j++)
        z[j] = gauss(&s);
      for (size_t d = 0; d < o->dim; d++) {
        float x = 0.05f * gauss(&s);
        for (size_t j = 0; j < 16; j++)
          x += a[d * 16 + j] * z[j];
        out[i * o->dim + d] = x;
      }
    }
    free(a);
    return;
  }
  if (strcmp(o->data, "clustered") != 0) {
    for (size_t i = 0; i < n * o->dim; i++)
      out[i] = gauss(&s);
    return;
  }
  size_t nc = o->n / 100 ? o->n / 100 : 1;
  uint64_t cs = 42;
  float *cent = malloc(nc * o->dim * sizeof *cent);
  for (size_t i = 0; i < nc * o->dim; i++)
    cent[i] = gauss(&cs);
  for (size_t i = 0; i < n; i++) {
    const float *c = cent + (rng_next(&s) % nc) * o->dim;
    for (size_t j = 0; j < o->dim; j++)
      out[i * o->dim + j] = c[j] + 0.35f * gauss(&s);
  }
  free(cent);
}

static void normalise(float *v, size_t n, size_t dim) {
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (size_t j = 0; j < dim; j++)
      s += (double)v[i * dim + j] * v[i * dim + j];
    float inv = (float)(1.0 / sqrt(s));
    for (size_t j = 0; j < dim; j++)
      v[i * dim + j] *= inv;
  }
}

/* Exact top-K by dot product over base rows that pass keep (NULL: all);
 * labels are row numbers. */
static void brute(const vecdist_kernels_t *kr, const float *base, size_t n, size_t dim,
                  const float *q, const bool *keep, uint64_t *out) {
  float best[K];
  for (int i = 0; i < K; i++) {
    best[i] = -INFINITY;
    out[i] = UINT64_MAX;
  }
  for (size_t i = 0; i < n; i++) {
    if (keep && !keep[i])
      continue;
    float s = kr->dot_f32(q, base + i * dim, dim);
    if (s <= best[K - 1])
      continue;
    int j = K - 1;
    while (j > 0 && best[j - 1] < s) {
      best[j] = best[j - 1];
      out[j] = out[j - 1];
      j--;
    }
    best[j] = s;
    out[j] = i;
  }
}

static double recall(const hnsw_hit_t *got, int n, const uint64_t *truth) {
  int want = 0, hit = 0;
  for (int i = 0; i < K; i++) {
    if (truth[i] == UINT64_MAX)
      continue;
    want++;
    for (int j = 0; j < n; j++)
      if (got[j].label == truth[i]) {
        hit++;
        break;
      }
  }
  return want ? (double)hit / want : 1.0;
}

static int dcmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void pct(double *ms, size_t n, double *p50, double *p99, double *mean) {
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += ms[i];
  qsort(ms, n, sizeof *ms, dcmp);
  *p50 = ms[n / 2];
  *p99 = ms[(size_t)((double)(n - 1) * 0.99)];
  *mean = s / (double)n;
}

typedef struct fctx {
  const bool *keep;
} fctx_t;

static bool keep_cb(uint64_t label, void *ud) {
  return ((const fctx_t *)ud)->keep[label];
}

/* Runs every query at one ef and prints a line. */
static void run_queries(hnsw_t *h, const opts_t *o, const float *qs, uint64_t *truth,
                        uint32_t ef, const char *what, hnsw_plan_t plan,
                        hnsw_filter_cb filter, void *fud) {
  double *ms = malloc(o->queries * sizeof *ms);
  hnsw_hit_t hits[K];
  double rsum = 0;
  size_t dists = 0, exact = 0;
  for (size_t i = 0; i < o->queries; i++) {
    hnsw_query_t q = {.vec = qs + i * o->dim,
                      .k = K,
                      .ef = ef,
                      .plan = plan,
                      .filter = filter,
                      .filter_ud = fud};
    hnsw_search_info_t info;
    double t0 = now();
    int n = hnsw_search(h, &q, hits, &info);
    ms[i] = (now() - t0) * 1e3;
    if (n < 0) {
      fprintf(stderr, "search failed: %d\n", n);
      exit(1);
    }
    rsum += recall(hits, n, truth + i * K);
    dists += info.distances;
    exact += info.exact;
  }
  double p50, p99, mean;
  pct(ms, o->queries, &p50, &p99, &mean);
  printf("%-26s %6u %9.4f %9.3f %9.3f %9.3f %10.0f %6s %9.0f\n", what, ef,
         rsum / (double)o->queries, mean, p50, p99, (double)dists / (double)o->queries,
         exact == o->queries ? "exact"
         : exact             ? "mixed"
                             : "graph",
         1e3 / mean);
  free(ms);
}

static void header(void) {
  printf("%-26s %6s %9s %9s %9s %9s %10s %6s %9s\n", "search", "ef", "recall@10",
         "mean ms", "p50 ms", "p99 ms", "distances", "plan", "queries/s");
}

/* ns per call of f over reps calls, the best of five runs (the machine is
 * shared, and the minimum is the least disturbed). */
#define TIME_BEST(out, reps, body)                                                       \
  do {                                                                                   \
    double best_ = 1e30;                                                                 \
    for (int run_ = 0; run_ < 5; run_++) {                                               \
      uint64_t r = 1;                                                                    \
      (void)r;                                                                           \
      double t_ = now();                                                                 \
      for (size_t i = 0; i < (reps); i++) {                                              \
        body;                                                                            \
      }                                                                                  \
      t_ = (now() - t_) * 1e9 / (double)(reps);                                          \
      best_ = t_ < best_ ? t_ : best_;                                                   \
    }                                                                                    \
    (out) = best_;                                                                       \
  } while (0)

static void bench_kernels(size_t dim) {
  const vecdist_kernels_t *ks[2] = {vecdist_select(true), vecdist_select(false)};
  size_t rows = 1 << 16; /* 64k rows: beyond the caches for dim >= 128 */
  float *a = malloc(rows * dim * sizeof *a);
  int8_t *c = malloc(rows * dim);
  uint64_t s = 7;
  for (size_t i = 0; i < rows * dim; i++) {
    a[i] = gauss(&s);
    c[i] = (int8_t)(rng_next(&s) % 255 - 127);
  }
  /* Random rows are visited in a fixed shuffled order, as a graph walk
   * visits them: each call misses the cache. */
  uint32_t *order = malloc(rows * sizeof *order);
  for (size_t i = 0; i < rows; i++)
    order[i] = (uint32_t)i;
  for (size_t i = rows - 1; i > 0; i--) {
    size_t j = rng_next(&s) % (i + 1);
    uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  printf("\nkernels, dim %zu: ns per dot product, best of 5 (one row pair: in cache; "
         "shuffled rows of 64k: from memory)\n",
         dim);
  printf("%-10s %12s %12s %12s %12s\n", "kernels", "f32 cache", "f32 memory", "i8 cache",
         "i8 memory");
  for (int k = 0; k < 2; k++) {
    if (k == 1 && ks[1] == ks[0])
      break;
    volatile float sink = 0;
    volatile int32_t isink = 0;
    size_t reps = 1000000;
    double fc, fm, ic, im;
    TIME_BEST(fc, reps, sink += ks[k]->dot_f32(a, a + dim, dim));
    TIME_BEST(fm, rows, sink += ks[k]->dot_f32(a, a + (size_t)order[i] * dim, dim));
    TIME_BEST(ic, reps, isink += ks[k]->dot_i8(c, c + dim, dim));
    TIME_BEST(im, rows, isink += ks[k]->dot_i8(c, c + (size_t)order[i] * dim, dim));
    printf("%-10s %12.1f %12.1f %12.1f %12.1f\n", ks[k]->name, fc, fm, ic, im);
    (void)sink;
    (void)isink;
  }
  free(order);
  free(a);
  free(c);
}

static const char *storage_name(hnsw_storage_t s) {
  return s == HNSW_INT8 ? "int8" : s == HNSW_INT8_RERANK ? "int8_rerank" : "float";
}

static void usage(void) {
  fprintf(stderr,
          "usage: hnsw_bench [--n N] [--dim D] [--queries Q] [--data "
          "random|clustered|lowrank]\n"
          "  [--metric cosine|ip] [--storage float|int8|int8_rerank] [--m M] [--efc EF]\n"
          "  [--ef 16,32,64,128] [--portable] [--filters] [--deletes] [--snapshot]\n"
          "  [--kernels] [--no-brute] [--dump DIR]\n"
          "--dump DIR writes base.f32, queries.f32 (as searched: normalised under "
          "cosine),\n  truth.u64 (the exact top 10 of each query) and meta.txt for "
          "bench/hnsw_peer.py\n");
  exit(2);
}

int main(int argc, char **argv) {
  opts_t o = {.n = 100000,
              .dim = 128,
              .queries = 1000,
              .data = "clustered",
              .efs = "16,32,64,128,256",
              .brute = true};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--n") && v)
      o.n = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--dim") && v)
      o.dim = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--queries") && v)
      o.queries = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--data") && v)
      o.data = v, i++;
    else if (!strcmp(a, "--metric") && v)
      o.p.metric = !strcmp(v, "ip") ? HNSW_INNER_PRODUCT : HNSW_COSINE, i++;
    else if (!strcmp(a, "--storage") && v)
      o.p.storage = !strcmp(v, "int8")          ? HNSW_INT8
                    : !strcmp(v, "int8_rerank") ? HNSW_INT8_RERANK
                                                : HNSW_FLOAT,
      i++;
    else if (!strcmp(a, "--m") && v)
      o.p.m = (uint32_t)atoi(v), i++;
    else if (!strcmp(a, "--efc") && v)
      o.p.ef_construction = (uint32_t)atoi(v), i++;
    else if (!strcmp(a, "--ef") && v)
      o.efs = v, i++;
    else if (!strcmp(a, "--portable"))
      o.p.portable_kernels = true;
    else if (!strcmp(a, "--filters"))
      o.filters = true;
    else if (!strcmp(a, "--deletes"))
      o.deletes = true;
    else if (!strcmp(a, "--snapshot"))
      o.snapshot = true;
    else if (!strcmp(a, "--kernels"))
      o.kernels = true;
    else if (!strcmp(a, "--no-brute"))
      o.brute = false;
    else if (!strcmp(a, "--dump") && v)
      o.dump = v, i++;
    else
      usage();
  }
  o.p.dim = o.dim;
  hnsw_params_t rp;
  hnsw_params_resolve(&o.p, &rp);

  if (o.kernels) {
    bench_kernels(128);
    bench_kernels(384);
  }

  float *base = malloc(o.n * o.dim * sizeof *base);
  float *qs = malloc(o.queries * o.dim * sizeof *qs);
  gen(&o, base, o.n, 1);
  gen(&o, qs, o.queries, 2);
  if (o.p.metric == HNSW_COSINE) {
    normalise(base, o.n, o.dim);
    normalise(qs, o.queries, o.dim);
  }

  hnsw_t *h;
  char err[256];
  if (hnsw_new(&o.p, &h, err, sizeof err)) {
    fprintf(stderr, "%s\n", err);
    return 1;
  }
  printf("== HNSW: %zu %s vectors, dim %zu, %s, storage %s, M %u, efConstruction %u, "
         "kernels %s, %zu queries, k %d ==\n",
         o.n, o.data, o.dim, o.p.metric == HNSW_COSINE ? "cosine" : "inner product",
         storage_name(o.p.storage), rp.m, rp.ef_construction, hnsw_kernels(h), o.queries,
         K);
  size_t rss0 = rss_bytes();
  double t0 = now();
  if (hnsw_reserve(h, o.n)) {
    fprintf(stderr, "reserve failed\n");
    return 1;
  }
  for (size_t i = 0; i < o.n; i++) {
    if (hnsw_add(h, i, base + i * o.dim, err, sizeof err)) {
      fprintf(stderr, "add: %s\n", err);
      return 1;
    }
    if (o.n >= 200000 && (i + 1) % 100000 == 0)
      fprintf(stderr, "  %zu added, %.0f s\n", i + 1, now() - t0);
  }
  double build = now() - t0;
  size_t rss1 = rss_bytes();
  hnsw_stats_t st;
  hnsw_stats(h, &st);
  printf("build %.1f s (%.0f vectors/s, one thread); index memory %.0f bytes/vector "
         "(vector data %zu, graph and bookkeeping %.0f); RSS growth %.0f bytes/vector; "
         "top layer %d\n",
         build, (double)o.n / build, (double)st.bytes / (double)o.n,
         o.p.storage == HNSW_INT8          ? o.dim + 4
         : o.p.storage == HNSW_INT8_RERANK ? o.dim * 5 + 4
                                           : o.dim * 4,
         (double)st.bytes / (double)o.n - (double)(o.p.storage == HNSW_INT8 ? o.dim + 4
                                                   : o.p.storage == HNSW_INT8_RERANK
                                                       ? o.dim * 5 + 4
                                                       : o.dim * 4),
         (double)(rss1 - rss0) / (double)o.n, st.max_level);

  /* Truth, and the brute-force scan timed as the retriever runs it today
   * (index.c's loop is the portable kernel). */
  uint64_t *truth = malloc(o.queries * K * sizeof *truth);
  const vecdist_kernels_t *kports = vecdist_select(true), *kbest = vecdist_select(false);
  double *ms = malloc(o.queries * sizeof *ms);
  for (size_t i = 0; i < o.queries; i++) {
    t0 = now();
    brute(kbest, base, o.n, o.dim, qs + i * o.dim, NULL, truth + i * K);
    ms[i] = (now() - t0) * 1e3;
  }
  double p50, p99, mean;
  pct(ms, o.queries, &p50, &p99, &mean);
  printf("\n");
  header();
  printf("%-26s %6s %9.4f %9.3f %9.3f %9.3f %10zu %6s %9.0f\n",
         kbest == kports ? "brute force (portable)" : "brute force (avx2)", "-", 1.0,
         mean, p50, p99, o.n, "exact", 1e3 / mean);
  if (o.brute && kbest != kports) {
    size_t nq = o.queries < 200 ? o.queries : 200;
    for (size_t i = 0; i < nq; i++) {
      uint64_t tmp[K];
      t0 = now();
      brute(kports, base, o.n, o.dim, qs + i * o.dim, NULL, tmp);
      ms[i] = (now() - t0) * 1e3;
    }
    pct(ms, nq, &p50, &p99, &mean);
    printf("%-26s %6s %9.4f %9.3f %9.3f %9.3f %10zu %6s %9.0f\n",
           "brute force (portable)", "-", 1.0, mean, p50, p99, o.n, "exact", 1e3 / mean);
  }
  if (o.dump) {
    dump_file(o.dump, "base.f32", base, sizeof *base, o.n * o.dim);
    dump_file(o.dump, "queries.f32", qs, sizeof *qs, o.queries * o.dim);
    dump_file(o.dump, "truth.u64", truth, sizeof *truth, o.queries * K);
    char meta[256];
    int ml = snprintf(
        meta, sizeof meta, "n %zu\ndim %zu\nqueries %zu\nk %d\ndata %s\nmetric %s\n", o.n,
        o.dim, o.queries, K, o.data, o.p.metric == HNSW_COSINE ? "cosine" : "ip");
    dump_file(o.dump, "meta.txt", meta, 1, (size_t)ml);
  }
  char efs[256];
  snprintf(efs, sizeof efs, "%s", o.efs);
  for (char *tok = strtok(efs, ","); tok; tok = strtok(NULL, ",")) {
    char what[64];
    snprintf(what, sizeof what, "hnsw %s", storage_name(o.p.storage));
    run_queries(h, &o, qs, truth, (uint32_t)atoi(tok), what, HNSW_PLAN_GRAPH, NULL, NULL);
  }

  if (o.filters) {
    /* Each vector passes with probability p (a hash of its label), as a
     * tenant or document filter uncorrelated with the vectors would. */
    static const double fr[] = {0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5};
    bool *keep = malloc(o.n);
    uint64_t *ftruth = malloc(o.queries * K * sizeof *ftruth);
    printf("\nfiltered search, ef %u: graph walk vs exact scan (items passing the "
           "filter)\n",
           rp.ef_search);
    header();
    for (size_t f = 0; f < sizeof fr / sizeof *fr; f++) {
      uint64_t s = 99;
      size_t npass = 0;
      for (size_t i = 0; i < o.n; i++)
        npass += keep[i] = uniform(&s) < fr[f];
      for (size_t i = 0; i < o.queries; i++)
        brute(kbest, base, o.n, o.dim, qs + i * o.dim, keep, ftruth + i * K);
      fctx_t fc = {keep};
      char what[64];
      snprintf(what, sizeof what, "%6zu pass (%.1f%%) graph", npass, fr[f] * 100);
      run_queries(h, &o, qs, ftruth, 0, what, HNSW_PLAN_GRAPH, keep_cb, &fc);
      snprintf(what, sizeof what, "%6zu pass (%.1f%%) exact", npass, fr[f] * 100);
      run_queries(h, &o, qs, ftruth, 0, what, HNSW_PLAN_EXACT, keep_cb, &fc);
      snprintf(what, sizeof what, "%6zu pass (%.1f%%) auto", npass, fr[f] * 100);
      run_queries(h, &o, qs, ftruth, 0, what, HNSW_PLAN_AUTO, keep_cb, &fc);
    }
    free(keep);
    free(ftruth);
  }

  if (o.snapshot) {
    const char *path = "/tmp/hnsw_bench.snap";
    t0 = now();
    if (hnsw_save(h, path, 0, err, sizeof err)) {
      fprintf(stderr, "save: %s\n", err);
      return 1;
    }
    double ts = now() - t0;
    hnsw_t *h2;
    t0 = now();
    if (hnsw_load(path, false, &h2, NULL, err, sizeof err)) {
      fprintf(stderr, "load: %s\n", err);
      return 1;
    }
    double tl = now() - t0;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fclose(f);
    printf("\nsnapshot: %.1f MB, save %.2f s, load (read, checksum, check) %.2f s, vs "
           "build %.1f s\n",
           (double)sz / 1e6, ts, tl, build);
    hnsw_free(h2);
    unlink(path);
  }

  if (o.deletes) {
    /* Delete 30% of the vectors (every label with a hash below 0.3), then
     * compare recall against the truth over the survivors before and after
     * compaction. */
    bool *keep = malloc(o.n);
    uint64_t s = 5;
    size_t nd = 0;
    for (size_t i = 0; i < o.n; i++) {
      keep[i] = uniform(&s) >= 0.3;
      if (!keep[i]) {
        hnsw_delete(h, i);
        nd++;
      }
    }
    for (size_t i = 0; i < o.queries; i++)
      brute(kbest, base, o.n, o.dim, qs + i * o.dim, keep, truth + i * K);
    printf("\nafter deleting %zu (30%%):\n", nd);
    header();
    run_queries(h, &o, qs, truth, 0, "tombstones", HNSW_PLAN_GRAPH, NULL, NULL);
    hnsw_compact_stats_t cs;
    t0 = now();
    hnsw_compact(h, &cs);
    double tc = now() - t0;
    run_queries(h, &o, qs, truth, 0, "compacted", HNSW_PLAN_GRAPH, NULL, NULL);
    printf("compaction %.2f s: %zu purged, %zu nodes repaired\n", tc, cs.purged,
           cs.repaired);
    free(keep);
  }

  hnsw_free(h);
  free(base);
  free(qs);
  free(truth);
  free(ms);
  return 0;
}
