/* embed_openai.c - embeddings from an OpenAI-compatible HTTP API.
 *
 * POST {"model", "input": [texts], "encoding_format": "float"} to the
 * configured URL (OpenAI, Azure-style proxies, vLLM, Ollama, LiteLLM, ... all
 * speak it) and read {"data": [{"index", "embedding": [...]}]}. Replies are
 * checked strictly: one vector per input, each exactly dim numbers, so a
 * misconfigured model can never put vectors of the wrong size into the
 * index. Vectors are L2-normalised on the way out (most providers already
 * do; the retriever relies on it). */
#include "openai_http.h"
#include "provider.h"

#include "quarry/error.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct openai_embedder {
  embedder_t base;
  openai_endpoint_t ep;
  int send_dim;
  int connect_timeout_ms;
} openai_embedder_t;

static int openai_embed_ex(const embedder_t *e, const char *const *texts,
                           const size_t *lens, size_t n, float *out, q_attempt_t *att,
                           char *err, size_t errlen) {
  const openai_embedder_t *o = (const openai_embedder_t *)e;
  json_t *body = NULL, *input = NULL, *reply = NULL;
  unsigned char *seen = NULL;
  int rc;

  input = json_array();
  body = json_object();
  seen = calloc(n ? n : 1, 1);
  if (!input || !body || !seen) {
    snprintf(err, errlen, "out of memory");
    rc = Q_ENOMEM;
    goto done;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *s = json_stringn(texts[i], lens[i]);
    if (!s) {
      snprintf(err, errlen, "texts[%zu]: not valid UTF-8", i);
      rc = Q_EINVAL;
      goto done;
    }
    json_array_append_new(input, s);
  }
  json_object_set_new(body, "model", json_string(e->model));
  json_object_set(body, "input", input);
  json_object_set_new(body, "encoding_format", json_string("float"));
  if (o->send_dim)
    json_object_set_new(body, "dimensions", json_integer(e->dim));
  openai_post_t post = {
      .who = "embeddings provider",
      .body = body,
      .max_reply_bytes = 64u << 20,
      /* 400: the provider refused this input (too long for the model, ...). */
      .bad_request_is_invalid = 1,
      .connect_timeout_ms = o->connect_timeout_ms,
      .att = att,
  };
  rc = openai_post_json(&o->ep, &post, &reply, err, errlen);
  if (rc)
    goto done;

  const json_t *data = json_object_get(reply, "data");
  if (!json_is_array(data) || json_array_size(data) != n) {
    snprintf(err, errlen,
             "embeddings provider: expected %zu vectors in \"data\", got %zu", n,
             json_is_array(data) ? json_array_size(data) : 0);
    rc = Q_EUNAVAIL;
    goto done;
  }
  for (size_t k = 0; k < n; k++) {
    const json_t *item = json_array_get(data, k);
    const json_t *idx = json_object_get(item, "index");
    const json_t *vec = json_object_get(item, "embedding");
    /* "index" says which input a vector belongs to; without it the
     * position in "data" does. */
    json_int_t i =
        idx ? (json_is_integer(idx) ? json_integer_value(idx) : -1) : (json_int_t)k;
    if (i < 0 || (size_t)i >= n || seen[i]) {
      snprintf(err, errlen, "embeddings provider: data[%zu] has a bad or repeated index",
               k);
      rc = Q_EUNAVAIL;
      goto done;
    }
    if (!json_is_array(vec) || json_array_size(vec) != (size_t)e->dim) {
      snprintf(err, errlen,
               "embeddings provider: data[%zu] has %zu dimensions, expected %d "
               "(check QUARRY_EMBED_MODEL / QUARRY_EMBED_DIM)",
               k, json_is_array(vec) ? json_array_size(vec) : 0, e->dim);
      rc = Q_EUNAVAIL;
      goto done;
    }
    seen[i] = 1;
    float *v = out + (size_t)i * (size_t)e->dim;
    double norm = 0;
    for (int d = 0; d < e->dim; d++) {
      const json_t *x = json_array_get(vec, (size_t)d);
      if (!json_is_number(x)) {
        snprintf(err, errlen, "embeddings provider: data[%zu][%d] is not a number", k, d);
        rc = Q_EUNAVAIL;
        goto done;
      }
      double f = json_number_value(x);
      if (!isfinite(f)) {
        snprintf(err, errlen, "embeddings provider: data[%zu][%d] is not finite", k, d);
        rc = Q_EUNAVAIL;
        goto done;
      }
      v[d] = (float)f;
      norm += f * f;
    }
    if (norm == 0) {
      snprintf(err, errlen, "embeddings provider: data[%zu] is a zero vector", k);
      rc = Q_EUNAVAIL;
      goto done;
    }
    norm = sqrt(norm);
    for (int d = 0; d < e->dim; d++)
      v[d] = (float)(v[d] / norm);
  }
  rc = 0;
done:
  json_decref(input);
  json_decref(body);
  json_decref(reply);
  free(seen);
  return rc;
}

static int openai_embed(const embedder_t *e, const char *const *texts, const size_t *lens,
                        size_t n, float *out, char *err, size_t errlen) {
  return openai_embed_ex(e, texts, lens, n, out, NULL, err, errlen);
}

static void openai_free(embedder_t *e) {
  openai_embedder_t *o = (openai_embedder_t *)e;
  if (!o)
    return;
  free((char *)o->base.model);
  free((char *)o->base.name);
  openai_endpoint_cleanup(&o->ep);
  free(o);
}

embedder_t *embed_openai_new(const embed_openai_opts_t *opts) {
  openai_embedder_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->base.name = strdup(opts->name ? opts->name : "openai");
  o->base.dim = opts->dim;
  o->base.embed = openai_embed;
  o->base.embed_ex = openai_embed_ex;
  o->connect_timeout_ms = opts->connect_timeout_ms;
  o->base.free = openai_free;
  o->base.model = strdup(opts->model ? opts->model : "");
  o->send_dim = opts->send_dim;
  if (openai_endpoint_init(&o->ep, opts->url, opts->api_key,
                           opts->timeout_ms > 0 ? opts->timeout_ms : 10000) ||
      !o->base.model || !o->base.name)
    goto oom;
  return &o->base;
oom:
  openai_free(&o->base);
  return NULL;
}
