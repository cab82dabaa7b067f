/* batch.h - how `quarry ingest` packs small files into one request to
 * POST /v1/documents/batch, and reads the per-file answers back.
 *
 * The batch is NDJSON, one line per file:
 *   {"external_id": "<id>", "title": "<title>", "text": "<the file>"}
 * NDJSON rather than multipart because a multipart batch part carries no
 * external id (the route takes "file" parts only), and the external id is
 * what makes ingesting a folder again version its documents instead of
 * copying them. NDJSON stores every document as text/plain, so only files
 * the server would read as plain text anyway go into batches: `.txt` files
 * of at most BATCH_FILE_MAX_BYTES whose content is UTF-8 without NUL bytes.
 * Everything else keeps the one-file upload.
 *
 * A batch is closed at BATCH_MAX_FILES files or when the next line would
 * take the body over BATCH_MAX_BYTES, well under the server's limits
 * (Q_LIMIT_BATCH_DOCUMENTS, Q_LIMIT_BATCH_BYTES), so one slow batch does not
 * hold a large share of the run.
 *
 * Its Idempotency-Key is "qb1-" + sha256 over every file's
 * "<content sha256>:<external id>\n" in order: the same files in the same
 * order (which is what a resumed run forms again, see ingest.c) give the
 * same key, so the server replays item i stored under "<key>#<i>" instead
 * of storing it twice. */
#ifndef QUARRY_CLI_BATCH_H
#define QUARRY_CLI_BATCH_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include "quarry/error.h"
#include "quarry/limits.h"

#define BATCH_MAX_FILES 100
#define BATCH_MAX_BYTES (2 << 20)
#define BATCH_FILE_MAX_BYTES (256 << 10)
#define BATCH_KEY_PREFIX "qb1-"
#define BATCH_KEY_LEN (4 + 64)

_Static_assert(BATCH_MAX_FILES <= Q_LIMIT_BATCH_DOCUMENTS, "a batch fits the server");
/* A batch holds at most BATCH_MAX_BYTES, or one line (<= the line limit). */
_Static_assert(BATCH_MAX_BYTES <= Q_LIMIT_BATCH_BYTES &&
                   Q_LIMIT_BATCH_LINE_BYTES <= Q_LIMIT_BATCH_BYTES,
               "a batch body fits the server");
_Static_assert(BATCH_KEY_LEN <= Q_LIMIT_BATCH_IDEMPOTENCY_KEY_BYTES,
               "the batch key fits the server");

/* true when a file of this name and size may go into a batch (its content
 * is checked by batch_line). */
bool batch_file_eligible(const char *filename, long long size);

/* The NDJSON line (with its "\n") for one file: title may be NULL. Sets
 * *line (caller frees) and *len. Q_EINVAL with err when the content is not
 * UTF-8 text without NUL or the line is over Q_LIMIT_BATCH_LINE_BYTES (the
 * file then goes alone), Q_ENOMEM. */
q_err_t batch_line(const char *external_id, const char *title, const char *data,
                   size_t datalen, char **line, size_t *len, char *err, size_t errlen);

/* The batch's Idempotency-Key (BATCH_KEY_LEN characters) for n files. */
void batch_key(const char *const *sha256, const char *const *external_ids, size_t n,
               char out[BATCH_KEY_LEN + 1]);

/* One file's answer; the strings point into the reply. */
typedef struct batch_result {
  bool ok;
  const char *document_id, *job_id;
  int version;
  bool unchanged;             /* "status": "unchanged" */
  bool replayed;              /* stored by an earlier try of this batch */
  const char *code, *message; /* when !ok */
} batch_result_t;

/* Reads documents[0..n) of a batch reply (202, or 400 when none was
 * accepted). Q_EINVAL with err when the reply has no such list, or not one
 * entry per file in order. */
q_err_t batch_results(const json_t *reply, size_t n, batch_result_t *out, char *err,
                      size_t errlen);

/* true when the server refused the file for its size: it goes alone. */
bool batch_result_too_large(const batch_result_t *r);
#endif
