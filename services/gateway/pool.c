/* pool.c - pipeline workers with a bounded queue and per-tenant caps (see
 * pool.h). One mutex guards the queue and the table of running tenants;
 * workers wait on one condition variable. The table has one row per worker
 * at most, so a linear scan is all it needs. */
#include "pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/log.h"
#include "quarry/metrics.h"
#include "quarry/trace.h"

typedef struct tenant_slot {
  char tenant[Q_LIMIT_TENANT_ID_BYTES + 1];
  int running; /* 0: the row is free */
} tenant_slot_t;

struct pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pool_job_t *head, *tail; /* FIFO */
  size_t queued, running;
  int queue_max, tenant_max, nworkers;
  bool stopping;
  tenant_slot_t *tenants; /* nworkers rows */
  pthread_t *threads;
  int started;
};

static q_metric_t *m_queued, *m_running, *m_rejected, *m_wait;

static void metrics_register(void) {
  m_queued = q_metrics_gauge("quarry_pipeline_queued",
                             "Queries waiting for a pipeline worker.", "");
  m_running = q_metrics_gauge("quarry_pipeline_running",
                              "Queries running on a pipeline worker.", "");
  m_rejected = q_metrics_counter(
      "quarry_pipeline_rejected_total",
      "Queries refused before running: queue_full (503), stopping (shutdown).", "reason");
  m_wait = q_metrics_histogram("quarry_pipeline_queue_seconds",
                               "Time a query waited for a pipeline worker.", "", NULL, 0);
}

/* Under mu. */
static void publish(pool_t *p) {
  q_metrics_set(m_queued, NULL, (double)p->queued);
  q_metrics_set(m_running, NULL, (double)p->running);
}

static tenant_slot_t *tenant_find(pool_t *p, const char *tenant) {
  for (int i = 0; i < p->nworkers; i++)
    if (p->tenants[i].running && strcmp(p->tenants[i].tenant, tenant) == 0)
      return &p->tenants[i];
  return NULL;
}

/* Under mu: unlinks and returns the oldest job whose tenant is under its
 * cap, or NULL. */
static pool_job_t *take(pool_t *p) {
  pool_job_t *prev = NULL;
  for (pool_job_t *j = p->head; j; prev = j, j = j->next) {
    tenant_slot_t *t = tenant_find(p, j->tenant);
    if (t && t->running >= p->tenant_max)
      continue;
    if (prev)
      prev->next = j->next;
    else
      p->head = j->next;
    if (p->tail == j)
      p->tail = prev;
    j->next = NULL;
    if (!t) /* a free row exists: at most nworkers tenants run */
      for (int i = 0; i < p->nworkers && !t; i++)
        if (!p->tenants[i].running) {
          t = &p->tenants[i];
          snprintf(t->tenant, sizeof t->tenant, "%s", j->tenant);
        }
    t->running++;
    p->queued--;
    p->running++;
    return j;
  }
  return NULL;
}

static void *worker_main(void *arg) {
  pool_t *p = arg;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    pool_job_t *j = take(p);
    if (!j) {
      if (p->stopping && !p->head)
        break;
      pthread_cond_wait(&p->cv, &p->mu);
      continue;
    }
    publish(p);
    char tenant[sizeof j->tenant];
    memcpy(tenant, j->tenant, sizeof tenant); /* j may be freed by run */
    double waited = q_now_s() - j->queued_at;
    pthread_mutex_unlock(&p->mu);

    q_metrics_observe(m_wait, NULL, waited);
    j->run(j);

    pthread_mutex_lock(&p->mu);
    tenant_slot_t *t = tenant_find(p, tenant);
    bool was_capped = t && t->running >= p->tenant_max;
    if (t)
      t->running--;
    p->running--;
    publish(p);
    /* A job of this tenant that waited for the cap may run now. */
    if (was_capped)
      pthread_cond_broadcast(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

q_err_t pool_submit(pool_t *p, pool_job_t *job) {
  const char *reason = NULL;
  q_err_t rc = 0;
  pthread_mutex_lock(&p->mu);
  if (p->stopping) {
    reason = "stopping";
    rc = Q_ECANCELLED;
  } else if (p->queued >= (size_t)p->queue_max + ((size_t)p->nworkers - p->running)) {
    /* Full: queue_max jobs wait beyond those idle workers are about to
     * take (a burst must not be refused while workers are free). */
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
    publish(p);
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
  if (reason) {
    const char *labels[] = {reason};
    q_metrics_inc(m_rejected, labels);
  }
  return rc;
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
  p->nworkers = o->workers > 0 ? o->workers : 1;
  p->queue_max = o->queue_max > 0 ? o->queue_max : 1;
  p->tenant_max = o->tenant_max > 0 ? o->tenant_max : 1;
  p->tenants = calloc((size_t)p->nworkers, sizeof *p->tenants);
  p->threads = calloc((size_t)p->nworkers, sizeof *p->threads);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  if (!p->tenants || !p->threads) {
    pool_free(p);
    return NULL;
  }
  for (; p->started < p->nworkers; p->started++)
    if (pthread_create(&p->threads[p->started], NULL, worker_main, p) != 0) {
      q_log_error("cannot start a pipeline worker", "{s:i}", "started", p->started);
      pool_free(p);
      return NULL;
    }
  publish(p);
  return p;
}

void pool_free(pool_t *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stopping = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->started; i++)
    pthread_join(p->threads[i], NULL);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->threads);
  free(p->tenants);
  free(p);
}
