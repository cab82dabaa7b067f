/* http_client.c - JSON over HTTP with libcurl (http_client.h).
 *
 * One easy handle per call: calls are rare next to the work they wrap (an
 * LLM completion, a rerank batch), so connection reuse is not worth a
 * shared, locked handle cache. The reply is collected into a buffer capped at
 * max_reply_bytes; overflowing aborts the transfer.
 *
 * The timeout is also capped by the calling thread's deadline (trace.h), the
 * same way outgoing gRPC calls are, so an HTTP call made while serving a
 * request never outlives that request. */
#include "quarry/http_client.h"

#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/resilience.h"
#include "quarry/trace.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_REPLY (16u << 20)
#define MAX_HEADER_BYTES 8192
#define MAX_HEADERS 64

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void global_init(void) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
}

void q_http_global_init(void) {
  pthread_once(&init_once, global_init);
}

typedef struct sink {
  q_buf_t buf;
  int too_big;
} sink_t;

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
  sink_t *s = ud;
  size_t n = size * nmemb;
  int rc = q_buf_append(&s->buf, data, n);
  if (rc == Q_ETOOBIG)
    s->too_big = 1;
  return rc ? 0 : n; /* a short count makes curl fail with CURLE_WRITE_ERROR */
}

/* Picks Retry-After out of the reply's headers (header_cb's ud is the
 * caller's int). */
static size_t header_cb(char *data, size_t size, size_t nmemb, void *ud) {
  size_t n = size * nmemb;
  static const char name[] = "retry-after:";
  if (n > sizeof name - 1 && n < 256 && strncasecmp(data, name, sizeof name - 1) == 0) {
    char v[256];
    memcpy(v, data + sizeof name - 1, n - (sizeof name - 1));
    v[n - (sizeof name - 1)] = '\0';
    *(int *)ud = q_retry_after_parse(v, (int64_t)time(NULL));
  }
  return n;
}

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err && errlen)
    snprintf(err, errlen, "%s", msg);
}

/* 1 when the method is a plain HTTP token of capitals (GET, POST, PUT...). */
static bool valid_method(const char *m) {
  size_t n = strlen(m);
  if (n == 0 || n > 16)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (m[i] < 'A' || m[i] > 'Z')
      return 0;
  return 1;
}

/* 1 when h looks like "Name: value" with no line breaks (which would let a
 * caller-supplied value inject headers). */
static bool valid_header(const char *h) {
  size_t n = strnlen(h, MAX_HEADER_BYTES + 1);
  if (n == 0 || n > MAX_HEADER_BYTES || !strchr(h, ':') || h[0] == ':')
    return 0;
  return strpbrk(h, "\r\n") == NULL;
}

/* Builds the header list: the caller's (checked) headers, then JSON defaults.
 * 0, Q_EINVAL or Q_ENOMEM; *out is freed by the caller either way. */
static q_err_t build_headers(const q_http_req_t *req, int has_body,
                             struct curl_slist **out, char *err, size_t errlen) {
  int user_ctype = 0;
  size_t nh = 0;
  struct curl_slist *tmp;
  for (const char *const *h = req->headers; h && *h; h++, nh++) {
    if (nh == MAX_HEADERS || !valid_header(*h)) {
      set_err(err, errlen, "http: invalid or too many request headers");
      return Q_EINVAL;
    }
    if (strncasecmp(*h, "Content-Type:", 13) == 0)
      user_ctype = 1;
    if (!(tmp = curl_slist_append(*out, *h)))
      return Q_ENOMEM;
    *out = tmp;
  }
  /* "Expect:" turns off curl's 100-continue wait on large bodies, which
   * costs a second against servers that do not answer it. */
  const char *defaults[] = {has_body && !user_ctype ? "Content-Type: application/json"
                                                    : NULL,
                            "Accept: application/json", "Expect:"};
  for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
    if (!defaults[i])
      continue;
    if (!(tmp = curl_slist_append(*out, defaults[i])))
      return Q_ENOMEM;
    *out = tmp;
  }
  return 0;
}

