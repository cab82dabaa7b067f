/* test_fusion.c - rank and score fusion, and per-document aggregation. */
#include "fusion.h"

#include <criterion/criterion.h>
#include <string.h>

Test(fusion, score_is_the_sum_of_reciprocal_ranks) {
  cr_assert_float_eq(fusion_rrf_score(1, 0, 60), 1.0 / 61, 1e-15);
  cr_assert_float_eq(fusion_rrf_score(0, 3, 60), 1.0 / 63, 1e-15);
  cr_assert_float_eq(fusion_rrf_score(2, 5, 60), 1.0 / 62 + 1.0 / 65, 1e-15);
  cr_assert_float_eq(fusion_rrf_score(0, 0, 60), 0.0, 1e-15);
  cr_assert_float_eq(fusion_rrf_score(1, 1, 1), 1.0, 1e-15);
}

Test(fusion, agreement_beats_a_single_first_place) {
  fusion_item_t it[] = {
      {.lexical_rank = 1, .tiebreak = "only-lexical"},
      {.lexical_rank = 3, .dense_rank = 2, .tiebreak = "both"},
      {.dense_rank = 1, .tiebreak = "only-dense"},
      {.lexical_rank = 2, .dense_rank = 40, .tiebreak = "far"},
  };
  fusion_rrf(it, 4, 0); /* 0: the default k = 60 */
  cr_assert_str_eq(it[0].tiebreak, "both");
  cr_assert_str_eq(it[1].tiebreak, "far");
  cr_assert_float_eq(it[0].fused, 1.0 / 63 + 1.0 / 62, 1e-15);
  cr_assert_float_eq(it[1].fused, 1.0 / 62 + 1.0 / 100, 1e-15);
  /* the two single first places tie: the tiebreak string decides */
  cr_assert_str_eq(it[2].tiebreak, "only-dense");
  cr_assert_str_eq(it[3].tiebreak, "only-lexical");
  cr_assert_float_eq(it[2].fused, it[3].fused, 1e-15);
}

Test(fusion, equal_sums_prefer_the_better_single_rank) {
  /* k = 1: ranks (2, 2) give 1/3 + 1/3, more than a lone first place (1/2) */
  fusion_item_t it[] = {
      {.lexical_rank = 2, .dense_rank = 2, .tiebreak = "a"},
      {.lexical_rank = 1, .tiebreak = "b"},
  };
  fusion_rrf(it, 2, 1);
  cr_assert_str_eq(it[0].tiebreak, "a");

  /* k = 2: ranks (4, 4) give 1/6 + 1/6, exactly a lone first place's 1/3 */
  fusion_item_t t2[] = {
      {.lexical_rank = 4, .dense_rank = 4, .tiebreak = "a"},
      {.dense_rank = 1, .tiebreak = "b"},
  };
  fusion_rrf(t2, 2, 2);
  cr_assert_float_eq(t2[0].fused, t2[1].fused, 1e-15);
  cr_assert_str_eq(t2[0].tiebreak, "b", "the first place wins the tie");
}

Test(fusion, payload_travels_with_its_item) {
  int payload[3] = {10, 20, 30};
  fusion_item_t it[] = {
      {.lexical_rank = 3, .ud = &payload[0]},
      {.lexical_rank = 1, .ud = &payload[1]},
      {.lexical_rank = 2, .ud = &payload[2]},
  };
  fusion_rrf(it, 3, 60);
  cr_assert_eq(*(int *)it[0].ud, 20);
  cr_assert_eq(*(int *)it[1].ud, 30);
  cr_assert_eq(*(int *)it[2].ud, 10);
  fusion_rrf(NULL, 0, 60); /* nothing to do */
}

Test(fusion, weights_scale_each_list) {
  cr_assert_float_eq(fusion_wrrf_score(2, 5, 60, 1.0, 0.5), 1.0 / 62 + 0.5 / 65, 1e-15);
  cr_assert_float_eq(fusion_wrrf_score(0, 1, 60, 1.0, 0.05), 0.05 / 61, 1e-15);
  /* With a light dense weight, BM25's order wins where the lists disagree,
   * and a dense-only hit ranks below every lexical hit of a 100-deep list. */
  fusion_item_t it[] = {
      {.lexical_rank = 2, .dense_rank = 1, .tiebreak = "a"},
      {.lexical_rank = 1, .dense_rank = 30, .tiebreak = "b"},
      {.lexical_rank = 0, .dense_rank = 1, .tiebreak = "c"},
      {.lexical_rank = 100, .dense_rank = 0, .tiebreak = "d"},
  };
  fusion_wrrf(it, 4, 60, 1.0, 0.05);
  cr_assert_str_eq(it[0].tiebreak, "b");
  cr_assert_str_eq(it[1].tiebreak, "a");
  cr_assert_str_eq(it[2].tiebreak, "d");
  cr_assert_str_eq(it[3].tiebreak, "c");
  /* Equal weights are plain RRF: agreement wins. */
  fusion_wrrf(it, 4, 60, 1.0, 1.0);
  cr_assert_str_eq(it[0].tiebreak, "a");
}

/* ---- fusion_merge over candidate lists ------------------------------------- */

