/* blob.c - content-addressed blob files (see blob.h). Hashing with OpenSSL
 * EVP, incrementally as the data arrives. */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quarry/error.h"

static q_err_t mkdir_p(char *path) {
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    int rc = mkdir(path, 0750);
    *p = '/';
    if (rc && errno != EEXIST)
      return Q_EIO;
  }
  return mkdir(path, 0750) && errno != EEXIST ? Q_EIO : 0;
}

q_err_t blob_dir_prepare(const char *dir, char *abs, size_t abslen, char *err,
                         size_t errlen) {
  char path[PATH_MAX];
  if (!dir || !dir[0] || (size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path) {
    snprintf(err, errlen, "blob directory path is empty or too long");
    return Q_EIO;
  }
  if (mkdir_p(path)) {
    snprintf(err, errlen, "cannot create blob directory %s: %s", dir, strerror(errno));
    return Q_EIO;
  }
  char real[PATH_MAX];
  if (!realpath(path, real)) {
    snprintf(err, errlen, "cannot resolve blob directory %s: %s", dir, strerror(errno));
    return Q_EIO;
  }
  struct stat st;
  if (stat(real, &st) || !S_ISDIR(st.st_mode) || access(real, W_OK | X_OK)) {
    snprintf(err, errlen, "blob directory %s is not a writable directory", real);
    return Q_EIO;
  }
  if ((size_t)snprintf(abs, abslen, "%s", real) >= abslen) {
    snprintf(err, errlen, "blob directory path too long");
    return Q_EIO;
  }
  return Q_OK;
}

q_err_t blob_begin(blob_writer_t *w, const char *dir, int64_t max, char *err,
                   size_t errlen) {
  memset(w, 0, sizeof *w);
  w->fd = -1;
  w->max = max;
  snprintf(w->dir, sizeof w->dir, "%s", dir);
  if ((size_t)snprintf(w->tmp, sizeof w->tmp, "%s/.upload-XXXXXX", dir) >=
      sizeof w->tmp) {
    snprintf(err, errlen, "blob directory path too long");
    return Q_EIO;
  }
  /* The writer holds an exclusive flock on its temporary file for as long
   * as it lives: the kernel drops it when the process dies, which is how
   * blob_sweep_temp tells a crashed upload from a live one. A file the
   * sweep took between mkostemp and flock (locked by it, or already
   * unlinked): start over. A file system without flock gets no lock, and
   * then the sweep cannot lock (nor remove) anything either. */
  for (int tries = 0;; tries++) {
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
      snprintf(err, errlen, "cannot create upload file in %s: %s", dir, strerror(errno));
      w->tmp[0] = '\0';
      return Q_EIO;
    }
    bool taken = flock(w->fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    struct stat st;
    if (fstat(w->fd, &st)) {
      snprintf(err, errlen, "cannot stat upload file in %s: %s", dir, strerror(errno));
      close(w->fd);
      w->fd = -1;
      unlink(w->tmp);
      w->tmp[0] = '\0';
      return Q_EIO;
    }
    if (!taken && st.st_nlink > 0)
      break;
    close(w->fd);
    w->fd = -1;
    if (tries >= 3) {
      snprintf(err, errlen, "upload file in %s removed as soon as created", dir);
      w->tmp[0] = '\0';
      return Q_EIO;
    }
    snprintf(w->tmp, sizeof w->tmp, "%s/.upload-XXXXXX", dir);
  }
  w->md = EVP_MD_CTX_new();
  if (!w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
    snprintf(err, errlen, "cannot start SHA-256");
    blob_abort(w);
    return Q_ENOMEM;
  }
  return Q_OK;
}

q_err_t blob_write(blob_writer_t *w, const void *p, size_t n, char *err, size_t errlen) {
  if (n > (uint64_t)(w->max - w->size)) {
    snprintf(err, errlen, "document exceeds the limit of %lld bytes", (long long)w->max);
    return Q_ETOOBIG;
  }
  if (EVP_DigestUpdate(w->md, p, n) != 1) {
    snprintf(err, errlen, "SHA-256 update failed");
    return Q_EINTERNAL;
  }
  const char *c = p;
  size_t left = n;
  while (left > 0) {
    ssize_t k = write(w->fd, c, left);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      snprintf(err, errlen, "writing the upload failed: %s", strerror(errno));
      return Q_EIO;
    }
    c += k;
    left -= (size_t)k;
  }
  if (w->head_len < sizeof w->head) {
    size_t k = sizeof w->head - w->head_len < n ? sizeof w->head - w->head_len : n;
    memcpy(w->head + w->head_len, p, k);
    w->head_len += k;
  }
  w->size += (int64_t)n;
  return Q_OK;
}

