/* commit.c - group commit of single uploads (see commit.h). */
#include "commit.h"

#include <stdlib.h>
#include <string.h>

typedef struct commit_req {
  struct commit_req *next;
  blob_writer_t *w;
  const upload_meta_t *m;
  char *sha;
  upload_result_t *r;
  bool *blob_failed;
  char *err;
  size_t errlen;
  q_err_t rc;
  bool done;
} commit_req_t;

void commit_queue_init(commit_queue_t *q) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
}

void commit_queue_cleanup(commit_queue_t *q) {
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
}

/* Commits reqs[0..n) (not under the queue's lock). */
static void commit_group(q_pg_pool_t *pool, commit_req_t **reqs, int n) {
  blob_writer_t *ws = malloc((size_t)n * sizeof *ws);
  char(*shas)[65] = malloc((size_t)n * sizeof *shas);
  q_err_t *rcs = calloc((size_t)n, sizeof *rcs);
  upload_meta_t *metas = malloc((size_t)n * sizeof *metas);
  upload_result_t *res = malloc((size_t)n * sizeof *res);
  q_err_t *rrc = malloc((size_t)n * sizeof *rrc);
  char(*rerr)[256] = malloc((size_t)n * sizeof *rerr);
  int *at = malloc((size_t)n * sizeof *at);
  if (!ws || !shas || !rcs || !metas || !res || !rrc || !rerr || !at) {
    for (int i = 0; i < n; i++) {
      blob_abort(reqs[i]->w);
      *reqs[i]->blob_failed = true;
      snprintf(reqs[i]->err, reqs[i]->errlen, "out of memory");
      reqs[i]->rc = Q_EINTERNAL;
    }
    goto out;
  }
  /* The writers move into one array for blob_commit_many and back. */
  for (int i = 0; i < n; i++)
    ws[i] = *reqs[i]->w;
  char berr[256] = "";
  blob_commit_group(ws, n, shas, rcs, berr, sizeof berr);
  int k = 0;
  for (int i = 0; i < n; i++) {
    commit_req_t *q = reqs[i];
    *q->w = ws[i];
    if (rcs[i]) {
      *q->blob_failed = true;
      snprintf(q->err, q->errlen, "%s", berr);
      q->rc = rcs[i];
      continue;
    }
    memcpy(q->sha, shas[i], 65);
    metas[k] = *q->m;
    metas[k].sha256 = q->sha;
    at[k++] = i;
  }
  if (k == 0)
    goto out;
  q_err_t rc = docstore_record_uploads(pool, metas, k, res, rrc, rerr);
  for (int x = 0; x < k; x++) {
    commit_req_t *q = reqs[at[x]];
    q->rc = rc ? rc : rrc[x];
    if (q->rc)
      snprintf(q->err, q->errlen, "%s", rc ? "document store unavailable" : rerr[x]);
    else
      *q->r = res[x];
  }
out:
  free(ws);
  free(shas);
  free(rcs);
  free(metas);
  free(res);
  free(rrc);
  free(rerr);
  free(at);
}

q_err_t commit_upload(commit_queue_t *q, q_pg_pool_t *pool, blob_writer_t *w,
                      const upload_meta_t *m, char sha[65], upload_result_t *r,
                      bool *blob_failed, char *err, size_t errlen) {
  commit_req_t me = {.w = w,
                     .m = m,
                     .sha = sha,
                     .r = r,
                     .blob_failed = blob_failed,
                     .err = err,
                     .errlen = errlen};
  *blob_failed = false;
  if (errlen)
    err[0] = '\0';
  pthread_mutex_lock(&q->mu);
  if (q->tail)
    q->tail->next = &me;
  else
    q->head = &me;
  q->tail = &me;
  while (!me.done) {
    if (q->busy) {
      pthread_cond_wait(&q->cv, &q->mu);
      continue;
    }
    /* Nobody is committing: this thread takes what is queued (its own
     * upload among it, or an earlier group's leftovers before it). */
    commit_req_t *group[COMMIT_GROUP_MAX];
    int n = 0;
    while (q->head && n < COMMIT_GROUP_MAX) {
      group[n++] = q->head;
      q->head = q->head->next;
    }
    if (!q->head)
      q->tail = NULL;
    q->busy = true;
    pthread_mutex_unlock(&q->mu);
    commit_group(pool, group, n);
    pthread_mutex_lock(&q->mu);
    for (int i = 0; i < n; i++)
      group[i]->done = true;
    q->groups++;
    q->uploads += n;
    q->busy = false;
    pthread_cond_broadcast(&q->cv);
  }
  pthread_mutex_unlock(&q->mu);
  return me.rc;
}
