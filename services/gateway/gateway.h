/* gateway.h - what the gateway's modules share: its settings and the state
 * of one HTTP request as it travels from the router through authentication
 * to a handler.
 *
 * A request is served by one libmicrohttpd worker thread from start to end
 * (the thread pool never moves a connection between threads, and a
 * suspended one comes back to the same thread), so nothing in gw_req_t
 * needs locking: work done elsewhere (a query's pipeline) keeps its own
 * state and never touches gw_req_t. Everything the request allocates
 * comes from its arena, released when libmicrohttpd reports the request
 * complete. */
#ifndef QUARRY_GATEWAY_H
#define QUARRY_GATEWAY_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarry/arena.h"
#include "quarry/buf.h"
#include "quarry/limits.h"
#include "quarry/trace.h"

/* Settings, filled from the environment by main.c. */
typedef struct gw_cfg {
  const char *http_listen; /* QUARRY_HTTP_LISTEN */
  int64_t http_threads;    /* QUARRY_HTTP_THREADS */
  int http_epoll;          /* QUARRY_HTTP_EPOLL: epoll(7) rather than poll(2) */
  const char *auth_addr;   /* QUARRY_AUTH_ADDR */
  const char *ingestion_addr;
  const char *retriever_addr;
  const char *reranker_addr;
  const char *llm_addr; /* QUARRY_LLM_GATEWAY_ADDR */
  const char *feedback_addr;
  const char *redis_addr;    /* QUARRY_REDIS_ADDR */
  int64_t max_upload_bytes;  /* QUARRY_MAX_UPLOAD_BYTES */
  int64_t max_json_bytes;    /* QUARRY_MAX_JSON_BYTES */
  int64_t query_timeout_ms;  /* QUARRY_QUERY_TIMEOUT_MS: deadline of every
                                non-upload request */
  int64_t upload_timeout_ms; /* QUARRY_UPLOAD_TIMEOUT_MS */
  int64_t rate_limit_rps;    /* QUARRY_RATE_LIMIT_RPS; 0 disables */
  const char *web_dir;       /* QUARRY_WEB_DIR; "" finds it next to the binary */

  /* The edge's limits (guard.h; QUARRY_HTTP_*); 0 turns a check off. */
  int64_t max_connections;        /* open connections in all */
  int64_t max_connections_per_ip; /* ... from one address (IPv6: one /64) */
  int64_t header_timeout_ms;      /* request head complete after connect / last reply */
  int64_t body_timeout_ms;        /* window over which body_min_rate is measured */
  int64_t body_min_rate;          /* body bytes per second, at least 1 per window */
  int64_t request_timeout_ms;     /* head and body complete, wall-clock */
  int64_t idle_timeout_ms;        /* libmicrohttpd's, reset by every byte */
  int64_t max_headers;            /* header fields */
  int64_t max_header_bytes;       /* request line plus header fields */
  int64_t max_url_bytes;          /* raw request target */
  int64_t max_query_params;
  int64_t conn_memory_bytes; /* libmicrohttpd's pool per connection; 0: 256 KiB */
  int64_t drain_bytes;       /* most body read to answer a stranger refused on the head */
  int64_t readyz_interval_ms; /* period of the dependency checks (depwatch.h) */
  /* Admission control of query pipelines (pool.h); 0 takes the default. */
  int64_t pipeline_max_inflight; /* QUARRY_PIPELINE_MAX_INFLIGHT */
  int64_t pipeline_queue;        /* QUARRY_PIPELINE_QUEUE */
  int64_t tenant_max_inflight;   /* QUARRY_TENANT_MAX_INFLIGHT */
  const char *openai_model;      /* QUARRY_OPENAI_MODEL */
} gw_cfg_t;

/* Defaults of the pipeline settings. A pipeline in flight holds no thread
 * (it runs on asynchronous gRPC completions), only its arena (a few
 * hundred KiB at most for a long answer), so thousands may be in flight;
 * the queue absorbs a burst beyond that (1,024: a thousand streamed
 * questions arriving at once wait for their CPU stages rather than get
 * 503); one tenant may have 8 in their CPU stages at once (an answer being
 * generated gives its slot back, pool_yield), so one busy tenant cannot
 * starve the others. */
#define GW_PIPELINE_MAX_INFLIGHT_DEFAULT 4096
#define GW_PIPELINE_QUEUE_DEFAULT 1024
#define GW_TENANT_MAX_INFLIGHT_DEFAULT 8

/* Who is calling, as established by the auth service. */
typedef struct gw_principal {
  char tenant_id[Q_LIMIT_TENANT_ID_BYTES + 1];
  char user_id[Q_LIMIT_USER_ID_BYTES + 1];
  char key_id[Q_LIMIT_KEY_ID_BYTES + 1];
  unsigned roles; /* GW_ROLE_* bits the auth service granted */
} gw_principal_t;

