/* fuzz_batch.c - one NDJSON line of POST /v1/documents/batch
 * (batch_parse_line in batch.c), the whole input being the line.
 *
 * Checked: an accepted line gives a non-empty text of text_len bytes,
 * valid UTF-8 without NUL, at most the document limit; a title and an
 * external_id ingestion accepts (q_valid_text within their limits); a
 * metadata that is "" or a JSON object of at most Q_LIMIT_METADATA_BYTES.
 * A refused line has a reason. */
#include "batch.h"
#include "fuzz.h"

#include <jansson.h>

#include "quarry/limits.h"
#include "quarry/validate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DOC 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  q_arena_t *a = q_arena_new(8u << 20);
  if (!a)
    return 0;
  batch_doc_t d;
  char err[256] = "";
  q_err_t rc =
      batch_parse_line((const char *)data, size, MAX_DOC, a, &d, err, sizeof err);
  if (rc) {
    FUZZ_CHECK(rc == Q_EINVAL || rc == Q_ETOOBIG || rc == Q_ENOMEM, "rc %d", rc);
    FUZZ_CHECK(err[0] || rc == Q_ENOMEM, "a refused line has a reason");
    q_arena_free(a);
    return 0;
  }
  FUZZ_CHECK(d.text && d.text_len > 0 && d.text_len <= MAX_DOC, "text length %zu",
             d.text_len);
  FUZZ_CHECK(strlen(d.text) == d.text_len, "text holds a NUL");
  FUZZ_CHECK(q_valid_utf8(d.text, d.text_len), "text is not UTF-8");
  FUZZ_CHECK(q_valid_text(d.title, Q_LIMIT_TITLE_BYTES), "title \"%s\"", d.title);
  FUZZ_CHECK(q_valid_text(d.external_id, Q_LIMIT_EXTERNAL_ID_BYTES), "external_id");
  if (d.metadata[0]) {
    size_t n = strlen(d.metadata);
    FUZZ_CHECK(n <= Q_LIMIT_METADATA_BYTES, "metadata of %zu bytes", n);
    json_t *m = json_loadb(d.metadata, n, 0, NULL);
    FUZZ_CHECK(m && json_is_object(m), "metadata is not a JSON object: %s", d.metadata);
    json_decref(m);
  }
  q_arena_free(a);
  return 0;
}
