/* sidecar.h - the plain-HTTP side port every service serves.
 *
 * GET /metrics (Prometheus text), GET /healthz (the process is alive: 200)
 * and GET /readyz (200 when the readiness callback says dependencies are
 * reachable, else 503 with the reason). Runs on libmicrohttpd's own thread;
 * anything else is 404 JSON. */
#ifndef QUARRY_SIDECAR_H
#define QUARRY_SIDECAR_H

#include <stddef.h>
#include "quarry/error.h"

/* Returns 0 when ready, else Q_EUNAVAIL with a short reason in why. Called from the
 * HTTP thread; must be thread-safe and quick. */
typedef q_err_t (*q_ready_cb)(void *ud, char *why, size_t whylen);

typedef struct q_sidecar q_sidecar_t;

/* Starts serving on addr ("host:port"; port 0 picks a free one). ready may
 * be NULL (always ready). Returns NULL and logs on failure. */
q_sidecar_t *q_sidecar_start(const char *addr, q_ready_cb ready, void *ud);

/* The bound port. */
int q_sidecar_port(const q_sidecar_t *s);

/* Stops and frees. NULL is fine. */
void q_sidecar_stop(q_sidecar_t *s);

#endif
