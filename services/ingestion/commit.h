/* commit.h - group commit of single uploads.
 *
 * Each upload of POST /v1/documents (Ingestion/Upload) must be durable
 * before it is answered: its blob flushed and renamed into place, its
 * document and job committed in PostgreSQL. Done one by one, concurrent
 * uploads each pay a flush of the file, a flush of the directory, a
 * transaction and a NOTIFY. Here they queue instead: the first upload to
 * arrive commits everything queued (up to a group's maximum) with
 * blob_commit_group (an fsync per file, one of the directory; not syncfs,
 * which would flush whatever else the file system holds, for a handful of
 * files) and docstore_record_uploads
 * (one transaction, one NOTIFY); the uploads that arrive meanwhile form
 * the next group, committed by one of them as soon as the first group is
 * done. A lone upload waits for nobody (no timer): groups form only while
 * the previous one is being written, so the batching costs no latency.
 * Every upload is still answered only once its own group is durable, with
 * its own result: a document the database refuses fails alone
 * (docstore_record_uploads takes them one by one then). */
#ifndef QUARRY_INGESTION_COMMIT_H
#define QUARRY_INGESTION_COMMIT_H

#include <pthread.h>
#include <stdbool.h>

#include "blob.h"
#include "docstore.h"
#include "quarry/error.h"

/* Uploads one group commits at most. */
#define COMMIT_GROUP_MAX 64

struct commit_req;

typedef struct commit_queue {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct commit_req *head, *tail; /* waiting for a group */
  bool busy;                      /* a thread is committing a group */
  long groups, uploads;           /* committed so far (logs, tests) */
} commit_queue_t;

void commit_queue_init(commit_queue_t *q);
void commit_queue_cleanup(commit_queue_t *q);

/* Commits the upload being written in w (blob_begin'd, every byte
 * written) with the metadata m (m->sha256 is ignored: the blob's hash is
 * used), together with the uploads of other threads that queue at the
 * same time. Blocks until this upload is durable or has failed.
 *
 * 0 with sha (the blob's name) and *r set. Q_EIO / Q_EINTERNAL: the blob
 * could not be stored (w is aborted), *blob_failed set. Otherwise what
 * docstore_record_upload returns (Q_ECONFLICT, Q_EUNAVAIL, Q_EINTERNAL),
 * with err; the blob is stored then. w is released in every case.
 * Thread-safe. */
q_err_t commit_upload(commit_queue_t *q, q_pg_pool_t *pool, blob_writer_t *w,
                      const upload_meta_t *m, char sha[65], upload_result_t *r,
                      bool *blob_failed, char *err, size_t errlen);

#endif
