/* test_chunker.c - chunk sizes, overlap, sentence/paragraph boundaries,
 * sections (from Markdown through the extractor and doc builder), pages,
 * tiny and huge inputs, chunk ids, UTF-8, and chunks the embedder accepts
 * (Japanese, data URIs, long CSV lines). */
#include "chunker.h"
#include "extract/doc.h"
#include "extract/extract.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/chunking.h"
#include "quarry/error.h"
#include "quarry/limits.h"
#include "quarry/validate.h"

typedef struct got {
  int n;
  char *text[4096];
  char *heading[4096];
  int words[4096];
} got_t;

static void got_free(got_t *g) {
  for (int i = 0; i < g->n; i++) {
    free(g->text[i]);
    free(g->heading[i]);
  }
  free(g);
}

/* Chunks s[0..n): as plain text (one section), or when md as Markdown
 * through the Markdown extractor and the doc builder, as the worker does. */
static got_t *run(const char *s, size_t n, int target, int overlap, int md) {
  chunker_opts_t o = {target, overlap, NULL};
  chunker_t *c;
  char err[256];
  chunker_input_t in = {.text = s, .len = n};
  doc_t d;
  if (md) {
    doc_init(&d, CHUNK_BY_SECTION, 64u << 20);
    extract_limits_t lim = {64u << 20, 64u << 20, 100, 256};
    extract_ctx_t ctx;
    extract_ctx_init(&ctx, s, n, "", &lim, doc_add_cb, &d, err, sizeof err);
    cr_assert_eq(extract_run(&extract_markdown, &ctx), Q_OK, "%s", err);
    extract_ctx_cleanup(&ctx);
    doc_input(&d, &in);
  }
  cr_assert_eq(chunker_new(&in, &o, &c, err, sizeof err), Q_OK, "%s", err);
  got_t *g = calloc(1, sizeof *g);
  chunk_t ch;
  int rc;
  while ((rc = chunker_next(c, &ch)) == 1) {
    cr_assert_lt(g->n, 4096, "too many chunks");
    cr_assert_eq(ch.ordinal, g->n, "ordinals count up from 0");
    cr_assert_eq(strlen(ch.text), ch.len);
    g->text[g->n] = strdup(ch.text);
    g->heading[g->n] = strdup(ch.heading);
    g->words[g->n] = ch.words;
    g->n++;
  }
  cr_assert_eq(rc, 0);
  chunker_free(c);
  if (md)
    doc_cleanup(&d);
  return g;
}

static got_t *run_s(const char *s, int target, int overlap, int md) {
  return run(s, strlen(s), target, overlap, md);
}

static int count_words(const char *s) {
  int n = 0, in = 0;
  for (; *s; s++) {
    int ws = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
    if (!ws && !in)
      n++;
    in = !ws;
  }
  return n;
}

/* "w0 w1 w2 ..." without punctuation: no sentence or line breaks at all. */
static char *numbered_words(int n, const char *sep) {
  q_buf_t b;
  q_buf_init(&b, 64u << 20);
  for (int i = 0; i < n; i++)
    q_buf_printf(&b, "%sw%d", i ? sep : "", i);
  return q_buf_steal(&b);
}

/* Index of the first word of a "wN ..." chunk. */
static int first_index(const char *chunk) {
  return atoi(chunk + 1);
}

static int last_index(const char *chunk) {
  const char *p = strrchr(chunk, 'w');
  return atoi(p + 1);
}

Test(chunker, tiny_input_is_one_chunk) {
  got_t *g = run_s("Hello world.", 200, 40, 0);
  cr_assert_eq(g->n, 1);
  cr_assert_str_eq(g->text[0], "Hello world.");
  cr_assert_str_eq(g->heading[0], "");
  cr_assert_eq(g->words[0], 2);
  got_free(g);

  g = run_s("x", 1, 0, 1);
  cr_assert_eq(g->n, 1);
  cr_assert_str_eq(g->text[0], "x");
  got_free(g);
}

Test(chunker, empty_and_blank_inputs_give_no_chunks) {
  got_t *g = run_s("", 200, 40, 0);
  cr_assert_eq(g->n, 0);
  got_free(g);
  g = run_s(" \n\n\t \r\n ", 200, 40, 0);
  cr_assert_eq(g->n, 0);
  got_free(g);
  g = run_s("# Only a heading\n\n## And another\n", 200, 40, 1);
  cr_assert_eq(g->n, 0);
  got_free(g);
  g = run(NULL, 0, 10, 0, 0);
  cr_assert_eq(g->n, 0);
  got_free(g);
}

