/* retriever_bench.c - the embedded engine's index at scale: build time,
 * resident memory, snapshot size and write time, and start time from the
 * snapshot against a rebuild (services/retriever/index.c,
 * engine/snapshot.c).
 *
 * Generates a seeded synthetic corpus in memory: chunks of 60-120 words
 * drawn from a Zipf(1.0) vocabulary of 50,000 terms, one tenant per 100,000
 * chunks (the last one smaller), 384-d vectors around 64 cluster centres
 * (Gaussian, sigma 0.35 per dimension around unit-ish centres), each chunk
 * with its seq as the vector label. Then:
 *  - build: index_upsert in batches of 1000 (what a rebuild does after
 *    reading the rows; the PostgreSQL read itself is not included);
 *  - snapshot write: snapshot_write to --dir (temp file, fsync, rename);
 *  - start from snapshot: snapshot_read into a fresh index;
 *  - a check that both indexes answer a few queries identically;
 *  - lexical latency: --queries queries of 1 to 6 Zipf-drawn words against
 *    the first tenant, top 10 and top 100, on the built index (block-max
 *    MaxScore) and on the loaded one opened with exhaustive scoring (every
 *    posting of every query term scored), with a check that both give the
 *    same lists.
 * --vector-type int8 keeps the vectors as int8 codes
 * (QUARRY_RETRIEVER_VECTOR_TYPE).
 * RSS is read from /proc/self/statm around the build (the corpus generator's
 * own buffers are allocated before the first reading). --dim 0 leaves the
 * vectors out (the lexical index's own memory); --per-tenant sets the
 * tenant size (one tenant of 1M chunks: --per-tenant 1000000); --dump FILE
 * writes the first tenant's chunk texts (one per line) and FILE.queries the
 * queries, for bench/lexical_peer.py (the same queries on Xapian). Not
 * part of make test:
 *   make bench-retriever RETRIEVER_BENCH_ARGS="--n 100000"
 * Figures are recorded in docs/benchmarks.md. */
#include "engine/hnsw.h"
#include "engine/snapshot.h"
#include "index.h"

#include "quarry/arena.h"

#include <dirent.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DIM 384
#define VOCAB 50000
#define CLUSTERS 64
#define BATCH 1000

static size_t vec_dim = MAX_DIM, per_tenant = 100000; /* --dim, --per-tenant */

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

/* Resident memory after glibc has returned its free pages (malloc_trim),
 * so the figure is what the index holds, not what building it left free. */
