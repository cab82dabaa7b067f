/* scorer.c - deterministic lexical reranking (see scorer.h).
 *
 * The query and every passage go through q_text_terms (the tokenizer the
 * index uses: case folding, stopwords removed, Snowball stemming), so "term"
 * below means a kept, stemmed term, and positions count kept terms only.
 * Let Q be the distinct query terms (|Q| = m), q_1..q_l the query's term
 * sequence, N the number of candidates, and for a passage P:
 *
 *   coverage  = sum of w(t) for t in Q present in P  /  sum of w(t) for t in Q
 *               with w(t) = ln((N + 1) / (n(t) + 0.5)), n(t) = candidates
 *               containing t: a smoothed idf over the candidate set, so a
 *               term every candidate has counts for little, a rare one for
 *               much. Always positive (n(t) <= N).
 *
 *   proximity = 1 / (1 + W - k), where k = distinct query terms present in P
 *               and W = length (in positions) of the smallest window of P
 *               containing all k of them; 1 when they are adjacent, falling
 *               as they spread out. When m = 1 it is 1 if the term is
 *               present; when k < 2 <= m it is 0 (a lone term has no
 *               proximity).
 *
 *   phrase    = 1 when q_1..q_l (l >= 2) occurs in P as consecutive terms,
 *               else 0 (found with KMP, linear in the passage).
 *
 *   retrieval = (s - min) / (max - min) over the candidates' incoming
 *               scores; 1 for all when they are equal; non-finite scores
 *               count as the minimum.
 *
 *   score     = 0.45 coverage + 0.20 proximity + 0.10 phrase + 0.25 retrieval
 *
 * Coverage dominates (answering passages mention what was asked), proximity
 * and phrase reward the terms appearing together rather than scattered, and
 * the retrieval score keeps the dense signal (semantic matches without shared
 * words) in play. Passages are sorted by score, ties keeping their incoming
 * order, so the result is fully deterministic. */
#include "scorer.h"

#include "quarry/error.h"
#include "quarry/text.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the query's terms -------------------------------------------------- */

/* Distinct query terms in a small open-addressing table (FNV-1a: the table
 * only holds query terms, so passage text cannot lengthen its chains). */
typedef struct qterms {
  char **text; /* distinct terms, by id */
  size_t m, capm;
  int32_t *seq; /* the query as a sequence of ids */
  size_t l, capl;
  int32_t *table; /* id + 1, 0 empty */
  size_t tcap;
  int oom;
} qterms_t;

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

/* What qterms_find returns for a term the query does not have. */
#define NO_TERM (-1)

static int32_t qterms_find(const qterms_t *q, const char *t, size_t len) {
  if (!q->tcap)
    return NO_TERM;
  size_t mask = q->tcap - 1, i = fnv1a(t, len) & mask;
  while (q->table[i]) {
    const char *s = q->text[q->table[i] - 1];
    if (strlen(s) == len && memcmp(s, t, len) == 0)
      return q->table[i] - 1;
    i = (i + 1) & mask;
  }
  return NO_TERM;
}

static q_err_t grow(void *arr, size_t *cap, size_t need, size_t sz) {
  if (need <= *cap)
    return 0;
  size_t c = *cap ? *cap * 2 : 16;
  while (c < need)
    c *= 2;
  void *p = realloc(*(void **)arr, c * sz);
  if (!p)
    return Q_ENOMEM;
  *(void **)arr = p;
  *cap = c;
  return 0;
}

static q_err_t qterms_rehash(qterms_t *q, size_t cap) {
  int32_t *t = calloc(cap, sizeof *t);
  if (!t)
    return Q_ENOMEM;
  for (size_t id = 0; id < q->m; id++) {
    size_t i = fnv1a(q->text[id], strlen(q->text[id])) & (cap - 1);
    while (t[i])
      i = (i + 1) & (cap - 1);
    t[i] = (int32_t)id + 1;
  }
  free(q->table);
  q->table = t;
  q->tcap = cap;
  return 0;
}

static int query_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  qterms_t *q = ud;
  int32_t id = qterms_find(q, term, len);
  if (id < 0) {
    if ((q->m + 1) * 2 > q->tcap && qterms_rehash(q, q->tcap ? q->tcap * 2 : 32))
      goto oom;
    if (grow(&q->text, &q->capm, q->m + 1, sizeof *q->text))
      goto oom;
    char *s = malloc(len + 1);
    if (!s)
      goto oom;
    memcpy(s, term, len + 1);
    id = (int32_t)q->m;
    q->text[q->m++] = s;
    size_t i = fnv1a(term, len) & (q->tcap - 1);
    while (q->table[i])
      i = (i + 1) & (q->tcap - 1);
    q->table[i] = id + 1;
  }
  if (grow(&q->seq, &q->capl, q->l + 1, sizeof *q->seq))
    goto oom;
  q->seq[q->l++] = id;
  return 0;
oom:
  q->oom = 1;
  return 1;
}

static void qterms_free(qterms_t *q) {
  for (size_t i = 0; i < q->m; i++)
    free(q->text[i]);
  free(q->text);
  free(q->seq);
  free(q->table);
}

/* ---- one passage -------------------------------------------------------- */

/* A passage as a sequence of query-term ids (-1: not a query term). */
typedef struct pseq {
  const qterms_t *q;
  int32_t *ids;
  size_t n, cap;
  int oom;
} pseq_t;

static int passage_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  pseq_t *p = ud;
  if (grow(&p->ids, &p->cap, p->n + 1, sizeof *p->ids)) {
    p->oom = 1;
    return 1;
  }
  p->ids[p->n++] = qterms_find(p->q, term, len);
  return 0;
}

