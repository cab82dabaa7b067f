/* resilience.c - retry decisions and circuit breakers for calls to outside
 * providers (resilience.h). */
#include "quarry/resilience.h"

#include <curl/curl.h>
#include <limits.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

bool q_retry_worth(const q_attempt_t *a) {
  if (a->rc == 0 || a->rc == Q_ECANCELLED)
    return false;
  if (a->http_status == 429 || a->http_status >= 500)
    return true;
  if (a->http_status >= 400)
    return false;
  /* No HTTP status (or a 2xx whose body broke off): timeouts and transport
   * failures. An invalid request or an oversized reply will not change. */
  return a->rc == Q_ETIMEDOUT || a->rc == Q_EUNAVAIL;
}

int q_retry_delay_ms(const q_retry_policy_t *p, int retry, int retry_after_ms) {
  if (retry_after_ms >= 0) {
    if (retry_after_ms > p->max_retry_after_ms)
      return Q_ERESOURCE;
    return retry_after_ms;
  }
  int64_t ceiling = p->base_ms > 0 ? p->base_ms : 1;
  for (int i = 0; i < retry && ceiling < p->max_backoff_ms; i++)
    ceiling *= 2;
  if (ceiling > p->max_backoff_ms)
    ceiling = p->max_backoff_ms;
  if (ceiling <= 0)
    return 0;
  if (sodium_init() < 0)
    return (int)ceiling;
  return (int)randombytes_uniform((uint32_t)ceiling + 1);
}

int q_retry_after_parse(const char *value, int64_t now_unix_s) {
  if (!value)
    return Q_RETRY_AFTER_NONE;
  while (*value == ' ' || *value == '\t')
    value++;
  if (*value >= '0' && *value <= '9') {
    char *end;
    long long s = strtoll(value, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
      end++;
    if (*end)
      return Q_RETRY_AFTER_NONE;
    return s > INT_MAX / 1000 ? INT_MAX : (int)(s * 1000);
  }
  time_t t = curl_getdate(value, NULL);
  if (t < 0)
    return Q_RETRY_AFTER_NONE;
  int64_t d = (int64_t)t - now_unix_s;
  if (d <= 0)
    return 0;
  return d > INT_MAX / 1000 ? INT_MAX : (int)(d * 1000);
}

void q_breaker_init(q_breaker_t *b, int threshold, int cooldown_ms) {
  memset(b, 0, sizeof *b);
  pthread_mutex_init(&b->mu, NULL);
  b->state = Q_BREAKER_CLOSED;
  b->threshold = threshold > 0 ? threshold : 1;
  b->cooldown_ms = cooldown_ms > 0 ? cooldown_ms : 1;
}

void q_breaker_cleanup(q_breaker_t *b) {
  pthread_mutex_destroy(&b->mu);
}

/* Moves open to half-open once the cool-down is over. mu held. */
static void tick(q_breaker_t *b, int64_t now_ms) {
  if (b->state == Q_BREAKER_OPEN && now_ms - b->opened_ms >= b->cooldown_ms) {
    b->state = Q_BREAKER_HALF_OPEN;
    b->probe_running = false;
  }
}

bool q_breaker_allow(q_breaker_t *b, int64_t now_ms) {
  bool ok;
  pthread_mutex_lock(&b->mu);
  tick(b, now_ms);
  switch (b->state) {
  case Q_BREAKER_CLOSED: ok = true; break;
  case Q_BREAKER_HALF_OPEN:
    ok = !b->probe_running;
    b->probe_running = true;
    break;
  default: ok = false;
  }
  pthread_mutex_unlock(&b->mu);
  return ok;
}

void q_breaker_record(q_breaker_t *b, bool ok, int64_t now_ms) {
  pthread_mutex_lock(&b->mu);
  if (ok) {
    b->state = Q_BREAKER_CLOSED;
    b->failures = 0;
    b->probe_running = false;
  } else if (b->state == Q_BREAKER_HALF_OPEN) {
    b->state = Q_BREAKER_OPEN;
    b->opened_ms = now_ms;
    b->probe_running = false;
  } else if (b->state == Q_BREAKER_CLOSED && ++b->failures >= b->threshold) {
    b->state = Q_BREAKER_OPEN;
    b->opened_ms = now_ms;
    b->failures = 0;
  }
  pthread_mutex_unlock(&b->mu);
}

q_breaker_state_t q_breaker_state(q_breaker_t *b, int64_t now_ms) {
  pthread_mutex_lock(&b->mu);
  tick(b, now_ms);
  q_breaker_state_t s = b->state;
  pthread_mutex_unlock(&b->mu);
  return s;
}

const char *q_breaker_state_name(q_breaker_state_t s) {
  switch (s) {
  case Q_BREAKER_CLOSED: return "closed";
  case Q_BREAKER_OPEN: return "open";
  default: return "half_open";
  }
}
