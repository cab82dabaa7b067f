/* features.c - the reranker's features of (query, passage) pairs (see
 * features.h).
 *
 * The query, every passage and every title go through q_text_terms (the
 * tokenizer the index uses: case folding, stopwords removed, Snowball
 * stemming), so "term" below means a kept, stemmed term, and positions and
 * lengths count kept terms only. Let Q be the distinct query terms
 * (|Q| = m), q_1..q_l the query's term sequence, N the number of
 * candidates, i a passage's position in the incoming list (0 first), and
 * minmax(x) = (x - min) / (max - min) over the candidates. For a passage P:
 *
 *   retrieval  = minmax(score); 1 for all when the scores are equal;
 *                non-finite scores count as the minimum.
 *   rank       = 1 / log2(i + 2): the position's DCG discount (1, 0.63, 0.5...)
 *   lexical    = lexical_score / max lexical_score (0 when no candidate
 *                matched lexically): the index's BM25, relative to the best.
 *   dense      = minmax(dense_score); 0 for all when they are equal (no
 *                embedding: no information).
 *   bm25_body  = BM25(P's text) / max over the candidates, where BM25 is
 *                the sum over t in Q of idf(t) tf (k1 + 1) /
 *                (tf + k1 (1 - b + b len / avglen)), k1 = 1.2, b = 0.75,
 *                idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5)), with
 *                n(t), len and avglen taken over the candidates' texts: a
 *                BM25 of the candidate set, independent of how the index
 *                scored the chunk. 0 for all when no candidate has a term.
 *   bm25_title = the same over the candidates' titles.
 *   coverage   = sum of w(t) for t in Q present in P  /  sum of w(t) for t in Q
 *                with w(t) = ln((N + 1) / (n(t) + 0.5)), n(t) = candidates
 *                containing t: a smoothed idf over the candidate set, so a
 *                term every candidate has counts for little, a rare one for
 *                much. Always positive (n(t) <= N).
 *   proximity  = 1 / (1 + W - k), where k = distinct query terms present in P
 *                and W = length (in positions) of the smallest window of P
 *                containing all k of them; 1 when they are adjacent, falling
 *                as they spread out. When m = 1 it is 1 if the term is
 *                present; when k < 2 <= m it is 0 (a lone term has no
 *                proximity).
 *   phrase     = 1 when q_1..q_l (l >= 2) occurs in P as consecutive terms,
 *                else 0 (found with KMP, linear in the passage).
 *   length     = ln(1 + terms in P's text).
 *
 * Every value is finite; all but length lie in [0, 1]. */
#include "features.h"

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

/* ---- the features ---------------------------------------------------- */

const char *const features_names[FEATURES_N] = {
#define FEATURES_NAME(e, name) name,
    FEATURES_LIST(FEATURES_NAME)
#undef FEATURES_NAME
};

int features_find(const char *name, size_t len) {
  for (int f = 0; f < FEATURES_N; f++)
    if (strlen(features_names[f]) == len && memcmp(features_names[f], name, len) == 0)
      return f;
  return FEATURES_NONE;
}

#define BM25_K1 1.2
#define BM25_B 0.75

/* minmax of x[i * FEATURES_N + f] in place; equal: what all become. */
static void minmax(double *x, size_t n, int f, double equal) {
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++) {
    double v = x[i * FEATURES_N + f];
    if (isfinite(v)) {
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
  }
  for (size_t i = 0; i < n; i++) {
    double *v = &x[i * FEATURES_N + f];
    if (!isfinite(*v))
      *v = 0.0;
    else if (!(hi > lo))
      *v = equal;
    else
      *v = (*v - lo) / (hi - lo);
  }
}

/* x[i * FEATURES_N + f] / its maximum, in place; 0 for all when that is
 * not positive, and for non-finite or negative values. */
static void over_max(double *x, size_t n, int f) {
  double hi = 0.0;
  for (size_t i = 0; i < n; i++) {
    double v = x[i * FEATURES_N + f];
    if (isfinite(v) && v > hi)
      hi = v;
  }
  for (size_t i = 0; i < n; i++) {
    double *v = &x[i * FEATURES_N + f];
    *v = hi > 0.0 && isfinite(*v) && *v > 0.0 ? *v / hi : 0.0;
  }
}

/* Term frequencies of the query's terms in one text: tf[t] += 1 per
 * occurrence, df[t] += 1 once; returns the text's length in kept terms.
 * ps->ids then holds the text as query-term ids. */
static size_t count_terms(pseq_t *ps, const char *text, size_t len, uint32_t *tf,
                          uint32_t *df, size_t m) {
  ps->n = 0;
  if (!m || !text || !len)
    return 0;
  q_text_terms(text, len, passage_term_cb, ps);
  for (size_t j = 0; j < ps->n; j++) {
    int32_t id = ps->ids[j];
    if (id >= 0 && tf[id]++ == 0)
      df[id]++;
  }
  return ps->n;
}