/* Smallest window of seq containing every id with present[id] set (k of
 * them); counts is scratch of m entries. Returns the window length. */
static size_t min_window(const int32_t *seq, size_t n, size_t k, uint32_t *counts,
                         size_t m) {
  memset(counts, 0, m * sizeof *counts);
  size_t best = SIZE_MAX, have = 0, lo = 0;
  for (size_t hi = 0; hi < n; hi++) {
    if (seq[hi] < 0)
      continue;
    if (counts[seq[hi]]++ == 0)
      have++;
    while (have == k) {
      while (seq[lo] < 0)
        lo++;
      if (hi - lo + 1 < best)
        best = hi - lo + 1;
      if (--counts[seq[lo]] == 0)
        have--;
      lo++;
    }
  }
  return best;
}

/* 1 when pat[0..pl) occurs in s[0..n); fail is scratch of pl entries. */
static bool contains_seq(const int32_t *s, size_t n, const int32_t *pat, size_t pl,
                         size_t *fail) {
  if (pl == 0 || pl > n)
    return 0;
  fail[0] = 0;
  for (size_t i = 1, k = 0; i < pl; i++) {
    while (k && pat[i] != pat[k])
      k = fail[k - 1];
    if (pat[i] == pat[k])
      k++;
    fail[i] = k;
  }
  for (size_t i = 0, k = 0; i < n; i++) {
    while (k && s[i] != pat[k])
      k = fail[k - 1];
    if (s[i] == pat[k] && ++k == pl)
      return 1;
  }
  return 0;
}

/* ---- ranking ------------------------------------------------------------ */

static int result_cmp(const void *pa, const void *pb) {
  const scorer_result_t *a = pa, *b = pb;
  if (a->score != b->score)
    return a->score > b->score ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
}

q_err_t scorer_rank(const char *query, size_t qlen, const scorer_passage_t *passages,
                    size_t n, scorer_result_t *out) {
  int rc = Q_ENOMEM;
  qterms_t q;
  memset(&q, 0, sizeof q);
  pseq_t ps = {.q = &q};
  uint64_t *bits = NULL; /* per passage: which query terms it contains */
  uint32_t *df = NULL, *counts = NULL;
  size_t *fail = NULL;
  double *w = NULL;
  if (n == 0)
    return 0;

  if (query && qlen)
    q_text_terms(query, qlen, query_term_cb, &q);
  if (q.oom)
    goto done;
  size_t m = q.m, words = (m + 63) / 64;
  if (m) {
    bits = calloc(n * words, sizeof *bits);
    df = calloc(m, sizeof *df);
    counts = calloc(m, sizeof *counts);
    fail = calloc(q.l, sizeof *fail);
    w = calloc(m, sizeof *w);
    if (!bits || !df || !counts || !fail || !w)
      goto done;
  }

  /* Incoming scores, min-max normalised. */
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++)
    if (isfinite(passages[i].retrieval)) {
      lo = fmin(lo, passages[i].retrieval);
      hi = fmax(hi, passages[i].retrieval);
    }

  /* Pass 1: per passage, which terms it has, proximity and phrase. */
  for (size_t i = 0; i < n; i++) {
    scorer_result_t *r = &out[i];
    memset(r, 0, sizeof *r);
    r->index = i;
    double s = passages[i].retrieval;
    if (!isfinite(s) || !(hi > lo))
      r->retrieval = isfinite(s) && hi == lo ? 1.0 : 0.0;
    else
      r->retrieval = (s - lo) / (hi - lo);
    if (!m || !passages[i].text || !passages[i].len)
      continue;

    ps.n = 0;
    q_text_terms(passages[i].text, passages[i].len, passage_term_cb, &ps);
    if (ps.oom)
      goto done;
    uint64_t *b = bits + i * words;
    size_t k = 0;
    for (size_t j = 0; j < ps.n; j++) {
      int32_t id = ps.ids[j];
      if (id >= 0 && !(b[id / 64] & (1ull << (id % 64)))) {
        b[id / 64] |= 1ull << (id % 64);
        df[id]++;
        k++;
      }
    }
    if (m == 1)
      r->proximity = k == 1 ? 1.0 : 0.0;
    else if (k >= 2) {
      size_t win = min_window(ps.ids, ps.n, k, counts, m);
      r->proximity = 1.0 / (1.0 + (double)(win - k));
    }
    if (q.l >= 2 && k == m)
      r->phrase = contains_seq(ps.ids, ps.n, q.seq, q.l, fail) ? 1.0 : 0.0;
  }

  /* Pass 2: idf-weighted coverage, then the combined score. */
  double wsum = 0.0;
  for (size_t t = 0; t < m; t++) {
    w[t] = log(((double)n + 1.0) / ((double)df[t] + 0.5));
    wsum += w[t];
  }
  for (size_t i = 0; i < n; i++) {
    scorer_result_t *r = &out[i];
    if (m && wsum > 0.0) {
      const uint64_t *b = bits + i * words;
      double have = 0.0;
      for (size_t t = 0; t < m; t++)
        if (b[t / 64] & (1ull << (t % 64)))
          have += w[t];
      r->coverage = have / wsum;
    }
    r->score = Q_SCORER_W_COVERAGE * r->coverage + Q_SCORER_W_PROXIMITY * r->proximity +
               Q_SCORER_W_PHRASE * r->phrase + Q_SCORER_W_RETRIEVAL * r->retrieval;
  }
  qsort(out, n, sizeof *out, result_cmp);
  rc = 0;
done:
  qterms_free(&q);
  free(ps.ids);
  free(bits);
  free(df);
  free(counts);
  free(fail);
  free(w);
  return rc;
}
