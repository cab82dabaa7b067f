/* guard.h - the gateway's defences against hostile or broken HTTP clients,
 * around libmicrohttpd (0.9.75, Debian bookworm's).
 *
 * libmicrohttpd offers a total connection limit, a per-address limit, an
 * idle timeout that every received byte resets, and a memory pool per
 * connection. Everything else is here:
 *
 *  - Connections: a total and a per-address cap checked at accept (a
 *    refused socket is closed at once: HTTP allows nothing else before a
 *    request), with the counts kept from libmicrohttpd's connection
 *    notifications so every refusal is counted.
 *  - Deadlines a trickle cannot reset: the request head must be complete
 *    within header_timeout_ms of the connection opening (or of the previous
 *    reply on a kept-alive connection); every body_timeout_ms window of the
 *    body must carry body_min_rate bytes per second (at least one byte); the
 *    head and body together must arrive within request_timeout_ms. A sweeper
 *    thread enforces them (see guard.c for how it closes a connection it
 *    does not own), answering 408 when a request was under way.
 *  - The request target: longer than max_url_bytes is 414 and more than
 *    max_query_params parameters is 400, both decided as soon as the request
 *    line is in, before libmicrohttpd parses the parameters into its pool
 *    (which, full, makes it close the connection without a reply).
 *  - The head: at most max_headers fields and max_header_bytes (431); strict
 *    HTTP/1.1 framing (one Content-Length, only "Transfer-Encoding: chunked"
 *    and never with Content-Length, no Transfer-Encoding in HTTP/1.0, CRLF
 *    line ends, no NUL or control bytes, no folded lines, one Host in
 *    HTTP/1.1; a NUL or control byte in the target, raw or as %00) answered
 *    400 (501 for a transfer coding other than chunked) and closed.
 *
 * Every refusal is counted in quarry_http_rejected_total{reason}; open
 * connections are the gauge quarry_http_connections.
 *
 * A limit of 0 in gw_cfg_t turns that check off (the unit tests' settings
 * leave most at 0); the configuration table never allows 0 where the check
 * matters.
 *
 * For handlers that suspend their connection (MHD_suspend_connection): the
 * deadlines stop watching a request once its body is complete or a reply is
 * queued, so suspending in the final call is free; a connection suspended
 * while its body still arrives reads nothing, and the body-rate deadline
 * will end it. */
#ifndef QUARRY_GW_GUARD_H
#define QUARRY_GW_GUARD_H

#include <microhttpd.h>
#include <stdbool.h>

#include "gateway.h"

typedef struct guard guard_t;

/* A refusal of the request head, for the caller to send with
 * "Connection: close". */
typedef struct guard_verdict {
  unsigned status;    /* 400, 414, 431, 501 */
  const char *slug;   /* code of the JSON error body */
  const char *reason; /* label of quarry_http_rejected_total */
  char msg[256];
} guard_verdict_t;

/* Creates the guard of one libmicrohttpd daemon. access and completed are
 * the server's own callbacks, which the guard's (below) wrap. cfg must
 * outlive the guard. Registers the metric families. NULL when out of
 * memory (logged). Not thread-safe. */
guard_t *guard_new(const gw_cfg_t *cfg, MHD_AccessHandlerCallback access,
                   void *access_cls, MHD_RequestCompletedCallback completed,
                   void *completed_cls);

/* What to pass to MHD_start_daemon: guard_accept_cb and guard_access_cb
 * with g as their closure, and MHD_OPTION_ARRAY with these options (limits,
 * timeouts, the guard's notification callbacks). Owned by g. */
const struct MHD_OptionItem *guard_mhd_options(guard_t *g);
enum MHD_Result guard_accept_cb(void *cls, const struct sockaddr *addr,
                                socklen_t addrlen);
enum MHD_Result guard_access_cb(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version,
                                const char *upload_data, size_t *upload_data_size,
                                void **con_cls);

/* Starts the sweeper thread (after the daemon started). 0 or Q_EINTERNAL. */
q_err_t guard_start(guard_t *g);

/* Stops the sweeper and frees g; call after MHD_stop_daemon. NULL is fine. */
void guard_free(guard_t *g);

/* Checks the head of the request on conn when its headers are in (the
 * first call of the access handler, with its method, url and version).
 * Returns true and fills *v when the request must be refused, after
 * counting the refusal; false when the head is fine. */
bool guard_check_head(struct MHD_Connection *conn, const char *method, const char *url,
                      const char *version, guard_verdict_t *v);

/* Counts a refusal decided elsewhere (reason: a label of
 * quarry_http_rejected_total, e.g. "content_type"). Thread-safe. */
void guard_count(const char *reason);

/* The status the guard itself sent for the request in progress on conn
 * (408 when a deadline ended it), 0 when none: for the access log and
 * http_requests_total, which would otherwise record a client that left. */
unsigned guard_answered(struct MHD_Connection *conn);

/* Tells the guard that the handler suspends the connection in its first
 * call (the head is in, the body not read) and that libmicrohttpd will call
 * it once more with no body data after the resume: that call is again a
 * first call, not the end of the body, so the body deadlines keep watching
 * the request. Call from the handler, before MHD_suspend_connection. */
void guard_first_call_again(struct MHD_Connection *conn);

/* ---- pure helpers, exposed for tests ---------------------------------- */

/* Classifies a Transfer-Encoding value: 0 when it is exactly "chunked"
 * (case-insensitive), which is all libmicrohttpd decodes; 501 when chunked
 * is the final coding after others it does not implement ("gzip,
 * chunked"); 400 otherwise ("identity", "chunked, gzip", empty). */
unsigned guard_transfer_encoding_status(const char *value);

/* Whether s[0..n) is a header field name (an RFC 9110 token). */
bool guard_is_token(const char *s, size_t n);

/* Whether s[0..n) has a control byte other than horizontal tab. */
bool guard_has_ctl(const char *s, size_t n);

/* Query parameters in a request target (the '&'-separated pieces after
 * '?'; 0 without a query string). */
size_t guard_query_params(const char *target);

#endif
