/* test_text.c - the shared tokenizer and sentence splitter. */
#include "quarry/text.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* Collects terms as "a b c" (space-separated) with their positions. */
typedef struct terms {
  char joined[4096];
  size_t pos[256];
  size_t n;
  size_t stop_after; /* 0: never stop */
} terms_t;

static int collect_cb(const char *term, size_t len, size_t pos, void *ud) {
  terms_t *t = ud;
  cr_assert_eq(strlen(term), len, "term must be NUL-terminated at len");
  size_t used = strlen(t->joined);
  snprintf(t->joined + used, sizeof t->joined - used, "%s%s", used ? " " : "", term);
  if (t->n < 256)
    t->pos[t->n] = pos;
  t->n++;
  return t->stop_after && t->n >= t->stop_after;
}

static terms_t tokenize(const char *s) {
  terms_t t;
  memset(&t, 0, sizeof t);
  size_t n = q_text_terms(s, strlen(s), collect_cb, &t);
  cr_assert_eq(n, t.n, "return value must equal the terms delivered");
  return t;
}

Test(text, folds_case_and_stems) {
  terms_t t = tokenize("The Running DOGS were running quickly");
  cr_assert_str_eq(t.joined, "run dog run quick");
}

Test(text, removes_stopwords_and_counts_positions_of_kept_terms) {
  terms_t t = tokenize("what is the capital of France and of Spain");
  cr_assert_str_eq(t.joined, "capit franc spain");
  cr_assert_eq(t.pos[0], 0);
  cr_assert_eq(t.pos[1], 1);
  cr_assert_eq(t.pos[2], 2);
}

Test(text, splits_on_punctuation_and_keeps_digits) {
  terms_t t = tokenize("error-code 404, version 2.7; x86_64");
  cr_assert_str_eq(t.joined, "error code 404 version 2 7 x86 64");
}

Test(text, apostrophes_split_and_leftovers_are_stopwords) {
  terms_t t = tokenize("it's the user's file, don't delete");
  cr_assert_str_eq(t.joined, "user file don delet");
}

Test(text, unicode_letters_are_folded_and_normalised) {
  /* precomposed and decomposed e-acute fold to the same term; the fi
   * ligature and sharp s are expanded by NFKC case folding */
  terms_t t = tokenize("Caf\xc3\xa9 CAF\xc3\x89 cafe\xcc\x81 \xef\xac\x81sh Stra\xc3\x9f"
                       "e");
  cr_assert_str_eq(t.joined, "caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9 fish strass");
}

Test(text, non_latin_scripts_are_words) {
  terms_t t =
      tokenize("\xce\x94\xce\xb5\xce\xbb\xcf\x84\xce\xb1 \xe6\x9d\xb1\xe4\xba\xac");
  cr_assert_str_eq(t.joined,
                   "\xce\xb4\xce\xb5\xce\xbb\xcf\x84\xce\xb1 \xe6\x9d\xb1\xe4\xba\xac");
}

Test(text, invalid_utf8_is_a_separator) {
  terms_t t = tokenize("alpha\xff"
                       "beta\xc3"
                       "gamma");
  cr_assert_str_eq(t.joined, "alpha beta gamma");
}

Test(text, soft_hyphen_does_not_split_a_word) {
  terms_t t = tokenize("data\xc2\xad"
                       "base");
  cr_assert_str_eq(t.joined, "databas");
}

Test(text, long_terms_are_cut_on_a_utf8_boundary) {
  char s[512];
  memset(s, 'q', 100);
  s[100] = '\0';
  terms_t t = tokenize(s);
  cr_assert_eq(t.n, 1);
  cr_assert_eq(strlen(t.joined), Q_TEXT_MAX_TERM);

  /* 40 two-byte letters: 80 bytes, cut to 64 = 32 whole letters */
  char u[128] = {0};
  for (int i = 0; i < 40; i++)
    memcpy(u + 2 * i, "\xc3\xa9", 2);
  t = tokenize(u);
  cr_assert_eq(t.n, 1);
  cr_assert_eq(strlen(t.joined), 64);
  for (int i = 0; i < 64; i += 2)
    cr_assert_eq(memcmp(t.joined + i, "\xc3\xa9", 2), 0);
}

