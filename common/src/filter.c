/* filter.c - the retrieval filter language and user metadata checks (see
 * quarry/filter.h).
 *
 * A filter compiles into a small tree of nodes; each condition keeps its
 * operands converted once (dates to unix seconds), so evaluating it against
 * a document is a few comparisons and no allocation. Error messages name the
 * place in the filter ("filter.and[2].not") so a client can find it. */
#include "quarry/filter.h"

#include "quarry/limits.h"
#include "quarry/validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The public names of filter.h, short. */
enum {
  N_AND = Q_FILTER_AND,
  N_OR = Q_FILTER_OR,
  N_NOT = Q_FILTER_NOT,
  N_COND = Q_FILTER_COND
};
enum {
  F_DOC_ID = Q_FILTER_DOC_ID,
  F_TITLE = Q_FILTER_TITLE,
  F_CONTENT_TYPE = Q_FILTER_CONTENT_TYPE,
  F_AUTHOR = Q_FILTER_AUTHOR,
  F_LANGUAGE = Q_FILTER_LANGUAGE,
  F_CREATED_AT = Q_FILTER_CREATED_AT,
  F_META = Q_FILTER_META
};
#define V_STR Q_FILTER_STR
#define V_NUM Q_FILTER_NUM
#define V_BOOL Q_FILTER_BOOL

/* Operands are kept as filter.h shows them (q_filter_node_cond hands them
 * out as they are); s is the node's own copy. */
typedef q_filter_value_t val_t;

typedef struct q_filter_node node_t;
struct q_filter_node {
  int op;
  node_t **kids; /* and, or: nkids; not: one */
  size_t nkids;
  /* a condition */
  int field;
  char *key; /* meta.<key>: the key */
  bool has_eq;
  val_t eq;
  val_t *in;
  size_t nin;
  bool has_in;
  bool has_lo, lo_incl, has_hi, hi_incl;
  double lo, hi;
};

struct q_filter {
  node_t *root;
};

typedef struct pctx {
  char path[256];
  size_t clauses;
  char *err;
  size_t errlen;
} pctx_t;

static void node_free(node_t *n) {
  if (!n)
    return;
  for (size_t i = 0; i < n->nkids; i++)
    node_free(n->kids[i]);
  free(n->kids);
  free(n->key);
  free((char *)n->eq.s);
  for (size_t i = 0; i < n->nin; i++)
    free((char *)n->in[i].s);
  free(n->in);
  free(n);
}

void q_filter_free(q_filter_t *f) {
  if (!f)
    return;
  node_free(f->root);
  free(f);
}

static q_err_t fail(pctx_t *c, const char *what) {
  snprintf(c->err, c->errlen, "%s: %s", c->path, what);
  return Q_EINVAL;
}

/* ---- dates ----------------------------------------------------------------- */

static bool digits(const char *s, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}

bool q_rfc3339_parse(const char *s, int64_t *out) {
  int y, mo, d, h = 0, mi = 0, se = 0, off = 0;
  if (!s || strlen(s) < 10 || !digits(s, 4, &y) || s[4] != '-' ||
      !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d))
    return false;
  const char *p = s + 10;
  if (*p) {
    if ((*p != 'T' && *p != 't' && *p != ' ') || !digits(p + 1, 2, &h) || p[3] != ':' ||
        !digits(p + 4, 2, &mi) || p[6] != ':' || !digits(p + 7, 2, &se))
      return false;
    p += 9;
    if (*p == '.') {
      p++;
      if (*p < '0' || *p > '9')
        return false;
      while (*p >= '0' && *p <= '9')
        p++;
    }
    if (*p == 'Z' || *p == 'z') {
      p++;
    } else if (*p == '+' || *p == '-') {
      int oh, om;
      if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om) || oh > 23 ||
          om > 59)
        return false;
      off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
      p += 6;
    } else {
      return false;
    }
    if (*p)
      return false;
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
    return false;
  struct tm tm = {.tm_year = y - 1900,
                  .tm_mon = mo - 1,
                  .tm_mday = d,
                  .tm_hour = h,
                  .tm_min = mi,
                  .tm_sec = se == 60 ? 59 : se};
  time_t t = timegm(&tm);
  if (tm.tm_mday != d || tm.tm_mon != mo - 1) /* 31 February */
    return false;
  *out = (int64_t)t - off;
  return true;
}

