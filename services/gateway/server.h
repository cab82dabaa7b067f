/* server.h - the gateway's HTTP server: libmicrohttpd with its own pool of
 * polling threads, the life of one request (routing, admission, body
 * handling, reply) and the HTTP metrics.
 *
 * Admission (route, credential, rate limit) happens when the headers are
 * in; a refusal is sent at once when the client sent no body or asked for
 * "Expect: 100-continue", else after the body has been read and discarded
 * (bounded), because libmicrohttpd cannot reply mid-body and clients that
 * write the whole body first would otherwise see a reset.
 *
 * A handler may answer later (gw_async_t in gateway.h): POST /v1/query
 * suspends its connection while the pipeline runs on a worker, so HTTP
 * threads never wait for it. */
#ifndef QUARRY_GW_SERVER_H
#define QUARRY_GW_SERVER_H

#include <stdint.h>

#include "gateway.h"

typedef struct gw_server gw_server_t;

/* Starts serving cfg->http_listen ("host:port"; port 0 picks a free one)
 * with cfg->http_threads threads. cfg must outlive the server. Registers
 * the metric families. NULL on failure (logged). */
gw_server_t *gw_server_start(const gw_cfg_t *cfg);

/* The bound port. */
int gw_server_port(const gw_server_t *s);

/* Stops accepting connections, lets requests in progress finish for up to
 * grace_ms, then closes everything and frees the server. NULL is fine. */
void gw_server_stop(gw_server_t *s, int64_t grace_ms);

#endif
