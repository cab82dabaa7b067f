/* ask_filter.c - `quarry ask`'s filter options composed into JSON (see
 * ask_filter.h). */
#include "ask_filter.h"

#include <string.h>

/* Appends clause (a reference taken, may be NULL: out of memory). */
static q_err_t add(json_t *clauses, json_t *clause) {
  return clause && json_array_append_new(clauses, clause) == 0 ? 0 : Q_ENOMEM;
}

static q_err_t add_filter_json(args_t *args, json_t *clauses, char *err, size_t errlen) {
  const char *text = args_get(args, "filter");
  if (!text)
    return 0;
  json_error_t je;
  json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
  if (!v) {
    snprintf(err, errlen, "--filter is not JSON: %s (line %d, column %d)", je.text,
             je.line, je.column);
    return Q_EINVAL;
  }
  return add(clauses, v);
}

static q_err_t add_where(args_t *args, json_t *clauses, char *err, size_t errlen) {
  const char *const *list = args_list(args, "where");
  if (!list)
    return Q_ENOMEM;
  for (; *list; list++) {
    const char *eq = strchr(*list, '=');
    if (!eq || eq == *list) {
      snprintf(err, errlen,
               "--where wants KEY=VALUE (meta.team=finance), not \"%.64s\"; use "
               "--filter for other operators",
               *list);
      return Q_EINVAL;
    }
    json_t *field = json_stringn(*list, (size_t)(eq - *list));
    json_t *value = json_string(eq + 1);
    if (!field || !value) { /* JSON strings are UTF-8 */
      json_decref(field);
      json_decref(value);
      snprintf(err, errlen, "--where \"%.64s\" is not UTF-8 text", *list);
      return Q_EINVAL;
    }
    q_err_t rc = add(clauses, json_pack("{s:o,s:o}", "field", field, "eq", value));
    if (rc)
      return rc;
  }
  return 0;
}

static q_err_t add_types(args_t *args, json_t *clauses, char *err, size_t errlen) {
  const char *const *list = args_list(args, "type");
  if (!list)
    return Q_ENOMEM;
  if (!list[0])
    return 0;
  json_t *types = json_array();
  for (size_t i = 0; types && list[i]; i++) {
    json_t *t = json_string(list[i]);
    if (!t) {
      json_decref(types);
      snprintf(err, errlen, "--type \"%.64s\" is not UTF-8 text", list[i]);
      return Q_EINVAL;
    }
    json_array_append_new(types, t);
  }
  if (!types)
    return Q_ENOMEM;
  if (json_array_size(types) == 1) {
    json_t *one = json_incref(json_array_get(types, 0));
    json_decref(types);
    return add(clauses, json_pack("{s:s,s:o}", "field", "content_type", "eq", one));
  }
  return add(clauses, json_pack("{s:s,s:o}", "field", "content_type", "in", types));
}

static q_err_t add_dates(args_t *args, json_t *clauses, char *err, size_t errlen) {
  const char *after = args_get(args, "after"), *before = args_get(args, "before");
  if (!after && !before)
    return 0;
  json_t *c = json_pack("{s:s}", "field", "created_at");
  if (!c)
    return Q_ENOMEM;
  const char *names[] = {"after", "before"}, *ops[] = {"gte", "lt"};
  const char *vals[] = {after, before};
  for (int i = 0; i < 2; i++) {
    if (!vals[i])
      continue;
    json_t *v = json_string(vals[i]);
    if (!v) {
      json_decref(c);
      snprintf(err, errlen, "--%s \"%.64s\" is not UTF-8 text", names[i], vals[i]);
      return Q_EINVAL;
    }
    json_object_set_new(c, ops[i], v);
  }
  return add(clauses, c);
}

q_err_t ask_filter_build(args_t *args, json_t **out, char *err, size_t errlen) {
  *out = NULL;
  json_t *clauses = json_array();
  if (!clauses)
    return Q_ENOMEM;
  q_err_t rc = add_filter_json(args, clauses, err, errlen);
  if (!rc)
    rc = add_where(args, clauses, err, errlen);
  if (!rc)
    rc = add_types(args, clauses, err, errlen);
  if (!rc)
    rc = add_dates(args, clauses, err, errlen);
  if (rc) {
    if (rc == Q_ENOMEM)
      snprintf(err, errlen, "out of memory");
    json_decref(clauses);
    return rc;
  }
  size_t n = json_array_size(clauses);
  if (n == 1)
    *out = json_incref(json_array_get(clauses, 0));
  else if (n > 1)
    *out = json_pack("{s:O}", "and", clauses);
  json_decref(clauses);
  if (n > 1 && !*out) {
    snprintf(err, errlen, "out of memory");
    return Q_ENOMEM;
  }
  return 0;
}
