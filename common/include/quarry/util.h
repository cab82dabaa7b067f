/* util.h - small helpers that have no better home: signals, ids, hashing,
 * address parsing. */
#ifndef QUARRY_UTIL_H
#define QUARRY_UTIL_H

#include <stddef.h>
#include <stdint.h>

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
int q_addr_split(const char *addr, char *host, size_t hostlen, int *port);

/* Constant-time comparison of two equal-length buffers; 1 when equal. */
int q_ct_equal(const void *a, const void *b, size_t n);

#endif
