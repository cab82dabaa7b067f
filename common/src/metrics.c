/* metrics.c - the Prometheus registry behind metrics.h.
 *
 * One global registry holds families in registration order. Each family has
 * its own mutex guarding its series (one series per distinct label-value
 * tuple), found through a small open-addressing hash table. Rendering takes a
 * snapshot of the family list under the registry lock and then renders each
 * family under its own lock, so scrapes never block registration for long
 * and updates to different families never contend.
 *
 * Label values are normalised before use: at most Q_LABEL_VALUE_MAX bytes,
 * invalid UTF-8 replaced by U+FFFD. That keeps both memory (2000 series x
 * 16 labels x 256 bytes at worst per family) and the exposition (which must
 * be valid UTF-8) bounded whatever callers pass in. */
#include "quarry/metrics.h"

#include "quarry/error.h"
#include "quarry/log.h"
#include "quarry/validate.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERIES 2000       /* label sets per family (header contract) */
#define MAX_LABELS 16         /* label names per family */
#define MAX_BUCKETS 64        /* histogram upper bounds, without +Inf */
#define Q_LABEL_VALUE_MAX 256 /* bytes of one normalised label value */
#define MAX_NAME 128          /* metric and label name length */

typedef enum { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM } fam_type_t;

typedef struct series {
  uint64_t hash;
  double value;     /* counter / gauge */
  double sum;       /* histogram */
  uint64_t count;   /* histogram: observations */
  uint64_t *counts; /* histogram: per bucket, not cumulative; [nbuckets] is +Inf */
  char *values[];   /* nlabels normalised label values */
} series_t;

struct q_metric {
  char *name;
  char *help;
  fam_type_t type;
  size_t nlabels;
  char **labels;
  double *buckets;
  size_t nbuckets;
  double (*fn)(void *); /* set: value read at scrape time, no series */
  void *fn_ud;
  pthread_mutex_t mu;
  series_t **series; /* insertion order, nseries entries */
  size_t nseries;
  size_t series_cap;
  int32_t *index; /* hash table of series indices, -1 empty */
  size_t index_cap;
  int overflow_logged;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static q_metric_t **families;
static size_t nfamilies, families_cap;
static pthread_mutex_t process_mu = PTHREAD_MUTEX_INITIALIZER;
static int process_registered; /* guarded by process_mu */

static const double default_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10};

/* ---- names ---------------------------------------------------------------- */

static bool valid_metric_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME)
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
             (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

static bool valid_label_name(const char *s, size_t n) {
  if (n == 0 || n > MAX_NAME)
    return 0;
  if (n >= 2 && s[0] == '_' && s[1] == '_') /* reserved for Prometheus */
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
             (i > 0 && c >= '0' && c <= '9');
    if (!ok)
      return 0;
  }
  return 1;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Splits "a,b" into label names (spaces around names are ignored).
 * Returns the count, or Q_EINVAL (negative) when a name is invalid or
 * repeated; allocation failure counts as invalid. */
static int split_labels(const char *spec, char ***out) {
  *out = NULL;
  if (!spec || !*spec)
    return 0;
  char **names = calloc(MAX_LABELS, sizeof *names);
  if (!names)
    return Q_EINVAL;
  int n = 0;
  const char *p = spec;
  for (;;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && *p == ' ')
      p++, len--;
    while (len && p[len - 1] == ' ')
      len--;
    if (n == MAX_LABELS || !valid_label_name(p, len))
      goto fail;
    names[n] = strndup(p, len);
    if (!names[n])
      goto fail;
    for (int i = 0; i < n; i++)
      if (strcmp(names[i], names[n]) == 0) {
        n++;
        goto fail;
      }
    n++;
    if (!end)
      break;
    p = end + 1;
  }
  *out = names;
  return n;
fail:
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return Q_EINVAL;
}

/* ---- families --------------------------------------------------------------- */

