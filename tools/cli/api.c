/* api.c - REST calls on libcurl, and what their replies mean (see api.h). */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cli.h"

q_err_t api_init(api_t *a, const config_t *cfg, long timeout_ms) {
  memset(a, 0, sizeof *a);
  a->cfg = cfg;
  a->timeout_ms = timeout_ms;
  if (cfg->key[0])
    snprintf(a->auth, sizeof a->auth, "Authorization: Bearer %s", cfg->key);
  a->easy = curl_easy_init();
  return a->easy ? 0 : Q_ENOMEM;
}

void api_cleanup(api_t *a) {
  if (a->easy)
    curl_easy_cleanup(a->easy);
  /* The header held the key: do not leave it in freed memory. */
  volatile char *p = a->auth;
  for (size_t i = 0; i < sizeof a->auth; i++)
    p[i] = 0;
  a->easy = NULL;
}

void api_reply_init(api_reply_t *r) {
  memset(r, 0, sizeof *r);
  r->retry_after_s = -1;
  r->interrupt_level = 1;
  q_buf_init(&r->body, API_MAX_REPLY_BYTES);
}

void api_reply_cleanup(api_reply_t *r) {
  q_buf_cleanup(&r->body);
  json_decref(r->json);
  r->json = NULL;
}

/* Clears what a previous attempt left, keeping the caller's settings. */
static void reply_reset(api_reply_t *r) {
  r->status = 0;
  r->curl = CURLE_OK;
  r->curl_err[0] = '\0';
  r->content_type[0] = '\0';
  r->retry_after_s = -1;
  r->replayed = false;
  r->too_big = false;
  r->streamed = false;
  r->sse_rc = 0;
  r->interrupted = false;
  q_buf_reset(&r->body);
  json_decref(r->json);
  r->json = NULL;
}

static bool is_event_stream(const char *ct) {
  return strncasecmp(ct, "text/event-stream", 17) == 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  api_reply_t *r = ud;
  size_t len = size * n;
  if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after 100) */
    r->content_type[0] = '\0';
    r->retry_after_s = -1;
    r->replayed = false;
    return len;
  }
  const char *colon = memchr(p, ':', len);
  if (!colon)
    return len;
  size_t nl = (size_t)(colon - p);
  const char *v = colon + 1, *end = p + len;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  size_t vl = (size_t)(end - v);
  if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
    snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)vl, v);
  } else if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
    int s = 0;
    size_t i = 0;
    for (; i < vl && v[i] >= '0' && v[i] <= '9' && s < 100000; i++)
      s = s * 10 + (v[i] - '0');
    if (vl && i == vl)
      r->retry_after_s = s;
  } else if (nl == 19 && strncasecmp(p, "Idempotent-Replayed", 19) == 0) {
    r->replayed = vl == 4 && strncasecmp(v, "true", 4) == 0;
  }
  return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  api_reply_t *r = ud;
  size_t len = size * n;
  if (r->sse && (r->streamed || is_event_stream(r->content_type))) {
    r->streamed = true;
    r->sse_rc = sse_feed(r->sse, p, len);
    return r->sse_rc ? 0 : len; /* 0 ends the transfer (CURLE_WRITE_ERROR) */
  }
  if (q_buf_append(&r->body, p, len)) {
    r->too_big = true;
    return 0;
  }
  return len;
}

static int on_xfer(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow) {
  api_reply_t *r = ud;
  if (r->on_progress)
    r->on_progress(r->progress_ud, (long long)ulnow);
  if (r->interrupt_level <= 1 ? cli_interrupted() : cli_interrupted_hard()) {
    r->interrupted = true;
    return 1; /* CURLE_ABORTED_BY_CALLBACK */
  }
  return 0;
}

