/* docstore.h - documents and jobs in PostgreSQL.
 *
 * Tables (migrations of service "ingestion"):
 *   documents - one row per document, updated in place: version counts up
 *               with each changed upload; status mirrors its latest job.
 *   jobs      - one row per processing run of a document version; the queue.
 *   document_versions - every version of a document (migration 5's
 *               trigger on documents; read by lifecycle.c). A deleted
 *               document keeps its documents row (deleted_at, deleted_by).
 *   upload_keys - one row per (tenant, Idempotency-Key) of a keyed upload:
 *               what the upload was (its fingerprint) and what it produced,
 *               until expires_at. Written in the upload's own transaction.
 *
 * Chunk text is not kept here: the retriever owns it (retriever_chunks),
 * and ingestion records only how many chunks a version has (chunk_count).
 * Migration 2 drops the chunks table that used to hold a second copy.
 *
 * The queue is the jobs table: workers claim the oldest runnable job with
 * FOR UPDATE SKIP LOCKED, mark it running under their instance name and
 * renew a heartbeat while working. A job whose worker died is queued again
 * once its heartbeat is older than the lease (or at once when the same host
 * restarts). Only one job per document runs at a time, so versions are
 * indexed in order. Every update a worker makes is conditional on it still
 * owning the job, so a worker that lost its lease cannot clobber the new
 * owner's work. */
#ifndef QUARRY_INGESTION_DOCSTORE_H
#define QUARRY_INGESTION_DOCSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quarry/arena.h"
#include "quarry/pg.h"
#include "quarry/v1/ingestion.pb-c.h"
#include "quarry/validate.h"
#include "validate.h"
#include "quarry/error.h"

/* How long an idempotency key is remembered when upload_meta_t.key_ttl_ms
 * is not set: 24 hours (QUARRY_IDEMPOTENCY_TTL_MS's default). */
#define DOCSTORE_KEY_TTL_DEFAULT_MS 86400000

/* The NOTIFY channel a queued job is announced on (migration 4's trigger:
 * every insert or status change to 'queued'). Workers LISTEN on it. */
#define DOCSTORE_CHANNEL "quarry_jobs"

extern const q_pg_migration_t docstore_migrations[];
extern const size_t docstore_nmigrations;

/* A stored upload, validated by the caller. */
typedef struct upload_meta {
  const char *tenant_id;
  const char *external_id; /* "" when none */
  const char *title;       /* explicit title, else the filename, else "" */
  int title_explicit;      /* 1 when the caller gave the title */
  const char *filename;
  const char *content_type; /* a format's type (formats_stored_type) */
  const char *sha256;
  int64_t size;
  const char *trace_id;        /* continued by the worker */
  const char *idempotency_key; /* "" or NULL when none; else q_valid_idempotency_key */
  int64_t key_ttl_ms;          /* how long a new key is remembered */
  const char *metadata;        /* user metadata, compact JSON checked by
                                  q_meta_check; "" or NULL none */
  /* The version's chunking, resolved in full ("structure:200:40",
   * quarry/chunking.h); "" for the settings of the worker that runs it. */
  char chunking[Q_LIMIT_CHUNKING_BYTES + 1];
} upload_meta_t;

typedef struct upload_result {
  char document_id[37];
  char job_id[37];
  int version;
  int unchanged; /* same content as the current version: no new job */
  int replayed;  /* the stored result of an earlier upload with the same key */
} upload_result_t;

/* Records an upload in one transaction: a new document (version 1), a new
 * version of the document with the same (tenant, external_id), or nothing
 * when the content is unchanged. An unchanged re-upload of a document whose
 * last job failed queues a new job for the same version (a way to retry).
 * Queued jobs of older versions are marked failed ("superseded").
 *
 * With an idempotency key the transaction first claims (tenant, key) in
 * upload_keys. A key seen before and not expired changes nothing: when the
 * earlier upload had the same fingerprint (sha256, content type,
 * external_id, explicit title, filename) *r is that upload's result with
 * replayed set; otherwise Q_ECONFLICT, err naming what differs. A second
 * upload with a key whose first upload has not committed yet waits for that
 * commit (the key's row lock), then answers as above; if the first rolls
 * back, the second proceeds as the first. An expired key is claimed anew.
 *
 * 0, Q_ECONFLICT, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t docstore_record_upload(q_pg_pool_t *p, const upload_meta_t *m, upload_result_t *r,
                               char *err, size_t errlen);

/* docstore_record_upload for m[0..n) in one transaction (one commit, one
 * NOTIFY for all their jobs): r[i], rcs[i] (0 or Q_ECONFLICT) and errs[i]
 * per upload. When the database refuses one of them the transaction is
 * rolled back and each is recorded on its own instead, so only that one
 * fails. Q_EUNAVAIL (nothing recorded) when the database cannot be
 * reached at first; otherwise 0 with each item's result in rcs (an item
 * after the database went away is Q_EUNAVAIL). */
