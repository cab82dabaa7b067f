/* args.c - table-driven option parsing (see args.h). */
#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const args_opt_t *find_long(const args_opt_t *const *tables, const char *name,
                                   size_t len) {
  for (size_t t = 0; tables[t]; t++)
    for (const args_opt_t *o = tables[t]; o->name; o++)
      if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
        return o;
  return NULL;
}

static const args_opt_t *find_alias(const args_opt_t *const *tables, char c) {
  for (size_t t = 0; tables[t]; t++)
    for (const args_opt_t *o = tables[t]; o->name; o++)
      if (o->alias && o->alias == c)
        return o;
  return NULL;
}

static q_err_t push_item(args_t *a, const args_opt_t *o, const char *v, char *err,
                         size_t errlen) {
  if (!o->repeat && args_has(a, o->name)) {
    snprintf(err, errlen, "--%s given twice", o->name);
    return Q_EINVAL;
  }
  args_item_t *p = realloc(a->items, (a->n + 1) * sizeof *p);
  if (!p)
    return Q_ENOMEM;
  a->items = p;
  a->items[a->n++] = (args_item_t){o, v};
  return 0;
}

q_err_t args_parse(const args_opt_t *const *tables, int argc, char **argv, args_t *out,
                   char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->operands = calloc((size_t)argc + 1, sizeof *out->operands);
  if (!out->operands)
    return Q_ENOMEM;
  bool options = true;
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    if (!options || s[0] != '-' || s[1] == '\0') { /* "-" alone is an operand */
      out->operands[out->noperands++] = s;
      continue;
    }
    if (strcmp(s, "--") == 0) {
      options = false;
      continue;
    }
    const args_opt_t *o;
    const char *inline_value = NULL;
    if (s[1] == '-') {
      const char *name = s + 2, *eq = strchr(name, '=');
      size_t len = eq ? (size_t)(eq - name) : strlen(name);
      o = find_long(tables, name, len);
      if (!o) {
        snprintf(err, errlen, "unknown option --%.*s", (int)len, name);
        return Q_EINVAL;
      }
      inline_value = eq ? eq + 1 : NULL;
    } else {
      o = s[2] == '\0' ? find_alias(tables, s[1]) : NULL;
      if (!o) {
        snprintf(err, errlen, "unknown option %s", s);
        return Q_EINVAL;
      }
    }
    const char *v = NULL;
    if (o->value) {
      if (inline_value) {
        v = inline_value;
      } else if (i + 1 < argc) {
        v = argv[++i];
      } else {
        snprintf(err, errlen, "--%s needs a value (%s)", o->name, o->value);
        return Q_EINVAL;
      }
    } else if (inline_value) {
      snprintf(err, errlen, "--%s takes no value", o->name);
      return Q_EINVAL;
    }
    q_err_t rc = push_item(out, o, v, err, errlen);
    if (rc)
      return rc;
  }
  return 0;
}

void args_free(args_t *a) {
  for (size_t i = 0; i < a->nlists; i++)
    free(a->lists[i]);
  free(a->lists);
  free(a->items);
  free(a->operands);
  memset(a, 0, sizeof *a);
}

bool args_has(const args_t *a, const char *name) {
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->items[i].opt->name, name) == 0)
      return true;
  return false;
}

const char *args_get(const args_t *a, const char *name) {
  const char *v = NULL;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->items[i].opt->name, name) == 0)
      v = a->items[i].value;
  return v;
}

const char *const *args_list(args_t *a, const char *name) {
  const char **list = calloc(a->n + 1, sizeof *list);
  const char ***lists = list ? realloc(a->lists, (a->nlists + 1) * sizeof *lists) : NULL;
  if (!lists) {
    free(list);
    return NULL;
  }
  a->lists = lists;
  a->lists[a->nlists++] = list;
  size_t k = 0;
  for (size_t i = 0; i < a->n; i++)
    if (strcmp(a->items[i].opt->name, name) == 0)
      list[k++] = a->items[i].value;
  return list;
}

q_err_t args_int(const args_t *a, const char *name, long def, long min, long max,
                 long *out, char *err, size_t errlen) {
  const char *v = args_get(a, name);
  if (!v) {
    *out = def;
    return 0;
  }
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < min || n > max) {
    snprintf(err, errlen, "--%s wants a whole number from %ld to %ld, not \"%.64s\"",
             name, min, max, v);
    return Q_EINVAL;
  }
  *out = n;
  return 0;
}

void args_print_help(FILE *f, const args_opt_t *table) {
  for (const args_opt_t *o = table; o->name; o++) {
    char left[64], dash[8] = "    ";
    if (o->alias)
      snprintf(dash, sizeof dash, "-%c, ", o->alias);
    snprintf(left, sizeof left, "%s--%s%s%s", dash, o->name, o->value ? " " : "",
             o->value ? o->value : "");
    fprintf(f, "  %-24s", left);
    /* Wrap the help at 79 columns, continuing under its first word. An
     * option that fills its column (or more) puts the help on the next line:
     * they must not run together. */
    size_t col = strlen(left) >= 24 ? 2 + strlen(left) : 26;
    if (col >= 26 && strlen(left) >= 24) {
      fputc('\n', f);
      col = 0;
    }
    const char *w = o->help;
    while (*w) {
      size_t n = strcspn(w, " ");
      if (col == 0) {
        fprintf(f, "%26s", "");
        col = 26;
      }
      if (col > 26 && col + 1 + n > 79) {
        fprintf(f, "\n%26s", "");
        col = 26;
      }
      fprintf(f, "%s%.*s", col > 26 ? " " : "", (int)n, w);
      col += (col > 26 ? 1 : 0) + n;
      w += n;
      while (*w == ' ')
        w++;
    }
    fputc('\n', f);
  }
}