/* The roles of a principal (auth's "admin", "writer", "reader"). */
enum { GW_ROLE_ADMIN = 1, GW_ROLE_WRITER = 2, GW_ROLE_READER = 4 };

typedef struct route route_t;
typedef struct gw_req gw_req_t;

/* A handler that answers later (query.c): it suspends the connection and
 * sets gw_req_t.async before returning without a reply. libmicrohttpd
 * calls the request's handler again after each MHD_resume_connection;
 * server.c passes those calls to resume, which must queue the reply,
 * suspend again, or return MHD_NO to close the connection. close runs when
 * the request is over, however it ended (ok: the reply went out whole),
 * before the request's memory is freed. Both run on the request's thread. */
typedef struct gw_async {
  enum MHD_Result (*resume)(gw_req_t *r);
  void (*close)(gw_req_t *r, bool ok);
} gw_async_t;

/* Longest {id} path segment: a document or job id. */
#define GW_PARAM_MAX                                                                     \
  (Q_LIMIT_DOCUMENT_ID_BYTES > Q_LIMIT_JOB_ID_BYTES ? Q_LIMIT_DOCUMENT_ID_BYTES          \
                                                    : Q_LIMIT_JOB_ID_BYTES)

struct gw_req {
  struct MHD_Connection *conn;
  const gw_cfg_t *cfg;
  q_arena_t *arena;

  const route_t *route;         /* NULL when no route matched */
  const char *route_label;      /* route template, for metrics and logs */
  const char *method_label;     /* bounded set of method names, for metrics */
  char param[GW_PARAM_MAX + 1]; /* the {id} segment of the path */

  char request_id[Q_LIMIT_REQUEST_ID_BYTES + 1];
  char trace_id[Q_TRACE_ID_LEN + 1];
  char span_id[17];
  double t0;           /* monotonic seconds at arrival */
  int64_t start_ms;    /* q_now_ms() at arrival */
  int64_t deadline_ms; /* absolute (q_now_ms time); 0 for uploads */

  gw_principal_t principal;
  int authenticated;
  double auth_ms;                 /* time spent establishing the principal */
  struct gw_admission *admission; /* server.c: auth and rate limit under way */

  uint64_t declared_len; /* Content-Length, when has_declared_len */
  int has_declared_len;
  uint64_t body_bytes; /* body bytes received so far */
  uint64_t drain_cap;  /* most body bytes read once a reply is pending */
  q_buf_t body;        /* JSON routes: the body, at most max_json_bytes */

  /* A rejection decided while the body still arrives. libmicrohttpd can
   * answer before the body only on the first call (it then closes the
   * connection, and a client that writes the whole body before reading may
   * see a reset instead of the answer); later it must read the body first.
   * A rejection decided on the head is therefore sent at once only when the
   * body is large or of unknown length and the client has no valid
   * credential, or the body exceeds drain_cap (server.c), else after
   * draining it; one decided mid-body after draining at most drain_cap. */
  int pending;
  unsigned pending_status;
  const char *pending_slug;
  char pending_msg[512];

  /* Extra response headers (Allow, Retry-After, WWW-Authenticate,
   * Connection). */
  const char *hdr_name[4];
  const char *hdr_value[4];
  int nhdr;

  void *stream; /* state of a streaming handler (upload.c) */

  const gw_async_t *async; /* set by a handler that answers later */
  void *async_state;

  unsigned status; /* HTTP status of the reply, once queued */
  int responded;   /* a reply has been queued (or failed to be) */
  int queue_ok;    /* MHD_queue_response succeeded */
};

/* The gateway's metric families (registered by server.c before serving;
 * the names are those of docs/development.md). */
typedef struct q_metric q_metric_t;
typedef struct gw_metrics {
  q_metric_t *http_requests; /* http_requests_total{route,method,code} */
  q_metric_t *http_seconds;  /* http_request_duration_seconds{route,method} */
  q_metric_t *stage_seconds; /* quarry_stage_duration_seconds{stage} */
  q_metric_t *queries;       /* quarry_queries_total{outcome} */
  q_metric_t *rate_limited;  /* quarry_rate_limited_total */
} gw_metrics_t;

extern gw_metrics_t gw_metrics;

/* Registers the families above (idempotent; not thread-safe). */
void gw_metrics_init(void);

/* Observes seconds in quarry_stage_duration_seconds{stage}. */
void gw_observe_stage(const char *stage, double seconds);

/* Milliseconds left before r's deadline (INT64_MAX when it has none). */
int64_t gw_ms_left(const gw_req_t *r);

#endif
