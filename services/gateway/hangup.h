/* hangup.h - notices clients that hang up while their request waits.
 *
 * libmicrohttpd does not look at a suspended connection at all: a client
 * that closes its socket while its query runs would only be noticed at the
 * next write, which for a JSON reply is the reply itself. The watcher holds
 * the sockets of waiting requests in an epoll set (EPOLLRDHUP: the peer
 * closed, or at least shut down its sending side; an HTTP client does that
 * only when it gives up) and calls back once per socket, on its own thread.
 * It never reads or writes the sockets. */
#ifndef QUARRY_GW_HANGUP_H
#define QUARRY_GW_HANGUP_H

#include <stdint.h>

#include "quarry/error.h"

typedef struct hangup hangup_t;

/* Runs on the watcher's thread, under its lock: keep it short, and never
 * call hangup_unwatch from it. */
typedef void (*hangup_cb)(void *ud);

/* Starts the watcher thread. NULL on failure (logged). */
hangup_t *hangup_new(void);

/* Watches fd: cb(ud) runs once when its peer hangs up. Returns a handle
 * (never 0), or 0 when the socket cannot be watched (the request then
 * learns of a hang-up at its next write). Thread-safe. */
uint64_t hangup_watch(hangup_t *h, int fd, hangup_cb cb, void *ud);

/* Stops watching (0 is fine). Once it returns, the callback is neither
 * running nor will it run: ud may be freed. Call it before the socket is
 * closed. Thread-safe. */
void hangup_unwatch(hangup_t *h, uint64_t handle);

/* Stops the thread and frees the watcher (every watch must be gone).
 * NULL is fine. */
void hangup_free(hangup_t *h);

#endif
