/* test_index.c - the embedded engine's in-memory index: BM25 against
 * hand-computed scores, tenant isolation, retirement, dense ranking (HNSW
 * graph and exact scan) and concurrency. Searches fuse the index's two lists
 * with fusion_merge (plain RRF), as search.c does. */
#include "fusion.h"
#include "index.h"

#include "quarry/arena.h"
#include "quarry/error.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static index_t *idx;
static q_arena_t *arena;

static void setup(void) {
  idx = index_new(NULL);
  arena = q_arena_new(0);
  cr_assert_not_null(idx);
  cr_assert_not_null(arena);
}

static void teardown(void) {
  index_free(idx);
  q_arena_free(arena);
}

static index_chunk_t mk(const char *id, const char *doc, const char *text) {
  return (index_chunk_t){.chunk_id = id, .doc_id = doc, .title = "", .text = text};
}

static void put(const char *tenant, index_chunk_t *c, size_t n, const char *replace,
                size_t *retired) {
  char err[256] = "";
  int rc = index_upsert(idx, tenant, c, n, replace, retired, err, sizeof err);
  cr_assert_eq(rc, 0, "upsert: %s", err);
}

/* One fused result, flattened. */
typedef struct hit {
  const char *chunk_id, *doc_id, *title, *text;
  double fused, lexical, dense;
  uint32_t lexical_rank, dense_rank;
} hit_t;

typedef struct res {
  hit_t *h;
  size_t n;
  int dense;
  int rc;
  char err[256];
} res_t;

/* Lexical and (with an embedding) dense candidates of ix, fused by RRF. */
static res_t search_in(index_t *ix, q_arena_t *a, const char *tenant, const char *text,
                       const float *emb, size_t dim, size_t k) {
  res_t r;
  memset(&r, 0, sizeof r);
  engine_cand_t *lex = NULL, *den = NULL;
  size_t nlex = 0, nden = 0;
  bool used = false, exact = false;
  if (dim) {
    r.rc = index_dense(ix, tenant, emb, dim, k, NULL, a, &den, &nden, &used, &exact,
                       r.err, sizeof r.err);
    if (r.rc)
      return r;
  }
  r.dense = used;
  r.rc = index_lexical(ix, tenant, text, text ? strlen(text) : 0, k, NULL, a, &lex, &nlex,
                       r.err, sizeof r.err);
  if (r.rc)
    return r;
  fusion_params_t fp = {FUSION_RRF, 0, 1.0, 1.0};
  fusion_hit_t *fh;
  size_t nf;
  r.rc = fusion_merge(lex, nlex, den, nden, &fp, a, &fh, &nf);
  if (r.rc)
    return r;
  r.n = nf < k ? nf : k;
  r.h = q_arena_alloc(a, (r.n + 1) * sizeof *r.h);
  for (size_t i = 0; i < r.n; i++)
    r.h[i] = (hit_t){fh[i].cand->chunk_id, fh[i].cand->doc_id, fh[i].cand->title,
                     fh[i].cand->text,     fh[i].fused,        fh[i].lexical,
                     fh[i].dense,          fh[i].lexical_rank, fh[i].dense_rank};
  return r;
}

static res_t search(const char *tenant, const char *text, const float *emb, size_t dim,
                    size_t k) {
  return search_in(idx, arena, tenant, text, emb, dim, k);
}

static const hit_t *find(const res_t *r, const char *id) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->h[i].chunk_id, id) == 0)
      return &r->h[i];
  return NULL;
}

/* Three chunks, terms after stopwords and stemming:
 *   c1 "apple banana apple"          -> appl banana appl      (dl 3)
 *   c2 "banana cherry"               -> banana cherri         (dl 2)
 *   c3 "cherry date elderberry fig"  -> cherri date elderberri fig (dl 4)
 * N = 3, avgdl = 3. */
