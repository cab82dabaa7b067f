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
 * An Idempotency-Key header (1..Q_LIMIT_IDEMPOTENCY_KEY_BYTES bytes of
 * printable ASCII) travels to ingestion in the Upload header; ingestion keeps
 * (tenant, key) -> result, so a retry of an upload that was stored (even
 * when its client saw an error) answers the stored result, with the reply
 * header Idempotent-Replayed: true, and the same key with another document
 * is a 409.
 *
 * The helpers below are pure and exposed for tests. */
#ifndef QUARRY_GW_UPLOAD_H
#define QUARRY_GW_UPLOAD_H

#include <stddef.h>
#include "gateway.h"
#include "quarry/error.h"
#include "quarry/v1/ingestion.pb-c.h"

#include "quarry/chunking.h"
#include "quarry/limits.h"

#define UPLOAD_PIECE_MAX (1 << 20)
#define UPLOAD_IDEMPOTENCY_HEADER "Idempotency-Key"
#define UPLOAD_REPLAYED_HEADER "Idempotent-Replayed"
#define UPLOAD_MULTIPART_SLACK (64 << 10) /* boundaries and part headers */

/* Writes the media type of a Content-Type value ("Text/Markdown;
 * charset=utf-8" -> "text/markdown") into out. 0, or -1 when value is
 * NULL, empty or not of the form type/subtype. */
q_err_t upload_media_type(const char *value, char *out, size_t outlen);

/* Reduces a client-supplied file name to its last path component. 0 with
 * out set, or Q_EINVAL when nothing usable is left (empty, ".", "..",
 * longer than Q_LIMIT_FILENAME_BYTES, or not what q_valid_text accepts:
 * invalid UTF-8, control characters - ingestion's rule for file names). */
q_err_t upload_clean_filename(const char *in, char *out, size_t outlen);

/* The end of the body, before the Upload call: closes the multipart parser
 * and checks what the body held (complete, with one "file" part, not
 * empty), leaving a rejection pending (http_reject) when it is unusable.
 * upload_ops.end runs it first; it is exposed for the fuzz target
 * (tests/fuzz/fuzz_upload.c), which drives begin, data and this, and never
 * reaches the call. */
void upload_check_body(gw_req_t *r);

/* Fills hdr (initialised by the caller) with the Upload header r's upload
 * sends: the principal's tenant and the metadata begin and the multipart
 * fields set. The strings belong to r. Complete once upload_check_body left
 * nothing pending; exposed for the fuzz target, which checks that ingestion
 * accepts whatever the gateway would send. */
void upload_header(const gw_req_t *r, Quarry__V1__UploadHeader *hdr);

/* Sets the part of c that the upload parameter name (chunking,
 * chunk_tokens, chunk_overlap; from a query string, a multipart field or a
 * batch line) gives, value v[0..n). Q_EINVAL with err naming the parameter
 * and the rule; Q_ENOTFOUND when name is none of them. */
q_err_t upload_chunking_param(q_chunking_t *c, const char *name, const char *v, size_t n,
                              char *err, size_t errlen);

/* Checks c as a whole (q_chunking_check) and writes the spec that
 * UploadHeader.chunking carries into out (Q_LIMIT_CHUNKING_BYTES + 1
 * bytes): "" when c leaves everything to ingestion's settings. Q_EINVAL
 * with err naming the problem. */
q_err_t upload_chunking_spec(const q_chunking_t *c, char *out, size_t outlen, char *err,
                             size_t errlen);

#endif
