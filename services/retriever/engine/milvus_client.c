/* milvus_client.c - Milvus REST v2 client (milvus_client.h, docs/milvus.md).
 *
 * Every call is one POST of a JSON body to {url}/v2/vectordb/<category>/
 * <action> through q_http_json, the common library's libcurl wrapper, inside
 * call(): that one function adds dbName and the Authorization header, reads
 * `code` from every reply (Milvus answers most failures with HTTP 200), and
 * retries what is worth retrying. The rest of the file builds bodies and
 * reads replies.
 *
 * Filters are Milvus boolean expressions. Values are put into them as string
 * literals by quote(), which escapes everything the expression grammar treats
 * specially, so an id holding `" || tenant_id != "` stays one string. */
#include "engine/milvus_client.h"

#include "quarry/buf.h"
#include "quarry/http_client.h"
#include "quarry/limits.h"
#include "quarry/log.h"
#include "quarry/trace.h"
#include "quarry/validate.h"

#include <errno.h>
#include <stdarg.h>
#include <jansson.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_COLLECTION "quarry_chunks"
#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_ATTEMPTS 4
#define DEFAULT_BACKOFF_MS 100
#define DEFAULT_MAX_BACKOFF_MS 2000
#define DEFAULT_MAX_REPLY (16u << 20)
#define MAX_TOKEN_BYTES 4096
#define MAX_URL_BYTES 1024
#define MAX_NAME_BYTES 255
#define MAX_FILTER_BYTES (1u << 20)
/* BM25 indexes `text`; the engine may prepend the title, so the field has
 * room for both. */
#define TEXT_MAX_BYTES (Q_LIMIT_CHUNK_BYTES + Q_LIMIT_TITLE_BYTES + 2)
/* Polls of get_load_state while a load is in progress, LOAD_POLL_MS apart. */
#define LOAD_POLLS 150
#define LOAD_POLL_MS 200
/* Searches and counts read at Strong consistency: a write Milvus has
 * acknowledged is seen by the next search (the engine's lag is 0), at the
 * cost of waiting for the server's timestamp to catch up. */
#define CONSISTENCY "Strong"

struct milvus_client {
  char *base; /* url without a trailing slash */
  char *auth; /* "Authorization: Bearer ..." or NULL */
  char *db;   /* NULL: default */
  char *collection;
  int dim, timeout_ms, max_attempts, backoff_ms, max_backoff_ms;
  int hnsw_m, hnsw_efc, search_ef;
  double k1, b;
  size_t max_reply;
};

/* ---- small helpers --------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static void sleep_ms(int ms) {
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static void wipe_free(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

/* Reads the first line of path (at most MAX_TOKEN_BYTES) into a new string
 * without the line break. */
static q_err_t read_token_file(const char *path, char **out, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    set_err(err, errlen, "milvus: cannot read token file %s: %s", path, strerror(errno));
    return Q_EINVAL;
  }
  char buf[MAX_TOKEN_BYTES + 2];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  buf[strcspn(buf, "\r\n")] = '\0';
  q_err_t rc = 0;
  if (strlen(buf) > MAX_TOKEN_BYTES || !buf[0]) {
    set_err(err, errlen, "milvus: token file %s is empty or longer than %d bytes", path,
            MAX_TOKEN_BYTES);
    rc = Q_EINVAL;
  } else if (!(*out = strdup(buf))) {
    rc = Q_ENOMEM;
  }
  explicit_bzero(buf, sizeof buf);
  return rc;
}

/* 1 when s is a Milvus object name: a letter or _, then letters, digits and
 * _ (what Milvus accepts for collection and database names). */
static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME_BYTES)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
    if (!alpha && !(i > 0 && ch >= '0' && ch <= '9'))
      return false;
  }
  return true;
}

/* ---- life cycle -------------------------------------------------------------- */

q_err_t milvus_client_new(const milvus_cfg_t *cfg, milvus_client_t **out, char *err,
                          size_t errlen) {
  *out = NULL;
  if (!cfg || !cfg->url ||
      (strncmp(cfg->url, "http://", 7) != 0 && strncmp(cfg->url, "https://", 8) != 0) ||
      strlen(cfg->url) > MAX_URL_BYTES || strpbrk(cfg->url, " \r\n")) {
    set_err(err, errlen, "milvus: url must be an http:// or https:// URL");
    return Q_EINVAL;
  }
  if (cfg->dim < 1 || cfg->dim > Q_LIMIT_EMBED_DIM_MAX) {
    set_err(err, errlen, "milvus: dim must be 1..%d", Q_LIMIT_EMBED_DIM_MAX);
    return Q_EINVAL;
  }
  const char *coll =
      cfg->collection && *cfg->collection ? cfg->collection : DEFAULT_COLLECTION;
  if (!valid_name(coll) || (cfg->db && *cfg->db && !valid_name(cfg->db))) {
    set_err(err, errlen,
            "milvus: collection and database names are [A-Za-z_][A-Za-z0-9_]*");
    return Q_EINVAL;
  }
  if (cfg->max_attempts < 0 || cfg->max_attempts > 20 || cfg->timeout_ms < 0 ||
      cfg->backoff_ms < 0 || cfg->max_backoff_ms < 0 || cfg->search_ef < 0 ||
      cfg->hnsw_m < 0 || cfg->hnsw_ef_construction < 0 || cfg->bm25_k1 < 0 ||
      cfg->bm25_b < 0 || cfg->bm25_b > 1) {
    set_err(err, errlen, "milvus: a numeric setting is out of range");
    return Q_EINVAL;
  }

  q_err_t rc = Q_ENOMEM;
  char *token = NULL;
  milvus_client_t *c = calloc(1, sizeof *c);
  if (!c)
    return Q_ENOMEM;
  size_t ul = strlen(cfg->url);
  while (ul > 0 && cfg->url[ul - 1] == '/')
    ul--;
  if (!(c->base = strndup(cfg->url, ul)) || !(c->collection = strdup(coll)))
    goto fail;
  if (cfg->db && *cfg->db && !(c->db = strdup(cfg->db)))
    goto fail;
  if (cfg->token && *cfg->token) {
    if (strlen(cfg->token) > MAX_TOKEN_BYTES || strpbrk(cfg->token, "\r\n")) {
      set_err(err, errlen, "milvus: token longer than %d bytes or has a line break",
              MAX_TOKEN_BYTES);
      rc = Q_EINVAL;
      goto fail;
    }
    if (!(token = strdup(cfg->token)))
      goto fail;
  } else if (cfg->token_file && *cfg->token_file) {
    if ((rc = read_token_file(cfg->token_file, &token, err, errlen)) != 0)
      goto fail;
  }
  if (token) {
    size_t n = strlen(token) + sizeof "Authorization: Bearer ";
    if (!(c->auth = malloc(n))) {
      rc = Q_ENOMEM;
      goto fail;
    }
    snprintf(c->auth, n, "Authorization: Bearer %s", token);
    wipe_free(token);
    token = NULL;
  }
  c->dim = cfg->dim;
  c->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : DEFAULT_TIMEOUT_MS;
  c->max_attempts = cfg->max_attempts ? cfg->max_attempts : DEFAULT_ATTEMPTS;
  c->backoff_ms = cfg->backoff_ms ? cfg->backoff_ms : DEFAULT_BACKOFF_MS;
  c->max_backoff_ms = cfg->max_backoff_ms ? cfg->max_backoff_ms : DEFAULT_MAX_BACKOFF_MS;
  if (c->max_backoff_ms < c->backoff_ms)
    c->max_backoff_ms = c->backoff_ms;
  c->hnsw_m = cfg->hnsw_m ? cfg->hnsw_m : 16;
  c->hnsw_efc = cfg->hnsw_ef_construction ? cfg->hnsw_ef_construction : 200;
  c->search_ef = cfg->search_ef ? cfg->search_ef : 64;
  c->k1 = cfg->bm25_k1 > 0 ? cfg->bm25_k1 : 1.2;
  c->b = cfg->bm25_b > 0 ? cfg->bm25_b : 0.75;
  c->max_reply = cfg->max_reply_bytes ? cfg->max_reply_bytes : DEFAULT_MAX_REPLY;
  *out = c;
  return 0;
fail:
  if (rc == Q_ENOMEM)
    set_err(err, errlen, "milvus: out of memory");
  wipe_free(token);
  milvus_client_free(c);
  return rc;
}

