/* pool.h - the worker threads that run query pipelines while their HTTP
 * connections wait suspended, with a bounded queue and a per-tenant cap.
 *
 * A job waits in one FIFO queue of at most queue_max jobs (not counting
 * those idle workers are about to take); submitting to a full queue fails
 * at once (the edge answers 503 with Retry-After), so a
 * burst can neither grow memory without bound nor wait longer than its
 * deadline allows unnoticed. A free worker takes the oldest job whose
 * tenant runs fewer than tenant_max jobs: one tenant can occupy at most
 * tenant_max workers however many queries it sends, and another tenant's
 * query overtakes its waiting ones. The queue itself is shared.
 *
 * Metrics: quarry_pipeline_queued and quarry_pipeline_running (gauges),
 * quarry_pipeline_rejected_total{reason} (queue_full, stopping) and
 * quarry_pipeline_queue_seconds (time from submit to start).
 *
 * These threads exist because the downstream calls are blocking today;
 * once the pipeline runs from asynchronous gRPC callbacks (pipeline.h),
 * the queue and the caps stay (as admission) and the threads go. */
#ifndef QUARRY_GW_POOL_H
#define QUARRY_GW_POOL_H

#include <stddef.h>

#include "quarry/error.h"
#include "quarry/limits.h"

typedef struct pool_job pool_job_t;

/* A job, embedded in the caller's own state. tenant and run are set by
 * the caller; the rest belongs to the pool while the job is queued. */
struct pool_job {
  char tenant[Q_LIMIT_TENANT_ID_BYTES + 1];
  void (*run)(pool_job_t *job); /* on a worker; the job is the pool's no more
                                   once run starts */
  pool_job_t *next;
  double queued_at;
};

typedef struct pool_opts {
  int workers;    /* threads, >= 1 */
  int queue_max;  /* jobs that may wait, >= 1 */
  int tenant_max; /* jobs of one tenant running at once, >= 1 */
} pool_opts_t;

typedef struct pool pool_t;

/* Starts the workers. NULL on failure (logged). */
pool_t *pool_new(const pool_opts_t *o);

/* Queues job. 0; Q_ERESOURCE when the queue is full; Q_ECANCELLED when the
 * pool is stopping. On an error the job was not queued. Thread-safe. */
q_err_t pool_submit(pool_t *p, pool_job_t *job);

/* Jobs waiting, and running. Thread-safe. */
size_t pool_queued(pool_t *p);
size_t pool_running(pool_t *p);

/* Refuses new jobs, lets the workers run every job already queued, joins
 * them and frees the pool. NULL is fine. */
void pool_free(pool_t *p);

#endif
