/* citations.c - [n] marker parsing and validation (see citations.h). */
#include "citations.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/metrics.h"
#include "quarry/text.h"

/* If a marker starts at s[i], returns its length and sets *n; else 0. */
static size_t marker_at(const char *s, size_t len, size_t i, unsigned *n) {
  if (s[i] != '[')
    return 0;
  size_t j = i + 1;
  unsigned v = 0;
  while (j < len && j - i - 1 < 5 && s[j] >= '0' && s[j] <= '9') {
    v = v * 10 + (unsigned)(s[j] - '0');
    j++;
  }
  size_t digits = j - i - 1;
  if (digits == 0 || digits > 4 || j >= len || s[j] != ']')
    return 0;
  *n = v;
  return digits + 2;
}

size_t citations_extract(const char *answer, size_t len, size_t npassages, citations_t *c,
                         char *out, size_t outcap) {
  unsigned char seen[Q_LIMIT_GENERATE_PASSAGES + 1];
  memset(seen, 0, sizeof seen);
  memset(c, 0, sizeof *c);
  if (npassages > Q_LIMIT_GENERATE_PASSAGES)
    npassages = Q_LIMIT_GENERATE_PASSAGES;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    unsigned n;
    size_t ml = marker_at(answer, len, i, &n);
    if (ml) {
      c->nmarkers++;
      if (n >= 1 && n <= npassages) {
        seen[n] = 1;
        if (o + ml < outcap) {
          memcpy(out + o, answer + i, ml);
          o += ml;
        }
      } else {
        c->ninvalid++;
        /* "word [9]." would become "word ."; drop the space before the
         * marker when what follows is the end, a space or punctuation. */
        if (o > 0 && out[o - 1] == ' ' &&
            (i + ml == len || (answer[i + ml] && strchr(" .,;:!?)\n", answer[i + ml]))))
          o--;
      }
      i += ml;
      continue;
    }
    if (o + 1 < outcap)
      out[o++] = answer[i];
    i++;
  }
  if (outcap)
    out[o < outcap ? o : outcap - 1] = '\0';
  for (unsigned n = 1; n <= npassages; n++)
    if (seen[n])
      c->cited[c->ncited++] = n;
  return o;
}

/* ---- streaming ------------------------------------------------------------- */

void citations_stream_init(citations_stream_t *cs, size_t npassages) {
  memset(cs, 0, sizeof *cs);
  cs->npassages =
      npassages > Q_LIMIT_GENERATE_PASSAGES ? Q_LIMIT_GENERATE_PASSAGES : npassages;
}

/* How many bytes at the end of s[0..n) start a UTF-8 character that the
 * end of s cuts short (0..3). */
static size_t cut_char(const char *s, size_t n) {
  for (size_t k = 1; k <= 3 && k <= n; k++) {
    unsigned char c = (unsigned char)s[n - k];
    if ((c & 0xC0) == 0x80)
      continue; /* a continuation byte: its lead is further back */
    size_t need = c >= 0xF0 && c <= 0xF7   ? 4
                  : c >= 0xE0 && c <= 0xEF ? 3
                  : c >= 0xC0              ? 2
                                           : 1;
    return need > k ? k : 0;
  }
  return 0;
}

/* The same decisions as citations_extract, made as soon as the bytes seen
 * allow: a '[' waits until its digits and the byte after them are known,
 * an invalid marker until the byte after it is (it decides whether the
 * space before the marker goes), and a space until the next byte shows no
 * invalid marker removes it. */
size_t citations_stream_feed(citations_stream_t *cs, const char *piece, size_t len,
                             bool last, char *out) {
  char pend[sizeof cs->pend];
  size_t np = cs->npend;
  memcpy(pend, cs->pend, np);
  cs->npend = 0;
  size_t total = np + len;
#define AT(k) ((k) < np ? pend[(k)] : piece[(k)-np])

  size_t o = cs->nutf8;
  memcpy(out, cs->utf8, cs->nutf8);
  cs->nutf8 = 0;

  size_t i = 0;
  while (i < total) {
    char ch = AT(i);
    if (ch == '[') {
      size_t j = i + 1;
      unsigned v = 0;
      while (j < total && j - i - 1 < 5 && AT(j) >= '0' && AT(j) <= '9') {
        v = v * 10 + (unsigned)(AT(j) - '0');
        j++;
      }
      size_t digits = j - i - 1;
      if (j == total && digits < 5 && !last)
        break; /* the next bytes decide */
      if (digits >= 1 && digits <= 4 && j < total && AT(j) == ']') {
        size_t ml = digits + 2;
        if (v >= 1 && v <= cs->npassages) {
          if (cs->space)
            out[o++] = ' ';
          cs->space = false;
          for (size_t k = 0; k < ml; k++)
            out[o++] = AT(i + k);
          i += ml;
          continue;
        }
        if (i + ml == total && !last)
          break; /* the byte after it decides about the space */
        if (i + ml == total || (AT(i + ml) && strchr(" .,;:!?)\n", AT(i + ml))))
          cs->space = false;
        i += ml;
        continue;
      }
    }
    if (cs->space)
      out[o++] = ' ';
    cs->space = ch == ' ';
    if (!cs->space)
      out[o++] = ch;
    i++;
  }
  for (; i < total; i++)
    cs->pend[cs->npend++] = AT(i);
#undef AT

  if (last) {
    if (cs->space)
      out[o++] = ' ';
    cs->space = false;
  } else {
    size_t cut = cut_char(out, o);
    memcpy(cs->utf8, out + o - cut, cut);
    cs->nutf8 = cut;
    o -= cut;
  }
  return o;
}