void milvus_client_free(milvus_client_t *c) {
  if (!c)
    return;
  free(c->base);
  wipe_free(c->auth);
  free(c->db);
  free(c->collection);
  free(c);
}

const char *milvus_collection(const milvus_client_t *c) {
  return c->collection;
}

/* ---- retries ------------------------------------------------------------------ */

bool milvus_code_retriable(long code) {
  /* The codes Milvus marks retriable in pkg/util/merr/errors.go: service not
   * ready (1), unavailable (2), request limit (4), rate limit (8), resource
   * insufficient (12), collection not fully loaded (103) or recovering
   * (106), partition not fully loaded (202), unexpected EOF (1002), and the
   * REST layer's own limiter (1807). */
  switch (code) {
  case 1:
  case 2:
  case 4:
  case 8:
  case 12:
  case 103:
  case 106:
  case 202:
  case 1002:
  case 1807: return true;
  default: return false;
  }
}

int milvus_backoff_ms(const milvus_client_t *c, int retry) {
  int64_t b = c->backoff_ms;
  for (int i = 1; i < retry && b < c->max_backoff_ms; i++)
    b *= 2;
  if (b > c->max_backoff_ms)
    b = c->max_backoff_ms;
  /* Half fixed, half random: retries of many clients spread out (jitter)
   * while each still waits at least half its backoff. */
  int64_t half = b / 2;
  return (int)(b - half +
               (half > 0 ? (int64_t)randombytes_uniform((uint32_t)half + 1) : 0));
}

/* The q_err_t for a non-retriable Milvus body code. */
static q_err_t code_error(long code) {
  switch (code) {
  case 100: return Q_ENOTFOUND; /* collection not found */
  case 1800:
  case 1400: return Q_EUNAUTH;
  case 1401: return Q_EPERM;
  case 4:
  case 8:
  case 9:
  case 1807: return Q_ERESOURCE;
  case 105:
  case 1100:
  case 1101:
  case 1102:
  case 1700:
  case 1701:
  case 1801:
  case 1802:
  case 1804:
  case 1806: return Q_EINVAL;
  default: return Q_EUNAVAIL;
  }
}

/* POSTs body (to which dbName is added) to /v2/vectordb/<path>. On success
 * *data is the reply's "data" (a new reference the caller json_decref()s; a
 * JSON null when absent). Retries connection failures, HTTP 5xx/429 and
 * retriable codes, at most max_attempts in all, never past the thread's
 * deadline. */
static q_err_t call_n(milvus_client_t *c, const char *path, json_t *body, int attempts,
                      json_t **data, char *err, size_t errlen) {
  *data = NULL;
  char url[MAX_URL_BYTES + 64];
  snprintf(url, sizeof url, "%s/v2/vectordb/%s", c->base, path);
  if (c->db && json_object_set_new(body, "dbName", json_string(c->db)))
    return Q_ENOMEM;
  const char *headers[] = {c->auth, NULL};
  q_err_t rc = Q_EUNAVAIL;
  for (int attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) {
      int wait = milvus_backoff_ms(c, attempt - 1);
      int64_t deadline = q_trace_deadline();
      if (deadline > 0 && q_now_ms() + wait >= deadline)
        break; /* keep the last attempt's error */
      q_log_warn("milvus: retrying", "{s:s,s:i,s:i,s:s}", "path", path, "attempt",
                 attempt, "wait_ms", wait, "error", err ? err : "");
      sleep_ms(wait);
    }
    long status = 0;
    json_t *reply = NULL;
    char herr[256] = "";
    q_http_req_t req = {.method = "POST",
                        .url = url,
                        .body = body,
                        .headers = headers,
                        .timeout_ms = c->timeout_ms,
                        .max_reply_bytes = c->max_reply};
    rc = q_http_json(&req, &status, &reply, herr, sizeof herr);
    if (rc) {
      set_err(err, errlen, "milvus %s: %s", path, herr);
      if (rc == Q_EUNAVAIL) /* connection refused, reset, reply cut short */
        continue;
      return rc; /* timed out (the time is spent), reply too large, bad request */
    }
    json_t *code = json_object_get(reply, "code");
    const char *msg = json_string_value(json_object_get(reply, "message"));
    if (!msg)
      msg = "no message";
    if (status >= 500 || status == 429) {
      set_err(err, errlen, "milvus %s: HTTP %ld: %.200s", path, status, msg);
      rc = status == 429 ? Q_ERESOURCE : Q_EUNAVAIL;
      json_decref(reply);
      continue;
    }
    if (status == 401 || status == 403) {
      set_err(err, errlen, "milvus %s: HTTP %ld (check the token): %.200s", path, status,
              msg);
      json_decref(reply);
      return status == 401 ? Q_EUNAUTH : Q_EPERM;
    }
    if (status < 200 || status > 299) {
      set_err(err, errlen, "milvus %s: HTTP %ld: %.200s", path, status, msg);
      json_decref(reply);
      return status == 400 ? Q_EINVAL : Q_EUNAVAIL;
    }
    if (!json_is_object(reply) || !json_is_integer(code)) {
      set_err(err, errlen, "milvus %s: malformed reply (HTTP %ld, %s)", path, status,
              reply ? "no integer code" : "not JSON");
      json_decref(reply);
      return Q_EUNAVAIL;
    }
    long cv = (long)json_integer_value(code);
    if (cv != 0) {
      set_err(err, errlen, "milvus %s: code %ld: %.200s", path, cv, msg);
      json_decref(reply);
      if (milvus_code_retriable(cv)) {
        rc = code_error(cv) == Q_ERESOURCE ? Q_ERESOURCE : Q_EUNAVAIL;
        continue;
      }
      return code_error(cv);
    }
    json_t *d = json_object_get(reply, "data");
    *data = d ? json_incref(d) : json_null();
    json_decref(reply);
    if (err && errlen)
      err[0] = '\0';
    return 0;
  }
  return rc;
}