struct curl_slist *api_setup(api_t *a, CURL *h, const char *method, const char *path,
                             const char *const *extra, api_reply_t *r) {
  char url[CONFIG_URL_MAX + 4096];
  snprintf(url, sizeof url, "%s%s", a->cfg->server, path);
  bool own_accept = false;
  for (size_t i = 0; extra && extra[i]; i++)
    own_accept |= strncasecmp(extra[i], "Accept:", 7) == 0;
  const char *hdrs[24];
  size_t n = 0;
  if (!own_accept)
    hdrs[n++] = "Accept: application/json";
  if (a->auth[0])
    hdrs[n++] = a->auth;
  for (size_t i = 0; extra && extra[i] && n < 24; i++)
    hdrs[n++] = extra[i];
  struct curl_slist *hs = NULL;
  for (size_t i = 0; i < n; i++) {
    struct curl_slist *t = curl_slist_append(hs, hdrs[i]);
    if (!t) {
      curl_slist_free_all(hs);
      return NULL;
    }
    hs = t;
  }
  if (!hs)
    return NULL;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "quarry-cli/" QUARRY_CLI_VERSION);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, API_CONNECT_TIMEOUT_MS);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, a->timeout_ms);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_err);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, r);
  /* Redirects would resend the key to wherever they point: not followed. */
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (strcmp(method, "GET") == 0)
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  else if (strcmp(method, "POST") != 0)
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  return hs;
}

void api_finish(api_reply_t *r, CURL *h, CURLcode rc) {
  r->curl = rc;
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  r->status = status;
  if (rc == CURLE_ABORTED_BY_CALLBACK && !r->interrupted)
    r->interrupted = cli_interrupted();
  if (r->body.len && !r->streamed) {
    json_error_t je;
    r->json = json_loadb(r->body.data, r->body.len, 0, &je);
  }
}

bool api_retryable(const api_reply_t *r, bool idempotent) {
  if (r->interrupted)
    return false;
  if (r->status == 429)
    return true;
  if (!idempotent)
    return false;
  if (r->status == 502 || r->status == 503 || r->status == 504)
    return true;
  /* Nothing received: the request may not have been processed. A refused
   * connection is not retried: the server is down, say so at once. */
  return r->status == 0 &&
         (r->curl == CURLE_RECV_ERROR || r->curl == CURLE_SEND_ERROR ||
          r->curl == CURLE_GOT_NOTHING || r->curl == CURLE_PARTIAL_FILE);
}

double api_retry_delay(const api_reply_t *r, int attempt) {
  if (r->retry_after_s >= 0)
    return r->retry_after_s > 30 ? 30.0 : (r->retry_after_s ? r->retry_after_s : 0.2);
  double d = 0.5;
  for (int i = 0; i < attempt && d < 8; i++)
    d *= 2;
  return d > 8 ? 8 : d;
}

bool api_sleep(double seconds) {
  long long end = cli_now_ms() + (long long)(seconds * 1000.0);
  while (!cli_interrupted()) {
    long long left = end - cli_now_ms();
    if (left <= 0)
      return true;
    if (left > 100)
      left = 100;
    struct timespec ts = {0, (long)left * 1000000L};
    nanosleep(&ts, NULL);
  }
  return false;
}