static void family_free(q_metric_t *m) {
  if (!m)
    return;
  for (size_t i = 0; i < m->nseries; i++) {
    free(m->series[i]->counts);
    free(m->series[i]);
  }
  free(m->series);
  free(m->index);
  for (size_t i = 0; i < m->nlabels; i++)
    free(m->labels[i]);
  free(m->labels);
  free(m->buckets);
  free(m->name);
  free(m->help);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static q_metric_t *find_family(const char *name) {
  for (size_t i = 0; i < nfamilies; i++)
    if (strcmp(families[i]->name, name) == 0)
      return families[i];
  return NULL;
}

static bool same_labels(const q_metric_t *m, char **names, size_t n) {
  if (m->nlabels != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(m->labels[i], names[i]) != 0)
      return 0;
  return 1;
}

static series_t *series_get(q_metric_t *m, const char *const *labelvalues);

/* Creates and registers a family, or returns the existing one of that name
 * when it has the same type and labels. Caller holds no lock. */
static q_metric_t *family_register(const char *name, const char *help, fam_type_t type,
                                   const char *labels, const double *buckets,
                                   size_t nbuckets, double (*fn)(void *), void *ud) {
  if (!name || !valid_metric_name(name)) {
    q_log_error("metric: invalid name", "{s:s}", "name", name ? name : "(null)");
    return NULL;
  }
  /* promtool's lint (and every dashboard) expects _total exactly on
   * counters; a wrong name is a programming error worth stopping early. */
  if ((type == FAM_COUNTER) != ends_with(name, "_total")) {
    q_log_error("metric: counters and only counters end in _total", "{s:s}", "name",
                name);
    return NULL;
  }
  if (type == FAM_HISTOGRAM && (ends_with(name, "_bucket") || ends_with(name, "_sum") ||
                                ends_with(name, "_count"))) {
    q_log_error("metric: histogram name clashes with its series", "{s:s}", "name", name);
    return NULL;
  }
  char **names = NULL;
  int nl = split_labels(labels, &names);
  if (nl < 0) {
    q_log_error("metric: invalid label names", "{s:s,s:s}", "name", name, "labels",
                labels);
    return NULL;
  }
  if (type == FAM_HISTOGRAM) {
    for (int i = 0; i < nl; i++)
      if (strcmp(names[i], "le") == 0) {
        q_log_error("metric: histogram label 'le' is reserved", "{s:s}", "name", name);
        goto fail_names;
      }
    if (!buckets) {
      buckets = default_buckets;
      nbuckets = sizeof default_buckets / sizeof default_buckets[0];
    }
    int ok = nbuckets >= 1 && nbuckets <= MAX_BUCKETS;
    for (size_t i = 0; ok && i < nbuckets; i++)
      ok = isfinite(buckets[i]) && (i == 0 || buckets[i] > buckets[i - 1]);
    if (!ok) {
      q_log_error("metric: histogram buckets must be finite and ascending", "{s:s}",
                  "name", name);
      goto fail_names;
    }
  }

  q_metric_t *m = calloc(1, sizeof *m);
  if (!m)
    goto fail_names;
  pthread_mutex_init(&m->mu, NULL);
  m->type = type;
  m->labels = names;
  m->nlabels = (size_t)nl;
  names = NULL;
  m->fn = fn;
  m->fn_ud = ud;
  m->name = strdup(name);
  m->help = strdup(help && *help ? help : name);
  if (!m->name || !m->help)
    goto fail_m;
  if (type == FAM_HISTOGRAM) {
    m->buckets = malloc(nbuckets * sizeof *m->buckets);
    if (!m->buckets)
      goto fail_m;
    memcpy(m->buckets, buckets, nbuckets * sizeof *m->buckets);
    m->nbuckets = nbuckets;
  }
  /* A family without labels shows its zero value from the first scrape on,
   * so rate() works before the first event. */
  if (!fn && m->nlabels == 0 && !series_get(m, NULL))
    goto fail_m;

  pthread_mutex_lock(&reg_mu);
  q_metric_t *old = find_family(name);
  if (old) {
    pthread_mutex_unlock(&reg_mu);
    int same =
        old->type == type && !old->fn == !fn && same_labels(old, m->labels, m->nlabels);
    family_free(m);
    if (!same) {
      q_log_error("metric: registered twice with different type or labels", "{s:s}",
                  "name", name);
      return NULL;
    }
    return old;
  }
  if (nfamilies == families_cap) {
    size_t cap = families_cap ? families_cap * 2 : 32;
    q_metric_t **f = realloc(families, cap * sizeof *f);
    if (!f) {
      pthread_mutex_unlock(&reg_mu);
      family_free(m);
      return NULL;
    }
    families = f;
    families_cap = cap;
  }
  families[nfamilies++] = m;
  pthread_mutex_unlock(&reg_mu);
  return m;

fail_m:
  family_free(m);
  return NULL;
fail_names:
  for (int i = 0; names && i < nl; i++)
    free(names[i]);
  free(names);
  return NULL;
}

q_metric_t *q_metrics_counter(const char *name, const char *help, const char *labels) {
  return family_register(name, help, FAM_COUNTER, labels, NULL, 0, NULL, NULL);
}

q_metric_t *q_metrics_gauge(const char *name, const char *help, const char *labels) {
  return family_register(name, help, FAM_GAUGE, labels, NULL, 0, NULL, NULL);
}

q_metric_t *q_metrics_histogram(const char *name, const char *help, const char *labels,
                                const double *buckets, size_t nbuckets) {
  return family_register(name, help, FAM_HISTOGRAM, labels, buckets, nbuckets, NULL,
                         NULL);
}

void q_metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *),
                        void *ud) {
  if (!fn)
    return;
  family_register(name, help, FAM_GAUGE, NULL, NULL, 0, fn, ud);
}

