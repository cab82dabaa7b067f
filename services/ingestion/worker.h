/* worker.h - the job workers: threads that take queued jobs from the jobs
 * table and turn a stored document into indexed chunks.
 *
 * Per job: extract the blob in a sandboxed child process (extract/
 * sandbox.h) into text with its structure, take the extracted title unless
 * one was given, chunk it (chunker.h: heading path and page per chunk),
 * then in batches of up to 512 chunks: embed them through
 * the LLM gateway (64 texts per Embed call) and Upsert them into the
 * retriever, the only keeper of their text. The first Upsert of a job
 * carries replace_doc_id, which retires every chunk of the document's
 * previous version; later batches only add. A document of at most 512
 * chunks (about 80,000 words with the default sizes) is therefore swapped
 * atomically; a larger one is searchable with a partial new version while
 * its later batches are in flight, and stays partial if the job fails for
 * good (its status then says failed).
 *
 * Waiting for work: each worker polls the queue every QUARRY_INGEST_POLL_MS
 * (default 200) and is woken at once by uploads in the same process. We
 * chose polling over LISTEN/NOTIFY because a LISTEN needs a dedicated
 * connection outside the pool and reconnection handling of its own, while
 * an indexed claim query every 200 ms per worker costs next to nothing.
 *
 * Failures: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED or INTERNAL
 * from a dependency, and database errors, put the job back in the queue
 * with exponential backoff (QUARRY_INGEST_BACKOFF_MS doubling, at most 60
 * s) until QUARRY_INGEST_MAX_ATTEMPTS attempts were made; then it fails with
 * the last reason ("embedding service unavailable: ..."). Other errors (a
 * document that cannot be extracted, a dependency rejecting the request)
 * fail the job at once. */
#ifndef QUARRY_INGESTION_WORKER_H
#define QUARRY_INGESTION_WORKER_H

#include <stddef.h>

#include "ingest.h"
#include "quarry/error.h"

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
