/* method.h - the reranker's methods: a table of ways to order candidates,
 * one chosen at start (QUARRY_RERANK_METHOD), any of them by name per
 * request (RerankRequest.method). provider.h's pattern.
 *
 *   features  the feature model: a weighted sum of features.h's features
 *             with the weights of model.h's file
 *   none      the incoming (retrieval) order, unchanged
 *   remote    a cross-encoder behind the rerank APIs of the providers file
 *             (remote.h); when every provider fails the request is served
 *             by none and the reply names none (falls_back)
 *
 * Which default the measurements justify is in docs/retrieval.md ("The
 * reranker"). */
#ifndef QUARRY_RERANKER_METHOD_H
#define QUARRY_RERANKER_METHOD_H

#include <stdbool.h>
#include <stddef.h>

#include "features.h"
#include "model.h"
#include "quarry/error.h"

typedef struct method method_t;
struct remote; /* remote.h */

/* The service's state, built by main.c and read (never written) by
 * every request: thread-safe by being immutable. */
typedef struct reranker {
  const method_t *method; /* the configured default */
  rerank_model_t model;   /* the feature model's weights */
  struct remote *remote;  /* the rerank APIs (remote.h); NULL: none configured */
} reranker_t;

/* One request's candidates, in the incoming order. */
typedef struct method_input {
  const char *query;
  size_t qlen;
  const features_passage_t *passages;
  size_t n;
  const double *features; /* n * FEATURES_N (features.h); set when the method
                             needs_features */
} method_input_t;

/* One ranked candidate. */
typedef struct method_result {
  size_t index; /* position in the input */
  double score; /* the method's score, reported as the passage's score */
} method_result_t;

struct method {
  const char *name;
  bool needs_features;
  /* When rank fails with Q_EUNAVAIL (a dependency is down) the request is
   * served by the none method instead of failing. */
  bool falls_back;
  /* Writes all in->n candidates into out, best first. 0, or an error
   * with the reason in err (the request fails with it). */
  q_err_t (*rank)(const reranker_t *r, const method_input_t *in, method_result_t *out,
                  char *err, size_t errlen);
};

/* The methods, in the order docs/retrieval.md lists them. */
extern const method_t methods[];
extern const size_t methods_n;

/* The method called name[0..len), or NULL. */
const method_t *method_find(const char *name, size_t len);

/* Sorts out[0..n) by descending score, equal scores (and NaN, last) in
 * ascending index: the one tie rule of every method. */
void method_sort(method_result_t *out, size_t n);

#endif