static void load_fruit(const char *tenant) {
  index_chunk_t c[] = {
      mk("c1", "d1", "Apple banana apple"),
      mk("c2", "d1", "banana cherry"),
      mk("c3", "d2", "cherry date elderberry fig"),
  };
  put(tenant, c, 3, NULL, NULL);
}

TestSuite(index, .init = setup, .fini = teardown);

Test(index, bm25_single_term_matches_hand_computation) {
  load_fruit("t1");
  res_t r = search("t1", "apples", NULL, 0, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "c1");
  /* idf = ln(1 + (3 - 1 + 0.5) / (1 + 0.5)) = ln(8/3) = 0.980829
   * tf = 2, dl = avgdl: norm = 1.2 -> 0.980829 * 2 * 2.2 / 3.2 = 1.348640 */
  cr_assert_float_eq(r.h[0].lexical, 1.348640, 1e-5);
  cr_assert_eq(r.h[0].lexical_rank, 1);
  cr_assert_eq(r.h[0].dense_rank, 0);
  cr_assert_eq(r.dense, 0);
}

Test(index, bm25_ranking_matches_hand_computation) {
  load_fruit("t1");
  res_t r = search("t1", "banana and cherries", NULL, 0, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.n, 3);
  /* df(banana) = df(cherri) = 2: idf = ln(1 + 1.5 / 2.5) = ln 1.6 = 0.470004
   * c2 (dl 2): norm = 1.2 * (0.25 + 0.75 * 2/3) = 0.9; 2 * idf * 2.2 / 1.9
   * c1 (dl 3): norm = 1.2;                             idf * 2.2 / 2.2
   * c3 (dl 4): norm = 1.2 * (0.25 + 0.75 * 4/3) = 1.5; idf * 2.2 / 2.5 */
  cr_assert_str_eq(r.h[0].chunk_id, "c2");
  cr_assert_str_eq(r.h[1].chunk_id, "c1");
  cr_assert_str_eq(r.h[2].chunk_id, "c3");
  cr_assert_float_eq(r.h[0].lexical, 1.088430, 1e-5);
  cr_assert_float_eq(r.h[1].lexical, 0.470004, 1e-5);
  cr_assert_float_eq(r.h[2].lexical, 0.413604, 1e-5);
  /* lexical only: fused is the RRF of the BM25 rank alone */
  cr_assert_float_eq(r.h[0].fused, 1.0 / 61, 1e-12);
  cr_assert_float_eq(r.h[2].fused, 1.0 / 63, 1e-12);
}

Test(index, top_k_truncates_and_unknown_terms_find_nothing) {
  load_fruit("t1");
  res_t r = search("t1", "banana cherry", NULL, 0, 1);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "c2");
  r = search("t1", "zucchini", NULL, 0, 10);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.n, 0);
  r = search("t1", "the and of", NULL, 0, 10); /* only stopwords */
  cr_assert_eq(r.n, 0);
}

Test(index, title_counts_as_part_of_the_chunk) {
  index_chunk_t c[] = {
      {.chunk_id = "a",
       .doc_id = "d",
       .title = "Refund policy",
       .text = "Money back in 30 days"},
      {.chunk_id = "b",
       .doc_id = "e",
       .title = "Shipping",
       .text = "Parcels leave daily"},
  };
  put("t", c, 2, NULL, NULL);
  res_t r = search("t", "refunds", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "a");
  cr_assert_str_eq(r.h[0].title, "Refund policy");
  cr_assert_str_eq(r.h[0].text, "Money back in 30 days");
  cr_assert_str_eq(r.h[0].doc_id, "d");
}

