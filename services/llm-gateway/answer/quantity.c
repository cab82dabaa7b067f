/* quantity.c - quantities and the bounds stated on them (see quantity.h).
 *
 * Words are runs of ASCII letters and digits, with '.' and ',' kept
 * between digits ("0.42", "1,000") and '$', the euro and pound signs read
 * as currency words. A number glued to its unit ("13h", "7hrs") is split
 * in two. */
#include "answer/quantity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS 256
#define MAX_WORD 24

typedef struct qword {
  char w[MAX_WORD + 1]; /* lower-cased */
  size_t start, end;
  bool number;
  double value;
} qword_t;

typedef struct unit_def {
  const char *word;
  const char *dim;
  double factor;
} unit_def_t;

/* Units of time in minutes, distances in kilometres; currencies are their
 * own dimension. */
static const unit_def_t UNITS[] = {{"second", "time", 1.0 / 60},
                                   {"seconds", "time", 1.0 / 60},
                                   {"sec", "time", 1.0 / 60},
                                   {"secs", "time", 1.0 / 60},
                                   {"minute", "time", 1},
                                   {"minutes", "time", 1},
                                   {"min", "time", 1},
                                   {"mins", "time", 1},
                                   {"hour", "time", 60},
                                   {"hours", "time", 60},
                                   {"hr", "time", 60},
                                   {"hrs", "time", 60},
                                   {"h", "time", 60},
                                   {"day", "time", 1440},
                                   {"days", "time", 1440},
                                   {"d", "time", 1440},
                                   {"night", "time", 1440},
                                   {"nights", "time", 1440},
                                   {"week", "time", 10080},
                                   {"weeks", "time", 10080},
                                   {"wk", "time", 10080},
                                   {"wks", "time", 10080},
                                   {"fortnight", "time", 20160},
                                   {"month", "time", 43830},
                                   {"months", "time", 43830},
                                   {"year", "time", 525960},
                                   {"years", "time", 525960},
                                   {"yr", "time", 525960},
                                   {"yrs", "time", 525960},
                                   {"km", "distance", 1},
                                   {"kms", "distance", 1},
                                   {"kilometre", "distance", 1},
                                   {"kilometres", "distance", 1},
                                   {"kilometer", "distance", 1},
                                   {"kilometers", "distance", 1},
                                   {"mile", "distance", 1.609344},
                                   {"miles", "distance", 1.609344},
                                   {"usd", "usd", 1},
                                   {"dollar", "usd", 1},
                                   {"dollars", "usd", 1},
                                   {"$", "usd", 1},
                                   {"eur", "eur", 1},
                                   {"euro", "eur", 1},
                                   {"euros", "eur", 1},
                                   {"\xe2\x82\xac", "eur", 1},
                                   {"gbp", "gbp", 1},
                                   {"pound", "gbp", 1},
                                   {"pounds", "gbp", 1},
                                   {"\xc2\xa3", "gbp", 1},
                                   {"chf", "chf", 1},
                                   {"jpy", "jpy", 1},
                                   {"yen", "jpy", 1},
                                   {"cad", "cad", 1},
                                   {"aud", "aud", 1},
                                   {NULL, NULL, 0}};

static const struct {
  const char *w;
  double v;
} NUMBER_WORDS[] = {
    {"one", 1},        {"two", 2},       {"three", 3},     {"four", 4},
    {"five", 5},       {"six", 6},       {"seven", 7},     {"eight", 8},
    {"nine", 9},       {"ten", 10},      {"eleven", 11},   {"twelve", 12},
    {"thirteen", 13},  {"fourteen", 14}, {"fifteen", 15},  {"sixteen", 16},
    {"seventeen", 17}, {"eighteen", 18}, {"nineteen", 19}, {"twenty", 20},
    {"thirty", 30},    {"forty", 40},    {"fifty", 50},    {"sixty", 60},
    {"ninety", 90},    {"hundred", 100}, {"dozen", 12},    {NULL, 0}};

