/* walk.c - finding the files to ingest (see walk.h). */
#include "walk.h"

#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quarry/buf.h"
#include "quarry/limits.h"
#include "quarry/util.h"

static const char *base_name(const char *rel) {
  const char *slash = strrchr(rel, '/');
  return slash ? slash + 1 : rel;
}

static bool matches(const char *pattern, const char *rel) {
  if (strncmp(pattern, "./", 2) == 0)
    pattern += 2;
  if (strchr(pattern, '/'))
    return fnmatch(pattern, rel, 0) == 0;
  return fnmatch(pattern, base_name(rel), 0) == 0;
}

static bool any_match(const char *const *patterns, const char *rel) {
  for (size_t i = 0; patterns && patterns[i]; i++)
    if (matches(patterns[i], rel))
      return true;
  return false;
}

bool walk_filter_accepts(const walk_filter_t *f, const char *rel) {
  if (!f)
    return true;
  if (f->include && f->include[0] && !any_match(f->include, rel))
    return false;
  return !any_match(f->exclude, rel);
}

bool walk_filter_prunes(const walk_filter_t *f, const char *rel) {
  return f && any_match(f->exclude, rel);
}

char *walk_external_id(const char *prefix, const char *root, const char *rel) {
  q_buf_t b;
  q_buf_init(&b, 1 << 16);
  q_err_t rc = q_buf_puts(&b, prefix ? prefix : "");
  if (!rc && root && *root)
    rc = q_buf_puts(&b, root);
  if (!rc && rel && *rel)
    rc = q_buf_printf(&b, "%s%s", root && *root ? "/" : "", rel);
  if (rc || !b.data) {
    q_buf_cleanup(&b);
    return rc ? NULL : strdup("");
  }
  if (b.len > Q_LIMIT_EXTERNAL_ID_BYTES) {
    /* Keep the end (the file name says most), mark the cut, and make it
     * unique with a hash of the whole id. */
    char hex[65];
    q_sha256_hex(b.data, b.len, hex);
    size_t keep = Q_LIMIT_EXTERNAL_ID_BYTES - 1 - 16 - 4; /* "#" + hash + "...:" */
    const char *tail = b.data + b.len - keep;
    /* Do not start inside a UTF-8 sequence. */
    while (((unsigned char)*tail & 0xC0) == 0x80 && keep > 0) {
      tail++;
      keep--;
    }
    char *out = malloc(Q_LIMIT_EXTERNAL_ID_BYTES + 1);
    if (out)
      snprintf(out, Q_LIMIT_EXTERNAL_ID_BYTES + 1, "%.16s#...:%s", hex, tail);
    q_buf_cleanup(&b);
    return out;
  }
  return q_buf_steal(&b);
}

static walk_file_t *add(walk_list_t *l) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 64;
    walk_file_t *p = realloc(l->files, cap * sizeof *p);
    if (!p)
      return NULL;
    l->files = p;
    l->cap = cap;
  }
  walk_file_t *f = &l->files[l->n++];
  memset(f, 0, sizeof *f);
  return f;
}

static char *join(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = malloc(la + lb + 2);
  if (!s)
    return NULL;
  memcpy(s, a, la);
  size_t o = la;
  if (la && a[la - 1] != '/' && lb)
    s[o++] = '/';
  memcpy(s + o, b, lb + 1);
  return s;
}

/* Adds one file entry; error may be NULL. */
static q_err_t add_file(walk_list_t *l, const char *path, const char *shown,
                        const char *ext_id_root, const char *rel, const char *prefix,
                        const struct stat *st, const char *error) {
  walk_file_t *f = add(l);
  if (!f)
    return Q_ENOMEM;
  f->path = strdup(path);
  f->shown = strdup(shown);
  f->external_id = walk_external_id(prefix, ext_id_root, rel);
  f->filename = strdup(base_name(rel && *rel ? rel : path));
  if (st) {
    f->size = (long long)st->st_size;
    f->mtime_ns = (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
  }
  if (error)
    f->error = strdup(error);
  if (!f->path || !f->shown || !f->external_id || !f->filename || (error && !f->error))
    return Q_ENOMEM;
  return 0;
}

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walks dir (path on disk) whose position below the argument is rel ("" at
 * the top). */
static q_err_t walk_dir(const char *dir, const char *shown, const char *root,
                        const char *rel, const walk_filter_t *flt, const char *prefix,
                        walk_list_t *l, int depth) {
  if (depth > 64)
    return add_file(l, dir, shown, root, rel, prefix, NULL, "folders nested too deep");
  DIR *d = opendir(dir);
  if (!d) {
    char why[512];
    snprintf(why, sizeof why, "cannot read folder: %s", strerror(errno));
    return add_file(l, dir, shown, root, rel, prefix, NULL, why);
  }
  char **names = NULL;
  size_t n = 0, cap = 0;
  q_err_t rc = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') /* ., .. and hidden entries */
      continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 32;
      char **p = realloc(names, cap * sizeof *p);
      if (!p) {
        rc = Q_ENOMEM;
        break;
      }
      names = p;
    }
    if (!(names[n] = strdup(e->d_name))) {
      rc = Q_ENOMEM;
      break;
    }
    n++;
  }
  closedir(d);
  if (n)
    qsort(names, n, sizeof *names, by_name);
  for (size_t i = 0; i < n && !rc; i++) {
    char *path = join(dir, names[i]);
    char *sub_shown = join(shown, names[i]);
    char *sub_rel = join(rel, names[i]);
    struct stat lst, st;
    if (!path || !sub_shown || !sub_rel) {
      rc = Q_ENOMEM;
    } else if (lstat(path, &lst) != 0) {
      /* Vanished between readdir and now: nothing to ingest. */
    } else if (S_ISDIR(lst.st_mode)) {
      if (!walk_filter_prunes(flt, sub_rel))
        rc = walk_dir(path, sub_shown, root, sub_rel, flt, prefix, l, depth + 1);
    } else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      /* Regular files and symbolic links to them; links to folders are
       * not followed (they could loop). */
      if (walk_filter_accepts(flt, sub_rel))
        rc = add_file(l, path, sub_shown, root, sub_rel, prefix, &st, NULL);
    }
    free(path);
    free(sub_shown);
    free(sub_rel);
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