Test(index, tenants_are_isolated) {
  load_fruit("t1");
  index_chunk_t other[] = {
      mk("x1", "dx", "apple apple apple pie"),
      mk("x2", "dy", "apple strudel"),
  };
  put("t2", other, 2, NULL, NULL);

  res_t r = search("t1", "apple", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "c1");
  /* t2's documents change neither N nor df of t1 */
  cr_assert_float_eq(r.h[0].lexical, 1.348640, 1e-5);

  r = search("t2", "apple", NULL, 0, 10);
  cr_assert_eq(r.n, 2);
  cr_assert_null(find(&r, "c1"));

  r = search("t3", "apple", NULL, 0, 10);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.n, 0);

  index_stats_t st;
  index_stats(idx, "t1", &st);
  cr_assert_eq(st.chunks, 3);
  cr_assert_eq(st.documents, 2);
  cr_assert_eq(st.terms, 6); /* appl banana cherri date elderberri fig */
  index_stats(idx, "t2", &st);
  cr_assert_eq(st.chunks, 2);
  cr_assert_eq(st.documents, 2);
  index_stats(idx, NULL, &st);
  cr_assert_eq(st.chunks, 5);
  cr_assert_eq(index_chunk_count(idx), 5);
}

Test(index, replace_retires_chunks_not_in_the_request) {
  index_chunk_t v1[] = {
      mk("d1:1:0", "d1", "old alpha"),
      mk("d1:1:1", "d1", "old beta"),
      mk("d1:1:2", "d1", "old gamma"),
      mk("d2:1:0", "d2", "unrelated old text"),
  };
  put("t", v1, 4, NULL, NULL);

  size_t retired = 99;
  index_chunk_t v2[] = {mk("d1:2:0", "d1", "new alpha"), mk("d1:2:1", "d1", "new beta")};
  put("t", v2, 2, "d1", &retired);
  cr_assert_eq(retired, 3);

  res_t r = search("t", "old", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "d2:1:0");
  r = search("t", "alpha", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "d1:2:0");

  /* chunks named in the request are replaced, not counted as retired */
  index_chunk_t v3[] = {mk("d1:2:0", "d1", "newer alpha")};
  put("t", v3, 1, "d1", &retired);
  cr_assert_eq(retired, 1);
  r = search("t", "newer", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  r = search("t", "beta", NULL, 0, 10);
  cr_assert_eq(r.n, 0);

  index_stats_t st;
  index_stats(idx, "t", &st);
  cr_assert_eq(st.chunks, 2);
  cr_assert_eq(st.documents, 2);

  /* no chunks + replace: the whole document goes */
  put("t", NULL, 0, "d1", &retired);
  cr_assert_eq(retired, 1);
  index_stats(idx, "t", &st);
  cr_assert_eq(st.chunks, 1);
  cr_assert_eq(st.documents, 1);
  /* replacing an unknown document is fine */
  put("t", NULL, 0, "nope", &retired);
  cr_assert_eq(retired, 0);
}

Test(index, upsert_same_id_replaces_the_chunk) {
  index_chunk_t a[] = {mk("c", "d", "first version")};
  put("t", a, 1, NULL, NULL);
  index_chunk_t b[] = {mk("c", "d", "second edition")};
  put("t", b, 1, NULL, NULL);
  cr_assert_eq(search("t", "first", NULL, 0, 10).n, 0);
  res_t r = search("t", "edition", NULL, 0, 10);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.h[0].text, "second edition");
  index_stats_t st;
  index_stats(idx, "t", &st);
  cr_assert_eq(st.chunks, 1);
  cr_assert_eq(st.terms, 2); /* "first"/"version" no longer count */
}

/* After churn (retirements, replacements, compaction) the scores must be
 * exactly those of an index built from the surviving chunks alone: df, N
 * and avgdl follow retirements. */
