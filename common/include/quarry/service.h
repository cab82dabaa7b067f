/* service.h - the life cycle every Quarry binary shares.
 *
 *   q_service_t svc;
 *   int rc = q_service_init(&svc, "quarry-reranker", "Reorders passages.",
 *                           cfg, Q_NELEM(cfg), &common, argc, argv);
 *   if (rc) return rc > 0 ? 0 : 2;
 *   ... wire modules ...
 *   if (q_service_start(&svc, &quarry__v1__reranker__descriptor, methods,
 *                       Q_NELEM(methods), state, ready_cb, state)) return 1;
 *   q_service_wait(&svc);   // until SIGTERM/SIGINT, then graceful stop
 *   ... free modules ...
 *   q_service_cleanup(&svc);
 *   return 0;
 */
#ifndef QUARRY_SERVICE_H
#define QUARRY_SERVICE_H

#include "quarry/config.h"
#include "quarry/grpc.h"
#include "quarry/sidecar.h"
#include "quarry/error.h"

#define Q_NELEM(a) (sizeof(a) / sizeof((a)[0]))

typedef struct q_service {
  const char *binary;     /* "quarry-reranker" */
  const char *name;       /* "reranker": the service label in logs */
  q_common_cfg_t *common; /* filled by q_service_init */
  q_grpc_server_t *grpc;
  q_sidecar_t *sidecar;
  int grpc_port;
} q_service_t;

/* Blocks the stop signals, loads the config table (which must contain
 * Q_CFG_COMMON_ENTRIES(*common, ...)), starts logging and the HTTP client
 * library. Returns 0 to go on, 1 when --help was printed (exit 0), Q_EINVAL when
 * the configuration is invalid (exit 2; already reported). */
int q_service_init(q_service_t *svc, const char *binary, const char *summary,
                   q_cfg_entry_t *table, size_t n, q_common_cfg_t *common, int argc,
                   char **argv);

/* Creates the gRPC server with svc_desc's methods (svc_desc may be NULL for
 * a health-only server), starts it and the side port, then logs the bound
 * ports. ready may be NULL. 0, or Q_EINTERNAL (logged). */
q_err_t q_service_start(q_service_t *svc, const ProtobufCServiceDescriptor *svc_desc,
                        const q_grpc_method_t *methods, size_t n, void *ud,
                        q_ready_cb ready, void *ready_ud);

/* Waits for SIGTERM or SIGINT, then shuts the gRPC server down gracefully
 * (QUARRY_GRACE_MS). Returns the signal number. */
int q_service_wait(q_service_t *svc);

/* Stops the side port and releases client channels and metrics. */
void q_service_cleanup(q_service_t *svc);

#endif
