/* probes.c - GET /healthz (the process serves), GET /readyz (the services
 * a query cannot do without answer their gRPC health check, which follows
 * their own readiness: auth's includes reaching PostgreSQL) and GET /metrics
 * (the Prometheus registry), all without a credential.
 *
 * No probe waits on a dependency: the checks run in the background every
 * QUARRY_READYZ_INTERVAL_MS (depwatch.h) and /readyz answers from the last
 * round, with its age. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/error.h"
#include "quarry/metrics.h"

#include "depwatch.h"
#include "handlers.h"
#include "http_util.h"

#define METRICS_MAX_BYTES (16 << 20)

void probes_healthz(gw_req_t *r) {
  http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

q_err_t probes_ready(const gw_cfg_t *cfg, char *why, size_t whylen) {
  (void)cfg;
  return depwatch_ready(why, whylen);
}

/* From the last background round (depwatch.h), at once: a dependency that
 * hangs slows the round, never the probe. The body says how old the
 * answer is, how long its round took and the reranker's method as that
 * round saw it ("" when it did not answer). */
void probes_readyz(gw_req_t *r) {
  depwatch_state_t st;
  depwatch_get(&st);
  json_t *age = st.age_ms >= 0 ? json_integer(st.age_ms) : json_null();
  if (st.checked && st.ndown == 0) {
    http_reply_json(r, 200,
                    json_pack("{s:s,s:o,s:I,s:s}", "status", "ready", "age_ms", age,
                              "check_ms", (json_int_t)st.check_ms, "rerank_method",
                              st.rerank_method));
    return;
  }
  /* The error envelope, plus the names of the dependencies that are down
   * for probes and dashboards that want them without parsing text. */
  json_t *down = json_array();
  for (int i = 0; st.checked && i < st.ndown; i++)
    json_array_append_new(down, json_string(st.down[i]));
  json_t *body =
      json_pack("{s:{s:s,s:o},s:s,s:o,s:o,s:I,s:s}", "error", "code",
                q_err_slug(Q_EUNAVAIL), "message", http_json_text(st.why, strlen(st.why)),
                "status", "not_ready", "down", down, "age_ms", age, "check_ms",
                (json_int_t)st.check_ms, "rerank_method", st.rerank_method);
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
