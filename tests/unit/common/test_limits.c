/* test_limits.c - the limit table (quarry/limits.h) and the documents that
 * state limits to clients: docs/api/openapi.yaml, where every maxLength,
 * maxItems and maximum carries "x-quarry-limit: Q_LIMIT_<name>" in the same
 * schema object and equals that limit, and docs/limits.md, which lists every
 * limit with its value.
 *
 * The YAML is read line by line, which is enough for the two styles the
 * file uses: flow mappings on one line ({type: string, maxLength: 512,
 * x-quarry-limit: Q_LIMIT_TITLE_BYTES}) and block mappings (one key per
 * line, siblings at the same indentation). Block scalars (description: |)
 * are skipped. Files are opened relative to the repository root, where
 * `make unit` runs the tests. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quarry/buf.h"
#include "quarry/limits.h"

#define OPENAPI_PATH "docs/api/openapi.yaml"
#define LIMITS_DOC_PATH "docs/limits.md"

/* ---- the table ------------------------------------------------------------ */

Test(limits, table_rows_are_well_formed_and_unique) {
  cr_assert_gt(Q_LIMIT_COUNT, 20);
  for (int i = 0; i < Q_LIMIT_COUNT; i++) {
    const q_limit_t *l = &q_limits[i];
    cr_assert(strncmp(l->name, "Q_LIMIT_", 8) == 0, "%s", l->name);
    cr_assert_gt(l->value, 0, "%s", l->name);
    char *end;
    cr_assert_eq(strtoll(l->text, &end, 10), l->value, "%s: text %s", l->name, l->text);
    cr_assert_eq(*end, '\0', "%s: text %s is not a decimal number", l->name, l->text);
    cr_assert(l->help && l->help[0], "%s has no description", l->name);
    cr_assert_eq(q_limit_find(l->name), l, "%s", l->name);
    for (int j = 0; j < i; j++)
      cr_assert_str_neq(q_limits[j].name, l->name, "%s is declared twice", l->name);
  }
}

