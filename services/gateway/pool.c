/* pool.c - admission control of query pipelines (see pool.h). One mutex
 * guards the queue, the counts and the table of tenants in flight; the
 * table holds only tenants with a job in flight (rows kept packed), so a
 * scan of it is as short as the number of busy tenants. */
#include "pool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"

typedef struct tenant_slot {
  char tenant[Q_LIMIT_TENANT_ID_BYTES + 1];
  int running;
} tenant_slot_t;

struct pool {
  pthread_mutex_t mu;
  pthread_cond_t idle;     /* signalled when running drops to 0 while stopping */
  pool_job_t *head, *tail; /* FIFO */
  size_t queued, running;
  int queue_max, tenant_max, max_inflight;
  bool stopping;
  tenant_slot_t *tenants; /* ntenants rows in use, max_inflight at most */
  int ntenants;
};

static q_metric_t *m_queued, *m_running, *m_rejected, *m_wait;

/* A nested pool_done (from a job that ended inside its own run) leaves
 * the next starts to the outer one. */
static _Thread_local bool dispatching;

static void metrics_register(void) {
  m_queued = q_metrics_gauge("quarry_pipeline_queued",
                             "Queries waiting for a pipeline slot.", "");
  m_running =
      q_metrics_gauge("quarry_pipeline_running", "Query pipelines in flight.", "");
  m_rejected = q_metrics_counter(
      "quarry_pipeline_rejected_total",
      "Queries refused before running: queue_full (503), stopping (shutdown).", "reason");
  m_wait = q_metrics_histogram("quarry_pipeline_queue_seconds",
                               "Time a query waited for a pipeline slot.", "", NULL, 0);
}

/* Under mu. */
static void publish(pool_t *p) {
  q_metrics_set(m_queued, NULL, (double)p->queued);
  q_metrics_set(m_running, NULL, (double)p->running);
}

static tenant_slot_t *tenant_find(pool_t *p, const char *tenant) {
  for (int i = 0; i < p->ntenants; i++)
    if (strcmp(p->tenants[i].tenant, tenant) == 0)
      return &p->tenants[i];
  return NULL;
}

/* Under mu: whether a job of tenant may start now. */
static bool may_start(pool_t *p, const char *tenant) {
  if (p->running >= (size_t)p->max_inflight)
    return false;
  tenant_slot_t *t = tenant_find(p, tenant);
  return !t || t->running < p->tenant_max;
}

/* Under mu: takes a slot for tenant (may_start said yes). */
static void hold(pool_t *p, const char *tenant) {
  tenant_slot_t *t = tenant_find(p, tenant);
  if (!t) { /* a row is free: fewer than max_inflight tenants run */
    t = &p->tenants[p->ntenants++];
    snprintf(t->tenant, sizeof t->tenant, "%s", tenant);
    t->running = 0;
  }
  t->running++;
  p->running++;
}

/* Under mu: unlinks and returns the oldest job that may start, holding
 * its slot, or NULL. */
static pool_job_t *take(pool_t *p) {
  if (p->running >= (size_t)p->max_inflight && !p->stopping)
    return NULL;
  pool_job_t *prev = NULL;
  for (pool_job_t *j = p->head; j; prev = j, j = j->next) {
    /* Stopping: every queued job runs (cancelled, it ends at once). */
    if (!p->stopping && !may_start(p, j->tenant))
      continue;
    if (prev)
      prev->next = j->next;
    else
      p->head = j->next;
    if (p->tail == j)
      p->tail = prev;
    j->next = NULL;
    p->queued--;
    if (p->ntenants < p->max_inflight || tenant_find(p, j->tenant))
      hold(p, j->tenant);
    else
      p->running++; /* stopping beyond the caps: counted, no tenant row */
    return j;
  }
  return NULL;
}