/* ---- series ------------------------------------------------------------------ */

/* Copies at most Q_LABEL_VALUE_MAX bytes of s into out (NUL-terminated),
 * replacing each byte that does not start a valid UTF-8 sequence by U+FFFD
 * and never cutting a character in half. Returns the length. */
static size_t normalise_value(const char *s, char out[Q_LABEL_VALUE_MAX + 1]) {
  static const char repl[] = "\xEF\xBF\xBD";
  const char *p = s ? s : "";
  /* Every input byte yields at least one output byte, so nothing past
   * Q_LABEL_VALUE_MAX plus one sequence is ever read. */
  size_t left = strnlen(p, Q_LABEL_VALUE_MAX + 4), o = 0;
  /* ASCII, what nearly every label value is, is copied as it is: each of
   * its bytes is a whole sequence. */
  while (left && o < Q_LABEL_VALUE_MAX && (unsigned char)*p < 0x80) {
    out[o++] = *p++;
    left--;
  }
  while (left) {
    size_t n = q_valid_utf8_seq(p, left);
    const char *src = n ? p : repl;
    size_t len = n ? n : 3;
    if (o + len > Q_LABEL_VALUE_MAX)
      break;
    memcpy(out + o, src, len);
    o += len;
    p += n ? n : 1;
    left -= n ? n : 1;
  }
  out[o] = '\0';
  return o;
}

static uint64_t hash_values(char vals[][Q_LABEL_VALUE_MAX + 1], size_t n) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    for (const unsigned char *p = (const unsigned char *)vals[i]; *p; p++)
      h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xFF) * 1099511628211ULL; /* separator: 0xFF never occurs in UTF-8 */
  }
  return h;
}

static q_err_t index_grow(q_metric_t *m) {
  size_t cap = m->index_cap ? m->index_cap * 2 : 16;
  int32_t *idx = malloc(cap * sizeof *idx);
  if (!idx)
    return Q_ENOMEM;
  for (size_t i = 0; i < cap; i++)
    idx[i] = -1;
  for (size_t s = 0; s < m->nseries; s++) {
    size_t j = (size_t)m->series[s]->hash & (cap - 1);
    while (idx[j] >= 0)
      j = (j + 1) & (cap - 1);
    idx[j] = (int32_t)s;
  }
  free(m->index);
  m->index = idx;
  m->index_cap = cap;
  return 0;
}

/* Finds or creates the series for labelvalues; caller holds m->mu. NULL
 * when the family is full (the update is dropped) or memory ran out. */
