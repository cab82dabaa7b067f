/* test_features.c - the reranker's features against hand-computed values
 * (definitions at the top of features.c). */
#include "features.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static features_passage_t P(const char *text, double score) {
  return (features_passage_t){.text = text, .len = strlen(text), .score = score};
}

static features_passage_t T(const char *title, const char *text) {
  return (features_passage_t){
      .title = title, .title_len = strlen(title), .text = text, .len = strlen(text)};
}

/* x[i][f] for n passages. */
#define X(x, i, f) ((x)[(i)*FEATURES_N + FEAT_##f])

static void compute(const char *query, features_passage_t *p, size_t n, double *x) {
  cr_assert_eq(features_compute(query, strlen(query), p, n, x), 0);
  for (size_t i = 0; i < n * FEATURES_N; i++)
    cr_assert(isfinite(x[i]), "feature %s of passage %zu is %g",
              features_names[i % FEATURES_N], i / FEATURES_N, x[i]);
}

Test(features, names_are_the_weights_file_keys) {
  cr_assert_eq(FEATURES_N, 10);
  cr_assert_str_eq(features_names[FEAT_RETRIEVAL], "retrieval");
  cr_assert_str_eq(features_names[FEAT_BM25_TITLE], "bm25_title");
  cr_assert_str_eq(features_names[FEAT_LENGTH], "length");
  cr_assert_eq(features_find("proximity", 9), FEAT_PROXIMITY);
  cr_assert_eq(features_find("proximit", 8), FEATURES_NONE);
  cr_assert_eq(features_find("proximityx", 10), FEATURES_NONE);
}

/* Query terms: solar panel effici. N = 4 candidates.
 * df: solar 3, panel 2, effici 2 -> w = ln(5/3.5), ln 2, ln 2. */
Test(features, coverage_proximity_phrase_match_hand_computation) {
  features_passage_t p[] = {
      P("Solar panel efficiency depends on temperature.", 0.5),
      P("Efficiency of a panel facing the solar noon", 1.0),
      P("Wind turbines", 0.0),
      P("The solar farm", 0.25),
  };
  double x[4 * FEATURES_N];
  compute("solar panel efficiency", p, 4, x);

  /* P0: all terms, adjacent, as a phrase */
  cr_assert_float_eq(X(x, 0, COVERAGE), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 0, PROXIMITY), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 0, PHRASE), 1.0, 1e-9);
  /* P1: effici(0) panel(1) . solar(3): window 4 over 3 terms -> 1/(1+1) */
  cr_assert_float_eq(X(x, 1, COVERAGE), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 1, PROXIMITY), 0.5, 1e-9);
  cr_assert_float_eq(X(x, 1, PHRASE), 0.0, 1e-9);
  /* P3: only "solar": coverage ln(5/3.5) / (ln(5/3.5) + 2 ln 2), no proximity */
  double ws = log(5.0 / 3.5), wp = log(2.0);
  cr_assert_float_eq(X(x, 3, COVERAGE), ws / (ws + 2 * wp), 1e-9);
  cr_assert_float_eq(X(x, 3, PROXIMITY), 0.0, 1e-9);
  /* P2: nothing */
  cr_assert_float_eq(X(x, 2, COVERAGE), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 2, BM25_BODY), 0.0, 1e-12);
  /* length: kept terms (solar panel effici depend temperatur = 5) */
  cr_assert_float_eq(X(x, 0, LENGTH), log(6.0), 1e-12);
  cr_assert_float_eq(X(x, 2, LENGTH), log(3.0), 1e-12);
}

