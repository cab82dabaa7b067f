/* upload.h - POST /v1/documents: a document streamed from the HTTP body
 * into ingestion's client-streaming Upload as it arrives.
 *
 * Two body forms: raw (the document's Content-Type, metadata in the query
 * string) and multipart/form-data (a "file" part plus optional
 * "title" and "external_id" fields, parsed by libmicrohttpd's streaming
 * post processor). The gateway knows no document formats: it forwards the
 * declared Content-Type (the raw body's, or the file part's) and the file
 * name as the client sent them, and ingestion decides what the document is
 * and refuses what it does not read. The first Upload message carries the
 * header; data go in
 * pieces of at most UPLOAD_PIECE_MAX bytes. A multipart file's first
 * UPLOAD_PIECE_MAX bytes are held back before the call starts, so fields
 * sent after a small file still reach the header; a field that arrives after
 * a larger file has started streaming is refused. The size limit is counted
 * on the bytes that actually arrive, whatever Content-Length said. Whenever
 * the upload cannot complete (limit, malformed body, client gone) the call
 * is cancelled so ingestion never stores a truncated document.
 *
 * The helpers below are pure and exposed for tests. */
#ifndef QUARRY_GW_UPLOAD_H
#define QUARRY_GW_UPLOAD_H

#include <stddef.h>
#include "quarry/error.h"

#include "quarry/limits.h"

#define UPLOAD_PIECE_MAX (1 << 20)
#define UPLOAD_MULTIPART_SLACK (64 << 10) /* boundaries and part headers */

/* Writes the media type of a Content-Type value ("Text/Markdown;
 * charset=utf-8" -> "text/markdown") into out. 0, or -1 when value is
 * NULL, empty or not of the form type/subtype. */
q_err_t upload_media_type(const char *value, char *out, size_t outlen);

/* Reduces a client-supplied file name to its last path component. 0 with
 * out set, or -1 when nothing usable is left (empty, ".", "..", control
 * characters, longer than Q_LIMIT_FILENAME_BYTES). */
q_err_t upload_clean_filename(const char *in, char *out, size_t outlen);

#endif