static q_err_t call(milvus_client_t *c, const char *path, json_t *body, json_t **data,
                    char *err, size_t errlen) {
  return call_n(c, path, body, c->max_attempts, data, err, errlen);
}

/* A new body {"collectionName": ...}. */
static json_t *body_new(milvus_client_t *c) {
  return json_pack("{s:s}", "collectionName", c->collection);
}

/* ---- filters -------------------------------------------------------------------- */

/* A double-quoted Milvus string literal (milvus_quote_append). The grammar
 * reads a literal with Go's escapes (strconv.Unquote): ", \ and control
 * characters are escaped; other UTF-8 passes as it is. */
static q_err_t quote(q_buf_t *b, const char *s) {
  return milvus_quote_append(b, s);
}

q_err_t milvus_quote_append(q_buf_t *b, const char *s) {
  size_t n = strlen(s);
  if (!q_valid_utf8(s, n))
    return Q_EINVAL;
  q_err_t rc = q_buf_puts(b, "\"");
  for (size_t i = 0; !rc && i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      char e[2] = {'\\', (char)ch};
      rc = q_buf_append(b, e, 2);
    } else if (ch == '\n') {
      rc = q_buf_puts(b, "\\n");
    } else if (ch == '\r') {
      rc = q_buf_puts(b, "\\r");
    } else if (ch == '\t') {
      rc = q_buf_puts(b, "\\t");
    } else if (ch < 0x20 || ch == 0x7f) {
      rc = q_buf_printf(b, "\\x%02x", ch);
    } else {
      rc = q_buf_append(b, s + i, 1);
    }
  }
  return rc ? rc : q_buf_puts(b, "\"");
}

q_err_t milvus_quote(char *out, size_t outlen, const char *s) {
  if (!outlen)
    return Q_ETOOBIG;
  out[0] = '\0';
  q_buf_t b;
  q_buf_init(&b, outlen - 1);
  q_err_t rc = quote(&b, s ? s : "");
  if (!rc)
    memcpy(out, b.data, b.len + 1);
  q_buf_cleanup(&b);
  return rc;
}

/* Appends ` && field in [lit, ...]` (ARRAY_CONTAINS_ANY for an array field). */
static q_err_t filter_list(q_buf_t *b, const char *field, bool array,
                           const char *const *v, size_t n) {
  q_err_t rc = array ? q_buf_printf(b, " && ARRAY_CONTAINS_ANY(%s, [", field)
                     : q_buf_printf(b, " && %s in [", field);
  for (size_t i = 0; !rc && i < n; i++) {
    if (i)
      rc = q_buf_puts(b, ", ");
    if (!rc)
      rc = quote(b, v[i] ? v[i] : "");
  }
  return rc ? rc : q_buf_puts(b, array ? "])" : "]");
}

/* The filter of a search or delete of tenant: `tenant_id == "<tenant>"` first,
 * then the restrictions; a new string the caller frees. */
static q_err_t build_filter(const char *tenant, const milvus_filter_t *f,
                            const char *doc_id, int64_t keep_version,
                            const milvus_keep_t *keep, char **out, char *err,
                            size_t errlen) {
  *out = NULL;
  q_buf_t b;
  q_buf_init(&b, MAX_FILTER_BYTES);
  q_err_t rc = q_buf_puts(&b, "tenant_id == ");
  if (!rc)
    rc = quote(&b, tenant);
  if (!rc && doc_id) {
    rc = q_buf_puts(&b, " && doc_id == ");
    if (!rc)
      rc = quote(&b, doc_id);
    if (!rc && keep_version >= 0)
      rc = q_buf_printf(&b, " && version != %lld", (long long)keep_version);
  }
  if (!rc && keep && keep->n_chunk_ids) {
    rc = q_buf_puts(&b, " && chunk_id not in [");
    for (size_t i = 0; !rc && i < keep->n_chunk_ids; i++) {
      if (i)
        rc = q_buf_puts(&b, ", ");
      if (!rc)
        rc = quote(&b, keep->chunk_ids[i] ? keep->chunk_ids[i] : "");
    }
    if (!rc)
      rc = q_buf_puts(&b, "]");
  }
  if (!rc && keep && keep->first_chunks)
    rc = q_buf_puts(&b, " && ordinal == 0");
  if (!rc && f && f->n_doc_ids)
    rc = filter_list(&b, "doc_id", false, f->doc_ids, f->n_doc_ids);
  if (!rc && f && f->n_access_groups)
    rc = filter_list(&b, "access_groups", true, f->access_groups, f->n_access_groups);
  /* The caller's expression is one parenthesised conjunct after the
   * tenant's: whatever it says, it only narrows. */
  if (!rc && f && f->expr && *f->expr)
    rc = q_buf_printf(&b, " && (%s)", f->expr);
  if (rc) {
    set_err(err, errlen, "milvus: filter %s",
            rc == Q_EINVAL ? "value is not UTF-8" : "too long");
    q_buf_cleanup(&b);
    return rc == Q_ENOMEM ? rc : Q_EINVAL;
  }
  *out = q_buf_steal(&b);
  return *out ? 0 : Q_ENOMEM;
}

/* Checks a required id: 1..max bytes of UTF-8. */
static q_err_t check_id(const char *what, const char *s, size_t max, char *err,
                        size_t errlen) {
  return q_valid_field(what, s, 1, max, err, errlen);
}

static q_err_t check_filter(const milvus_filter_t *f, char *err, size_t errlen) {
  if (!f)
    return 0;
  if (f->n_doc_ids > MILVUS_FILTER_DOCS_MAX ||
      f->n_access_groups > MILVUS_ACCESS_GROUPS_MAX) {
    set_err(err, errlen, "filter: at most %d doc_ids and %d access groups",
            MILVUS_FILTER_DOCS_MAX, MILVUS_ACCESS_GROUPS_MAX);
    return Q_EINVAL;
  }
  for (size_t i = 0; i < f->n_doc_ids; i++)
    if (check_id("filter doc_id", f->doc_ids[i], Q_LIMIT_DOCUMENT_ID_BYTES, err, errlen))
      return Q_EINVAL;
  for (size_t i = 0; i < f->n_access_groups; i++)
    if (check_id("filter access group", f->access_groups[i], MILVUS_ACCESS_GROUP_BYTES,
                 err, errlen))
      return Q_EINVAL;
  return 0;
}

