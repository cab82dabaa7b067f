/* fusion.c - Reciprocal Rank Fusion (see fusion.h for the formula). */
#include "fusion.h"

#include <stdlib.h>
#include <string.h>

double fusion_rrf_score(uint32_t lexical_rank, uint32_t dense_rank, unsigned k) {
  return fusion_wrrf_score(lexical_rank, dense_rank, k, 1.0, 1.0);
}

/* The best (smallest non-zero) rank an item reached; UINT32_MAX if none. */
static uint32_t best_rank(const fusion_item_t *it) {
  uint32_t a = it->lexical_rank ? it->lexical_rank : UINT32_MAX;
  uint32_t b = it->dense_rank ? it->dense_rank : UINT32_MAX;
  return a < b ? a : b;
}

static int item_cmp(const void *pa, const void *pb) {
  const fusion_item_t *a = pa, *b = pb;
  if (a->fused != b->fused)
    return a->fused > b->fused ? -1 : 1;
  uint32_t ra = best_rank(a), rb = best_rank(b);
  if (ra != rb)
    return ra < rb ? -1 : 1;
  if (a->tiebreak && b->tiebreak)
    return strcmp(a->tiebreak, b->tiebreak);
  return 0;
}

void fusion_rrf(fusion_item_t *items, size_t n, unsigned k) {
  fusion_wrrf(items, n, k, 1.0, 1.0);
}

double fusion_wrrf_score(uint32_t lexical_rank, uint32_t dense_rank, unsigned k,
                         double w_lex, double w_dense) {
  double s = 0.0;
  if (lexical_rank)
    s += w_lex / ((double)k + (double)lexical_rank);
  if (dense_rank)
    s += w_dense / ((double)k + (double)dense_rank);
  return s;
}

void fusion_wrrf(fusion_item_t *items, size_t n, unsigned k, double w_lex,
                 double w_dense) {
  if (!items || n == 0)
    return;
  if (k == 0)
    k = Q_FUSION_RRF_K;
  for (size_t i = 0; i < n; i++)
    items[i].fused =
        fusion_wrrf_score(items[i].lexical_rank, items[i].dense_rank, k, w_lex, w_dense);
  qsort(items, n, sizeof *items, item_cmp);
}
