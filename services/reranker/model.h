/* model.h - the feature model: a linear function of the features
 * (features.h) whose weights come from a versioned JSON file, written by
 * tools/eval/fit_reranker.py and loaded once at start
 * (QUARRY_RERANK_MODEL, default services/reranker/models/features.v1.json).
 *
 * The file (docs/retrieval.md, "The feature model"):
 *
 *   {"format": "quarry-rerank-linear", "version": 1, "name": "...",
 *    "weights": {"retrieval": w, "rank": w, ... every feature once},
 *    ...}                                (other keys: provenance, ignored)
 *
 * A file that is not exactly this - not JSON, another format or version,
 * a missing, unknown, repeated or non-finite weight, larger than
 * MODEL_MAX_FILE_BYTES - is refused with a message that names the problem:
 * the service then does not start. */
#ifndef QUARRY_RERANKER_MODEL_H
#define QUARRY_RERANKER_MODEL_H

#include <stddef.h>

#include "features.h"
#include "quarry/error.h"

#define MODEL_FORMAT "quarry-rerank-linear"
#define MODEL_VERSION 1
/* A weights file is a few hundred bytes; anything near this is not one. */
#define MODEL_MAX_FILE_BYTES (1 << 20)
#define MODEL_NAME_MAX 64

typedef struct rerank_model {
  char name[MODEL_NAME_MAX]; /* the file's "name" */
  double w[FEATURES_N];      /* by feature index */
} rerank_model_t;

/* Parses a weights file's text json[0..len) into *m. 0, or Q_EINVAL with
 * the reason in err. */
q_err_t model_parse(const char *json, size_t len, rerank_model_t *m, char *err,
                    size_t errlen);

/* Reads and parses the file at path. 0, or Q_EINVAL / Q_ENOTFOUND / Q_EIO
 * with the reason (naming the file) in err. */
q_err_t model_load(const char *path, rerank_model_t *m, char *err, size_t errlen);

/* The model's score of one feature vector (FEATURES_N values). */
double model_score(const rerank_model_t *m, const double *x);

#endif