Test(index, statistics_follow_retirement_and_compaction) {
  char ids[300][32], texts[300][96];
  const char *words[] = {"river", "stone", "cloud", "ember", "maple", "frost", "delta"};
  for (int i = 0; i < 300; i++) {
    snprintf(ids[i], sizeof ids[i], "doc%d:1:%d", i % 30, i);
    snprintf(texts[i], sizeof texts[i], "%s %s %s number%d", words[i % 7],
             words[(i * 3) % 7], words[(i / 7) % 7], i % 11);
  }
  for (int i = 0; i < 300; i++) {
    char doc[16];
    snprintf(doc, sizeof doc, "doc%d", i % 30);
    index_chunk_t c = mk(ids[i], doc, texts[i]);
    put("t", &c, 1, NULL, NULL);
  }
  /* replace every third document with a subset of its chunks */
  for (int d = 0; d < 30; d += 3) {
    char doc[16];
    snprintf(doc, sizeof doc, "doc%d", d);
    index_chunk_t keep = mk(ids[d], doc, texts[d]);
    size_t retired;
    put("t", &keep, 1, doc, &retired);
    cr_assert_eq(retired, 9);
  }
  index_compact(idx);

  index_t *fresh = index_new(NULL);
  for (int i = 0; i < 300; i++) {
    int d = i % 30;
    if (d % 3 == 0 && i != d)
      continue;
    char doc[16], err[128];
    snprintf(doc, sizeof doc, "doc%d", d);
    index_chunk_t c = mk(ids[i], doc, texts[i]);
    cr_assert_eq(index_upsert(fresh, "t", &c, 1, NULL, NULL, err, sizeof err), 0);
  }

  index_stats_t a, b;
  index_stats(idx, "t", &a);
  index_stats(fresh, "t", &b);
  cr_assert_eq(a.chunks, b.chunks);
  cr_assert_eq(a.documents, b.documents);
  cr_assert_eq(a.terms, b.terms);
  cr_assert_eq(a.chunks, 210);

  const char *queries[] = {"river stone", "ember number3", "frost delta maple", "cloud"};
  for (size_t qi = 0; qi < 4; qi++) {
    res_t r1 = search("t", queries[qi], NULL, 0, 50);
    res_t r2 = search_in(fresh, arena, "t", queries[qi], NULL, 0, 50);
    cr_assert_eq(r2.rc, 0);
    cr_assert_eq(r1.n, r2.n);
    for (size_t i = 0; i < r2.n; i++) {
      cr_assert_str_eq(r1.h[i].chunk_id, r2.h[i].chunk_id);
      cr_assert_float_eq(r1.h[i].lexical, r2.h[i].lexical, 1e-9);
    }
  }
  index_free(fresh);

  /* slots freed by compaction are reused correctly */
  index_chunk_t extra = mk("new:1:0", "new", "river river river");
  put("t", &extra, 1, NULL, NULL);
  res_t r = search("t", "river", NULL, 0, 1);
  cr_assert_str_eq(r.h[0].chunk_id, "new:1:0");
}

Test(index, dense_cosine_ranking) {
  float v1[] = {1, 0, 0}, v2[] = {8, 6, 0}, v3[] = {0, 0, 2};
  index_chunk_t c[] = {
      {.chunk_id = "v1", .doc_id = "d", .text = "one", .embedding = v1, .dim = 3},
      {.chunk_id = "v2", .doc_id = "d", .text = "two", .embedding = v2, .dim = 3},
      {.chunk_id = "v3", .doc_id = "d", .text = "three", .embedding = v3, .dim = 3},
      {.chunk_id = "nv", .doc_id = "d", .text = "no vector"},
  };
  put("t", c, 4, NULL, NULL);

  float q[] = {1, 0.1f, 0};
  res_t r = search("t", "", q, 3, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.dense, 1);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.h[0].chunk_id, "v1");
  cr_assert_str_eq(r.h[1].chunk_id, "v2");
  cr_assert_str_eq(r.h[2].chunk_id, "v3");
  /* cosines: 1/sqrt(1.01); (0.8 + 0.06)/sqrt(1.01); 0 */
  cr_assert_float_eq(r.h[0].dense, 0.995037, 1e-5);
  cr_assert_float_eq(r.h[1].dense, 0.855732, 1e-5);
  cr_assert_float_eq(r.h[2].dense, 0.0, 1e-6);
  cr_assert_eq(r.h[1].dense_rank, 2);
  cr_assert_eq(r.h[1].lexical_rank, 0);

  /* the opposite direction ranks v1 last (negative cosine) */
  float qn[] = {-1, 0, 0};
  r = search("t", NULL, qn, 3, 10);
  cr_assert_str_eq(r.h[2].chunk_id, "v1");
  cr_assert_float_eq(r.h[2].dense, -1.0, 1e-6);
}

