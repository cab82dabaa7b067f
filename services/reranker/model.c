/* model.c - loading and applying the feature model's weights (model.h).
 * Parsing is jansson's (Debian libjansson, already every service's JSON
 * library); what is checked here is the shape of the file. */
#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

q_err_t model_parse(const char *text, size_t len, rerank_model_t *m, char *err,
                    size_t errlen) {
  json_error_t je;
  bool seen[FEATURES_N] = {0};
  memset(m, 0, sizeof *m);
  if (len > MODEL_MAX_FILE_BYTES) {
    snprintf(err, errlen, "%zu bytes; a weights file has at most %d", len,
             MODEL_MAX_FILE_BYTES);
    return Q_EINVAL;
  }
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "not valid JSON: %s (line %d, column %d)", je.text, je.line,
             je.column);
    return Q_EINVAL;
  }
  q_err_t rc = Q_EINVAL;
  json_t *format = json_object_get(root, "format");
  json_t *version = json_object_get(root, "version");
  json_t *name = json_object_get(root, "name");
  json_t *weights = json_object_get(root, "weights");
  if (!json_is_object(root)) {
    snprintf(err, errlen, "not a JSON object");
    goto done;
  }
  if (!json_is_string(format) || strcmp(json_string_value(format), MODEL_FORMAT) != 0) {
    snprintf(err, errlen, "\"format\" must be \"%s\"", MODEL_FORMAT);
    goto done;
  }
  if (!json_is_integer(version) || json_integer_value(version) != MODEL_VERSION) {
    snprintf(err, errlen, "\"version\" must be %d (the only version this reranker reads)",
             MODEL_VERSION);
    goto done;
  }
  if (!json_is_string(name) || json_string_length(name) == 0 ||
      json_string_length(name) >= MODEL_NAME_MAX) {
    snprintf(err, errlen, "\"name\" must be a string of 1 to %d bytes",
             MODEL_NAME_MAX - 1);
    goto done;
  }
  memcpy(m->name, json_string_value(name), json_string_length(name) + 1);
  if (!json_is_object(weights)) {
    snprintf(err, errlen, "\"weights\" must be an object of feature name to number");
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(weights, key, v) {
    int f = features_find(key, strlen(key));
    if (f == FEATURES_NONE) {
      snprintf(err, errlen, "weights: unknown feature \"%.64s\"", key);
      goto done;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
      snprintf(err, errlen, "weights.%s must be a finite number", key);
      goto done;
    }
    m->w[f] = json_number_value(v);
    seen[f] = true;
  }
  for (int f = 0; f < FEATURES_N; f++)
    if (!seen[f]) {
      snprintf(err, errlen, "weights: feature \"%s\" is missing", features_names[f]);
      goto done;
    }
  rc = 0;
done:
  json_decref(root);
  return rc;
}

q_err_t model_load(const char *path, rerank_model_t *m, char *err, size_t errlen) {
  char why[256];
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return errno == ENOENT ? Q_ENOTFOUND : Q_EIO;
  }
  /* One byte more than allowed tells a file that is too large. */
  char *buf = malloc(MODEL_MAX_FILE_BYTES + 1);
  if (!buf) {
    fclose(f);
    snprintf(err, errlen, "%s: out of memory", path);
    return Q_ENOMEM;
  }
  size_t len = fread(buf, 1, MODEL_MAX_FILE_BYTES + 1, f);
  bool bad = ferror(f);
  fclose(f);
  q_err_t rc;
  if (bad) {
    snprintf(err, errlen, "%s: read error", path);
    rc = Q_EIO;
  } else {
    rc = model_parse(buf, len, m, why, sizeof why);
    if (rc)
      snprintf(err, errlen, "%s: %s", path, why);
  }
  free(buf);
  return rc;
}

double model_score(const rerank_model_t *m, const double *x) {
  double s = 0.0;
  for (int f = 0; f < FEATURES_N; f++)
    s += m->w[f] * x[f];
  return s;
}