/* ---- parsing ------------------------------------------------------------------ */

static bool key_ok(const char *k, size_t n) {
  if (n == 0 || n > Q_LIMIT_METADATA_KEY_BYTES)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = k[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
      return false;
  }
  return true;
}

/* A number operand, or a date string converted to unix seconds. */
static q_err_t num_operand(pctx_t *c, const char *op, const json_t *v, double *out) {
  char msg[160];
  if (json_is_number(v)) {
    *out = json_number_value(v);
    if (isfinite(*out))
      return 0;
  } else if (json_is_string(v)) {
    int64_t t;
    if (q_rfc3339_parse(json_string_value(v), &t)) {
      *out = (double)t;
      return 0;
    }
  }
  snprintf(msg, sizeof msg, "\"%s\" must be a number or an RFC 3339 date", op);
  return fail(c, msg);
}

/* An eq or in operand: kinds allowed by field. */
static q_err_t val_operand(pctx_t *c, const node_t *n, const char *op, const json_t *v,
                           val_t *out) {
  char msg[200];
  if (n->field == F_CREATED_AT) {
    out->kind = V_NUM;
    return num_operand(c, op, v, &out->n);
  }
  if (json_is_string(v)) {
    size_t len = json_string_length(v);
    if (len > Q_LIMIT_METADATA_VALUE_BYTES) {
      snprintf(msg, sizeof msg, "a value of \"%s\" is longer than %d bytes", op,
               Q_LIMIT_METADATA_VALUE_BYTES);
      return fail(c, msg);
    }
    if (!q_valid_utf8(json_string_value(v), len)) {
      snprintf(msg, sizeof msg, "a value of \"%s\" is not UTF-8 or holds a NUL", op);
      return fail(c, msg);
    }
    out->kind = V_STR;
    out->s = strdup(json_string_value(v)); /* freed by node_free */
    if (!out->s) {
      snprintf(c->err, c->errlen, "out of memory");
      return Q_ENOMEM;
    }
    return 0;
  }
  if (n->field != F_META) {
    snprintf(msg, sizeof msg, "\"%s\" of this field takes strings", op);
    return fail(c, msg);
  }
  if (json_is_number(v) && isfinite(json_number_value(v))) {
    out->kind = V_NUM;
    out->n = json_number_value(v);
    return 0;
  }
  if (json_is_boolean(v) && strcmp(op, "eq") == 0) {
    out->kind = V_BOOL;
    out->b = json_is_true(v);
    return 0;
  }
  snprintf(msg, sizeof msg, "\"%s\" takes %s", op,
           strcmp(op, "eq") == 0 ? "a string, a number or a boolean"
                                 : "strings and numbers");
  return fail(c, msg);
}

static q_err_t parse_node(pctx_t *c, const json_t *v, int depth, node_t **out);

