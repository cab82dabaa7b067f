/* Tests of quantities and bounds (answer/quantity.h). */
#include "answer/quantity.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static size_t scan(const char *s, quantity_t *q, size_t max) {
  return quantity_scan(s, strlen(s), q, max);
}

static quantity_t one(const char *s) {
  quantity_t q[4];
  cr_assert_geq(scan(s, q, 4), 1, "no quantity in %s", s);
  return q[0];
}

Test(quantity, reads_numbers_with_their_units) {
  quantity_t q = one("My flight is around 13 hours");
  cr_assert_str_eq(q.dim, "time");
  cr_assert_float_eq(q.value, 13 * 60, 1e-9);
  cr_assert_eq(q.cmp, QTY_EQ);
  /* Glued, hyphenated, a number word, a word between. */
  cr_assert_float_eq(one("a 4h flight").value, 240, 1e-9);
  cr_assert_float_eq(one("a 13-hour flight").value, 780, 1e-9);
  cr_assert_float_eq(one("four months ago").value, 4 * 43830, 1e-9);
  cr_assert_float_eq(one("within 5 working days").value, 5 * 1440, 1e-9);
  /* Money per currency, before or after; distances; counted nouns. */
  q = one("Meals are covered by a per diem of 55 EUR");
  cr_assert_str_eq(q.dim, "eur");
  cr_assert_float_eq(q.value, 55, 1e-9);
  cr_assert_str_eq(one("a $30 dinner").dim, "usd");
  cr_assert_float_eq(one("0.42 EUR per kilometre").value, 0.42, 1e-9);
  cr_assert_str_eq(one("a 120 km drive").dim, "distance");
  q = one("The free plan includes 2 users");
  cr_assert_str_eq(q.dim, "user");
  cr_assert_str_eq(one("can we have 30 user accounts").dim, "user");
  /* Where it is in the text. */
  const char *s = "a flight of 13 hours";
  q = one(s);
  cr_assert_eq(strncmp(s + q.start, "13 hours", q.end - q.start), 0);
}

Test(quantity, bare_numbers_and_times_are_not_quantities) {
  quantity_t q[4];
  cr_assert_eq(scan("Hand-over is on Tuesday at 10:00 UTC", q, 4), 0);
  cr_assert_eq(scan("revised in March 2024", q, 4), 0);
  cr_assert_eq(scan("extension 4357", q, 4), 0);
}

Test(quantity, reads_the_bound_stated) {
  cr_assert_eq(one("flights longer than 10 hours").cmp, QTY_GT);
  cr_assert_eq(one("Flights shorter than 6 hours").cmp, QTY_LT);
  cr_assert_eq(one("Flights of 6 hours or more").cmp, QTY_GE);
  cr_assert_eq(one("at least 14 days before departure").cmp, QTY_GE);
  cr_assert_eq(one("Claims submitted later than 90 days").cmp, QTY_GT);
  cr_assert_eq(one("no later than 30 days").cmp, QTY_LE);
  cr_assert_eq(one("within 30 days of your return").cmp, QTY_LE);
  cr_assert_eq(one("up to 5 unused days").cmp, QTY_LE);
  cr_assert_eq(one("3 days or less").cmp, QTY_LE);
  cr_assert_eq(one("over 100 EUR").cmp, QTY_GT);
  cr_assert_eq(one("25 days of paid leave").cmp, QTY_EQ);
}

/* The first quantity of asked meets the first of bound. */
static bool meets(const char *asked, const char *bound) {
  quantity_t a = one(asked), b = one(bound);
  return quantity_meets(&a, &b);
}

Test(quantity, a_quantity_meets_a_bound_on_the_same_measure) {
  cr_assert(meets("my flight is 13 hours", "longer than 10 hours"));
  cr_assert(meets("my flight is 13 hours", "6 hours or more"));
  cr_assert_not(meets("my flight is 13 hours", "shorter than 6 hours"));
  /* Units of one measure convert; other measures never meet. */
  cr_assert(meets("four months ago", "later than 90 days"));
  cr_assert_not(meets("four months ago", "within 30 days"));
  cr_assert_not(meets("a 100 EUR dinner", "over 90 USD"));
  quantity_t eur = one("100 EUR"), hours = one("13 hours");
  cr_assert_not(quantity_same_dim(&eur, &hours));
  /* Equal when no bound is stated; the boundary belongs to >= and <=. */
  cr_assert(meets("25 days", "25 days"));
  cr_assert_not(meets("30 days", "25 days"));
  cr_assert(meets("a 6 hour flight", "6 hours or more"));
  cr_assert_not(meets("a 6 hour flight", "shorter than 6 hours"));
}

Test(quantity, ranges_against_values_and_ranges) {
  /* An asked range holds a stated value; "a" is one after a comparison. */
  cr_assert_float_eq(one("more than a year").value, 525960, 1e-9);
  cr_assert(meets("can I keep more than a year of history", "13 months of history"));
  cr_assert_not(meets("more than a year", "90 days of history"));
  /* An asked range inside the bound's, or not. */
  cr_assert(meets("over 12 hours", "longer than 10 hours"));
  cr_assert_not(meets("less than two weeks before", "at least 14 days before"));
  cr_assert(meets("less than a week", "within 2 weeks"));
  /* "a" without a comparison is not a number. */
  quantity_t q[4];
  cr_assert_eq(scan("55 EUR a day", q, 4), 1);
}

Test(quantity, a_unit_word_mentions_its_measure) {
  const char *s = "Use of a private car is reimbursed at 0.42 EUR per kilometre.";
  cr_assert(quantity_mentions(s, strlen(s), "distance"));
  cr_assert(quantity_mentions(s, strlen(s), "eur"));
  cr_assert_not(quantity_mentions(s, strlen(s), "time"));
}