Test(text, a_huge_run_is_one_bounded_term) {
  static char s[1 << 20];
  memset(s, 'z', sizeof s - 1);
  terms_t t = tokenize(s);
  cr_assert_eq(t.n, 1);
  cr_assert_leq(strlen(t.joined), Q_TEXT_MAX_TERM);
}

Test(text, callback_can_stop_early) {
  terms_t t;
  memset(&t, 0, sizeof t);
  t.stop_after = 2;
  const char *s = "one two three four";
  size_t n = q_text_terms(s, strlen(s), collect_cb, &t);
  cr_assert_eq(n, 2);
  cr_assert_str_eq(t.joined, "one two");
}

Test(text, respects_the_length_argument) {
  terms_t t;
  memset(&t, 0, sizeof t);
  q_text_terms("alpha beta", 5, collect_cb, &t);
  cr_assert_str_eq(t.joined, "alpha");
  cr_assert_eq(q_text_terms("", 0, collect_cb, &t), 0);
  cr_assert_eq(q_text_terms("the of and", 10, NULL, NULL), 0);
}

Test(text, stopword_lookup) {
  /* Every word of the list, in an order unrelated to the list's: a lookup
   * fails for some of them if the list is not sorted. */
  const char *all =
      "yourselves yourself yours your you would with will why whom who while which "
      "where when what were we was very up until under too to through those this "
      "they these there then themselves them theirs their the that than t such some "
      "so should she same s own over out ourselves ours our ought other or only once "
      "on off of not nor no myself my most more me just itself its it is into in if "
      "i how his himself him herself hers here her he having have has had further "
      "from for few each during down doing does do did could can by but both between "
      "below being before been because be at as are any and an am all against again "
      "after above about a";
  size_t words = 0;
  for (const char *p = all; *p;) {
    size_t n = strcspn(p, " ");
    cr_assert(q_text_is_stopword(p, n), "%.*s", (int)n, p);
    words++;
    p += n + (p[n] == ' ');
  }
  cr_assert_eq(words, 128);
  const char *no[] = {"", "th", "thee", "zebra", "aa", "yourselvesx", "The", "b", "zz"};
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    cr_assert_not(q_text_is_stopword(no[i], strlen(no[i])), "%s", no[i]);
  /* length, not NUL, delimits the word */
  cr_assert(q_text_is_stopword("then", 3));
  cr_assert_not(q_text_is_stopword("then", 2));
}

/* Every thread has its own stemmer; results must not interfere. */
static void *tokenize_thread(void *arg) {
  for (int i = 0; i < 2000; i++) {
    terms_t t;
    memset(&t, 0, sizeof t);
    const char *s = "connections connected connecting generously";
    q_text_terms(s, strlen(s), collect_cb, &t);
    if (strcmp(t.joined, "connect connect connect generous") != 0)
      return (void *)1;
  }
  return NULL;
}

Test(text, thread_safe) {
  pthread_t th[4];
  for (int i = 0; i < 4; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, tokenize_thread, NULL), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(th[i], &r);
    cr_assert_null(r);
  }
}

/* ---- sentences ---------------------------------------------------------- */

typedef struct spans {
  char s[16][128];
  size_t n;
} spans_t;

static int span_cb(const char *start, size_t len, void *ud) {
  spans_t *sp = ud;
  if (sp->n < 16)
    snprintf(sp->s[sp->n], sizeof sp->s[0], "%.*s", (int)len, start);
  sp->n++;
  return 0;
}

static spans_t split(const char *s) {
  spans_t sp;
  memset(&sp, 0, sizeof sp);
  size_t n = q_text_sentences(s, strlen(s), span_cb, &sp);
  cr_assert_eq(n, sp.n);
  return sp;
}