Test(features, rare_terms_weigh_more_than_common_ones) {
  /* "kafka" is in every candidate, "rebalance" in one. */
  features_passage_t p[] = {
      P("kafka topics and partitions", 0),
      P("kafka consumer rebalance protocol", 0),
      P("kafka brokers", 0),
  };
  double x[3 * FEATURES_N];
  compute("kafka rebalance", p, 3, x);
  double wk = log(4.0 / 3.5), wr = log(4.0 / 1.5);
  cr_assert_float_eq(X(x, 1, COVERAGE), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 0, COVERAGE), wk / (wk + wr), 1e-9);
  /* BM25 over the candidates: P1 is the best, so 1; the others have
   * only kafka, idf ln(1 + 0.5/3.5) each. */
  cr_assert_float_eq(X(x, 1, BM25_BODY), 1.0, 1e-12);
  cr_assert_lt(X(x, 0, BM25_BODY), 0.2);
}

Test(features, bm25_of_the_body_matches_hand_computation) {
  /* Query "alpha" (one term). Kept terms: P0 "alpha beta" (len 2, tf 1),
   * P1 "alpha alpha gamma delta" (len 4, tf 2), P2 "beta" (len 1).
   * avglen 7/3, df 2, N 3: idf = ln(1 + 1.5/2.5). */
  features_passage_t p[] = {P("alpha beta", 0), P("alpha alpha gamma delta", 0),
                            P("beta", 0)};
  double x[3 * FEATURES_N];
  compute("alpha", p, 3, x);
  double idf = log(1.0 + 1.5 / 2.5), avg = 7.0 / 3.0;
  double s0 = idf * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / avg));
  double s1 = idf * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 4 / avg));
  double hi = fmax(s0, s1);
  cr_assert_float_eq(X(x, 0, BM25_BODY), s0 / hi, 1e-12);
  cr_assert_float_eq(X(x, 1, BM25_BODY), s1 / hi, 1e-12);
  cr_assert_float_eq(X(x, 2, BM25_BODY), 0.0, 1e-12);
}

Test(features, bm25_of_the_title_is_its_own_field) {
  features_passage_t p[] = {
      T("Vitamin D and bone density", "A trial of supplements in adults."),
      T("Sleep and memory", "Vitamin D levels were measured."),
      T("", "nothing here"),
  };
  double x[3 * FEATURES_N];
  compute("vitamin d bone", p, 3, x);
  cr_assert_float_eq(X(x, 0, BM25_TITLE), 1.0, 1e-12, "the only title with the terms");
  cr_assert_float_eq(X(x, 1, BM25_TITLE), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 0, BM25_BODY), 0.0, 1e-12, "its body has none of them");
  cr_assert_float_eq(X(x, 1, BM25_BODY), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 2, BM25_TITLE), 0.0, 1e-12);
}

Test(features, proximity_rewards_terms_close_together) {
  features_passage_t p[] = {
      P("reset password link in the account settings page", 0),
      P("password rules: twelve characters. To reset, ask support", 0),
  };
  double x[2 * FEATURES_N];
  compute("reset password", p, 2, x);
  /* P1: kept terms password rule twelv charact reset -> window 5 */
  cr_assert_float_eq(X(x, 0, PROXIMITY), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 1, PROXIMITY), 1.0 / (1.0 + 5 - 2), 1e-9);
  /* the smallest window is found even when a term repeats */
  features_passage_t q[] = {P("alpha x x x beta x alpha", 0)};
  compute("alpha beta", q, 1, x);
  cr_assert_float_eq(X(x, 0, PROXIMITY), 1.0 / (1.0 + 3 - 2), 1e-9);
}

Test(features, exact_phrase) {
  features_passage_t p[] = {
      P("the error budget of the service", 0),
      P("the budget error of the service", 0),
  };
  double x[2 * FEATURES_N];
  compute("error budget", p, 2, x);
  cr_assert_float_eq(X(x, 0, PHRASE), 1.0, 1e-9);
  cr_assert_float_eq(X(x, 1, PHRASE), 0.0, 1e-9);
  /* stopwords and inflection do not break a phrase */
  features_passage_t s[] = {P("Errors in the budgets", 0)};
  compute("error budget", s, 1, x);
  cr_assert_float_eq(X(x, 0, PHRASE), 1.0, 1e-9);
}