Test(chunker, rejects_bad_options) {
  chunker_t *c;
  char err[128];
  chunker_input_t x = {.text = "x", .len = 1};
  chunker_opts_t o = {0, 0, NULL};
  cr_assert_eq(chunker_new(&x, &o, &c, err, sizeof err), Q_EINVAL);
  o = (chunker_opts_t){CHUNKER_MAX_TARGET + 1, 0, NULL};
  cr_assert_eq(chunker_new(&x, &o, &c, err, sizeof err), Q_EINVAL);
  o = (chunker_opts_t){100, 51, NULL};
  cr_assert_eq(chunker_new(&x, &o, &c, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "overlap"), "%s", err);
  o = (chunker_opts_t){100, -1, NULL};
  cr_assert_eq(chunker_new(&x, &o, &c, err, sizeof err), Q_EINVAL);
  o = (chunker_opts_t){100, 50, NULL};
  cr_assert_eq(chunker_new(&x, &o, &c, err, sizeof err), Q_OK);
  chunker_free(c);
}

Test(chunker, fixed_windows_overlap_exactly_without_boundaries) {
  char *s = numbered_words(1000, " ");
  got_t *g = run_s(s, 200, 40, 0);
  /* No boundaries: every chunk is 200 words and starts 160 after the last. */
  int expect_start = 0;
  for (int i = 0; i < g->n; i++) {
    cr_assert_leq(g->words[i], 200);
    cr_assert_eq(count_words(g->text[i]), g->words[i]);
    cr_assert_eq(first_index(g->text[i]), expect_start, "chunk %d starts at w%d", i,
                 first_index(g->text[i]));
    if (i + 1 < g->n) {
      cr_assert_eq(g->words[i], 200);
      int next = first_index(g->text[i + 1]);
      cr_assert_eq(last_index(g->text[i]) - next + 1, 40, "overlap of 40 words");
      expect_start = next;
    }
  }
  cr_assert_eq(last_index(g->text[g->n - 1]), 999, "the last word is in the last chunk");
  cr_assert_eq(g->n, 6); /* starts 0,160,320,480,640,800 */
  got_free(g);
  free(s);
}

Test(chunker, zero_overlap_partitions_the_words) {
  char *s = numbered_words(1000, " ");
  got_t *g = run_s(s, 100, 0, 0);
  cr_assert_eq(g->n, 10);
  for (int i = 0; i < g->n; i++) {
    cr_assert_eq(first_index(g->text[i]), i * 100);
    cr_assert_eq(last_index(g->text[i]), i * 100 + 99);
  }
  got_free(g);
  free(s);
}

/* Sentences of exactly ten words: "sK-0 sK-1 ... sK-9." */
static char *sentences(int nsent, int per_para) {
  q_buf_t b;
  q_buf_init(&b, 16u << 20);
  for (int k = 0; k < nsent; k++) {
    if (k)
      q_buf_puts(&b, per_para && k % per_para == 0 ? "\n\n" : " ");
    for (int j = 0; j < 10; j++)
      q_buf_printf(&b, "%ss%d-%d%s", j ? " " : "", k, j, j == 9 ? "." : "");
  }
  return q_buf_steal(&b);
}

Test(chunker, prefers_sentence_ends_and_overlaps_whole_sentences) {
  char *s = sentences(30, 0); /* 300 words, one paragraph */
  got_t *g = run_s(s, 95, 25, 0);
  cr_assert_gt(g->n, 3);
  for (int i = 0; i < g->n; i++) {
    size_t len = strlen(g->text[i]);
    cr_assert_eq(g->text[i][len - 1], '.', "chunk %d ends mid-sentence: ...%s", i,
                 g->text[i] + (len > 30 ? len - 30 : 0));
    cr_assert_eq(g->text[i][0], 's');
    cr_assert(strncmp(strchr(g->text[i], '-'), "-0 ", 3) == 0,
              "chunk %d starts mid-sentence: %.30s", i, g->text[i]);
    cr_assert_leq(g->words[i], 95);
    cr_assert_eq(g->words[i] % 10, 0);
  }
  /* 90 words (9 sentences) then back 20 words (2 sentences fit in 25). */
  cr_assert_eq(g->words[0], 90);
  cr_assert_eq(strncmp(g->text[1], "s7-0 ", 5), 0, "%.20s", g->text[1]);
  got_free(g);
  free(s);
}

Test(chunker, prefers_paragraph_breaks) {
  /* Paragraphs of 7 sentences (70 words); target 100: a paragraph break at 70
   * lies in the last third, so the chunk stops there rather than at 100. */
  char *s = sentences(28, 7);
  got_t *g = run_s(s, 100, 0, 0);
  cr_assert_eq(g->n, 4);
  for (int i = 0; i < g->n; i++) {
    cr_assert_eq(g->words[i], 70, "chunk %d has %d words", i, g->words[i]);
    cr_assert_null(strstr(g->text[i], "\n\n"), "a chunk spans a paragraph break");
  }
  got_free(g);
  free(s);
}

Test(chunker, keeps_paragraph_and_line_structure_in_text) {
  got_t *g = run_s("One two.\n\n\n   Three\r\nfour   five.\tsix", 200, 40, 0);
  cr_assert_eq(g->n, 1);
  cr_assert_str_eq(g->text[0], "One two.\n\nThree\nfour five. six");
  got_free(g);
}