/* Words that follow a number without being what it counts. */
static const char *const NOT_NOUNS[] = {
    "of",    "or",     "and",   "to",   "in", "per",  "a",    "an",
    "the",   "at",     "on",    "for",  "by", "is",   "are",  "am",
    "pm",    "than",   "with",  "from", "as", "more", "less", "ago",
    "later", "before", "after", "i",    "we", "it",   NULL};

static bool in_list(const char *w, const char *const *list) {
  for (size_t i = 0; list[i]; i++)
    if (strcmp(w, list[i]) == 0)
      return true;
  return false;
}

static bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static const unit_def_t *unit_of(const char *w) {
  for (size_t i = 0; UNITS[i].word; i++)
    if (strcmp(w, UNITS[i].word) == 0)
      return &UNITS[i];
  return NULL;
}

static bool number_word(const char *w, double *v) {
  for (size_t i = 0; NUMBER_WORDS[i].w; i++)
    if (strcmp(w, NUMBER_WORDS[i].w) == 0) {
      *v = NUMBER_WORDS[i].v;
      return true;
    }
  return false;
}

static void put_word(qword_t *w, const char *s, size_t start, size_t end) {
  size_t len = end - start > MAX_WORD ? MAX_WORD : end - start;
  for (size_t j = 0; j < len; j++) {
    char c = s[start + j];
    w->w[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
  }
  w->w[len] = '\0';
  w->start = start;
  w->end = end;
  w->number = false;
  if (is_digit(s[start])) {
    char buf[MAX_WORD + 1];
    size_t k = 0;
    for (size_t j = 0; j < len; j++)
      if (w->w[j] != ',')
        buf[k++] = w->w[j];
    buf[k] = '\0';
    w->value = strtod(buf, NULL);
    w->number = true;
  } else {
    w->number = number_word(w->w, &w->value);
  }
}

/* Splits s[0..n) into words; returns how many. */
static size_t split_words(const char *s, size_t n, qword_t *w, size_t max) {
  size_t nw = 0, i = 0;
  while (i < n && nw < max) {
    /* Currency signs are words of their own. */
    if (s[i] == '$' ||
        ((unsigned char)s[i] == 0xe2 && i + 2 < n && (unsigned char)s[i + 1] == 0x82 &&
         (unsigned char)s[i + 2] == 0xac) ||
        ((unsigned char)s[i] == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] == 0xa3)) {
      size_t len = s[i] == '$' ? 1 : (unsigned char)s[i] == 0xe2 ? 3 : 2;
      put_word(&w[nw++], s, i, i + len);
      i += len;
      continue;
    }
    if (!is_alpha(s[i]) && !is_digit(s[i])) {
      i++;
      continue;
    }
    size_t start = i;
    if (is_digit(s[i])) {
      bool clock = false;
      while (i < n && (is_digit(s[i]) ||
                       ((s[i] == '.' || s[i] == ',' || s[i] == ':') && i + 1 < n &&
                        is_digit(s[i + 1]) && is_digit(s[i - 1])))) {
        clock |= s[i] == ':';
        i++;
      }
      put_word(&w[nw++], s, start, i);
      if (clock)
        w[nw - 1].number = false; /* 10:00 is a time of day, not an amount */
      /* "13h", "7hrs": the unit glued on is a word of its own. */
      if (i < n && is_alpha(s[i]) && nw < max) {
        size_t us = i;
        while (i < n && is_alpha(s[i]))
          i++;
        put_word(&w[nw++], s, us, i);
      }
      continue;
    }
    while (i < n && (is_alpha(s[i]) || is_digit(s[i])))
      i++;
    put_word(&w[nw++], s, start, i);
  }
  return nw;
}

static bool is(const qword_t *w, size_t nw, size_t k, const char *word) {
  return k < nw && strcmp(w[k].w, word) == 0;
}