static series_t *series_get(q_metric_t *m, const char *const *labelvalues) {
  char vals[MAX_LABELS][Q_LABEL_VALUE_MAX + 1];
  size_t lens[MAX_LABELS];
  for (size_t i = 0; i < m->nlabels; i++)
    lens[i] = normalise_value(labelvalues ? labelvalues[i] : "", vals[i]);
  uint64_t h = hash_values(vals, m->nlabels);

  if (m->index_cap) {
    for (size_t j = (size_t)h & (m->index_cap - 1); m->index[j] >= 0;
         j = (j + 1) & (m->index_cap - 1)) {
      series_t *s = m->series[m->index[j]];
      if (s->hash != h)
        continue;
      size_t i = 0;
      while (i < m->nlabels && strcmp(s->values[i], vals[i]) == 0)
        i++;
      if (i == m->nlabels)
        return s;
    }
  }

  if (m->nseries >= MAX_SERIES)
    return NULL;
  if ((m->nseries + 1) * 2 > m->index_cap && index_grow(m) != 0)
    return NULL;
  if (m->nseries == m->series_cap) {
    size_t cap = m->series_cap ? m->series_cap * 2 : 4;
    series_t **a = realloc(m->series, cap * sizeof *a);
    if (!a)
      return NULL;
    m->series = a;
    m->series_cap = cap;
  }
  size_t bytes = sizeof(series_t) + m->nlabels * sizeof(char *);
  for (size_t i = 0; i < m->nlabels; i++)
    bytes += lens[i] + 1;
  series_t *s = calloc(1, bytes);
  if (!s)
    return NULL;
  char *p = (char *)&s->values[m->nlabels];
  for (size_t i = 0; i < m->nlabels; i++) {
    memcpy(p, vals[i], lens[i] + 1);
    s->values[i] = p;
    p += lens[i] + 1;
  }
  if (m->type == FAM_HISTOGRAM) {
    s->counts = calloc(m->nbuckets + 1, sizeof *s->counts);
    if (!s->counts) {
      free(s);
      return NULL;
    }
  }
  s->hash = h;
  size_t j = (size_t)h & (m->index_cap - 1);
  while (m->index[j] >= 0)
    j = (j + 1) & (m->index_cap - 1);
  m->index[j] = (int32_t)m->nseries;
  m->series[m->nseries++] = s;
  return s;
}

enum op { OP_ADD, OP_SET, OP_OBSERVE };

static void update(q_metric_t *m, const char *const *labelvalues, enum op op, double v) {
  if (!m || m->fn)
    return;
  /* Counters only go up; NaN would poison a counter or a histogram sum. */
  if (op == OP_ADD && (isnan(v) || (m->type == FAM_COUNTER && v < 0)))
    return;
  if (op == OP_SET && m->type != FAM_GAUGE)
    return;
  if (op == OP_OBSERVE && (m->type != FAM_HISTOGRAM || isnan(v)))
    return;
  if (op != OP_OBSERVE && m->type == FAM_HISTOGRAM)
    return;
  if (m->nlabels && !labelvalues)
    return;

  int dropped = 0;
  pthread_mutex_lock(&m->mu);
  series_t *s = series_get(m, labelvalues);
  if (!s) {
    dropped = !m->overflow_logged;
    m->overflow_logged = 1;
  } else if (op == OP_ADD) {
    s->value += v;
  } else if (op == OP_SET) {
    s->value = v;
  } else {
    size_t b = 0;
    while (b < m->nbuckets && v > m->buckets[b])
      b++;
    s->counts[b]++;
    s->count++;
    s->sum += v;
  }
  pthread_mutex_unlock(&m->mu);
  if (dropped)
    q_log_warn("metric: label set limit reached, dropping new label sets", "{s:s,s:i}",
               "name", m->name, "limit", MAX_SERIES);
}

void q_metrics_add(q_metric_t *m, const char *const *labelvalues, double v) {
  update(m, labelvalues, OP_ADD, v);
}

void q_metrics_inc(q_metric_t *m, const char *const *labelvalues) {
  update(m, labelvalues, OP_ADD, 1);
}

void q_metrics_set(q_metric_t *m, const char *const *labelvalues, double v) {
  update(m, labelvalues, OP_SET, v);
}

void q_metrics_observe(q_metric_t *m, const char *const *labelvalues, double v) {
  update(m, labelvalues, OP_OBSERVE, v);
}

/* ---- process metrics ------------------------------------------------------------ */