/* ---- where a citation points ------------------------------------------------ */

#define LOCATE_MAX_TERMS 256 /* of the claim */
#define LOCATE_MAX_SENTENCES 512

typedef struct term_set {
  char (*t)[Q_TEXT_MAX_TERM + 1];
  size_t n;
} term_set_t;

static int claim_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  term_set_t *ts = ud;
  for (size_t i = 0; i < ts->n; i++)
    if (strcmp(ts->t[i], term) == 0)
      return 0;
  if (ts->n == LOCATE_MAX_TERMS)
    return 1;
  memcpy(ts->t[ts->n], term, len + 1);
  ts->n++;
  return 0;
}

typedef struct shared {
  const term_set_t *claim;
  size_t shared, total;
} shared_t;

static int sentence_term_cb(const char *term, size_t len, size_t pos, void *ud) {
  shared_t *s = ud;
  s->total++;
  for (size_t i = 0; i < s->claim->n; i++)
    if (strcmp(s->claim->t[i], term) == 0) {
      s->shared++;
      break;
    }
  return 0;
}

typedef struct span {
  size_t start, end, shared, total;
} span_t;

typedef struct spans {
  const char *text;
  const term_set_t *claim;
  span_t v[LOCATE_MAX_SENTENCES];
  size_t n;
} spans_t;

static int locate_sentence_cb(const char *start, size_t len, void *ud) {
  spans_t *sp = ud;
  if (sp->n == LOCATE_MAX_SENTENCES)
    return 1;
  shared_t sh = {.claim = sp->claim};
  q_text_terms(start, len, sentence_term_cb, &sh);
  sp->v[sp->n++] = (span_t){.start = (size_t)(start - sp->text),
                            .end = (size_t)(start - sp->text) + len,
                            .shared = sh.shared,
                            .total = sh.total};
  return 0;
}

bool citations_locate(const char *answer, size_t alen, unsigned n, const char *text,
                      size_t tlen, size_t max, size_t *start, size_t *end) {
  *start = 0;
  *end = q_text_cut(text, tlen, max);
  /* The claim: the text before the first [n], back to the marker before. */
  size_t claim_start = 0, claim_end = SIZE_MAX;
  for (size_t i = 0; i < alen && claim_end == SIZE_MAX;) {
    unsigned m;
    size_t ml = marker_at(answer, alen, i, &m);
    if (!ml) {
      i++;
      continue;
    }
    if (m == n)
      claim_end = i;
    else
      claim_start = i + ml;
    i += ml;
  }
  if (claim_end == SIZE_MAX || claim_end <= claim_start)
    return false;

  bool found = false;
  term_set_t claim = {.t = calloc(LOCATE_MAX_TERMS, sizeof *claim.t)};
  spans_t *sp = calloc(1, sizeof *sp);
  if (!claim.t || !sp)
    goto done;
  q_text_terms(answer + claim_start, claim_end - claim_start, claim_term_cb, &claim);
  if (claim.n == 0)
    goto done;
  sp->text = text;
  sp->claim = &claim;
  q_text_sentences(text, tlen, locate_sentence_cb, sp);
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < sp->n; i++)
    if (sp->v[i].shared > 0 && (best == SIZE_MAX || sp->v[i].shared > sp->v[best].shared))
      best = i;
  if (best == SIZE_MAX)
    goto done;
  /* Neighbours the claim also quotes (most of their terms are in it)
   * join the span: an answer may quote a lead sentence and the next. */
  size_t lo = best, hi = best;
  while (lo > 0 && sp->v[lo - 1].total > 0 &&
         2 * sp->v[lo - 1].shared > sp->v[lo - 1].total &&
         sp->v[best].end - sp->v[lo - 1].start <= max)
    lo--;
  while (hi + 1 < sp->n && sp->v[hi + 1].total > 0 &&
         2 * sp->v[hi + 1].shared > sp->v[hi + 1].total &&
         sp->v[hi + 1].end - sp->v[lo].start <= max)
    hi++;
  *start = sp->v[lo].start;
  *end = sp->v[lo].start +
         q_text_cut(text + sp->v[lo].start, sp->v[hi].end - sp->v[lo].start, max);
  found = true;
done:
  free(claim.t);
  free(sp);
  return found;
}

static q_metric_t *m_invalid;

static void invalid_register(void) {
  m_invalid = q_metrics_counter("quarry_citations_invalid_total",
                                "[n] markers removed from answers because they cited no "
                                "passage that was sent.",
                                "");
}

void citations_count_invalid(size_t n) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, invalid_register);
  if (n && m_invalid)
    q_metrics_add(m_invalid, NULL, (double)n);
}