Test(chunker, markdown_sections_and_heading_paths) {
  const char *md = "# Guide\n"
                   "Intro text here.\n"
                   "\n"
                   "## Install\n"
                   "Run the installer.\n"
                   "### Linux ###\n"
                   "Use apt.\n"
                   "## Usage\n"
                   "Call it.\n"
                   "# Appendix\n"
                   "  ## Notes  \n"
                   "Last words.\n";
  got_t *g = run_s(md, 200, 40, 1);
  cr_assert_eq(g->n, 5);
  cr_assert_str_eq(g->text[0], "Intro text here.");
  cr_assert_str_eq(g->heading[0], "Guide");
  cr_assert_str_eq(g->text[1], "Run the installer.");
  cr_assert_str_eq(g->heading[1], "Guide > Install");
  cr_assert_str_eq(g->text[2], "Use apt.");
  cr_assert_str_eq(g->heading[2], "Guide > Install > Linux");
  cr_assert_str_eq(g->text[3], "Call it.");
  cr_assert_str_eq(g->heading[3], "Guide > Usage");
  cr_assert_str_eq(g->text[4], "Last words.");
  cr_assert_str_eq(g->heading[4], "Appendix > Notes");
  got_free(g);
}

Test(chunker, plain_text_has_no_headings) {
  got_t *g = run_s("# not a heading\nbody", 200, 40, 0);
  cr_assert_eq(g->n, 1);
  cr_assert_str_eq(g->text[0], "# not a heading\nbody");
  cr_assert_str_eq(g->heading[0], "");
  got_free(g);
}

Test(chunker, hashes_in_code_fences_and_without_space_are_not_headings) {
  const char *md = "# Title\n"
                   "```sh\n"
                   "# a shell comment\n"
                   "make\n"
                   "```\n"
                   "#hashtag is text\n"
                   "    # indented four: code, text here\n";
  got_t *g = run_s(md, 200, 40, 1);
  cr_assert_eq(g->n, 1);
  cr_assert_str_eq(g->heading[0], "Title");
  cr_assert(strstr(g->text[0], "# a shell comment"), "%s", g->text[0]);
  cr_assert(strstr(g->text[0], "#hashtag"), "%s", g->text[0]);
  cr_assert(strstr(g->text[0], "# indented"), "%s", g->text[0]);
  got_free(g);
}

Test(chunker, long_sections_split_within_their_heading) {
  q_buf_t b;
  q_buf_init(&b, 1u << 20);
  q_buf_puts(&b, "# Big\n");
  char *words = numbered_words(500, " ");
  q_buf_puts(&b, words);
  q_buf_puts(&b, "\n# Small\ntail");
  got_t *g = run(b.data, b.len, 100, 20, 1);
  int big = 0;
  for (int i = 0; i < g->n - 1; i++) {
    cr_assert_str_eq(g->heading[i], "Big");
    cr_assert_null(strstr(g->text[i], "tail"));
    big++;
  }
  cr_assert_geq(big, 6);
  cr_assert_str_eq(g->heading[g->n - 1], "Small");
  cr_assert_str_eq(g->text[g->n - 1], "tail");
  got_free(g);
  free(words);
  q_buf_cleanup(&b);
}

Test(chunker, huge_input_stays_bounded_and_covers_every_word) {
  int nwords = 300000;
  char *s = numbered_words(nwords, " ");
  chunker_opts_t o = {200, 40, NULL};
  chunker_t *c;
  char err[64];
  chunker_input_t in = {.text = s, .len = strlen(s)};
  cr_assert_eq(chunker_new(&in, &o, &c, err, sizeof err), Q_OK);
  chunk_t ch;
  int n = 0, next_new = 0;
  while (chunker_next(c, &ch) == 1) {
    cr_assert_leq(ch.words, 200);
    int first = first_index(ch.text), last = last_index(ch.text);
    cr_assert_leq(first, next_new, "a gap before w%d", first);
    cr_assert_gt(last, next_new - 1, "chunk %d adds nothing new", n);
    next_new = last + 1;
    n++;
  }
  cr_assert_eq(next_new, nwords);
  cr_assert_eq(n, (nwords - 40 + 159) / 160);
  chunker_free(c);
  free(s);
}

Test(chunker, very_long_words_are_cut_at_character_boundaries) {
  /* 3000 bytes with no white space, mostly two-byte characters. */
  q_buf_t b;
  q_buf_init(&b, 1u << 16);
  q_buf_puts(&b, "a");
  for (int i = 0; i < 1500; i++)
    q_buf_puts(&b, "\xc3\xa9"); /* é */
  got_t *g = run(b.data, b.len, 4, 0, 0);
  q_buf_t joined;
  q_buf_init(&joined, 1u << 16);
  for (int i = 0; i < g->n; i++) {
    cr_assert_leq(strlen(g->text[i]), 4 * CHUNKER_MAX_WORD);
    size_t len = strlen(g->text[i]);
    cr_assert_eq(q_valid_utf8_prefix(g->text[i], len), len, "chunk %d cut a character",
                 i);
    q_buf_puts(&joined, g->text[i]);
  }
  cr_assert_str_eq(joined.data, b.data, "pieces glue back together");
  got_free(g);
  q_buf_cleanup(&b);
  q_buf_cleanup(&joined);
}

