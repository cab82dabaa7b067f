/* batch.h - POST /v1/documents/batch: many documents in one request, one
 * document and one job each, sent to ingestion in one UploadBatch call.
 *
 * Two body forms, chosen by Content-Type:
 *
 *   application/x-ndjson: one JSON object per line,
 *     {"external_id": "...", "title": "...", "text": "...", "metadata": {...}}
 *     with "text" required (a non-empty string: the document, stored as
 *     text/plain in UTF-8) and the others optional; "metadata" is a JSON
 *     object kept with the document (at most Q_LIMIT_METADATA_BYTES as
 *     compact JSON). Blank lines are skipped; a line may end in "\r\n".
 *   multipart/form-data: every part named "file" is a document, with its
 *     file name and Content-Type as a single upload's file part has them
 *     (ingestion decides the format). No other field.
 *
 * Bounds, each a Q_LIMIT_*: the body (Q_LIMIT_BATCH_BYTES; over it, 413),
 * documents per batch (Q_LIMIT_BATCH_DOCUMENTS; more, 413), one NDJSON line
 * (Q_LIMIT_BATCH_LINE_BYTES; longer, that line's error), one document (the
 * gateway's QUARRY_MAX_UPLOAD_BYTES; larger, that document's error). A
 * whole-request refusal (413, or 400 for a malformed multipart body or an
 * unusable Content-Type) happens before anything is sent to ingestion, so
 * nothing of such a batch is stored.
 *
 * Otherwise the reply is 202 with one entry per document in order:
 * {"index","line" or "part", "document_id","job_id","version","status",
 * "replayed"} or {"index","line"/"part","error":{"code","message"}}: a
 * malformed line (bad JSON, bad UTF-8, missing text, wrong types, too
 * long) or a document ingestion refused fails alone, naming its line, and
 * every other document is stored. When no document at all was accepted
 * the status is 400 (the same body plus "error").
 *
 * Idempotency-Key (1..Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES printable ASCII):
 * document i of the batch is stored under the key "<key>#<i>", so a retry
 * of the same batch (same documents in the same order) answers the stored
 * result of every document stored the first time (replayed: true) and
 * stores the rest; a document that differs from the one first stored at
 * its position fails with 409 conflict in its entry. */
#ifndef QUARRY_GW_BATCH_H
#define QUARRY_GW_BATCH_H

#include <stddef.h>

#include "quarry/arena.h"
#include "quarry/error.h"
#include "quarry/limits.h"

/* One NDJSON line, parsed. Strings are NUL-terminated, in the arena. */
typedef struct batch_doc {
  const char *external_id; /* "" when absent */
  const char *title;       /* "" when absent */
  const char *text;        /* never empty */
  size_t text_len;
  const char *metadata; /* compact JSON object, "" when absent */
  /* UploadHeader.chunking from "chunking", "chunk_tokens" and
   * "chunk_overlap" (upload_chunking_spec); "" when absent. */
  char chunking[Q_LIMIT_CHUNKING_BYTES + 1];
} batch_doc_t;

/* Parses one NDJSON line (line[0..len), without its "\n"; a trailing "\r"
 * is allowed) into out, copying into a. Q_OK; Q_EINVAL with err a sentence
 * naming the problem (not the line number; the caller adds it): invalid
 * UTF-8, not JSON, not an object, an unknown key, a key of the wrong type,
 * "text" missing or empty, a title or external_id over its limit or with
 * control characters, a chunking choice that breaks quarry/chunking.h's
 * rules; Q_ETOOBIG for a line over Q_LIMIT_BATCH_LINE_BYTES or
 * metadata over Q_LIMIT_METADATA_BYTES, or text over max_doc_bytes;
 * Q_ENOMEM. Pure: thread-safe, for tests and the fuzzer. */
q_err_t batch_parse_line(const char *line, size_t len, int64_t max_doc_bytes,
                         q_arena_t *a, batch_doc_t *out, char *err, size_t errlen);

#endif
