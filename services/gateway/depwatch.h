/* depwatch.h - the gateway's view of its downstream services, kept by one
 * background thread so that no request waits for it.
 *
 * Every QUARRY_READYZ_INTERVAL_MS the thread starts, in parallel and
 * asynchronously, the gRPC health check of each service a query cannot do
 * without (auth, retriever, llm-gateway; each with DEPWATCH_CHECK_TIMEOUT_MS)
 * and one empty Rerank call, whose reply names the reranker's configured
 * method. It stores the outcome with the time it was taken; GET /readyz and
 * the gateway's own gRPC health answer from that at once (probes.c), and
 * the query pipeline skips its Rerank call while the method is `none`
 * (pipeline.c), which would only hand back the retrieval order.
 *
 * A dependency that hangs makes a round last DEPWATCH_CHECK_TIMEOUT_MS, not
 * a probe. If no round has completed for DEPWATCH_STALE_MS past the
 * interval (the thread is stuck, or was never started), the state says
 * so and counts as not ready. */
#ifndef QUARRY_GW_DEPWATCH_H
#define QUARRY_GW_DEPWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarry/error.h"

#include "gateway.h"

#define DEPWATCH_CHECK_TIMEOUT_MS 800 /* under a Kubernetes probe's default 1 s */
#define DEPWATCH_STALE_MS 5000
#define DEPWATCH_NDEPS 3 /* auth, retriever, llm-gateway */

/* The last completed round. */
typedef struct depwatch_state {
  bool checked;   /* a round has completed (else: starting, or stale) */
  int ndown;      /* critical dependencies not serving */
  char why[1024]; /* "" when ready, else the reason, for people */
  const char *down[DEPWATCH_NDEPS + 1]; /* their names (static strings) */
  int64_t age_ms;                       /* since the round ended; -1 when none has */
  int64_t check_ms;                     /* how long the round took */
  char rerank_method[32];               /* the reranker's, "" when not known */
} depwatch_state_t;

/* Starts the thread, which runs a first round at once; cfg is read at every
 * round and must outlive depwatch_stop. Q_EINTERNAL when the thread cannot
 * start (logged). Not thread-safe against depwatch_stop. */
q_err_t depwatch_start(const gw_cfg_t *cfg);

/* Stops the thread (after the round in progress, at most about
 * DEPWATCH_CHECK_TIMEOUT_MS). Fine when not started. */
void depwatch_stop(void);

/* A copy of the last round's outcome; never waits for a round. Thread-safe. */
void depwatch_get(depwatch_state_t *out);

/* 0 when the critical dependencies were serving at the last round and that
 * round is recent, else Q_EUNAVAIL with the reason in why. Thread-safe. */
q_err_t depwatch_ready(char *why, size_t whylen);

/* Whether the reranker said at the last round that it ranks with `none`
 * (the retrieval order, scores unchanged). A lock-free read for the query
 * path. */
bool depwatch_rerank_is_none(void);

/* Runs a round now and returns once one has completed after the call (for
 * tests, and for an operator's tooling that changed the dependencies).
 * Thread-safe; returns at once when the thread is not running. */
void depwatch_refresh(void);

#endif
