/* resilience.h - what every call to an outside provider (model servers,
 * rerank APIs) shares: which failures are worth retrying, how long to wait
 * before the next attempt (exponential backoff with full jitter, or the
 * server's Retry-After), and a circuit breaker per provider.
 *
 * The retry loop itself belongs to the caller, which knows whether it may
 * still retry (a stream that has sent its first token may not); this module
 * holds the decisions so they are the same everywhere and testable alone. */
#ifndef QUARRY_RESILIENCE_H
#define QUARRY_RESILIENCE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "quarry/error.h"

/* The retry policy of one provider list (docs/providers.md). */
typedef struct q_retry_policy {
  int max_attempts;       /* per provider, first attempt included (>= 1) */
  int base_ms;            /* backoff of the first retry's ceiling */
  int max_backoff_ms;     /* ceiling of any computed backoff */
  int max_retry_after_ms; /* a longer Retry-After is not waited for: fail over */
} q_retry_policy_t;

/* Defaults: 3 attempts, 200 ms base, 5 s ceiling, Retry-After up to 10 s. */
#define Q_RETRY_POLICY_DEFAULT                                                           \
  ((q_retry_policy_t){.max_attempts = 3,                                                 \
                      .base_ms = 200,                                                    \
                      .max_backoff_ms = 5000,                                            \
                      .max_retry_after_ms = 10000})

/* How one attempt ended, as the retry decision needs it. */
typedef struct q_attempt {
  q_err_t rc;         /* 0 on success */
  long http_status;   /* 0 when no HTTP status was received */
  int retry_after_ms; /* from the reply's Retry-After; < 0: none */
} q_attempt_t;

/* true when the failure is one a later attempt may not repeat: HTTP 429,
 * 5xx, a timeout, or a transport failure with no HTTP status (connection
 * refused, reset, closed mid-reply). 4xx other than 429 (bad request, wrong
 * key) and cancellation are not. */
bool q_retry_worth(const q_attempt_t *a);

/* The wait before retry number `retry` (0 for the first retry): a uniform
 * random value in [0, min(max_backoff_ms, base_ms * 2^retry)] ("full
 * jitter"). When the server sent Retry-After the wait is that instead.
 * Returns the milliseconds to wait, or Q_ERESOURCE when Retry-After is
 * longer than p->max_retry_after_ms (the caller should fail over rather
 * than wait). */
int q_retry_delay_ms(const q_retry_policy_t *p, int retry, int retry_after_ms);

/* No Retry-After (the value of q_attempt_t.retry_after_ms then). */
#define Q_RETRY_AFTER_NONE (-1)

/* Parses a Retry-After value: delta-seconds ("3") or an HTTP date, against
 * now_unix_s for the latter (a date in the past gives 0). Returns
 * milliseconds >= 0, or Q_RETRY_AFTER_NONE when the value is neither. */
int q_retry_after_parse(const char *value, int64_t now_unix_s);

/* ---- circuit breaker -------------------------------------------------------- */

typedef enum { Q_BREAKER_CLOSED, Q_BREAKER_OPEN, Q_BREAKER_HALF_OPEN } q_breaker_state_t;

/* One provider's breaker: closed (calls go through) until `threshold`
 * failures in a row; then open (calls are refused at once) for
 * `cooldown_ms`; then half-open: exactly one call (the probe) goes through,
 * and its outcome closes the breaker or opens it again for another
 * cool-down. Thread-safe. */
typedef struct q_breaker {
  pthread_mutex_t mu;
  q_breaker_state_t state;
  int threshold;
  int cooldown_ms;
  int failures;       /* consecutive, while closed */
  int64_t opened_ms;  /* when it last opened (q_now_ms time) */
  bool probe_running; /* half-open: the one probe is out */
} q_breaker_t;

void q_breaker_init(q_breaker_t *b, int threshold, int cooldown_ms);
void q_breaker_cleanup(q_breaker_t *b);

/* true when a call may go out now (now_ms in q_now_ms() time). In the
 * half-open state the first caller gets true and becomes the probe; every
 * other caller gets false until the probe reports. A caller that got true
 * must report with q_breaker_record. */
bool q_breaker_allow(q_breaker_t *b, int64_t now_ms);

/* Reports the outcome of an allowed call: ok closes the breaker and clears
 * the count; a failure counts (and opens the breaker at the threshold, or
 * at once after a failed probe). */
void q_breaker_record(q_breaker_t *b, bool ok, int64_t now_ms);

/* The state now (an open breaker whose cool-down is over reads half-open). */
q_breaker_state_t q_breaker_state(q_breaker_t *b, int64_t now_ms);

/* "closed", "open", "half_open". */
const char *q_breaker_state_name(q_breaker_state_t s);

#endif
