/* extract/extract.h - the extractor seam: the bytes of one document in,
 * normalised UTF-8 text with its structure out.
 *
 * An extractor is a table of functions (extractor_t), one per format,
 * listed in the format table (formats.c) and chosen once per job from the
 * document's stored type (curl's TLS backends, llm-gateway's providers).
 * It reads ctx->data and reports what it finds, in document order, through
 * extract_emit():
 *
 *   EXTRACT_TITLE, EXTRACT_AUTHOR  document metadata (level and page 0)
 *   EXTRACT_CREATED, EXTRACT_MODIFIED  dates the format records (RFC 3339
 *                                  or ISO 8601 text; doc.c keeps those
 *                                  q_rfc3339_parse reads)
 *   EXTRACT_LANGUAGE               the language the format declares (a tag)
 *   EXTRACT_PAGES                  the page count, in decimal
 *   EXTRACT_HEADING                a heading, level 1..6
 *   EXTRACT_PARAGRAPH              a paragraph (line breaks kept)
 *   EXTRACT_LIST_ITEM              a list item, level = nesting depth (1..)
 *   EXTRACT_TABLE_ROW              a table row, cells joined by " | "
 *                                  (extract_cell + extract_row_end)
 *
 * Every record carries the page it is on (1, 2, ... for formats that have
 * pages; 0 for those that have none). extract_emit normalises the text
 * before it reaches the sink: invalid UTF-8 becomes U+FFFD, control
 * characters go, runs of blanks become one space, and headings, cells and
 * metadata become one line. It also counts the bytes against
 * limits.max_text_bytes, so no extractor can flood its reader.
 *
 * Extractors run in a sandboxed child process (sandbox.h); they are also
 * called in-process by the unit tests (extract_run). They never write to
 * files, the network or the log: a failure is a q_err_t with a sentence for
 * a person in ctx->err, without the format's name (the caller adds
 * "PDF: "). Not thread-safe: one context per extraction. */
#ifndef QUARRY_INGESTION_EXTRACT_H
#define QUARRY_INGESTION_EXTRACT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarry/buf.h"
#include "quarry/error.h"

typedef enum extract_kind {
  EXTRACT_TITLE = 1,
  EXTRACT_AUTHOR,
  EXTRACT_HEADING,
  EXTRACT_PARAGRAPH,
  EXTRACT_LIST_ITEM,
  EXTRACT_TABLE_ROW,
  EXTRACT_CREATED,
  EXTRACT_MODIFIED,
  EXTRACT_LANGUAGE,
  EXTRACT_PAGES,
} extract_kind_t;

#define EXTRACT_KIND_MAX EXTRACT_PAGES

/* Whether kind is document metadata (one line, level and page 0), not body
 * or structure. */
static inline bool extract_is_meta(extract_kind_t kind) {
  return kind == EXTRACT_TITLE || kind == EXTRACT_AUTHOR || kind >= EXTRACT_CREATED;
}
#define EXTRACT_HEADING_LEVELS 6
#define EXTRACT_LIST_LEVELS 16
#define EXTRACT_META_BYTES 512 /* most bytes kept of a title or author */

/* Caps that bound what a hostile document can make an extractor do, on top
 * of the process limits the sandbox sets (memory, CPU, wall clock). */
typedef struct extract_limits {
  int64_t max_text_bytes;     /* text emitted, all records together */
  int64_t max_unzipped_bytes; /* one archive member, decompressed */
  int max_zip_entries;        /* members of an archive */
  int max_depth;              /* element nesting of HTML and XML */
} extract_limits_t;

/* Receives one normalised record (text is valid UTF-8, len > 0, not
 * NUL-terminated). Returns 0, or an error that stops the extraction. */
typedef q_err_t (*extract_sink_cb)(void *ud, extract_kind_t kind, int level, int page,
                                   const char *text, size_t len);

