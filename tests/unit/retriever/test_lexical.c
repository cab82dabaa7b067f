/* test_lexical.c - the lexical index's compressed postings and pruned top k:
 * postings (blocks + tail) against a plain sorted list, block-max MaxScore
 * against exhaustive scoring on a churned random corpus (replaces,
 * retirements, compaction and slot reuse, with and without a filter),
 * per-tenant statistics under another tenant's churn, the title weight
 * (BM25F) against hand computation, configurable stopwords, and a snapshot
 * round trip of the postings. */
#include "engine/snapshot.h"
#include "index.h"
#include "postings.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/text.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_next(uint64_t *s) {
  uint64_t x = (*s += UINT64_C(0x9e3779b97f4a7c15));
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* ---- postings ---------------------------------------------------------------- */

static void lens_cb(const void *ctx, uint32_t slot, uint32_t *lx, uint32_t *lt) {
  *lx = slot % 50 + 1;
  *lt = slot % 3;
}

static bool keep_odd_cb(const void *ctx, uint32_t slot) {
  return slot % 2 == 1;
}

static int u32_cmp(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Walks p with a cursor and checks it yields want[0..n) (slots) in order,
 * each with tf_text = slot % 7 + 1 and tf_title = slot % 3. */
static void check_walk(const postings_t *p, const uint32_t *want, size_t n) {
  pcursor_t c;
  pcursor_init(&c, p);
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(c.cur.slot, want[i], "posting %zu: slot %u, want %u", i, c.cur.slot,
                 want[i]);
    cr_assert_eq(c.cur.tf_text, want[i] % 7 + 1);
    cr_assert_eq(c.cur.tf_title, want[i] % 3);
    pcursor_next(&c);
  }
  cr_assert_eq(c.cur.slot, POSTINGS_END);
}

Test(postings, appends_reuse_seek_and_rebuild_match_a_sorted_list) {
  uint64_t seed = 7;
  postings_t p = {0};
  size_t n = 0, cap = 20000;
  uint32_t *all = malloc(cap * sizeof *all);
  char *used = calloc(200000, 1);
  /* Mostly increasing slots (new chunks), with every tenth a reused
   * smaller one, as after a compaction. */
  uint32_t next = 0;
  while (n < cap) {
    uint32_t slot;
    if (n % 10 == 9 && next > 100) {
      do
        slot = (uint32_t)(rng_next(&seed) % next);
      while (used[slot]);
    } else {
      next += 1 + (uint32_t)(rng_next(&seed) % 5);
      slot = next;
    }
    if (used[slot])
      continue;
    used[slot] = 1;
    all[n++] = slot;
    postings_add(&p, (posting_t){slot, slot % 7 + 1, slot % 3}, lens_cb, NULL);
  }
  cr_assert_eq(postings_count(&p), n);
  qsort(all, n, sizeof *all, u32_cmp);
  check_walk(&p, all, n);

  /* seek lands on the first slot >= target; block bounds hold */
  pcursor_t c;
  pcursor_init(&c, &p);
  for (uint32_t target = 0; target < next;
       target += 1 + (uint32_t)(rng_next(&seed) % 400)) {
    pcursor_seek(&c, target);
    uint32_t *at = all;
    while (at < all + n && *at < target)
      at++;
    cr_assert_eq(c.cur.slot, at < all + n ? *at : POSTINGS_END);
    uint32_t b = pcursor_block_at(&c, target);
    if (b < p.nblocks && c.cur.slot != POSTINGS_END && c.cur.slot <= p.blocks[b].last &&
        (b == 0 || c.cur.slot > p.blocks[b - 1].last)) {
      cr_assert_leq(c.cur.tf_text, p.blocks[b].max_tf_text);
      cr_assert_leq(c.cur.tf_title, p.blocks[b].max_tf_title);
    }
  }

  /* rebuild keeping the odd slots */
  postings_rebuild(&p, keep_odd_cb, NULL, NULL, lens_cb, NULL);
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (all[i] % 2 == 1)
      all[m++] = all[i];
  cr_assert_eq(p.ntail, 0);
  cr_assert_eq(postings_count(&p), m);
  check_walk(&p, all, m);
  for (uint32_t b = 0; b < p.nblocks; b++) {
    posting_t dec[POSTINGS_BLOCK];
    uint32_t k = postings_decode(&p, b, dec);
    for (uint32_t i = 0; i < k; i++) {
      cr_assert_leq(dec[i].tf_text, p.blocks[b].max_tf_text);
      cr_assert_geq(dec[i].slot % 50 + 1, p.blocks[b].min_len_text);
    }
  }
  postings_cleanup(&p);
  free(all);
  free(used);
}

