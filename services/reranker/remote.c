/* remote.c - outside rerank APIs (remote.h).
 *
 * TEI: {"query", "texts": [...], "truncate": true} -> [{"index", "score"}].
 * Cohere / Jina: {"model", "query", "documents": [...], "top_n": n,
 * "return_documents": false} -> {"results": [{"index", "relevance_score"}]}.
 * Every reply is checked: each input index exactly once, finite scores, so
 * a broken server cannot drop or duplicate passages. Passages are sorted
 * by score here (APIs differ in whether they sort), equal scores keeping
 * the input order. */
#include "remote.h"

#include "quarry/http_client.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/resilience.h"
#include "quarry/trace.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPLY_BYTES (8u << 20)
#define POLL_MS 20

typedef struct remote_provider {
  q_provider_kind_t kind;
  char *name, *url, *model, *auth; /* auth: "Authorization: Bearer ..." or NULL */
  int timeout_ms, connect_timeout_ms;
  q_breaker_t breaker;
} remote_provider_t;

struct remote {
  remote_provider_t *list;
  size_t n;
  q_retry_policy_t retry;
  q_metric_t *calls; /* quarry_rerank_provider_requests_total{provider,outcome} */
};

size_t remote_count(const remote_t *r) {
  return r ? r->n : 0;
}

void remote_free(remote_t *r) {
  if (!r)
    return;
  for (size_t i = 0; i < r->n; i++) {
    remote_provider_t *p = &r->list[i];
    free(p->name);
    free(p->url);
    free(p->model);
    if (p->auth) {
      explicit_bzero(p->auth, strlen(p->auth));
      free(p->auth);
    }
    q_breaker_cleanup(&p->breaker);
  }
  free(r->list);
  free(r);
}

remote_t *remote_new(const q_providers_t *cfg) {
  size_t n = cfg->n[Q_CAP_RERANK];
  if (!n)
    return NULL;
  remote_t *r = calloc(1, sizeof *r);
  if (!r || !(r->list = calloc(n, sizeof *r->list))) {
    free(r);
    return NULL;
  }
  r->retry = cfg->retry;
  r->calls = q_metrics_counter("quarry_rerank_provider_requests_total",
                               "Calls to outside rerank APIs by provider and outcome.",
                               "provider,outcome");
  for (size_t i = 0; i < n; i++, r->n++) {
    const q_provider_cfg_t *c = &cfg->list[Q_CAP_RERANK][i];
    remote_provider_t *p = &r->list[i];
    p->kind = c->kind;
    p->name = strdup(c->name);
    p->url = strdup(c->url);
    p->model = strdup(c->model);
    p->timeout_ms = c->timeout_ms;
    p->connect_timeout_ms = c->connect_timeout_ms;
    q_breaker_init(&p->breaker, cfg->breaker_failures, cfg->breaker_cooldown_ms);
    if (c->api_key) {
      size_t len = strlen(c->api_key) + sizeof "Authorization: Bearer ";
      if ((p->auth = malloc(len)))
        snprintf(p->auth, len, "Authorization: Bearer %s", c->api_key);
    }
    if (!p->name || !p->url || !p->model || (c->api_key && !p->auth)) {
      r->n++;
      remote_free(r);
      return NULL;
    }
  }
  return r;
}

static json_t *request_body(const remote_provider_t *p, const char *query, size_t qlen,
                            const features_passage_t *ps, size_t n) {
  json_t *texts = json_array();
  if (!texts)
    return NULL;
  for (size_t i = 0; i < n; i++)
    if (json_array_append_new(texts,
                              json_stringn(ps[i].text ? ps[i].text : "", ps[i].len))) {
      json_decref(texts);
      return NULL;
    }
  json_t *q = json_stringn(query, qlen);
  if (p->kind == Q_PROVIDER_TEI_RERANK)
    return json_pack("{s:o,s:o,s:b}", "query", q, "texts", texts, "truncate", 1);
  return json_pack("{s:s,s:o,s:o,s:i,s:b}", "model", p->model, "query", q, "documents",
                   texts, "top_n", (int)n, "return_documents", 0);
}

/* Reads scores[0..n) from a reply; each index exactly once. */
static q_err_t read_scores(const remote_provider_t *p, const json_t *reply, size_t n,
                           double *scores, char *err, size_t errlen) {
  const json_t *arr =
      p->kind == Q_PROVIDER_TEI_RERANK ? reply : json_object_get(reply, "results");
  const char *score_key = p->kind == Q_PROVIDER_TEI_RERANK ? "score" : "relevance_score";
  if (!json_is_array(arr) || json_array_size(arr) != n) {
    snprintf(err, errlen, "%s: expected %zu scored passages, got %zu", p->name, n,
             json_is_array(arr) ? json_array_size(arr) : 0);
    return Q_EUNAVAIL;
  }
  unsigned char *seen = calloc(n ? n : 1, 1);
  if (!seen)
    return Q_ENOMEM;
  q_err_t rc = 0;
  for (size_t k = 0; k < n && !rc; k++) {
    const json_t *item = json_array_get(arr, k);
    const json_t *idx = json_object_get(item, "index");
    const json_t *sc = json_object_get(item, score_key);
    json_int_t i = json_is_integer(idx) ? json_integer_value(idx) : -1;
    double s = json_is_number(sc) ? json_number_value(sc) : NAN;
    if (i < 0 || (size_t)i >= n || seen[i] || !isfinite(s)) {
      snprintf(err, errlen, "%s: result %zu has a bad or repeated index or score",
               p->name, k);
      rc = Q_EUNAVAIL;
      break;
    }
    seen[i] = 1;
    scores[i] = s;
  }
  free(seen);
  return rc;
}

