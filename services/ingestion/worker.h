/* worker.h - the job workers: threads that take queued jobs from the jobs
 * table and turn a stored document into indexed chunks.
 *
 * Per job: extract the blob in a sandboxed child process (extract/
 * sandbox.h; forked by the worker thread's own zygote) into text with its structure, take
 * the extracted title unless one was given, chunk it (chunker.h: heading path and page
 * per chunk), then in batches of up to 512 chunks: embed them through the LLM gateway (64
 * texts per Embed call) and Upsert them into the retriever, the only keeper of their
 * text. The first Upsert of a job carries replace_doc_id, which retires every chunk of
 * the document's previous version; later batches only add. A document of at most 512
 * chunks (about 80,000 words with the default sizes) is therefore swapped
 * atomically; a larger one is searchable with a partial new version while
 * its later batches are in flight, and stays partial if the job fails for
 * good (its status then says failed).
 *
 * Batches: a worker that claims a small document (at most 256 KiB)
 * claims up to QUARRY_INGEST_BATCH - 1 more small ones at once
 * (docstore_claim_batch, in fair order) and processes them together:
 * extraction and chunking per job, the chunks of every document that fits
 * one Upsert embedded in shared Embed calls (up to Q_LIMIT_EMBED_TEXTS
 * texts), then the new documents (version 1, first job: the retriever
 * holds nothing of them, nothing to retire) in shared Upsert calls per
 * tenant, every other one in its own Upsert with replace_doc_id, and per
 * job its outcome. A failed shared call decides the outcome of each job it
 * carried, classified as usual. A large document is claimed and processed
 * alone, as above.
 *
 * Waiting for work: a listener thread holds one connection outside the
 * pool and LISTENs on DOCSTORE_CHANNEL, which a trigger on jobs notifies
 * whenever a job becomes queued (by any process); each notification wakes
 * the workers. It reconnects with backoff when the connection breaks. A
 * slow poll (QUARRY_INGEST_POLL_MS, default 5 s) remains as a safety net,
 * and a worker that queued a job with a delay wakes when it is due.
 *
 * Stages: a running job records its stage (extracting, chunking,
 * embedding, indexing), progress (chunks indexed of the total, counted by
 * a dry run of the chunker) and the milliseconds spent per stage; each
 * change is one log line carrying the job's trace id. The claim writes
 * "extracting"; embedding and indexing are written when entered (one
 * statement for a batch's embedding); chunking rides on the next write;
 * the lease is renewed at most once a second (REPORT_EVERY_MS); the
 * outcome writes the final stage and timings.
 *
 * Failures are classified (worker_classify):
 *   - a dependency is down (UNAVAILABLE, DEADLINE_EXCEEDED,
 *     RESOURCE_EXHAUSTED from the llm-gateway or the retriever; the
 *     database unreachable): the job is queued again with capped
 *     exponential backoff and jitter (QUARRY_INGEST_BACKOFF_MS doubling up
 *     to QUARRY_INGEST_RETRY_MAX_BACKOFF_MS) and the attempt is not
 *     counted. Only when dependencies stayed unavailable for longer than
 *     QUARRY_INGEST_RETRY_WINDOW_MS (1 h) since the first such retry does
 *     the job fail. An outage of minutes never fails an accepted document.
 *   - other transient errors (INTERNAL, CANCELLED, out of memory, the blob
 *     store): queued again with backoff, counted against
 *     QUARRY_INGEST_MAX_ATTEMPTS.
 *   - content errors (a document that cannot be extracted, a dependency
 *     rejecting the request with INVALID_ARGUMENT and the like): the job
 *     fails at once with a readable reason.
 *
 * Recording the outcome survives a database blip: the final UPDATE (done,
 * failed or queued again) is retried with backoff for as long as the
 * job's lease lasts, so a job does not sit in "running" until the reaper
 * finds it. */
#ifndef QUARRY_INGESTION_WORKER_H
#define QUARRY_INGESTION_WORKER_H

#include <stddef.h>

#include "ingest.h"
#include "quarry/error.h"

/* What one attempt at a job came to. */
typedef enum {
  OUT_OK,     /* all went well (so far, or in the end) */
  OUT_FAILED, /* permanent: fail the job now */
  OUT_RETRY,  /* transient: queue again unless out of attempts */
  OUT_DEPEND, /* a dependency is down: queue again within the retry window,
               * without spending an attempt */
  OUT_LOST,   /* the job is no longer ours: leave it alone */
  OUT_STOPPED /* shutting down: give the job back */
} outcome_t;

/* How an error from a dependency call (a q_err_t) is treated: OUT_DEPEND,
 * OUT_RETRY or OUT_FAILED (see the header comment). */
outcome_t worker_classify(int rc);

/* The delay before a job's next try after its retries-th dependency retry
 * (0 for the first): cfg->backoff_ms doubling, capped at
 * cfg->retry_max_backoff_ms, with half of it random (rnd: any random
 * number). */
int worker_dependency_backoff_ms(const ingest_cfg_t *cfg, int retries, unsigned rnd);

/* Queues again the jobs a previous process on this host left running (it
 * crashed or was killed) and any whose heartbeat expired. Call at start,
 * before worker_start. 0, or an error with err. */
q_err_t worker_recover(ingest_t *in, char *err, size_t errlen);

/* Starts in->cfg.workers threads. 0, or Q_ENOMEM / Q_EINTERNAL (threads
 * already started are stopped again). */
q_err_t worker_start(ingest_t *in);

/* Asks the workers to stop and waits for them. A worker busy with a job
 * finishes the embedding/upsert call in flight, then gives the job back to
 * the queue (the attempt is not counted) unless it was about to finish. */
void worker_stop(ingest_t *in);

#endif