typedef struct extract_ctx {
  const char *data; /* the document, read-only */
  size_t size;
  const char *charset; /* declared by the client ("" when none) */
  extract_limits_t limits;
  extract_sink_cb sink;
  void *sink_ud;
  void *state; /* an extractor's own, from prepare to run */
  int64_t emitted;
  q_buf_t norm; /* scratch: the record being normalised */
  q_buf_t row;  /* the table row being built */
  int row_cells;
  char *err; /* reason for a failure, for a person */
  size_t errlen;
} extract_ctx_t;

typedef struct extractor {
  const char *name; /* "pdf", as in the format table */

  /* Optional. Runs before the sandbox locks the process down (no files,
   * no new libraries after it): loads what run() will need, e.g. the
   * iconv converter for the text's encoding. May keep state in
   * ctx->state; run() releases it. 0 or an error with ctx->err. */
  q_err_t (*prepare)(extract_ctx_t *ctx);

  /* Extracts ctx->data through extract_emit. 0, or an error with the
   * reason in ctx->err: Q_EINVAL for a damaged or unreadable document,
   * Q_EUNSUPPORTED for a feature Quarry does not read (an encrypted PDF),
   * Q_ETOOBIG past a limit, Q_ENOMEM when memory ran out. */
  q_err_t (*run)(extract_ctx_t *ctx);
} extractor_t;

/* The extractors (extract/<format>.c). */
extern const extractor_t extract_text;
extern const extractor_t extract_markdown;
extern const extractor_t extract_html;
extern const extractor_t extract_docx;
extern const extractor_t extract_pdf;

/* Prepares ctx for one extraction of data[0..size) (borrowed). charset may
 * be NULL. err receives the reason of a failure. */
void extract_ctx_init(extract_ctx_t *ctx, const char *data, size_t size,
                      const char *charset, const extract_limits_t *limits,
                      extract_sink_cb sink, void *ud, char *err, size_t errlen);
void extract_ctx_cleanup(extract_ctx_t *ctx);

/* Normalises text[0..len) as its kind wants and hands it to the sink;
 * a record left empty is dropped. 0; Q_ETOOBIG past max_text_bytes, or
 * the sink's error, with ctx->err set. */
q_err_t extract_emit(extract_ctx_t *ctx, extract_kind_t kind, int level, int page,
                     const char *text, size_t len);

/* Adds a cell to the current table row (normalised to one line). */
q_err_t extract_cell(extract_ctx_t *ctx, const char *text, size_t len);

/* Emits the current row as EXTRACT_TABLE_ROW (nothing when every cell was
 * empty) and starts a new one. */
q_err_t extract_row_end(extract_ctx_t *ctx, int page);

/* Writes a reason into ctx->err and returns rc. */
q_err_t extract_fail(extract_ctx_t *ctx, q_err_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails with Q_ETOOBIG: "the extracted text is larger than <limit>" (the
 * limit in MiB, or KiB below one MiB). */
q_err_t extract_text_too_big(extract_ctx_t *ctx);

/* Runs x on ctx in this process: prepare, then run. What the unit tests
 * call; the service goes through sandbox_extract. */
q_err_t extract_run(const extractor_t *x, extract_ctx_t *ctx);

/* Text encodings (extract/text.c), shared by the extractors of text
 * formats. extract_decode_prepare (from an extractor's prepare) chooses
 * the encoding of ctx->data: the declared charset when there is one, else
 * a byte order mark, else (html) a <meta charset> in the first 1024 bytes,
 * else UTF-8 when the bytes are valid UTF-8, else UTF-16 when NUL bytes
 * say so, else what uchardet guesses (ISO-8859-1 when it cannot tell), and
 * opens its iconv converter into ctx->state. 0, or Q_EUNSUPPORTED with
 * ctx->err. */
q_err_t extract_decode_prepare(extract_ctx_t *ctx, bool html);

/* Converts ctx->data to UTF-8 into *out (malloc()ed, NUL-terminated, at
 * most limits.max_text_bytes, without a byte order mark; the caller frees
 * it) and releases ctx->state. 0; Q_EINVAL for bytes that are not in that
 * encoding, Q_ETOOBIG, Q_ENOMEM, with ctx->err. */
q_err_t extract_decode(extract_ctx_t *ctx, char **out, size_t *outlen);

#endif