static q_err_t call_one(const remote_provider_t *p, const json_t *body, size_t n,
                        double *scores, q_attempt_t *att, char *err, size_t errlen) {
  const char *headers[2] = {p->auth, NULL};
  long status = 0;
  json_t *reply = NULL;
  char herr[256] = "";
  q_http_req_t req = {.method = "POST",
                      .url = p->url,
                      .body = body,
                      .headers = p->auth ? headers : NULL,
                      .timeout_ms = p->timeout_ms,
                      .max_reply_bytes = MAX_REPLY_BYTES,
                      .connect_timeout_ms = p->connect_timeout_ms,
                      .retry_after_ms = &att->retry_after_ms};
  q_err_t rc = q_http_json(&req, &status, &reply, herr, sizeof herr);
  att->http_status = status;
  if (rc) {
    snprintf(err, errlen, "%s: %s", p->name, herr);
  } else if (status < 200 || status > 299) {
    const json_t *e = json_object_get(reply, "error");
    const char *m = json_string_value(json_object_get(e, "message"));
    if (!m)
      m = json_string_value(e);
    if (!m)
      m = json_string_value(json_object_get(reply, "message"));
    snprintf(err, errlen, "%s answered HTTP %ld: %.200s", p->name, status,
             m ? m : "no error message");
    rc = status == 429 ? Q_ERESOURCE : Q_EUNAVAIL;
  } else {
    rc = read_scores(p, reply, n, scores, err, errlen);
  }
  json_decref(reply);
  att->rc = rc;
  return rc;
}

static void sleep_ms(int ms) {
  int64_t until = q_now_ms() + ms;
  for (int64_t left; (left = until - q_now_ms()) > 0;) {
    struct timespec ts = {0, (long)(left < POLL_MS ? left : POLL_MS) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

static void count(remote_t *r, const char *provider, const char *outcome) {
  const char *lv[2] = {provider, outcome};
  q_metrics_inc(r->calls, lv);
}

q_err_t remote_rank(remote_t *r, const char *query, size_t qlen,
                    const features_passage_t *passages, size_t n, method_result_t *out,
                    char *err, size_t errlen) {
  double *scores = calloc(n ? n : 1, sizeof *scores);
  q_err_t rc = Q_EUNAVAIL;
  snprintf(err, errlen, "no rerank provider is available");
  if (!scores)
    return Q_ENOMEM;
  for (size_t i = 0; i < r->n; i++) {
    remote_provider_t *p = &r->list[i];
    json_t *body = request_body(p, query, qlen, passages, n);
    if (!body) {
      snprintf(err, errlen, "%s: cannot build the request (invalid UTF-8?)", p->name);
      rc = Q_EINVAL;
      break;
    }
    for (int attempt = 0; attempt < r->retry.max_attempts; attempt++) {
      if (!q_breaker_allow(&p->breaker, q_now_ms())) {
        count(r, p->name, "circuit_open");
        snprintf(err, errlen, "%s: circuit breaker open", p->name);
        rc = Q_EUNAVAIL;
        break;
      }
      q_attempt_t att = {.retry_after_ms = Q_RETRY_AFTER_NONE};
      rc = call_one(p, body, n, scores, &att, err, errlen);
      q_breaker_record(&p->breaker, rc == 0, q_now_ms());
      count(r, p->name, rc ? "error" : "ok");
      if (rc == 0)
        break;
      q_log_warn("rerank provider failed", "{s:s,s:s,s:i,s:i,s:s}", "provider", p->name,
                 "code", q_err_name(rc), "http_status", (int)att.http_status, "attempt",
                 attempt + 1, "error", err);
      if (!q_retry_worth(&att) || attempt + 1 >= r->retry.max_attempts)
        break;
      int delay = q_retry_delay_ms(&r->retry, attempt, att.retry_after_ms);
      int64_t deadline = q_trace_deadline();
      if (delay < 0 || (deadline > 0 && q_now_ms() + delay >= deadline))
        break;
      sleep_ms(delay);
    }
    json_decref(body);
    if (rc == 0)
      break;
  }
  if (rc == 0) {
    for (size_t i = 0; i < n; i++)
      out[i] = (method_result_t){.index = i, .score = scores[i]};
    method_sort(out, n);
  }
  free(scores);
  return rc;
}