static double proc_statm_field(int field) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  unsigned long vsize = 0, rss = 0;
  int n = fscanf(f, "%lu %lu", &vsize, &rss);
  fclose(f);
  if (n != 2)
    return 0;
  return (double)(field == 0 ? vsize : rss) * (double)sysconf(_SC_PAGESIZE);
}

static double rss_fn(void *ud) {
  return proc_statm_field(1);
}
static double vsize_fn(void *ud) {
  return proc_statm_field(0);
}

static double cpu_fn(void *ud) {
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
    return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double open_fds_fn(void *ud) {
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return 0;
  int self = dirfd(d);
  double n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (atoi(e->d_name) == self) /* the descriptor reading the directory */
      continue;
    n++;
  }
  closedir(d);
  return n;
}

static double max_fds_fn(void *ud) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
    return 0;
  return (double)rl.rlim_cur;
}

/* The process start in Unix seconds: /proc/self/stat's starttime (clock
 * ticks after boot, field 22) plus the boot time from /proc/stat. Falls back
 * to now, which is close enough when called at start-up. */
static double process_start_time(void) {
  double now = (double)time(NULL);
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f)
    return now;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *p = strrchr(buf, ')'); /* comm may contain spaces */
  if (!p)
    return now;
  unsigned long long start_ticks = 0;
  int field = 2;
  for (p++; *p && field < 22;) {
    while (*p == ' ')
      p++;
    field++;
    if (field == 22) {
      start_ticks = strtoull(p, NULL, 10);
      break;
    }
    while (*p && *p != ' ')
      p++;
  }
  long hz = sysconf(_SC_CLK_TCK);
  f = fopen("/proc/stat", "r");
  if (!f || hz <= 0) {
    if (f)
      fclose(f);
    return now;
  }
  unsigned long long btime = 0;
  while (fgets(buf, sizeof buf, f))
    if (sscanf(buf, "btime %llu", &btime) == 1)
      break;
  fclose(f);
  if (!btime || !start_ticks)
    return now;
  return (double)btime + (double)start_ticks / (double)hz;
}

static double start_time;
static double start_time_fn(void *ud) {
  return start_time;
}

static void register_process_metrics(void) {
  start_time = process_start_time();
  family_register("process_cpu_seconds_total",
                  "Total user and system CPU time spent in seconds.", FAM_COUNTER, NULL,
                  NULL, 0, cpu_fn, NULL);
  q_metrics_gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
                     rss_fn, NULL);
  q_metrics_gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                     vsize_fn, NULL);
  q_metrics_gauge_fn("process_open_fds", "Number of open file descriptors.", open_fds_fn,
                     NULL);
  q_metrics_gauge_fn("process_max_fds", "Maximum number of open file descriptors.",
                     max_fds_fn, NULL);
  q_metrics_gauge_fn("process_start_time_seconds",
                     "Start time of the process since unix epoch in seconds.",
                     start_time_fn, NULL);
}

/* ---- exposition ----------------------------------------------------------------- */

/* Shortest text that reads back as exactly v; +Inf/-Inf/NaN as Prometheus
 * spells them. */
static void format_double(char out[40], double v) {
  if (isnan(v)) {
    snprintf(out, 40, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(out, 40, v > 0 ? "+Inf" : "-Inf");
    return;
  }
  /* Whole numbers (counts, bucket bounds like 10) without an exponent. */
  if (v == floor(v) && fabs(v) < 1e15) {
    snprintf(out, 40, "%.0f", v);
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, 40, "%.*g", prec, v);
    if (strtod(out, NULL) == v)
      return;
  }
}

/* Escapes HELP text (backslash, newline) or, when quote is set, a label
 * value (also the double quote). */
static int put_escaped(q_buf_t *out, const char *s, int quote) {
  int rc = 0;
  const char *run = s;
  for (const char *p = s;; p++) {
    const char *esc = NULL;
    if (*p == '\\')
      esc = "\\\\";
    else if (*p == '\n')
      esc = "\\n";
    else if (quote && *p == '"')
      esc = "\\\"";
    if (!esc && *p)
      continue;
    if (p > run && (rc = q_buf_append(out, run, (size_t)(p - run))) != 0)
      return rc;
    if (!*p)
      return 0;
    if ((rc = q_buf_puts(out, esc)) != 0)
      return rc;
    run = p + 1;
  }
}