/* ---- the collection --------------------------------------------------------------- */

static json_t *varchar(const char *name, int max_length) {
  return json_pack("{s:s,s:s,s:{s:i}}", "fieldName", name, "dataType", "VarChar",
                   "elementTypeParams", "max_length", max_length);
}

static json_t *int64_field(const char *name) {
  return json_pack("{s:s,s:s}", "fieldName", name, "dataType", "Int64");
}

/* The body of collections/create: schema, BM25 function and both indexes. */
static json_t *create_body(milvus_client_t *c) {
  json_t *pk = varchar("chunk_id", Q_LIMIT_CHUNK_ID_BYTES);
  json_t *tenant = varchar("tenant_id", Q_LIMIT_TENANT_ID_BYTES);
  if (pk)
    json_object_set_new(pk, "isPrimary", json_true());
  if (tenant)
    json_object_set_new(tenant, "isPartitionKey", json_true());
  json_t *fields = json_pack(
      "[o,o?,o?,o?,{s:s,s:s,s:{s:i,s:b,s:{s:s}}},{s:s,s:s},o?,o?,o?,o?,o?,{s:s,s:s},"
      "{s:s,s:s,s:s,s:{s:i,s:i}},{s:s,s:s,s:{s:i}}]",
      pk, varchar("doc_id", Q_LIMIT_DOCUMENT_ID_BYTES), tenant,
      varchar("title", Q_LIMIT_TITLE_BYTES), "fieldName", "text", "dataType", "VarChar",
      "elementTypeParams", "max_length", TEXT_MAX_BYTES, "enable_analyzer", 1,
      "analyzer_params", "type", "english", "fieldName", "sparse", "dataType",
      "SparseFloatVector", int64_field("page"), int64_field("ordinal"),
      int64_field("version"), int64_field("created_ms"),
      varchar("content_type", MILVUS_CONTENT_TYPE_BYTES), "fieldName", "metadata",
      "dataType", "JSON", "fieldName", "access_groups", "dataType", "Array",
      "elementDataType", "VarChar", "elementTypeParams", "max_capacity",
      MILVUS_ACCESS_GROUPS_MAX, "max_length", MILVUS_ACCESS_GROUP_BYTES, "fieldName",
      "dense", "dataType", "FloatVector", "elementTypeParams", "dim", c->dim);
  if (!fields)
    return NULL;
  return json_pack(
      "{s:s,s:{s:b,s:b,s:o,s:[{s:s,s:s,s:[s],s:[s],s:{}}]},"
      "s:[{s:s,s:s,s:s,s:s,s:{s:i,s:i}},{s:s,s:s,s:s,s:s,s:{s:s,s:f,s:f}}]}",
      "collectionName", c->collection, "schema", "autoID", 0, "enableDynamicField", 0,
      "fields", fields, "functions", "name", "text_bm25", "type", "BM25",
      "inputFieldNames", "text", "outputFieldNames", "sparse", "params", "indexParams",
      "fieldName", "dense", "indexName", "dense_hnsw", "metricType", "COSINE",
      "indexType", "HNSW", "params", "M", c->hnsw_m, "efConstruction", c->hnsw_efc,
      "fieldName", "sparse", "indexName", "sparse_bm25", "metricType", "BM25",
      "indexType", "SPARSE_INVERTED_INDEX", "params", "inverted_index_algo",
      "DAAT_MAXSCORE", "bm25_k1", c->k1, "bm25_b", c->b);
}

/* The fields an existing collection must have, with their REST type names. */
static const struct {
  const char *name, *type;
} want_fields[] = {
    {"chunk_id", "VarChar"},     {"doc_id", "VarChar"},
    {"tenant_id", "VarChar"},    {"title", "VarChar"},
    {"text", "VarChar"},         {"sparse", "SparseFloatVector"},
    {"page", "Int64"},           {"ordinal", "Int64"},
    {"version", "Int64"},        {"created_ms", "Int64"},
    {"content_type", "VarChar"}, {"metadata", "JSON"},
    {"access_groups", "Array"},  {"dense", "FloatVector"},
};

/* The value of key in a describe field's params list [{key, value}]. */
static const char *field_param(const json_t *field, const char *key) {
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(field, "params"), i, p) {
    const char *k = json_string_value(json_object_get(p, "key"));
    if (k && strcmp(k, key) == 0)
      return json_string_value(json_object_get(p, "value"));
  }
  return NULL;
}

/* Checks a describe reply against the schema this client writes. */
static q_err_t check_schema(milvus_client_t *c, const json_t *data, char *err,
                            size_t errlen) {
  const json_t *fields = json_object_get(data, "fields");
  if (!json_is_array(fields)) {
    set_err(err, errlen, "milvus collections/describe: malformed reply (no fields)");
    return Q_EUNAVAIL;
  }
  for (size_t w = 0; w < sizeof want_fields / sizeof want_fields[0]; w++) {
    const json_t *found = NULL, *f;
    size_t i;
    json_array_foreach(fields, i, f) {
      const char *name = json_string_value(json_object_get(f, "name"));
      if (name && strcmp(name, want_fields[w].name) == 0)
        found = f;
    }
    const char *type = json_string_value(json_object_get(found, "type"));
    if (!found || !type || strcmp(type, want_fields[w].type) != 0) {
      set_err(err, errlen,
              "milvus: collection %s exists without field %s of type %s; it was not "
              "created by Quarry (use another QUARRY_MILVUS_COLLECTION)",
              c->collection, want_fields[w].name, want_fields[w].type);
      return Q_ECONFLICT;
    }
    const char *name = want_fields[w].name;
    if ((strcmp(name, "chunk_id") == 0 &&
         !json_is_true(json_object_get(found, "primaryKey"))) ||
        (strcmp(name, "tenant_id") == 0 &&
         !json_is_true(json_object_get(found, "partitionKey")))) {
      set_err(err, errlen, "milvus: collection %s: %s is not the %s", c->collection, name,
              name[0] == 'c' ? "primary key" : "partition key");
      return Q_ECONFLICT;
    }
    if (strcmp(name, "dense") == 0) {
      const char *dim = field_param(found, "dim");
      if (!dim || atoi(dim) != c->dim) {
        set_err(err, errlen, "milvus: collection %s has dim %s, the embedder makes %d",
                c->collection, dim ? dim : "?", c->dim);
        return Q_ECONFLICT;
      }
    }
  }
  return 0;
}

