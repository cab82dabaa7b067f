/* loopback.h - loopback ports for tests that start a server of their own
 * (PostgreSQL, Redis) or need an address where nothing listens. */
#ifndef QUARRY_TEST_LOOPBACK_H
#define QUARRY_TEST_LOOPBACK_H

/* A TCP port on 127.0.0.1 that nothing was bound to a moment ago, or -1.
 * Another process may take it before the caller binds it, so callers that
 * start a server retry with a new port when the start fails. */
int loopback_free_port(void);

#endif
