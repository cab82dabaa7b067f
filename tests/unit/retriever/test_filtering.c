/* test_filtering.c - metadata filters applied inside the embedded engine:
 * a filter that passes 1 document of 10,000 still finds it in the lexical
 * list and in the dense list (HNSW graph, exact scan); a filter passing half
 * of them fills top_k with passing documents only; a filter can never reach
 * another tenant's chunks; document fields follow a document's new version;
 * and the whole path through the engine seam and search_run. */
#include "engine/engine.h"
#include "index.h"
#include "search.h"

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/filter.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NDOCS 10000
#define DIM 16
#define NEEDLE 7777

static index_t *idx;
static q_arena_t *arena;

static void vec_of(int i, float *v) {
  /* Deterministic pseudo-random vectors, all in one half-space. */
  uint32_t x = (uint32_t)i * 2654435761u + 12345u;
  for (int d = 0; d < DIM; d++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    v[d] = (float)(x % 1000) / 1000.0f + 0.01f;
  }
}

static void load(index_t *ix, const char *tenant, int ndocs, const char *prefix) {
  enum { BATCH = 1000 };
  static char ids[BATCH][32], docs[BATCH][32], metas[BATCH][96];
  static float vecs[BATCH][DIM];
  index_chunk_t c[BATCH];
  for (int base = 0; base < ndocs; base += BATCH) {
    int n = ndocs - base < BATCH ? ndocs - base : BATCH;
    for (int j = 0; j < n; j++) {
      int i = base + j;
      snprintf(ids[j], sizeof ids[j], "%s%d:1:0", prefix, i);
      snprintf(docs[j], sizeof docs[j], "%s%d", prefix, i);
      snprintf(metas[j], sizeof metas[j], "{\"team\":\"%s\",\"parity\":\"%s\",\"n\":%d}",
               i == NEEDLE ? "needle" : "hay", i % 2 ? "odd" : "even", i);
      vec_of(i, vecs[j]);
      c[j] = (index_chunk_t){
          .chunk_id = ids[j],
          .doc_id = docs[j],
          .title = "",
          .text = "quarterly report on revenue",
          .version = 1,
          .embedding = vecs[j],
          .dim = DIM,
          .content_type = i == NEEDLE ? "application/pdf" : "text/plain",
          .created_at = 1600000000 + i,
          .metadata = metas[j],
      };
    }
    char err[256] = "";
    cr_assert_eq(index_upsert(ix, tenant, c, (size_t)n, NULL, NULL, err, sizeof err), 0,
                 "%s", err);
  }
}

static void setup(void) {
  index_params_t p = {.ef_construction = 48, .exact_max = 64};
  idx = index_new(&p);
  arena = q_arena_new(0);
  cr_assert_not_null(idx);
  cr_assert_not_null(arena);
  load(idx, "t1", NDOCS, "d");
  /* another tenant whose documents would all pass the filters below */
  load(idx, "t2", 100, "other");
}

static void teardown(void) {
  index_free(idx);
  q_arena_free(arena);
}

static q_filter_t *filt(const char *json) {
  char err[256] = "";
  q_filter_t *f = NULL;
  cr_assert_eq(q_filter_parse(json, strlen(json), &f, err, sizeof err), 0, "%s", err);
  return f;
}

TestSuite(filtering, .init = setup, .fini = teardown, .timeout = 120);

Test(filtering, one_in_ten_thousand_is_found_lexically) {
  q_filter_t *f = filt("{\"field\":\"meta.team\",\"eq\":\"needle\"}");
  engine_cand_t *out;
  size_t n;
  char err[256];
  cr_assert_eq(index_lexical(idx, "t1", "revenue report", 14, 10, f, arena, &out, &n, err,
                             sizeof err),
               0, "%s", err);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(out[0].doc_id, "d7777");
  /* without the filter the same query fills the list with others */
  cr_assert_eq(index_lexical(idx, "t1", "revenue report", 14, 10, NULL, arena, &out, &n,
                             err, sizeof err),
               0);
  cr_assert_eq(n, 10);
  q_filter_free(f);
}

