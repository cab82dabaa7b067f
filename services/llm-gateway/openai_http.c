/* openai_http.c - the HTTP side of the OpenAI-compatible providers (see
 * openai_http.h). */
#include "openai_http.h"

#include "quarry/error.h"
#include "quarry/http_client.h"
#include "quarry/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_PREFIX "Authorization: Bearer "

q_err_t openai_endpoint_init(openai_endpoint_t *ep, const char *url, const char *api_key,
                             int timeout_ms) {
  ep->url = strdup(url ? url : "");
  ep->auth_header = NULL;
  ep->timeout_ms = timeout_ms;
  if (!ep->url)
    return Q_ENOMEM;
  if (!api_key || !api_key[0])
    return 0;
  size_t len = strlen(AUTH_PREFIX) + strlen(api_key) + 1;
  ep->auth_header = malloc(len);
  if (!ep->auth_header)
    return Q_ENOMEM;
  snprintf(ep->auth_header, len, AUTH_PREFIX "%s", api_key);
  return 0;
}

void openai_endpoint_cleanup(openai_endpoint_t *ep) {
  free(ep->url);
  ep->url = NULL;
  if (ep->auth_header) {
    /* Wiped so the key does not linger in freed memory (core dumps);
     * explicit_bzero, as a memset right before free may be optimised away. */
    explicit_bzero(ep->auth_header, strlen(ep->auth_header));
    free(ep->auth_header);
    ep->auth_header = NULL;
  }
}

/* The per-call timeout, shortened to the caller's deadline. 0 when the
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

/* The provider's own reason for refusing a call: error.message, or error
 * when it is a plain string. */
static const char *provider_message(const json_t *reply) {
  const json_t *e = json_object_get(reply, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  if (!m)
    m = json_string_value(e);
  return m ? m : "no error message";
}

q_err_t openai_post_json(const openai_endpoint_t *ep, const openai_post_t *p,
                         json_t **reply, char *err, size_t errlen) {
  const char *headers[3] = {"Content-Type: application/json", ep->auth_header, NULL};
  long status = 0;
  int rc;

  *reply = NULL;
  if (p->att)
    *p->att = (q_attempt_t){.rc = 0, .http_status = 0, .retry_after_ms = -1};
  int timeout = effective_timeout(ep->timeout_ms);
  if (timeout <= 0) {
    snprintf(err, errlen, "deadline exceeded before calling the %s", p->who);
    return Q_ETIMEDOUT;
  }
  q_http_req_t req = {
      .method = "POST",
      .url = ep->url,
      .body = p->body,
      .headers = headers,
      .timeout_ms = timeout,
      .max_reply_bytes = p->max_reply_bytes,
      .connect_timeout_ms = p->connect_timeout_ms,
      .retry_after_ms = p->att ? &p->att->retry_after_ms : NULL,
  };
  char herr[256] = "";
  rc = q_http_json(&req, &status, reply, herr, sizeof herr);
  if (p->att)
    p->att->http_status = status;
  if (rc) {
    snprintf(err, errlen, "%s: %s", p->who, herr);
    goto fail;
  }
  if (status < 200 || status > 299) {
    snprintf(err, errlen, "%s answered HTTP %ld: %.200s", p->who, status,
             provider_message(*reply));
    rc = status == 429                                ? Q_ERESOURCE
         : status == 400 && p->bad_request_is_invalid ? Q_EINVAL
                                                      : Q_EUNAVAIL;
    goto fail;
  }
  return 0;
fail:
  if (p->att)
    p->att->rc = rc;
  json_decref(*reply);
  *reply = NULL;
  return rc;
}
