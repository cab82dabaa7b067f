/* ratelimit.h - requests per second per principal, counted in Redis.
 *
 * Fixed one-second windows: INCR quarry:rl:<tenant>:<user>:<unix second>
 * (with EXPIRE so windows vanish), allowed while the count is at most the
 * limit. Redis is an optimisation here, never a dependency: when it cannot
 * be reached the request is allowed and `rate_limit_unavailable` is logged
 * (at most once a second).
 *
 * No caller waits on Redis: checks are queued to one rate-limiter thread
 * that owns the Redis connection (hiredis), sends every queued INCR/EXPIRE
 * pair in one pipelined round trip and calls each check's callback with
 * the answer. The connection is opened lazily with a short timeout
 * (200 ms, so is every round trip); after a failure Redis is left alone
 * for a second, and meanwhile checks are answered "allowed" at once on the
 * caller's thread, as they are when the queue (RATELIMIT_QUEUE) is full:
 * an outage or a slow Redis costs requests nothing but the limit. */
#ifndef QUARRY_GW_RATELIMIT_H
#define QUARRY_GW_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"
#include "quarry/error.h"

#define RATELIMIT_QUEUE 4096 /* checks waiting for the rate-limiter thread */

/* The answer to one check: allowed is false only when Redis counted the
 * principal over the limit this second. Must not block (it runs on the
 * rate-limiter thread, which serves every check). */
typedef void (*ratelimit_cb)(void *ud, bool allowed);

/* Sets the Redis address ("host:port") and limit (0 disables) and starts
 * the rate-limiter thread when enabled. Call once before serving (again
 * after ratelimit_shutdown). 0, Q_EINVAL for a malformed address, or
 * Q_EINTERNAL when the thread cannot start. */
q_err_t ratelimit_init(const char *redis_addr, int64_t rps);

/* Whether the limiter is on (a limit was set): when it is off,
 * ratelimit_check always answers at once. */
bool ratelimit_enabled(void);

/* Checks p without blocking: cb(ud, allowed) runs exactly once, either
 * before this returns (limit off, Redis in its back-off after a failure,
 * queue full, shutting down; the return value is then true) or later on
 * the rate-limiter thread (the return value is then false). Thread-safe. */
bool ratelimit_check(const gw_principal_t *p, ratelimit_cb cb, void *ud);

/* The blocking form, for a caller with no event loop: waits for the
 * answer (at most about 2 x 200 ms). Thread-safe. */
bool ratelimit_allow(const gw_principal_t *p);

/* Stops the thread (checks still queued are answered "allowed") and
 * closes the connection. */
void ratelimit_shutdown(void);

#endif