Test(filtering, one_in_ten_thousand_is_found_densely) {
  q_filter_t *f = filt("{\"field\":\"content_type\",\"eq\":\"application/pdf\"}");
  float q[DIM];
  vec_of(12, q); /* close to d12, not to the needle */
  engine_cand_t *out;
  size_t n;
  bool used, exact;
  char err[256];
  cr_assert_eq(index_dense(idx, "t1", q, DIM, 10, f, arena, &out, &n, &used, &exact, err,
                           sizeof err),
               0, "%s", err);
  cr_assert(used);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(out[0].doc_id, "d7777");
  q_filter_free(f);
}

Test(filtering, half_passing_fills_top_k_from_the_graph) {
  q_filter_t *f = filt("{\"and\":[{\"field\":\"meta.parity\",\"eq\":\"odd\"},"
                       "{\"not\":{\"field\":\"meta.n\",\"lt\":100}}]}");
  float q[DIM];
  vec_of(12, q);
  engine_cand_t *out;
  size_t n;
  bool used, exact;
  char err[256];
  cr_assert_eq(index_dense(idx, "t1", q, DIM, 20, f, arena, &out, &n, &used, &exact, err,
                           sizeof err),
               0, "%s", err);
  cr_assert_not(exact, "half the documents pass: the graph is walked");
  cr_assert_eq(n, 20);
  for (size_t i = 0; i < n; i++) {
    int num = atoi(out[i].doc_id + 1);
    cr_assert(num % 2 == 1 && num >= 100, "%s should not pass", out[i].doc_id);
  }
  cr_assert_eq(
      index_lexical(idx, "t1", "report", 6, 50, f, arena, &out, &n, err, sizeof err), 0);
  cr_assert_eq(n, 50);
  for (size_t i = 0; i < n; i++) {
    int num = atoi(out[i].doc_id + 1);
    cr_assert(num % 2 == 1 && num >= 100, "%s should not pass", out[i].doc_id);
  }
  q_filter_free(f);
}

Test(filtering, date_range_on_created_at) {
  /* created_at = 1600000000 + i: 2020-09-13T12:26:40Z + i seconds */
  q_filter_t *f = filt("{\"field\":\"created_at\",\"gte\":\"2020-09-13T12:26:40Z\","
                       "\"lt\":\"2020-09-13T12:26:45Z\"}");
  engine_cand_t *out;
  size_t n;
  char err[256];
  cr_assert_eq(
      index_lexical(idx, "t1", "report", 6, 50, f, arena, &out, &n, err, sizeof err), 0);
  cr_assert_eq(n, 5);
  for (size_t i = 0; i < n; i++)
    cr_assert_lt(atoi(out[i].doc_id + 1), 5, "%s", out[i].doc_id);
  q_filter_free(f);
}

Test(filtering, a_filter_never_reaches_another_tenant) {
  /* Every t2 document passes these; t1 must still see none of them. */
  const char *hostile[] = {
      "{\"field\":\"doc_id\",\"eq\":\"other5\"}",
      "{\"or\":[{\"field\":\"doc_id\",\"in\":[\"other1\",\"other2\"]},"
      "{\"not\":{\"field\":\"doc_id\",\"eq\":\"nothing\"}}]}",
      "{\"not\":{\"field\":\"meta.team\",\"eq\":\"impossible\"}}",
  };
  float q[DIM];
  vec_of(5, q); /* t2's other5 has exactly this vector */
  for (size_t h = 0; h < sizeof hostile / sizeof hostile[0]; h++) {
    q_filter_t *f = filt(hostile[h]);
    engine_cand_t *out;
    size_t n;
    bool used, exact;
    char err[256];
    cr_assert_eq(
        index_lexical(idx, "t1", "report", 6, 1000, f, arena, &out, &n, err, sizeof err),
        0);
    for (size_t i = 0; i < n; i++)
      cr_assert(strncmp(out[i].doc_id, "other", 5) != 0, "%s leaked", out[i].doc_id);
    cr_assert_eq(index_dense(idx, "t1", q, DIM, 50, f, arena, &out, &n, &used, &exact,
                             err, sizeof err),
                 0);
    for (size_t i = 0; i < n; i++)
      cr_assert(strncmp(out[i].doc_id, "other", 5) != 0, "%s leaked", out[i].doc_id);
    /* and t2 still finds its own */
    cr_assert_eq(
        index_lexical(idx, "t2", "report", 6, 1000, f, arena, &out, &n, err, sizeof err),
        0);
    cr_assert_gt(n, 0);
    for (size_t i = 0; i < n; i++)
      cr_assert(strncmp(out[i].doc_id, "other", 5) == 0, "%s leaked", out[i].doc_id);
    q_filter_free(f);
  }
}