/* The comparison stated by the words before w[k] (the number). */
static qty_cmp_t cmp_before(const qword_t *w, size_t nw, size_t k) {
  if (k == 0)
    return QTY_EQ;
  const char *p1 = w[k - 1].w;
  if (k >= 2) {
    const char *p2 = w[k - 2].w;
    bool neg = k >= 3 && (is(w, nw, k - 3, "no") || is(w, nw, k - 3, "not"));
    if (!strcmp(p1, "than")) {
      if (!strcmp(p2, "more") || !strcmp(p2, "longer") || !strcmp(p2, "greater") ||
          !strcmp(p2, "later") || !strcmp(p2, "higher") || !strcmp(p2, "older"))
        return neg ? QTY_LE : QTY_GT;
      if (!strcmp(p2, "less") || !strcmp(p2, "shorter") || !strcmp(p2, "fewer") ||
          !strcmp(p2, "earlier") || !strcmp(p2, "lower") || !strcmp(p2, "younger"))
        return neg ? QTY_GE : QTY_LT;
    }
    if (!strcmp(p2, "at") && !strcmp(p1, "least"))
      return QTY_GE;
    if (!strcmp(p2, "at") && !strcmp(p1, "most"))
      return QTY_LE;
    if (!strcmp(p2, "up") && !strcmp(p1, "to"))
      return QTY_LE;
    if (!strcmp(p2, "not") && !strcmp(p1, "exceeding"))
      return QTY_LE;
  }
  if (!strcmp(p1, "over") || !strcmp(p1, "above") || !strcmp(p1, "exceeding") ||
      !strcmp(p1, "beyond") || !strcmp(p1, "after"))
    return QTY_GT;
  if (!strcmp(p1, "under") || !strcmp(p1, "below"))
    return QTY_LT;
  if (!strcmp(p1, "within") || !strcmp(p1, "maximum") || !strcmp(p1, "max"))
    return QTY_LE;
  if (!strcmp(p1, "from") || !strcmp(p1, "minimum") || !strcmp(p1, "min"))
    return QTY_GE;
  return QTY_EQ;
}

/* "N hours or more", "N days or less": the comparison after the unit
 * w[k - 1]. */
static qty_cmp_t cmp_after(const qword_t *w, size_t nw, size_t k, qty_cmp_t cmp) {
  if (!is(w, nw, k, "or") || k + 1 >= nw)
    return cmp;
  const char *a = w[k + 1].w;
  if (!strcmp(a, "more") || !strcmp(a, "longer") || !strcmp(a, "over") ||
      !strcmp(a, "above") || !strcmp(a, "later") || !strcmp(a, "greater"))
    return QTY_GE;
  if (!strcmp(a, "less") || !strcmp(a, "fewer") || !strcmp(a, "shorter") ||
      !strcmp(a, "under") || !strcmp(a, "below") || !strcmp(a, "earlier"))
    return QTY_LE;
  return cmp;
}

static void set_dim(quantity_t *q, const char *dim) {
  size_t len = strlen(dim);
  if (len > QUANTITY_MAX_DIM)
    len = QUANTITY_MAX_DIM;
  memcpy(q->dim, dim, len);
  q->dim[len] = '\0';
}

