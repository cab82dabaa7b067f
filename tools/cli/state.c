/* state.c - the ingest state file (see state.h). */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct state {
  char *path;
  char *target;
  json_t *docs;  /* this target's entries as last read or written */
  json_t *dirty; /* entries changed since the last save */
};

void state_default_path(char *out, size_t outlen) {
  const char *xdg = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  if (xdg && *xdg == '/')
    snprintf(out, outlen, "%s/quarry/ingest-state.json", xdg);
  else if (home && *home)
    snprintf(out, outlen, "%s/.local/state/quarry/ingest-state.json", home);
  else if (outlen)
    out[0] = '\0';
}

void state_target(const char *server, const char *key_id, char *out, size_t outlen) {
  snprintf(out, outlen, "%s key %s", server, key_id && *key_id ? key_id : "none");
}

/* Reads the whole file: 0 with *root (NULL when the file does not exist),
 * Q_EINVAL when it is not a state file (why in err), Q_EIO otherwise. */
static q_err_t load(const char *path, json_t **root, char *err, size_t errlen) {
  *root = NULL;
  json_error_t je;
  FILE *fp = fopen(path, "r");
  if (!fp) {
    if (errno == ENOENT)
      return 0;
    snprintf(err, errlen, "state file %s: %s", path, strerror(errno));
    return Q_EIO;
  }
  json_t *j = json_loadf(fp, JSON_REJECT_DUPLICATES, &je);
  fclose(fp);
  if (!j) {
    snprintf(err, errlen, "line %d: %s", je.line, je.text);
    return Q_EINVAL;
  }
  json_t *v = json_object_get(j, "version");
  json_t *targets = json_object_get(j, "targets");
  if (!json_is_integer(v) || json_integer_value(v) != STATE_VERSION ||
      !json_is_object(targets)) {
    json_decref(j);
    snprintf(err, errlen, "not a version %d quarry state file", STATE_VERSION);
    return Q_EINVAL;
  }
  *root = j;
  return 0;
}

static json_t *target_docs(json_t *root, const char *target) {
  json_t *t = json_object_get(json_object_get(root, "targets"), target);
  json_t *d = json_object_get(t, "documents");
  return json_is_object(d) ? d : NULL;
}

q_err_t state_open(const char *path, const char *target, state_t **out, char *err,
                   size_t errlen, char *warn, size_t warnlen) {
  *out = NULL;
  if (warnlen)
    warn[0] = '\0';
  state_t *st = calloc(1, sizeof *st);
  if (!st || !(st->path = strdup(path)) || !(st->target = strdup(target)) ||
      !(st->dirty = json_object())) {
    state_free(st);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  json_t *root = NULL;
  char why[512] = "";
  q_err_t rc = load(path, &root, why, sizeof why);
  if (rc == Q_EINVAL) {
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.damaged", path);
    rename(path, aside);
    snprintf(warn, warnlen,
             "state file %s is damaged (%s); moved it to %s and starting afresh "
             "(already loaded files are still recognised by the server)",
             path, why, aside);
    rc = 0;
  } else if (rc) {
    snprintf(err, errlen, "%s", why);
    state_free(st);
    return rc;
  }
  json_t *docs = root ? target_docs(root, target) : NULL;
  st->docs = docs ? json_deep_copy(docs) : json_object();
  json_decref(root);
  if (!st->docs) {
    state_free(st);
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  *out = st;
  return 0;
}

static void copy_str(json_t *o, const char *name, char *dst, size_t dstlen) {
  const char *s = json_string_value(json_object_get(o, name));
  snprintf(dst, dstlen, "%s", s ? s : "");
}

bool state_get(const state_t *st, const char *external_id, state_entry_t *out) {
  json_t *e = json_object_get(st->docs, external_id);
  if (!json_is_object(e))
    return false;
  memset(out, 0, sizeof *out);
  copy_str(e, "sha256", out->sha256, sizeof out->sha256);
  copy_str(e, "document_id", out->document_id, sizeof out->document_id);
  copy_str(e, "job_id", out->job_id, sizeof out->job_id);
  copy_str(e, "status", out->status, sizeof out->status);
  out->size = json_integer_value(json_object_get(e, "size"));
  out->mtime_ns = json_integer_value(json_object_get(e, "mtime_ns"));
  out->version = (int)json_integer_value(json_object_get(e, "version"));
  return out->sha256[0] != '\0';
}

q_err_t state_put(state_t *st, const char *external_id, const state_entry_t *e) {
  json_t *o = json_pack("{s:s,s:I,s:I,s:s,s:s,s:i,s:s}", "sha256", e->sha256, "size",
                        (json_int_t)e->size, "mtime_ns", (json_int_t)e->mtime_ns,
                        "document_id", e->document_id, "job_id", e->job_id, "version",
                        e->version, "status", e->status);
  if (!o)
    return Q_ENOMEM;
  if (json_object_set(st->docs, external_id, o) ||
      json_object_set(st->dirty, external_id, o)) {
    json_decref(o);
    return Q_ENOMEM;
  }
  json_decref(o);
  return 0;
}

bool state_dirty(const state_t *st) {
  return json_object_size(st->dirty) > 0;
}

/* mkdir -p for the file's folder (private: the file names documents). */
static q_err_t make_parent(const char *path, char *err, size_t errlen) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir)
    return 0;
  *slash = '\0';
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      goto fail;
    *p = '/';
  }
  if (mkdir(dir, 0700) != 0 && errno != EEXIST)
    goto fail;
  return 0;