/* get_load_state's loadState, in state (size n). */
static q_err_t load_state(milvus_client_t *c, int attempts, char *state, size_t n,
                          char *err, size_t errlen) {
  json_t *data = NULL, *body = body_new(c);
  if (!body)
    return Q_ENOMEM;
  q_err_t rc =
      call_n(c, "collections/get_load_state", body, attempts, &data, err, errlen);
  json_decref(body);
  if (rc)
    return rc;
  const char *s = json_string_value(json_object_get(data, "loadState"));
  if (!s) {
    set_err(err, errlen, "milvus collections/get_load_state: malformed reply");
    rc = Q_EUNAVAIL;
  } else {
    snprintf(state, n, "%s", s);
  }
  json_decref(data);
  return rc;
}

bool milvus_ready(milvus_client_t *c) {
  char state[64], err[256];
  return load_state(c, 1, state, sizeof state, err, sizeof err) == 0 &&
         strcmp(state, "LoadStateLoaded") == 0;
}

/* has -> create when missing -> describe and check -> load unless loaded. */
q_err_t milvus_ensure_collection(milvus_client_t *c, char *err, size_t errlen) {
  json_t *data = NULL, *body = body_new(c);
  q_err_t rc = body ? call(c, "collections/has", body, &data, err, errlen) : Q_ENOMEM;
  json_decref(body);
  if (rc)
    return rc;
  json_t *has = json_object_get(data, "has");
  if (!json_is_boolean(has)) {
    json_decref(data);
    set_err(err, errlen, "milvus collections/has: malformed reply");
    return Q_EUNAVAIL;
  }
  bool exists = json_is_true(has);
  json_decref(data);
  data = NULL;

  if (!exists) {
    if (!(body = create_body(c)))
      return Q_ENOMEM;
    rc = call(c, "collections/create", body, &data, err, errlen);
    json_decref(body);
    json_decref(data);
    data = NULL;
    if (rc)
      return rc;
    q_log_info("milvus: collection created", "{s:s,s:i}", "collection", c->collection,
               "dim", c->dim);
  }

  if (!(body = body_new(c)))
    return Q_ENOMEM;
  rc = call(c, "collections/describe", body, &data, err, errlen);
  json_decref(body);
  if (!rc)
    rc = check_schema(c, data, err, errlen);
  json_decref(data);
  if (rc)
    return rc;

  char state[64] = "";
  if ((rc = load_state(c, c->max_attempts, state, sizeof state, err, errlen)) != 0)
    return rc;
  if (strcmp(state, "LoadStateLoaded") == 0)
    return 0;
  if (strcmp(state, "LoadStateLoading") != 0) {
    data = NULL;
    if (!(body = body_new(c)))
      return Q_ENOMEM;
    rc = call(c, "collections/load", body, &data, err, errlen);
    json_decref(body);
    json_decref(data);
    if (rc)
      return rc;
  }
  for (int i = 0; i < LOAD_POLLS; i++) {
    if ((rc = load_state(c, c->max_attempts, state, sizeof state, err, errlen)) != 0)
      return rc;
    if (strcmp(state, "LoadStateLoaded") == 0)
      return 0;
    int64_t deadline = q_trace_deadline();
    if (deadline > 0 && q_now_ms() + LOAD_POLL_MS >= deadline)
      break;
    sleep_ms(LOAD_POLL_MS);
  }
  set_err(err, errlen, "milvus: collection %s not loaded (state %s)", c->collection,
          state);
  return Q_EUNAVAIL;
}

/* ---- writes ------------------------------------------------------------------------ */

static q_err_t check_chunk(const milvus_client_t *c, const milvus_chunk_t *ch, size_t i,
                           char *err, size_t errlen) {
  char e[200];
  q_err_t rc;
  if ((rc = check_id("chunk_id", ch->chunk_id, Q_LIMIT_CHUNK_ID_BYTES, e, sizeof e)) ||
      (rc = check_id("doc_id", ch->doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, e, sizeof e)) ||
      (rc = check_id("tenant_id", ch->tenant_id, Q_LIMIT_TENANT_ID_BYTES, e, sizeof e)) ||
      (rc = q_valid_field("title", ch->title, 0, Q_LIMIT_TITLE_BYTES, e, sizeof e)) ||
      (rc = q_valid_field("text", ch->text, 0, TEXT_MAX_BYTES, e, sizeof e)) ||
      (rc = q_valid_field("content_type", ch->content_type, 0, MILVUS_CONTENT_TYPE_BYTES,
                          e, sizeof e)) ||
      (rc = q_valid_field("metadata", ch->metadata_json, 0, MILVUS_METADATA_BYTES, e,
                          sizeof e))) {
    set_err(err, errlen, "chunk %zu: %s", i, e);
    return Q_EINVAL;
  }
  if (ch->n_access_groups > MILVUS_ACCESS_GROUPS_MAX) {
    set_err(err, errlen, "chunk %zu: more than %d access groups", i,
            MILVUS_ACCESS_GROUPS_MAX);
    return Q_EINVAL;
  }
  for (size_t g = 0; g < ch->n_access_groups; g++)
    if (check_id("access group", ch->access_groups[g], MILVUS_ACCESS_GROUP_BYTES, e,
                 sizeof e)) {
      set_err(err, errlen, "chunk %zu: %s", i, e);
      return Q_EINVAL;
    }
  if (!ch->dense) {
    set_err(err, errlen, "chunk %zu: no dense vector", i);
    return Q_EINVAL;
  }
  for (int d = 0; d < c->dim; d++)
    if (!isfinite(ch->dense[d])) {
      set_err(err, errlen, "chunk %zu: dense[%d] is not finite", i, d);
      return Q_EINVAL;
    }
  return 0;
}

static json_t *vector_json(const float *v, int dim) {
  json_t *a = json_array();
  for (int d = 0; a && d < dim; d++)
    if (json_array_append_new(a, json_real(v[d]))) {
      json_decref(a);
      return NULL;
    }
  return a;
}

static json_t *string_array(const char *const *v, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++)
    if (json_array_append_new(a, json_string(v[i]))) {
      json_decref(a);
      return NULL;
    }
  return a;
}

static json_t *chunk_row(const milvus_client_t *c, const milvus_chunk_t *ch,
                         bool *bad_meta, char *err, size_t errlen, size_t i) {
  json_t *meta = json_object();
  if (ch->metadata_json && *ch->metadata_json) {
    json_decref(meta);
    meta = json_loads(ch->metadata_json, 0, NULL);
    if (!json_is_object(meta)) {
      json_decref(meta);
      *bad_meta = true;
      set_err(err, errlen, "chunk %zu: metadata is not a JSON object", i);
      return NULL;
    }
  }
  return json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:o,s:o,s:o}", "chunk_id",
                   ch->chunk_id, "doc_id", ch->doc_id, "tenant_id", ch->tenant_id,
                   "title", ch->title ? ch->title : "", "text", ch->text ? ch->text : "",
                   "page", (json_int_t)ch->page, "ordinal", (json_int_t)ch->ordinal,
                   "version", (json_int_t)ch->version, "created_ms",
                   (json_int_t)ch->created_ms, "content_type",
                   ch->content_type ? ch->content_type : "", "metadata", meta,
                   "access_groups", string_array(ch->access_groups, ch->n_access_groups),
                   "dense", vector_json(ch->dense, c->dim));
}