Test(postings, adopt_refuses_malformed_data) {
  postings_t p = {0};
  for (uint32_t s = 0; s < 300; s++)
    postings_add(&p, (posting_t){s * 2, 1, 0}, lens_cb, NULL);
  postings_rebuild(&p, NULL, NULL, NULL, lens_cb, NULL);
  uint8_t counts[8];
  for (uint32_t b = 0; b < p.nblocks; b++)
    counts[b] = (uint8_t)p.blocks[b].n;
  postings_t q;
  cr_assert(postings_adopt(&q, counts, p.nblocks, p.data, p.nbytes, 600, lens_cb, NULL,
                           NULL, NULL));
  cr_assert_eq(postings_count(&q), 300);
  postings_cleanup(&q);
  /* a slot beyond the chunks, a truncated block, a count of 0 */
  cr_assert_not(postings_adopt(&q, counts, p.nblocks, p.data, p.nbytes, 598, lens_cb,
                               NULL, NULL, NULL));
  cr_assert_not(postings_adopt(&q, counts, p.nblocks, p.data, p.nbytes - 1, 600, lens_cb,
                               NULL, NULL, NULL));
  counts[0] = 0;
  cr_assert_not(postings_adopt(&q, counts, p.nblocks, p.data, p.nbytes, 600, lens_cb,
                               NULL, NULL, NULL));
  postings_cleanup(&p);
}

/* ---- pruned top k against exhaustive scoring ---------------------------------- */

#define VOCAB 400

static void word(size_t w, char *out) {
  static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo"};
  size_t n = 0;
  do {
    memcpy(out + n, syl[w % 8], 2);
    n += 2;
    w /= 8;
  } while (w);
  out[n] = '\0';
}

/* A Zipf-like word number. */
static size_t zipfish(uint64_t *s) {
  double u = (double)(rng_next(s) >> 11) * 0x1p-53;
  return (size_t)(pow((double)VOCAB, u)) - 1;
}

static void random_text(uint64_t *s, char *out, size_t cap, size_t words) {
  size_t len = 0;
  for (size_t i = 0; i < words && len + 24 < cap; i++) {
    char w[24];
    word(zipfish(s), w);
    len += (size_t)snprintf(out + len, cap - len, "%s ", w);
  }
  out[len] = '\0';
}

/* Applies the same random upserts, replaces and retirements to every index
 * of ix[0..nix). */
