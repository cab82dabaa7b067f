/* test_fusion.c - Reciprocal Rank Fusion. */
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