static q_err_t parse_cond(pctx_t *c, const json_t *v, node_t *n) {
  char msg[300];
  const json_t *f = json_object_get(v, "field");
  if (!json_is_string(f))
    return fail(c, "\"field\" must be a string");
  const char *name = json_string_value(f);
  size_t nlen = json_string_length(f);
  if (strcmp(name, "doc_id") == 0) {
    n->field = F_DOC_ID;
  } else if (strcmp(name, "title") == 0) {
    n->field = F_TITLE;
  } else if (strcmp(name, "content_type") == 0) {
    n->field = F_CONTENT_TYPE;
  } else if (strcmp(name, "author") == 0) {
    n->field = F_AUTHOR;
  } else if (strcmp(name, "language") == 0) {
    n->field = F_LANGUAGE;
  } else if (strcmp(name, "created_at") == 0) {
    n->field = F_CREATED_AT;
  } else if (nlen > 5 && strncmp(name, "meta.", 5) == 0 && key_ok(name + 5, nlen - 5)) {
    n->field = F_META;
    n->key = strdup(name + 5);
    if (!n->key) {
      snprintf(c->err, c->errlen, "out of memory");
      return Q_ENOMEM;
    }
  } else {
    snprintf(msg, sizeof msg,
             "unknown field \"%.80s\" (doc_id, title, content_type, author, language, "
             "created_at or meta.<key>, a key of 1..%d bytes of [A-Za-z0-9_.-])",
             name, Q_LIMIT_METADATA_KEY_BYTES);
    return fail(c, msg);
  }
  const char *k;
  const json_t *x;
  size_t nops = 0;
  json_object_foreach((json_t *)v, k, x) {
    if (strcmp(k, "field") == 0)
      continue;
    nops++;
    q_err_t rc;
    if (strcmp(k, "eq") == 0) {
      n->has_eq = true;
      if ((rc = val_operand(c, n, "eq", x, &n->eq)))
        return rc;
    } else if (strcmp(k, "in") == 0) {
      n->has_in = true;
      size_t m = json_array_size(x);
      if (!json_is_array(x) || m == 0)
        return fail(c, "\"in\" must be a non-empty list");
      if (m > Q_LIMIT_FILTER_VALUES) {
        snprintf(msg, sizeof msg, "\"in\" has %zu values; at most %d", m,
                 Q_LIMIT_FILTER_VALUES);
        return fail(c, msg);
      }
      n->in = calloc(m, sizeof *n->in);
      if (!n->in) {
        snprintf(c->err, c->errlen, "out of memory");
        return Q_ENOMEM;
      }
      for (size_t i = 0; i < m; i++, n->nin++)
        if ((rc = val_operand(c, n, "in", json_array_get(x, i), &n->in[i])))
          return rc;
    } else if (strcmp(k, "gt") == 0 || strcmp(k, "gte") == 0 || strcmp(k, "lt") == 0 ||
               strcmp(k, "lte") == 0) {
      if (n->field != F_CREATED_AT && n->field != F_META) {
        snprintf(msg, sizeof msg, "field \"%s\" takes eq and in, not \"%s\"", name, k);
        return fail(c, msg);
      }
      bool lo = k[0] == 'g';
      if (lo ? n->has_lo : n->has_hi) {
        snprintf(msg, sizeof msg, "\"%s\" together with \"%s\"", k,
                 lo ? (k[2] ? "gt" : "gte") : (k[2] ? "lt" : "lte"));
        return fail(c, msg);
      }
      double d;
      if ((rc = num_operand(c, k, x, &d)))
        return rc;
      if (lo) {
        n->has_lo = true;
        n->lo_incl = k[2] == 'e';
        n->lo = d;
      } else {
        n->has_hi = true;
        n->hi_incl = k[2] == 'e';
        n->hi = d;
      }
    } else {
      snprintf(msg, sizeof msg,
               "unknown operator \"%.64s\" (eq, in, gt, gte, lt, lte; or and, or, not "
               "without \"field\")",
               k);
      return fail(c, msg);
    }
  }
  if (!nops)
    return fail(c, "a condition needs an operator: eq, in, gt, gte, lt or lte");
  if ((n->has_eq || n->has_in) && nops > 1)
    return fail(c, "\"eq\" and \"in\" stand alone in a condition: combine with \"and\"");
  return 0;
}