/* ---- chunks the embedder accepts, whatever the document looks like ------ */

/* A deterministic pseudo-random sequence, so the documents below have no
 * repeating period and a chunk can be found back in its document. */
static unsigned next_rand(unsigned *state) {
  *state = *state * 1103515245u + 12345u;
  return (*state >> 16) & 0x7fff;
}

/* Chunks doc with the service's default sizes (QUARRY_CHUNK_TOKENS 200,
 * overlap as given) and checks every chunk the way the worker sends it to
 * the embedder: heading path, blank line, text. */
static got_t *run_embeddable(const char *doc, size_t n, int overlap, int md) {
  got_t *g = run(doc, n, 200, overlap, md);
  for (int i = 0; i < g->n; i++) {
    size_t len = strlen(g->text[i]), hl = strlen(g->heading[i]);
    size_t sent = hl ? hl + 2 + len : len;
    cr_assert_leq(len, CHUNKER_MAX_BYTES, "chunk %d has %zu bytes", i, len);
    cr_assert_leq(sent, Q_LIMIT_EMBED_TEXT_BYTES,
                  "chunk %d: %zu bytes go to the embedder, which takes at most %d", i,
                  sent, Q_LIMIT_EMBED_TEXT_BYTES);
    cr_assert(q_valid_utf8(g->text[i], len), "chunk %d cuts a UTF-8 sequence", i);
    cr_assert(q_valid_utf8(g->heading[i], hl), "heading %d cuts a UTF-8 sequence", i);
  }
  return g;
}

static size_t largest(const got_t *g) {
  size_t m = 0;
  for (int i = 0; i < g->n; i++)
    if (strlen(g->text[i]) > m)
      m = strlen(g->text[i]);
  return m;
}

/* 1 when piece[0..len) lies whole inside one chunk. */
static int in_some_chunk(const got_t *g, const char *piece, size_t len) {
  for (int i = 0; i < g->n; i++)
    if (memmem(g->text[i], strlen(g->text[i]), piece, len))
      return 1;
  return 0;
}

/* About bytes of Japanese prose without a single space or line break:
 * kanji and kana (three bytes each in UTF-8), a few characters outside the
 * BMP (four bytes: U+20BB7, as in names), commas, and a full stop every 20
 * to 60 characters. */
static char *japanese_paragraph(size_t bytes) {
  static const char *const chars[] = {
      "日", "本", "語", "文", "章", "検", "索", "情",
      "報", "資", "料", "社", "員", "規", "程", "出",
      "張", "経", "費", "申", "請", "承", "認", "手",
      "続", "き", "の", "は", "が", "を", "に", "で",
      "と", "す", "る", "ま", "た", "し", "て", "い",
      "カ", "ー", "ド", "シ", "ス", "テ", "ム", "\xf0\xa0\xae\xb7",
      "、"};
  const size_t nchars = sizeof chars / sizeof chars[0];
  q_buf_t b;
  q_buf_init(&b, bytes + 64);
  unsigned st = 7;
  int since_stop = 0;
  while (b.len < bytes) {
    if (since_stop > 20 && next_rand(&st) % 40 == 0) {
      q_buf_puts(&b, "。");
      since_stop = 0;
      continue;
    }
    q_buf_puts(&b, chars[next_rand(&st) % nchars]);
    since_stop++;
  }
  return q_buf_steal(&b);
}

Test(chunker, unbroken_japanese_paragraph_fits_the_embedder) {
  char *doc = japanese_paragraph(200u << 10);
  size_t n = strlen(doc);
  cr_assert_null(memchr(doc, ' ', n), "no spaces");
  cr_assert_null(memchr(doc, '\n', n), "no line breaks");

  /* Without overlap the chunks glue back into the document exactly. */
  got_t *g = run_embeddable(doc, n, 0, 0);
  cr_assert_gt(largest(g), Q_LIMIT_EMBED_TEXT_BYTES / 2,
               "the byte cap, not words, ends chunks");
  q_buf_t joined;
  q_buf_init(&joined, n + 1);
  for (int i = 0; i < g->n; i++)
    cr_assert_eq(q_buf_puts(&joined, g->text[i]), 0);
  cr_assert_eq(joined.len, n);
  cr_assert(memcmp(joined.data, doc, n) == 0, "the chunks partition the paragraph");
  q_buf_cleanup(&joined);
  got_free(g);

  /* With the default overlap every chunk is a piece of the paragraph that
   * starts inside the previous one, and the last one reaches its end. */
  g = run_embeddable(doc, n, 40, 0);
  size_t prev_start = 0, prev_end = 0;
  for (int i = 0; i < g->n; i++) {
    size_t len = strlen(g->text[i]);
    const char *at = memmem(doc + (i ? prev_start + 1 : 0), n - (i ? prev_start + 1 : 0),
                            g->text[i], len);
    cr_assert_not_null(at, "chunk %d is not a piece of the paragraph", i);
    size_t start = (size_t)(at - doc);
    cr_assert(i == 0 ? start == 0 : start <= prev_end, "a gap before chunk %d", i);
    cr_assert(i == 0 || start + len > prev_end, "chunk %d adds nothing", i);
    prev_start = start;
    prev_end = start + len;
  }
  cr_assert_eq(prev_end, n, "the paragraph's end is chunked");
  got_free(g);
  free(doc);
}

