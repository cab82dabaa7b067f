/* test_citations.c - [n] markers in generated answers: what counts as a
 * marker, validation against the passages sent, removal of invalid ones,
 * and cutting snippets at UTF-8 boundaries. */
#include "citations.h"

#include <criterion/criterion.h>
#include <string.h>

#include "quarry/text.h"
#include "quarry/validate.h"
#include "scrape.h"

static size_t run(const char *answer, size_t npassages, citations_t *c, char *out,
                  size_t outcap) {
  return citations_extract(answer, strlen(answer), npassages, c, out, outcap);
}

Test(citations, single_marker) {
  citations_t c;
  char out[128];
  size_t n = run("Paris is the capital [1].", 3, &c, out, sizeof out);
  cr_assert_str_eq(out, "Paris is the capital [1].");
  cr_assert_eq(n, strlen(out));
  cr_assert_eq(c.nmarkers, 1);
  cr_assert_eq(c.ninvalid, 0);
  cr_assert_eq(c.ncited, 1);
  cr_assert_eq(c.cited[0], 1);
}

Test(citations, two_digit_marker) {
  citations_t c;
  char out[128];
  run("See [12] and [3].", 12, &c, out, sizeof out);
  cr_assert_eq(c.nmarkers, 2);
  cr_assert_eq(c.ncited, 2);
  cr_assert_eq(c.cited[0], 3); /* ascending, whatever the order in the text */
  cr_assert_eq(c.cited[1], 12);
  cr_assert_str_eq(out, "See [12] and [3].");
}

Test(citations, adjacent_markers_and_repeats) {
  citations_t c;
  char out[128];
  run("A [1][2]. B [2]. C [1][1].", 2, &c, out, sizeof out);
  cr_assert_eq(c.nmarkers, 5);
  cr_assert_eq(c.ninvalid, 0);
  cr_assert_eq(c.ncited, 2);
  cr_assert_eq(c.cited[0], 1);
  cr_assert_eq(c.cited[1], 2);
}

Test(citations, non_numeric_brackets_are_text) {
  citations_t c;
  char out[128];
  const char *in = "Use a[x] or [1,2] or [] or [ 1] or [-1] or [12345] or [1";
  run(in, 5, &c, out, sizeof out);
  cr_assert_eq(c.nmarkers, 0);
  cr_assert_eq(c.ncited, 0);
  cr_assert_str_eq(out, in);
}

Test(citations, out_of_range_markers_are_removed) {
  citations_t c;
  char out[128];
  run("Known [2], invented [7] and zero [0].", 3, &c, out, sizeof out);
  cr_assert_eq(c.nmarkers, 3);
  cr_assert_eq(c.ninvalid, 2);
  cr_assert_eq(c.ncited, 1);
  cr_assert_eq(c.cited[0], 2);
  cr_assert_str_eq(out, "Known [2], invented and zero.");
}

Test(citations, marker_equal_to_passage_count_is_valid) {
  citations_t c;
  char out[64];
  run("[8] and [9]", 8, &c, out, sizeof out);
  cr_assert_eq(c.ncited, 1);
  cr_assert_eq(c.cited[0], 8);
  cr_assert_eq(c.ninvalid, 1);
  cr_assert_str_eq(out, "[8] and");
}

Test(citations, no_passages_means_every_marker_is_invalid) {
  citations_t c;
  char out[64];
  run("Nothing [1] here.", 0, &c, out, sizeof out);
  cr_assert_eq(c.ninvalid, 1);
  cr_assert_eq(c.ncited, 0);
  cr_assert_str_eq(out, "Nothing here.");
}

Test(citations, empty_answer) {
  citations_t c;
  char out[4];
  cr_assert_eq(run("", 3, &c, out, sizeof out), 0);
  cr_assert_str_eq(out, "");
  cr_assert_eq(c.nmarkers, 0);
}

Test(citations, marker_at_very_end_without_closing_bracket_is_text) {
  citations_t c;
  char out[16];
  /* only the first 5 bytes are the answer: "[1] [" */
  citations_extract("[1] [2]", 5, 3, &c, out, sizeof out);
  cr_assert_str_eq(out, "[1] [");
  cr_assert_eq(c.nmarkers, 1);
}

/* ---- streaming: pieces add up to citations_extract of the whole ---------- */

/* Streams answer cut at the given offsets (ascending) and checks that the
 * pieces add up to what citations_extract writes and, when the answer is
 * UTF-8, that every piece is whole characters. */
static void stream_matches(const char *answer, size_t npassages, const size_t *cuts,
                           size_t ncuts) {
  size_t len = strlen(answer);
  citations_t c;
  char want[512], got[512], out[512 + CITATIONS_STREAM_SLACK];
  citations_extract(answer, len, npassages, &c, want, sizeof want);
  citations_stream_t cs;
  citations_stream_init(&cs, npassages);
  size_t at = 0, g = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    size_t n = citations_stream_feed(&cs, answer + at, end - at, i == ncuts, out);
    for (size_t k = 0; q_valid_utf8(answer, len) && k < n;) { /* whole characters */
      unsigned char b = (unsigned char)out[k];
      size_t l = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
      cr_assert_leq(k + l, n, "piece of \"%s\" cut at %zu ends inside a character",
                    answer, end);
      k += l;
    }
    memcpy(got + g, out, n);
    g += n;
    at = end;
  }
  got[g] = '\0';
  cr_assert_str_eq(got, want, "answer \"%s\" in %zu pieces", answer, ncuts + 1);
}

