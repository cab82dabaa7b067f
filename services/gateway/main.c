/* main.c - quarry-gateway: the REST edge of Quarry. Serves the HTTP API on
 * QUARRY_HTTP_LISTEN (including /metrics, /healthz and /readyz) and a
 * health-only gRPC server; everything else lives in the modules. */
#include "quarry/limits.h"
#include "quarry/service.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "handlers.h"
#include "ratelimit.h"
#include "server.h"
#include "quarry/error.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static q_common_cfg_t common;
static gw_cfg_t cfg;
static int64_t async_threads; /* QUARRY_GRPC_ASYNC_THREADS */

/* QUARRY_OPENAI_MODEL: 1..Q_LIMIT_MODEL_BYTES printable ASCII, as model
 * ids are. */
static q_err_t validate_model(const char *value, char *err, size_t errlen) {
  size_t n = strlen(value);
  bool ok = n >= 1 && n <= Q_LIMIT_MODEL_BYTES;
  for (size_t i = 0; ok && i < n; i++)
    ok = value[i] > ' ' && value[i] < 127;
  if (ok)
    return 0;
  snprintf(err, errlen, "must be 1..%d printable ASCII characters without spaces",
           Q_LIMIT_MODEL_BYTES);
  return Q_EINVAL;
}

static q_cfg_entry_t table[] = {
    Q_CFG_COMMON_ENTRIES(common, "127.0.0.1:7000", ""),
    {"QUARRY_HTTP_LISTEN", Q_CFG_ADDR, "127.0.0.1:8080", 0, 0, NULL,
     "Address the REST API listens on (host:port); also serves /metrics, /healthz, "
     "/readyz.",
     0, &cfg.http_listen},
    {"QUARRY_HTTP_THREADS", Q_CFG_INT, "8", 1, 256, NULL,
     "Threads serving HTTP connections (libmicrohttpd thread pool).", 0,
     &cfg.http_threads},
    {"QUARRY_HTTP_EPOLL", Q_CFG_BOOL, "true", 0, 0, NULL,
     "Wait for HTTP sockets with epoll(7) in each HTTP thread (false: poll(2), whose "
     "cost grows with every open connection, idle ones included).",
     0, &cfg.http_epoll},
    {"QUARRY_AUTH_ADDR", Q_CFG_ADDR, "127.0.0.1:7001", 0, 0, NULL,
     "gRPC address of quarry-auth.", 0, &cfg.auth_addr},
    {"QUARRY_INGESTION_ADDR", Q_CFG_ADDR, "127.0.0.1:7002", 0, 0, NULL,
     "gRPC address of quarry-ingestion.", 0, &cfg.ingestion_addr},
    {"QUARRY_RETRIEVER_ADDR", Q_CFG_ADDR, "127.0.0.1:7003", 0, 0, NULL,
     "gRPC address of quarry-retriever.", 0, &cfg.retriever_addr},
    {"QUARRY_RERANKER_ADDR", Q_CFG_ADDR, "127.0.0.1:7004", 0, 0, NULL,
     "gRPC address of quarry-reranker.", 0, &cfg.reranker_addr},
    {"QUARRY_LLM_GATEWAY_ADDR", Q_CFG_ADDR, "127.0.0.1:7005", 0, 0, NULL,
     "gRPC address of quarry-llm-gateway.", 0, &cfg.llm_addr},
    {"QUARRY_FEEDBACK_ADDR", Q_CFG_ADDR, "127.0.0.1:7006", 0, 0, NULL,
     "gRPC address of quarry-feedback.", 0, &cfg.feedback_addr},
    {"QUARRY_REDIS_ADDR", Q_CFG_ADDR, "127.0.0.1:6379", 0, 0, NULL,
     "Redis used for rate limiting (host:port); when down, requests are allowed.", 0,
     &cfg.redis_addr},
    {"QUARRY_MAX_UPLOAD_BYTES", Q_CFG_INT, Q_LIMIT_TEXT(UPLOAD_BYTES_DEFAULT),
     Q_LIMIT_UPLOAD_BYTES_MIN, Q_LIMIT_UPLOAD_BYTES_MAX, NULL,
     "Largest document accepted by POST /v1/documents, in bytes (larger: 413).", 0,
     &cfg.max_upload_bytes},
    {"QUARRY_MAX_JSON_BYTES", Q_CFG_INT, "1048576", 1024, 67108864, NULL,
     "Largest JSON request body, in bytes (larger: 413).", 0, &cfg.max_json_bytes},
    {"QUARRY_QUERY_TIMEOUT_MS", Q_CFG_INT, "10000", 100, 600000, NULL,
     "Overall deadline of a query (and of every other non-upload request), "
     "inherited by the downstream calls.",
     0, &cfg.query_timeout_ms},
    {"QUARRY_UPLOAD_TIMEOUT_MS", Q_CFG_INT, "300000", 1000, 3600000, NULL,
     "Deadline of the ingestion Upload call streaming one document.", 0,
     &cfg.upload_timeout_ms},
    {"QUARRY_RATE_LIMIT_RPS", Q_CFG_INT, "50", 0, 1000000, NULL,
     "Requests per second allowed per principal (0 disables rate limiting).", 0,
     &cfg.rate_limit_rps},
    {"QUARRY_WEB_DIR", Q_CFG_STRING, "", 0, 0, NULL,
     "Folder of the web app served at / (index.html and its files). Empty: "
     "<binary's folder>/../share/quarry/web, else <binary's folder>/../../web (the "
     "repository's web/ when run from build/bin).",
     0, &cfg.web_dir},
    /* The edge's limits (guard.h). Defaults sized for 2 cores: a few
     * hundred slow clients cost file descriptors and a little memory, not
     * CPU; what they must not do is hold every slot. */
    {"QUARRY_HTTP_MAX_CONNECTIONS", Q_CFG_INT, "1024", 16, 65536, NULL,
     "Open HTTP connections in all; further ones are closed on accept "
     "(quarry_http_rejected_total{reason=\"connections\"}).",
     0, &cfg.max_connections},
    {"QUARRY_HTTP_MAX_CONNECTIONS_PER_IP", Q_CFG_INT, "64", 0, 65536, NULL,
     "Open HTTP connections from one client address (IPv6: one /64); further ones are "
     "closed on accept. 0 disables: do so behind a proxy that does not keep client "
     "addresses.",
     0, &cfg.max_connections_per_ip},
    {"QUARRY_HTTP_HEADER_TIMEOUT_MS", Q_CFG_INT, "10000", 100, 600000, NULL,
     "Time for a request head to arrive, counted from the connection's opening or the "
     "previous reply (so also the keep-alive idle time) and not reset by trickling "
     "bytes; then 408 and close (closed silently when no request line arrived).",
     0, &cfg.header_timeout_ms},
    {"QUARRY_HTTP_BODY_TIMEOUT_MS", Q_CFG_INT, "10000", 100, 600000, NULL,
     "Window over which a request body's rate is measured: each window must carry "
     "QUARRY_HTTP_BODY_MIN_RATE bytes per second (at least one byte), else 408 and "
     "close.",
     0, &cfg.body_timeout_ms},
    {"QUARRY_HTTP_BODY_MIN_RATE", Q_CFG_INT, "1024", 0, 1073741824, NULL,
     "Slowest request body accepted, in bytes per second (0: any progress will do).", 0,
     &cfg.body_min_rate},
    {"QUARRY_HTTP_REQUEST_TIMEOUT_MS", Q_CFG_INT, "300000", 1000, 3600000, NULL,
     "Time for a whole request (head and body) to arrive, wall-clock; then 408 and "
     "close. Keep it above what the largest upload needs at the slowest rate served.",
     0, &cfg.request_timeout_ms},
    {"QUARRY_HTTP_IDLE_TIMEOUT_MS", Q_CFG_INT, "60000", 1000, 3600000, NULL,
     "libmicrohttpd's inactivity timeout (whole seconds, rounded up), reset by every "
     "byte: bounds a client that stops reading its reply.",
     0, &cfg.idle_timeout_ms},
    {"QUARRY_HTTP_MAX_HEADERS", Q_CFG_INT, "64", 8, 1000, NULL,
     "Header fields in a request (more: 431).", 0, &cfg.max_headers},
    {"QUARRY_HTTP_MAX_HEADER_BYTES", Q_CFG_INT, "32768", 1024, 131072, NULL,
     "Size of a request head, request line and header fields (more: 431).", 0,
     &cfg.max_header_bytes},
    {"QUARRY_HTTP_MAX_URL_BYTES", Q_CFG_INT, "8192", 256, 65536, NULL,
     "Length of the raw request target, path and query string (longer: 414).", 0,
     &cfg.max_url_bytes},
    {"QUARRY_HTTP_MAX_QUERY_PARAMS", Q_CFG_INT, "32", 1, 1000, NULL,
     "Query string parameters in a request (more: 400).", 0, &cfg.max_query_params},
    {"QUARRY_HTTP_CONNECTION_MEMORY_BYTES", Q_CFG_INT, "49152", 16384, 1048576, NULL,
     "libmicrohttpd's memory pool per connection: the request head, its parsed fields "
     "and "
     "the reply's head and streamed chunks. An idle kept-alive connection costs this "
     "much "
     "resident memory. Raised to QUARRY_HTTP_MAX_HEADER_BYTES + 16 KiB when smaller.",
     0, &cfg.conn_memory_bytes},
    {"QUARRY_HTTP_DRAIN_BYTES", Q_CFG_INT, "65536", 0, 16777216, NULL,
     "Largest body read to answer a request without a valid credential that is refused "
     "on its head (401, 404, 405) and keep the connection; a larger or unannounced body "
     "is not read: the answer goes out at once and the connection is closed.",
     0, &cfg.drain_bytes},
    {"QUARRY_READYZ_INTERVAL_MS", Q_CFG_INT, "1000", 100, 60000, NULL,
     "Period of the background checks of the dependencies (the gRPC health of auth, "
     "retriever and llm-gateway, and the reranker's method); GET /readyz answers at once "
     "from the last round, with its age, and is not ready when no round has ended for "
     "this plus 5.8 s.",
     0, &cfg.readyz_interval_ms},
    {"QUARRY_GRPC_ASYNC_THREADS", Q_CFG_INT, "2", 1, 16, NULL,
     "Threads completing the gateway's asynchronous gRPC calls (every query's "
     "downstream calls run on them without blocking); about one per core.",
     0, &async_threads},
    {"QUARRY_PIPELINE_MAX_INFLIGHT", Q_CFG_INT, STR(GW_PIPELINE_MAX_INFLIGHT_DEFAULT), 1,
     65536, NULL,
     "Query pipelines in flight at once (each waits on its downstream calls without "
     "holding a thread); further queries wait in the queue.",
     0, &cfg.pipeline_max_inflight},
    {"QUARRY_PIPELINE_QUEUE", Q_CFG_INT, STR(GW_PIPELINE_QUEUE_DEFAULT), 1, 65536, NULL,
     "Queries that may wait for a pipeline slot; beyond it a query gets 503 with "
     "Retry-After.",
     0, &cfg.pipeline_queue},
    {"QUARRY_TENANT_MAX_INFLIGHT", Q_CFG_INT, STR(GW_TENANT_MAX_INFLIGHT_DEFAULT), 1,
     65536, NULL,
     "Query pipelines of one tenant in their CPU stages at once (an answer being "
     "generated gives its slot back); its other queries wait in the queue while other "
     "tenants' run.",
     0, &cfg.tenant_max_inflight},
    {"QUARRY_OPENAI_MODEL", Q_CFG_STRING, "quarry-rag", 0, 0, validate_model,
     "Model name of the OpenAI-compatible API: listed by GET /v1/models (whatever model "
     "the client asks for is accepted); POST /v1/chat/completions answers with the model "
     "that answered as \"model\", this one when that is not known.",
     0, &cfg.openai_model},
};

