/* openai_http.h - what the OpenAI-compatible providers (embed_openai.c,
 * gen_openai.c) share: the endpoint with the Authorization header that
 * carries the API key, and one JSON POST whose failures come back as a
 * q_err_t with a sentence for the operator. */
#ifndef QUARRY_LLM_OPENAI_HTTP_H
#define QUARRY_LLM_OPENAI_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include "quarry/error.h"
#include "quarry/resilience.h"

/* Where and how a provider is called. Owns its strings. */
typedef struct openai_endpoint {
  char *url;
  char *auth_header; /* "Authorization: Bearer <key>", or NULL without a key */
  int timeout_ms;    /* per call; shortened to the caller's deadline */
} openai_endpoint_t;

/* Copies url (NULL: "") and builds the header from api_key (NULL or "":
 * no header). Returns 0, or Q_ENOMEM; either way ep may then be given to
 * openai_endpoint_cleanup. */
q_err_t openai_endpoint_init(openai_endpoint_t *ep, const char *url, const char *api_key,
                             int timeout_ms);

/* Frees what ep owns, wiping the header first: it holds the API key. */
void openai_endpoint_cleanup(openai_endpoint_t *ep);

/* One call's particulars. */
typedef struct openai_post {
  const char *who; /* names the provider in err: "embeddings provider" */
  const json_t *body;
  size_t max_reply_bytes;
  /* HTTP 400 means the provider refused the caller's input (Q_EINVAL)
   * rather than failing (Q_EUNAVAIL): true for embeddings, whose input is
   * the caller's text; not for generation, whose prompt is ours. */
  int bad_request_is_invalid;
  int connect_timeout_ms; /* 0: curl's default */
  q_attempt_t *att;       /* optional out: status and Retry-After of the reply */
} openai_post_t;

/* POSTs p->body as JSON to ep. Returns 0 with *reply the parsed body of a
 * 2xx answer (NULL when it is not JSON; the caller json_decref()s it).
 * Otherwise *reply is NULL and err names p->who and says why: Q_ETIMEDOUT
 * when the caller's deadline has passed before the call or the call timed
 * out; Q_EUNAVAIL / Q_ETOOBIG for transport failures and oversized
 * replies; for other HTTP statuses the provider's own error message, with
 * Q_ERESOURCE for 429, Q_EINVAL for 400 when p->bad_request_is_invalid,
 * and Q_EUNAVAIL for the rest. Thread-safe. */
q_err_t openai_post_json(const openai_endpoint_t *ep, const openai_post_t *p,
                         json_t **reply, char *err, size_t errlen);

#endif