/* count bytes of base64 text. */
static void put_base64(q_buf_t *b, size_t count, unsigned seed) {
  static const char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < count; i++) {
    char c = alphabet[next_rand(&seed) % 64];
    q_buf_append(b, &c, 1);
  }
}

/* An image's data URI is markup (the Markdown extractor keeps the alt
 * text only), but the same 100 KB in a code block is text, kept whole. */
Test(chunker, markdown_with_a_data_uri_fits_the_embedder) {
  q_buf_t b;
  q_buf_init(&b, 1u << 20);
  q_buf_puts(&b, "# Architecture\n\n![flow diagram](data:image/png;base64,AAAA)\n\n"
                 "## Request flow\n\nThe request flow is shown below.\n\n"
                 "```\ndata:image/png;base64,");
  size_t data_at = b.len;
  put_base64(&b, 100u << 10, 11);
  size_t data_end = b.len;
  q_buf_puts(&b, "\n```\n\nThe gateway forwards each request to the services.\n");

  got_t *g = run_embeddable(b.data, b.len, 40, 1);
  cr_assert_gt(largest(g), Q_LIMIT_EMBED_TEXT_BYTES / 2,
               "the byte cap, not words, ends chunks");
  cr_assert_str_eq(g->text[0], "flow diagram", "the alt text, not the URI");
  cr_assert_str_eq(g->heading[0], "Architecture");
  for (int i = 1; i < g->n; i++)
    cr_assert_str_eq(g->heading[i], "Architecture > Request flow");
  /* Every part of the image survives into some chunk. */
  for (size_t off = data_at; off + 200 <= data_end; off += 200)
    cr_assert(in_some_chunk(g, b.data + off, 200), "image bytes at %zu are lost", off);
  cr_assert(strstr(g->text[1], "The request flow is shown below."));
  cr_assert(strstr(g->text[g->n - 1], "The gateway forwards each request"));
  got_free(g);
  q_buf_cleanup(&b);
}

Test(chunker, csv_with_a_long_line_fits_the_embedder) {
  q_buf_t b;
  q_buf_init(&b, 1u << 20);
  q_buf_puts(&b, "id,name,readings\n1,alpha,0.5\n2,beta,");
  size_t line_at = b.len;
  unsigned st = 3;
  while (b.len - line_at < (100u << 10))
    q_buf_printf(&b, "%u.%03u,", next_rand(&st) % 100, next_rand(&st) % 1000);
  size_t line_end = b.len;
  q_buf_puts(&b, "0\n3,gamma,0.25\n");

  got_t *g = run_embeddable(b.data, b.len, 40, 0);
  cr_assert_gt(largest(g), Q_LIMIT_EMBED_TEXT_BYTES / 2,
               "the byte cap, not words, ends chunks");
  for (size_t off = line_at; off + 200 <= line_end; off += 200)
    cr_assert(in_some_chunk(g, b.data + off, 200), "line bytes at %zu are lost", off);
  cr_assert(strstr(g->text[0], "1,alpha,0.5"));
  cr_assert(strstr(g->text[g->n - 1], "3,gamma,0.25"));
  got_free(g);
  q_buf_cleanup(&b);
}

Test(chunker, large_targets_stay_within_the_byte_cap) {
  /* The largest target in words, with ordinary words of 24 bytes: 4096 of
   * them make 100 KB, far over the cap. */
  q_buf_t b;
  q_buf_init(&b, 8u << 20);
  for (int i = 0; i < 50000; i++)
    q_buf_printf(&b, "%sword%019d", i ? " " : "", i);
  got_t *g = run(b.data, b.len, CHUNKER_MAX_TARGET, 100, 0);
  int next_new = 0;
  for (int i = 0; i < g->n; i++) {
    cr_assert_leq(strlen(g->text[i]), CHUNKER_MAX_BYTES, "chunk %d", i);
    int first = atoi(g->text[i] + 4), last = atoi(strrchr(g->text[i], 'd') + 1);
    cr_assert_leq(first, next_new, "a gap before word %d", first);
    cr_assert_geq(last, next_new, "chunk %d adds nothing new", i);
    next_new = last + 1;
  }
  cr_assert_eq(next_new, 50000, "every word is chunked");
  cr_assert_gt(largest(g), CHUNKER_MAX_BYTES - 100);
  got_free(g);
  q_buf_cleanup(&b);
}