static q_err_t ready_cb(void *ud, char *why, size_t whylen) {
  return probes_ready(ud, why, whylen);
}

int main(int argc, char **argv) {
  q_service_t svc;
  int rc = q_service_init(&svc, "quarry-gateway",
                          "REST gateway: documents, queries and feedback over HTTP.",
                          table, Q_NELEM(table), &common, argc, argv);
  if (rc)
    return rc > 0 ? 0 : 2;
  json_object_seed(0); /* before any thread builds JSON objects */

  /* Before the first asynchronous call starts the loops (range checked by
   * the table). */
  q_grpc_async_set_threads((int)async_threads);
  if (static_init(cfg.web_dir)) {
    q_service_cleanup(&svc);
    return 2;
  }
  if (ratelimit_init(cfg.redis_addr, cfg.rate_limit_rps)) {
    q_service_cleanup(&svc);
    return 2;
  }
  gw_server_t *http = gw_server_start(&cfg);
  if (!http || q_service_start(&svc, NULL, NULL, 0, NULL, ready_cb, &cfg)) {
    gw_server_stop(http, 0);
    ratelimit_shutdown();
    q_service_cleanup(&svc);
    return 1;
  }
  q_service_wait(&svc);
  gw_server_stop(http, common.grace_ms);
  ratelimit_shutdown();
  q_service_cleanup(&svc);
  return 0;
}
