/* test_scorer.c - the reranker's lexical scorer against hand-computed
 * values, and its ordering rules. */
#include "scorer.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static scorer_passage_t P(const char *text, double retrieval) {
  return (scorer_passage_t){text, strlen(text), retrieval};
}

static void rank(const char *query, scorer_passage_t *p, size_t n, scorer_result_t *out) {
  cr_assert_eq(scorer_rank(query, strlen(query), p, n, out), 0);
}

/* Query terms: solar panel effici. N = 4 candidates.
 * df: solar 3, panel 2, effici 2 -> w = ln(5/3.5), ln 2, ln 2. */
Test(scorer, full_formula_matches_hand_computation) {
  scorer_passage_t p[] = {
      P("Solar panel efficiency depends on temperature.", 0.5),
      P("Efficiency of a panel facing the solar noon", 1.0),
      P("Wind turbines", 0.0),
      P("The solar farm", 0.25),
  };
  scorer_result_t r[4];
  rank("solar panel efficiency", p, 4, r);

  cr_assert_eq(r[0].index, 0);
  cr_assert_eq(r[1].index, 1);
  cr_assert_eq(r[2].index, 3);
  cr_assert_eq(r[3].index, 2);

  /* P0: all terms, adjacent, as a phrase; retrieval (0.5 - 0) / 1 */
  cr_assert_float_eq(r[0].coverage, 1.0, 1e-9);
  cr_assert_float_eq(r[0].proximity, 1.0, 1e-9);
  cr_assert_float_eq(r[0].phrase, 1.0, 1e-9);
  cr_assert_float_eq(r[0].retrieval, 0.5, 1e-9);
  cr_assert_float_eq(r[0].score, 0.45 + 0.20 + 0.10 + 0.25 * 0.5, 1e-9);

  /* P1: effici(0) panel(1) . solar(3): window 4 over 3 terms -> 1/(1+1) */
  cr_assert_float_eq(r[1].coverage, 1.0, 1e-9);
  cr_assert_float_eq(r[1].proximity, 0.5, 1e-9);
  cr_assert_float_eq(r[1].phrase, 0.0, 1e-9);
  cr_assert_float_eq(r[1].score, 0.45 + 0.10 + 0.25, 1e-9);

  /* P3: only "solar": coverage ln(5/3.5) / (ln(5/3.5) + 2 ln 2), no proximity */
  double ws = log(5.0 / 3.5), wp = log(2.0);
  cr_assert_float_eq(r[2].coverage, ws / (ws + 2 * wp), 1e-9);
  cr_assert_float_eq(r[2].proximity, 0.0, 1e-9);
  cr_assert_float_eq(r[2].score, 0.45 * ws / (ws + 2 * wp) + 0.25 * 0.25, 1e-9);

  /* P2: nothing, lowest incoming score */
  cr_assert_float_eq(r[3].score, 0.0, 1e-12);
}

Test(scorer, rare_terms_weigh_more_than_common_ones) {
  /* "kafka" is in every candidate, "rebalance" in one: having the rare term
   * is worth more coverage than having the common one. */
  scorer_passage_t p[] = {
      P("kafka topics and partitions", 0),
      P("kafka consumer rebalance protocol", 0),
      P("kafka brokers", 0),
  };
  scorer_result_t r[3];
  rank("kafka rebalance", p, 3, r);
  cr_assert_eq(r[0].index, 1);
  double wk = log(4.0 / 3.5), wr = log(4.0 / 1.5);
  cr_assert_float_eq(r[0].coverage, 1.0, 1e-9);
  cr_assert_float_eq(r[1].coverage, wk / (wk + wr), 1e-9);
  cr_assert_lt(r[1].coverage, 0.2);
}

