/* quantity.h - numbers with what they measure, and the bounds sentences
 * put on them.
 *
 * "My flight is 13 hours" asks about a quantity; "Business class is only
 * allowed for flights longer than 10 hours" states a bound on one. The
 * answerer (gen_extractive.c) reads both with quantity_scan and counts the
 * question's number as matched by a sentence whose bound it meets
 * (quantity_meets): 13 hours is longer than 10 hours, four months ago is
 * later than 90 days. Units of time are compared in minutes, distances in
 * kilometres, money per currency, and anything else counted ("2 users",
 * "14 characters") by the noun it counts. ASCII rules on UTF-8 text, pure
 * functions. */
#ifndef QUARRY_LLM_QUANTITY_H
#define QUARRY_LLM_QUANTITY_H

#include <stdbool.h>
#include <stddef.h>

#define QUANTITY_MAX_DIM 24

typedef enum {
  QTY_EQ = 0, /* "25 days": no comparison stated */
  QTY_GT,     /* "longer than", "more than", "over", "later than", "after" */
  QTY_GE,     /* "at least", "from", "N or more" */
  QTY_LT,     /* "shorter than", "less than", "under", "below" */
  QTY_LE,     /* "up to", "at most", "within", "no later than", "N or less" */
} qty_cmp_t;

typedef struct quantity {
  double value;                   /* in the dimension's base unit */
  char dim[QUANTITY_MAX_DIM + 1]; /* "time", "distance", "usd", "eur", a noun */
  qty_cmp_t cmp;                  /* the bound stated on it */
  size_t start, end;              /* bytes of the number and its unit in the text */
} quantity_t;

/* Finds up to max quantities in s[0..n): a number (digits, a decimal, or
 * a number word up to "hundred") followed by its unit, glued ("13h"),
 * hyphenated ("13-hour") or one word on ("5 working days"); or a currency
 * before it ("EUR 5", "$3"); "a" or "an" is one after a comparison ("more
 * than a year"). The comparison words around each set its cmp.
 * Returns how many were stored. */
size_t quantity_scan(const char *s, size_t n, quantity_t *out, size_t max);

/* True when both measure the same thing. */
bool quantity_same_dim(const quantity_t *a, const quantity_t *b);

/* True when the asked quantity falls within the bound, both of the same
 * dimension: a value within the bound's range ("13 hours" within "longer
 * than 10 hours"; equal for QTY_EQ), a stated value within the asked range
 * ("more than a year": "13 months"), or an asked range inside the bound's
 * ("over 12 hours" inside "longer than 10 hours"). */
bool quantity_meets(const quantity_t *asked, const quantity_t *bound);

/* True when s[0..n) names a unit of dimension dim, with a number or not:
 * "0.42 EUR per kilometre" mentions "distance". */
bool quantity_mentions(const char *s, size_t n, const char *dim);

#endif
