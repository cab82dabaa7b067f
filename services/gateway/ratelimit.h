/* ratelimit.h - requests per second per principal, counted in Redis.
 *
 * Fixed one-second windows: INCR quarry:rl:<tenant>:<user>:<unix second>
 * (with EXPIRE so windows vanish), allowed while the count is at most the
 * limit. Redis is an optimisation here, never a dependency: when it cannot
 * be reached the request is allowed and `rate_limit_unavailable` is logged
 * (at most once a second). Connections are opened lazily with a short
 * timeout, kept in a small pool, and after a failure not retried for a
 * moment so an outage costs requests nothing. */
#ifndef QUARRY_GW_RATELIMIT_H
#define QUARRY_GW_RATELIMIT_H

#include <stdint.h>

#include "gateway.h"
#include "quarry/error.h"
#include <stdbool.h>

/* Sets the Redis address ("host:port") and limit (0 disables). Call once
 * before serving. 0, or Q_EINVAL for a malformed address. */
q_err_t ratelimit_init(const char *redis_addr, int64_t rps);

/* 1 when p may make another request this second, 0 when over the limit.
 * Thread-safe. */
bool ratelimit_allow(const gw_principal_t *p);

/* Closes the connections. */
void ratelimit_shutdown(void);

#endif