Test(chunker, chunk_ids) {
  char id[128];
  cr_assert_eq(
      chunker_chunk_id(id, sizeof id, "6f1c1c2e-0000-4000-8000-000000000001", 3, 17),
      strlen("6f1c1c2e-0000-4000-8000-000000000001:3:17"));
  cr_assert_str_eq(id, "6f1c1c2e-0000-4000-8000-000000000001:3:17");
  cr_assert_eq(chunker_chunk_id(id, sizeof id, "d", 1, 0), 5);
  cr_assert_str_eq(id, "d:1:0");
  cr_assert_eq(chunker_chunk_id(id, 5, "d", 1, 0), 0, "too small");
  cr_assert_str_eq(id, "");
}

Test(chunker, chunks_carry_the_page_of_their_first_word) {
  /* Three pages of 30 words; chunks of 20 words without overlap. */
  q_buf_t b;
  q_buf_init(&b, 1u << 20);
  chunker_page_t pages[3];
  for (int p = 0; p < 3; p++) {
    if (p)
      q_buf_puts(&b, "\n\n");
    pages[p] = (chunker_page_t){b.len, p + 1};
    for (int w = 0; w < 30; w++)
      q_buf_printf(&b, "%sp%dw%d", w ? " " : "", p + 1, w);
  }
  chunker_input_t in = {.text = b.data, .len = b.len, .pages = pages, .npages = 3};
  chunker_opts_t o = {20, 0, NULL};
  chunker_t *c;
  char err[64];
  cr_assert_eq(chunker_new(&in, &o, &c, err, sizeof err), Q_OK);
  chunk_t ch;
  int n = 0;
  while (chunker_next(c, &ch) == 1) {
    int page = atoi(ch.text + 1);
    cr_assert_eq(ch.page, page, "chunk %d starts on page %d: %s", n, page, ch.text);
    n++;
  }
  cr_assert_geq(n, 5);
  chunker_free(c);
  q_buf_cleanup(&b);
}

/* ---- strategies, tables, offsets --------------------------------------- */

/* The byte offset of character k of s. */
static size_t byte_of(const char *s, size_t k) {
  size_t i = 0;
  for (; s[i]; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80 && k-- == 0)
      return i;
  return i;
}

/* Chunks d with strategy st; checks that each chunk after its lead is the
 * document's text at its offsets; returns the chunks (lead kept). */
static got_t *run_doc(const doc_t *d, const char *st, int target, int overlap,
                      size_t *leads) {
  chunker_input_t in;
  doc_input(d, &in);
  chunker_opts_t o = {target, overlap, chunker_strategy(st)};
  cr_assert_not_null(o.strategy);
  chunker_t *c;
  char err[256];
  cr_assert_eq(chunker_new(&in, &o, &c, err, sizeof err), Q_OK, "%s", err);
  got_t *g = calloc(1, sizeof *g);
  chunk_t ch;
  while (chunker_next(c, &ch) == 1) {
    size_t b0 = byte_of(in.text, ch.start), b1 = byte_of(in.text, ch.end);
    cr_assert_lt(ch.lead, ch.len);
    cr_assert_eq(b1 - b0, ch.len - ch.lead, "chunk %d: [%zu,%zu) vs %zu bytes", g->n,
                 ch.start, ch.end, ch.len - ch.lead);
    cr_assert(memcmp(in.text + b0, ch.text + ch.lead, b1 - b0) == 0,
              "chunk %d is the text at its offsets", g->n);
    cr_assert_leq(ch.words, target);
    if (leads)
      leads[g->n] = ch.lead;
    g->text[g->n] = strdup(ch.text);
    g->heading[g->n] = strdup(ch.heading);
    g->words[g->n] = ch.words;
    g->n++;
  }
  chunker_free(c);
  return g;
}

static void add(doc_t *d, extract_kind_t k, int level, const char *s) {
  cr_assert_eq(doc_add_cb(d, k, level, 1, s, strlen(s)), Q_OK);
}

Test(chunker, strategies_by_name) {
  cr_assert_str_eq(chunker_strategy_name(chunker_strategy("structure")), "structure");
  cr_assert_str_eq(chunker_strategy_name(chunker_strategy("fixed")), "fixed");
  cr_assert_str_eq(chunker_strategy_name(NULL), CHUNKER_DEFAULT_STRATEGY);
  cr_assert_null(chunker_strategy("Fixed"));
  cr_assert_null(chunker_strategy(""));
  cr_assert_null(chunker_strategy(NULL));
}

/* A table of a header and 40 rows of 6 words, under a heading, after a
 * paragraph: larger than a chunk of 50 words. */
static void table_doc(doc_t *d) {
  doc_init(d, CHUNK_BY_SECTION, 1u << 20);
  add(d, EXTRACT_HEADING, 1, "Prices");
  add(d, EXTRACT_PARAGRAPH, 0, "The table below lists every part. It is long.");
  add(d, EXTRACT_TABLE_ROW, 0, "Part | Colour | Price");
  char row[64];
  for (int i = 0; i < 40; i++) {
    snprintf(row, sizeof row, "p%d | red | %d euro", i, i);
    add(d, EXTRACT_TABLE_ROW, 0, row);
  }
  add(d, EXTRACT_PARAGRAPH, 0, "After the table.");
}