Test(citations, stream_equals_extract_at_every_single_cut) {
  const char *answers[] = {
      "Alpha [1]. Beta [2][3]. Bogus [9].",
      "word [9][9]. a  [7] b [77777] c [12345]",
      "[1]x[2]y [0] [] [x] [1,2] end [3",
      "Tail space then bad [9]",
      "caf\xc3\xa9 [1] \xe2\x82\xac\xf0\x9f\x98\x80 [5]!",
      "bad utf8 \xc3 then [2] and \xe2\x82",
      "  [9] leading and [9]\n[4])",
  };
  for (size_t a = 0; a < sizeof answers / sizeof answers[0]; a++) {
    size_t len = strlen(answers[a]);
    stream_matches(answers[a], 4, NULL, 0);
    for (size_t cut = 0; cut <= len; cut++)
      stream_matches(answers[a], 4, &cut, 1);
  }
}

Test(citations, stream_equals_extract_byte_by_byte) {
  const char *a = "Alpha [1]. Beta [2][3]. Bogus [9]. caf\xc3\xa9 [10] [4]";
  size_t len = strlen(a);
  size_t cuts[128];
  for (size_t i = 0; i < len - 1; i++)
    cuts[i] = i + 1;
  stream_matches(a, 3, cuts, len - 1);
}

/* ---- citations_locate: the part of a passage an answer relies on --------- */

static const char TRANSPORT[] =
    "Northwind Travel Policy > Ground transport\n\n"
    "Taxis are reimbursed between airports and hotels. Use of a "
    "private car is reimbursed at 0.42 EUR per kilometre.";

static void span_is(const char *answer, unsigned n, const char *text, const char *want) {
  size_t s, e;
  cr_assert(citations_locate(answer, strlen(answer), n, text, strlen(text), 300, &s, &e),
            "nothing located for [%u] of %s", n, answer);
  cr_assert_eq(e - s, strlen(want), "got \"%.*s\"", (int)(e - s), text + s);
  cr_assert_eq(memcmp(text + s, want, e - s), 0, "got \"%.*s\"", (int)(e - s), text + s);
}

Test(citations, locate_the_quoted_sentence) {
  span_is("Taxis are reimbursed between airports and hotels. [1]", 1, TRANSPORT,
          "Taxis are reimbursed between airports and hotels.");
  /* A paraphrase (a model's answer) finds the sentence sharing most terms. */
  span_is("You can claim 0.42 EUR for each kilometre driven in your own car [1].", 1,
          TRANSPORT, "Use of a private car is reimbursed at 0.42 EUR per kilometre.");
}

Test(citations, locate_uses_the_text_before_its_own_marker) {
  const char *answer = "Taxis are reimbursed between airports and hotels [2]. A private "
                       "car is reimbursed at 0.42 EUR per kilometre [1].";
  span_is(answer, 1, TRANSPORT,
          "Use of a private car is reimbursed at 0.42 EUR per kilometre.");
  span_is(answer, 2, TRANSPORT, "Taxis are reimbursed between airports and hotels.");
}

Test(citations, locate_joins_neighbours_the_answer_quotes) {
  const char *text = "Runbook > Severity\n\nSEV2: degraded service for some customers. "
                     "Acknowledge within 15 minutes. SEV3: no customer impact.";
  span_is("SEV2: degraded service for some customers. Acknowledge within 15 minutes. [1]",
          1, text,
          "SEV2: degraded service for some customers. Acknowledge within 15 minutes.");
}

Test(citations, locate_falls_back_to_the_start) {
  size_t s = 99, e = 99;
  const char *a = "Nothing in common here [1].";
  cr_assert_not(
      citations_locate(a, strlen(a), 1, TRANSPORT, strlen(TRANSPORT), 40, &s, &e));
  cr_assert_eq(s, 0);
  cr_assert_eq(e, 40);
  a = "Taxis are reimbursed [2].";
  cr_assert_not(
      citations_locate(a, strlen(a), 1, TRANSPORT, strlen(TRANSPORT), 300, &s, &e),
      "no [1] in the answer");
  cr_assert_eq(s, 0);
  cr_assert_not(citations_locate("", 0, 1, "", 0, 300, &s, &e));
  cr_assert_eq(e, 0);
}

Test(citations, locate_never_splits_a_character) {
  /* "é" is two bytes; a limit that falls inside it cuts before it. */
  const char *text =
      "Caf\xc3\xa9 opening hours are long. Th\xc3\xa9 caf\xc3\xa9 opens at 8.";
  size_t s, e;
  const char *a = "The cafe opens at 8 [1].";
  citations_locate(a, strlen(a), 1, text, strlen(text), 3 + 1, &s, &e);
  cr_assert_leq(e - s, 4);
  cr_assert(e == strlen(text) || ((unsigned char)text[e] & 0xC0) != 0x80,
            "ends inside a character at %zu", e);
  cr_assert_eq(q_text_chars("Caf\xc3\xa9", 5), 4);
  cr_assert_eq(q_text_chars("", 0), 0);
}

Test(citations, invalid_markers_are_counted) {
  /* The series line, not the # HELP line that also starts with its name. */
  citations_count_invalid(0); /* registers the series at 0 */
  double before = scrape_value("\nquarry_citations_invalid_total ");
  cr_assert_geq(before, 0, "the series exists once a query was checked");
  citations_count_invalid(3);
  double after = scrape_value("\nquarry_citations_invalid_total ");
  cr_assert_eq(after, before + 3, "%g then %g", before, after);
}