/* Runs the queued jobs that may start, one after the other. */
static void dispatch(pool_t *p) {
  if (dispatching)
    return;
  dispatching = true;
  for (;;) {
    pthread_mutex_lock(&p->mu);
    pool_job_t *j = take(p);
    publish(p);
    pthread_mutex_unlock(&p->mu);
    if (!j)
      break;
    q_metrics_observe(m_wait, NULL, q_now_s() - j->queued_at);
    j->run(j);
  }
  dispatching = false;
}

q_err_t pool_submit(pool_t *p, pool_job_t *job, bool *start_now) {
  const char *reason = NULL;
  q_err_t rc = 0;
  *start_now = false;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    reason = "stopping";
    rc = Q_ECANCELLED;
  } else if (may_start(p, job->tenant)) {
    /* Jobs that wait do so for their tenant's cap (pool_done starts the
     * others as soon as a slot frees): this one overtakes none it should
     * not. */
    hold(p, job->tenant);
    *start_now = true;
  } else if (p->queued >= (size_t)p->queue_max) {
    reason = "queue_full";
    rc = Q_ERESOURCE;
  } else {
    job->next = NULL;
    job->queued_at = q_now_s();
    if (p->tail)
      p->tail->next = job;
    else
      p->head = job;
    p->tail = job;
    p->queued++;
  }
  publish(p);
  pthread_mutex_unlock(&p->mu);
  if (reason) {
    const char *labels[] = {reason};
    q_metrics_inc(m_rejected, labels);
  }
  if (*start_now)
    q_metrics_observe(m_wait, NULL, 0);
  return rc;
}

/* Under mu: gives back a slot of tenant's. */
static void release_tenant(pool_t *p, const char *tenant) {
  tenant_slot_t *t = tenant_find(p, tenant);
  if (t && --t->running == 0)
    *t = p->tenants[--p->ntenants]; /* keep the rows packed */
}

void pool_yield(pool_t *p, const char *tenant) {
  pthread_mutex_lock(&p->mu);
  release_tenant(p, tenant);
  bool stopping = p->stopping;
  pthread_mutex_unlock(&p->mu);
  if (!stopping)
    dispatch(p);
}

void pool_done(pool_t *p, const char *tenant) {
  pthread_mutex_lock(&p->mu);
  if (tenant)
    release_tenant(p, tenant);
  p->running--;
  publish(p);
  /* Stopping, pool_free has run every queued job and may free the pool
   * as soon as the lock is released: nothing to start, nothing to touch. */
  bool stopping = p->stopping;
  if (stopping && p->running == 0)
    pthread_cond_broadcast(&p->idle);
  pthread_mutex_unlock(&p->mu);
  if (!stopping)
    dispatch(p);
}

size_t pool_queued(pool_t *p) {
  pthread_mutex_lock(&p->mu);
  size_t n = p->queued;
  pthread_mutex_unlock(&p->mu);
  return n;
}

size_t pool_running(pool_t *p) {
  pthread_mutex_lock(&p->mu);
  size_t n = p->running;
  pthread_mutex_unlock(&p->mu);
  return n;
}

pool_t *pool_new(const pool_opts_t *o) {
  metrics_register();
  pool_t *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->max_inflight = o->max_inflight > 0 ? o->max_inflight : 1;
  p->queue_max = o->queue_max > 0 ? o->queue_max : 1;
  p->tenant_max = o->tenant_max > 0 ? o->tenant_max : 1;
  p->tenants = calloc((size_t)p->max_inflight, sizeof *p->tenants);
  if (!p->tenants) {
    free(p);
    return NULL;
  }
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->idle, NULL);
  pthread_mutex_lock(&p->mu);
  publish(p);
  pthread_mutex_unlock(&p->mu);
  return p;
}

void pool_free(pool_t *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_mutex_unlock(&p->mu);
  dispatch(p); /* every queued job, caps or not */
  pthread_mutex_lock(&p->mu);
  while (p->running > 0)
    pthread_cond_wait(&p->idle, &p->mu);
  pthread_mutex_unlock(&p->mu);
  pthread_cond_destroy(&p->idle);
  pthread_mutex_destroy(&p->mu);
  free(p->tenants);
  free(p);
}
