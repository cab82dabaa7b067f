/* embed_tei.c - embeddings from Hugging Face text-embeddings-inference
 * (TEI) and servers that copy its route.
 *
 * POST {"inputs": [texts], "normalize": true, "truncate": true} to
 * {base}/embed and read a bare array of vectors, one per input in input
 * order. TEI serves the one model it was started with, so no model name is
 * sent. Replies are checked as strictly as the OpenAI provider's: one
 * vector per input, exactly dim finite numbers each, not all zero; vectors
 * are L2-normalised again on the way out (the retriever relies on it). */
#include "openai_http.h"
#include "provider.h"

#include "quarry/error.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tei_embedder {
  embedder_t base;
  openai_endpoint_t ep;
  int connect_timeout_ms;
} tei_embedder_t;

/* Copies vector vec (a JSON array) into v[0..dim), normalised. */
static q_err_t take_vector(const json_t *vec, size_t k, int dim, float *v, char *err,
                           size_t errlen) {
  double norm = 0;
  if (!json_is_array(vec) || json_array_size(vec) != (size_t)dim) {
    snprintf(err, errlen,
             "tei embeddings provider: vector %zu has %zu dimensions, expected %d", k,
             json_is_array(vec) ? json_array_size(vec) : 0, dim);
    return Q_EUNAVAIL;
  }
  for (int d = 0; d < dim; d++) {
    const json_t *x = json_array_get(vec, (size_t)d);
    double f = json_is_number(x) ? json_number_value(x) : NAN;
    if (!isfinite(f)) {
      snprintf(err, errlen, "tei embeddings provider: vector %zu[%d] is not a number", k,
               d);
      return Q_EUNAVAIL;
    }
    v[d] = (float)f;
    norm += f * f;
  }
  if (norm == 0) {
    snprintf(err, errlen, "tei embeddings provider: vector %zu is a zero vector", k);
    return Q_EUNAVAIL;
  }
  norm = sqrt(norm);
  for (int d = 0; d < dim; d++)
    v[d] = (float)(v[d] / norm);
  return 0;
}

static int tei_embed_ex(const embedder_t *e, const char *const *texts, const size_t *lens,
                        size_t n, float *out, q_attempt_t *att, char *err,
                        size_t errlen) {
  const tei_embedder_t *t = (const tei_embedder_t *)e;
  json_t *input = json_array(), *body = NULL, *reply = NULL;
  int rc;

  if (!input) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_stringn(texts[i], lens[i]);
    if (!s || json_array_append_new(input, s)) {
      snprintf(err, errlen, "texts[%zu]: not valid UTF-8", i);
      rc = Q_EINVAL;
      goto done;
    }
  }
  body = json_pack("{s:O,s:b,s:b}", "inputs", input, "normalize", 1, "truncate", 1);
  if (!body) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  openai_post_t post = {
      .who = "tei embeddings provider",
      .body = body,
      .max_reply_bytes = 64u << 20,
      .bad_request_is_invalid = 1,
      .connect_timeout_ms = t->connect_timeout_ms,
      .att = att,
  };
  rc = openai_post_json(&t->ep, &post, &reply, err, errlen);
  if (rc)
    goto done;
  if (!json_is_array(reply) || json_array_size(reply) != n) {
    snprintf(err, errlen, "tei embeddings provider: expected an array of %zu vectors", n);
    rc = Q_EUNAVAIL;
    goto done;
  }
  for (size_t k = 0; k < n && !rc; k++)
    rc = take_vector(json_array_get(reply, k), k, e->dim, out + k * (size_t)e->dim, err,
                     errlen);
done:
  json_decref(input);
  json_decref(body);
  json_decref(reply);
  return rc;
}

static int tei_embed(const embedder_t *e, const char *const *texts, const size_t *lens,
                     size_t n, float *out, char *err, size_t errlen) {
  return tei_embed_ex(e, texts, lens, n, out, NULL, err, errlen);
}

static void tei_free(embedder_t *e) {
  tei_embedder_t *t = (tei_embedder_t *)e;
  if (!t)
    return;
  free((char *)t->base.model);
  free((char *)t->base.name);
  openai_endpoint_cleanup(&t->ep);
  free(t);
}

embedder_t *embed_tei_new(const embed_openai_opts_t *opts) {
  tei_embedder_t *t = calloc(1, sizeof *t);
  if (!t)
    return NULL;
  t->base.name = strdup(opts->name ? opts->name : "tei");
  t->base.model = strdup(opts->model && opts->model[0] ? opts->model : "tei");
  t->base.dim = opts->dim;
  t->base.embed = tei_embed;
  t->base.embed_ex = tei_embed_ex;
  t->base.free = tei_free;
  t->connect_timeout_ms = opts->connect_timeout_ms;
  if (openai_endpoint_init(&t->ep, opts->url, opts->api_key,
                           opts->timeout_ms > 0 ? opts->timeout_ms : 10000) ||
      !t->base.model || !t->base.name) {
    tei_free(&t->base);
    return NULL;
  }
  return &t->base;
}