static void churn(index_t **ix, size_t nix, uint64_t seed, size_t rounds) {
  char ids[64][32], docs[64][32], titles[64][64], texts[64][800], meta[64][64];
  for (size_t r = 0; r < rounds; r++) {
    size_t n = 1 + rng_next(&seed) % 40;
    size_t doc = rng_next(&seed) % 300;
    const char *tenant = rng_next(&seed) % 4 ? "t1" : "t2";
    index_chunk_t c[64];
    for (size_t i = 0; i < n; i++) {
      snprintf(ids[i], sizeof ids[i], "d%zu:%zu", doc, i);
      snprintf(docs[i], sizeof docs[i], "d%zu", doc);
      random_text(&seed, titles[i], sizeof titles[i], 2);
      random_text(&seed, texts[i], sizeof texts[i], 5 + rng_next(&seed) % 60);
      snprintf(meta[i], sizeof meta[i], "{\"parity\":\"%s\"}", doc % 2 ? "odd" : "even");
      c[i] = (index_chunk_t){.chunk_id = ids[i],
                             .doc_id = docs[i],
                             .title = titles[i],
                             .text = texts[i],
                             .metadata = meta[i]};
    }
    /* a third of the rounds replace the document with fewer chunks */
    bool replace = rng_next(&seed) % 3 == 0;
    if (replace)
      n = n / 2;
    for (size_t k = 0; k < nix; k++) {
      char err[256];
      cr_assert_eq(index_upsert(ix[k], tenant, c, n, replace ? docs[0] : NULL, NULL, err,
                                sizeof err),
                   0, "%s", err);
    }
  }
}

typedef struct list {
  engine_cand_t *c;
  size_t n;
} list_t;

static list_t lex(index_t *ix, q_arena_t *a, const char *tenant, const char *q, size_t k,
                  const q_filter_t *f) {
  list_t l = {0};
  char err[256];
  cr_assert_eq(
      index_lexical(ix, tenant, q, strlen(q), k, f, a, &l.c, &l.n, err, sizeof err), 0,
      "%s", err);
  return l;
}

static void same_lists(list_t x, list_t y, const char *q, size_t k) {
  cr_assert_eq(x.n, y.n, "query \"%s\" k %zu: %zu vs %zu hits", q, k, x.n, y.n);
  for (size_t i = 0; i < x.n; i++) {
    cr_assert_str_eq(x.c[i].chunk_id, y.c[i].chunk_id, "query \"%s\" k %zu rank %zu", q,
                     k, i);
    cr_assert(x.c[i].score == y.c[i].score, "query \"%s\" rank %zu: %.17g vs %.17g", q, i,
              x.c[i].score, y.c[i].score);
  }
}

Test(lexical, maxscore_equals_exhaustive_scoring_under_churn) {
  index_params_t pe = {.exhaustive = true},
                 pp = {.bm25 = true, .k1 = 1.2, .b = 0.75, .title_weight = 2.5}, pe2 = pp;
  pe2.exhaustive = true;
  index_t *ix[4] = {index_new(&pe), index_new(NULL), index_new(&pe2), index_new(&pp)};
  q_arena_t *a = q_arena_new(0);
  churn(ix, 4, 11, 600);
  index_compact(ix[0]);
  index_compact(ix[1]);
  churn(ix, 4, 12, 200); /* slots reused after the compaction */
  char err[256];
  q_filter_t *odd = NULL;
  const char *fs = "{\"field\":\"meta.parity\",\"eq\":\"odd\"}";
  cr_assert_eq(q_filter_parse(fs, strlen(fs), &odd, err, sizeof err), 0, "%s", err);
  uint64_t seed = 99;
  size_t ks[] = {1, 3, 10, 50};
  size_t nonempty = 0;
  for (int qn = 0; qn < 150; qn++) {
    char q[200];
    random_text(&seed, q, sizeof q, 1 + rng_next(&seed) % 6);
    for (size_t ki = 0; ki < 4; ki++) {
      for (int pair = 0; pair < 2; pair++) {
        index_t *ex = ix[2 * pair], *pr = ix[2 * pair + 1];
        list_t x = lex(ex, a, "t1", q, ks[ki], NULL),
               y = lex(pr, a, "t1", q, ks[ki], NULL);
        same_lists(x, y, q, ks[ki]);
        nonempty += x.n > 0;
        x = lex(ex, a, "t1", q, ks[ki], odd);
        y = lex(pr, a, "t1", q, ks[ki], odd);
        same_lists(x, y, q, ks[ki]);
        for (size_t i = 0; i < y.n; i++)
          cr_assert(strtol(y.c[i].doc_id + 1, NULL, 10) % 2 == 1);
      }
    }
    q_arena_free(a);
    a = q_arena_new(0);
  }
  cr_assert_gt(nonempty, 500, "the queries must find something (%zu)", nonempty);
  q_filter_free(odd);
  for (int i = 0; i < 4; i++)
    index_free(ix[i]);
  q_arena_free(a);
}

