/* trace.h - the request context a thread is working for.
 *
 * A handler thread carries the current trace id and absolute deadline in
 * thread-local storage. The gRPC server adapter sets them from the incoming
 * call; the gateway sets them per HTTP request. Outgoing gRPC calls and log
 * lines pick them up from here, which is how trace ids and deadlines
 * propagate without being threaded through every function. */
#ifndef QUARRY_TRACE_H
#define QUARRY_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"
#include <stdbool.h>

#define Q_TRACE_ID_LEN 32 /* hex characters of a W3C trace id */

/* Sets the calling thread's trace id (copied; NULL or "" clears it) and
 * absolute deadline in q_now_ms() time (0: none). */
void q_trace_set(const char *trace_id, int64_t deadline_ms);

/* Clears the calling thread's context. */
void q_trace_clear(void);

/* The calling thread's trace id, "" when none. Valid until the next set. */
const char *q_trace_id(void);

/* The calling thread's absolute deadline (q_now_ms() time), 0 when none. */
int64_t q_trace_deadline(void);

/* Writes a fresh random 32-hex-character trace id plus NUL into out. */
void q_trace_new_id(char out[Q_TRACE_ID_LEN + 1]);

/* Extracts the trace id from a W3C traceparent header
 * ("00-<32 hex>-<16 hex>-<2 hex>"). 0 on success, Q_EINVAL when malformed. */
q_err_t q_trace_parse_traceparent(const char *tp, char out[Q_TRACE_ID_LEN + 1]);

/* Checks that s is a usable trace id (or client request id): 1 to
 * Q_LIMIT_REQUEST_ID_BYTES characters of [A-Za-z0-9-_.]. true when
 * usable. */
bool q_trace_id_valid(const char *s);

/* Monotonic milliseconds (arbitrary epoch) and wall-clock milliseconds. */
int64_t q_now_ms(void);
int64_t q_wall_ms(void);

/* Monotonic seconds (arbitrary epoch) with nanosecond resolution: for
 * latency histograms, where milliseconds are too coarse. */
double q_now_s(void);

#endif