Test(index, hybrid_fuses_both_lists) {
  float va[] = {0, 1}, vb[] = {1, 0}, vc[] = {0.7f, 0.7f};
  index_chunk_t c[] = {
      {.chunk_id = "a",
       .doc_id = "d",
       .text = "solar panel install guide",
       .embedding = va,
       .dim = 2},
      {.chunk_id = "b", .doc_id = "d", .text = "wind turbine", .embedding = vb, .dim = 2},
      {.chunk_id = "c", .doc_id = "d", .text = "solar energy", .embedding = vc, .dim = 2},
  };
  put("t", c, 3, NULL, NULL);
  float q[] = {1, 0};
  res_t r = search("t", "solar", q, 2, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.dense, 1);
  cr_assert_eq(r.n, 3);
  /* BM25: c (shorter) 1, a 2. Dense: b 1, c 2, a 3.
   * fused: c = 1/61 + 1/62, a = 1/62 + 1/63, b = 1/61 */
  cr_assert_str_eq(r.h[0].chunk_id, "c");
  cr_assert_str_eq(r.h[1].chunk_id, "a");
  cr_assert_str_eq(r.h[2].chunk_id, "b");
  cr_assert_float_eq(r.h[0].fused, 1.0 / 61 + 1.0 / 62, 1e-12);
  cr_assert_float_eq(r.h[1].fused, 1.0 / 62 + 1.0 / 63, 1e-12);
  cr_assert_float_eq(r.h[2].fused, 1.0 / 61, 1e-12);
  /* every passage carries both raw scores */
  cr_assert_gt(r.h[1].lexical, 0.0);
  cr_assert_float_eq(r.h[1].dense, 0.0, 1e-6);
  cr_assert_float_eq(r.h[2].lexical, 0.0, 1e-12);
  cr_assert_float_eq(r.h[2].dense, 1.0, 1e-6);
}

Test(index, embedding_validation) {
  float v[] = {1, 2, 3, 4};
  index_chunk_t c = {
      .chunk_id = "c", .doc_id = "d", .text = "x", .embedding = v, .dim = 4};
  put("t", &c, 1, NULL, NULL);

  char err[256] = "";
  float w[] = {1, 2};
  index_chunk_t bad = {
      .chunk_id = "e", .doc_id = "d", .text = "y", .embedding = w, .dim = 2};
  cr_assert_eq(index_upsert(idx, "t", &bad, 1, NULL, NULL, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "2 dimensions"), "%s", err);
  /* another tenant may use another dimension */
  cr_assert_eq(index_upsert(idx, "u", &bad, 1, NULL, NULL, err, sizeof err), 0);

  float z[] = {0, 0, 0, 0};
  index_chunk_t zero = {
      .chunk_id = "z", .doc_id = "d", .text = "y", .embedding = z, .dim = 4};
  cr_assert_eq(index_upsert(idx, "t", &zero, 1, NULL, NULL, err, sizeof err), Q_EINVAL);
  float n[] = {1, NAN, 0, 0};
  index_chunk_t nan = {
      .chunk_id = "n", .doc_id = "d", .text = "y", .embedding = n, .dim = 4};
  cr_assert_eq(index_upsert(idx, "t", &nan, 1, NULL, NULL, err, sizeof err), Q_EINVAL);

  /* a mixed batch is refused as a whole */
  index_chunk_t mixed[] = {
      {.chunk_id = "m1", .doc_id = "d", .text = "y", .embedding = v, .dim = 4},
      {.chunk_id = "m2", .doc_id = "d", .text = "y", .embedding = w, .dim = 2},
  };
  cr_assert_eq(index_upsert(idx, "fresh", mixed, 2, NULL, NULL, err, sizeof err),
               Q_EINVAL);
  index_stats_t st;
  index_stats(idx, "fresh", &st);
  cr_assert_eq(st.chunks, 0);

  res_t r = search("t", "x", w, 2, 10);
  cr_assert_eq(r.rc, Q_EINVAL);
  cr_assert(strstr(r.err, "query_embedding has 2 dimensions"), "%s", r.err);
  r = search("t", "x", z, 4, 10);
  cr_assert_eq(r.rc, Q_EINVAL);

  /* when the tenant's last vector goes, any dimension is welcome again */
  put("u", NULL, 0, "d", NULL);
  float big[] = {1, 1, 1, 1, 1, 1};
  index_chunk_t six = {
      .chunk_id = "s", .doc_id = "d", .text = "y", .embedding = big, .dim = 6};
  put("u", &six, 1, NULL, NULL);
}