Test(lexical, one_tenants_documents_never_change_anothers_scores) {
  index_t *ix = index_new(NULL);
  q_arena_t *a = q_arena_new(0);
  char err[256];
  index_chunk_t mine[] = {
      {.chunk_id = "m1", .doc_id = "m", .title = "Kiwi", .text = "kiwi orchard notes"},
      {.chunk_id = "m2", .doc_id = "n", .title = "Pear", .text = "pear kiwi kiwi"},
      {.chunk_id = "m3", .doc_id = "o", .title = "Plum", .text = "plum and fig"},
  };
  cr_assert_eq(index_upsert(ix, "mine", mine, 3, NULL, NULL, err, sizeof err), 0);
  const char *qs[] = {"kiwi", "pear", "kiwi fig", "orchard plum"};
  double before[4][3];
  size_t nb[4];
  for (int i = 0; i < 4; i++) {
    list_t l = lex(ix, a, "mine", qs[i], 10, NULL);
    nb[i] = l.n;
    for (size_t j = 0; j < l.n; j++)
      before[i][j] = l.c[j].score;
  }
  /* Another tenant adds thousands of chunks full of the same words (other
   * N, df and lengths), replaces and retires some, and compacts. */
  uint64_t seed = 5;
  char ids[100][32], texts[100][256];
  for (int r = 0; r < 40; r++) {
    index_chunk_t c[100];
    for (int i = 0; i < 100; i++) {
      snprintf(ids[i], sizeof ids[i], "o%d:%d", r % 25, i);
      snprintf(texts[i], sizeof texts[i], "kiwi %s pear %s",
               rng_next(&seed) % 2 ? "kiwi" : "",
               rng_next(&seed) % 3 ? "fig plum orchard" : "");
      c[i] = (index_chunk_t){
          .chunk_id = ids[i], .doc_id = "od", .title = "Kiwi Pear", .text = texts[i]};
    }
    cr_assert_eq(index_upsert(ix, "other", c, 100, r % 5 == 0 ? "od" : NULL, NULL, err,
                              sizeof err),
                 0);
  }
  index_compact(ix);
  for (int i = 0; i < 4; i++) {
    list_t l = lex(ix, a, "mine", qs[i], 10, NULL);
    cr_assert_eq(l.n, nb[i]);
    for (size_t j = 0; j < l.n; j++)
      cr_assert(l.c[j].score == before[i][j], "query %s rank %zu: %.17g then %.17g",
                qs[i], j, before[i][j], l.c[j].score);
    list_t o = lex(ix, a, "other", qs[i], 10, NULL);
    cr_assert_gt(o.n, 0);
    for (size_t j = 0; j < o.n; j++)
      cr_assert_eq(o.c[j].chunk_id[0], 'o');
  }
  index_free(ix);
  q_arena_free(a);
}

/* ---- BM25F title weight -------------------------------------------------------- */

static double bm25(double N, double df, double tf, double dl, double avgdl) {
  double idf = log(1.0 + (N - df + 0.5) / (df + 0.5));
  return idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * dl / avgdl));
}

