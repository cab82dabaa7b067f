/* config.c - flags > environment > config file (see config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "quarry/util.h"

void config_default_path(const char *explicit_path, char *out, size_t outlen) {
  const char *xdg = getenv("XDG_CONFIG_HOME");
  const char *home = getenv("HOME");
  if (explicit_path && *explicit_path)
    snprintf(out, outlen, "%s", explicit_path);
  else if (xdg && *xdg == '/')
    snprintf(out, outlen, "%s/quarry/config", xdg);
  else if (home && *home)
    snprintf(out, outlen, "%s/.config/quarry/config", home);
  else if (outlen)
    out[0] = '\0';
}

static char *trim(char *s) {
  while (*s && isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

/* Replaces *slot with a copy of v (the last of repeated names wins). */
static q_err_t set(char **slot, const char *v) {
  char *copy = strdup(v);
  if (!copy)
    return Q_ENOMEM;
  free(*slot);
  *slot = copy;
  return 0;
}

q_err_t config_file_read(const char *path, bool required, config_file_t *f, char *err,
                         size_t errlen, char *warn, size_t warnlen) {
  memset(f, 0, sizeof *f);
  snprintf(f->path, sizeof f->path, "%s", path ? path : "");
  f->layer.name = f->path;
  if (warnlen)
    warn[0] = '\0';
  if (!path || !*path)
    return 0;
  FILE *fp = fopen(path, "r");
  if (!fp) {
    if (errno == ENOENT && !required)
      return 0;
    snprintf(err, errlen, "config file %s: %s", path, strerror(errno));
    return Q_EINVAL;
  }
  f->found = true;
  char line[8192];
  int no = 0;
  q_err_t rc = 0;
  while (!rc && fgets(line, sizeof line, fp)) {
    no++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      snprintf(err, errlen, "%s:%d: line too long", path, no);
      rc = Q_EINVAL;
      break;
    }
    char *s = trim(line);
    if (!*s || *s == '#' || *s == ';')
      continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "%s:%d: expected `name = value`", path, no);
      rc = Q_EINVAL;
      break;
    }
    *eq = '\0';
    char *name = trim(s), *value = trim(eq + 1);
    size_t vl = strlen(value);
    if (vl >= 2 && (value[0] == '"' || value[0] == '\'') && value[vl - 1] == value[0]) {
      value[vl - 1] = '\0';
      value++;
    }
    if (strcmp(name, "server") == 0 || strcmp(name, "url") == 0)
      rc = set(&f->server, value);
    else if (strcmp(name, "key") == 0 || strcmp(name, "api_key") == 0)
      rc = set(&f->key, value);
    else if (strcmp(name, "key_file") == 0)
      rc = set(&f->key_file, value);
    else if (warnlen && !warn[0])
      snprintf(warn, warnlen, "%s:%d: unknown setting \"%.64s\" ignored", path, no, name);
    if (rc == Q_ENOMEM)
      snprintf(err, errlen, "out of memory");
  }
  fclose(fp);
  if (rc) {
    config_file_cleanup(f);
    return rc;
  }
  struct stat st;
  if (f->key && stat(path, &st) == 0 && (st.st_mode & 0044))
    f->world_readable = true;
  f->layer.server = f->server;
  f->layer.key = f->key;
  f->layer.key_file = f->key_file;
  return 0;
}

void config_file_cleanup(config_file_t *f) {
  free(f->server);
  free(f->key);
  free(f->key_file);
  f->server = f->key = f->key_file = NULL;
  f->layer.server = f->layer.key = f->layer.key_file = NULL;
}

static bool is_hex(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isxdigit((unsigned char)s[i]))
      return false;
  return true;
}

void config_key_id(const char *key, char out[32]) {
  /* qk_<16 hex>_<secret>: the id is public (stored in the clear server-side). */
  if (strncmp(key, "qk_", 3) == 0 && strlen(key) > 20 && key[19] == '_' &&
      is_hex(key + 3, 16)) {
    memcpy(out, key + 3, 16);
    out[16] = '\0';
    return;
  }
  char hex[65];
  q_sha256_hex(key, strlen(key), hex);
  snprintf(out, 32, "sha256:%.16s", hex);
}

