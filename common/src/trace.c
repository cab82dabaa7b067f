/* trace.c - the thread's request context (trace id, deadline), W3C
 * traceparent parsing and the clocks (see trace.h). */
#include "quarry/trace.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quarry/error.h"
#include "quarry/limits.h"

static _Thread_local char tls_trace_id[Q_LIMIT_REQUEST_ID_BYTES + 1];
static _Thread_local int64_t tls_deadline_ms;

void q_trace_set(const char *trace_id, int64_t deadline_ms) {
  if (trace_id) {
    size_t n = strnlen(trace_id, Q_LIMIT_REQUEST_ID_BYTES);
    memcpy(tls_trace_id, trace_id, n);
    tls_trace_id[n] = '\0';
  } else {
    tls_trace_id[0] = '\0';
  }
  tls_deadline_ms = deadline_ms;
}

void q_trace_clear(void) {
  tls_trace_id[0] = '\0';
  tls_deadline_ms = 0;
}

const char *q_trace_id(void) {
  return tls_trace_id;
}

int64_t q_trace_deadline(void) {
  return tls_deadline_ms;
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;

static void sodium_init_once(void) {
  if (sodium_init() < 0)
    abort(); /* no usable randomness: ids would not be unique */
}

void q_trace_new_id(char out[Q_TRACE_ID_LEN + 1]) {
  unsigned char raw[Q_TRACE_ID_LEN / 2];
  static const unsigned char zero[sizeof raw];
  pthread_once(&sodium_once, sodium_init_once);
  do /* W3C: the all-zero trace id is invalid */
    randombytes_buf(raw, sizeof raw);
  while (memcmp(raw, zero, sizeof raw) == 0);
  sodium_bin2hex(out, Q_TRACE_ID_LEN + 1, raw, sizeof raw);
}

/* n lowercase hex digits, not all zero when nonzero is set. */
static bool lower_hex(const char *s, size_t n, int nonzero) {
  int any = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return 0;
    any |= c != '0';
  }
  return !nonzero || any;
}

q_err_t q_trace_parse_traceparent(const char *tp, char out[Q_TRACE_ID_LEN + 1]) {
  /* version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55 */
  if (!tp)
    return Q_EINVAL;
  size_t len = strnlen(tp, 256);
  if (len < 55 || !lower_hex(tp, 2, 0) || memcmp(tp, "ff", 2) == 0 || tp[2] != '-' ||
      !lower_hex(tp + 3, 32, 1) || tp[35] != '-' || !lower_hex(tp + 36, 16, 1) ||
      tp[52] != '-' || !lower_hex(tp + 53, 2, 0))
    return Q_EINVAL;
  /* Version 00 has exactly these fields; later versions may append
   * "-..." fields, which a version-00 parser must ignore. */
  if (len != 55 && (memcmp(tp, "00", 2) == 0 || tp[55] != '-'))
    return Q_EINVAL;
  memcpy(out, tp + 3, Q_TRACE_ID_LEN);
  out[Q_TRACE_ID_LEN] = '\0';
  return 0;
}

bool q_trace_id_valid(const char *s) {
  if (!s)
    return 0;
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (n >= Q_LIMIT_REQUEST_ID_BYTES)
      return 0;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_' || c == '.'))
      return 0;
  }
  return n > 0;
}

static int64_t clock_ms(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double q_now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t q_now_ms(void) {
  return clock_ms(CLOCK_MONOTONIC);
}

int64_t q_wall_ms(void) {
  return clock_ms(CLOCK_REALTIME);
}