/* name{l1="v1",...,extra_name="extra_value"} value\n */
static int put_sample(q_buf_t *out, const q_metric_t *m, const char *suffix,
                      const series_t *s, const char *extra_name, const char *extra_value,
                      double v) {
  int rc = q_buf_printf(out, "%s%s", m->name, suffix);
  if (rc)
    return rc;
  size_t n = s ? m->nlabels : 0;
  if (n || extra_name) {
    if ((rc = q_buf_puts(out, "{")) != 0)
      return rc;
    for (size_t i = 0; i < n; i++) {
      if ((rc = q_buf_printf(out, "%s%s=\"", i ? "," : "", m->labels[i])) != 0 ||
          (rc = put_escaped(out, s->values[i], 1)) != 0 ||
          (rc = q_buf_puts(out, "\"")) != 0)
        return rc;
    }
    if (extra_name) {
      if ((rc = q_buf_printf(out, "%s%s=\"", n ? "," : "", extra_name)) != 0 ||
          (rc = put_escaped(out, extra_value, 1)) != 0 ||
          (rc = q_buf_puts(out, "\"")) != 0)
        return rc;
    }
    if ((rc = q_buf_puts(out, "}")) != 0)
      return rc;
  }
  char num[40];
  format_double(num, v);
  return q_buf_printf(out, " %s\n", num);
}

static int render_family(q_buf_t *out, q_metric_t *m) {
  static const char *type_names[] = {"counter", "gauge", "histogram"};
  int rc = q_buf_printf(out, "# HELP %s ", m->name);
  if (rc || (rc = put_escaped(out, m->help, 0)) != 0 ||
      (rc = q_buf_printf(out, "\n# TYPE %s %s\n", m->name, type_names[m->type])) != 0)
    return rc;
  if (m->fn)
    return put_sample(out, m, "", NULL, NULL, NULL, m->fn(m->fn_ud));

  pthread_mutex_lock(&m->mu);
  for (size_t i = 0; i < m->nseries && !rc; i++) {
    const series_t *s = m->series[i];
    if (m->type != FAM_HISTOGRAM) {
      rc = put_sample(out, m, "", s, NULL, NULL, s->value);
      continue;
    }
    uint64_t cum = 0;
    char le[40];
    for (size_t b = 0; b < m->nbuckets && !rc; b++) {
      cum += s->counts[b];
      format_double(le, m->buckets[b]);
      rc = put_sample(out, m, "_bucket", s, "le", le, (double)cum);
    }
    if (!rc)
      rc = put_sample(out, m, "_bucket", s, "le", "+Inf", (double)s->count);
    if (!rc)
      rc = put_sample(out, m, "_sum", s, NULL, NULL, s->sum);
    if (!rc)
      rc = put_sample(out, m, "_count", s, NULL, NULL, (double)s->count);
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

q_err_t q_metrics_render(q_buf_t *out) {
  pthread_mutex_lock(&process_mu);
  if (!process_registered)
    register_process_metrics();
  process_registered = 1;
  pthread_mutex_unlock(&process_mu);

  /* Families are only freed by q_metrics_shutdown, so a snapshot of the
   * pointers stays valid while rendering without the registry lock. */
  pthread_mutex_lock(&reg_mu);
  size_t n = nfamilies;
  q_metric_t **snap = malloc((n ? n : 1) * sizeof *snap);
  if (snap)
    memcpy(snap, families, n * sizeof *snap);
  pthread_mutex_unlock(&reg_mu);
  if (!snap)
    return Q_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++)
    rc = render_family(out, snap[i]);
  free(snap);
  return rc;
}

void q_metrics_shutdown(void) {
  pthread_mutex_lock(&process_mu);
  process_registered = 0;
  pthread_mutex_unlock(&process_mu);
  pthread_mutex_lock(&reg_mu);
  for (size_t i = 0; i < nfamilies; i++)
    family_free(families[i]);
  free(families);
  families = NULL;
  nfamilies = families_cap = 0;
  pthread_mutex_unlock(&reg_mu);
}