Test(filtering, new_version_replaces_document_fields) {
  float v[DIM];
  vec_of(3, v);
  index_chunk_t c = {.chunk_id = "d3:2:0",
                     .doc_id = "d3",
                     .title = "",
                     .text = "quarterly report on revenue",
                     .version = 2,
                     .embedding = v,
                     .dim = DIM,
                     .content_type = "text/html",
                     .metadata = "{\"team\":\"moved\"}"};
  char err[256] = "";
  size_t retired;
  cr_assert_eq(index_upsert(idx, "t1", &c, 1, "d3", &retired, err, sizeof err), 0, "%s",
               err);
  cr_assert_eq(retired, 1);
  q_filter_t *f = filt("{\"field\":\"meta.team\",\"eq\":\"moved\"}");
  engine_cand_t *out;
  size_t n;
  cr_assert_eq(
      index_lexical(idx, "t1", "report", 6, 10, f, arena, &out, &n, err, sizeof err), 0);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(out[0].chunk_id, "d3:2:0");
  q_filter_free(f);
  f = filt("{\"field\":\"created_at\",\"gte\":0}"); /* version 2 has no date */
  cr_assert_eq(
      index_lexical(idx, "t1", "report", 6, 10000, f, arena, &out, &n, err, sizeof err),
      0);
  cr_assert_eq(n, NDOCS - 1);
  q_filter_free(f);
}

Test(filtering, through_the_engine_seam_and_search_run) {
  engine_t e;
  char err[256] = "";
  engine_config_t cfg = {.exact_max = 64};
  cr_assert_eq(engine_open_ops(&e, &engine_embedded_ops, &cfg, err, sizeof err), 0, "%s",
               err);
  engine_chunk_t c[3];
  float v[3][DIM];
  const char *ids[] = {"a:1:0", "b:1:0", "c:1:0"}, *docs[] = {"a", "b", "c"};
  const char *metas[] = {"{\"team\":\"legal\"}", "{\"team\":\"hr\"}",
                         "{\"team\":\"eng\"}"};
  for (int i = 0; i < 3; i++) {
    vec_of(i, v[i]);
    c[i] = (engine_chunk_t){.chunk_id = ids[i],
                            .doc_id = docs[i],
                            .title = "",
                            .text = "policy handbook",
                            .embedding = v[i],
                            .dim = DIM,
                            .metadata = metas[i]};
  }
  size_t retired;
  cr_assert_eq(e.ops->upsert(e.st, "t", c, 3, NULL, &retired, err, sizeof err), 0, "%s",
               err);
  q_filter_t *f = filt("{\"not\":{\"field\":\"meta.team\",\"in\":[\"legal\",\"hr\"]}}");
  search_policy_t pol = {0};
  search_req_t rq = {.tenant = "t",
                     .text = "policy",
                     .text_len = 6,
                     .embedding = v[0],
                     .dim = DIM,
                     .top_k = 10,
                     .filter = f};
  search_out_t out;
  cr_assert_eq(search_run(&e, &pol, &rq, arena, &out, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(out.mode, "hybrid");
  cr_assert_eq(out.n, 1);
  cr_assert_str_eq(out.hits[0].cand->doc_id, "c");
  q_filter_free(f);
  engine_close(&e);
}
