/* service.c - the life cycle shared by every Quarry binary: configuration,
 * logging, the gRPC server, the HTTP side port and graceful shutdown. */
#include "quarry/service.h"

#include "quarry/http_client.h"
#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"
#include "quarry/util.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include "quarry/error.h"

/* Readiness as the side port and the gRPC health check report it: not
 * ready while stopping, else whatever the service's own callback says. One
 * service per process, so file-level state is enough. */
static atomic_int stopping;
static q_ready_cb user_ready;
static void *user_ready_ud;

/* The callback's answer is reused for READY_CACHE_MS: /readyz and
 * Health/Check share it, and a burst of probes makes one round of checks
 * (concurrent askers wait for it under the lock rather than repeat it). */
#define READY_CACHE_MS 1000
static pthread_mutex_t ready_mu = PTHREAD_MUTEX_INITIALIZER;
static int64_t ready_at; /* q_now_ms() of the cached answer; 0: none yet */
static q_err_t ready_rc;
static char ready_why[256];

static q_err_t ready_cb(void *ud, char *why, size_t whylen) {
  (void)ud;
  if (atomic_load(&stopping)) {
    snprintf(why, whylen, "shutting down");
    return Q_EUNAVAIL;
  }
  if (!user_ready)
    return 0;
  pthread_mutex_lock(&ready_mu);
  if (!ready_at || q_now_ms() - ready_at >= READY_CACHE_MS) {
    ready_why[0] = '\0';
    ready_rc = user_ready(user_ready_ud, ready_why, sizeof ready_why);
    ready_at = q_now_ms();
  }
  q_err_t rc = ready_rc;
  snprintf(why, whylen, "%s", ready_why);
  pthread_mutex_unlock(&ready_mu);
  return rc;
}

static bool health_cb(void *ud) {
  char why[256];
  return ready_cb(ud, why, sizeof why) == 0;
}

int q_service_init(q_service_t *svc, const char *binary, const char *summary,
                   q_cfg_entry_t *table, size_t n, q_common_cfg_t *common, int argc,
                   char **argv) {
  memset(svc, 0, sizeof *svc);
  svc->binary = binary;
  svc->name = strncmp(binary, "quarry-", 7) == 0 ? binary + 7 : binary;
  svc->common = common;
  q_signals_block();
  int rc = q_cfg_load(binary, summary, table, n, argc, argv);
  if (rc)
    return rc;
  q_log_level_t level = Q_LOG_INFO;
  q_log_level_parse(common->log_level, &level); /* validated by the table */
  q_log_init(svc->name, level);
  q_http_global_init();
  return 0;
}

q_err_t q_service_start(q_service_t *svc, const ProtobufCServiceDescriptor *svc_desc,
                        const q_grpc_method_t *methods, size_t n, void *ud,
                        q_ready_cb ready, void *ready_ud) {
  q_grpc_server_opts_t opts = {
      .addr = svc->common->grpc_listen,
      .threads = (int)svc->common->grpc_threads,
      .max_msg_bytes = svc->common->max_msg_bytes,
  };
  svc->grpc = q_grpc_server_new(&opts);
  if (!svc->grpc)
    return Q_EINTERNAL;
  if (svc_desc && q_grpc_server_add_service(svc->grpc, svc_desc, methods, n, ud))
    return Q_EINTERNAL;
  user_ready = ready;
  user_ready_ud = ready_ud;
  q_grpc_server_set_health_cb(svc->grpc, health_cb, NULL);
  svc->grpc_port = q_grpc_server_start(svc->grpc);
  if (svc->grpc_port <= 0)
    return Q_EINTERNAL;
  int side_port = 0;
  if (svc->common->metrics_listen && svc->common->metrics_listen[0]) {
    svc->sidecar = q_sidecar_start(svc->common->metrics_listen, ready_cb, NULL);
    if (!svc->sidecar)
      return Q_EINTERNAL;
    side_port = q_sidecar_port(svc->sidecar);
  }
  q_log_info("started", "{s:s,s:i,s:i}", "grpc_listen", svc->common->grpc_listen,
             "grpc_port", svc->grpc_port, "metrics_port", side_port);
  return 0;
}

int q_service_wait(q_service_t *svc) {
  int sig = q_signal_wait();
  atomic_store(&stopping, 1);
  q_log_info("stopping", "{s:s,s:i}", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
             "grace_ms", (int)svc->common->grace_ms);
  q_grpc_server_shutdown(svc->grpc, svc->common->grace_ms);
  svc->grpc = NULL;
  return sig;
}

void q_service_cleanup(q_service_t *svc) {
  if (svc->grpc) {
    q_grpc_server_shutdown(svc->grpc, 0);
    svc->grpc = NULL;
  }
  q_sidecar_stop(svc->sidecar);
  svc->sidecar = NULL;
  q_grpc_client_shutdown();
  q_log_info("stopped", NULL);
  q_metrics_shutdown();
}
