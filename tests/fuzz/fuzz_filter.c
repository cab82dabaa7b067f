/* fuzz_filter.c - the retrieval filter language and user metadata checks
 * of libquarry (quarry/filter.h), which client JSON reaches at the gateway
 * (POST /v1/query "filter", upload "metadata") and again at the retriever
 * and ingestion.
 *
 * Input: two lines, a filter and a metadata object, then q_rfc3339_parse of
 * the first line. Checked: a refusal is Q_EINVAL with a message that names
 * the filter ("filter...") or the metadata; an accepted filter evaluates
 * against the accepted metadata (or none) without crashing, deterministically;
 * a filter accepted from its compact re-serialisation is accepted again
 * (what the gateway sends the retriever), and gives the same answer. */
#include "fuzz.h"

#include "quarry/error.h"
#include "quarry/filter.h"
#include "quarry/limits.h"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *f[2];
  size_t meta_len;
  char *block = fuzz_split(data, size, f, 2, &meta_len);
  char err[512];
  json_t *meta = NULL;
  q_err_t mrc = q_meta_parse(f[1], strlen(f[1]), &meta, err, sizeof err);
  FUZZ_CHECK(mrc == 0 || mrc == Q_EINVAL, "metadata: %d", mrc);
  FUZZ_CHECK(mrc == 0 || strstr(err, "metadata"), "metadata refusal: %s", err);
  FUZZ_CHECK(mrc != 0 || !meta || q_meta_check(meta, err, sizeof err) == 0,
             "parsed metadata fails its own check: %s", err);

  q_filter_t *flt = NULL;
  q_err_t frc = q_filter_parse(f[0], strlen(f[0]), &flt, err, sizeof err);
  FUZZ_CHECK(frc == 0 || frc == Q_EINVAL, "filter: %d", frc);
  FUZZ_CHECK(frc == 0 || strncmp(err, "filter", 6) == 0, "filter refusal: %s", err);
  if (frc == 0 && flt) {
    q_filter_doc_t d = {.doc_id = "d1",
                        .title = "T",
                        .content_type = "text/plain",
                        .created_at = 1700000000,
                        .meta = meta};
    bool a = q_filter_match(flt, &d);
    FUZZ_CHECK(a == q_filter_match(flt, &d), "not deterministic");
    /* the gateway's compact form parses again to the same filter */
    json_t *v = json_loadb(f[0], strlen(f[0]), JSON_DECODE_ANY, NULL);
    char *compact = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (compact && strlen(compact) <= Q_LIMIT_FILTER_BYTES) {
      q_filter_t *again = NULL;
      q_err_t rc = q_filter_parse(compact, strlen(compact), &again, err, sizeof err);
      FUZZ_CHECK(rc == 0, "compact form refused: %s", err);
      FUZZ_CHECK(q_filter_match(again, &d) == a, "compact form answers differently");
      q_filter_free(again);
    }
    free(compact);
    json_decref(v);
  }
  q_filter_free(flt);
  json_decref(meta);
  int64_t t;
  (void)q_rfc3339_parse(f[0], &t);
  free(block);
  return 0;
}
