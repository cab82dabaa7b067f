/* providers.c - reading and validating the provider lists (providers.h). */
#include "quarry/providers.h"

#include "quarry/buf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (1u << 20)
#define MAX_KEY_BYTES 4096
#define MAX_PROVIDERS 16

static const struct {
  const char *name;
  q_provider_kind_t kind;
  q_capability_t cap;
  const char *path;
  int timeout_ms;
} KINDS[] = {
    {"openai-chat", Q_PROVIDER_OPENAI_CHAT, Q_CAP_CHAT, "/v1/chat/completions", 60000},
    {"openai-embed", Q_PROVIDER_OPENAI_EMBED, Q_CAP_EMBED, "/v1/embeddings", 10000},
    {"tei-embed", Q_PROVIDER_TEI_EMBED, Q_CAP_EMBED, "/embed", 10000},
    {"tei-rerank", Q_PROVIDER_TEI_RERANK, Q_CAP_RERANK, "/rerank", 5000},
    {"cohere-rerank", Q_PROVIDER_COHERE_RERANK, Q_CAP_RERANK, "/v1/rerank", 5000},
};
#define NKINDS (sizeof KINDS / sizeof KINDS[0])

static const char *const CAPS[] = {"chat", "embed", "rerank"};

const char *q_capability_name(q_capability_t c) {
  return (unsigned)c < 3 ? CAPS[c] : "?";
}

void q_providers_init(q_providers_t *p) {
  memset(p, 0, sizeof *p);
  p->retry = Q_RETRY_POLICY_DEFAULT;
  p->breaker_failures = 5;
  p->breaker_cooldown_ms = 30000;
}

static void wipe_free(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

static void entry_cleanup(q_provider_cfg_t *e) {
  free(e->name);
  free(e->base_url);
  free(e->url);
  free(e->model);
  wipe_free(e->api_key);
  free(e->key_source);
  memset(e, 0, sizeof *e);
}

void q_providers_cleanup(q_providers_t *p) {
  for (int c = 0; c < 3; c++) {
    for (size_t i = 0; i < p->n[c]; i++)
      entry_cleanup(&p->list[c][i]);
    free(p->list[c]);
    p->list[c] = NULL;
    p->n[c] = 0;
  }
}

/* An integer field in [lo, hi], or def when absent. */
static q_err_t get_int(const json_t *o, const char *key, int def, int lo, int hi,
                       int *out, const char *where, char *err, size_t errlen) {
  const json_t *v = json_object_get(o, key);
  if (!v) {
    *out = def;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
    snprintf(err, errlen, "%s.%s: must be an integer %d..%d", where, key, lo, hi);
    return Q_EINVAL;
  }
  *out = (int)json_integer_value(v);
  return 0;
}

static q_err_t get_cost(const json_t *o, const char *key, double *out, const char *where,
                        char *err, size_t errlen) {
  const json_t *v = json_object_get(o, key);
  *out = 0;
  if (!v)
    return 0;
  if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e6) {
    snprintf(err, errlen, "%s.%s: must be a number 0..1000000", where, key);
    return Q_EINVAL;
  }
  *out = json_number_value(v);
  return 0;
}

static q_err_t get_bool(const json_t *o, const char *key, bool def, bool *out,
                        const char *where, char *err, size_t errlen) {
  const json_t *v = json_object_get(o, key);
  if (!v) {
    *out = def;
    return 0;
  }
  if (!json_is_boolean(v)) {
    snprintf(err, errlen, "%s.%s: must be true or false", where, key);
    return Q_EINVAL;
  }
  *out = json_is_true(v);
  return 0;
}

/* A string field (NULL when absent and not required). */
static q_err_t get_str(const json_t *o, const char *key, bool required, size_t max,
                       const char **out, const char *where, char *err, size_t errlen) {
  const json_t *v = json_object_get(o, key);
  *out = NULL;
  if (!v && !required)
    return 0;
  if (!json_is_string(v) || json_string_length(v) > max ||
      strlen(json_string_value(v)) != json_string_length(v)) {
    snprintf(err, errlen, "%s.%s: %s", where, key,
             v ? "must be a string without NUL bytes of at most 1024 bytes" : "required");
    return Q_EINVAL;
  }
  *out = json_string_value(v);
  return 0;
}

static bool valid_base_url(const char *u) {
  size_t n = strlen(u);
  if (!((strncmp(u, "http://", 7) == 0 && n > 7) ||
        (strncmp(u, "https://", 8) == 0 && n > 8)))
    return false;
  if (strpbrk(u, " \t\r\n?#"))
    return false;
  return true;
}

