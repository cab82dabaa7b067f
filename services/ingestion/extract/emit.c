/* extract/emit.c - what every extractor shares: the context, normalising
 * records on their way to the sink, table rows (see extract.h). */
#include "extract/extract.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "quarry/text.h"
#include "quarry/validate.h"

#define NORM_MAX (64u << 20) /* one record: a page of a PDF, a <pre> block */

void extract_ctx_init(extract_ctx_t *ctx, const char *data, size_t size,
                      const char *charset, const extract_limits_t *limits,
                      extract_sink_cb sink, void *ud, char *err, size_t errlen) {
  memset(ctx, 0, sizeof *ctx);
  ctx->data = data ? data : "";
  ctx->size = data ? size : 0;
  ctx->charset = charset ? charset : "";
  ctx->limits = *limits;
  ctx->sink = sink;
  ctx->sink_ud = ud;
  ctx->err = err;
  ctx->errlen = errlen;
  if (errlen)
    err[0] = '\0';
  q_buf_init(&ctx->norm, NORM_MAX);
  q_buf_init(&ctx->row, NORM_MAX);
}

void extract_ctx_cleanup(extract_ctx_t *ctx) {
  q_buf_cleanup(&ctx->norm);
  q_buf_cleanup(&ctx->row);
}

q_err_t extract_fail(extract_ctx_t *ctx, q_err_t rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (ctx->errlen)
    vsnprintf(ctx->err, ctx->errlen, fmt, ap);
  va_end(ap);
  return rc;
}

static bool is_blank(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Appends text[0..len) to b normalised: invalid UTF-8 becomes U+FFFD,
 * control characters (C0 but \t \n, DEL, C1) are dropped, runs of blanks
 * become one space and runs of line breaks one line break (or, when
 * one_line, a space too), without white space at either end of what b
 * held before. */
static q_err_t normalise(q_buf_t *b, const char *text, size_t len, bool one_line) {
  size_t start = b->len;
  int pending = 0; /* 0 none, 1 space, 2 line break */
  for (size_t i = 0; i < len;) {
    unsigned char c = (unsigned char)text[i];
    if (c == '\n' || is_blank(c)) {
      int k = (c == '\n' && !one_line) ? 2 : 1;
      if (k > pending)
        pending = k;
      i++;
      continue;
    }
    size_t n = q_valid_utf8_seq(text + i, len - i);
    const char *p = text + i;
    if (n == 0) { /* a stray byte (or NUL): one replacement character */
      p = "\xef\xbf\xbd";
      n = 3;
      i++;
    } else {
      i += n;
      if (n == 1 && (c < 0x20 || c == 0x7f))
        continue;
      if (n == 2 && (unsigned char)p[0] == 0xc2 && (unsigned char)p[1] < 0xa0)
        continue; /* C1 controls */
    }
    if (pending && b->len > start) {
      q_err_t rc = q_buf_append(b, pending == 2 ? "\n" : " ", 1);
      if (rc)
        return rc;
    }
    pending = 0;
    q_err_t rc = q_buf_append(b, p, n);
    if (rc)
      return rc;
  }
  return Q_OK;
}

q_err_t extract_text_too_big(extract_ctx_t *ctx) {
  /* In KiB below a MiB: QUARRY_EXTRACT_MAX_TEXT_BYTES goes down to 64 KiB. */
  long long max = (long long)ctx->limits.max_text_bytes;
  return max >= (1 << 20)
             ? extract_fail(ctx, Q_ETOOBIG, "the extracted text is larger than %lld MiB",
                            max >> 20)
             : extract_fail(ctx, Q_ETOOBIG, "the extracted text is larger than %lld KiB",
                            max >> 10);
}

static q_err_t sink_rc(extract_ctx_t *ctx, q_err_t rc) {
  if (rc == Q_ETOOBIG)
    return extract_text_too_big(ctx);
  if (rc == Q_ENOMEM)
    return extract_fail(ctx, rc, "out of memory");
  if (ctx->errlen && !ctx->err[0])
    extract_fail(ctx, rc, "%s", q_strerror(rc));
  return rc;
}

q_err_t extract_emit(extract_ctx_t *ctx, extract_kind_t kind, int level, int page,
                     const char *text, size_t len) {
  bool one_line =
      extract_is_meta(kind) || kind == EXTRACT_HEADING || kind == EXTRACT_TABLE_ROW;
  q_buf_reset(&ctx->norm);
  q_err_t rc = normalise(&ctx->norm, text, len, one_line);
  if (rc == Q_ETOOBIG)
    return extract_text_too_big(ctx);
  if (rc)
    return sink_rc(ctx, rc);
  size_t n = ctx->norm.len;
  if (n == 0)
    return Q_OK;
  if (extract_is_meta(kind)) {
    n = q_text_cut(ctx->norm.data, n, EXTRACT_META_BYTES);
    level = 0;
    page = 0;
  } else if (kind == EXTRACT_HEADING) {
    level = level < 1                        ? 1
            : level > EXTRACT_HEADING_LEVELS ? EXTRACT_HEADING_LEVELS
                                             : level;
  } else if (kind == EXTRACT_LIST_ITEM) {
    level = level < 1 ? 1 : level > EXTRACT_LIST_LEVELS ? EXTRACT_LIST_LEVELS : level;
  } else {
    level = 0;
  }
  if (page < 0)
    page = 0;
  if (ctx->emitted + (int64_t)n > ctx->limits.max_text_bytes)
    return extract_text_too_big(ctx);
  ctx->emitted += (int64_t)n;
  rc = ctx->sink(ctx->sink_ud, kind, level, page, ctx->norm.data, n);
  return rc ? sink_rc(ctx, rc) : Q_OK;
}

q_err_t extract_cell(extract_ctx_t *ctx, const char *text, size_t len) {
  /* An empty cell still separates its neighbours: "a |  | c" becomes
   * "a | | c" when the row is emitted. */
  q_err_t rc = ctx->row_cells > 0 ? q_buf_puts(&ctx->row, " | ") : Q_OK;
  if (!rc)
    rc = normalise(&ctx->row, text, len, true);
  if (rc)
    return rc == Q_ETOOBIG ? extract_text_too_big(ctx) : sink_rc(ctx, rc);
  ctx->row_cells++;
  return Q_OK;
}

q_err_t extract_row_end(extract_ctx_t *ctx, int page) {
  /* A row of empty cells is " |  | " and says nothing. */
  bool empty = true;
  for (size_t i = 0; i < ctx->row.len && empty; i++)
    empty = ctx->row.data[i] == ' ' || ctx->row.data[i] == '|';
  q_err_t rc = Q_OK;
  if (!empty) {
    /* Normalised already; extract_emit only trims and counts it. */
    size_t n = ctx->row.len;
    char *row = ctx->row.data;
    while (n > 0 && (row[n - 1] == ' ' || row[n - 1] == '|'))
      n--;
    rc = extract_emit(ctx, EXTRACT_TABLE_ROW, 0, page, row, n);
  }
  q_buf_reset(&ctx->row);
  ctx->row_cells = 0;
  return rc;
}

q_err_t extract_run(const extractor_t *x, extract_ctx_t *ctx) {
  q_err_t rc = x->prepare ? x->prepare(ctx) : Q_OK;
  if (!rc)
    rc = x->run(ctx);
  if (rc && ctx->errlen && !ctx->err[0])
    extract_fail(ctx, rc, "%s", q_strerror(rc));
  return rc;
}
