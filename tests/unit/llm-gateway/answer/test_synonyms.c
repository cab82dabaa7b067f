/* Tests of the answerer's synonym table (answer/synonyms.h). */
#include "answer/synonyms.h"

#include <criterion/criterion.h>
#include <string.h>

typedef struct alts {
  char s[16][64];
  size_t n;
} alts_t;

static int alt_cb(const syn_entry_t *e, void *ud) {
  alts_t *a = ud;
  char *o = a->s[a->n++];
  o[0] = '\0';
  for (size_t i = 0; i < e->nterms; i++) {
    if (i)
      strcat(o, " ");
    strcat(o, e->term[i]);
  }
  return a->n == 16;
}

static bool has(const alts_t *a, const char *s) {
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->s[i], s) == 0)
      return true;
  return false;
}

Test(synonyms, groups_are_stemmed_and_symmetric) {
  const char *text = "# comment\n"
                     "vacation, holidays, time off   # a trailing comment\n"
                     "\n"
                     "hotel, accommodation\n";
  synonyms_t *s;
  char err[256];
  cr_assert_eq(synonyms_parse(text, strlen(text), &s, err, sizeof err), 0, "%s", err);
  cr_assert_eq(synonyms_groups(s), 2);
  cr_assert_eq(synonyms_entries(s), 5);
  alts_t a = {0};
  /* "vacations" and "vacation" share the stem; the table holds "vacat". */
  synonyms_each(s, "vacat", alt_cb, &a);
  cr_assert(has(&a, "holiday"), "stemmed entry");
  cr_assert(has(&a, "time"), "\"time off\": \"off\" is a stopword");
  cr_assert_not(has(&a, "vacat"), "the entry itself is left out");
  memset(&a, 0, sizeof a);
  synonyms_each(s, "accommod", alt_cb, &a);
  cr_assert(has(&a, "hotel"));
  memset(&a, 0, sizeof a);
  cr_assert_eq(synonyms_each(s, "nothing", alt_cb, &a), 0);
  cr_assert_eq(synonyms_each(NULL, "hotel", alt_cb, &a), 0);
  synonyms_free(s);
}

Test(synonyms, bad_lines_are_named) {
  synonyms_t *s = NULL;
  char err[256];
  const char *lonely = "hotel, lodging\nalone\n";
  cr_assert_eq(synonyms_parse(lonely, strlen(lonely), &s, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "line 2"), "%s", err);
  const char *long_phrase = "a, one two three four five\n";
  cr_assert_eq(synonyms_parse(long_phrase, strlen(long_phrase), &s, err, sizeof err),
               Q_EINVAL);
  cr_assert(strstr(err, "line 1"), "%s", err);
  cr_assert_eq(synonyms_load("/nonexistent/synonyms.txt", &s, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "/nonexistent/synonyms.txt"), "%s", err);
}

Test(synonyms, the_shipped_table_loads) {
  synonyms_t *s = NULL;
  char err[256];
  cr_assert_eq(
      synonyms_load("services/llm-gateway/prompts/synonyms.txt", &s, err, sizeof err), 0,
      "%s", err);
  cr_assert_gt(synonyms_groups(s), 20);
  alts_t a = {0};
  synonyms_each(s, "call", alt_cb, &a);
  cr_assert(has(&a, "page"), "call ~ page");
  synonyms_free(s);
}
