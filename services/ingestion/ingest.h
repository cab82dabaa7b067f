/* ingest.h - what the ingestion service's modules share: settings, the
 * database pool, metrics and the worker wake-up signal.
 *
 * One ingest_t per process, created in main.c; the upload handler, the
 * query handlers and the job workers all receive it. */
#ifndef QUARRY_INGESTION_INGEST_H
#define QUARRY_INGESTION_INGEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "commit.h"
#include "extract/sandbox.h"
#include "quarry/metrics.h"
#include "chunker.h"
#include "quarry/pg.h"
#include "quarry/error.h"

typedef struct ingest_cfg {
  const char *blob_dir;       /* absolute, created at start */
  int64_t max_upload_bytes;   /* QUARRY_MAX_UPLOAD_BYTES */
  int workers;                /* QUARRY_INGEST_WORKERS */
  int batch;                  /* QUARRY_INGEST_BATCH: jobs a worker claims at once */
  int gather_ms;              /* QUARRY_INGEST_GATHER_MS */
  int chunk_tokens;           /* QUARRY_CHUNK_TOKENS (words) */
  int chunk_overlap;          /* QUARRY_CHUNK_OVERLAP (words) */
  const char *llm_addr;       /* QUARRY_LLM_GATEWAY_ADDR */
  const char *retriever_addr; /* QUARRY_RETRIEVER_ADDR */
  const char *pg_dsn;         /* QUARRY_PG_DSN: the LISTEN connection */
  int poll_ms;                /* QUARRY_INGEST_POLL_MS: safety-net poll */
  int max_attempts;           /* QUARRY_INGEST_MAX_ATTEMPTS */
  int backoff_ms;             /* QUARRY_INGEST_BACKOFF_MS: first retry delay */
  int64_t retry_window_ms;    /* QUARRY_INGEST_RETRY_WINDOW_MS */
  int retry_max_backoff_ms;   /* QUARRY_INGEST_RETRY_MAX_BACKOFF_MS */
  int lease_ms;               /* QUARRY_INGEST_LEASE_MS */
  const char *host;           /* QUARRY_INGEST_HOST; NULL or "": gethostname */
  int call_timeout_ms;        /* QUARRY_INGEST_CALL_TIMEOUT_MS */
  sandbox_cfg_t extract;      /* QUARRY_EXTRACT_*: each document's sandbox */
  int64_t idempotency_ttl_ms; /* QUARRY_IDEMPOTENCY_TTL_MS */

  /* QUARRY_CHUNKING: the default strategy (of an upload that names none,
   * and of a version stored before the choice was kept). */
  const chunker_strategy_t *chunking;
} ingest_cfg_t;

typedef struct ingest {
  ingest_cfg_t cfg;
  q_pg_pool_t *pool;
  char instance[160]; /* "<host>:<pid>:<random>", recorded in jobs.claimed_by */
  char host[128];

  /* Workers sleep on cv between polls; an upload in this process wakes
   * them at once so a job does not wait for the next poll. */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int kicks;
  atomic_int stopping;
  pthread_t *threads;
  int nthreads;
  pthread_t listener; /* LISTEN on DOCSTORE_CHANNEL, kicks the workers */
  int listening;
  _Atomic int64_t next_due_ms; /* q_now_ms() when a delayed job is due, 0: none */
  commit_queue_t commits;      /* single uploads committed in groups (commit.h) */

  q_metric_t *m_jobs;    /* quarry_ingest_jobs_total{status} */
  q_metric_t *m_chunks;  /* quarry_ingest_chunks_total */
  q_metric_t *m_bytes;   /* quarry_ingest_bytes_total */
  q_metric_t *m_state;   /* quarry_ingest_jobs{state}: jobs now in each state */
  q_metric_t *m_oldest;  /* quarry_ingest_queue_oldest_seconds */
  q_metric_t *m_extract; /* quarry_ingest_extract_seconds{format} */
} ingest_t;

/* Fills in from cfg and pool (borrowed), names the instance and registers
 * the ingestion metrics. Call once, before any thread starts. 0. */
q_err_t ingest_init(ingest_t *in, const ingest_cfg_t *cfg, q_pg_pool_t *pool);

/* Releases what ingest_init created (after the workers stopped). */
void ingest_cleanup(ingest_t *in);

/* Wakes the workers (after a job was queued). Thread-safe. */
void ingest_kick(ingest_t *in);

#endif