size_t quantity_scan(const char *s, size_t n, quantity_t *out, size_t max) {
  qword_t *w = malloc(MAX_WORDS * sizeof *w);
  if (!w)
    return 0;
  size_t nw = split_words(s, n, w, MAX_WORDS), nq = 0;
  /* "more than a year", "within an hour": after a comparison, "a" is one. */
  for (size_t k = 0; k + 1 < nw; k++)
    if ((!strcmp(w[k].w, "a") || !strcmp(w[k].w, "an")) && unit_of(w[k + 1].w) &&
        cmp_before(w, nw, k) != QTY_EQ) {
      w[k].number = true;
      w[k].value = 1;
    }
  for (size_t k = 0; k < nw && nq < max; k++) {
    if (!w[k].number)
      continue;
    quantity_t *q = &out[nq];
    memset(q, 0, sizeof *q);
    size_t num = k, last = k;
    const unit_def_t *u = NULL;
    const unit_def_t *before = k > 0 ? unit_of(w[k - 1].w) : NULL;
    if (k + 1 < nw && (u = unit_of(w[k + 1].w)) != NULL) {
      last = k + 1; /* 13 hours */
    } else if (k + 2 < nw && !w[k + 1].number && (u = unit_of(w[k + 2].w)) != NULL &&
               strcmp(u->dim, "time") == 0) {
      last = k + 2; /* 5 working days */
    } else if (before && strcmp(before->dim, "time") != 0 &&
               strcmp(before->dim, "distance") != 0) {
      u = before; /* EUR 5, $3 */
      num = k - 1;
    } else if (k + 1 < nw && !w[k + 1].number && strlen(w[k + 1].w) >= 3 &&
               !in_list(w[k + 1].w, NOT_NOUNS)) {
      /* 2 users: counted by the noun, singular or plural alike. */
      char noun[QUANTITY_MAX_DIM + 1];
      size_t len = strlen(w[k + 1].w);
      if (len > QUANTITY_MAX_DIM)
        len = QUANTITY_MAX_DIM;
      memcpy(noun, w[k + 1].w, len);
      if (len > 3 && noun[len - 1] == 's')
        len--;
      noun[len] = '\0';
      set_dim(q, noun);
      q->value = w[k].value;
      last = k + 1;
    } else {
      continue; /* a bare number: nothing to compare it with */
    }
    if (u) {
      set_dim(q, u->dim);
      q->value = w[k].value * u->factor;
    }
    q->cmp = cmp_after(w, nw, last + 1, cmp_before(w, nw, num));
    q->start = w[num].start;
    q->end = w[last].end;
    if (is(w, nw, last + 1, "ago"))
      q->end = w[last + 1].end; /* "four months ago": ago is part of it */
    nq++;
    k = last;
  }
  free(w);
  return nq;
}

bool quantity_same_dim(const quantity_t *a, const quantity_t *b) {
  return a->dim[0] && strcmp(a->dim, b->dim) == 0;
}

/* Is x within the range "cmp v"? */
static bool within(double x, qty_cmp_t cmp, double v) {
  double eps = 1e-9 * fmax(1.0, fmax(fabs(x), fabs(v)));
  switch (cmp) {
  case QTY_GT: return x > v + eps;
  case QTY_GE: return x >= v - eps;
  case QTY_LT: return x < v - eps;
  case QTY_LE: return x <= v + eps;
  default: return fabs(x - v) <= eps;
  }
}

static bool upward(qty_cmp_t c) {
  return c == QTY_GT || c == QTY_GE;
}

bool quantity_meets(const quantity_t *asked, const quantity_t *bound) {
  if (!quantity_same_dim(asked, bound))
    return false;
  double a = asked->value, b = bound->value;
  if (asked->cmp == QTY_EQ)
    return within(a, bound->cmp, b); /* 13 hours: longer than 10 hours */
  if (bound->cmp == QTY_EQ)
    return within(b, asked->cmp, a); /* more than a year: 13 months */
  /* Both ranges: the asked one lies inside the bound's ("over 12 hours"
   * is within "longer than 10 hours"; "less than two weeks" is not within
   * "at least 14 days"). */
  if (upward(asked->cmp) != upward(bound->cmp))
    return false;
  return upward(asked->cmp)
             ? within(a, bound->cmp, b) || (a == b && asked->cmp == QTY_GT)
             : within(a, bound->cmp, b) || (a == b && asked->cmp == QTY_LT);
}

bool quantity_mentions(const char *s, size_t n, const char *dim) {
  qword_t *w = malloc(MAX_WORDS * sizeof *w);
  if (!w)
    return false;
  size_t nw = split_words(s, n, w, MAX_WORDS);
  bool found = false;
  for (size_t k = 0; k < nw && !found; k++) {
    const unit_def_t *u = unit_of(w[k].w);
    found = u && strcmp(u->dim, dim) == 0;
  }
  free(w);
  return found;
}
