/* method.c - the table of reranking methods (method.h). */
#include "method.h"
#include "remote.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int result_cmp(const void *pa, const void *pb) {
  const method_result_t *a = pa, *b = pb;
  bool na = isnan(a->score), nb = isnan(b->score);
  if (na != nb)
    return na ? 1 : -1;
  if (!na && a->score != b->score)
    return a->score > b->score ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

void method_sort(method_result_t *out, size_t n) {
  if (n > 1)
    qsort(out, n, sizeof *out, result_cmp);
}

static q_err_t features_rank(const reranker_t *r, const method_input_t *in,
                             method_result_t *out, char *err, size_t errlen) {
  for (size_t i = 0; i < in->n; i++)
    out[i] = (method_result_t){i, model_score(&r->model, in->features + i * FEATURES_N)};
  method_sort(out, in->n);
  return 0;
}

static q_err_t none_rank(const reranker_t *r, const method_input_t *in,
                         method_result_t *out, char *err, size_t errlen) {
  for (size_t i = 0; i < in->n; i++)
    out[i] = (method_result_t){i, in->passages[i].score};
  return 0;
}

static q_err_t remote_rank_cb(const reranker_t *r, const method_input_t *in,
                              method_result_t *out, char *err, size_t errlen) {
  if (!r->remote) {
    snprintf(err, errlen, "no rerank API is configured (QUARRY_PROVIDERS_FILE)");
    return Q_EUNAVAIL;
  }
  return remote_rank(r->remote, in->query, in->qlen, in->passages, in->n, out, err,
                     errlen);
}

const method_t methods[] = {
    {"features", true, false, features_rank},
    {"none", false, false, none_rank},
    {"remote", false, true, remote_rank_cb},
};
const size_t methods_n = sizeof methods / sizeof methods[0];

const method_t *method_find(const char *name, size_t len) {
  for (size_t i = 0; i < methods_n; i++)
    if (strlen(methods[i].name) == len && memcmp(methods[i].name, name, len) == 0)
      return &methods[i];
  return NULL;
}