Test(features, incoming_scores_are_normalised_per_query) {
  features_passage_t p[] = {P("x", 10), P("x", 30), P("x", 20), P("x", NAN)};
  p[0].lexical = 4.0;
  p[1].lexical = 8.0;
  p[2].lexical = 0.0; /* not matched lexically */
  p[3].lexical = INFINITY;
  p[0].dense = 0.2;
  p[1].dense = 0.6;
  p[2].dense = 0.4;
  p[3].dense = NAN;
  double x[4 * FEATURES_N];
  compute("nothing matches", p, 4, x);
  cr_assert_float_eq(X(x, 1, RETRIEVAL), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 2, RETRIEVAL), 0.5, 1e-12);
  cr_assert_float_eq(X(x, 0, RETRIEVAL), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 3, RETRIEVAL), 0.0, 1e-12, "NaN counts as the minimum");
  cr_assert_float_eq(X(x, 0, LEXICAL), 0.5, 1e-12, "relative to the best");
  cr_assert_float_eq(X(x, 1, LEXICAL), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 2, LEXICAL), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 3, LEXICAL), 0.0, 1e-12, "non-finite counts for nothing");
  cr_assert_float_eq(X(x, 0, DENSE), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 2, DENSE), 0.5, 1e-12);
  cr_assert_float_eq(X(x, 1, DENSE), 1.0, 1e-12);
  /* rank: the DCG discount of the position */
  cr_assert_float_eq(X(x, 0, RANK), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 1, RANK), 1.0 / log2(3.0), 1e-12);
  cr_assert_float_eq(X(x, 3, RANK), 1.0 / log2(5.0), 1e-12);
}

Test(features, equal_scores) {
  /* equal retrieval scores: 1 for all; equal dense scores (no embedding):
   * 0 for all; no lexical match anywhere: 0 for all */
  features_passage_t p[] = {P("a", 1), P("b", 1)};
  double x[2 * FEATURES_N];
  compute("a", p, 2, x);
  cr_assert_float_eq(X(x, 1, RETRIEVAL), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 1, DENSE), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 1, LEXICAL), 0.0, 1e-12);
}

Test(features, stopword_only_query_has_no_term_features) {
  features_passage_t p[] = {P("what is it", 0.1), P("it is what it is", 0.9)};
  double x[2 * FEATURES_N];
  compute("what is it", p, 2, x);
  for (int i = 0; i < 2; i++) {
    cr_assert_float_eq(X(x, i, COVERAGE), 0.0, 1e-12);
    cr_assert_float_eq(X(x, i, BM25_BODY), 0.0, 1e-12);
    cr_assert_float_eq(X(x, i, PROXIMITY), 0.0, 1e-12);
  }
  cr_assert_float_eq(X(x, 1, RETRIEVAL), 1.0, 1e-12);
}

Test(features, single_term_query) {
  features_passage_t p[] = {P("no match", 0), P("the invoice", 0)};
  double x[2 * FEATURES_N];
  compute("invoices", p, 2, x);
  cr_assert_float_eq(X(x, 1, PROXIMITY), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 1, PHRASE), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 1, COVERAGE), 1.0, 1e-12);
  cr_assert_float_eq(X(x, 0, PROXIMITY), 0.0, 1e-12);
}

Test(features, empty_input) {
  double x[2 * FEATURES_N];
  cr_assert_eq(features_compute("q", 1, NULL, 0, x), 0);
  features_passage_t p[] = {{0}, P("", 2.0)};
  p[0].score = 1.0;
  compute("anything", p, 2, x);
  cr_assert_float_eq(X(x, 0, LENGTH), 0.0, 1e-12);
  cr_assert_float_eq(X(x, 1, RETRIEVAL), 1.0, 1e-12);
  /* an empty query: nothing matches, nothing fails */
  compute("", p, 2, x);
  cr_assert_float_eq(X(x, 0, COVERAGE), 0.0, 1e-12);
}