Test(lexical, title_weight_scales_title_occurrences) {
  index_chunk_t c[] = {
      {.chunk_id = "a", .doc_id = "d", .title = "Refund policy", .text = "money back"},
      {.chunk_id = "b", .doc_id = "e", .title = "Shipping", .text = "refunds parcels"},
  };
  q_arena_t *a = q_arena_new(0);
  char err[256];
  double weights[] = {0.0, 1.0, 3.0};
  for (int i = 0; i < 3; i++) {
    double w = weights[i];
    index_params_t p = {.bm25 = true, .k1 = 1.2, .b = 0.75, .title_weight = w};
    index_t *ix = index_new(&p);
    cr_assert_eq(index_upsert(ix, "t", c, 2, NULL, NULL, err, sizeof err), 0);
    list_t l = lex(ix, a, "t", "refund", 10, NULL);
    /* lengths: a = text 2 + title 2 (refund, polici), b = text 2 + title 1 */
    double dla = 2 + w * 2, dlb = 2 + w * 1, avgdl = (dla + dlb) / 2;
    double sa = bm25(2, 2, w * 1, dla, avgdl), sb = bm25(2, 2, 1, dlb, avgdl);
    if (w == 0.0) { /* the title is not searched: only b matches */
      cr_assert_eq(l.n, 1);
      cr_assert_str_eq(l.c[0].chunk_id, "b");
      cr_assert_float_eq(l.c[0].score, sb, 1e-12);
    } else {
      cr_assert_eq(l.n, 2);
      const engine_cand_t *ca = strcmp(l.c[0].chunk_id, "a") == 0 ? &l.c[0] : &l.c[1];
      const engine_cand_t *cb = ca == &l.c[0] ? &l.c[1] : &l.c[0];
      cr_assert_float_eq(ca->score, sa, 1e-12, "w %g: %g vs %g", w, ca->score, sa);
      cr_assert_float_eq(cb->score, sb, 1e-12);
    }
    index_free(ix);
  }
  /* out-of-range parameters are refused */
  index_params_t bad = {.bm25 = true, .k1 = 1.2, .b = 1.5, .title_weight = 1};
  cr_assert_null(index_new(&bad));
  bad.b = 0.5;
  bad.title_weight = -1;
  cr_assert_null(index_new(&bad));
  q_arena_free(a);
}

/* ---- stopwords ---------------------------------------------------------------- */

static const char *write_tmp(const char *body) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/quarry-stop-%d.txt", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(body, f);
  fclose(f);
  return path;
}

Test(lexical, stopword_lists_none_english_and_a_file) {
  q_text_stopwords_t *none = NULL, *file = NULL, *eng = NULL;
  char err[256];
  cr_assert_eq(q_text_stopwords_new("none", &none, err, sizeof err), 0);
  cr_assert_eq(q_text_stopwords_new("english", &eng, err, sizeof err), 0);
  const char *path = write_tmp("# mine\nPear\n\n  orchard \nÉTÉ\n");
  cr_assert_eq(q_text_stopwords_new(path, &file, err, sizeof err), 0, "%s", err);
  cr_assert_eq(q_text_stopwords_count(file), 3);
  cr_assert_eq(q_text_stopwords_fingerprint(eng), q_text_stopwords_fingerprint(NULL));
  cr_assert_neq(q_text_stopwords_fingerprint(none), q_text_stopwords_fingerprint(NULL));
  cr_assert_neq(q_text_stopwords_fingerprint(file), q_text_stopwords_fingerprint(NULL));

  index_chunk_t c[] = {
      {.chunk_id = "a", .doc_id = "d", .title = "", .text = "the pear orchard in été"},
  };
  q_arena_t *a = q_arena_new(0);
  index_t *ix[3];
  const q_text_stopwords_t *sws[3] = {NULL, none, file};
  for (int i = 0; i < 3; i++) {
    index_params_t p = {.stopwords = sws[i]};
    ix[i] = index_new(&p);
    cr_assert_eq(index_upsert(ix[i], "t", c, 1, NULL, NULL, err, sizeof err), 0);
  }
  cr_assert_eq(lex(ix[0], a, "t", "the", 10, NULL).n, 0);
  cr_assert_eq(lex(ix[0], a, "t", "pear", 10, NULL).n, 1);
  cr_assert_eq(lex(ix[1], a, "t", "the", 10, NULL).n, 1);
  cr_assert_eq(lex(ix[2], a, "t", "the", 10, NULL).n, 1);
  cr_assert_eq(lex(ix[2], a, "t", "PEAR orchard", 10, NULL).n, 0);
  cr_assert_eq(lex(ix[2], a, "t", "été", 10, NULL).n, 0);
  cr_assert_neq(index_lexical_fingerprint(ix[0]), index_lexical_fingerprint(ix[2]));
  for (int i = 0; i < 3; i++)
    index_free(ix[i]);

  /* bad files name the problem */
  q_text_stopwords_t *bad = NULL;
  cr_assert_eq(q_text_stopwords_new("/nonexistent/stop.txt", &bad, err, sizeof err),
               Q_EINVAL);
  cr_assert(strstr(err, "/nonexistent/stop.txt"));
  path = write_tmp("fine\ntwo words\n");
  cr_assert_eq(q_text_stopwords_new(path, &bad, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "line 2"), "%s", err);
  unlink(path);
  q_text_stopwords_free(none);
  q_text_stopwords_free(eng);
  q_text_stopwords_free(file);
  q_arena_free(a);
}