Test(limits, constants_equal_the_table) {
#define CHECK(name, v, help)                                                             \
  cr_assert_eq(q_limits[Q_LIMIT_IDX_##name].value, Q_LIMIT_##name, #name);               \
  cr_assert_eq(Q_LIMIT_##name, v, #name);
  Q_LIMITS(CHECK)
#undef CHECK
  cr_assert_str_eq(Q_LIMIT_TEXT(UPLOAD_BYTES_DEFAULT), "104857600");
  cr_assert_eq(q_limit_find("TITLE_BYTES"), q_limit_find("Q_LIMIT_TITLE_BYTES"));
  cr_assert_null(q_limit_find("Q_LIMIT_NO_SUCH_THING"));
  cr_assert_null(q_limit_find(NULL));
}

/* ---- reading files ---------------------------------------------------------- */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "cannot open %s: run the tests from the repository root", path);
  q_buf_t b;
  q_buf_init(&b, 16u << 20);
  char chunk[8192];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
    cr_assert_eq(q_buf_append(&b, chunk, n), 0, "%s is too large", path);
  fclose(f);
  return q_buf_steal(&b);
}

typedef struct line {
  const char *s;
  size_t len;
} line_t;

/* Splits text (modified: line ends become NULs) into lines; *n gets the
 * count. The caller frees the array. */
static line_t *split_lines(char *text, int *n) {
  int cap = 1;
  for (const char *p = text; *p; p++)
    cap += *p == '\n';
  line_t *v = calloc((size_t)cap, sizeof *v);
  cr_assert_not_null(v);
  *n = 0;
  for (char *p = text; *p || *n == 0;) {
    char *e = strchr(p, '\n');
    if (e)
      *e = '\0';
    size_t len = strlen(p);
    if (len && p[len - 1] == '\r')
      p[--len] = '\0';
    v[(*n)++] = (line_t){p, len};
    if (!e)
      break;
    p = e + 1;
  }
  return v;
}

/* ---- the OpenAPI checker ---------------------------------------------------- */

typedef struct report {
  q_buf_t text;   /* one line per problem */
  int problems;   /* how many */
  int bounds;     /* bounded keywords checked */
  int *raw, *got; /* per line: bounded keywords in the text / checked */
} report_t;

static void problem(report_t *r, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(report_t *r, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  q_buf_printf(&r->text, "  line %d: %s\n", line, msg);
  r->problems++;
}

static const char *const bounded_keys[] = {"maxLength", "maxItems", "maximum"};

static int is_bounded_key(const char *k, size_t n) {
  for (size_t i = 0; i < 3; i++)
    if (strlen(bounded_keys[i]) == n && memcmp(k, bounded_keys[i], n) == 0)
      return 1;
  return 0;
}

static int key_is(const char *k, size_t n, const char *want) {
  return strlen(want) == n && memcmp(k, want, n) == 0;
}

/* One key: value pair of a mapping, with the line it is on (1-based). */
typedef struct entry {
  const char *key, *val;
  size_t klen, vlen;
  int line;
} entry_t;

/* Checks one schema object: its bounded keywords and its annotation. */
static void check_object(report_t *r, const entry_t *e, int n) {
  const entry_t *note = NULL;
  int nbounds = 0;
  for (int i = 0; i < n; i++) {
    if (key_is(e[i].key, e[i].klen, "x-quarry-limit")) {
      if (note)
        problem(r, e[i].line,
                "a second x-quarry-limit in one schema object (first on line %d)",
                note->line);
      note = &e[i];
    }
    nbounds += is_bounded_key(e[i].key, e[i].klen);
  }
  char name[128] = "";
  const q_limit_t *lim = NULL;
  if (note) {
    snprintf(name, sizeof name, "%.*s", (int)note->vlen, note->val);
    lim = strncmp(name, "Q_LIMIT_", 8) == 0 ? q_limit_find(name) : NULL;
    if (!lim)
      problem(r, note->line, "x-quarry-limit: %s is not a limit of quarry/limits.h",
              name);
    if (!nbounds)
      problem(r, note->line,
              "x-quarry-limit: %s annotates no maxLength, maxItems or maximum", name);
  }
  for (int i = 0; i < n; i++) {
    if (!is_bounded_key(e[i].key, e[i].klen))
      continue;
    r->bounds++;
    r->got[e[i].line - 1]++;
    char val[32];
    snprintf(val, sizeof val, "%.*s", (int)e[i].vlen, e[i].val);
    char *end;
    long long v = strtoll(val, &end, 10);
    if (!val[0] || *end) {
      problem(r, e[i].line, "%.*s: \"%s\" is not a whole number", (int)e[i].klen,
              e[i].key, val);
      continue;
    }
    if (!note)
      problem(r, e[i].line,
              "%.*s: %lld has no x-quarry-limit in its schema object: name the limit of "
              "quarry/limits.h it comes from",
              (int)e[i].klen, e[i].key, v);
    else if (lim && lim->value != v)
      problem(r, e[i].line, "%.*s: %lld, but %s (named on line %d) is %lld",
              (int)e[i].klen, e[i].key, v, name, note->line, lim->value);
  }
}

static size_t trim_left(const char *s, size_t i, size_t n) {
  while (i < n && (s[i] == ' ' || s[i] == '\t'))
    i++;
  return i;
}

static size_t trim_right(const char *s, size_t lo, size_t hi) {
  while (hi > lo && (s[hi - 1] == ' ' || s[hi - 1] == '\t'))
    hi--;
  return hi;
}

/* Parses "key: value" in s[lo..hi) (a flow entry or what follows a block
 * line's indentation). 1 with e filled, 0 when it is not such a pair. */
static int parse_pair(const char *s, size_t lo, size_t hi, int line, entry_t *e) {
  lo = trim_left(s, lo, hi);
  hi = trim_right(s, lo, hi);
  for (size_t i = lo; i < hi; i++) {
    if (s[i] == '\'' || s[i] == '"' || s[i] == '{' || s[i] == '[')
      return 0; /* a quoted or nested key: not one of ours */
    if (s[i] == ':' && (i + 1 == hi || s[i + 1] == ' ')) {
      size_t v = trim_left(s, i + 1, hi);
      size_t ve = hi;
      /* A comment ends a block value. */
      for (size_t k = v; k < hi; k++)
        if (s[k] == '#' && k > v && s[k - 1] == ' ') {
          ve = trim_right(s, v, k);
          break;
        }
      *e = (entry_t){s + lo, s + v, trim_right(s, lo, i) - lo, ve - v, line};
      return 1;
    }
  }
  return 0;
}

/* Whether a quote at s[i] opens a quoted scalar (YAML quotes only at the
 * start of a scalar; "caller's" is plain text). */
static int opens_quote(const char *s, size_t i) {
  size_t k = i;
  while (k > 0 && s[k - 1] == ' ')
    k--;
  return k == 0 || strchr(":,{[-", s[k - 1]) != NULL;
}

/* Checks the flow mappings on one line: every {...} that opens and closes
 * on it, inner ones included; their top-level entries form one object.
 * Returns how many stay open at the end of the line. */
static int check_flow(report_t *r, const line_t *l, int lineno) {
  const char *s = l->s;
  size_t open[32];
  int depth = 0;
  char quote = 0;
  for (size_t i = 0; i < l->len; i++) {
    char c = s[i];
    if (quote) {
      if (c == quote && quote == '\'' && i + 1 < l->len && s[i + 1] == '\'')
        i++; /* '' inside single quotes */
      else if (c == '\\' && quote == '"')
        i++;
      else if (c == quote)
        quote = 0;
      continue;
    }
    if ((c == '\'' || c == '"') && opens_quote(s, i)) {
      quote = c;
    } else if (c == '#' && i > 0 && s[i - 1] == ' ') {
      break; /* a comment */
    } else if (c == '{') {
      cr_assert_lt(depth, 32, "line %d: flow mappings nested too deep", lineno);
      open[depth++] = i;
    } else if (c == '}' && depth > 0) {
      size_t lo = open[--depth] + 1, hi = i;
      entry_t e[64];
      int n = 0, nest = 0;
      char q = 0;
      size_t start = lo;
      for (size_t k = lo; k <= hi; k++) {
        char d = k < hi ? s[k] : ',';
        if (q) {
          if (d == q && q == '\'' && k + 1 < hi && s[k + 1] == '\'')
            k++;
          else if (d == '\\' && q == '"')
            k++;
          else if (d == q)
            q = 0;
          continue;
        }
        if ((d == '\'' || d == '"') && k < hi && opens_quote(s, k))
          q = d;
        else if (d == '{' || d == '[')
          nest++;
        else if (d == '}' || d == ']')
          nest--;
        else if (d == ',' && nest == 0) {
          if (n < 64 && parse_pair(s, start, k, lineno, &e[n]))
            n++;
          start = k + 1;
        }
      }
      check_object(r, e, n);
    }
  }
  return depth;
}

/* The change in open flow braces over a line that continues a flow mapping
 * (quotes respected, like check_flow). */
static int brace_balance(const line_t *l) {
  int d = 0;
  char quote = 0;
  for (size_t i = 0; i < l->len; i++) {
    char c = l->s[i];
    if (quote) {
      if (c == '\\' && quote == '"')
        i++;
      else if (c == quote)
        quote = 0;
    } else if ((c == '\'' || c == '"') && opens_quote(l->s, i)) {
      quote = c;
    } else {
      d += (c == '{') - (c == '}');
    }
  }
  return d;
}

/* Where a block line's key starts: after the indentation and any "- "
 * sequence markers. *dash says whether there was a marker. */
static size_t key_col(const line_t *l, int *dash) {
  size_t i = trim_left(l->s, 0, l->len);
  *dash = 0;
  while (i + 1 < l->len && l->s[i] == '-' && l->s[i + 1] == ' ') {
    i = trim_left(l->s, i + 2, l->len);
    *dash = 1;
  }
  return i;
}

static int blank_or_comment(const line_t *l) {
  size_t i = trim_left(l->s, 0, l->len);
  return i == l->len || l->s[i] == '#';
}

/* Marks the lines that are the text of block scalars ("description: |"
 * and the lines under it), where "maxLength: 5" would be prose. */
static void mark_block_scalars(const line_t *v, int n, char *text) {
  for (int i = 0; i < n; i++) {
    if (text[i] || blank_or_comment(&v[i]))
      continue;
    int dash;
    size_t col = key_col(&v[i], &dash);
    entry_t e;
    if (!parse_pair(v[i].s, col, v[i].len, i + 1, &e) || e.vlen == 0 ||
        (e.val[0] != '|' && e.val[0] != '>'))
      continue;
    for (int j = i + 1; j < n; j++) {
      size_t ind = trim_left(v[j].s, 0, v[j].len);
      if (ind < v[j].len && ind <= col)
        break;
      text[j] = 1;
    }
  }
}

/* Checks the block mapping that holds line i (0-based; its key starts at
 * column col), unless done[] says it was checked already. */
static void check_block(report_t *r, const line_t *v, int n, const char *text, char *done,
                        int i, size_t col, int dash) {
  int first = i, last = i;
  for (int j = i - 1; j >= 0 && !dash; j--) {
    if (text[j] || blank_or_comment(&v[j]))
      continue;
    int d;
    size_t c = key_col(&v[j], &d);
    if (c < col)
      break;
    if (c == col) {
      first = j;
      if (d)
        break;
    }
  }
  for (int j = i + 1; j < n; j++) {
    if (text[j] || blank_or_comment(&v[j]))
      continue;
    int d;
    size_t c = key_col(&v[j], &d);
    if (c < col || (c == col && d))
      break;
    if (c == col)
      last = j;
  }
  if (done[first])
    return;
  done[first] = 1;
  entry_t e[64];
  int ne = 0;
  for (int j = first; j <= last && ne < 64; j++) {
    if (text[j] || blank_or_comment(&v[j]))
      continue;
    int d;
    if (key_col(&v[j], &d) == col && parse_pair(v[j].s, col, v[j].len, j + 1, &e[ne]))
      ne++;
  }
  check_object(r, e, ne);
}

/* Checks a whole OpenAPI document held in text (modified). */
static void check_openapi(char *yaml, report_t *r) {
  int n;
  line_t *v = split_lines(yaml, &n);
  char *text = calloc((size_t)n, 1), *done = calloc((size_t)n, 1);
  r->raw = calloc((size_t)n, sizeof *r->raw);
  r->got = calloc((size_t)n, sizeof *r->got);
  cr_assert(text && done && r->raw && r->got);
  mark_block_scalars(v, n, text);
  int unclosed = 0; /* flow braces left open by earlier lines */
  for (int i = 0; i < n; i++) {
    if (text[i] || blank_or_comment(&v[i]))
      continue;
    for (size_t k = 0; k < 3; k++) {
      char key[32];
      snprintf(key, sizeof key, "%s:", bounded_keys[k]);
      for (const char *p = v[i].s; (p = strstr(p, key)) != NULL; p++)
        r->raw[i]++;
    }
    if (unclosed > 0) { /* inside a flow mapping written over several lines */
      unclosed += brace_balance(&v[i]);
      continue;
    }
    unclosed = check_flow(r, &v[i], i + 1);
    int dash;
    size_t col = key_col(&v[i], &dash);
    entry_t e;
    if (parse_pair(v[i].s, col, v[i].len, i + 1, &e) &&
        (is_bounded_key(e.key, e.klen) || key_is(e.key, e.klen, "x-quarry-limit")) &&
        (e.vlen == 0 || e.val[0] != '{'))
      check_block(r, v, n, text, done, i, col, dash);
  }
  /* Whatever the two styles above did not see is a bound nobody checked. */
  for (int i = 0; i < n; i++)
    if (r->raw[i] != r->got[i])
      problem(r, i + 1,
              "%d bound(s) written in a form this check cannot read (keep a flow "
              "mapping on one line)",
              r->raw[i] - r->got[i]);
  free(r->raw);
  free(r->got);
  free(text);
  free(done);
  free(v);
}

static void report_init(report_t *r) {
  memset(r, 0, sizeof *r);
  q_buf_init(&r->text, 1u << 20);
}

Test(limits, openapi_bounds_name_their_limit_and_agree_with_it) {
  char *yaml = slurp(OPENAPI_PATH);
  report_t r;
  report_init(&r);
  check_openapi(yaml, &r);
  cr_assert_eq(r.problems, 0,
               "%s disagrees with quarry/limits.h in %d place(s):\n%s"
               "Every maxLength, maxItems and maximum needs \"x-quarry-limit: "
               "Q_LIMIT_<name>\" in the same schema object, with the limit's value.",
               OPENAPI_PATH, r.problems, r.text.data ? r.text.data : "");
  /* Request and response schemas together state well over a dozen. */
  cr_assert_geq(r.bounds, 20, "only %d bounds found in %s: is the parser blind?",
                r.bounds, OPENAPI_PATH);
  q_buf_cleanup(&r.text);
  free(yaml);
}

Test(limits, openapi_checker_reports_each_disagreement_with_its_line) {
  char yaml[] =
      "paths:\n" /* 1 */
      "  ok: {type: string, maxLength: 512, x-quarry-limit: Q_LIMIT_TITLE_BYTES}\n" /* 2
                                                                                     */
      "  missing: {type: string, maxLength: 10}\n"                                /* 3 */
      "  wrong:\n"                                                                /* 4 */
      "    type: string\n"                                                        /* 5 */
      "    maxLength: 100\n"                                                      /* 6 */
      "    x-quarry-limit: Q_LIMIT_TITLE_BYTES\n"                                 /* 7 */
      "  unknown: {type: integer, maximum: 3, x-quarry-limit: Q_LIMIT_NO_SUCH}\n" /* 8 */
      "  pattern: {type: string, pattern: '^a{1,3}$', description: it's fine}\n"  /* 9 */
      "  text:\n"                                                                 /* 10 */
      "    description: |\n"                                                      /* 11 */
      "      maxLength: 7 in prose is no bound\n"                                 /* 12 */
      "  list:\n"                                                                 /* 13 */
      "    type: array\n"                                                         /* 14 */
      "    maxItems: 64\n"                                                        /* 15 */
      "    x-quarry-limit: Q_LIMIT_FEEDBACK_CHUNK_IDS\n"                          /* 16 */
      "    items: {maxLength: 128, x-quarry-limit: Q_LIMIT_CHUNK_ID_BYTES}\n"     /* 17 */
      "  seq:\n"                                                                  /* 18 */
      "    - name: x\n"                                                           /* 19 */
      "      maxLength: 64\n"                                                     /* 20 */
      "    - name: y\n"                                                           /* 21 */
      "      x-quarry-limit: Q_LIMIT_TITLE_BYTES\n"                               /* 22 */
      "  split: {type: string,\n"                                                 /* 23 */
      "          maxLength: 5}\n";                                                /* 24 */
  report_t r;
  report_init(&r);
  check_openapi(yaml, &r);
  const char *text = r.text.data ? r.text.data : "";
  static const char *const want[] = {
      "line 3: maxLength: 10 has no x-quarry-limit",
      "line 6: maxLength: 100, but Q_LIMIT_TITLE_BYTES (named on line 7) is 512",
      "line 8: x-quarry-limit: Q_LIMIT_NO_SUCH is not a limit",
      "line 20: maxLength: 64 has no x-quarry-limit",
      "line 22: x-quarry-limit: Q_LIMIT_TITLE_BYTES annotates no maxLength",
      "line 24: 1 bound(s) written in a form this check cannot read",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    cr_assert(strstr(text, want[i]), "missing \"%s\" in:\n%s", want[i], text);
  cr_assert_eq(r.problems, 6, "%s", text);
  cr_assert_eq(r.bounds, 7, "bounds checked (lines 2 3 6 8 15 17 20)");
  q_buf_cleanup(&r.text);
}

/* ---- docs/limits.md --------------------------------------------------------- */

Test(limits, docs_table_lists_every_limit_with_its_value) {
  char *doc = slurp(LIMITS_DOC_PATH);
  int n;
  line_t *v = split_lines(doc, &n);
  int seen[Q_LIMIT_COUNT] = {0};
  q_buf_t errs;
  q_buf_init(&errs, 1u << 16);
  for (int i = 0; i < n; i++) {
    /* Rows look like: | `Q_LIMIT_TITLE_BYTES` | 512 | ... | */
    const char *p = strstr(v[i].s, "| `Q_LIMIT_");
    if (p != v[i].s)
      continue;
    char name[128];
    long long value;
    if (sscanf(p, "| `%127[A-Z0-9_]` | %lld |", name, &value) != 2) {
      q_buf_printf(&errs, "  line %d: not a row of the form | `Q_LIMIT_X` | value |\n",
                   i + 1);
      continue;
    }
    const q_limit_t *l = q_limit_find(name);
    if (!l) {
      q_buf_printf(&errs, "  line %d: %s is not in quarry/limits.h\n", i + 1, name);
      continue;
    }
    if (l->value != value)
      q_buf_printf(&errs, "  line %d: %s is %lld here but %lld in quarry/limits.h\n",
                   i + 1, name, value, l->value);
    seen[l - q_limits]++;
  }
  for (int k = 0; k < Q_LIMIT_COUNT; k++)
    if (seen[k] != 1)
      q_buf_printf(&errs, "  %s appears %d times (once wanted)\n", q_limits[k].name,
                   seen[k]);
  cr_assert_eq(errs.len, 0, "%s disagrees with quarry/limits.h:\n%s", LIMITS_DOC_PATH,
               errs.data ? errs.data : "");
  q_buf_cleanup(&errs);
  free(v);
  free(doc);
}