static void release(blob_writer_t *w) {
  if (w->fd >= 0)
    close(w->fd);
  w->fd = -1;
  EVP_MD_CTX_free(w->md);
  w->md = NULL;
}

q_err_t blob_commit(blob_writer_t *w, char sha[65], char *err, size_t errlen) {
  unsigned char dig[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (EVP_DigestFinal_ex(w->md, dig, &dlen) != 1 || dlen != 32) {
    snprintf(err, errlen, "SHA-256 failed");
    blob_abort(w);
    return Q_EINTERNAL;
  }
  for (unsigned i = 0; i < dlen; i++)
    snprintf(sha + 2 * i, 3, "%02x", dig[i]);
  if (fsync(w->fd)) {
    snprintf(err, errlen, "fsync of the upload failed: %s", strerror(errno));
    blob_abort(w);
    return Q_EIO;
  }
  char final[PATH_MAX];
  if ((size_t)snprintf(final, sizeof final, "%s/%s", w->dir, sha) >= sizeof final) {
    snprintf(err, errlen, "blob directory path too long");
    blob_abort(w);
    return Q_EIO;
  }
  if (fchmod(w->fd, 0640) || rename(w->tmp, final)) {
    snprintf(err, errlen, "storing the upload failed: %s", strerror(errno));
    blob_abort(w);
    return Q_EIO;
  }
  w->tmp[0] = '\0';
  release(w);
  int dfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { /* make the rename itself durable */
    fsync(dfd);
    close(dfd);
  }
  return Q_OK;
}

static q_err_t commit_many(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                           bool use_syncfs, char *err, size_t errlen);

q_err_t blob_commit_many(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                         char *err, size_t errlen) {
  return commit_many(ws, n, shas, rcs, true, err, errlen);
}

q_err_t blob_commit_group(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                          char *err, size_t errlen) {
  return commit_many(ws, n, shas, rcs, false, err, errlen);
}

static q_err_t commit_many(blob_writer_t *ws, int n, char (*shas)[65], q_err_t *rcs,
                           bool use_syncfs, char *err, size_t errlen) {
  int live = 0, any_fd = -1;
  for (int i = 0; i < n; i++) {
    blob_writer_t *w = &ws[i];
    if (rcs[i])
      continue;
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (EVP_DigestFinal_ex(w->md, dig, &dlen) != 1 || dlen != 32) {
      snprintf(err, errlen, "SHA-256 failed");
      rcs[i] = Q_EINTERNAL;
      blob_abort(w);
      continue;
    }
    for (unsigned k = 0; k < dlen; k++)
      snprintf(shas[i] + 2 * k, 3, "%02x", dig[k]);
    live++;
    any_fd = w->fd;
  }
  if (live == 0)
    return Q_OK;
  /* One flush of the file system for every file of the batch, rather than
   * an fsync each; where syncfs fails, fsync each. */
  bool synced = use_syncfs && syncfs(any_fd) == 0;
  for (int i = 0; i < n; i++) {
    blob_writer_t *w = &ws[i];
    if (rcs[i])
      continue;
    char final[PATH_MAX];
    if (!synced && fsync(w->fd)) {
      snprintf(err, errlen, "fsync of the upload failed: %s", strerror(errno));
      rcs[i] = Q_EIO;
    } else if ((size_t)snprintf(final, sizeof final, "%s/%s", w->dir, shas[i]) >=
               sizeof final) {
      snprintf(err, errlen, "blob directory path too long");
      rcs[i] = Q_EIO;
    } else if (fchmod(w->fd, 0640) || rename(w->tmp, final)) {
      snprintf(err, errlen, "storing the upload failed: %s", strerror(errno));
      rcs[i] = Q_EIO;
    }
    if (rcs[i]) {
      blob_abort(w);
      continue;
    }
    w->tmp[0] = '\0';
    release(w);
  }
  int dfd = open(ws[0].dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) { /* the renames, durable at once */
    fsync(dfd);
    close(dfd);
  }
  return Q_OK;
}

void blob_abort(blob_writer_t *w) {
  release(w);
  if (w->tmp[0])
    unlink(w->tmp);
  w->tmp[0] = '\0';
}

bool blob_name_valid(const char *s) {
  if (!s || strlen(s) != 64)
    return 0;
  for (int i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
      return 0;
  return 1;
}

q_err_t blob_open_fd(const char *dir, const char *sha, int *fd, char *err,
                     size_t errlen) {
  *fd = -1;
  if (!blob_name_valid(sha)) {
    snprintf(err, errlen, "invalid blob name");
    return Q_EINVAL;
  }
  char path[PATH_MAX];
  if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, sha) >= sizeof path) {
    snprintf(err, errlen, "blob directory path too long");
    return Q_EIO;
  }
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) {
    snprintf(err, errlen, "cannot open blob %s: %s", sha, strerror(errno));
    return errno == ENOENT ? Q_ENOTFOUND : Q_EIO;
  }
  return Q_OK;
}