q_err_t docstore_record_uploads(q_pg_pool_t *p, const upload_meta_t *m, int n,
                                upload_result_t *r, q_err_t *rcs, char (*errs)[256]);

/* Deletes at most limit idempotency keys that have expired, oldest first,
 * skipping rows another transaction holds; *n receives how many. Cheap
 * (an index range scan): the upload handler runs it after each keyed
 * upload, so the table stays near the keys of the last
 * QUARRY_IDEMPOTENCY_TTL_MS. 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t docstore_expire_keys(q_pg_pool_t *p, int limit, int *n, char *err, size_t errlen);

/* Reads a document / job of tenant into messages allocated from a. 0,
 * Q_ENOTFOUND (unknown or another tenant's), Q_EUNAVAIL / Q_EINTERNAL. */
q_err_t docstore_get_document(q_pg_pool_t *p, const char *tenant, const char *id,
                              q_arena_t *a, Quarry__V1__Document **out, char *err,
                              size_t errlen);
q_err_t docstore_get_job(q_pg_pool_t *p, const char *tenant, const char *id, q_arena_t *a,
                         Quarry__V1__Job **out, char *err, size_t errlen);

/* A claimed job with what the worker needs of its document. */
typedef struct job {
  char id[37];
  char document_id[37];
  char tenant_id[Q_LIMIT_TENANT_ID_BYTES + 1];
  char trace_id[Q_LIMIT_REQUEST_ID_BYTES + 1];
  int version;     /* the version this job indexes */
  int attempts;    /* including this one */
  int doc_version; /* the document's current version at claim time */
  char sha256[65];
  char content_type[Q_LIMIT_MEDIA_TYPE_BYTES + 1];
  char title[Q_LIMIT_TITLE_BYTES + 1];
  int title_explicit;
  int64_t size;
  int dep_retries;      /* times queued again because a dependency was down */
  int64_t dep_retry_ms; /* how long ago the first of those was, 0 when none */
  int first_job;        /* version 1 and the document's only job ever: the
                         * retriever cannot hold any chunk of it yet */
  /* What the chunks carry for retrieval filters (Chunk.created_at,
   * Chunk.metadata): the document's first upload (unix seconds; the worker
   * replaces it by the creation date the file records, when it records
   * one) and its user metadata ("" none). */
  int64_t created_at;
  char metadata[Q_LIMIT_METADATA_BYTES + 1];
  /* How its version is chunked (upload_meta_t.chunking); "" for versions
   * stored before the choice was recorded: the worker's settings. */
  char chunking[Q_LIMIT_CHUNKING_BYTES + 1];
} job_t;

/* Claims a runnable job for instance, fairly across tenants: among the
 * runnable jobs (queued, run_after passed, no other job of the document
 * running) it takes the one whose tenant has the fewest running jobs, then
 * the one earliest in its tenant's queue (round robin: every tenant's first
 * job before any tenant's second), then the oldest. A tenant's bulk load
 * therefore delays another tenant's job by at most what each worker is
 * busy with (worker.h: one job, or one batch of small ones).
 * 0 with *j filled, Q_ENOTFOUND when there is none, else an error with
 * err. */
q_err_t docstore_claim(q_pg_pool_t *p, const char *instance, job_t *j, char *err,
                       size_t errlen);

/* The statement docstore_claim_batch runs ($1 instance, $2 max, $3
 * max_bytes), for EXPLAIN in bench/claim_bench.c. */
extern const char docstore_claim_sql[];

/* Claims up to max runnable jobs at once (jobs[0..max) filled, *n how
 * many), in the order docstore_claim would take them one by one: each
 * tenant's first job before any tenant's second, less busy and less
 * recently served tenants first; with max_bytes > 0 only documents of at
 * most max_bytes. A claimed job's stage is "extracting". One round trip
 * for a worker that processes jobs together (worker.h). 0 (with *n
 * possibly 0), else an error with err. */
q_err_t docstore_claim_batch(q_pg_pool_t *p, const char *instance, job_t *jobs, int max,
                             int64_t max_bytes, int *n, char *err, size_t errlen);

/* Records that jobs ids[0..n) (running, claimed by instance) entered stage,
 * with totals[i] chunks, and renews their leases, in one statement.
 * updated[i] says whether job i was still ours. 0, else an error with err
 * (updated all false). */
q_err_t docstore_progress_many(q_pg_pool_t *p, const char *instance, const char *stage,
                               const char *const *ids, const int *totals, int n,
                               bool *updated, char *err, size_t errlen);

/* Renews the job's heartbeat and reads the document's current version into
 * *doc_version. Q_ENOTFOUND when the job is no longer ours. */
