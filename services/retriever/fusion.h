/* fusion.h - combining the retriever's ranked lists, above the engine seam.
 *
 * An engine (engine/engine.h) returns a lexical and a dense candidate list;
 * fusion_merge combines them into one ranking by one of two methods, and
 * fusion_cap_per_doc aggregates it per document. Both are the same whichever
 * engine made the lists.
 *
 * Reciprocal Rank Fusion:
 * RRF (Cormack, Clarke and Buettcher, SIGIR 2009) scores an item by the
 * ranks it reached, not by the raw scores, so lists whose scores live on
 * different scales (BM25 is unbounded, cosine is in [-1, 1]) combine
 * without calibration:
 *
 *     fused(d) = sum over lists L containing d of 1 / (k + rank_L(d))
 *
 * with 1-based ranks and k = 60 (the paper's constant: it damps the
 * advantage of the very top ranks so that agreement between lists matters
 * more than one list's first place). An item absent from a list gets
 * nothing from it. */
#ifndef QUARRY_RETRIEVER_FUSION_H
#define QUARRY_RETRIEVER_FUSION_H

#include "engine/engine.h"

#include "quarry/arena.h"
#include "quarry/error.h"

#include <stddef.h>
#include <stdint.h>

#define Q_FUSION_RRF_K 60

/* One candidate: its ranks in the BM25 and the dense list. */
typedef struct fusion_item {
  uint32_t lexical_rank; /* 1-based; 0 when absent from the BM25 list */
  uint32_t dense_rank;   /* 1-based; 0 when absent from the dense list */
  double fused;          /* output of fusion_rrf */
  const char *tiebreak;  /* compared with strcmp when all else ties; may be
                            NULL (then ties keep no particular order) */
  void *ud;              /* the caller's payload, carried along */
} fusion_item_t;

/* The RRF score of one item with constant k. */
double fusion_rrf_score(uint32_t lexical_rank, uint32_t dense_rank, unsigned k);

/* Weighted RRF: each list's reciprocal rank is multiplied by its weight,
 *     fused(d) = w_lex / (k + rank_lex(d)) + w_dense / (k + rank_dense(d)).
 * Equal weights give plain RRF. A lower dense weight is right when the
 * embedder is weaker than BM25 on the corpus (the built-in hashed embedder
 * captures spelling, not meaning); see docs/retrieval.md for measurements. */
double fusion_wrrf_score(uint32_t lexical_rank, uint32_t dense_rank, unsigned k,
                         double w_lex, double w_dense);

/* Sets items[i].fused with constant k (0: Q_FUSION_RRF_K) and sorts items
 * best first. Ties on the fused score go to the item with the better single
 * rank (a first place beats two seconds only when the sums tie), then to the
 * smaller tiebreak string, so the order is deterministic. */
void fusion_rrf(fusion_item_t *items, size_t n, unsigned k);

/* fusion_rrf with list weights (see fusion_wrrf_score). */
void fusion_wrrf(fusion_item_t *items, size_t n, unsigned k, double w_lex,
                 double w_dense);

/* How two candidate lists are combined. */
typedef enum fusion_method {
  /* Weighted RRF over ranks (fusion_wrrf_score), with constant k. */
  FUSION_RRF = 0,
  /* Weighted sum of scores normalised per list: each list's scores are
   * mapped linearly onto [0, 1] (best 1, worst of the list 0; all equal: 1),
   * fused = w_lex * norm_lex + w_dense * norm_dense, 0 for a list that does
   * not hold the item. */
  FUSION_WEIGHTED = 1,
} fusion_method_t;

typedef struct fusion_params {
  fusion_method_t method;
  unsigned k;     /* RRF constant; 0: Q_FUSION_RRF_K */
  double w_lex;   /* weight of the lexical list (1 when 0 or less) */
  double w_dense; /* weight of the dense list; 0 makes the lexical fallback:
                     the lexical ranking as it is, then the dense-only
                     candidates in dense order after it */
} fusion_params_t;

/* One fused result. */
typedef struct fusion_hit {
  const engine_cand_t *cand;         /* the candidate (its lexical copy when in both) */
  double fused;                      /* what the list is ordered by */
  double lexical, dense;             /* the lists' raw scores; 0 when absent */
  uint32_t lexical_rank, dense_rank; /* 1-based; 0 when absent */
} fusion_hit_t;

/* Merges the lexical list lex[0..nlex) and the dense list den[0..nden) (each
 * best first, as engines return them) by chunk id, scores the union with p
 * and sorts it best first: ties on the fused score go to the better single
 * rank, then the smaller chunk id. Either list may be empty. *out (in arena)
 * and *n receive the union. 0 or Q_ENOMEM. */
q_err_t fusion_merge(const engine_cand_t *lex, size_t nlex, const engine_cand_t *den,
                     size_t nden, const fusion_params_t *p, q_arena_t *arena,
                     fusion_hit_t **out, size_t *n);

/* Document-level aggregation: keeps, in order, at most max_per_doc hits of
 * each document (its best ones) and drops the rest; compacts hits[] and
 * returns the new count. max_per_doc 0 keeps everything. */
size_t fusion_cap_per_doc(fusion_hit_t *hits, size_t n, size_t max_per_doc);

#endif
