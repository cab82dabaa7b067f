/* fusion.h - Reciprocal Rank Fusion of the retriever's ranked lists.
 *
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

#endif
