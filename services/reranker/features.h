/* features.h - what the reranker knows about a (query, passage) pair.
 *
 * For a query and its candidate passages (the retriever's list), one
 * vector of FEATURES_N numbers per passage, computed over the candidate
 * set: retrieval scores as they came (normalised per query), BM25 of the
 * body and of the title with statistics from the candidates, query-term
 * coverage, proximity, phrase, length and rank. The definitions are at the
 * top of features.c and in docs/retrieval.md ("The reranker"). Same input,
 * same output. The feature model (model.h) is a weighted sum of them. */
#ifndef QUARRY_RERANKER_FEATURES_H
#define QUARRY_RERANKER_FEATURES_H

#include <stddef.h>
#include "quarry/error.h"

/* X(ENUM, "name"): the features in vector order. The names are those of
 * the weights file (model.h) and of RerankResponse.feature_names; never
 * reorder or rename one without a new weights file version. */
#define FEATURES_LIST(X)                                                                 \
  X(RETRIEVAL, "retrieval")                                                              \
  X(RANK, "rank")                                                                        \
  X(LEXICAL, "lexical")                                                                  \
  X(DENSE, "dense")                                                                      \
  X(BM25_BODY, "bm25_body")                                                              \
  X(BM25_TITLE, "bm25_title")                                                            \
  X(COVERAGE, "coverage")                                                                \
  X(PROXIMITY, "proximity")                                                              \
  X(PHRASE, "phrase")                                                                    \
  X(LENGTH, "length")

enum {
#define FEATURES_ENUM(e, name) FEAT_##e,
  FEATURES_LIST(FEATURES_ENUM)
#undef FEATURES_ENUM
      FEATURES_N
};

/* The feature names, by index. */
extern const char *const features_names[FEATURES_N];

/* Index of the feature called name[0..len), or FEATURES_NONE. */
#define FEATURES_NONE (-1)
int features_find(const char *name, size_t len);

/* One candidate (borrowed), in the retriever's order. */
typedef struct features_passage {
  const char *title; /* may be NULL */
  size_t title_len;
  const char *text; /* may be NULL */
  size_t len;
  double score;   /* the retriever's (fused) score, any scale */
  double lexical; /* its BM25 score in the index; 0 when not matched */
  double dense;   /* its cosine similarity; 0 when no embedding */
} features_passage_t;

/* Computes the features of passages[0..n) for query[0..qlen) into
 * out[i * FEATURES_N + f] (n * FEATURES_N doubles, caller's). Every value
 * is finite. 0 or Q_ENOMEM. Thread-safe (allocates its own working
 * memory). */
q_err_t features_compute(const char *query, size_t qlen,
                         const features_passage_t *passages, size_t n, double *out);

#endif