Test(scorer, proximity_rewards_terms_close_together) {
  scorer_passage_t p[] = {
      P("reset password link in the account settings page", 0),
      P("password rules: twelve characters. To reset, ask support", 0),
  };
  scorer_result_t r[2];
  rank("reset password", p, 2, r);
  cr_assert_eq(r[0].index, 0);
  /* P0: reset password adjacent -> 1. P1: password(0) rule charact twelv
   * ... reset: kept terms password rule twelv charact reset -> window 5 */
  cr_assert_float_eq(r[0].proximity, 1.0, 1e-9);
  cr_assert_float_eq(r[1].proximity, 1.0 / (1.0 + 5 - 2), 1e-9);
  /* the smallest window is found even when a term repeats */
  scorer_passage_t q[] = {P("alpha x x x beta x alpha", 0)};
  rank("alpha beta", q, 1, r);
  cr_assert_float_eq(r[0].proximity, 1.0 / (1.0 + 3 - 2), 1e-9);
}

Test(scorer, exact_phrase_gets_the_bonus) {
  scorer_passage_t p[] = {
      P("the error budget of the service", 0),
      P("the budget error of the service", 0),
  };
  scorer_result_t r[2];
  rank("error budget", p, 2, r);
  cr_assert_eq(r[0].index, 0);
  cr_assert_float_eq(r[0].phrase, 1.0, 1e-9);
  cr_assert_float_eq(r[1].phrase, 0.0, 1e-9);
  /* both adjacent: the phrase is the only difference */
  cr_assert_float_eq(r[0].score - r[1].score, 0.10, 1e-9);
  /* stopwords and inflection do not break a phrase */
  scorer_passage_t s[] = {P("Errors in the budgets", 0)};
  rank("error budget", s, 1, r);
  cr_assert_float_eq(r[0].phrase, 1.0, 1e-9);
}

Test(scorer, retrieval_score_is_min_max_normalised) {
  scorer_passage_t p[] = {P("x", 10), P("x", 30), P("x", 20), P("x", NAN)};
  scorer_result_t r[4];
  rank("nothing matches", p, 4, r);
  cr_assert_eq(r[0].index, 1);
  cr_assert_float_eq(r[0].retrieval, 1.0, 1e-12);
  cr_assert_eq(r[1].index, 2);
  cr_assert_float_eq(r[1].retrieval, 0.5, 1e-12);
  cr_assert_eq(r[2].index, 0);
  cr_assert_float_eq(r[2].retrieval, 0.0, 1e-12);
  cr_assert_eq(r[3].index, 3); /* NaN counts as the minimum, then order */
  cr_assert_float_eq(r[3].retrieval, 0.0, 1e-12);
}

Test(scorer, ties_keep_the_incoming_order) {
  scorer_passage_t p[] = {
      P("same text here", 1), P("other words", 1), P("same text here", 1),
      P("same text here", 1), P("other words", 1),
  };
  scorer_result_t r[5];
  rank("same text", p, 5, r);
  size_t want[] = {0, 2, 3, 1, 4};
  for (int i = 0; i < 5; i++)
    cr_assert_eq(r[i].index, want[i], "position %d", i);
  /* equal incoming scores normalise to 1 */
  cr_assert_float_eq(r[4].retrieval, 1.0, 1e-12);
}

Test(scorer, stopword_only_query_orders_by_retrieval) {
  scorer_passage_t p[] = {P("what is it", 0.1), P("it is what it is", 0.9)};
  scorer_result_t r[2];
  rank("what is it", p, 2, r);
  cr_assert_eq(r[0].index, 1);
  cr_assert_float_eq(r[0].coverage, 0.0, 1e-12);
  cr_assert_float_eq(r[0].score, 0.25, 1e-12);
}

Test(scorer, single_term_query) {
  scorer_passage_t p[] = {P("no match", 0), P("the invoice", 0)};
  scorer_result_t r[2];
  rank("invoices", p, 2, r);
  cr_assert_eq(r[0].index, 1);
  cr_assert_float_eq(r[0].proximity, 1.0, 1e-12);
  cr_assert_float_eq(r[0].phrase, 0.0, 1e-12);
  cr_assert_float_eq(r[0].coverage, 1.0, 1e-12);
}

Test(scorer, empty_input) {
  scorer_result_t r[1];
  cr_assert_eq(scorer_rank("q", 1, NULL, 0, r), 0);
  scorer_passage_t p[] = {{NULL, 0, 1.0}, P("", 2.0)};
  scorer_result_t r2[2];
  rank("anything", p, 2, r2);
  cr_assert_eq(r2[0].index, 1);
}