Test(index, fixed_dimension) {
  index_free(idx);
  idx = index_new(&(index_params_t){.fixed_dim = 3});
  float v[] = {1, 2};
  char err[256];
  index_chunk_t c = {
      .chunk_id = "c", .doc_id = "d", .text = "x", .embedding = v, .dim = 2};
  cr_assert_eq(index_upsert(idx, "t", &c, 1, NULL, NULL, err, sizeof err), Q_EINVAL);
  res_t r = search("t", "x", v, 2, 10);
  cr_assert_eq(r.rc, Q_EINVAL);
}

Test(index, embedding_without_vectors_is_lexical_only) {
  load_fruit("t1");
  float q[] = {1, 0, 0};
  res_t r = search("t1", "apple", q, 3, 10);
  cr_assert_eq(r.rc, 0);
  cr_assert_eq(r.dense, 0);
  cr_assert_eq(r.n, 1);
}

/* Searches run concurrently with upserts and always see a consistent index. */
typedef struct race {
  int stop;
  int bad;
} race_t;

static void *searcher(void *arg) {
  race_t *rc = arg;
  q_arena_t *a = q_arena_new(0);
  while (!__atomic_load_n(&rc->stop, __ATOMIC_ACQUIRE)) {
    res_t r = search_in(idx, a, "t", "stable moving", NULL, 0, 100);
    if (r.rc != 0)
      __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
    /* "stable" is in exactly one chunk, which is never touched */
    int seen = 0;
    for (size_t i = 0; i < r.n; i++)
      seen += strcmp(r.h[i].chunk_id, "s") == 0;
    if (seen != 1)
      __atomic_store_n(&rc->bad, 1, __ATOMIC_RELEASE);
    q_arena_free(a);
    a = q_arena_new(0);
  }
  q_arena_free(a);
  return NULL;
}

Test(index, concurrent_search_and_upsert) {
  index_chunk_t s = mk("s", "sd", "stable");
  put("t", &s, 1, NULL, NULL);
  race_t rc = {0, 0};
  pthread_t th[3];
  for (int i = 0; i < 3; i++)
    pthread_create(&th[i], NULL, searcher, &rc);
  for (int round = 0; round < 300; round++) {
    char id[32][32];
    index_chunk_t c[32];
    for (int i = 0; i < 32; i++) {
      snprintf(id[i], sizeof id[i], "m:%d:%d", round, i);
      c[i] = mk(id[i], "md", "moving target text");
    }
    size_t retired;
    put("t", c, 32, "md", &retired);
    cr_assert_eq(retired, round ? 32 : 0);
  }
  __atomic_store_n(&rc.stop, 1, __ATOMIC_RELEASE);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  cr_assert_eq(rc.bad, 0);
  index_stats_t st;
  index_stats(idx, "t", &st);
  cr_assert_eq(st.chunks, 33);
}