q_err_t milvus_upsert(milvus_client_t *c, const milvus_chunk_t *chunks, size_t n,
                      char *err, size_t errlen) {
  if (n == 0)
    return 0;
  if (n > Q_LIMIT_UPSERT_CHUNKS) {
    set_err(err, errlen, "upsert: %zu chunks, at most %d per call", n,
            Q_LIMIT_UPSERT_CHUNKS);
    return Q_EINVAL;
  }
  for (size_t i = 0; i < n; i++)
    if (check_chunk(c, &chunks[i], i, err, errlen))
      return Q_EINVAL;
  json_t *rows = json_array();
  if (!rows)
    return Q_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    bool bad_meta = false;
    json_t *row = chunk_row(c, &chunks[i], &bad_meta, err, errlen, i);
    if (!row || json_array_append_new(rows, row)) {
      json_decref(rows);
      return bad_meta ? Q_EINVAL : Q_ENOMEM;
    }
  }
  json_t *data = NULL, *body = body_new(c);
  if (!body || json_object_set_new(body, "data", rows)) {
    json_decref(body);
    return Q_ENOMEM;
  }
  q_err_t rc = call(c, "entities/upsert", body, &data, err, errlen);
  json_decref(body);
  if (!rc) {
    json_t *cnt = json_object_get(data, "upsertCount");
    if (json_is_integer(cnt) && (size_t)json_integer_value(cnt) != n) {
      set_err(err, errlen, "milvus entities/upsert: %lld of %zu rows stored",
              (long long)json_integer_value(cnt), n);
      rc = Q_EUNAVAIL;
    }
  }
  json_decref(data);
  return rc;
}

static q_err_t delete_filtered(milvus_client_t *c, const char *tenant, const char *doc_id,
                               int64_t keep_version, const milvus_keep_t *keep, char *err,
                               size_t errlen) {
  if (check_id("tenant_id", tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen) ||
      check_id("doc_id", doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, err, errlen))
    return Q_EINVAL;
  char *filter = NULL;
  q_err_t rc =
      build_filter(tenant, NULL, doc_id, keep_version, keep, &filter, err, errlen);
  if (rc)
    return rc;
  json_t *data = NULL, *body = body_new(c);
  if (!body || json_object_set_new(body, "filter", json_string(filter))) {
    free(filter);
    json_decref(body);
    return Q_ENOMEM;
  }
  free(filter);
  rc = call(c, "entities/delete", body, &data, err, errlen);
  json_decref(body);
  json_decref(data);
  return rc;
}

q_err_t milvus_delete_doc(milvus_client_t *c, const char *tenant, const char *doc_id,
                          int64_t keep_version, char *err, size_t errlen) {
  return delete_filtered(c, tenant, doc_id, keep_version, NULL, err, errlen);
}

q_err_t milvus_delete_where(milvus_client_t *c, const char *tenant, const char *doc_id,
                            const milvus_keep_t *keep, char *err, size_t errlen) {
  return delete_filtered(c, tenant, doc_id, -1, keep, err, errlen);
}

/* ---- searches -------------------------------------------------------------------- */

static q_err_t check_query(const milvus_client_t *c, const milvus_query_t *q, bool text,
                           bool dense, char *err, size_t errlen) {
  if (!q || check_id("tenant", q->tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen))
    return Q_EINVAL;
  if (q->top_k < 1 || q->top_k > MILVUS_TOP_K_MAX) {
    set_err(err, errlen, "top_k: must be 1..%d", MILVUS_TOP_K_MAX);
    return Q_EINVAL;
  }
  if (text && (q_valid_field("text", q->text, 1, Q_LIMIT_EMBED_TEXT_BYTES, err, errlen) ||
               q_is_blank(q->text, strlen(q->text)))) {
    if (q->text && q_is_blank(q->text, strlen(q->text)))
      set_err(err, errlen, "text: blank");
    return Q_EINVAL;
  }
  if (dense) {
    if (!q->dense) {
      set_err(err, errlen, "dense: required");
      return Q_EINVAL;
    }
    for (int d = 0; d < c->dim; d++)
      if (!isfinite(q->dense[d])) {
        set_err(err, errlen, "dense[%d]: not finite", d);
        return Q_EINVAL;
      }
  }
  return check_filter(q->filter, err, errlen);
}

/* The search part common to search and each hybrid sub-search. */
static json_t *anns(const milvus_client_t *c, const milvus_query_t *q, bool dense,
                    const char *filter) {
  json_t *data =
      dense ? json_pack("[o]", vector_json(q->dense, c->dim)) : json_pack("[s]", q->text);
  return json_pack("{s:o,s:s,s:s,s:i}", "data", data, "annsField",
                   dense ? "dense" : "sparse", "filter", filter, "limit", q->top_k);
}

static int search_ef(const milvus_client_t *c, int top_k) {
  return c->search_ef > top_k ? c->search_ef : top_k;
}

/* The fields every search returns: ids for the tenant check, and what a
 * candidate carries (engine.h). */
static json_t *output_fields(void) {
  return json_pack("[s,s,s,s,s,s,s,s]", "chunk_id", "doc_id", "tenant_id", "title",
                   "text", "version", "ordinal", "page");
}