Test(chunker, split_table_repeats_its_header_row_in_every_piece) {
  doc_t d;
  table_doc(&d);
  cr_assert_eq(d.ntables, 1);
  size_t leads[64];
  got_t *g = run_doc(&d, "structure", 50, 10, leads);
  /* The paragraph before the table is a chunk of its own: the table does
   * not fit beside it. */
  cr_assert_str_eq(g->text[0], "The table below lists every part. It is long.");
  int pieces = 0, rows = 0, next_row = 0;
  for (int i = 1; i < g->n; i++) {
    if (!strstr(g->text[i], "| red |"))
      continue;
    pieces++;
    cr_assert_str_eq(g->heading[i], "Prices");
    cr_assert(strncmp(g->text[i], "Part | Colour | Price\n", 22) == 0,
              "piece %d starts with the header row: %s", i, g->text[i]);
    cr_assert_eq(leads[i], pieces == 1 ? 0 : 22);
    /* Whole rows, in order, no row twice (pieces do not overlap). */
    for (const char *p = strchr(g->text[i], '\n'); p; p = strchr(p + 1, '\n')) {
      int k = -1;
      cr_assert_eq(sscanf(p + 1, "p%d | red |", &k), 1, "a whole row: %s", p + 1);
      cr_assert_eq(k, next_row);
      next_row++;
      rows++;
    }
  }
  cr_assert_gt(pieces, 1, "the table was split");
  cr_assert_eq(rows, 40, "every row once");
  cr_assert(strstr(g->text[g->n - 1], "After the table."));
  got_free(g);
  doc_cleanup(&d);
}

Test(chunker, a_table_that_fits_stays_whole) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1u << 20);
  /* 30 words of text, then a table of 4 rows (16 words): target 40. */
  add(&d, EXTRACT_PARAGRAPH, 0,
      "one two three four five six seven eight nine ten. one two three four five six "
      "seven eight nine ten. one two three four five six seven eight nine ten.");
  add(&d, EXTRACT_TABLE_ROW, 0, "a | b | c");
  add(&d, EXTRACT_TABLE_ROW, 0, "1 | 2 | 3");
  add(&d, EXTRACT_TABLE_ROW, 0, "4 | 5 | 6");
  add(&d, EXTRACT_TABLE_ROW, 0, "7 | 8 | 9");
  got_t *g = run_doc(&d, "structure", 40, 5, NULL);
  int whole = 0;
  for (int i = 0; i < g->n; i++) {
    bool has = strstr(g->text[i], "a | b | c") != NULL;
    cr_assert_eq(has, strstr(g->text[i], "7 | 8 | 9") != NULL,
                 "chunk %d holds all of the table or none: %s", i, g->text[i]);
    whole += has;
  }
  cr_assert_eq(whole, 1);
  got_free(g);
  /* The fixed strategy cuts through it. */
  g = run_doc(&d, "fixed", 40, 5, NULL);
  cr_assert_eq(g->n, 2);
  cr_assert_eq(g->words[0], 40);
  got_free(g);
  doc_cleanup(&d);
}

Test(chunker, fixed_windows_cross_headings_and_keep_the_heading_path) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1u << 20);
  add(&d, EXTRACT_HEADING, 1, "A");
  add(&d, EXTRACT_PARAGRAPH, 0, "a1 a2 a3 a4 a5 a6 a7 a8. a9 a10 a11 a12.");
  add(&d, EXTRACT_HEADING, 1, "B");
  add(&d, EXTRACT_PARAGRAPH, 0, "b1 b2 b3 b4 b5 b6 b7 b8 b9 b10 b11 b12 b13 b14");
  got_t *g = run_doc(&d, "fixed", 10, 2, NULL);
  /* 26 words, windows of 10 starting every 8 words: 0, 8, 16 (to the end). */
  cr_assert_eq(g->n, 3);
  cr_assert_eq(g->words[0], 10);
  cr_assert_eq(g->words[1], 10);
  cr_assert(strncmp(g->text[1], "a9 a10 a11 a12.\n\nb1", 19) == 0, "%s", g->text[1]);
  cr_assert_str_eq(g->heading[0], "A");
  cr_assert_str_eq(g->heading[1], "A"); /* its first word is under A */
  cr_assert_str_eq(g->heading[2], "B");
  got_free(g);
  /* structure: never across the heading. */
  g = run_doc(&d, "structure", 10, 2, NULL);
  for (int i = 0; i < g->n; i++)
    cr_assert(!(strstr(g->text[i], "a1") && strstr(g->text[i], "b1")));
  got_free(g);
  doc_cleanup(&d);
}

Test(chunker,
     structure_ends_at_a_sentence_end_in_the_first_half_rather_than_mid_sentence) {
  /* A 4-word sentence, then one of 30 words: a 20-word window ends after
   * the first sentence, not inside the second. */
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1u << 20);
  q_buf_t b;
  q_buf_init(&b, 4096);
  q_buf_puts(&b, "Short one is here.");
  for (int i = 0; i < 30; i++)
    q_buf_printf(&b, " long%d", i);
  q_buf_puts(&b, ".");
  add(&d, EXTRACT_PARAGRAPH, 0, b.data);
  got_t *g = run_doc(&d, "structure", 20, 0, NULL);
  cr_assert_str_eq(g->text[0], "Short one is here.");
  /* The long sentence exceeds the window: it is cut, as it must be. */
  cr_assert_eq(g->words[1], 20);
  got_free(g);
  q_buf_cleanup(&b);
  doc_cleanup(&d);
}