/* Reads the API key from the environment or a file. */
static q_err_t load_key(q_provider_cfg_t *e, const char *key_env, const char *key_file,
                        const char *where, char *err, size_t errlen) {
  char src[1100];
  if (key_env && key_file) {
    snprintf(err, errlen, "%s: give key_env or key_file, not both", where);
    return Q_EINVAL;
  }
  if (key_env) {
    const char *v = getenv(key_env);
    if (!v || !v[0]) {
      snprintf(err, errlen, "%s.key_env: environment variable %s is not set", where,
               key_env);
      return Q_EINVAL;
    }
    if (strlen(v) > MAX_KEY_BYTES || strpbrk(v, "\r\n")) {
      snprintf(err, errlen, "%s.key_env: the key in %s is too long or has line breaks",
               where, key_env);
      return Q_EINVAL;
    }
    e->api_key = strdup(v);
    snprintf(src, sizeof src, "env:%s", key_env);
  } else if (key_file) {
    FILE *f = fopen(key_file, "rb");
    char buf[MAX_KEY_BYTES + 2];
    if (!f) {
      snprintf(err, errlen, "%s.key_file: cannot open %s: %s", where, key_file,
               strerror(errno));
      return Q_EINVAL;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
      buf[--n] = '\0';
    if (n == 0 || n > MAX_KEY_BYTES || strlen(buf) != n || strpbrk(buf, "\r\n")) {
      explicit_bzero(buf, sizeof buf);
      snprintf(err, errlen,
               "%s.key_file: %s must hold one key of 1..%d bytes on one line", where,
               key_file, MAX_KEY_BYTES);
      return Q_EINVAL;
    }
    e->api_key = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    snprintf(src, sizeof src, "file:%s", key_file);
  } else {
    snprintf(src, sizeof src, "none");
  }
  e->key_source = strdup(src);
  if ((key_env || key_file) && !e->api_key)
    return Q_ENOMEM;
  return e->key_source ? 0 : Q_ENOMEM;
}

static const char *const ENTRY_KEYS[] = {
    "kind",
    "name",
    "base_url",
    "model",
    "connect_timeout_ms",
    "timeout_ms",
    "stall_timeout_ms",
    "key_env",
    "key_file",
    "cost_per_1k_prompt",
    "cost_per_1k_completion",
    "dim",
    "send_dim",
    "max_tokens",
    "context_tokens",
    "stream_usage",
};

static q_err_t parse_entry(q_provider_cfg_t *e, q_capability_t cap, size_t idx,
                           const json_t *o, int default_dim, char *err, size_t errlen) {
  char where[64];
  const char *kind, *name, *base, *model, *key_env, *key_file, *k;
  json_t *v;
  size_t ki;
  q_err_t rc;

  snprintf(where, sizeof where, "%s[%zu]", CAPS[cap], idx);
  memset(e, 0, sizeof *e);
  if (!json_is_object(o)) {
    snprintf(err, errlen, "%s: must be an object", where);
    return Q_EINVAL;
  }
  json_object_foreach((json_t *)o, k, v) {
    bool known = false;
    for (size_t i = 0; i < sizeof ENTRY_KEYS / sizeof ENTRY_KEYS[0]; i++)
      known |= strcmp(k, ENTRY_KEYS[i]) == 0;
    if (!known) {
      snprintf(err, errlen, "%s: unknown field \"%.64s\"", where, k);
      return Q_EINVAL;
    }
  }
  if ((rc = get_str(o, "kind", true, 64, &kind, where, err, errlen)))
    return rc;
  for (ki = 0; ki < NKINDS && strcmp(KINDS[ki].name, kind) != 0; ki++)
    ;
  if (ki == NKINDS || KINDS[ki].cap != cap) {
    snprintf(err, errlen, "%s.kind: \"%.64s\" is not a %s provider (%s)", where, kind,
             CAPS[cap],
             cap == Q_CAP_CHAT    ? "openai-chat"
             : cap == Q_CAP_EMBED ? "openai-embed, tei-embed"
                                  : "tei-rerank, cohere-rerank");
    return Q_EINVAL;
  }
  e->kind = KINDS[ki].kind;
  e->kind_name = KINDS[ki].name;
  if ((rc = get_str(o, "name", false, 64, &name, where, err, errlen)) ||
      (rc = get_str(o, "base_url", true, 1024, &base, where, err, errlen)) ||
      (rc = get_str(o, "model", cap != Q_CAP_RERANK && e->kind != Q_PROVIDER_TEI_EMBED,
                    256, &model, where, err, errlen)) ||
      (rc = get_str(o, "key_env", false, 256, &key_env, where, err, errlen)) ||
      (rc = get_str(o, "key_file", false, 1024, &key_file, where, err, errlen)))
    return rc;
  if (!valid_base_url(base)) {
    snprintf(err, errlen,
             "%s.base_url: must be an http:// or https:// URL without query or spaces",
             where);
    return Q_EINVAL;
  }
  if ((rc = get_int(o, "connect_timeout_ms", 2000, 10, 60000, &e->connect_timeout_ms,
                    where, err, errlen)) ||
      (rc = get_int(o, "timeout_ms", KINDS[ki].timeout_ms, 100, 600000, &e->timeout_ms,
                    where, err, errlen)) ||
      (rc = get_int(o, "stall_timeout_ms", 15000, 50, 600000, &e->stall_timeout_ms, where,
                    err, errlen)) ||
      (rc = get_int(o, "dim", default_dim, 1, 1 << 16, &e->dim, where, err, errlen)) ||
      (rc = get_int(o, "max_tokens", 512, 0, 1 << 20, &e->max_tokens, where, err,
                    errlen)) ||
      (rc = get_int(o, "context_tokens", 3000, 16, 1 << 20, &e->context_tokens, where,
                    err, errlen)) ||
      (rc = get_bool(o, "send_dim", false, &e->send_dim, where, err, errlen)) ||
      (rc = get_bool(o, "stream_usage", true, &e->stream_usage, where, err, errlen)) ||
      (rc = get_cost(o, "cost_per_1k_prompt", &e->cost_prompt_per_1k, where, err,
                     errlen)) ||
      (rc = get_cost(o, "cost_per_1k_completion", &e->cost_completion_per_1k, where, err,
                     errlen)))
    return rc;
  char defname[64];
  snprintf(defname, sizeof defname, "%s-%zu", kind, idx);
  size_t blen = strlen(base);
  while (blen && base[blen - 1] == '/')
    blen--;
  size_t ulen = blen + strlen(KINDS[ki].path) + 1;
  e->name = strdup(name && name[0] ? name : defname);
  e->base_url = strndup(base, blen);
  e->url = malloc(ulen);
  e->model = strdup(model ? model : "");
  if (!e->name || !e->base_url || !e->url || !e->model)
    goto oom;
  snprintf(e->url, ulen, "%.*s%s", (int)blen, base, KINDS[ki].path);
  rc = load_key(e, key_env, key_file, where, err, errlen);
  if (rc == Q_ENOMEM)
    goto oom;
  if (rc)
    goto fail;
  return 0;
oom:
  snprintf(err, errlen, "%s: out of memory", where);
  rc = Q_ENOMEM;
fail:
  entry_cleanup(e);
  return rc;
}

static q_err_t parse_policy(q_providers_t *p, const json_t *root, char *err,
                            size_t errlen) {
  const json_t *r = json_object_get(root, "retry"), *b = json_object_get(root, "breaker");
  q_err_t rc;
  if (r && !json_is_object(r)) {
    snprintf(err, errlen, "retry: must be an object");
    return Q_EINVAL;
  }
  if (b && !json_is_object(b)) {
    snprintf(err, errlen, "breaker: must be an object");
    return Q_EINVAL;
  }
  q_retry_policy_t d = p->retry;
  if ((rc = get_int(r, "max_attempts", d.max_attempts, 1, 10, &p->retry.max_attempts,
                    "retry", err, errlen)) ||
      (rc = get_int(r, "base_ms", d.base_ms, 1, 60000, &p->retry.base_ms, "retry", err,
                    errlen)) ||
      (rc = get_int(r, "max_backoff_ms", d.max_backoff_ms, 1, 600000,
                    &p->retry.max_backoff_ms, "retry", err, errlen)) ||
      (rc = get_int(r, "max_retry_after_ms", d.max_retry_after_ms, 0, 600000,
                    &p->retry.max_retry_after_ms, "retry", err, errlen)) ||
      (rc = get_int(b, "failures", p->breaker_failures, 1, 1000, &p->breaker_failures,
                    "breaker", err, errlen)) ||
      (rc = get_int(b, "cooldown_ms", p->breaker_cooldown_ms, 10, 3600000,
                    &p->breaker_cooldown_ms, "breaker", err, errlen)))
    return rc;
  return 0;
}

q_err_t q_providers_parse(q_providers_t *p, const json_t *root, int default_dim,
                          char *err, size_t errlen) {
  q_providers_t next = *p;
  q_provider_cfg_t *lists[3] = {NULL, NULL, NULL};
  size_t n[3] = {0, 0, 0};
  const char *k;
  json_t *v;
  q_err_t rc = 0;

  if (!json_is_object(root)) {
    snprintf(err, errlen, "the configuration must be a JSON object");
    return Q_EINVAL;
  }
  json_object_foreach((json_t *)root, k, v) {
    if (strcmp(k, "chat") && strcmp(k, "embed") && strcmp(k, "rerank") &&
        strcmp(k, "retry") && strcmp(k, "breaker") && strcmp(k, "comment")) {
      snprintf(err, errlen,
               "unknown top-level field \"%.64s\" (chat, embed, rerank, retry, breaker)",
               k);
      return Q_EINVAL;
    }
  }
  if ((rc = parse_policy(&next, root, err, errlen)))
    return rc;
  for (int c = 0; c < 3; c++) {
    const json_t *arr = json_object_get(root, CAPS[c]);
    if (!arr)
      continue;
    if (!json_is_array(arr) || json_array_size(arr) > MAX_PROVIDERS) {
      snprintf(err, errlen, "%s: must be an array of at most %d providers", CAPS[c],
               MAX_PROVIDERS);
      rc = Q_EINVAL;
      goto fail;
    }
    size_t total = p->n[c] + json_array_size(arr);
    lists[c] = calloc(total ? total : 1, sizeof *lists[c]);
    if (!lists[c]) {
      rc = Q_ENOMEM;
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
      rc = parse_entry(&lists[c][n[c]], (q_capability_t)c, p->n[c] + i,
                       json_array_get(arr, i), default_dim, err, errlen);
      if (rc)
        goto fail;
      for (size_t j = 0; j < p->n[c] + n[c]; j++) {
        const char *other = j < p->n[c] ? p->list[c][j].name : lists[c][j - p->n[c]].name;
        if (strcmp(other, lists[c][n[c]].name) == 0) {
          snprintf(err, errlen, "%s[%zu].name: \"%s\" is used twice", CAPS[c],
                   p->n[c] + i, other);
          n[c]++;
          rc = Q_EINVAL;
          goto fail;
        }
      }
      n[c]++;
    }
  }
  /* Everything parsed: move the new entries behind the old ones. Every
   * array is allocated before p is touched, so p is unchanged on failure. */
  q_provider_cfg_t *merged[3] = {NULL, NULL, NULL};
  for (int c = 0; c < 3; c++) {
    if (lists[c] && !(merged[c] = calloc(p->n[c] + n[c] + 1, sizeof *merged[c]))) {
      for (int d = 0; d < c; d++)
        free(merged[d]);
      rc = Q_ENOMEM;
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  }
  for (int c = 0; c < 3; c++) {
    if (!lists[c])
      continue;
    if (p->n[c])
      memcpy(merged[c], p->list[c], p->n[c] * sizeof *merged[c]);
    if (n[c])
      memcpy(merged[c] + p->n[c], lists[c], n[c] * sizeof *merged[c]);
    free(lists[c]);
    lists[c] = NULL;
    free(p->list[c]);
    next.list[c] = merged[c];
    next.n[c] = p->n[c] + n[c];
  }
  *p = next;
  return 0;
fail:
  for (int c = 0; c < 3; c++) {
    for (size_t i = 0; i < n[c]; i++)
      entry_cleanup(&lists[c][i]);
    free(lists[c]);
  }
  return rc;
}

q_err_t q_providers_load(q_providers_t *p, const char *path, int default_dim, char *err,
                         size_t errlen) {
  json_error_t je;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    return Q_EINVAL;
  }
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  if (size < 0 || size > (long)MAX_FILE_BYTES) {
    fclose(f);
    snprintf(err, errlen, "%s: larger than %u bytes", path, MAX_FILE_BYTES);
    return Q_EINVAL;
  }
  json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
  fclose(f);
  if (!root) {
    snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    return Q_EINVAL;
  }
  char inner[512];
  q_err_t rc = q_providers_parse(p, root, default_dim, inner, sizeof inner);
  json_decref(root);
  if (rc)
    snprintf(err, errlen, "%s: %s", path, inner);
  return rc;
}
