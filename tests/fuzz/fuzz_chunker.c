/* fuzz_chunker.c - ingestion's document builder (extract/doc.c) and
 * chunker (chunker.c) on records made from the input, as an extractor
 * would emit them.
 *
 * Input: byte 0 picks the chunk size (1..64 words, small so that inputs
 * of a few KiB make many chunks), byte 1 the overlap (0..size/2), byte 2
 * page or section chunking (bit 0) and the strategy (bit 1: fixed, else
 * structure); the rest is records, one a line: "#<1-6>"
 * starts a heading, "-" a list item, "|" a table row, "\f" a new page,
 * anything else a paragraph. Records go through extract_emit (which
 * normalises them) into a doc_t, then through the chunker.
 *
 * Checked: every chunk is 1..CHUNKER_MAX_BYTES bytes of valid UTF-8,
 * NUL-terminated, of 1..size words; ordinals count from 0; pages never go
 * back and are pages the document has; heading paths are shorter than
 * CHUNKER_HEADING_MAX; a chunk's text after its lead is the document's
 * text between its character offsets; the chunker ends, after at most two chunks per
 * input byte. */
#include <string.h>

#include "chunker.h"
#include "extract/doc.h"
#include "extract/extract.h"
#include "fuzz.h"
#include "quarry/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The byte offset of character k of s[0..n) (n when past the end). */
static size_t byte_of(const char *s, size_t n, size_t k) {
  size_t i = 0;
  for (; i < n; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80 && k-- == 0)
      return i;
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 3)
    return 0;
  chunker_opts_t opts = {1 + data[0] % 64, 0,
                         chunker_strategy(data[2] & 2 ? "fixed" : "structure")};
  opts.overlap_words = data[1] % (opts.target_words / 2 + 1);
  format_chunking_t mode = data[2] & 1 ? CHUNK_BY_PAGE : CHUNK_BY_SECTION;
  const char *s = (const char *)data + 3, *end = (const char *)data + size;

  doc_t d;
  doc_init(&d, mode, 1 << 20);
  char err[256] = "";
  extract_ctx_t ctx;
  static const extract_limits_t lim = {1 << 20, 1 << 20, 10, 64};
  extract_ctx_init(&ctx, s, (size_t)(end - s), "", &lim, doc_add_cb, &d, err, sizeof err);
  int page = 1;
  q_err_t rc = Q_OK;
  while (s < end && !rc) {
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    size_t n = nl ? (size_t)(nl - s) : (size_t)(end - s);
    if (n >= 2 && s[0] == '#' && s[1] >= '1' && s[1] <= '6')
      rc = extract_emit(&ctx, EXTRACT_HEADING, s[1] - '0', page, s + 2, n - 2);
    else if (n >= 1 && s[0] == '-')
      rc = extract_emit(&ctx, EXTRACT_LIST_ITEM, 1, page, s + 1, n - 1);
    else if (n >= 1 && s[0] == '|')
      rc = extract_emit(&ctx, EXTRACT_TABLE_ROW, 0, page, s + 1, n - 1);
    else if (n >= 1 && s[0] == '\f')
      page++;
    else
      rc = extract_emit(&ctx, EXTRACT_PARAGRAPH, 0, page, s, n);
    s += n + (nl ? 1 : 0);
  }
  extract_ctx_cleanup(&ctx);
  FUZZ_CHECK(rc == Q_OK || rc == Q_ETOOBIG, "building the doc: %d (%s)", rc, err);

  chunker_input_t in;
  doc_input(&d, &in);
  chunker_t *c = NULL;
  rc = chunker_new(&in, &opts, &c, err, sizeof err);
  FUZZ_CHECK(rc == Q_OK, "chunker_new: %d (%s)", rc, err);
  chunk_t ch;
  int k, ordinal = 0, last_page = 0;
  while ((k = chunker_next(c, &ch)) == 1) {
    FUZZ_CHECK(ch.len >= 1 && ch.len <= CHUNKER_MAX_BYTES, "chunk of %zu bytes", ch.len);
    FUZZ_CHECK(strlen(ch.text) == ch.len, "chunk text not terminated at its length");
    FUZZ_CHECK(q_valid_utf8(ch.text, ch.len), "chunk %d is not UTF-8", ch.ordinal);
    FUZZ_CHECK(ch.words >= 1 && ch.words <= opts.target_words, "%d words, target %d",
               ch.words, opts.target_words);
    FUZZ_CHECK(ch.ordinal == ordinal, "ordinal %d, expected %d", ch.ordinal, ordinal);
    FUZZ_CHECK(ch.page >= last_page && ch.page <= page, "page %d after %d (of %d)",
               ch.page, last_page, page);
    FUZZ_CHECK(ch.heading && strlen(ch.heading) < CHUNKER_HEADING_MAX, "heading");
    /* The chunk's text after its lead is the document's text between its
     * character offsets (the extractors normalise white space). */
    size_t b0 = byte_of(in.text, in.len, ch.start), b1 = byte_of(in.text, in.len, ch.end);
    FUZZ_CHECK(ch.start < ch.end && b1 <= in.len && ch.lead < ch.len &&
                   b1 - b0 == ch.len - ch.lead &&
                   memcmp(in.text + b0, ch.text + ch.lead, b1 - b0) == 0,
               "chunk %d is not the text at [%zu, %zu)", ch.ordinal, ch.start, ch.end);
    ordinal++;
    last_page = ch.page;
    FUZZ_CHECK(ordinal <= (int)(size * 2 + 8), "%d chunks from %zu bytes", ordinal, size);
  }
  FUZZ_CHECK(k == 0, "chunker_next: %d", k);
  chunker_free(c);
  doc_cleanup(&d);
  return 0;
}
