/* probes.c - GET /healthz (the process serves), GET /readyz (the services
 * a query cannot do without answer their gRPC health check, which follows
 * their own readiness: auth's includes reaching PostgreSQL) and GET /metrics
 * (the Prometheus registry), all without a credential.
 *
 * The dependencies are checked in parallel, each with a short deadline, so
 * /readyz answers within about CHECK_TIMEOUT_MS whatever hangs; the answer
 * is reused for cfg->readyz_cache_ms, and probes arriving while a round of
 * checks runs wait for it instead of starting another. */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#include "quarry/error.h"
#include "quarry/grpc.h"
#include "quarry/metrics.h"
#include "quarry/stubs.h"
#include "quarry/trace.h"

#include "handlers.h"
#include "http_util.h"

#define CHECK_TIMEOUT_MS 800 /* under a Kubernetes probe's default 1 s */
#define METRICS_MAX_BYTES (16 << 20)
#define NDEPS 3

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
    snprintf(err, errlen, "reachable but not ready (see its /readyz)");
    rc = Q_EUNAVAIL;
  }
  q_arena_free(arena);
  return rc;
}

typedef struct dep {
  const char *name, *addr;
  q_err_t rc;
  char err[256];
} dep_t;

static void *check_main(void *arg) {
  dep_t *d = arg;
  d->rc = check(d->addr, d->err, sizeof d->err);
  return NULL;
}

/* The last answer: whether ready, why not, and which dependencies are
 * down. */
typedef struct readiness {
  int ndown;
  char why[1024];
  const char *down[NDEPS];
} readiness_t;

static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t ready_at; /* q_now_ms() of ready_last; 0: none yet */
static readiness_t ready_last;

static void readiness_check(const gw_cfg_t *cfg, readiness_t *out) {
  dep_t deps[NDEPS] = {
      {"auth", cfg->auth_addr, 0, ""},
      {"retriever", cfg->retriever_addr, 0, ""},
      {"llm-gateway", cfg->llm_addr, 0, ""},
  };
  pthread_t th[NDEPS];
  bool started[NDEPS];
  for (int i = 0; i < NDEPS; i++)
    started[i] = pthread_create(&th[i], NULL, check_main, &deps[i]) == 0;
  for (int i = 0; i < NDEPS; i++) {
    if (started[i])
      pthread_join(th[i], NULL);
    else
      check_main(&deps[i]); /* no thread to spare: check it here */
  }
  size_t off = 0;
  memset(out, 0, sizeof *out);
  for (int i = 0; i < NDEPS; i++) {
    if (deps[i].rc == 0)
      continue;
    int n = snprintf(out->why + off, off < sizeof out->why ? sizeof out->why - off : 0,
                     "%s%s (%s)", out->ndown ? ", " : "not ready: ", deps[i].name,
                     deps[i].err);
    if (n > 0)
      off += (size_t)n;
    out->down[out->ndown++] = deps[i].name;
  }
}

/* The readiness of the critical dependencies, from the cache when fresh. */
static void readiness(const gw_cfg_t *cfg, readiness_t *out) {
  pthread_mutex_lock(&ready_mu);
  if (!ready_at || q_now_ms() - ready_at >= cfg->readyz_cache_ms) {
    readiness_check(cfg, &ready_last);
    ready_at = q_now_ms();
  }
  *out = ready_last;
  pthread_mutex_unlock(&ready_mu);
}

q_err_t probes_ready(const gw_cfg_t *cfg, char *why, size_t whylen) {
  readiness_t rd;
  readiness(cfg, &rd);
  snprintf(why, whylen, "%s", rd.why);
  return rd.ndown ? Q_EUNAVAIL : 0;
}

void probes_readyz(gw_req_t *r) {
  readiness_t rd;
  readiness(r->cfg, &rd);
  if (rd.ndown == 0) {
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ready"));
    return;
  }
  /* The error envelope, plus the names of the dependencies that are down
   * for probes and dashboards that want them without parsing text. */
  json_t *down = json_array();
  for (int i = 0; i < rd.ndown; i++)
    json_array_append_new(down, json_string(rd.down[i]));
  json_t *body = json_pack(
      "{s:{s:s,s:o},s:s,s:o}", "error", "code", q_err_slug(Q_EUNAVAIL), "message",
      http_json_text(rd.why, strlen(rd.why)), "status", "not_ready", "down", down);
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
