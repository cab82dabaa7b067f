/* blob.h - content-addressed storage of uploaded documents on disk.
 *
 * An upload streams into a temporary file in the blob directory while its
 * SHA-256 is computed; on success it is renamed to <dir>/<sha256>, so the
 * name is the content and identical uploads share one file. The rename is
 * atomic and happens after fsync, so a blob that has a name is complete.
 * Workers read blobs through read-only memory maps: nothing is copied onto
 * the heap however large the document. */
#ifndef QUARRY_INGESTION_BLOB_H
#define QUARRY_INGESTION_BLOB_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include "quarry/error.h"
#include <stdbool.h>

typedef struct evp_md_ctx_st EVP_MD_CTX;

#define BLOB_HEAD_BYTES 4096

/* An upload in progress. */
typedef struct blob_writer {
  char dir[PATH_MAX];
  char tmp[PATH_MAX];
  int fd;
  EVP_MD_CTX *md;
  int64_t size, max;
  char head[BLOB_HEAD_BYTES]; /* the first bytes written: what formats sniff */
  size_t head_len;
} blob_writer_t;

/* A blob mapped for reading. */
typedef struct blob_map {
  const char *data;
  size_t size;
} blob_map_t;

/* Creates dir (and parents) if missing, checks it is a writable directory
 * and writes its absolute path into abs. 0, or Q_EIO with err. */
q_err_t blob_dir_prepare(const char *dir, char *abs, size_t abslen, char *err,
                         size_t errlen);

/* Starts an upload of at most max bytes into dir. 0, or Q_EIO /
 * Q_ENOMEM with err. On success call blob_commit or blob_abort. */
q_err_t blob_begin(blob_writer_t *w, const char *dir, int64_t max, char *err,
                   size_t errlen);

/* Appends n bytes. Q_ETOOBIG past the maximum (nothing written), Q_EIO on
 * a write failure; err says which. */
q_err_t blob_write(blob_writer_t *w, const void *p, size_t n, char *err, size_t errlen);

/* Finishes: fsync, rename to <dir>/<sha256>, fsync the directory. Writes
 * the hex digest into sha. The writer is released either way. 0 or Q_EIO. */
q_err_t blob_commit(blob_writer_t *w, char sha[65], char *err, size_t errlen);

/* blob_commit for the writers ws[i] whose rcs[i] is 0 (the others are
 * left alone): one syncfs for all of them instead of an fsync each, the
 * renames, one fsync of the directory. A writer that fails gets its rcs[i]
 * (Q_EIO, Q_EINTERNAL; err says the last such reason) and is aborted; each
 * committed one has its digest in shas[i] and is released. 0. */
q_err_t blob_commit_many(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                         char *err, size_t errlen);

/* blob_commit_many with an fsync of each file instead of the syncfs (still
 * one fsync of the directory): for a few files, where flushing the whole
 * file system - everything any process on it has written - would cost
 * more than it saves (commit.c's groups of single uploads). */
q_err_t blob_commit_group(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                          char *err, size_t errlen);

/* Removes the temporary files of uploads whose writer is gone (a crashed
 * process): each live writer holds an exclusive flock on its file, so a
 * file whose lock can be taken is left over. Safe while other processes
 * upload into the same directory. Writes the count into removed. 0, or
 * Q_EIO with err (the directory unreadable or a file not removable; the
 * others are still swept). */
q_err_t blob_sweep_temp(const char *dir, int *removed, char *err, size_t errlen);

/* Throws the upload away (removes the temporary file). Safe after commit. */
void blob_abort(blob_writer_t *w);

/* 1 when s is 64 lowercase hex characters (a blob name). */
bool blob_name_valid(const char *s);

/* Maps <dir>/<sha256> read-only. 0; Q_ENOTFOUND when missing; Q_EINVAL for
 * a bad name; Q_EIO with err otherwise. An empty blob maps to size 0. */
q_err_t blob_open(const char *dir, const char *sha, blob_map_t *m, char *err,
                  size_t errlen);
void blob_close(blob_map_t *m);

/* Opens <dir>/<sha256> read-only (close-on-exec) into *fd; the caller
 * closes it. 0; Q_ENOTFOUND when missing; Q_EINVAL for a bad name; Q_EIO
 * with err otherwise. */
q_err_t blob_open_fd(const char *dir, const char *sha, int *fd, char *err, size_t errlen);

#endif
