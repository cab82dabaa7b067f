/* config.c - configuration from environment variables, declared in one
 * table per binary (see config.h).
 *
 * The same table drives validation at start, --help and --help-markdown.
 * Every problem is reported (not only the first) so an operator fixes them
 * in one go. Values of secret entries never appear in any output. */
#include "quarry/config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/util.h"

/* Copies of environment values handed out through dst. They are kept on
 * this list so they stay reachable (the header promises they live until
 * exit, and leak checkers agree) even when a table is loaded twice. */
typedef struct owned {
  struct owned *next;
  char s[];
} owned_t;
static owned_t *owned_strings;

static const char *keep_copy(const char *value) {
  size_t n = strlen(value);
  owned_t *o = malloc(sizeof *o + n + 1);
  if (!o)
    return NULL;
  memcpy(o->s, value, n + 1);
  o->next = owned_strings;
  owned_strings = o;
  return o->s;
}

q_err_t q_cfg_validate_log_level(const char *value, char *err, size_t errlen) {
  q_log_level_t lvl;
  if (q_log_level_parse(value, &lvl) == 0)
    return 0;
  snprintf(err, errlen, "must be one of debug, info, warn, error");
  return Q_EINVAL;
}

static const char *type_name(q_cfg_type_t t) {
  switch (t) {
  case Q_CFG_STRING: return "string";
  case Q_CFG_INT: return "int";
  case Q_CFG_BOOL: return "bool";
  case Q_CFG_ADDR: return "host:port";
  }
  return "?";
}

/* "int", or "int 1..256" when bounded. */
static void type_text(const q_cfg_entry_t *e, char *out, size_t outlen) {
  if (e->type == Q_CFG_INT && e->min != e->max)
    snprintf(out, outlen, "int %" PRId64 "..%" PRId64, e->min, e->max);
  else
    snprintf(out, outlen, "%s", type_name(e->type));
}

/* What to show as the default: never a secret's value. */
static const char *default_text(const q_cfg_entry_t *e) {
  if (!e->def)
    return "(required)";
  if (e->secret && e->def[0])
    return "(secret)";
  if (!e->def[0])
    return "(empty)";
  return e->def;
}

static q_err_t parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "1", "yes", "on"};
  static const char *const no[] = {"false", "0", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(s, yes[i]) == 0) {
      *out = 1;
      return 0;
    }
    if (strcasecmp(s, no[i]) == 0) {
      *out = 0;
      return 0;
    }
  }
  return Q_EINVAL;
}

/* Parses value for entry e without storing it; 0 or Q_EINVAL with a reason
 * in err. The parsed number/flag is returned through num. */
static q_err_t check_value(const q_cfg_entry_t *e, const char *value, int64_t *num,
                           char *err, size_t errlen) {
  switch (e->type) {
  case Q_CFG_STRING: break;
  case Q_CFG_INT: {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (!value[0] || *end || value[0] == ' ' || value[0] == '\t') {
      snprintf(err, errlen, "must be an integer");
      return Q_EINVAL;
    }
    if (errno == ERANGE || (e->min != e->max && (v < e->min || v > e->max))) {
      if (e->min != e->max)
        snprintf(err, errlen, "must be between %" PRId64 " and %" PRId64, e->min, e->max);
      else
        snprintf(err, errlen, "integer out of range");
      return Q_EINVAL;
    }
    *num = v;
    break;
  }
  case Q_CFG_BOOL: {
    int b;
    if (parse_bool(value, &b)) {
      snprintf(err, errlen, "must be true/false, 1/0, yes/no or on/off");
      return Q_EINVAL;
    }
    *num = b;
    break;
  }
  case Q_CFG_ADDR: {
    char host[256];
    int port;
    if (q_addr_split(value, host, sizeof host, &port)) {
      snprintf(err, errlen, "must be host:port (or [ipv6]:port) with port 0..65535");
      return Q_EINVAL;
    }
    break;
  }
  default: snprintf(err, errlen, "unknown type in config table"); return Q_EINVAL;
  }
  if (e->validate && e->validate(value, err, errlen)) {
    if (!err[0])
      snprintf(err, errlen, "invalid value");
    return Q_EINVAL;
  }
  return 0;
}

static void report(const char *binary, const q_cfg_entry_t *e, const char *reason,
                   const char *value) {
  if (e->secret || !value)
    fprintf(stderr, "%s: %s: %s\n", binary, e->name, reason);
  else
    fprintf(stderr, "%s: %s: %s (got '%.256s')\n", binary, e->name, reason, value);
}

