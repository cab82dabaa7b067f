/* embed_openai.c - embeddings from an OpenAI-compatible HTTP API.
 *
 * POST {"model", "input": [texts], "encoding_format": "float"} to the
 * configured URL (OpenAI, Azure-style proxies, vLLM, Ollama, LiteLLM, ... all
 * speak it) and read {"data": [{"index", "embedding": [...]}]}. Replies are
 * checked strictly: one vector per input, each exactly dim numbers, so a
 * misconfigured model can never put vectors of the wrong size into the
 * index. Vectors are L2-normalised on the way out (most providers already
 * do; the retriever relies on it). */
#include "provider.h"

#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/trace.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct openai_embedder {
  embedder_t base;
  char *url;
  char *auth_header; /* "Authorization: Bearer ..." or NULL */
  int send_dim;
  int timeout_ms;
} openai_embedder_t;

/* The per-attempt timeout, shortened to the caller's deadline. 0 when the
 * deadline has already passed. */
static int effective_timeout(int timeout_ms) {
  int64_t deadline = q_trace_deadline();
  if (deadline > 0) {
    int64_t left = deadline - q_now_ms();
    if (left <= 0)
      return 0;
    if (left < timeout_ms)
      return (int)left;
  }
  return timeout_ms;
}

/* Copies the provider's own error message (error.message), if any, so the
 * operator sees why the call was refused. */
static const char *provider_message(const json_t *reply) {
  const json_t *e = json_object_get(reply, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  if (!m)
    m = json_string_value(e);
  return m ? m : "no error message";
}

static int openai_embed(const embedder_t *e, const char *const *texts,
                        const size_t *lens, size_t n, float *out, char *err,
                        size_t errlen) {
  const openai_embedder_t *o = (const openai_embedder_t *)e;
  json_t *body = NULL, *input = NULL, *reply = NULL;
  unsigned char *seen = NULL;
  const char *headers[3] = {"Content-Type: application/json", NULL, NULL};
  long status = 0;
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
  if (o->auth_header)
    headers[1] = o->auth_header;

  int timeout = effective_timeout(o->timeout_ms);
  if (timeout <= 0) {
    snprintf(err, errlen, "deadline exceeded before calling the embeddings provider");
    rc = Q_ETIMEDOUT;
    goto done;
  }
  q_http_req_t req = {
      .method = "POST",
      .url = o->url,
      .body = body,
      .headers = headers,
      .timeout_ms = timeout,
      .max_reply_bytes = 64u << 20,
  };
  char herr[256] = "";
  rc = q_http_json(&req, &status, &reply, herr, sizeof herr);
  if (rc) {
    snprintf(err, errlen, "embeddings provider: %s", herr);
    goto done;
  }
  if (status < 200 || status > 299) {
    snprintf(err, errlen, "embeddings provider answered HTTP %ld: %.200s", status,
             provider_message(reply));
    /* 400 means the provider refused this input (too long for the model,
     * ...); anything else is the provider's problem, not the caller's. */
    rc = status == 400 ? Q_EINVAL : status == 429 ? Q_ERESOURCE : Q_EUNAVAIL;
    goto done;
  }

  const json_t *data = json_object_get(reply, "data");
  if (!json_is_array(data) || json_array_size(data) != n) {
    snprintf(err, errlen, "embeddings provider: expected %zu vectors in \"data\", got %zu",
             n, json_is_array(data) ? json_array_size(data) : 0);
    rc = Q_EUNAVAIL;
    goto done;
  }
  for (size_t k = 0; k < n; k++) {
    const json_t *item = json_array_get(data, k);
    const json_t *idx = json_object_get(item, "index");
    const json_t *vec = json_object_get(item, "embedding");
    /* "index" says which input a vector belongs to; without it the
     * position in "data" does. */
    json_int_t i = idx ? (json_is_integer(idx) ? json_integer_value(idx) : -1)
                       : (json_int_t)k;
    if (i < 0 || (size_t)i >= n || seen[i]) {
      snprintf(err, errlen, "embeddings provider: data[%zu] has a bad or repeated index", k);
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

static void openai_destroy(embedder_t *e) {
  openai_embedder_t *o = (openai_embedder_t *)e;
  if (!o)
    return;
  free((char *)o->base.model);
  free(o->url);
  if (o->auth_header) {
    /* The header carries the API key: wipe it before giving it back. */
    memset(o->auth_header, 0, strlen(o->auth_header));
    free(o->auth_header);
  }
  free(o);
}

embedder_t *embed_openai_new(const embed_openai_opts_t *opts) {
  openai_embedder_t *o = calloc(1, sizeof *o);
  if (!o)
    return NULL;
  o->base.name = "openai";
  o->base.dim = opts->dim;
  o->base.embed = openai_embed;
  o->base.destroy = openai_destroy;
  o->base.model = strdup(opts->model ? opts->model : "");
  o->url = strdup(opts->url ? opts->url : "");
  o->send_dim = opts->send_dim;
  o->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : 10000;
  if (opts->api_key && opts->api_key[0]) {
    size_t len = strlen("Authorization: Bearer ") + strlen(opts->api_key) + 1;
    o->auth_header = malloc(len);
    if (o->auth_header)
      snprintf(o->auth_header, len, "Authorization: Bearer %s", opts->api_key);
    else
      goto oom;
  }
  if (!o->base.model || !o->url)
    goto oom;
  return &o->base;
oom:
  openai_destroy(&o->base);
  return NULL;
}
