/* fusion.c - rank and score fusion of candidate lists (see fusion.h). */
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

/* ---- candidate lists ---------------------------------------------------- */

typedef struct by_id {
  const char *id;
  uint32_t pos;
} by_id_t;

static int by_id_cmp(const void *a, const void *b) {
  return strcmp(((const by_id_t *)a)->id, ((const by_id_t *)b)->id);
}

static int hit_cmp(const void *pa, const void *pb) {
  const fusion_hit_t *a = pa, *b = pb;
  if (a->fused != b->fused)
    return a->fused > b->fused ? -1 : 1;
  uint32_t ra = a->lexical_rank ? a->lexical_rank : UINT32_MAX;
  uint32_t rb = b->lexical_rank ? b->lexical_rank : UINT32_MAX;
  uint32_t da = a->dense_rank ? a->dense_rank : UINT32_MAX;
  uint32_t db = b->dense_rank ? b->dense_rank : UINT32_MAX;
  ra = ra < da ? ra : da;
  rb = rb < db ? rb : db;
  if (ra != rb)
    return ra < rb ? -1 : 1;
  return strcmp(a->cand->chunk_id, b->cand->chunk_id);
}

/* The lexical fallback: lexical order, then dense-only hits in dense order. */
static int fallback_cmp(const void *pa, const void *pb) {
  const fusion_hit_t *a = pa, *b = pb;
  if (!!a->lexical_rank != !!b->lexical_rank)
    return a->lexical_rank ? -1 : 1;
  uint32_t ra = a->lexical_rank ? a->lexical_rank : a->dense_rank;
  uint32_t rb = b->lexical_rank ? b->lexical_rank : b->dense_rank;
  if (ra != rb)
    return ra < rb ? -1 : 1;
  return strcmp(a->cand->chunk_id, b->cand->chunk_id);
}

/* Min and max of a list's scores. */
static void score_range(const engine_cand_t *c, size_t n, double *lo, double *hi) {
  *lo = *hi = n ? c[0].score : 0.0;
  for (size_t i = 1; i < n; i++) {
    if (c[i].score < *lo)
      *lo = c[i].score;
    if (c[i].score > *hi)
      *hi = c[i].score;
  }
}

static double norm_score(double s, double lo, double hi) {
  return hi > lo ? (s - lo) / (hi - lo) : 1.0;
}

q_err_t fusion_merge(const engine_cand_t *lex, size_t nlex, const engine_cand_t *den,
                     size_t nden, const fusion_params_t *p, q_arena_t *arena,
                     fusion_hit_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (nlex + nden == 0)
    return 0;
  fusion_hit_t *h = q_arena_alloc(arena, (nlex + nden) * sizeof *h);
  by_id_t *ids = q_arena_alloc(arena, (nlex ? nlex : 1) * sizeof *ids);
  if (!h || !ids)
    return Q_ENOMEM;
  size_t nh = 0;
  for (size_t i = 0; i < nlex; i++) {
    h[nh++] = (fusion_hit_t){&lex[i], 0.0, lex[i].score, 0.0, (uint32_t)(i + 1), 0};
    ids[i] = (by_id_t){lex[i].chunk_id, (uint32_t)i};
  }
  qsort(ids, nlex, sizeof *ids, by_id_cmp);
  for (size_t i = 0; i < nden; i++) {
    by_id_t key = {den[i].chunk_id, 0};
    by_id_t *found = nlex ? bsearch(&key, ids, nlex, sizeof *ids, by_id_cmp) : NULL;
    if (found) {
      h[found->pos].dense = den[i].score;
      h[found->pos].dense_rank = (uint32_t)(i + 1);
    } else {
      h[nh++] = (fusion_hit_t){&den[i], 0.0, 0.0, den[i].score, 0, (uint32_t)(i + 1)};
    }
  }
  unsigned k = p->k ? p->k : Q_FUSION_RRF_K;
  double w_lex = p->w_lex > 0 ? p->w_lex : 1.0;
  double w_dense = p->w_dense > 0 ? p->w_dense : 0.0;
  if (w_dense == 0.0) {
    for (size_t i = 0; i < nh; i++)
      h[i].fused = fusion_wrrf_score(h[i].lexical_rank, 0, k, w_lex, 0.0);
    qsort(h, nh, sizeof *h, fallback_cmp);
  } else if (p->method == FUSION_WEIGHTED) {
    double llo, lhi, dlo, dhi;
    score_range(lex, nlex, &llo, &lhi);
    score_range(den, nden, &dlo, &dhi);
    for (size_t i = 0; i < nh; i++)
      h[i].fused =
          (h[i].lexical_rank ? w_lex * norm_score(h[i].lexical, llo, lhi) : 0.0) +
          (h[i].dense_rank ? w_dense * norm_score(h[i].dense, dlo, dhi) : 0.0);
    qsort(h, nh, sizeof *h, hit_cmp);
  } else {
    for (size_t i = 0; i < nh; i++)
      h[i].fused =
          fusion_wrrf_score(h[i].lexical_rank, h[i].dense_rank, k, w_lex, w_dense);
    qsort(h, nh, sizeof *h, hit_cmp);
  }
  *out = h;
  *n = nh;
  return 0;
}

typedef struct doc_pos {
  const char *doc;
  size_t pos;
} doc_pos_t;

static int doc_pos_cmp(const void *pa, const void *pb) {
  const doc_pos_t *a = pa, *b = pb;
  int c = strcmp(a->doc, b->doc);
  if (c)
    return c;
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

size_t fusion_cap_per_doc(fusion_hit_t *hits, size_t n, size_t max_per_doc) {
  if (!max_per_doc || n <= max_per_doc)
    return n;
  doc_pos_t *d = malloc(n * sizeof *d);
  unsigned char *drop = calloc(n, 1);
  if (!d || !drop) { /* keep everything rather than fail the search */
    free(d);
    free(drop);
    return n;
  }
  for (size_t i = 0; i < n; i++)
    d[i] = (doc_pos_t){hits[i].cand->doc_id, i};
  qsort(d, n, sizeof *d, doc_pos_cmp);
  for (size_t i = 0, run = 0; i < n; i++) {
    run = i && strcmp(d[i].doc, d[i - 1].doc) == 0 ? run + 1 : 0;
    if (run >= max_per_doc)
      drop[d[i].pos] = 1;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++)
    if (!drop[i])
      hits[w++] = hits[i];
  free(d);
  free(drop);
  return w;
}