static q_err_t parse_node(pctx_t *c, const json_t *v, int depth, node_t **out) {
  char msg[160];
  *out = NULL;
  if (!json_is_object(v))
    return fail(c, "must be an object: a condition {\"field\": ..., \"eq\": ...} or "
                   "{\"and\"|\"or\": [...]} or {\"not\": {...}}");
  if (depth > Q_LIMIT_FILTER_DEPTH) {
    snprintf(msg, sizeof msg, "nested deeper than %d levels", Q_LIMIT_FILTER_DEPTH);
    return fail(c, msg);
  }
  if (++c->clauses > Q_LIMIT_FILTER_CLAUSES) {
    snprintf(msg, sizeof msg,
             "the filter has more than %d conditions and and/or/not nodes",
             Q_LIMIT_FILTER_CLAUSES);
    return fail(c, msg);
  }
  node_t *n = calloc(1, sizeof *n);
  if (!n) {
    snprintf(c->err, c->errlen, "out of memory");
    return Q_ENOMEM;
  }
  *out = n;
  if (json_object_get(v, "field")) {
    n->op = N_COND;
    return parse_cond(c, v, n);
  }
  const char *k = NULL;
  const json_t *x = NULL;
  if (json_object_size(v) != 1) {
    if (json_object_size(v) == 0)
      return fail(c, "empty object: a condition needs \"field\" and an operator");
    return fail(c, "\"and\", \"or\" and \"not\" stand alone in their object (or is "
                   "\"field\" missing?)");
  }
  json_object_foreach((json_t *)v, k, x) break;
  size_t plen = strlen(c->path);
  q_err_t rc = 0;
  if (strcmp(k, "not") == 0) {
    n->op = N_NOT;
    n->kids = calloc(1, sizeof *n->kids);
    if (!n->kids) {
      snprintf(c->err, c->errlen, "out of memory");
      return Q_ENOMEM;
    }
    n->nkids = 1;
    snprintf(c->path + plen, sizeof c->path - plen, ".not");
    rc = parse_node(c, x, depth + 1, &n->kids[0]);
  } else if (strcmp(k, "and") == 0 || strcmp(k, "or") == 0) {
    n->op = k[0] == 'a' ? N_AND : N_OR;
    size_t m = json_array_size(x);
    if (!json_is_array(x) || m == 0) {
      snprintf(msg, sizeof msg, "\"%s\" must be a non-empty list of conditions", k);
      return fail(c, msg);
    }
    if (m > Q_LIMIT_FILTER_CLAUSES) {
      snprintf(msg, sizeof msg,
               "\"%s\" has %zu items; a filter has at most %d conditions", k, m,
               Q_LIMIT_FILTER_CLAUSES);
      return fail(c, msg);
    }
    n->kids = calloc(m, sizeof *n->kids);
    if (!n->kids) {
      snprintf(c->err, c->errlen, "out of memory");
      return Q_ENOMEM;
    }
    for (size_t i = 0; i < m && !rc; i++) {
      snprintf(c->path + plen, sizeof c->path - plen, ".%s[%zu]", k, i);
      n->nkids++;
      rc = parse_node(c, json_array_get(x, i), depth + 1, &n->kids[i]);
    }
  } else {
    snprintf(msg, sizeof msg,
             "unknown operator \"%.64s\" (and, or, not; or a condition with \"field\")",
             k);
    return fail(c, msg);
  }
  if (!rc)
    c->path[plen] = '\0';
  return rc;
}

q_err_t q_filter_compile(const json_t *v, q_filter_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (!v || json_is_null(v))
    return 0;
  pctx_t c = {.path = "filter", .err = err, .errlen = errlen};
  q_filter_t *f = calloc(1, sizeof *f);
  if (!f) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  q_err_t rc = parse_node(&c, v, 1, &f->root);
  if (rc) {
    q_filter_free(f);
    return rc;
  }
  *out = f;
  return 0;
}

q_err_t q_filter_parse(const char *s, size_t len, q_filter_t **out, char *err,
                       size_t errlen) {
  *out = NULL;
  if (!s || !len)
    return 0;
  if (len > Q_LIMIT_FILTER_BYTES) {
    snprintf(err, errlen, "filter: %zu bytes of JSON; at most %d", len,
             Q_LIMIT_FILTER_BYTES);
    return Q_EINVAL;
  }
  json_error_t je;
  json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
  if (!v) {
    snprintf(err, errlen, "filter: not JSON: %s", je.text);
    return Q_EINVAL;
  }
  q_err_t rc = q_filter_compile(v, out, err, errlen);
  json_decref(v);
  return rc;
}

/* ---- evaluation ------------------------------------------------------------------- */

static bool val_eq(const val_t *a, const json_t *x) {
  switch (a->kind) {
  case V_STR: return json_is_string(x) && strcmp(a->s, json_string_value(x)) == 0;
  case V_NUM: return json_is_number(x) && json_number_value(x) == a->n;
  default: return json_is_boolean(x) && json_is_true(x) == a->b;
  }
}

/* Whether a meta value (a scalar, or a list whose items are tried in turn)
 * equals one of vals[0..n). */
static bool meta_in(const val_t *vals, size_t n, const json_t *x) {
  if (json_is_array(x)) {
    for (size_t i = 0; i < json_array_size(x); i++)
      if (meta_in(vals, n, json_array_get(x, i)))
        return true;
    return false;
  }
  for (size_t i = 0; i < n; i++)
    if (val_eq(&vals[i], x))
      return true;
  return false;
}