/* Length of the URL up to its query string: queries may carry API keys, and
 * error texts end up in logs. */
static int url_shown(const char *url) {
  size_t n = strcspn(url, "?#");
  return (int)(n > 200 ? 200 : n);
}

q_err_t q_http_json(const q_http_req_t *req, long *status, json_t **reply, char *err,
                    size_t errlen) {
  if (status)
    *status = 0;
  if (reply)
    *reply = NULL;
  if (req && req->retry_after_ms)
    *req->retry_after_ms = -1;
  if (err && errlen)
    err[0] = '\0';
  if (!req || !req->url || !*req->url) {
    set_err(err, errlen, "http: no URL");
    return Q_EINVAL;
  }
  const char *method = req->method && *req->method ? req->method : "POST";
  if (!valid_method(method)) {
    set_err(err, errlen, "http: invalid method");
    return Q_EINVAL;
  }
  int ulen = url_shown(req->url);

  long timeout = req->timeout_ms > 0 ? req->timeout_ms : DEFAULT_TIMEOUT_MS;
  int64_t deadline = q_trace_deadline();
  if (deadline > 0) {
    int64_t left = deadline - q_now_ms();
    if (left <= 0) {
      if (err && errlen)
        snprintf(err, errlen, "http: deadline passed before calling %.*s", ulen,
                 req->url);
      return Q_ETIMEDOUT;
    }
    if (left < timeout)
      timeout = (long)left;
  }

  int rc = 0;
  char *body = NULL;
  struct curl_slist *hdrs = NULL;
  CURL *h = NULL;
  sink_t sink = {.too_big = 0};
  q_buf_init(&sink.buf, req->max_reply_bytes ? req->max_reply_bytes : DEFAULT_MAX_REPLY);
  if (req->body && !(body = json_dumps(req->body, JSON_COMPACT))) {
    rc = Q_ENOMEM;
    goto fail;
  }
  if ((rc = build_headers(req, body != NULL, &hdrs, err, errlen)) != 0)
    goto fail;
  if (!(h = curl_easy_init())) {
    rc = Q_ENOMEM;
    goto fail;
  }

  char cerr[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(h, CURLOPT_URL, req->url);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "quarry/1");
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
  if (req->connect_timeout_ms > 0)
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)req->connect_timeout_ms);
  if (req->retry_after_ms) {
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, req->retry_after_ms);
  }
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (strcmp(method, "POST") != 0)
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") == 0) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  }

  CURLcode cc = curl_easy_perform(h);
  if (cc == CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (status)
      *status = code;
    if (reply && sink.buf.len)
      *reply = json_loadb(sink.buf.data, sink.buf.len, JSON_DECODE_ANY, NULL);
    goto done;
  }
  if (sink.too_big) {
    if (err && errlen)
      snprintf(err, errlen, "http: reply from %.*s larger than %zu bytes", ulen, req->url,
               sink.buf.max);
    rc = Q_ETOOBIG;
    goto done;
  }
  rc = cc == CURLE_OPERATION_TIMEDOUT                                  ? Q_ETIMEDOUT
       : cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL ? Q_EINVAL
       : cc == CURLE_OUT_OF_MEMORY                                     ? Q_ENOMEM
                                                                       : Q_EUNAVAIL;
  if (err && errlen)
    snprintf(err, errlen, "http: %.*s: %s", ulen, req->url,
             cerr[0] ? cerr : curl_easy_strerror(cc));
  goto done;

fail:
  if (rc == Q_ENOMEM)
    set_err(err, errlen, "http: out of memory");
done:
  if (h)
    curl_easy_cleanup(h);
  q_buf_cleanup(&sink.buf);
  curl_slist_free_all(hdrs);
  free(body);
  return rc;
}