q_err_t docstore_heartbeat(q_pg_pool_t *p, const char *instance, const job_t *j,
                           int *doc_version, char *err, size_t errlen);

/* Ends the job as "done" (with chunk_count, which becomes its progress:
 * all of it) or "failed" (with a readable reason); the document follows
 * when it is still at the job's version. stage_ms (the final per-stage
 * timings, as for docstore_progress) replaces the stored ones unless NULL.
 * Q_ENOTFOUND when the job is no longer ours. */
q_err_t docstore_finish(q_pg_pool_t *p, const char *instance, const job_t *j, int done,
                        int chunk_count, const char *error, const char *stage_ms,
                        char *err, size_t errlen);

/* How docstore_requeue treats the attempt that ends. */
typedef enum {
  REQUEUE_GIVE_BACK = 0,  /* not counted (the worker stopped) */
  REQUEUE_ATTEMPT = 1,    /* counted against QUARRY_INGEST_MAX_ATTEMPTS */
  REQUEUE_DEPENDENCY = 2, /* not counted; counts a dependency retry and
                           * starts the retry window when it is the first */
} requeue_kind_t;

/* Puts the job back in the queue to run after delay_ms, noting why (kind:
 * a requeue_kind_t). Q_ENOTFOUND when the job is no longer ours. */
q_err_t docstore_requeue(q_pg_pool_t *p, const char *instance, const job_t *j,
                         int delay_ms, int kind, const char *why, char *err,
                         size_t errlen);

/* Job stages, in order, as stored in jobs.stage and returned by GetJob. */
#define DOCSTORE_STAGES                                                                  \
  { "extracting", "chunking", "embedding", "indexing" }

/* Records where a running job is: stage, progress (done of total; total 0
 * when not known yet) and stage_ms, a JSON object of milliseconds spent per
 * stage so far ({"extracting":120,...}). Renews the heartbeat too.
 * Q_ENOTFOUND when the job is no longer ours. */
q_err_t docstore_progress(q_pg_pool_t *p, const char *instance, const job_t *j,
                          const char *stage, int done, int total, const char *stage_ms,
                          char *err, size_t errlen);

/* What the queue looks like now (one cheap statement). */
typedef struct queue_stats {
  int64_t queued, running, done, failed;
  double oldest_queued_s; /* age of the oldest queued job, 0 when none */
  int64_t next_due_ms;    /* until the next queued job may run; -1 when none */
} queue_stats_t;

/* Reads queue_stats_t. 0, or Q_EUNAVAIL / Q_EINTERNAL with err. */
q_err_t docstore_queue_stats(q_pg_pool_t *p, queue_stats_t *s, char *err, size_t errlen);

/* Queues again (or fails, past max_attempts) running jobs whose heartbeat
 * is older than lease_ms, plus - when host is not NULL - every running job
 * claimed from host (a restarted process finding its predecessor's work).
 * *n receives how many were touched. */
q_err_t docstore_requeue_stale(q_pg_pool_t *p, const char *host, int lease_ms,
                               int max_attempts, int *n, char *err, size_t errlen);

/* What extraction found out about one version (what the format says;
 * "" / 0 where it says nothing). */
typedef struct doc_facts {
  const char *author;
  int64_t created, modified; /* unix seconds */
  const char *language;      /* a BCP 47 tag */
  int page_count;
} doc_facts_t;

/* Records f on the job's version (document_versions). 0 or an error with
 * err. */
q_err_t docstore_set_facts(q_pg_pool_t *p, const job_t *j, const doc_facts_t *f,
                           char *err, size_t errlen);

/* docstore_set_facts for jobs[0..n) in one statement. 0, Q_EINVAL when a
 * string is not UTF-8 (nothing written; record them one by one), or an
 * error with err. */
q_err_t docstore_set_facts_many(q_pg_pool_t *p, const job_t *const *jobs,
                                const doc_facts_t *facts, int n, char *err,
                                size_t errlen);

/* Ends jobs[0..n) as "done" in one statement, as docstore_finish does
 * one: chunk_counts[i] chunks, stage_ms[i] the final timings (NULL or ""
 * keeps the stored ones; stage_ms may be NULL). finished[i] says whether
 * job i was still ours (else it was taken over and nothing changed). 0,
 * else an error with err (finished all false). */
q_err_t docstore_finish_many(q_pg_pool_t *p, const char *instance,
                             const job_t *const *jobs, const int *chunk_counts,
                             const char *const *stage_ms, int n, bool *finished,
                             char *err, size_t errlen);

/* Sets the document's title when it is still at the job's version. */
q_err_t docstore_set_title(q_pg_pool_t *p, const job_t *j, const char *title, char *err,
                           size_t errlen);

#endif
