/* api.h - the client's side of Quarry's REST API, on libcurl.
 *
 * One api_t per run holds the settings every request shares (server, the
 * Authorization header, timeouts, user agent) and one easy handle reused by
 * the blocking calls so they share a connection. Concurrent transfers (the
 * uploads of `quarry ingest`) set up their own handles with api_setup and
 * run them on a curl multi handle; every transfer reports into an
 * api_reply_t.
 *
 * Replies are classified in one place (api_outcome): which exit code a
 * reply means and the sentence a person reads. The API key only ever goes
 * into the Authorization header; messages name where it came from. */
#ifndef QUARRY_CLI_API_H
#define QUARRY_CLI_API_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/limits.h"
#include "sse.h"

#define API_MAX_REPLY_BYTES (16u << 20)
#define API_CONNECT_TIMEOUT_MS 10000L
#define API_RETRIES 5 /* 429s (and, for idempotent requests, 502/503/504) */

typedef struct api {
  const config_t *cfg;
  CURL *easy;
  char auth[Q_LIMIT_CREDENTIAL_BYTES + 32]; /* "Authorization: Bearer <key>" */
  long timeout_ms;                          /* whole request; 0: none */
} api_t;

/* Called while a transfer runs with the bytes sent so far. */
typedef void (*api_progress_cb)(void *ud, long long sent);

typedef struct api_reply {
  long status; /* HTTP status; 0 when no exchange happened */
  CURLcode curl;
  char curl_err[CURL_ERROR_SIZE];
  char content_type[128];
  int retry_after_s; /* Retry-After in seconds; -1 when absent */
  bool replayed;     /* Idempotent-Replayed: true (the server answered an earlier
                        request's result; nothing new was stored) */
  q_buf_t body;
  json_t *json; /* the body parsed, when it is JSON (api_finish) */
  bool too_big;
  /* Streaming: when sse is set and the reply is text/event-stream, the
   * body goes to the parser instead of the buffer. */
  sse_parser_t *sse;
  bool streamed;
  q_err_t sse_rc;
  /* 1: the first Ctrl-C aborts the transfer; 2: only the second does
   * (uploads finish the file in flight). */
  int interrupt_level;
  bool interrupted;
  api_progress_cb on_progress;
  void *progress_ud;
} api_reply_t;

/* Prepares a, which refers to cfg for its lifetime. 0 or Q_ENOMEM. */
q_err_t api_init(api_t *a, const config_t *cfg, long timeout_ms);
void api_cleanup(api_t *a);

void api_reply_init(api_reply_t *r);
/* Frees the body and JSON; the reply may be initialised again. */
void api_reply_cleanup(api_reply_t *r);

/* Configures easy handle h for method on the server's path (which the
 * caller escaped), with the shared headers plus extra (may be NULL; the
 * caller keeps it alive during the transfer and frees it), writing into r.
 * Returns the header list it built (free with curl_slist_free_all after
 * the transfer) or NULL when out of memory. */
struct curl_slist *api_setup(api_t *a, CURL *h, const char *method, const char *path,
                             const char *const *extra, api_reply_t *r);

/* After a transfer of h ended with rc: records the status and parses a
 * JSON body. */
void api_finish(api_reply_t *r, CURL *h, CURLcode rc);

/* One blocking request with an optional JSON body (NULL: none) and extra
 * headers; 429 is retried after Retry-After, and when idempotent also
 * 502/503/504 and connection failures, up to API_RETRIES times. r is
 * reset per attempt and holds the last one. */
void api_call(api_t *a, const char *method, const char *path, const json_t *body,
              const char *const *extra, bool idempotent, api_reply_t *r);

/* What a finished reply means: the exit code (CLI_EXIT_OK for 2xx), a
 * slug for --json errors, and a sentence for people (without the key). */
int api_outcome(const api_t *a, const api_reply_t *r, const char **slug, char *msg,
                size_t msglen);

/* The server's own error message in r ({"error":{"message":..}}), or "". */
const char *api_server_message(const api_reply_t *r);

/* true when the reply asks to be retried later (429, 502, 503, 504, or a
 * connection that failed before anything was received). */
bool api_retryable(const api_reply_t *r, bool idempotent);

/* Seconds to wait before retry number attempt (0-based): Retry-After when
 * the server sent one (at most 30), else 0.5, 1, 2, 4... capped at 8. */
double api_retry_delay(const api_reply_t *r, int attempt);

/* Sleeps seconds, returning early (false) on Ctrl-C. */
bool api_sleep(double seconds);

/* URL-escapes s for a path segment or query value. Caller frees with
 * curl_free; NULL when out of memory. */
char *api_escape(const char *s);

#endif