static engine_cand_t cand(const char *id, const char *doc, double score) {
  return (engine_cand_t){
      .chunk_id = id, .doc_id = doc, .title = "", .text = "", .score = score};
}

/* Lexical: a 9, b 6, c 3. Dense: d 0.9, b 0.5, a 0.1. */
static const engine_cand_t *lex_list(void) {
  static engine_cand_t l[3];
  l[0] = cand("a", "d1", 9);
  l[1] = cand("b", "d1", 6);
  l[2] = cand("c", "d2", 3);
  return l;
}

static const engine_cand_t *den_list(void) {
  static engine_cand_t d[3];
  d[0] = cand("d", "d3", 0.9);
  d[1] = cand("b", "d1", 0.5);
  d[2] = cand("a", "d1", 0.1);
  return d;
}

static const char *order(const fusion_hit_t *h, size_t n) {
  static char buf[64];
  size_t w = 0;
  for (size_t i = 0; i < n && w + 2 < sizeof buf; i++)
    buf[w++] = h[i].cand->chunk_id[0];
  buf[w] = '\0';
  return buf;
}

Test(fusion, merge_rrf_unions_the_lists_by_chunk_id) {
  q_arena_t *a = q_arena_new(0);
  fusion_hit_t *h;
  size_t n;
  fusion_params_t p = {FUSION_RRF, 60, 1.0, 1.0};
  cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
  cr_assert_eq(n, 4);
  /* a: 1/61 + 1/63 (0.032266) just beats b: 2/62 (0.032258); d: 1/61; c: 1/63 */
  cr_assert_str_eq(order(h, n), "abdc");
  cr_assert_float_eq(h[0].fused, 1.0 / 61 + 1.0 / 63, 1e-15);
  cr_assert_float_eq(h[1].fused, 2.0 / 62, 1e-15);
  /* raw scores and ranks of both lists travel with each hit */
  cr_assert_float_eq(h[1].lexical, 6, 1e-15);
  cr_assert_float_eq(h[1].dense, 0.5, 1e-15);
  cr_assert_eq(h[2].lexical_rank, 0);
  cr_assert_eq(h[2].dense_rank, 1);
  /* k is configurable: with k = 1, a 1/2 + 1/4, b 1/3 + 1/3, d 1/2, c 1/4 */
  p.k = 1;
  cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
  cr_assert_str_eq(order(h, n), "abdc");
  cr_assert_float_eq(h[0].fused, 0.75, 1e-15);
  cr_assert_float_eq(h[1].fused, 2.0 / 3, 1e-15);
  cr_assert_float_eq(h[2].fused, 0.5, 1e-15);
  q_arena_free(a);
}

Test(fusion, merge_weighted_normalises_each_list) {
  q_arena_t *a = q_arena_new(0);
  fusion_hit_t *h;
  size_t n;
  fusion_params_t p = {FUSION_WEIGHTED, 0, 1.0, 0.5};
  cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
  /* lexical norm: a 1, b 0.5, c 0; dense norm: d 1, b 0.5, a 0.
   * a 1 + 0 = 1; b 0.5 + 0.25 = 0.75; d 0.5; c 0 */
  cr_assert_str_eq(order(h, n), "abdc");
  cr_assert_float_eq(h[0].fused, 1.0, 1e-12);
  cr_assert_float_eq(h[1].fused, 0.75, 1e-12);
  cr_assert_float_eq(h[2].fused, 0.5, 1e-12);
  /* a heavy dense weight turns it round */
  p.w_dense = 4;
  cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
  cr_assert_str_eq(order(h, n), "dbac"); /* d 4, b 2.5, a 1, c 0 */
  q_arena_free(a);
}

Test(fusion, zero_dense_weight_is_the_lexical_ranking_then_dense_only_hits) {
  q_arena_t *a = q_arena_new(0);
  fusion_hit_t *h;
  size_t n;
  for (int m = 0; m < 2; m++) {
    fusion_params_t p = {m ? FUSION_WEIGHTED : FUSION_RRF, 0, 1.0, 0.0};
    cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
    cr_assert_str_eq(order(h, n), "abcd", "method %d", m);
  }
  /* one list alone keeps its order */
  fusion_params_t p = {FUSION_RRF, 0, 1.0, 1.0};
  cr_assert_eq(fusion_merge(NULL, 0, den_list(), 3, &p, a, &h, &n), 0);
  cr_assert_str_eq(order(h, n), "dba");
  cr_assert_eq(fusion_merge(NULL, 0, NULL, 0, &p, a, &h, &n), 0);
  cr_assert_eq(n, 0);
  q_arena_free(a);
}

Test(fusion, cap_per_doc_keeps_each_documents_best) {
  q_arena_t *a = q_arena_new(0);
  fusion_hit_t *h;
  size_t n;
  fusion_params_t p = {FUSION_RRF, 0, 1.0, 1.0};
  cr_assert_eq(fusion_merge(lex_list(), 3, den_list(), 3, &p, a, &h, &n), 0);
  /* a b d c: a and b are both d1 */
  size_t m = fusion_cap_per_doc(h, n, 1);
  cr_assert_eq(m, 3);
  cr_assert_str_eq(order(h, m), "adc");
  cr_assert_eq(fusion_cap_per_doc(h, m, 0), 3);
  q_arena_free(a);
}
