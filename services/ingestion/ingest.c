/* ingest.c - the ingestion service's shared state: instance name, metrics
 * and the workers' wake-up signal (see ingest.h). */
#include "ingest.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "quarry/util.h"
#include "quarry/error.h"

q_err_t ingest_init(ingest_t *in, const ingest_cfg_t *cfg, q_pg_pool_t *pool) {
  memset(in, 0, sizeof *in);
  in->cfg = *cfg;
  in->pool = pool;
  if (cfg->host && cfg->host[0])
    snprintf(in->host, sizeof in->host, "%s", cfg->host);
  else if (gethostname(in->host, sizeof in->host) != 0 || !in->host[0])
    snprintf(in->host, sizeof in->host, "localhost");
  in->host[sizeof in->host - 1] = '\0';
  /* A ':' would break splitting claimed_by back into its host. */
  for (char *p = in->host; *p; p++)
    if (*p == ':')
      *p = '_';
  char rnd[9];
  q_random_hex(rnd, 4);
  snprintf(in->instance, sizeof in->instance, "%s:%d:%s", in->host, (int)getpid(), rnd);

  pthread_mutex_init(&in->mu, NULL);
  q_cond_init_monotonic(&in->cv);
  atomic_init(&in->stopping, 0);

  in->m_jobs =
      q_metrics_counter("quarry_ingest_jobs_total",
                        "Ingestion job attempts by outcome (done, failed, retried, "
                        "requeued).",
                        "status");
  in->m_chunks = q_metrics_counter("quarry_ingest_chunks_total",
                                   "Chunks embedded and sent to the retriever.", "");
  in->m_bytes = q_metrics_counter("quarry_ingest_bytes_total",
                                  "Bytes of documents accepted by Upload.", "");
  in->m_state = q_metrics_gauge("quarry_ingest_jobs",
                                "Jobs in each state (queued is the queue depth), counted "
                                "every few seconds.",
                                "state");
  in->m_oldest =
      q_metrics_gauge("quarry_ingest_queue_oldest_seconds",
                      "Age of the oldest queued job, counted every few seconds.", "");
  static const double extract_buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1,
                                           2.5,  5,    10,  30,   60,  120};
  in->m_extract = q_metrics_histogram(
      "quarry_ingest_extract_seconds", "Time to extract a document's text, by format.",
      "format", extract_buckets, sizeof extract_buckets / sizeof extract_buckets[0]);
  atomic_init(&in->next_due_ms, 0);
  commit_queue_init(&in->commits);
  return 0;
}

void ingest_cleanup(ingest_t *in) {
  pthread_cond_destroy(&in->cv);
  pthread_mutex_destroy(&in->mu);
  commit_queue_cleanup(&in->commits);
}

void ingest_kick(ingest_t *in) {
  pthread_mutex_lock(&in->mu);
  in->kicks++;
  pthread_cond_broadcast(&in->cv);
  pthread_mutex_unlock(&in->mu);
}