/* Reads the rows of a search reply into hits of q->tenant, best first. */
static q_err_t read_hits(const char *path, const json_t *data, const milvus_query_t *q,
                         q_arena_t *arena, milvus_hit_t **hits, size_t *n, char *err,
                         size_t errlen) {
  *hits = NULL;
  *n = 0;
  if (!json_is_array(data)) {
    set_err(err, errlen, "milvus %s: malformed reply (data is not a list)", path);
    return Q_EUNAVAIL;
  }
  size_t rows = json_array_size(data), keep = 0, foreign = 0;
  if (rows > (size_t)q->top_k)
    rows = (size_t)q->top_k; /* a server sending more than asked is cut */
  milvus_hit_t *h = rows ? q_arena_alloc(arena, rows * sizeof *h) : NULL;
  if (rows && !h)
    return Q_ENOMEM;
  for (size_t i = 0; i < rows; i++) {
    const json_t *row = json_array_get(data, i);
    const char *cid = json_string_value(json_object_get(row, "chunk_id"));
    const char *did = json_string_value(json_object_get(row, "doc_id"));
    const char *tid = json_string_value(json_object_get(row, "tenant_id"));
    const json_t *dist = json_object_get(row, "distance");
    if (!cid || !did || !tid || !json_is_number(dist)) {
      set_err(err, errlen, "milvus %s: malformed reply (row %zu lacks fields)", path, i);
      return Q_EUNAVAIL;
    }
    if (strcmp(tid, q->tenant) != 0) {
      foreign++; /* the filter was not applied: never hand this out */
      continue;
    }
    h[keep].chunk_id = q_arena_strndup(arena, cid, Q_LIMIT_CHUNK_ID_BYTES);
    h[keep].doc_id = q_arena_strndup(arena, did, Q_LIMIT_DOCUMENT_ID_BYTES);
    h[keep].score = json_number_value(dist);
    /* What the engine returns with each candidate; absent fields stay empty
     * (a caller that asked only for ids). */
    const char *title = json_string_value(json_object_get(row, "title"));
    const char *text = json_string_value(json_object_get(row, "text"));
    h[keep].title = title ? q_arena_strndup(arena, title, Q_LIMIT_TITLE_BYTES) : NULL;
    h[keep].text = text ? q_arena_strndup(arena, text, TEXT_MAX_BYTES) : NULL;
    h[keep].version = json_integer_value(json_object_get(row, "version"));
    h[keep].ordinal = json_integer_value(json_object_get(row, "ordinal"));
    h[keep].page = json_integer_value(json_object_get(row, "page"));
    if ((title && !h[keep].title) || (text && !h[keep].text))
      return Q_ENOMEM;
    if (!h[keep].chunk_id || !h[keep].doc_id)
      return Q_ENOMEM;
    keep++;
  }
  if (foreign)
    q_log_error("milvus: reply held chunks of another tenant; dropped", "{s:s,s:i}",
                "path", path, "dropped", (int)foreign);
  *hits = h;
  *n = keep;
  return 0;
}

static q_err_t do_search(milvus_client_t *c, const milvus_query_t *q, bool dense,
                         q_arena_t *arena, milvus_hit_t **hits, size_t *n, char *err,
                         size_t errlen) {
  *hits = NULL;
  *n = 0;
  if (check_query(c, q, !dense, dense, err, errlen))
    return Q_EINVAL;
  char *filter = NULL;
  q_err_t rc = build_filter(q->tenant, q->filter, NULL, -1, NULL, &filter, err, errlen);
  if (rc)
    return rc;
  json_t *body = anns(c, q, dense, filter);
  free(filter);
  if (!body)
    return Q_ENOMEM;
  json_t *sp = dense ? json_pack("{s:s,s:{s:i}}", "metricType", "COSINE", "params", "ef",
                                 search_ef(c, q->top_k))
                     : json_pack("{s:s,s:{s:f}}", "metricType", "BM25", "params",
                                 "drop_ratio_search", 0.0);
  if (json_object_set_new(body, "collectionName", json_string(c->collection)) ||
      json_object_set_new(body, "searchParams", sp) ||
      json_object_set_new(body, "consistencyLevel", json_string(CONSISTENCY)) ||
      json_object_set_new(body, "outputFields", output_fields())) {
    json_decref(body);
    return Q_ENOMEM;
  }
  json_t *data = NULL;
  rc = call(c, "entities/search", body, &data, err, errlen);
  json_decref(body);
  if (!rc)
    rc = read_hits("entities/search", data, q, arena, hits, n, err, errlen);
  json_decref(data);
  return rc;
}

q_err_t milvus_search_dense(milvus_client_t *c, const milvus_query_t *q, q_arena_t *arena,
                            milvus_hit_t **hits, size_t *n, char *err, size_t errlen) {
  return do_search(c, q, true, arena, hits, n, err, errlen);
}

q_err_t milvus_search_text(milvus_client_t *c, const milvus_query_t *q, q_arena_t *arena,
                           milvus_hit_t **hits, size_t *n, char *err, size_t errlen) {
  return do_search(c, q, false, arena, hits, n, err, errlen);
}

q_err_t milvus_hybrid_search(milvus_client_t *c, const milvus_query_t *q,
                             const milvus_rank_t *rank, q_arena_t *arena,
                             milvus_hit_t **hits, size_t *n, char *err, size_t errlen) {
  *hits = NULL;
  *n = 0;
  if (check_query(c, q, true, true, err, errlen))
    return Q_EINVAL;
  json_t *rerank;
  if (!rank) {
    set_err(err, errlen, "rank: required");
    return Q_EINVAL;
  } else if (rank->kind == MILVUS_RANK_RRF) {
    if (rank->rrf_k < 1 || rank->rrf_k > 16384) {
      set_err(err, errlen, "rank: RRF k must be 1..16384");
      return Q_EINVAL;
    }
    rerank = json_pack("{s:s,s:{s:i}}", "strategy", "rrf", "params", "k", rank->rrf_k);
  } else if (rank->kind == MILVUS_RANK_WEIGHTED) {
    if (!(rank->dense_w >= 0 && rank->dense_w <= 1 && rank->lexical_w >= 0 &&
          rank->lexical_w <= 1)) {
      set_err(err, errlen, "rank: weights must be in [0, 1]");
      return Q_EINVAL;
    }
    /* Weights in the order of the sub-searches: dense, then lexical.
     * norm_score maps both metrics into [0, 1] before weighting. */
    rerank = json_pack("{s:s,s:{s:[f,f],s:b}}", "strategy", "weighted", "params",
                       "weights", rank->dense_w, rank->lexical_w, "norm_score", 1);
  } else {
    set_err(err, errlen, "rank: unknown kind");
    return Q_EINVAL;
  }
  char *filter = NULL;
  q_err_t rc = build_filter(q->tenant, q->filter, NULL, -1, NULL, &filter, err, errlen);
  if (rc) {
    json_decref(rerank);
    return rc;
  }
  json_t *sd = anns(c, q, true, filter), *st = anns(c, q, false, filter);
  free(filter);
  if (sd) {
    json_object_set_new(sd, "metricType", json_string("COSINE"));
    json_object_set_new(sd, "params",
                        json_pack("{s:{s:i}}", "params", "ef", search_ef(c, q->top_k)));
  }
  if (st)
    json_object_set_new(st, "metricType", json_string("BM25"));
  json_t *body =
      json_pack("{s:s,s:[o?,o?],s:o?,s:i,s:o,s:s}", "collectionName", c->collection,
                "search", sd, st, "rerank", rerank, "limit", q->top_k, "outputFields",
                output_fields(), "consistencyLevel", CONSISTENCY);
  if (!body || !sd || !st || !rerank) {
    json_decref(body);
    return Q_ENOMEM;
  }
  json_t *data = NULL;
  rc = call(c, "entities/hybrid_search", body, &data, err, errlen);
  json_decref(body);
  if (!rc)
    rc = read_hits("entities/hybrid_search", data, q, arena, hits, n, err, errlen);
  json_decref(data);
  return rc;
}