/* Whether s equals the condition's eq or one of its in values (ignoring
 * ASCII case when nocase: language tags are case-insensitive, BCP 47 2.1.1).
 * An absent (NULL or, for the extracted fields, empty) s never does. */
static bool str_in(const node_t *n, const char *s, bool nocase) {
  if (!s)
    return false;
  if (n->has_eq)
    return (nocase ? strcasecmp(n->eq.s, s) : strcmp(n->eq.s, s)) == 0;
  for (size_t i = 0; i < n->nin; i++)
    if ((nocase ? strcasecmp(n->in[i].s, s) : strcmp(n->in[i].s, s)) == 0)
      return true;
  return false;
}

static const char *present(const char *s) {
  return s && *s ? s : NULL;
}

static bool in_range(const node_t *n, double x) {
  if (n->has_lo && !(n->lo_incl ? x >= n->lo : x > n->lo))
    return false;
  if (n->has_hi && !(n->hi_incl ? x <= n->hi : x < n->hi))
    return false;
  return true;
}

static bool num_in(const node_t *n, double x) {
  if (n->has_eq)
    return n->eq.n == x;
  if (n->has_in) {
    for (size_t i = 0; i < n->nin; i++)
      if (n->in[i].n == x)
        return true;
    return false;
  }
  return in_range(n, x);
}

static bool cond_match(const node_t *n, const q_filter_doc_t *d) {
  switch (n->field) {
  case F_DOC_ID: return str_in(n, d->doc_id, false);
  case F_TITLE: return str_in(n, d->title, false);
  case F_CONTENT_TYPE: return str_in(n, d->content_type, false);
  case F_AUTHOR: return str_in(n, present(d->author), false);
  case F_LANGUAGE: return str_in(n, present(d->language), true);
  case F_CREATED_AT: return d->created_at != 0 && num_in(n, (double)d->created_at);
  default: break;
  }
  const json_t *x = d->meta ? json_object_get(d->meta, n->key) : NULL;
  if (!x)
    return false;
  if (n->has_eq)
    return meta_in(&n->eq, 1, x);
  if (n->has_in)
    return meta_in(n->in, n->nin, x);
  if (json_is_number(x))
    return in_range(n, json_number_value(x));
  int64_t t;
  if (json_is_string(x) && q_rfc3339_parse(json_string_value(x), &t))
    return in_range(n, (double)t);
  return false;
}

static bool node_match(const node_t *n, const q_filter_doc_t *d) {
  switch (n->op) {
  case N_AND:
    for (size_t i = 0; i < n->nkids; i++)
      if (!node_match(n->kids[i], d))
        return false;
    return true;
  case N_OR:
    for (size_t i = 0; i < n->nkids; i++)
      if (node_match(n->kids[i], d))
        return true;
    return false;
  case N_NOT: return !node_match(n->kids[0], d);
  default: return cond_match(n, d);
  }
}

bool q_filter_match(const q_filter_t *f, const q_filter_doc_t *d) {
  return !f || node_match(f->root, d);
}

/* ---- user metadata ------------------------------------------------------------------
 */

static q_err_t meta_string(const char *key, const json_t *s, const char *where, char *err,
                           size_t errlen) {
  size_t len = json_string_length(s);
  if (len > Q_LIMIT_METADATA_VALUE_BYTES) {
    snprintf(err, errlen, "metadata \"%s\": %s is longer than %d bytes", key, where,
             Q_LIMIT_METADATA_VALUE_BYTES);
    return Q_EINVAL;
  }
  if (!q_valid_utf8(json_string_value(s), len)) {
    snprintf(err, errlen, "metadata \"%s\": %s is not UTF-8 or holds a NUL", key, where);
    return Q_EINVAL;
  }
  return 0;
}

