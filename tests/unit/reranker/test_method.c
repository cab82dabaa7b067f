/* test_method.c - the table of reranking methods: lookup, what each does,
 * and the one tie rule. */
#include "method.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static char err[256];

Test(method, lookup_by_exact_name) {
  cr_assert_not_null(method_find("features", 8));
  cr_assert_not_null(method_find("none", 4));
  cr_assert_str_eq(method_find("none", 4)->name, "none");
  cr_assert_null(method_find("featureS", 8));
  cr_assert_null(method_find("non", 3));
  cr_assert_null(method_find("nonex", 5));
  cr_assert_null(method_find("", 0));
  cr_assert(method_find("features", 8)->needs_features);
  cr_assert_not(method_find("none", 4)->needs_features);
}

Test(method, none_keeps_the_incoming_order_whatever_the_scores) {
  features_passage_t p[3] = {{.score = 0.1}, {.score = 0.9}, {.score = NAN}};
  method_input_t in = {"q", 1, p, 3, NULL};
  method_result_t out[3];
  reranker_t r = {0};
  cr_assert_eq(method_find("none", 4)->rank(&r, &in, out, err, sizeof err), 0);
  for (size_t i = 0; i < 3; i++)
    cr_assert_eq(out[i].index, i);
  cr_assert_float_eq(out[1].score, 0.9, 1e-12, "the incoming score is reported");
}

Test(method, features_ranks_by_the_weighted_sum) {
  reranker_t r = {0};
  r.model.w[FEAT_COVERAGE] = 1.0;
  r.model.w[FEAT_RANK] = -0.5;
  double x[3 * FEATURES_N] = {0};
  x[0 * FEATURES_N + FEAT_COVERAGE] = 0.2;
  x[0 * FEATURES_N + FEAT_RANK] = 1.0; /* 0.2 - 0.5 = -0.3 */
  x[1 * FEATURES_N + FEAT_COVERAGE] = 1.0;
  x[1 * FEATURES_N + FEAT_RANK] = 0.5; /* 0.75 */
  x[2 * FEATURES_N + FEAT_COVERAGE] = 0.5;
  x[2 * FEATURES_N + FEAT_RANK] = 0.0; /* 0.5 */
  features_passage_t p[3] = {{0}};
  method_input_t in = {"q", 1, p, 3, x};
  method_result_t out[3];
  cr_assert_eq(method_find("features", 8)->rank(&r, &in, out, err, sizeof err), 0);
  cr_assert_eq(out[0].index, 1);
  cr_assert_eq(out[1].index, 2);
  cr_assert_eq(out[2].index, 0);
  cr_assert_float_eq(out[0].score, 0.75, 1e-12);
  cr_assert_float_eq(out[2].score, -0.3, 1e-12);
}

Test(method, ties_keep_the_incoming_order_and_nan_goes_last) {
  method_result_t r[] = {{0, 1.0}, {1, NAN}, {2, 2.0}, {3, 1.0}, {4, 2.0}, {5, 1.0}};
  method_sort(r, 6);
  size_t want[] = {2, 4, 0, 3, 5, 1};
  for (int i = 0; i < 6; i++)
    cr_assert_eq(r[i].index, want[i], "position %d", i);
  method_sort(r, 0);
}
