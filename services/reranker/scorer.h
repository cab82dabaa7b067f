/* scorer.h - the reranker's deterministic lexical scorer.
 *
 * Scores each candidate passage against the query from four signals in
 * [0, 1] (query-term coverage, proximity, exact phrase, normalised
 * retrieval score) combined with fixed weights; the formula is explained at
 * the top of scorer.c. Same input, same output: no randomness, no model. */
#ifndef QUARRY_RERANKER_SCORER_H
#define QUARRY_RERANKER_SCORER_H

#include <stddef.h>
#include "quarry/error.h"

/* Weights of the four signals; they sum to 1, so scores lie in [0, 1]. */
#define Q_SCORER_W_COVERAGE 0.45
#define Q_SCORER_W_PROXIMITY 0.20
#define Q_SCORER_W_PHRASE 0.10
#define Q_SCORER_W_RETRIEVAL 0.25

/* One candidate (borrowed). */
typedef struct scorer_passage {
  const char *text;
  size_t len;
  double retrieval; /* the score the retriever gave it (any scale) */
} scorer_passage_t;

/* One scored candidate with the signals that made its score. */
typedef struct scorer_result {
  size_t index;     /* position in the input */
  double score;     /* the combined score */
  double coverage;  /* idf-weighted share of distinct query terms present */
  double proximity; /* 1 / (1 + window - matched), see scorer.c */
  double phrase;    /* 1 when the whole query occurs as a phrase */
  double retrieval; /* min-max normalised incoming score */
} scorer_result_t;

/* Scores passages[0..n) for query[0..qlen) and writes n results into out,
 * best first; equal scores keep the input order. 0 or Q_ENOMEM.
 * Thread-safe (allocates its own working memory). */
q_err_t scorer_rank(const char *query, size_t qlen, const scorer_passage_t *passages,
                    size_t n, scorer_result_t *out);

#endif
