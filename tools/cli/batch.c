/* batch.c - NDJSON batches of small files (see batch.h). */
#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/util.h"

bool batch_file_eligible(const char *filename, long long size) {
  size_t n = strlen(filename);
  return size > 0 && size <= BATCH_FILE_MAX_BYTES && n > 4 &&
         strcasecmp(filename + n - 4, ".txt") == 0;
}

q_err_t batch_line(const char *external_id, const char *title, const char *data,
                   size_t datalen, char **line, size_t *len, char *err, size_t errlen) {
  *line = NULL;
  *len = 0;
  if (memchr(data, '\0', datalen)) {
    snprintf(err, errlen, "holds NUL bytes");
    return Q_EINVAL;
  }
  json_t *text = json_stringn(data, datalen); /* NULL: not UTF-8 (or no memory) */
  if (!text) {
    snprintf(err, errlen, "not UTF-8 text");
    return Q_EINVAL;
  }
  json_t *o = json_pack("{s:s,s:o}", "external_id", external_id, "text", text);
  if (o && title && json_object_set_new(o, "title", json_string(title)) != 0) {
    json_decref(o);
    o = NULL;
  }
  char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  if (!s) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  size_t n = strlen(s);
  if (n > Q_LIMIT_BATCH_LINE_BYTES) {
    free(s);
    snprintf(err, errlen, "longer than a batch line may be");
    return Q_EINVAL;
  }
  char *t = realloc(s, n + 2);
  if (!t) {
    free(s);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  t[n] = '\n';
  t[n + 1] = '\0';
  *line = t;
  *len = n + 1;
  return Q_OK;
}

void batch_key(const char *const *sha256, const char *const *external_ids, size_t n,
               char out[BATCH_KEY_LEN + 1]) {
  size_t cap = 1, len = 0;
  for (size_t i = 0; i < n; i++)
    cap += strlen(sha256[i]) + strlen(external_ids[i]) + 2;
  char *seed = malloc(cap);
  char hex[65];
  if (seed) {
    for (size_t i = 0; i < n; i++)
      len +=
          (size_t)snprintf(seed + len, cap - len, "%s:%s\n", sha256[i], external_ids[i]);
    q_sha256_hex(seed, len, hex);
    free(seed);
  } else { /* out of memory: a key of the files' hashes alone, chained */
    q_sha256_hex("", 0, hex);
    for (size_t i = 0; i < n; i++) {
      char pair[64 + 1 + 64 + 1];
      snprintf(pair, sizeof pair, "%s:%s", hex, sha256[i]);
      q_sha256_hex(pair, strlen(pair), hex);
    }
  }
  snprintf(out, BATCH_KEY_LEN + 1, "%s%s", BATCH_KEY_PREFIX, hex);
}

static const char *str(const json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v ? v : "";
}

q_err_t batch_results(const json_t *reply, size_t n, batch_result_t *out, char *err,
                      size_t errlen) {
  const json_t *docs = json_object_get(reply, "documents");
  if (!json_is_array(docs) || json_array_size(docs) != n) {
    snprintf(err, errlen,
             "the server's batch reply does not list the %zu documents sent (%zu listed)",
             n, json_is_array(docs) ? json_array_size(docs) : 0);
    return Q_EINVAL;
  }
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(docs, i);
    json_t *idx = json_object_get(e, "index");
    if (!json_is_object(e) || (idx && json_integer_value(idx) != (json_int_t)i)) {
      snprintf(err, errlen, "the server's batch reply lists document %zu out of order",
               i);
      return Q_EINVAL;
    }
    batch_result_t *r = &out[i];
    memset(r, 0, sizeof *r);
    const json_t *er = json_object_get(e, "error");
    if (er) {
      r->code = str(er, "code");
      r->message = str(er, "message");
      if (!r->code[0])
        r->code = "error";
      continue;
    }
    r->document_id = str(e, "document_id");
    r->job_id = str(e, "job_id");
    r->version = (int)json_integer_value(json_object_get(e, "version"));
    r->unchanged = strcmp(str(e, "status"), "unchanged") == 0;
    r->replayed = json_is_true(json_object_get(e, "replayed"));
    r->ok = r->document_id[0] != '\0';
    if (!r->ok) {
      r->code = "bad_reply";
      r->message = "the server's batch entry names no document";
    }
  }
  return Q_OK;
}

bool batch_result_too_large(const batch_result_t *r) {
  return !r->ok && r->code && strcmp(r->code, "too_large") == 0;
}