q_err_t q_meta_check(const json_t *meta, char *err, size_t errlen) {
  if (!json_is_object(meta)) {
    snprintf(err, errlen, "metadata must be a JSON object");
    return Q_EINVAL;
  }
  if (json_object_size(meta) > Q_LIMIT_METADATA_KEYS) {
    snprintf(err, errlen, "metadata has %zu keys; at most %d", json_object_size(meta),
             Q_LIMIT_METADATA_KEYS);
    return Q_EINVAL;
  }
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)meta, k, v) {
    if (!key_ok(k, strlen(k))) {
      snprintf(err, errlen, "metadata key \"%.80s\" is not 1..%d bytes of [A-Za-z0-9_.-]",
               k, Q_LIMIT_METADATA_KEY_BYTES);
      return Q_EINVAL;
    }
    q_err_t rc;
    if (json_is_string(v)) {
      if ((rc = meta_string(k, v, "the value", err, errlen)))
        return rc;
    } else if (json_is_number(v)) {
      if (!isfinite(json_number_value(v))) {
        snprintf(err, errlen, "metadata \"%s\": the number is not finite", k);
        return Q_EINVAL;
      }
    } else if (json_is_array(v)) {
      if (json_array_size(v) > Q_LIMIT_METADATA_LIST_ITEMS) {
        snprintf(err, errlen, "metadata \"%s\": the list has %zu items; at most %d", k,
                 json_array_size(v), Q_LIMIT_METADATA_LIST_ITEMS);
        return Q_EINVAL;
      }
      for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *s = json_array_get(v, i);
        if (!json_is_string(s)) {
          snprintf(err, errlen, "metadata \"%s\": item %zu of the list is not a string",
                   k, i);
          return Q_EINVAL;
        }
        if ((rc = meta_string(k, s, "an item of the list", err, errlen)))
          return rc;
      }
    } else if (!json_is_boolean(v)) {
      snprintf(err, errlen,
               "metadata \"%s\": values are strings, numbers, booleans or lists of "
               "strings, not %s",
               k, json_is_object(v) ? "objects" : "null");
      return Q_EINVAL;
    }
  }
  size_t bytes = json_dumpb(meta, NULL, 0, JSON_COMPACT);
  if (bytes > Q_LIMIT_METADATA_BYTES) {
    snprintf(err, errlen, "metadata is %zu bytes as JSON; at most %d", bytes,
             Q_LIMIT_METADATA_BYTES);
    return Q_EINVAL;
  }
  return 0;
}

q_err_t q_meta_parse(const char *s, size_t len, json_t **out, char *err, size_t errlen) {
  *out = NULL;
  if (!s || !len)
    return 0;
  /* The bound is on the compact form (q_meta_check); this only keeps the
   * parser from chewing on megabytes of white space. */
  if (len > 4 * (size_t)Q_LIMIT_METADATA_BYTES) {
    snprintf(err, errlen, "metadata is %zu bytes; at most %d as compact JSON", len,
             Q_LIMIT_METADATA_BYTES);
    return Q_EINVAL;
  }
  json_error_t je;
  json_t *v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
  if (!v) {
    snprintf(err, errlen, "metadata is not JSON: %s", je.text);
    return Q_EINVAL;
  }
  q_err_t rc = q_meta_check(v, err, errlen);
  if (rc) {
    json_decref(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* ---- reading a compiled filter ------------------------------------------------------
 */

const q_filter_node_t *q_filter_root(const q_filter_t *f) {
  return f ? f->root : NULL;
}

q_filter_op_t q_filter_node_op(const q_filter_node_t *n) {
  return (q_filter_op_t)n->op;
}

size_t q_filter_node_nkids(const q_filter_node_t *n) {
  return n->nkids;
}

const q_filter_node_t *q_filter_node_kid(const q_filter_node_t *n, size_t i) {
  return i < n->nkids ? n->kids[i] : NULL;
}

void q_filter_node_cond(const q_filter_node_t *n, q_filter_cond_t *out) {
  *out = (q_filter_cond_t){
      .field = (q_filter_field_t)n->field,
      .key = n->key,
      .has_eq = n->has_eq,
      .has_in = n->has_in,
      .values = n->has_eq ? &n->eq : n->in,
      .nvalues = n->has_eq ? 1 : n->nin,
      .has_lo = n->has_lo,
      .lo_incl = n->lo_incl,
      .has_hi = n->has_hi,
      .hi_incl = n->hi_incl,
      .lo = n->lo,
      .hi = n->hi,
  };
}