static size_t rss_bytes(void) {
  malloc_trim(0);
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

/* Bytes the process has allocated and not freed (malloc's own count,
 * mmapped blocks included): what an index holds, whatever the heap's
 * fragmentation makes of its resident size. */
static size_t heap_bytes(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* Zipf(1) sampling by inverse CDF over a precomputed table. */
static double *zipf_cdf;

static size_t zipf(uint64_t *s) {
  double u = uniform(s);
  size_t lo = 0, hi = VOCAB - 1;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (zipf_cdf[mid] < u)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Word w: a pronounceable token from its number (distinct per number). */
static void word(size_t w, char *out) {
  static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo",
                              "ze", "po", "qu", "fa", "gi", "he", "ju", "xo"};
  size_t n = 0;
  do {
    memcpy(out + n, syl[w % 16], 2);
    n += 2;
    w /= 16;
  } while (w);
  out[n] = '\0';
}

static void rm_rf(const char *d) {
  DIR *dd = opendir(d);
  if (!dd)
    return;
  struct dirent *de;
  while ((de = readdir(dd)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", d, de->d_name);
    unlink(p);
  }
  closedir(dd);
}

static int dbl_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Times every query on ix (tenant0, top k): out[0..3) wall p50, p95, mean
 * and out[3..6) the thread's CPU time p50, p95, mean, in ms (on a shared
 * machine the CPU time is the steadier of the two: it leaves out the time
 * the thread waited for a core). */
static void time_queries(index_t *ix, char (*qs)[160], size_t nq, size_t k, double *out) {
  double *t = malloc(nq * sizeof *t), *u = malloc(nq * sizeof *u);
  char err[256];
  double sum = 0, usum = 0;
  for (size_t i = 0; i < nq; i++) {
    q_arena_t *a = q_arena_new(0);
    engine_cand_t *c;
    size_t nc;
    double t0 = now(), c0 = cpu_now();
    index_lexical(ix, "tenant0", qs[i], strlen(qs[i]), k, NULL, a, &c, &nc, err,
                  sizeof err);
    u[i] = (cpu_now() - c0) * 1000.0;
    t[i] = (now() - t0) * 1000.0;
    sum += t[i];
    usum += u[i];
    q_arena_free(a);
  }
  qsort(t, nq, sizeof *t, dbl_cmp);
  qsort(u, nq, sizeof *u, dbl_cmp);
  out[0] = t[nq / 2];
  out[1] = t[(size_t)((double)nq * 0.95)];
  out[2] = sum / (double)nq;
  out[3] = u[nq / 2];
  out[4] = u[(size_t)((double)nq * 0.95)];
  out[5] = usum / (double)nq;
  free(t);
  free(u);
}

int main(int argc, char **argv) {
  size_t n = 100000, nqueries = 500;
  const char *dir = "build/bench/retriever-snapshot", *dump = NULL;
  bool int8 = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--n") == 0)
      n = (size_t)strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--dir") == 0)
      dir = argv[i + 1];
    else if (strcmp(argv[i], "--vector-type") == 0 &&
             (strcmp(argv[i + 1], "int8") == 0 || strcmp(argv[i + 1], "float32") == 0))
      int8 = strcmp(argv[i + 1], "int8") == 0;
    else if (strcmp(argv[i], "--dim") == 0)
      vec_dim = (size_t)strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--per-tenant") == 0)
      per_tenant = (size_t)strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--queries") == 0)
      nqueries = (size_t)strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--dump") == 0)
      dump = argv[i + 1];
    else {
      fprintf(stderr,
              "usage: %s [--n CHUNKS] [--dir DIR] [--dim 0..384] [--per-tenant N] "
              "[--queries N] [--dump FILE] [--vector-type float32|int8]\n",
              argv[0]);
      return 2;
    }
  }
  if (vec_dim > MAX_DIM || !per_tenant || !nqueries) {
    fprintf(stderr, "--dim is at most %d; --per-tenant and --queries above 0\n", MAX_DIM);
    return 2;
  }
  FILE *dumpf = dump ? fopen(dump, "w") : NULL;
  if (dump && !dumpf) {
    perror(dump);
    return 2;
  }
  /* QUARRY_RETRIEVER_VECTOR_TYPE */
  const index_params_t ip = {.exact_max = 0, .int8_vectors = int8};
  uint64_t seed = 42;
  zipf_cdf = malloc(VOCAB * sizeof *zipf_cdf);
  double h = 0;
  for (size_t i = 0; i < VOCAB; i++)
    h += 1.0 / (double)(i + 1);
  double acc = 0;
  for (size_t i = 0; i < VOCAB; i++) {
    acc += 1.0 / (double)(i + 1) / h;
    zipf_cdf[i] = acc;
  }
  float *centres = malloc((size_t)CLUSTERS * MAX_DIM * sizeof *centres);
  for (size_t i = 0; i < (size_t)CLUSTERS * MAX_DIM; i++)
    centres[i] = gauss(&seed);
  /* one batch of text and vectors, reused */
  char(*ids)[48] = malloc(BATCH * sizeof *ids);
  char(*docs)[32] = malloc(BATCH * sizeof *docs);
  char *texts = malloc((size_t)BATCH * 1200);
  float *vecs = malloc((size_t)BATCH * MAX_DIM * sizeof *vecs);
  engine_chunk_t *c = malloc(BATCH * sizeof *c);
  q_arena_t *arena = q_arena_new(0);

  /* QUARRY_RETRIEVER_VECTOR_TYPE */
  const index_params_t ip = {.exact_max = 0, .int8_vectors = int8};
  index_t *idx = index_new(&ip);
  size_t rss0 = rss_bytes(), heap0 = heap_bytes();
  uint64_t text_bytes = 0;
  double t0 = now();
  for (size_t done = 0; done < n;) {
    size_t tenant = done / per_tenant;
    size_t m = n - done < BATCH ? n - done : BATCH;
    if (done / per_tenant != (done + m - 1) / per_tenant)
      m = per_tenant - done % per_tenant;
    for (size_t i = 0; i < m; i++) {
      size_t k = done + i;
      snprintf(ids[i], sizeof ids[i], "doc%zu:1:%zu", k / 8, k % 8);
      snprintf(docs[i], sizeof docs[i], "doc%zu", k / 8);
      char *t = texts + i * 1200;
      size_t len = 0, words = 60 + rng_next(&seed) % 61;
      for (size_t w = 0; w < words && len < 1150; w++) {
        char tok[24];
        word(zipf(&seed), tok);
        size_t tl = strlen(tok);
        memcpy(t + len, tok, tl);
        len += tl;
        t[len++] = ' ';
      }
      t[len] = '\0';
      text_bytes += len;
      if (dumpf && tenant == 0)
        fprintf(dumpf, "%s\n", t);
      const float *ctr = centres + (rng_next(&seed) % CLUSTERS) * vec_dim;
      for (size_t d = 0; d < vec_dim; d++)
        vecs[i * vec_dim + d] = ctr[d] + 0.35f * gauss(&seed);
      c[i] = (engine_chunk_t){.chunk_id = ids[i],
                              .doc_id = docs[i],
                              .title = "",
                              .text = t,
                              .version = 1,
                              .ordinal = (int32_t)(k % 8),
                              .embedding = vec_dim ? vecs + i * vec_dim : NULL,
                              .dim = vec_dim,
                              .seq = k + 1};
    }
    char tn[32], err[256];
    snprintf(tn, sizeof tn, "tenant%zu", tenant);
    if (index_upsert(idx, tn, c, m, NULL, NULL, err, sizeof err) != 0) {
      fprintf(stderr, "upsert: %s\n", err);
      return 1;
    }
    done += m;
    if (done % 100000 == 0)
      fprintf(stderr, "  %zu chunks, %.1f s\n", done, now() - t0);
  }
  double build = now() - t0;
  size_t rss1 = rss_bytes(), heap1 = heap_bytes();

  char err[512];
  mkdir("build/bench", 0755);
  snapshot_meta_t meta = {.int8_vectors = int8};
  snapshot_info_t wi, ri;
  rm_rf(dir);
  t0 = now();
  if (snapshot_write(idx, dir, 12345, &meta, &wi, err, sizeof err) != 0) {
    fprintf(stderr, "snapshot_write: %s\n", err);
    return 1;
  }
  double wtime = now() - t0;

  /* Loaded with exhaustive scoring: the latency baseline below. */
  index_t *back = index_new(
      &(index_params_t){.exact_max = 0, .int8_vectors = int8, .exhaustive = true});
  size_t rss2 = rss_bytes(), heap2 = heap_bytes();
  t0 = now();
  if (snapshot_read(back, dir, &meta, &ri, err, sizeof err) != 0) {
    fprintf(stderr, "snapshot_read: %s\n", err);
    return 1;
  }
  double rtime = now() - t0;
  size_t rss3 = rss_bytes(), heap3 = heap_bytes();

  /* Both answer alike: lexical and dense for a few queries. */
  size_t checked = 0;
  for (int qn = 0; qn < 20; qn++) {
    char q[64], w1[24], w2[24];
    word(zipf(&seed) + 50, w1);
    word(zipf(&seed) + 50, w2);
    snprintf(q, sizeof q, "%s %s", w1, w2);
    engine_cand_t *a, *b;
    size_t na, nb;
    index_lexical(idx, "tenant0", q, strlen(q), 10, NULL, arena, &a, &na, err,
                  sizeof err);
    index_lexical(back, "tenant0", q, strlen(q), 10, NULL, arena, &b, &nb, err,
                  sizeof err);
    if (na != nb)
      goto differ;
    for (size_t i = 0; i < na; i++)
      if (strcmp(a[i].chunk_id, b[i].chunk_id) || a[i].score != b[i].score)
        goto differ;
    if (!vec_dim) {
      checked++;
      continue;
    }
    float qv[MAX_DIM];
    for (size_t d = 0; d < vec_dim; d++)
      qv[d] = centres[(size_t)(qn % CLUSTERS) * vec_dim + d] + 0.35f * gauss(&seed);
    bool used, exact;
    index_dense(idx, "tenant0", qv, vec_dim, 10, NULL, arena, &a, &na, &used, &exact, err,
                sizeof err);
    index_dense(back, "tenant0", qv, vec_dim, 10, NULL, arena, &b, &nb, &used, &exact,
                err, sizeof err);
    if (na != nb)
      goto differ;
    for (size_t i = 0; i < na; i++)
      if (strcmp(a[i].chunk_id, b[i].chunk_id) || a[i].score != b[i].score)
        goto differ;
    checked++;
  }

  /* Lexical latency: pruned (idx) against exhaustive (back), same queries. */
  char(*qs)[160] = malloc(nqueries * sizeof *qs);
  for (size_t i = 0; i < nqueries; i++) {
    size_t len = 0, words = 1 + rng_next(&seed) % 6;
    for (size_t w = 0; w < words; w++) {
      char tok[24];
      word(zipf(&seed), tok);
      len += (size_t)snprintf(qs[i] + len, sizeof qs[i] - len, "%s%s", w ? " " : "", tok);
    }
  }
  size_t same = 0;
  for (size_t i = 0; i < nqueries; i++) {
    engine_cand_t *a, *b;
    size_t na, nb;
    q_arena_t *qa = q_arena_new(0);
    index_lexical(idx, "tenant0", qs[i], strlen(qs[i]), 100, NULL, qa, &a, &na, err,
                  sizeof err);
    index_lexical(back, "tenant0", qs[i], strlen(qs[i]), 100, NULL, qa, &b, &nb, err,
                  sizeof err);
    bool eq = na == nb;
    for (size_t j = 0; eq && j < na; j++)
      eq = strcmp(a[j].chunk_id, b[j].chunk_id) == 0 && a[j].score == b[j].score;
    same += eq;
    q_arena_free(qa);
  }
  if (dumpf) {
    char qpath[4096];
    snprintf(qpath, sizeof qpath, "%s.queries", dump);
    FILE *qf = fopen(qpath, "w");
    for (size_t i = 0; qf && i < nqueries; i++)
      fprintf(qf, "%s\n", qs[i]);
    if (qf)
      fclose(qf);
    fclose(dumpf);
  }
  double lat[2][2][6]; /* [pruned, exhaustive][k 10, 100][wall, cpu: p50, p95, mean] */
  size_t kk[2] = {10, 100};
  for (int m = 0; m < 2; m++)
    for (int ki = 0; ki < 2; ki++)
      time_queries(m ? back : idx, qs, nqueries, kk[ki], lat[m][ki]);

  printf("retriever_bench: %zu chunks, %zu tenants, %zu-d vectors kept as %s, text %.0f "
         "bytes/chunk\n",
         n, (n + per_tenant - 1) / per_tenant, vec_dim, int8 ? "int8" : "float32",
         (double)text_bytes / (double)n);
  printf("  build (index_upsert, batches of %d): %.1f s, %.1f us/chunk\n", BATCH, build,
         build * 1e6 / (double)n);
  printf("  resident memory of the index: %.0f MiB (%.0f bytes/chunk); allocated "
         "%.0f MiB (%.0f bytes/chunk)\n",
         (double)(rss1 - rss0) / 1048576.0, (double)(rss1 - rss0) / (double)n,
         (double)(heap1 - heap0) / 1048576.0, (double)(heap1 - heap0) / (double)n);
  printf("  snapshot write: %.2f s, %.0f MiB on disk (%.0f bytes/chunk)\n", wtime,
         (double)wi.bytes / 1048576.0, (double)wi.bytes / (double)n);
  printf("  start from snapshot (snapshot_read): %.2f s (%.1f us/chunk), %zu chunks, "
         "RSS +%.0f MiB, allocated +%.0f MiB (%.0f bytes/chunk)\n",
         rtime, rtime * 1e6 / (double)n, ri.chunks, (double)(rss3 - rss2) / 1048576.0,
         (double)(heap3 - heap2) / 1048576.0, (double)(heap3 - heap2) / (double)n);
  printf("  snapshot-loaded index answers %zu/20 queries identically (lexical and "
         "dense)\n",
         checked);
  printf("  lexical, %zu queries of 1-6 Zipf words on tenant0 (%zu chunks), ms "
         "p50/p95/mean:\n",
         nqueries, n < per_tenant ? n : per_tenant);
  for (int ki = 0; ki < 2; ki++)
    for (int cpu = 0; cpu < 2; cpu++)
      printf("    top %3zu %s: block-max MaxScore %.3f / %.3f / %.3f, exhaustive %.3f / "
             "%.3f / %.3f\n",
             kk[ki], cpu ? "cpu " : "wall", lat[0][ki][3 * cpu], lat[0][ki][3 * cpu + 1],
             lat[0][ki][3 * cpu + 2], lat[1][ki][3 * cpu], lat[1][ki][3 * cpu + 1],
             lat[1][ki][3 * cpu + 2]);
  printf("  MaxScore and exhaustive lists identical (top 100): %zu/%zu queries\n", same,
         nqueries);
  rm_rf(dir);
  return 0;
differ:
  fprintf(stderr, "the loaded index answers differently\n");
  return 1;
}