/* Reads the first line of a key file into out. */
static q_err_t read_key_file(const char *path, char *out, size_t outlen, char *err,
                             size_t errlen) {
  FILE *fp = fopen(path, "r");
  if (!fp) {
    snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
    return Q_EINVAL;
  }
  char line[Q_LIMIT_CREDENTIAL_BYTES + 8];
  if (!fgets(line, sizeof line, fp))
    line[0] = '\0';
  fclose(fp);
  char *k = trim(line);
  if (!*k) {
    snprintf(err, errlen, "key file %s is empty", path);
    return Q_EINVAL;
  }
  if (strlen(k) >= outlen) {
    snprintf(err, errlen, "key file %s: the key is longer than %zu bytes", path,
             outlen - 1);
    return Q_EINVAL;
  }
  snprintf(out, outlen, "%s", k);
  return 0;
}

static q_err_t check_server(const char *url, const char *from, char *err, size_t errlen) {
  if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
    snprintf(err, errlen,
             "server URL from %s must start with http:// or https:// (got %.200s)", from,
             url);
    return Q_EINVAL;
  }
  if (strlen(url) >= CONFIG_URL_MAX) {
    snprintf(err, errlen, "server URL from %s is too long", from);
    return Q_EINVAL;
  }
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= ' ') {
      snprintf(err, errlen,
               "server URL from %s contains white space or control characters", from);
      return Q_EINVAL;
    }
  return 0;
}

q_err_t config_resolve(const config_layer_t *layers, size_t n, config_t *out, char *err,
                       size_t errlen) {
  memset(out, 0, sizeof *out);
  const char *server = NULL, *server_from = "the default";
  for (size_t i = 0; i < n && !server; i++)
    if (layers[i].server && *layers[i].server) {
      server = layers[i].server;
      server_from = layers[i].name;
    }
  if (!server)
    server = CONFIG_DEFAULT_SERVER;
  q_err_t rc = check_server(server, server_from, err, errlen);
  if (rc)
    return rc;
  snprintf(out->server, sizeof out->server, "%s", server);
  size_t sl = strlen(out->server);
  while (sl > 0 && out->server[sl - 1] == '/')
    out->server[--sl] = '\0';

  for (size_t i = 0; i < n; i++) {
    const config_layer_t *l = &layers[i];
    bool has_key = l->key && *l->key, has_file = l->key_file && *l->key_file;
    if (has_key && has_file) {
      snprintf(err, errlen, "%s gives both a key and a key file: use one", l->name);
      return Q_EINVAL;
    }
    if (has_key) {
      const char *k = l->key, *e = k + strlen(k);
      while (isspace((unsigned char)*k))
        k++;
      while (e > k && isspace((unsigned char)e[-1]))
        e--;
      if ((size_t)(e - k) > Q_LIMIT_CREDENTIAL_BYTES) {
        snprintf(err, errlen, "the key from %s is longer than %d bytes", l->name,
                 Q_LIMIT_CREDENTIAL_BYTES);
        return Q_EINVAL;
      }
      memcpy(out->key, k, (size_t)(e - k));
      out->key[e - k] = '\0';
      snprintf(out->key_from, sizeof out->key_from, "%s",
               l->key_label ? l->key_label : l->name);
      break;
    }
    if (has_file) {
      rc = read_key_file(l->key_file, out->key, sizeof out->key, err, errlen);
      if (rc)
        return rc;
      snprintf(out->key_from, sizeof out->key_from, "%.2000s (key file %.2000s)",
               l->key_file_label ? l->key_file_label : l->name, l->key_file);
      break;
    }
  }
  if (out->key[0])
    config_key_id(out->key, out->key_id);
  return 0;
}