/* BM25 over the candidates of one field: tf is n * m, lens n. */
static void bm25(const uint32_t *tf, const uint32_t *df, const size_t *lens, size_t n,
                 size_t m, double *out, int f) {
  double avg = 0.0;
  for (size_t i = 0; i < n; i++)
    avg += (double)lens[i];
  avg = avg > 0.0 ? avg / (double)n : 1.0;
  for (size_t i = 0; i < n; i++) {
    double s = 0.0;
    for (size_t t = 0; t < m; t++) {
      double c = tf[i * m + t];
      if (c == 0.0)
        continue;
      double idf = log(1.0 + ((double)n - df[t] + 0.5) / ((double)df[t] + 0.5));
      s += idf * c * (BM25_K1 + 1.0) /
           (c + BM25_K1 * (1.0 - BM25_B + BM25_B * (double)lens[i] / avg));
    }
    out[i * FEATURES_N + f] = s;
  }
  over_max(out, n, f);
}

q_err_t features_compute(const char *query, size_t qlen,
                         const features_passage_t *passages, size_t n, double *out) {
  q_err_t rc = Q_ENOMEM;
  qterms_t q;
  memset(&q, 0, sizeof q);
  pseq_t ps = {.q = &q};
  uint32_t *tf = NULL, *ttf = NULL, *df = NULL, *tdf = NULL, *counts = NULL;
  size_t *lens = NULL, *tlens = NULL, *fail = NULL;
  if (n == 0)
    return 0;
  memset(out, 0, n * FEATURES_N * sizeof *out);

  if (query && qlen)
    q_text_terms(query, qlen, query_term_cb, &q);
  if (q.oom)
    goto done;
  size_t m = q.m;
  lens = calloc(n, sizeof *lens);
  tlens = calloc(n, sizeof *tlens);
  if (!lens || !tlens)
    goto done;
  if (m) {
    tf = calloc(n * m, sizeof *tf);
    ttf = calloc(n * m, sizeof *ttf);
    df = calloc(m, sizeof *df);
    tdf = calloc(m, sizeof *tdf);
    counts = calloc(m, sizeof *counts);
    fail = calloc(q.l, sizeof *fail);
    if (!tf || !ttf || !df || !tdf || !counts || !fail)
      goto done;
  }

  /* Pass 1: per passage, the incoming scores, term counts of the title and
   * the text, proximity and phrase. */
  for (size_t i = 0; i < n; i++) {
    const features_passage_t *p = &passages[i];
    double *x = &out[i * FEATURES_N];
    x[FEAT_RETRIEVAL] = p->score;
    x[FEAT_RANK] = 1.0 / log2((double)i + 2.0);
    x[FEAT_LEXICAL] = p->lexical;
    x[FEAT_DENSE] = p->dense;

    tlens[i] = count_terms(&ps, p->title, p->title_len, m ? ttf + i * m : NULL, tdf, m);
    if (ps.oom)
      goto done;
    lens[i] = count_terms(&ps, p->text, p->len, m ? tf + i * m : NULL, df, m);
    if (ps.oom)
      goto done;
    x[FEAT_LENGTH] = log1p((double)lens[i]);
    size_t k = 0;
    for (size_t t = 0; t < m; t++)
      k += tf[i * m + t] > 0;
    if (m == 1)
      x[FEAT_PROXIMITY] = k == 1 ? 1.0 : 0.0;
    else if (k >= 2) {
      size_t win = min_window(ps.ids, ps.n, k, counts, m);
      x[FEAT_PROXIMITY] = 1.0 / (1.0 + (double)(win - k));
    }
    if (q.l >= 2 && k == m)
      x[FEAT_PHRASE] = contains_seq(ps.ids, ps.n, q.seq, q.l, fail) ? 1.0 : 0.0;
  }

  /* Pass 2: what needs the whole candidate set. */
  minmax(out, n, FEAT_RETRIEVAL, 1.0);
  over_max(out, n, FEAT_LEXICAL);
  minmax(out, n, FEAT_DENSE, 0.0);
  if (m) {
    bm25(tf, df, lens, n, m, out, FEAT_BM25_BODY);
    bm25(ttf, tdf, tlens, n, m, out, FEAT_BM25_TITLE);
    double wsum = 0.0;
    for (size_t t = 0; t < m; t++)
      wsum += log(((double)n + 1.0) / ((double)df[t] + 0.5));
    for (size_t i = 0; i < n && wsum > 0.0; i++) {
      double have = 0.0;
      for (size_t t = 0; t < m; t++)
        if (tf[i * m + t])
          have += log(((double)n + 1.0) / ((double)df[t] + 0.5));
      out[i * FEATURES_N + FEAT_COVERAGE] = have / wsum;
    }
  }
  rc = 0;
done:
  qterms_free(&q);
  free(ps.ids);
  free(tf);
  free(ttf);
  free(df);
  free(tdf);
  free(counts);
  free(lens);
  free(tlens);
  free(fail);
  return rc;
}
