/* probes.c - GET /healthz (the process serves), GET /readyz (the services
 * a query cannot do without answer their gRPC health check) and GET /metrics
 * (the Prometheus registry), all without a credential. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/metrics.h"
#include "quarry/stubs.h"

#include "handlers.h"
#include "http_util.h"

#define CHECK_TIMEOUT_MS 1000
#define METRICS_MAX_BYTES (16 << 20)

void probes_healthz(gw_req_t *r) {
  http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

/* One Health/Check; 0 when SERVING, else why in err. */
static q_err_t check(const char *addr, char *err, size_t errlen) {
  q_arena_t *arena = q_arena_new(1 << 16);
  if (!arena) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Grpc__Health__V1__HealthCheckResponse *resp = NULL;
  q_grpc_call_opts_t opts = {.timeout_ms = CHECK_TIMEOUT_MS, .max_attempts = 1};
  char cerr[256] = "";
  int rc = q_rpc_health_check(q_grpc_channel(addr), &req, &resp, arena, &opts, cerr,
                              sizeof cerr);
  if (rc) {
    snprintf(err, errlen, "%s", cerr[0] ? cerr : q_strerror(rc));
  } else if (!resp ||
             resp->status !=
                 GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
    snprintf(err, errlen, "not serving");
    rc = Q_EUNAVAIL;
  }
  q_arena_free(arena);
  return rc;
}

/* Checks the critical dependencies; names the ones down in why and, when
 * down is not NULL, appends their names to it. */
static int readiness(const gw_cfg_t *cfg, char *why, size_t whylen, json_t *down) {
  const struct {
    const char *name, *addr;
  } deps[] = {
      {"auth", cfg->auth_addr},
      {"retriever", cfg->retriever_addr},
      {"llm-gateway", cfg->llm_addr},
  };
  size_t off = 0;
  int ndown = 0;
  why[0] = '\0';
  for (size_t i = 0; i < sizeof deps / sizeof deps[0]; i++) {
    char err[256];
    if (check(deps[i].addr, err, sizeof err) == 0)
      continue;
    int n = snprintf(why + off, off < whylen ? whylen - off : 0, "%s%s (%s)",
                     ndown ? ", " : "not ready: ", deps[i].name, err);
    if (n > 0)
      off += (size_t)n;
    if (down)
      json_array_append_new(down, json_string(deps[i].name));
    ndown++;
  }
  return ndown ? Q_EUNAVAIL : 0;
}

q_err_t probes_ready(const gw_cfg_t *cfg, char *why, size_t whylen) {
  return readiness(cfg, why, whylen, NULL);
}

void probes_readyz(gw_req_t *r) {
  char why[1024];
  json_t *down = json_array();
  if (readiness(r->cfg, why, sizeof why, down) == 0) {
    json_decref(down);
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
    return;
  }
  /* The error envelope, plus the names of the dependencies that are down
   * for probes and dashboards that want them without parsing text. */
  json_t *body = json_pack(
      "{s:{s:s,s:o},s:s,s:o}", "error", "code", q_err_slug(Q_EUNAVAIL), "message",
      http_json_text(why, strlen(why)), "status", "not_ready", "down", down);
  http_reply_json(r, 503, body);
}

void probes_metrics(gw_req_t *r) {
  q_buf_t b;
  q_buf_init(&b, METRICS_MAX_BYTES);
  if (q_metrics_render(&b) != 0) {
    q_buf_cleanup(&b);
    http_reply_error(r, Q_EINTERNAL, "cannot render metrics");
    return;
  }
  size_t len = b.len;
  char *text = q_buf_steal(&b);
  if (!text) {
    http_reply_error(r, Q_ENOMEM, "out of memory");
    return;
  }
  http_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}
