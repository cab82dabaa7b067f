/* Tests of the retry decisions and the circuit breaker (resilience.c). */
#include "quarry/error.h"
#include "quarry/resilience.h"

#include <criterion/criterion.h>
#include <time.h>

Test(resilience, which_failures_are_retried) {
  q_attempt_t a = {.retry_after_ms = -1};
  a = (q_attempt_t){.rc = Q_ERESOURCE, .http_status = 429};
  cr_assert(q_retry_worth(&a));
  a = (q_attempt_t){.rc = Q_EUNAVAIL, .http_status = 503};
  cr_assert(q_retry_worth(&a));
  a = (q_attempt_t){.rc = Q_EUNAVAIL, .http_status = 500};
  cr_assert(q_retry_worth(&a));
  a = (q_attempt_t){.rc = Q_ETIMEDOUT, .http_status = 0};
  cr_assert(q_retry_worth(&a), "timeouts");
  a = (q_attempt_t){.rc = Q_EUNAVAIL, .http_status = 0};
  cr_assert(q_retry_worth(&a), "connection refused / reset");
  a = (q_attempt_t){.rc = Q_EUNAUTH, .http_status = 401};
  cr_assert(!q_retry_worth(&a), "a wrong key stays wrong");
  a = (q_attempt_t){.rc = Q_EUNAVAIL, .http_status = 400};
  cr_assert(!q_retry_worth(&a));
  a = (q_attempt_t){.rc = Q_ECANCELLED};
  cr_assert(!q_retry_worth(&a), "nobody is waiting any more");
  a = (q_attempt_t){.rc = Q_ETOOBIG};
  cr_assert(!q_retry_worth(&a));
  a = (q_attempt_t){.rc = 0, .http_status = 200};
  cr_assert(!q_retry_worth(&a));
}

Test(resilience, backoff_is_full_jitter_under_an_exponential_ceiling) {
  q_retry_policy_t p = {.max_attempts = 5,
                        .base_ms = 100,
                        .max_backoff_ms = 1000,
                        .max_retry_after_ms = 5000};
  int ceilings[] = {100, 200, 400, 800, 1000, 1000};
  for (int retry = 0; retry < 6; retry++) {
    int lo = 1 << 30, hi = -1;
    for (int i = 0; i < 2000; i++) {
      int d = q_retry_delay_ms(&p, retry, Q_RETRY_AFTER_NONE);
      cr_assert_geq(d, 0);
      cr_assert_leq(d, ceilings[retry], "retry %d: %d > %d", retry, d, ceilings[retry]);
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
    }
    /* Full jitter spreads over the whole range, not around the ceiling. */
    cr_assert_lt(lo, ceilings[retry] / 10, "retry %d: smallest %d", retry, lo);
    cr_assert_gt(hi, ceilings[retry] * 9 / 10, "retry %d: largest %d", retry, hi);
  }
}

Test(resilience, retry_after_wins_and_is_bounded) {
  q_retry_policy_t p = {.max_attempts = 3,
                        .base_ms = 100,
                        .max_backoff_ms = 1000,
                        .max_retry_after_ms = 3000};
  cr_assert_eq(q_retry_delay_ms(&p, 0, 2000), 2000);
  cr_assert_eq(q_retry_delay_ms(&p, 2, 0), 0);
  cr_assert_eq(q_retry_delay_ms(&p, 0, 3001), Q_ERESOURCE, "too long: fail over");
}

Test(resilience, retry_after_header_values) {
  int64_t now = 1764511200; /* Sun, 30 Nov 2025 14:00:00 GMT */
  cr_assert_eq(q_retry_after_parse("3", now), 3000);
  cr_assert_eq(q_retry_after_parse(" 0\r\n", now), 0);
  cr_assert_eq(q_retry_after_parse("Sun, 30 Nov 2025 14:00:05 GMT", now), 5000);
  cr_assert_eq(q_retry_after_parse("Sun, 30 Nov 2025 13:00:00 GMT", now), 0, "past");
  cr_assert_eq(q_retry_after_parse("soon", now), Q_RETRY_AFTER_NONE);
  cr_assert_eq(q_retry_after_parse("3s", now), Q_RETRY_AFTER_NONE);
  cr_assert_eq(q_retry_after_parse(NULL, now), Q_RETRY_AFTER_NONE);
  cr_assert_gt(q_retry_after_parse("99999999999", now), 0, "clamped, not overflowed");
}

Test(resilience, breaker_opens_after_n_failures_in_a_row) {
  q_breaker_t b;
  q_breaker_init(&b, 3, 1000);
  int64_t t = 10000;
  for (int i = 0; i < 2; i++) {
    cr_assert(q_breaker_allow(&b, t));
    q_breaker_record(&b, false, t);
  }
  cr_assert(q_breaker_allow(&b, t));
  q_breaker_record(&b, true, t); /* a success clears the count */
  for (int i = 0; i < 3; i++) {
    cr_assert(q_breaker_allow(&b, t));
    q_breaker_record(&b, false, t);
  }
  cr_assert_eq(q_breaker_state(&b, t), Q_BREAKER_OPEN);
  cr_assert(!q_breaker_allow(&b, t + 999), "refused during the cool-down");
  q_breaker_cleanup(&b);
}

Test(resilience, half_open_lets_one_probe_through) {
  q_breaker_t b;
  q_breaker_init(&b, 1, 500);
  int64_t t = 0;
  cr_assert(q_breaker_allow(&b, t));
  q_breaker_record(&b, false, t);
  cr_assert_eq(q_breaker_state(&b, t + 500), Q_BREAKER_HALF_OPEN);
  cr_assert(q_breaker_allow(&b, t + 500), "the probe");
  cr_assert(!q_breaker_allow(&b, t + 501), "only one probe at a time");
  q_breaker_record(&b, false, t + 600); /* probe failed: open again */
  cr_assert_eq(q_breaker_state(&b, t + 700), Q_BREAKER_OPEN);
  cr_assert(!q_breaker_allow(&b, t + 1099));
  cr_assert(q_breaker_allow(&b, t + 1100), "next probe after another cool-down");
  q_breaker_record(&b, true, t + 1150);
  cr_assert_eq(q_breaker_state(&b, t + 1150), Q_BREAKER_CLOSED);
  cr_assert(q_breaker_allow(&b, t + 1151));
  cr_assert(q_breaker_allow(&b, t + 1152));
  cr_assert_str_eq(q_breaker_state_name(Q_BREAKER_HALF_OPEN), "half_open");
  q_breaker_cleanup(&b);
}