/* The name a folder argument stands for: "my-docs" for "my-docs/",
 * "./my-docs", or "." run inside my-docs. */
static void root_name(const char *arg, char *out, size_t outlen) {
  char resolved[PATH_MAX];
  const char *p = realpath(arg, resolved) ? resolved : arg;
  size_t len = strlen(p);
  while (len > 1 && p[len - 1] == '/')
    len--;
  size_t start = len;
  while (start > 0 && p[start - 1] != '/')
    start--;
  snprintf(out, outlen, "%.*s", (int)(len - start), p + start);
}

q_err_t walk_collect(const char *arg, const walk_filter_t *f, const char *id_prefix,
                     walk_list_t *list) {
  struct stat st;
  char root[NAME_MAX + 1];
  root_name(arg, root, sizeof root);
  if (stat(arg, &st) != 0) {
    char why[512];
    snprintf(why, sizeof why, "%s", strerror(errno));
    return add_file(list, arg, arg, NULL, root, id_prefix, NULL, why);
  }
  if (S_ISDIR(st.st_mode)) {
    /* Shown paths keep the argument as typed, minus trailing slashes. */
    char shown[PATH_MAX];
    snprintf(shown, sizeof shown, "%s", arg);
    size_t len = strlen(shown);
    while (len > 1 && shown[len - 1] == '/')
      shown[--len] = '\0';
    return walk_dir(arg, shown, root, "", f, id_prefix, list, 0);
  }
  if (!S_ISREG(st.st_mode))
    return add_file(list, arg, arg, NULL, root, id_prefix, NULL, "not a regular file");
  return add_file(list, arg, arg, NULL, root, id_prefix, &st, NULL);
}

static int by_id(const void *a, const void *b) {
  const walk_file_t *const *x = a, *const *y = b;
  int c = strcmp((*x)->external_id, (*y)->external_id);
  return c ? c : ((*x) < (*y) ? -1 : (*x) > (*y));
}

size_t walk_mark_duplicates(walk_list_t *l) {
  if (l->n < 2)
    return 0;
  walk_file_t **order = malloc(l->n * sizeof *order);
  if (!order)
    return 0;
  for (size_t i = 0; i < l->n; i++)
    order[i] = &l->files[i];
  qsort(order, l->n, sizeof *order, by_id);
  size_t marked = 0;
  for (size_t i = 1; i < l->n; i++) {
    walk_file_t *first = order[i - 1], *f = order[i];
    if (f->error || strcmp(first->external_id, f->external_id) != 0)
      continue;
    /* Find the earliest with this id (the one that keeps it). */
    size_t j = i - 1;
    while (j > 0 && strcmp(order[j - 1]->external_id, f->external_id) == 0)
      j--;
    if (strcmp(order[j]->path, f->path) == 0) {
      f->repeated = true;
      continue;
    }
    char why[1024];
    snprintf(why, sizeof why,
             "external id \"%.200s\" is also %.400s's: the two would overwrite each "
             "other (ingest them from differently named folders, or use --id-prefix)",
             f->external_id, order[j]->shown);
    f->error = strdup(why);
    marked++;
  }
  free(order);
  return marked;
}

void walk_list_free(walk_list_t *l) {
  for (size_t i = 0; i < l->n; i++) {
    walk_file_t *f = &l->files[i];
    free(f->path);
    free(f->shown);
    free(f->external_id);
    free(f->filename);
    free(f->error);
  }
  free(l->files);
  memset(l, 0, sizeof *l);
}