fail:
  snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
  return Q_EIO;
}

q_err_t state_save(state_t *st, char *err, size_t errlen) {
  if (!state_dirty(st))
    return 0;
  q_err_t rc = make_parent(st->path, err, errlen);
  if (rc)
    return rc;
  char lockpath[4200], tmp[4200];
  snprintf(lockpath, sizeof lockpath, "%s.lock", st->path);
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", st->path, (long)getpid());
  int lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {
    snprintf(err, errlen, "cannot lock %s: %s", lockpath, strerror(errno));
    if (lock >= 0)
      close(lock);
    return Q_EIO;
  }
  json_t *root = NULL;
  char why[512];
  if (load(st->path, &root, why, sizeof why) != 0)
    root = NULL; /* damaged meanwhile: rewrite it with what we know */
  if (!root)
    root = json_pack("{s:i,s:{}}", "version", STATE_VERSION, "targets");
  json_t *targets = json_object_get(root, "targets");
  json_t *t = json_object_get(targets, st->target);
  if (!json_is_object(t)) {
    t = json_object();
    json_object_set_new(targets, st->target, t);
  }
  json_t *docs = json_object_get(t, "documents");
  if (!json_is_object(docs)) {
    docs = json_object();
    json_object_set_new(t, "documents", docs);
  }
  rc = json_object_update(docs, st->dirty) ? Q_ENOMEM : 0;

  FILE *fp = NULL;
  if (!rc) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!fp) {
      if (fd >= 0)
        close(fd);
      snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
      rc = Q_EIO;
    }
  }
  if (!rc) {
    int bad = json_dumpf(root, fp, JSON_INDENT(1) | JSON_SORT_KEYS) != 0;
    bad |= fputc('\n', fp) == EOF;
    bad |= fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    bad |= fclose(fp) != 0;
    if (bad || rename(tmp, st->path) != 0) {
      snprintf(err, errlen, "cannot write %s: %s", st->path, strerror(errno));
      unlink(tmp);
      rc = Q_EIO;
    }
  }
  json_decref(root);
  flock(lock, LOCK_UN);
  close(lock);
  if (!rc)
    json_object_clear(st->dirty);
  return rc;
}

void state_free(state_t *st) {
  if (!st)
    return;
  free(st->path);
  free(st->target);
  json_decref(st->docs);
  json_decref(st->dirty);
  free(st);
}
