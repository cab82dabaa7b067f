/* extract/formats.h - the one table of document formats ingestion reads,
 * and how a document's format is decided.
 *
 * Each row of formats.c names a format's media type and its aliases, its
 * file extensions, what its bytes must look like, its extractor and how
 * its text is chunked. Nothing else in Quarry knows about formats: the
 * gateway forwards the client's declared Content-Type and file name
 * unchanged, and ingestion decides, in two steps:
 *
 *   1. formats_choose, on the Upload header: the declared media type
 *      (aliases and a charset parameter accepted) names the format; without
 *      one (or with application/octet-stream) the file name's extension
 *      does; without either the bytes will. A type Quarry does not read is
 *      refused here, before any data is stored.
 *   2. formats_confirm, on the first bytes (FORMATS_HEAD_BYTES): they are
 *      sniffed (magic numbers, byte order marks, NUL bytes) and must agree
 *      with the choice. A file that lies about its type is refused naming
 *      both: "declared application/pdf but the content is a ZIP archive".
 *
 * A format whose reader is switched off (images while OCR is disabled)
 * is refused at either step with a sentence saying how to switch it on.
 *
 * The stored type is the format's canonical media type, plus the declared
 * charset for text formats ("text/plain; charset=iso-8859-1"); the worker
 * finds the format again with formats_parse_stored. All functions are pure
 * and thread-safe. */
#ifndef QUARRY_INGESTION_FORMATS_H
#define QUARRY_INGESTION_FORMATS_H

#include <stdbool.h>
#include <stddef.h>

#include "extract/extract.h"
#include "quarry/error.h"
#include "quarry/limits.h"

#define FORMATS_HEAD_BYTES 4096 /* what formats_confirm looks at */
#define FORMATS_CHARSET_BYTES 64

/* What the first bytes of a file show. */
typedef enum content_kind {
  CONTENT_EMPTY,
  CONTENT_TEXT,   /* no magic number, no NUL bytes (or a UTF-16 BOM) */
  CONTENT_HTML,   /* text that starts like an HTML page */
  CONTENT_BINARY, /* NUL bytes and nothing recognised */
  CONTENT_PDF,
  CONTENT_ZIP,
  CONTENT_DOCX, /* a ZIP whose first members are a Word document's */
  CONTENT_OLE,  /* legacy Office (.doc, .xls, .ppt) */
  CONTENT_PNG,
  CONTENT_JPEG,
  CONTENT_GIF,
  CONTENT_TIFF,
  CONTENT_GZIP,
  CONTENT_7Z,
  CONTENT_RAR,
  CONTENT_RTF,
  CONTENT_EXE, /* Windows PE or ELF */
} content_kind_t;

/* How a format's text becomes chunks. */
typedef enum format_chunking {
  CHUNK_BY_SECTION, /* a chunk never spans two headings */
  CHUNK_BY_PAGE,    /* ... nor two pages, so its page number is exact */
} format_chunking_t;

typedef struct format {
  const char *id;                /* "pdf": short name, in logs and the sandbox's argv */
  const char *label;             /* "PDF": how job errors name it */
  const char *media;             /* canonical media type, stored with the document */
  const char *const *aliases;    /* other media types meaning the same, NULL-ended */
  const char *const *extensions; /* ".pdf", NULL-ended, matched case-insensitively */
  content_kind_t content;        /* CONTENT_TEXT for text formats */
  bool charset;                  /* text: honours a declared charset */
  const extractor_t *extractor;
  format_chunking_t chunking;
  /* NULL when the format is always read; else whether its reader is
   * switched on in this service (images need OCR), and when it is not, a
   * sentence saying how to switch it on. Checked at upload. */
  bool (*available)(char *why, size_t whylen);
} format_t;

/* The table, in the order error messages list it. */
extern const format_t formats[];
extern const size_t formats_count;

/* A format by canonical media type or alias (case-insensitive, no
 * parameters), by file name extension, or by id. NULL when none. */
const format_t *formats_by_media(const char *media);
const format_t *formats_by_filename(const char *filename);
const format_t *formats_by_id(const char *id);

/* What head[0..n) looks like, and how a person calls it ("a ZIP
 * archive", "text"). */
content_kind_t formats_sniff(const char *head, size_t n);
const char *formats_content_name(content_kind_t k);

/* Where the choice came from. */
typedef enum format_source {
  FROM_DECLARED, /* the declared media type */
  FROM_FILENAME, /* the file name's extension */
  FROM_CONTENT,  /* nothing said: the bytes decide */
} format_source_t;

typedef struct format_choice {
  const format_t *fmt; /* NULL until confirmed when source is FROM_CONTENT */
  format_source_t source;
  char declared[Q_LIMIT_MEDIA_TYPE_BYTES + 1]; /* media type as declared, lowercased */
  char filename[Q_LIMIT_FILENAME_BYTES + 1];
  char charset[FORMATS_CHARSET_BYTES]; /* declared charset, lowercased; "" none */
} format_choice_t;

/* Step 1 (see above) from the declared Content-Type (NULL or "" when none;
 * parameters allowed) and the file name (NULL or ""). 0 with *c filled;
 * Q_EINVAL for a malformed Content-Type; Q_EUNSUPPORTED for a type, or a
 * charset, Quarry does not read. err gets a sentence for the client. */
q_err_t formats_choose(const char *content_type, const char *filename, format_choice_t *c,
                       char *err, size_t errlen);

/* Step 2 on the first n bytes of the document (at most FORMATS_HEAD_BYTES
 * are looked at). 0 with c->fmt set; Q_EINVAL for an empty document;
 * Q_EUNSUPPORTED when the bytes contradict the choice or are of a type
 * Quarry does not read; err names what was declared and what was found. */
q_err_t formats_confirm(format_choice_t *c, const char *head, size_t n, char *err,
                        size_t errlen);

/* The type to store for a confirmed choice: the canonical media type, with
 * "; charset=<c>" for a text format given a charset. Returns its length,
 * or 0 when out is too small. */
size_t formats_stored_type(const format_choice_t *c, char *out, size_t outlen);

/* The format and charset ("" when none) of a stored type. Types stored
 * before this table existed ("text/plain", "text/markdown") are found too.
 * NULL when the type names no format. */
const format_t *formats_parse_stored(const char *stored, char *charset,
                                     size_t charsetlen);

/* A default file name for a document uploaded without one: "document" and
 * the format's first extension ("document.pdf"). */
void formats_default_filename(const format_t *f, char *out, size_t outlen);

#endif
