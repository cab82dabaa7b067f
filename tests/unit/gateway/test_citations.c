/* test_citations.c - [n] markers in generated answers: what counts as a
 * marker, validation against the passages sent, removal of invalid ones,
 * and cutting snippets at UTF-8 boundaries. */
#include "citations.h"

#include <criterion/criterion.h>
#include <string.h>

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