/* Loads one entry; 0 or Q_EINVAL (reported). */
static q_err_t load_entry(const char *binary, q_cfg_entry_t *e) {
  const char *env = getenv(e->name);
  const char *value = env;
  int from_default = 0;
  if (!value || (!e->def && !value[0])) {
    if (!e->def) {
      report(binary, e, value ? "required but empty" : "required but not set", NULL);
      return Q_EINVAL;
    }
    value = e->def;
    from_default = 1;
  }

  char err[256] = "";
  int64_t num = 0;
  if (check_value(e, value, &num, err, sizeof err)) {
    if (from_default) {
      char why[300];
      snprintf(why, sizeof why, "invalid built-in default: %s", err);
      report(binary, e, why, value);
    } else {
      report(binary, e, err, value);
    }
    return Q_EINVAL;
  }

  switch (e->type) {
  case Q_CFG_STRING:
  case Q_CFG_ADDR: {
    /* The environment may change later; keep our own copy for the life of
     * the process. Defaults are string literals already. */
    const char *s = from_default ? value : keep_copy(value);
    if (!s) {
      report(binary, e, "out of memory", NULL);
      return Q_EINVAL;
    }
    *(const char **)e->dst = s;
    break;
  }
  case Q_CFG_INT: *(int64_t *)e->dst = num; break;
  case Q_CFG_BOOL: *(int *)e->dst = (int)num; break;
  }
  return 0;
}

/* Writes s with Markdown table metacharacters escaped. */
static void md_cell(FILE *f, const char *s) {
  for (; *s; s++) {
    if (*s == '|')
      fputs("\\|", f);
    else if (*s == '\n')
      fputc(' ', f);
    else
      fputc(*s, f);
  }
}

static void print_markdown(const char *binary, const char *summary,
                           const q_cfg_entry_t *table, size_t n) {
  printf("### %s\n\n", binary);
  if (summary && summary[0])
    printf("%s\n\n", summary);
  printf("| Variable | Type | Default | Description |\n");
  printf("|---|---|---|---|\n");
  for (size_t i = 0; i < n; i++) {
    const q_cfg_entry_t *e = &table[i];
    char type[64];
    type_text(e, type, sizeof type);
    printf("| `%s` | ", e->name);
    md_cell(stdout, type);
    fputs(" | ", stdout);
    if (e->def && e->def[0] && !e->secret) {
      fputs("`", stdout);
      md_cell(stdout, e->def);
      fputs("`", stdout);
    } else {
      md_cell(stdout, default_text(e));
    }
    fputs(" | ", stdout);
    md_cell(stdout, e->help ? e->help : "");
    if (e->secret)
      fputs(" (secret)", stdout);
    fputs(" |\n", stdout);
  }
}

void q_cfg_print_help(const char *binary, const char *summary, const q_cfg_entry_t *table,
                      size_t n) {
  size_t wname = strlen("VARIABLE"), wtype = strlen("TYPE"), wdef = strlen("DEFAULT");
  for (size_t i = 0; i < n; i++) {
    char type[64];
    type_text(&table[i], type, sizeof type);
    size_t l = strlen(table[i].name);
    if (l > wname)
      wname = l;
    if ((l = strlen(type)) > wtype)
      wtype = l;
    if ((l = strlen(default_text(&table[i]))) > wdef)
      wdef = l;
  }
  printf("Usage: %s [--help | --help-markdown]\n", binary);
  if (summary && summary[0])
    printf("\n%s\n", summary);
  printf("\nConfiguration is read from these environment variables:\n\n");
  printf("  %-*s  %-*s  %-*s  %s\n", (int)wname, "VARIABLE", (int)wtype, "TYPE",
         (int)wdef, "DEFAULT", "DESCRIPTION");
  for (size_t i = 0; i < n; i++) {
    const q_cfg_entry_t *e = &table[i];
    char type[64];
    type_text(e, type, sizeof type);
    printf("  %-*s  %-*s  %-*s  %s%s\n", (int)wname, e->name, (int)wtype, type, (int)wdef,
           default_text(e), e->help ? e->help : "", e->secret ? " (secret)" : "");
  }
}

int q_cfg_load(const char *binary, const char *summary, q_cfg_entry_t *table, size_t n,
               int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      q_cfg_print_help(binary, summary, table, n);
      fflush(stdout);
      return 1;
    }
    if (strcmp(argv[i], "--help-markdown") == 0) {
      print_markdown(binary, summary, table, n);
      fflush(stdout);
      return 1;
    }
    fprintf(stderr,
            "%s: unknown argument '%.256s' (configuration comes from "
            "the environment; see --help)\n",
            binary, argv[i]);
    return Q_EINVAL;
  }
  int bad = 0;
  for (size_t i = 0; i < n; i++)
    if (load_entry(binary, &table[i]))
      bad = 1;
  return bad ? Q_EINVAL : 0;
}
