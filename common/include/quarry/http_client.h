/* http_client.h - JSON over HTTP with libcurl, for model providers, rerank
 * APIs and Milvus. Each call has a timeout and a cap on the reply size. */
#ifndef QUARRY_HTTP_CLIENT_H
#define QUARRY_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include "quarry/error.h"

typedef struct q_http_req {
  const char *method; /* "POST" (default) or "GET" */
  const char *url;
  const json_t *body;         /* serialised as the request body, or NULL */
  const char *const *headers; /* NULL-terminated "Name: value" list, or NULL */
  int timeout_ms;             /* whole transfer; 0: 10000 */
  size_t max_reply_bytes;     /* 0: 16 MiB */
  int connect_timeout_ms;     /* TCP + TLS connect; 0: curl's default */
  int *retry_after_ms;        /* optional out: the reply's Retry-After in
                                 milliseconds (resilience.h), -1 when none */
} q_http_req_t;

/* Sends the request. On a completed exchange returns 0 with *status set and
 * *reply the parsed JSON body (NULL when the body is empty or not JSON; the
 * caller json_decref()s it). Transport failures return Q_EUNAVAIL,
 * timeouts Q_ETIMEDOUT, oversized replies Q_ETOOBIG; err says why.
 * Thread-safe (q_http_global_init must have run once). */
q_err_t q_http_json(const q_http_req_t *req, long *status, json_t **reply, char *err,
                    size_t errlen);

/* curl_global_init; call once in main before threads start. */
void q_http_global_init(void);

#endif
