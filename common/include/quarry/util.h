/* util.h - small helpers that have no better home: signals, ids, hashing,
 * address parsing, timed waits. */
#ifndef QUARRY_UTIL_H
#define QUARRY_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>
#include "quarry/error.h"
#include <stdbool.h>

/* Blocks SIGTERM, SIGINT and SIGPIPE(ignored) in the calling thread; call
 * first in main so every thread started later inherits the mask and
 * q_signal_wait can collect them. */
void q_signals_block(void);

/* Waits for SIGTERM or SIGINT; returns the signal number. */
int q_signal_wait(void);

/* Sends SIGTERM to this process so q_signal_wait returns (for tests and
 * fatal paths). */
void q_signal_raise_term(void);

/* Writes n random bytes as 2n lowercase hex characters plus NUL (libsodium). */
void q_random_hex(char *out, size_t nbytes);

/* A random UUID v4 as 36 characters plus NUL. */
void q_uuid4(char out[37]);

/* SHA-256 of data as 64 hex characters plus NUL (OpenSSL). */
void q_sha256_hex(const void *data, size_t len, char out[65]);

/* Splits "host:port". 0 on success, Q_EINVAL when malformed. host gets at
 * most hostlen-1 characters. */
q_err_t q_addr_split(const char *addr, char *host, size_t hostlen, int *port);

/* Resolves a listen address "host:port" (q_addr_split's form; host "*"
 * means every interface) into *out for bind(2) or libmicrohttpd's
 * MHD_OPTION_SOCK_ADDR, and its port into *port. 0, or Q_EINVAL with err
 * saying why (malformed, or a host that does not resolve). */
q_err_t q_addr_listen(const char *addr, struct sockaddr_storage *out, int *port,
                      char *err, size_t errlen);

/* Constant-time comparison of two equal-length buffers; 1 when equal. */
bool q_ct_equal(const void *a, const void *b, size_t n);

/* Initialises a condition variable whose timed waits run on CLOCK_MONOTONIC,
 * so a wall-clock step can neither cut a wait short nor stretch it. Returns
 * 0 or an errno value, like pthread_cond_init. */
int q_cond_init_monotonic(pthread_cond_t *cv);

/* The CLOCK_MONOTONIC time ms milliseconds from now (now when ms < 0), as
 * the absolute deadline pthread_cond_timedwait takes on a
 * q_cond_init_monotonic condition variable. */
void q_cond_deadline(struct timespec *ts, int ms);

#endif
