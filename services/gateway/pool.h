/* pool.h - admission control of query pipelines: a cap on the pipelines
 * in flight, a bounded queue in front of it and a per-tenant cap.
 *
 * There are no threads here. A pipeline runs from asynchronous gRPC
 * completions (pipeline.h), so one in flight costs memory, not a thread;
 * the pool only decides when a job may start. A job starts at once when
 * fewer than max_inflight jobs are in flight and its tenant has fewer than
 * tenant_max; otherwise it waits in one FIFO queue of at most queue_max
 * jobs, and submitting to a full queue fails at once (the edge answers 503
 * with Retry-After), so a burst can neither grow memory without bound nor
 * wait longer than its deadline allows unnoticed. When a job ends
 * (pool_done), the oldest waiting job whose tenant is under its cap
 * starts: one tenant holds at most tenant_max slots however many queries
 * it sends, and another tenant's query overtakes its waiting ones. A job
 * that only waits on a model's answer gives its tenant slot back
 * (pool_yield): the tenant cap counts CPU work, not waiting streams.
 *
 * Metrics: quarry_pipeline_queued and quarry_pipeline_running (gauges:
 * waiting, in flight), quarry_pipeline_rejected_total{reason} (queue_full,
 * stopping) and quarry_pipeline_queue_seconds (time from submit to
 * start). */
#ifndef QUARRY_GW_POOL_H
#define QUARRY_GW_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "quarry/error.h"
#include "quarry/limits.h"

typedef struct pool_job pool_job_t;

/* A job, embedded in the caller's own state. tenant and run are set by
 * the caller; the rest belongs to the pool while the job is queued. */
struct pool_job {
  char tenant[Q_LIMIT_TENANT_ID_BYTES + 1];
  /* Starts the job; it must not block (it issues asynchronous calls) and
   * must call pool_done once the job has ended, on any thread, possibly
   * before run returns. Called by pool_done or pool_free for a job that
   * waited, with no lock of the pool held. */
  void (*run)(pool_job_t *job);
  pool_job_t *next;
  double queued_at;
};

typedef struct pool_opts {
  int max_inflight; /* jobs started and not done, >= 1 */
  int queue_max;    /* jobs that may wait, >= 1 */
  int tenant_max;   /* jobs of one tenant in flight at once, >= 1 */
} pool_opts_t;

typedef struct pool pool_t;

/* A pool. NULL when out of memory. */
pool_t *pool_new(const pool_opts_t *o);

/* Admits job. 0 with *start_now true: the job holds its slot and the
 * caller calls job->run itself (once it has released its own locks); 0
 * with *start_now false: queued, pool_done will run it. Q_ERESOURCE when
 * the queue is full; Q_ECANCELLED when the pool is stopping; on an error
 * the job was not admitted. Thread-safe. */
q_err_t pool_submit(pool_t *p, pool_job_t *job, bool *start_now);

/* The job that ran for tenant has ended: frees its slot and runs the
 * waiting jobs that may start now, on the calling thread (a nested call
 * from one of those runs only frees its slot: the outer call starts the
 * next ones, so the stack does not grow with the queue). tenant NULL: the
 * job gave its tenant slot back with pool_yield already. Thread-safe. */
void pool_done(pool_t *p, const char *tenant);

/* The job that runs for tenant has no CPU work left here and only waits
 * (a query's answer streaming from the model): its tenant slot frees, and
 * the waiting jobs that may start now run on the calling thread as in
 * pool_done; its in-flight slot stays held until pool_done(p, NULL). So
 * tenant_max bounds a tenant's queries in their CPU stages, and
 * max_inflight bounds every query in flight, waiting ones included (their
 * memory). At most once per job. Thread-safe. */
void pool_yield(pool_t *p, const char *tenant);

/* Jobs waiting, and in flight. Thread-safe. */
size_t pool_queued(pool_t *p);
size_t pool_running(pool_t *p);

/* Refuses new jobs, runs every job still queued (the caller has cancelled
 * them: they end at once), waits until every job has called pool_done and
 * frees the pool. Not from a job's callbacks. NULL is fine. */
void pool_free(pool_t *p);

#endif