q_err_t blob_open(const char *dir, const char *sha, blob_map_t *m, char *err,
                  size_t errlen) {
  m->data = NULL;
  m->size = 0;
  int fd;
  q_err_t rc = blob_open_fd(dir, sha, &fd, err, errlen);
  if (rc)
    return rc;
  struct stat st;
  if (fstat(fd, &st)) {
    snprintf(err, errlen, "cannot stat blob %s: %s", sha, strerror(errno));
    close(fd);
    return Q_EIO;
  }
  if (st.st_size > 0) {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      snprintf(err, errlen, "cannot map blob %s: %s", sha, strerror(errno));
      close(fd);
      return Q_EIO;
    }
    madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
    m->data = p;
    m->size = (size_t)st.st_size;
  } else {
    m->data = "";
  }
  close(fd);
  return Q_OK;
}

void blob_close(blob_map_t *m) {
  if (m->data && m->size > 0)
    munmap((void *)m->data, m->size);
  m->data = NULL;
  m->size = 0;
}

q_err_t blob_sweep_temp(const char *dir, int *removed, char *err, size_t errlen) {
  *removed = 0;
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, errlen, "cannot read blob directory %s: %s", dir, strerror(errno));
    return Q_EIO;
  }
  q_err_t rc = Q_OK;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, ".upload-", 8) != 0)
      continue;
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path)
      continue;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
      continue; /* gone meanwhile, or not ours to open */
    struct stat st;
    /* A lock we can take has no living writer: the upload crashed. */
    if (!fstat(fd, &st) && S_ISREG(st.st_mode) && !flock(fd, LOCK_EX | LOCK_NB)) {
      if (unlink(path) == 0)
        (*removed)++;
      else if (errno != ENOENT) {
        snprintf(err, errlen, "cannot remove %s: %s", path, strerror(errno));
        rc = Q_EIO;
      }
    }
    close(fd);
  }
  closedir(d);
  return rc;
}