void api_call(api_t *a, const char *method, const char *path, const json_t *body,
              const char *const *extra, bool idempotent, api_reply_t *r) {
  char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
  const char *hdrs[16];
  size_t n = 0;
  if (body)
    hdrs[n++] = "Content-Type: application/json";
  for (size_t i = 0; extra && extra[i] && n < 15; i++)
    hdrs[n++] = extra[i];
  hdrs[n] = NULL;
  for (int attempt = 0;; attempt++) {
    reply_reset(r);
    curl_easy_reset(a->easy);
    struct curl_slist *hs = api_setup(a, a->easy, method, path, hdrs, r);
    if (!hs || (body && !payload)) {
      snprintf(r->curl_err, sizeof r->curl_err, "out of memory");
      r->curl = CURLE_OUT_OF_MEMORY;
      curl_slist_free_all(hs);
      break;
    }
    if (payload) {
      curl_easy_setopt(a->easy, CURLOPT_POSTFIELDS, payload);
      curl_easy_setopt(a->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    CURLcode rc = curl_easy_perform(a->easy);
    api_finish(r, a->easy, rc);
    curl_slist_free_all(hs);
    if (attempt + 1 >= API_RETRIES || !api_retryable(r, idempotent))
      break;
    if (!api_sleep(api_retry_delay(r, attempt))) {
      r->interrupted = true;
      break;
    }
  }
  free(payload);
}

const char *api_server_message(const api_reply_t *r) {
  json_t *e = json_object_get(r->json, "error");
  const char *m = json_string_value(json_object_get(e, "message"));
  return m ? m : "";
}

static const char *server_code(const api_reply_t *r) {
  const char *c =
      json_string_value(json_object_get(json_object_get(r->json, "error"), "code"));
  return c ? c : "";
}

int api_outcome(const api_t *a, const api_reply_t *r, const char **slug, char *msg,
                size_t msglen) {
  const char *server = a->cfg->server;
  const char *smsg = api_server_message(r);
  if (r->interrupted || (r->curl == CURLE_ABORTED_BY_CALLBACK && cli_interrupted())) {
    *slug = "interrupted";
    snprintf(msg, msglen, "interrupted");
    return CLI_EXIT_INTERRUPTED;
  }
  if (r->too_big) {
    *slug = "bad_reply";
    snprintf(msg, msglen, "the server's reply is larger than %u bytes",
             API_MAX_REPLY_BYTES);
    return CLI_EXIT_SERVER;
  }
  if (r->status == 0 || (r->curl != CURLE_OK && r->curl != CURLE_WRITE_ERROR)) {
    const char *why = r->curl_err[0] ? r->curl_err : curl_easy_strerror(r->curl);
    if (r->curl == CURLE_URL_MALFORMAT || r->curl == CURLE_UNSUPPORTED_PROTOCOL) {
      *slug = "usage";
      snprintf(msg, msglen, "bad server URL %s: %s", server, why);
      return CLI_EXIT_USAGE;
    }
    if (r->status == 0) {
      *slug = "unreachable";
      snprintf(msg, msglen,
               "cannot reach the Quarry server at %s: %s (is it running? the server is "
               "set with --server, QUARRY_URL or `server =` in the config file)",
               server, why);
      return CLI_EXIT_SERVER;
    }
    *slug = "transfer_failed";
    snprintf(msg, msglen, "the exchange with %s broke off (HTTP %ld): %s", server,
             r->status, why);
    return CLI_EXIT_SERVER;
  }
  if (r->status >= 200 && r->status < 300) {
    *slug = "ok";
    snprintf(msg, msglen, "HTTP %ld", r->status);
    return CLI_EXIT_OK;
  }
  if (r->status == 401) {
    *slug = "unauthenticated";
    if (!a->cfg->key[0])
      snprintf(msg, msglen,
               "the server wants an API key and none is set: pass --key or --key-file, "
               "set QUARRY_API_KEY, or put `key = ...` in ~/.config/quarry/config");
    else
      snprintf(msg, msglen,
               "the server at %s refused the API key from %s (HTTP 401: %s); check that "
               "the key is complete and not revoked",
               server, a->cfg->key_from, smsg[0] ? smsg : "unauthenticated");
    return CLI_EXIT_AUTH;
  }
  if (r->status == 403) {
    *slug = "permission_denied";
    snprintf(msg, msglen, "the API key from %s may not do this (HTTP 403: %s)",
             a->cfg->key_from, smsg[0] ? smsg : "permission denied");
    return CLI_EXIT_AUTH;
  }
  const char *code = server_code(r);
  if (r->status >= 500) {
    *slug = code[0] ? code : "server_error";
    snprintf(msg, msglen, "server error (HTTP %ld%s%s): %s", r->status,
             code[0] ? " " : "", code, smsg[0] ? smsg : "no details");
    return CLI_EXIT_SERVER;
  }
  if (r->status == 429) {
    *slug = "resource_exhausted";
    snprintf(msg, msglen,
             "rate limited by the server (HTTP 429), still after %d tries: %s",
             API_RETRIES, smsg[0] ? smsg : "too many requests");
    return CLI_EXIT_SERVER;
  }
  *slug = code[0] ? code : "http_error";
  snprintf(msg, msglen, "HTTP %ld%s%s: %s", r->status, code[0] ? " " : "", code,
           smsg[0] ? smsg : (r->body.len ? "(no error message)" : "(empty reply)"));
  return CLI_EXIT_FAILED;
}

char *api_escape(const char *s) {
  return curl_easy_escape(NULL, s, 0);
}