Test(chunker, offsets_count_characters_not_bytes) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1u << 20);
  add(&d, EXTRACT_PARAGRAPH, 0, "Ünïcödé wörds hère. Second séntence follows.");
  add(&d, EXTRACT_PARAGRAPH, 0, "Thïrd paragraph.");
  chunker_input_t in;
  doc_input(&d, &in);
  chunker_opts_t o = {4, 0, NULL};
  chunker_t *c;
  char err[128];
  cr_assert_eq(chunker_new(&in, &o, &c, err, sizeof err), Q_OK);
  chunk_t ch;
  cr_assert_eq(chunker_next(c, &ch), 1);
  cr_assert_str_eq(ch.text, "Ünïcödé wörds hère.");
  cr_assert_eq(ch.start, 0);
  cr_assert_eq(ch.end, 19); /* characters; 26 bytes */
  cr_assert_eq(chunker_next(c, &ch), 1);
  cr_assert_str_eq(ch.text, "Second séntence follows.");
  cr_assert_eq(ch.start, 20);
  cr_assert_eq(ch.end, 44);
  cr_assert_eq(chunker_next(c, &ch), 1);
  cr_assert_eq(ch.start, 46); /* after the blank line */
  chunker_free(c);
  doc_cleanup(&d);
}

Test(chunker, strategies_are_the_ones_the_api_names) {
  /* quarry/chunking.h lists the names the gateway accepts; each must be a
   * strategy here, and the default must be the first. */
  char names[] = Q_CHUNKING_STRATEGY_NAMES;
  int n = 0;
  for (char *save, *t = strtok_r(names, ", ", &save); t;
       t = strtok_r(NULL, ", ", &save)) {
    cr_assert_not_null(chunker_strategy(t), "%s", t);
    cr_assert(q_chunking_known(t));
    if (n++ == 0)
      cr_assert_str_eq(t, CHUNKER_DEFAULT_STRATEGY);
  }
  cr_assert_eq(n, 2);
}

Test(chunker, opts_from_a_spec_take_defaults_for_empty_parts) {
  chunker_opts_t def = {200, 40, NULL}, o;
  char err[256], spec[Q_LIMIT_CHUNKING_BYTES + 1];
  cr_assert_eq(chunker_opts_parse("", &def, &o, err, sizeof err), Q_OK);
  chunker_opts_format(&o, spec, sizeof spec);
  cr_assert_str_eq(spec, "structure:200:40");
  cr_assert_eq(chunker_opts_parse("fixed::", &def, &o, err, sizeof err), Q_OK);
  chunker_opts_format(&o, spec, sizeof spec);
  cr_assert_str_eq(spec, "fixed:200:40");
  /* A smaller window keeps at most half of it as the default overlap. */
  cr_assert_eq(chunker_opts_parse(":50:", &def, &o, err, sizeof err), Q_OK);
  chunker_opts_format(&o, spec, sizeof spec);
  cr_assert_str_eq(spec, "structure:50:25");
  cr_assert_eq(chunker_opts_parse("fixed:64:0", &def, &o, err, sizeof err), Q_OK);
  cr_assert_eq(o.target_words, 64);
  cr_assert_eq(o.overlap_words, 0);
  cr_assert_str_eq(chunker_strategy_name(o.strategy), "fixed");
  cr_assert_eq(chunker_opts_parse("pages::", &def, &o, err, sizeof err), Q_EINVAL);
  cr_assert(strstr(err, "chunking"), "%s", err);
}

/* A chunk that ends before a table it cannot hold is not followed by a
 * chunk of its overlap alone: the table starts the next chunk. */
Test(chunker, no_chunk_of_overlap_before_a_table) {
  doc_t d;
  doc_init(&d, CHUNK_BY_SECTION, 1u << 20);
  add(&d, EXTRACT_PARAGRAPH, 0,
      "one two three four five six seven eight nine ten eleven twelve thirteen.");
  char row[64];
  for (int i = 0; i < 12; i++) {
    snprintf(row, sizeof row, "r%d | x | y", i);
    add(&d, EXTRACT_TABLE_ROW, 0, row);
  }
  got_t *g = run_doc(&d, "structure", 20, 8, NULL);
  for (int i = 0; i < g->n; i++)
    cr_assert(strstr(g->text[i], "|") || strstr(g->text[i], "thirteen."),
              "chunk %d is only overlap: %s", i, g->text[i]);
  int plain = 0;
  for (int i = 0; i < g->n; i++)
    plain += strstr(g->text[i], "|") == NULL;
  cr_assert_eq(plain, 1, "the paragraph once");
  got_free(g);
  doc_cleanup(&d);
}