Test(sentences, end_at_terminal_punctuation_followed_by_space) {
  spans_t sp = split("  First one. Second one!  Third?\tFourth without end  ");
  cr_assert_eq(sp.n, 4);
  cr_assert_str_eq(sp.s[0], "First one.");
  cr_assert_str_eq(sp.s[1], "Second one!");
  cr_assert_str_eq(sp.s[2], "Third?");
  cr_assert_str_eq(sp.s[3], "Fourth without end");
}

Test(sentences, punctuation_inside_tokens_does_not_split) {
  spans_t sp = split("Version 3.14 of example.com works.");
  cr_assert_eq(sp.n, 1);
  cr_assert_str_eq(sp.s[0], "Version 3.14 of example.com works.");
}

Test(sentences, closing_quotes_stay_with_their_sentence) {
  spans_t sp = split("He said \"stop.\" Then (he left.) Done...  Really?!");
  cr_assert_eq(sp.n, 4);
  cr_assert_str_eq(sp.s[0], "He said \"stop.\"");
  cr_assert_str_eq(sp.s[1], "Then (he left.)");
  cr_assert_str_eq(sp.s[2], "Done...");
  cr_assert_str_eq(sp.s[3], "Really?!");
}

Test(sentences, blank_lines_and_headings_end_sentences) {
  spans_t sp = split("# Install\nRun the script\nthen wait\n\n  \nNext part\n## "
                     "Notes\n#hashtag is text");
  cr_assert_eq(sp.n, 5);
  cr_assert_str_eq(sp.s[0], "# Install");
  cr_assert_str_eq(sp.s[1], "Run the script\nthen wait");
  cr_assert_str_eq(sp.s[2], "Next part");
  cr_assert_str_eq(sp.s[3], "## Notes");
  cr_assert_str_eq(sp.s[4], "#hashtag is text");
}

Test(sentences, empty_and_blank_input) {
  cr_assert_eq(q_text_sentences("", 0, span_cb, NULL), 0);
  spans_t sp = split(" \n\n \t ");
  cr_assert_eq(sp.n, 0);
}

static int stop_cb(const char *start, size_t len, void *ud) {
  (*(int *)ud)++;
  return 1;
}

Test(sentences, callback_can_stop) {
  int calls = 0;
  const char *s = "One. Two. Three.";
  cr_assert_eq(q_text_sentences(s, strlen(s), stop_cb, &calls), 1);
  cr_assert_eq(calls, 1);
}

Test(text, cut_never_splits_a_character) {
  const char *s = "ab\xc3\xa9"
                  "cd"; /* "abécd": é is 2 bytes at 2..3 */
  cr_assert_eq(q_text_cut(s, 6, 10), 6);
  cr_assert_eq(q_text_cut(s, 6, 4), 4);
  cr_assert_eq(q_text_cut(s, 6, 3), 2); /* cut would split é */
  cr_assert_eq(q_text_cut(s, 6, 2), 2);
  const char *euro = "\xe2\x82\xac\xe2\x82\xac"; /* two 3-byte € */
  cr_assert_eq(q_text_cut(euro, 6, 5), 3);
  cr_assert_eq(q_text_cut(euro, 6, 4), 3);
  cr_assert_eq(q_text_cut(euro, 6, 3), 3);
  cr_assert_eq(q_text_cut(euro, 6, 2), 0);
  const char *emoji = "x\xf0\x9f\x98\x80"; /* x + 4-byte emoji */
  cr_assert_eq(q_text_cut(emoji, 5, 4), 1);
}

Test(text, cut_of_300_bytes_from_long_multibyte_text) {
  char text[1000];
  size_t n = 0;
  while (n + 3 <= sizeof text) { /* 333 copies of "€" */
    memcpy(text + n, "\xe2\x82\xac", 3);
    n += 3;
  }
  size_t cut = q_text_cut(text, n, 300);
  cr_assert_eq(cut, 300);
  cut = q_text_cut(text + 1, n - 1, 300); /* misaligned start */
  cr_assert_leq(cut, 300);
  cr_assert_eq(((unsigned char)text[1 + cut] & 0xC0) == 0x80, 0);
}
