/* milvus_expr.c - filters as Milvus boolean expressions (milvus_expr.h). */
#include "engine/milvus_expr.h"
#include "engine/milvus_client.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whole seconds beyond this are out of any date (and times 1000 still fit
 * in an int64). */
#define SECONDS_MAX 9000000000000000.0
/* Doubles up to 2^53 are exact integers. */
#define EXACT_INT 9007199254740992.0
/* Always false, in the grammar's terms. */
#define FALSE_EXPR "(created_ms == 0 and created_ms != 0)"

typedef struct ectx {
  q_buf_t *b;
  char *err;
  size_t errlen;
} ectx_t;

static bool whole(double x) {
  return isfinite(x) && floor(x) == x && fabs(x) <= EXACT_INT;
}

/* A number literal: an integer when x is whole, else a float literal that
 * reads back as the same double. */
static q_err_t number(q_buf_t *b, double x) {
  if (whole(x))
    return q_buf_printf(b, "%lld", (long long)x);
  return q_buf_printf(b, "%.17g", x);
}

static q_err_t value(q_buf_t *b, const q_filter_value_t *v) {
  switch (v->kind) {
  case Q_FILTER_STR: return milvus_quote_append(b, v->s);
  case Q_FILTER_NUM: return number(b, v->n);
  default: return q_buf_puts(b, v->b ? "true" : "false");
  }
}

/* `metadata["k"]`, or `metadata["#dates"]["k"]`. */
static q_err_t meta_path(q_buf_t *b, const char *key, bool dates) {
  q_err_t rc = q_buf_puts(b, "metadata[");
  if (!rc && dates) {
    rc = milvus_quote_append(b, MILVUS_DATES_KEY);
    if (!rc)
      rc = q_buf_puts(b, "][");
  }
  if (!rc)
    rc = milvus_quote_append(b, key);
  return rc ? rc : q_buf_puts(b, "]");
}

/* `F == v` (one value) or `F in [v, ...]`; path writes F. */
static q_err_t eq_or_in(q_buf_t *b, const char *field, const char *key,
                        const q_filter_value_t *v, size_t n) {
  q_err_t rc = key ? meta_path(b, key, false) : q_buf_puts(b, field);
  if (!rc)
    rc = q_buf_puts(b, n == 1 ? " == " : " in [");
  for (size_t i = 0; !rc && i < n; i++) {
    if (i)
      rc = q_buf_puts(b, ", ");
    if (!rc)
      rc = value(b, &v[i]);
  }
  return rc || n == 1 ? rc : q_buf_puts(b, "]");
}

/* A range on path (meta, or meta's date) with double bounds. */
static q_err_t meta_range(q_buf_t *b, const q_filter_cond_t *c, bool dates) {
  q_err_t rc = q_buf_puts(b, "(");
  if (!rc && c->has_lo) {
    rc = meta_path(b, c->key, dates);
    if (!rc)
      rc = q_buf_puts(b, c->lo_incl ? " >= " : " > ");
    if (!rc)
      rc = number(b, c->lo);
  }
  if (!rc && c->has_lo && c->has_hi)
    rc = q_buf_puts(b, " and ");
  if (!rc && c->has_hi) {
    rc = meta_path(b, c->key, dates);
    if (!rc)
      rc = q_buf_puts(b, c->hi_incl ? " <= " : " < ");
    if (!rc)
      rc = number(b, c->hi);
  }
  return rc ? rc : q_buf_puts(b, ")");
}

static q_err_t meta_cond(q_buf_t *b, const q_filter_cond_t *c) {
  if (!c->has_eq && !c->has_in) {
    /* A number in range, or a date string whose seconds are. */
    q_err_t rc = q_buf_puts(b, "(");
    if (!rc)
      rc = meta_range(b, c, false);
    if (!rc)
      rc = q_buf_puts(b, " or ");
    if (!rc)
      rc = meta_range(b, c, true);
    return rc ? rc : q_buf_puts(b, ")");
  }
  size_t nstr = 0;
  for (size_t i = 0; i < c->nvalues; i++)
    nstr += c->values[i].kind == Q_FILTER_STR;
  q_err_t rc = q_buf_puts(b, "(");
  if (!rc)
    rc = eq_or_in(b, NULL, c->key, c->values, c->nvalues);
  /* A list value (of strings) passes when it holds one of the strings. */
  if (!rc && nstr) {
    rc = q_buf_puts(b, nstr == 1 ? " or json_contains(" : " or json_contains_any(");
    if (!rc)
      rc = meta_path(b, c->key, false);
    if (!rc)
      rc = q_buf_puts(b, nstr == 1 ? ", " : ", [");
    size_t k = 0;
    for (size_t i = 0; !rc && i < c->nvalues; i++) {
      if (c->values[i].kind != Q_FILTER_STR)
        continue;
      if (k++)
        rc = q_buf_puts(b, ", ");
      if (!rc)
        rc = value(b, &c->values[i]);
    }
    if (!rc)
      rc = q_buf_puts(b, nstr == 1 ? ")" : "])");
  }
  return rc ? rc : q_buf_puts(b, ")");
}