int64_t milvus_count_where(milvus_client_t *c, const char *tenant, const char *doc_id,
                           const milvus_keep_t *keep, char *err, size_t errlen) {
  char *filter = NULL;
  q_err_t rc = 0;
  if (tenant && *tenant) {
    if (check_id("tenant", tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen) ||
        (doc_id && check_id("doc_id", doc_id, Q_LIMIT_DOCUMENT_ID_BYTES, err, errlen)))
      return Q_EINVAL;
    rc = build_filter(tenant, NULL, doc_id, -1, keep, &filter, err, errlen);
  } else {
    /* Every tenant: only a count leaves Milvus, never a row. */
    filter = strdup(keep && keep->first_chunks ? "ordinal == 0" : "");
    rc = filter ? 0 : Q_ENOMEM;
  }
  if (rc)
    return rc;
  json_t *body =
      json_pack("{s:s,s:s,s:[s],s:s}", "collectionName", c->collection, "filter", filter,
                "outputFields", "count(*)", "consistencyLevel", CONSISTENCY);
  free(filter);
  if (!body)
    return Q_ENOMEM;
  json_t *data = NULL;
  rc = call(c, "entities/query", body, &data, err, errlen);
  json_decref(body);
  int64_t count = rc;
  if (!rc) {
    json_t *v = json_object_get(json_array_get(data, 0), "count(*)");
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
      count = json_integer_value(v);
    } else {
      set_err(err, errlen, "milvus entities/query: malformed count reply");
      count = Q_EUNAVAIL;
    }
  }
  json_decref(data);
  return count;
}

q_err_t milvus_foreign_chunk(milvus_client_t *c, const char *tenant,
                             const char *const *ids, size_t n, q_arena_t *arena,
                             const char **foreign, char *err, size_t errlen) {
  *foreign = NULL;
  if (n == 0)
    return 0;
  if (check_id("tenant", tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen))
    return Q_EINVAL;
  /* A primary-key lookup: the ids first, then every other tenant. Only the
   * id of such a row comes back, never its content. */
  q_buf_t b;
  q_buf_init(&b, MAX_FILTER_BYTES);
  q_err_t rc = q_buf_puts(&b, "chunk_id in [");
  for (size_t i = 0; !rc && i < n; i++) {
    if (i)
      rc = q_buf_puts(&b, ", ");
    if (!rc)
      rc = quote(&b, ids[i] ? ids[i] : "");
  }
  if (!rc)
    rc = q_buf_puts(&b, "] && tenant_id != ");
  if (!rc)
    rc = quote(&b, tenant);
  char *filter = rc ? NULL : q_buf_steal(&b);
  q_buf_cleanup(&b);
  if (!filter) {
    set_err(err, errlen, "milvus: filter %s",
            rc == Q_EINVAL ? "value is not UTF-8" : "too long");
    return rc == Q_EINVAL || rc == Q_ETOOBIG ? Q_EINVAL : Q_ENOMEM;
  }
  json_t *body = json_pack("{s:s,s:s,s:[s],s:i,s:s}", "collectionName", c->collection,
                           "filter", filter, "outputFields", "chunk_id", "limit", 1,
                           "consistencyLevel", CONSISTENCY);
  free(filter);
  if (!body)
    return Q_ENOMEM;
  json_t *data = NULL;
  rc = call(c, "entities/query", body, &data, err, errlen);
  json_decref(body);
  if (!rc && !json_is_array(data)) {
    set_err(err, errlen, "milvus entities/query: malformed reply (data is not a list)");
    rc = Q_EUNAVAIL;
  }
  if (!rc && json_array_size(data) > 0) {
    const char *id =
        json_string_value(json_object_get(json_array_get(data, 0), "chunk_id"));
    *foreign = q_arena_strndup(arena, id ? id : "?", Q_LIMIT_CHUNK_ID_BYTES);
    if (!*foreign)
      rc = Q_ENOMEM;
  }
  json_decref(data);
  return rc;
}

int64_t milvus_count(milvus_client_t *c, const char *tenant, char *err, size_t errlen) {
  if (check_id("tenant", tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen))
    return Q_EINVAL;
  return milvus_count_where(c, tenant, NULL, NULL, err, errlen);
}

q_err_t milvus_doc_ids(milvus_client_t *c, const char *tenant, int limit,
                       q_arena_t *arena, const char ***ids, size_t *n, char *err,
                       size_t errlen) {
  *ids = NULL;
  *n = 0;
  if (check_id("tenant", tenant, Q_LIMIT_TENANT_ID_BYTES, err, errlen))
    return Q_EINVAL;
  if (limit < 1 || limit > MILVUS_TOP_K_MAX) {
    set_err(err, errlen, "limit: must be 1..%d", MILVUS_TOP_K_MAX);
    return Q_EINVAL;
  }
  char *filter = NULL;
  q_err_t rc = build_filter(tenant, NULL, NULL, -1, NULL, &filter, err, errlen);
  if (rc)
    return rc;
  json_t *body = json_pack("{s:s,s:s,s:[s,s],s:i,s:s}", "collectionName", c->collection,
                           "filter", filter, "outputFields", "doc_id", "tenant_id",
                           "limit", limit, "consistencyLevel", CONSISTENCY);
  free(filter);
  if (!body)
    return Q_ENOMEM;
  json_t *data = NULL;
  rc = call(c, "entities/query", body, &data, err, errlen);
  json_decref(body);
  if (!rc && !json_is_array(data)) {
    set_err(err, errlen, "milvus entities/query: malformed reply (data is not a list)");
    rc = Q_EUNAVAIL;
  }
  size_t rows = rc ? 0 : json_array_size(data);
  const char **out = rows ? q_arena_alloc(arena, rows * sizeof *out) : NULL;
  if (rows && !out)
    rc = Q_ENOMEM;
  for (size_t i = 0; !rc && i < rows; i++) {
    const json_t *row = json_array_get(data, i);
    const char *did = json_string_value(json_object_get(row, "doc_id"));
    const char *tid = json_string_value(json_object_get(row, "tenant_id"));
    if (!did || !tid) {
      set_err(err, errlen, "milvus entities/query: malformed reply (row %zu)", i);
      rc = Q_EUNAVAIL;
    } else if (strcmp(tid, tenant) == 0 &&
               !(out[*n] = q_arena_strndup(arena, did, Q_LIMIT_DOCUMENT_ID_BYTES))) {
      rc = Q_ENOMEM;
    } else if (strcmp(tid, tenant) == 0) {
      (*n)++;
    }
  }
  json_decref(data);
  if (!rc)
    *ids = out;
  else
    *n = 0;
  return rc;
}
