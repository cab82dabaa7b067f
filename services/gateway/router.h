/* router.h - the REST API's routes and the matching of a request's method
 * and path against them.
 *
 * A route is a method plus a path template whose segments are literal or
 * "{id}" (one non-empty segment of at most GW_PARAM_MAX bytes). Matching is
 * exact: no trailing slash, no prefix match. A path that matches some
 * template but not with the request's method is a 405, with the methods the
 * path does allow; a path matching no template is a 404. */
#ifndef QUARRY_GW_ROUTER_H
#define QUARRY_GW_ROUTER_H

#include <stddef.h>

#include "gateway.h"

typedef enum {
  BODY_NONE,   /* handler runs as soon as the headers are in */
  BODY_JSON,   /* body collected (max_json_bytes), then the handler runs */
  BODY_STREAM, /* body handed to the stream callbacks as it arrives */
} body_kind_t;

/* Callbacks of a streaming route. begin runs once the request is admitted
 * (authenticated, within rate limits) and may reject it with
 * http_reject(); data gets each piece of the body (never called once a
 * rejection is pending); end runs when the body is complete and replies;
 * cleanup runs when the request is over, whatever happened, and frees what
 * begin set up. */
typedef struct stream_ops {
  void (*begin)(gw_req_t *r);
  void (*data)(gw_req_t *r, const char *p, size_t n);
  void (*end)(gw_req_t *r);
  void (*cleanup)(gw_req_t *r);
} stream_ops_t;

struct route {
  const char *method; /* "GET", "POST" */
  const char *tmpl;   /* "/v1/documents/{id}": also the metrics label */
  body_kind_t body;
  int is_public;               /* no credential needed */
  void (*handle)(gw_req_t *r); /* BODY_NONE, BODY_JSON: must reply */
  const stream_ops_t *stream;  /* BODY_STREAM */
  /* GW_ROLE_* bits of which the principal needs one (0: any role), checked
   * once the request is admitted and before its body is read; action names
   * what is refused ("uploading documents") in the 403. */
  unsigned roles;
  const char *action;
};

typedef enum {
  ROUTE_OK = 0,
  ROUTE_NOT_FOUND,  /* 404 */
  ROUTE_BAD_METHOD, /* 405; match.allow lists what the path accepts */
} route_status_t;

typedef struct route_match {
  const route_t *route; /* set on ROUTE_OK */
  const char *param;    /* the {id} segment inside path, or NULL */
  size_t param_len;
  const char *tmpl; /* template the path matched (OK and BAD_METHOD) */
  char allow[64];   /* "GET, POST" on ROUTE_BAD_METHOD */
} route_match_t;

/* Matches method and path (without query string) against table[0..n).
 * param points into path. Pure: no allocation, thread-safe. */
route_status_t router_match(const route_t *table, size_t n, const char *method,
                            const char *path, route_match_t *m);

#endif
