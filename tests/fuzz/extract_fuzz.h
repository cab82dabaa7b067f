/* extract_fuzz.h - what the extractor targets (fuzz_extract_*.c) share:
 * running one of ingestion's extractors in this process (not through the
 * sandbox) on the input and checking what it emits.
 *
 * Checked beyond "no crash, no sanitizer report": every record is of a
 * known kind, non-empty, valid UTF-8 without control characters other
 * than line breaks (paragraphs) or none at all (one-line kinds), on a page
 * >= 0, heading levels 1..6; the records together stay within the text
 * limit; the result is 0 or one of the codes extract.h names, and a
 * failure comes with a reason. */
#ifndef QUARRY_EXTRACT_FUZZ_H
#define QUARRY_EXTRACT_FUZZ_H

#include "extract/extract.h"
#include "fuzz.h"
#include "quarry/validate.h"

#define EXTRACT_FUZZ_TEXT_MAX (1 << 20)

typedef struct fuzz_sink {
  int64_t bytes;
  int records;
} fuzz_sink_t;

static q_err_t fuzz_sink_cb(void *ud, extract_kind_t kind, int level, int page,
                            const char *text, size_t len) {
  fuzz_sink_t *s = ud;
  FUZZ_CHECK(kind >= EXTRACT_TITLE && kind <= EXTRACT_KIND_MAX, "kind %d", (int)kind);
  FUZZ_CHECK(len > 0, "empty record of kind %d", (int)kind);
  FUZZ_CHECK(q_valid_utf8(text, len), "record of kind %d is not UTF-8", (int)kind);
  bool one_line = kind != EXTRACT_PARAGRAPH && kind != EXTRACT_LIST_ITEM;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    FUZZ_CHECK(c >= 0x20 || c == '\t' || (c == '\n' && !one_line),
               "control byte 0x%02x in a record of kind %d", c, (int)kind);
  }
  FUZZ_CHECK(page >= 0, "page %d", page);
  if (kind == EXTRACT_HEADING)
    FUZZ_CHECK(level >= 1 && level <= EXTRACT_HEADING_LEVELS, "heading level %d", level);
  s->bytes += (int64_t)len;
  s->records++;
  return Q_OK;
}

/* Runs x on data[0..size) with charset ("" for none) and checks it. */
static void fuzz_extractor(const extractor_t *x, const uint8_t *data, size_t size,
                           const char *charset) {
  static const extract_limits_t lim = {EXTRACT_FUZZ_TEXT_MAX, 8 << 20, 200, 64};
  char err[512] = "";
  fuzz_sink_t s = {0, 0};
  extract_ctx_t ctx;
  extract_ctx_init(&ctx, (const char *)data, size, charset, &lim, fuzz_sink_cb, &s, err,
                   sizeof err);
  q_err_t rc = extract_run(x, &ctx);
  extract_ctx_cleanup(&ctx);
  FUZZ_CHECK(rc == Q_OK || rc == Q_EINVAL || rc == Q_EUNSUPPORTED || rc == Q_ETOOBIG ||
                 rc == Q_ENOMEM,
             "%s returned %d (%s)", x->name, rc, err);
  FUZZ_CHECK(rc == Q_OK || err[0], "%s failed (%d) without a reason", x->name, rc);
  FUZZ_CHECK(s.bytes <= EXTRACT_FUZZ_TEXT_MAX, "%s emitted %lld bytes", x->name,
             (long long)s.bytes);
}

#endif