/* created_at: whole seconds compared as ms (created_ms = seconds * 1000). */
static q_err_t created_cond(q_buf_t *b, const q_filter_cond_t *c) {
  q_err_t rc = q_buf_puts(b, "(created_ms != 0 and ");
  if (c->has_eq || c->has_in) {
    size_t n = 0;
    for (size_t i = 0; !rc && i < c->nvalues; i++) {
      double x = c->values[i].n;
      if (!whole(x) || fabs(x) > SECONDS_MAX)
        continue; /* a fraction of a second never equals a date */
      rc = q_buf_puts(b, n++ ? ", " : "created_ms in [");
      if (!rc)
        rc = q_buf_printf(b, "%lld", (long long)x * 1000);
    }
    if (!rc)
      rc = q_buf_puts(b, n ? "])" : FALSE_EXPR ")");
    return rc;
  }
  /* The integer seconds s with lo < s (or <=) and s < hi (or <=). */
  double lo = -SECONDS_MAX, hi = SECONDS_MAX;
  if (c->has_lo)
    lo = c->lo_incl ? ceil(c->lo) : floor(c->lo) + 1;
  if (c->has_hi)
    hi = c->hi_incl ? floor(c->hi) : ceil(c->hi) - 1;
  if (lo > SECONDS_MAX || hi < -SECONDS_MAX || lo > hi)
    return rc ? rc : q_buf_puts(b, FALSE_EXPR ")");
  if (lo < -SECONDS_MAX)
    lo = -SECONDS_MAX;
  if (hi > SECONDS_MAX)
    hi = SECONDS_MAX;
  if (!rc)
    rc = q_buf_printf(b, "created_ms >= %lld and created_ms <= %lld)",
                      (long long)lo * 1000, (long long)hi * 1000);
  return rc;
}

static q_err_t cond(q_buf_t *b, const q_filter_node_t *n) {
  q_filter_cond_t c;
  q_filter_node_cond(n, &c);
  switch (c.field) {
  case Q_FILTER_DOC_ID: return eq_or_in(b, "doc_id", NULL, c.values, c.nvalues);
  case Q_FILTER_TITLE: return eq_or_in(b, "title", NULL, c.values, c.nvalues);
  case Q_FILTER_CONTENT_TYPE: {
    /* Stored "" when the document has none: absent, never equal. */
    q_err_t rc = q_buf_puts(b, "(content_type != \"\" and ");
    if (!rc)
      rc = eq_or_in(b, "content_type", NULL, c.values, c.nvalues);
    return rc ? rc : q_buf_puts(b, ")");
  }
  case Q_FILTER_CREATED_AT: return created_cond(b, &c);
  case Q_FILTER_AUTHOR:
  case Q_FILTER_LANGUAGE:
    return Q_EUNIMPL; /* not stored in the collection (docs/milvus.md) */
  default: return meta_cond(b, &c);
  }
}

static q_err_t node(q_buf_t *b, const q_filter_node_t *n) {
  q_filter_op_t op = q_filter_node_op(n);
  if (op == Q_FILTER_COND)
    return cond(b, n);
  if (op == Q_FILTER_NOT) {
    q_err_t rc = q_buf_puts(b, "not (");
    if (!rc)
      rc = node(b, q_filter_node_kid(n, 0));
    return rc ? rc : q_buf_puts(b, ")");
  }
  q_err_t rc = q_buf_puts(b, "(");
  for (size_t i = 0; !rc && i < q_filter_node_nkids(n); i++) {
    if (i)
      rc = q_buf_puts(b, op == Q_FILTER_AND ? " and " : " or ");
    if (!rc)
      rc = node(b, q_filter_node_kid(n, i));
  }
  return rc ? rc : q_buf_puts(b, ")");
}

q_err_t milvus_filter_expr(const q_filter_t *f, q_buf_t *b, char *err, size_t errlen) {
  const q_filter_node_t *root = q_filter_root(f);
  q_err_t rc = root ? node(b, root) : Q_EINVAL;
  if (rc)
    snprintf(err, errlen, "milvus: filter %s",
             rc == Q_EUNIMPL
                 ? "on author or language: the Milvus engine does not store them"
             : rc == Q_EINVAL ? "holds a string that is not UTF-8"
                              : "is too long as a Milvus expression");
  return rc == Q_ENOMEM || rc == Q_EUNIMPL ? rc : rc ? Q_EINVAL : 0;
}

q_err_t milvus_meta_stored(const char *meta, char **out) {
  *out = NULL;
  json_t *m = meta && *meta ? json_loads(meta, 0, NULL) : json_object();
  if (!json_is_object(m)) {
    json_decref(m);
    return Q_EINVAL;
  }
  json_t *dates = json_object();
  const char *k;
  json_t *v;
  q_err_t rc = dates ? 0 : Q_ENOMEM;
  json_object_foreach(m, k, v) {
    if (rc)
      break;
    int64_t t;
    if (json_is_real(v) && whole(json_real_value(v))) {
      if (json_object_set_new(m, k, json_integer((json_int_t)json_real_value(v))))
        rc = Q_ENOMEM;
    } else if (json_is_string(v) && q_rfc3339_parse(json_string_value(v), &t)) {
      if (json_object_set_new(dates, k, json_integer((json_int_t)t)))
        rc = Q_ENOMEM;
    }
  }
  if (!rc && json_object_size(dates) &&
      json_object_set_new(m, MILVUS_DATES_KEY, json_incref(dates)))
    rc = Q_ENOMEM;
  json_decref(dates);
  if (!rc && !(*out = json_dumps(m, JSON_COMPACT)))
    rc = Q_ENOMEM;
  json_decref(m);
  return rc;
}

int64_t milvus_created_ms(int64_t created_at) {
  if (created_at == 0 || created_at > (int64_t)SECONDS_MAX ||
      created_at < -(int64_t)SECONDS_MAX)
    return 0;
  return created_at * 1000;
}