/* ---- snapshot of the postings ------------------------------------------------- */

Test(lexical, snapshot_keeps_postings_and_refuses_another_stopword_list) {
  index_t *ix[1] = {index_new(NULL)};
  churn(ix, 1, 21, 300);
  char dir[64], err[512];
  snprintf(dir, sizeof dir, "/tmp/quarry-lexsnap-%d", (int)getpid());
  snapshot_meta_t meta = {.fixed_dim = 0};
  snapshot_info_t wi, ri;
  cr_assert_eq(snapshot_write(ix[0], dir, 7, &meta, &wi, err, sizeof err), 0, "%s", err);
  index_t *back = index_new(NULL);
  cr_assert_eq(snapshot_read(back, dir, &meta, &ri, err, sizeof err), 0, "%s", err);
  cr_assert_eq(ri.chunks, wi.chunks);
  index_stats_t s1, s2;
  index_stats(ix[0], NULL, &s1);
  index_stats(back, NULL, &s2);
  cr_assert_eq(s1.chunks, s2.chunks);
  cr_assert_eq(s1.terms, s2.terms);
  cr_assert_eq(s1.documents, s2.documents);
  q_arena_t *a = q_arena_new(0);
  uint64_t seed = 3;
  for (int qn = 0; qn < 60; qn++) {
    char q[200];
    random_text(&seed, q, sizeof q, 1 + rng_next(&seed) % 4);
    same_lists(lex(ix[0], a, "t1", q, 10, NULL), lex(back, a, "t1", q, 10, NULL), q, 10);
    same_lists(lex(ix[0], a, "t2", q, 10, NULL), lex(back, a, "t2", q, 10, NULL), q, 10);
  }
  /* the loaded index takes upserts and retirements like any other */
  churn((index_t *[]){ix[0], back}, 2, 22, 100);
  for (int qn = 0; qn < 30; qn++) {
    char q[200];
    random_text(&seed, q, sizeof q, 2);
    same_lists(lex(ix[0], a, "t1", q, 10, NULL), lex(back, a, "t1", q, 10, NULL), q, 10);
  }
  /* another stopword list: the snapshot is refused */
  q_text_stopwords_t *none = NULL;
  cr_assert_eq(q_text_stopwords_new("none", &none, err, sizeof err), 0);
  index_params_t p = {.stopwords = none};
  index_t *other = index_new(&p);
  cr_assert_eq(snapshot_read(other, dir, &meta, &ri, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "stopword"), "%s", err);
  index_free(other);
  q_text_stopwords_free(none);
  index_free(back);
  index_free(ix[0]);
  q_arena_free(a);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}