Test(index, inner_product_metric) {
  index_t *ip = index_new(&(index_params_t){.inner_product = true});
  cr_assert_not_null(ip);
  float v1[] = {1, 0}, v2[] = {3, 3};
  index_chunk_t c[] = {
      {.chunk_id = "short", .doc_id = "d", .text = "a", .embedding = v1, .dim = 2},
      {.chunk_id = "long", .doc_id = "d", .text = "b", .embedding = v2, .dim = 2},
  };
  char err[256];
  cr_assert_eq(index_upsert(ip, "t", c, 2, NULL, NULL, err, sizeof err), 0, "%s", err);
  /* cosine would put "short" first (1 against 0.707); the inner product
   * puts "long" first (3 against 1), with raw scores */
  float q[] = {1, 0};
  res_t r = search_in(ip, arena, "t", NULL, q, 2, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_str_eq(r.h[0].chunk_id, "long");
  cr_assert_float_eq(r.h[0].dense, 3.0, 1e-5);
  cr_assert_float_eq(r.h[1].dense, 1.0, 1e-5);
  index_free(ip);
}

/* QUARRY_RETRIEVER_VECTOR_TYPE=int8: the shard's graph keeps int8 codes;
 * rankings follow the cosines, scores are within the rounding, and a
 * replaced chunk's old vector never comes back. */
Test(index, int8_vectors_rank_by_cosine_with_close_scores) {
  index_t *q8 = index_new(&(index_params_t){.int8_vectors = true});
  cr_assert_not_null(q8);
  float v1[] = {1, 0, 0}, v2[] = {8, 6, 0}, v3[] = {0, 0, 2};
  index_chunk_t c[] = {
      {.chunk_id = "v1", .doc_id = "d", .text = "one", .embedding = v1, .dim = 3},
      {.chunk_id = "v2", .doc_id = "d", .text = "two", .embedding = v2, .dim = 3},
      {.chunk_id = "v3", .doc_id = "e", .text = "three", .embedding = v3, .dim = 3},
  };
  char err[256];
  cr_assert_eq(index_upsert(q8, "t", c, 3, NULL, NULL, err, sizeof err), 0, "%s", err);
  float q[] = {1, 0.1f, 0};
  res_t r = search_in(q8, arena, "t", NULL, q, 3, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.n, 3);
  cr_assert_str_eq(r.h[0].chunk_id, "v1");
  cr_assert_str_eq(r.h[1].chunk_id, "v2");
  cr_assert_str_eq(r.h[2].chunk_id, "v3");
  cr_assert_float_eq(r.h[0].dense, 0.995037, 1e-2);
  cr_assert_float_eq(r.h[1].dense, 0.855732, 1e-2);
  cr_assert_float_eq(r.h[2].dense, 0.0, 1e-2);
  /* document e replaced by a chunk pointing the other way: the old vector
   * is a tombstone and never returned */
  float v4[] = {-1, 0, 0};
  index_chunk_t c4 = {
      .chunk_id = "v4", .doc_id = "e", .text = "four", .embedding = v4, .dim = 3};
  cr_assert_eq(index_upsert(q8, "t", &c4, 1, "e", NULL, err, sizeof err), 0, "%s", err);
  r = search_in(q8, arena, "t", NULL, q, 3, 10);
  cr_assert_eq(r.rc, 0, "%s", r.err);
  cr_assert_eq(r.n, 3);
  for (size_t i = 0; i < r.n; i++)
    cr_assert_str_neq(r.h[i].chunk_id, "v3");
  cr_assert_str_eq(r.h[2].chunk_id, "v4");
  cr_assert_float_eq(r.h[2].dense, -0.995037, 1e-2);
  index_free(q8);
}
