/* test_metrics.c - the Prometheus registry: families, labels, escaping, the
 * label-set cap, histograms, process metrics and promtool's verdict on the
 * exposition. Criterion runs each test in its own process, so every test
 * starts from an empty registry. */
#include "quarry/buf.h"
#include "quarry/error.h"
#include "quarry/metrics.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char *render(void) {
  q_buf_t b;
  q_buf_init(&b, 64u << 20);
  cr_assert_eq(q_metrics_render(&b), 0);
  return q_buf_steal(&b);
}

/* The value of the sample whose line starts with prefix (name plus labels,
 * followed by a space), or NAN when absent. */
static double sample(const char *text, const char *prefix) {
  size_t n = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
      return strtod(p + n + 1, NULL);
  return NAN;
}

static int count_lines_starting(const char *text, const char *prefix) {
  int n = 0;
  size_t len = strlen(prefix);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
    if (strncmp(p, prefix, len) == 0)
      n++;
  return n;
}

/* Feeds text to `promtool check metrics`; returns its exit status and leaves
 * its complaints in out. */
static int promtool(const char *text, char *out, size_t outlen) {
  char path[] = "/tmp/q-promtool-XXXXXX";
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  close(fd);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "promtool check metrics > %s 2>&1", path);
  FILE *p = popen(cmd, "w");
  cr_assert_not_null(p);
  fputs(text, p);
  int st = pclose(p);
  FILE *f = fopen(path, "r");
  size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
  out[n] = '\0';
  if (f)
    fclose(f);
  unlink(path);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(metrics, counter_without_labels_starts_at_zero) {
  q_metric_t *c = q_metrics_counter("test_events_total", "Events seen.", NULL);
  cr_assert_not_null(c);
  char *t = render();
  cr_assert_not_null(strstr(t, "# HELP test_events_total Events seen.\n"));
  cr_assert_not_null(strstr(t, "# TYPE test_events_total counter\n"));
  cr_assert_eq(sample(t, "test_events_total"), 0);
  free(t);
  q_metrics_inc(c, NULL);
  q_metrics_add(c, NULL, 2.5);
  q_metrics_add(c, NULL, -10); /* counters never go down */
  t = render();
  cr_assert_eq(sample(t, "test_events_total"), 3.5);
  free(t);
}

Test(metrics, counter_and_gauge_with_labels) {
  q_metric_t *c = q_metrics_counter("test_requests_total", "Requests.", "route,code");
  q_metric_t *g = q_metrics_gauge("test_queue_depth", "Depth.", "queue");
  const char *a[] = {"/v1/query", "200"}, *b[] = {"/v1/query", "503"};
  q_metrics_inc(c, a);
  q_metrics_inc(c, a);
  q_metrics_inc(c, b);
  q_metrics_set(g, (const char *[]){"ingest"}, 7);
  q_metrics_add(g, (const char *[]){"ingest"}, -2);
  q_metrics_set(c, a, 100); /* set is for gauges only: ignored */
  char *t = render();
  cr_assert_eq(sample(t, "test_requests_total{route=\"/v1/query\",code=\"200\"}"), 2);
  cr_assert_eq(sample(t, "test_requests_total{route=\"/v1/query\",code=\"503\"}"), 1);
  cr_assert_eq(sample(t, "test_queue_depth{queue=\"ingest\"}"), 5);
  cr_assert_not_null(strstr(t, "# TYPE test_queue_depth gauge\n"));
  free(t);
}

Test(metrics, registering_twice_returns_the_same_family) {
  q_metric_t *a = q_metrics_counter("test_dup_total", "x", "k");
  q_metric_t *b = q_metrics_counter("test_dup_total", "x", "k");
  cr_assert_eq(a, b);
  /* Same name, other labels or type: refused. */
  cr_assert_null(q_metrics_counter("test_dup_total", "x", "other"));
  cr_assert_null(q_metrics_gauge("test_dup_total", "x", "k"));
  char *t = render();
  cr_assert_eq(count_lines_starting(t, "# TYPE test_dup_total "), 1);
  free(t);
}

Test(metrics, invalid_names_are_refused) {
  cr_assert_null(q_metrics_counter("bad name_total", "x", NULL));
  cr_assert_null(q_metrics_counter("9lives_total", "x", NULL));
  cr_assert_null(q_metrics_counter("no_suffix", "x", NULL));
  cr_assert_null(q_metrics_gauge("gauge_total", "x", NULL));
  cr_assert_null(q_metrics_gauge("test_g", "x", "ok,__reserved"));
  cr_assert_null(q_metrics_gauge("test_g", "x", "a,a"));
  cr_assert_null(q_metrics_gauge("test_g", "x", "a,,b"));
  cr_assert_null(q_metrics_histogram("test_h_seconds", "x", "le", NULL, 0));
  double bad[] = {1, 0.5};
  cr_assert_null(q_metrics_histogram("test_h_seconds", "x", NULL, bad, 2));
  /* Updating through a refused (NULL) family is harmless. */
  q_metrics_inc(NULL, NULL);
  q_metrics_observe(NULL, NULL, 1);
}

Test(metrics, label_values_are_escaped) {
  q_metric_t *g = q_metrics_gauge("test_escape", "Help with \\ and\nnewline.", "v");
  q_metrics_set(g, (const char *[]){"a\"b\\c\nd"}, 1);
  q_metrics_set(g, (const char *[]){"caf\xc3\xa9 \xff"}, 2); /* é, invalid byte */
  char *t = render();
  cr_assert_not_null(strstr(t, "# HELP test_escape Help with \\\\ and\\nnewline.\n"));
  cr_assert_eq(sample(t, "test_escape{v=\"a\\\"b\\\\c\\nd\"}"), 1, "%s", t);
  cr_assert_eq(sample(t, "test_escape{v=\"caf\xc3\xa9 \xef\xbf\xbd\"}"), 2, "%s", t);
  char msg[4096];
  cr_assert_eq(promtool(t, msg, sizeof msg), 0, "%s", msg);
  free(t);
}

Test(metrics, long_label_values_are_truncated) {
  q_metric_t *g = q_metrics_gauge("test_long", "x", "v");
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  q_metrics_set(g, (const char *[]){big}, 1);
  q_metrics_set(g, (const char *[]){big}, 2); /* same (truncated) series */
  char *t = render();
  cr_assert_eq(count_lines_starting(t, "test_long{"), 1);
  const char *line = strstr(t, "test_long{v=\"");
  cr_assert_not_null(line);
  cr_assert(strchr(line, '}') - line < 300);
  free(t);
}

Test(metrics, label_sets_are_capped_at_2000) {
  q_metric_t *c = q_metrics_counter("test_capped_total", "x", "id");
  char id[16];
  for (int i = 0; i < 2100; i++) {
    snprintf(id, sizeof id, "%d", i);
    q_metrics_inc(c, (const char *[]){id});
  }
  /* Existing series still update after the cap is reached. */
  q_metrics_inc(c, (const char *[]){"7"});
  char *t = render();
  cr_assert_eq(count_lines_starting(t, "test_capped_total{"), 2000);
  cr_assert_eq(sample(t, "test_capped_total{id=\"7\"}"), 2);
  cr_assert(isnan(sample(t, "test_capped_total{id=\"2050\"}")));
  free(t);
}

Test(metrics, histogram_buckets_are_cumulative) {
  q_metric_t *h =
      q_metrics_histogram("test_latency_seconds", "Latency.", "stage", NULL, 0);
  const char *lv[] = {"embed"};
  q_metrics_observe(h, lv, 0.003); /* -> le 0.005 */
  q_metrics_observe(h, lv, 0.2);   /* -> le 0.25 */
  q_metrics_observe(h, lv, 42);    /* -> +Inf only */
  char *t = render();
  cr_assert_not_null(strstr(t, "# TYPE test_latency_seconds histogram\n"));
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"0.001\"}"), 0);
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"0.0025\"}"),
               0);
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"0.005\"}"), 1);
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"0.25\"}"), 2);
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"10\"}"), 2);
  cr_assert_eq(sample(t, "test_latency_seconds_bucket{stage=\"embed\",le=\"+Inf\"}"), 3);
  cr_assert_float_eq(sample(t, "test_latency_seconds_sum{stage=\"embed\"}"), 42.203,
                     1e-9);
  cr_assert_eq(sample(t, "test_latency_seconds_count{stage=\"embed\"}"), 3);
  cr_assert_eq(count_lines_starting(t, "test_latency_seconds_bucket{"), 14);
  free(t);
}

Test(metrics, histogram_custom_buckets_and_boundaries) {
  double b[] = {1, 10, 100};
  q_metric_t *h = q_metrics_histogram("test_size_bytes", "Sizes.", NULL, b, 3);
  q_metrics_observe(h, NULL, 10); /* le is inclusive */
  q_metrics_observe(h, NULL, 10.5);
  char *t = render();
  cr_assert_eq(sample(t, "test_size_bytes_bucket{le=\"1\"}"), 0);
  cr_assert_eq(sample(t, "test_size_bytes_bucket{le=\"10\"}"), 1);
  cr_assert_eq(sample(t, "test_size_bytes_bucket{le=\"100\"}"), 2);
  cr_assert_eq(sample(t, "test_size_bytes_bucket{le=\"+Inf\"}"), 2);
  cr_assert_eq(sample(t, "test_size_bytes_count"), 2);
  free(t);
}

static double answer_fn(void *ud) {
  return *(double *)ud;
}

Test(metrics, gauge_fn_is_read_at_scrape_time) {
  static double v = 1;
  q_metrics_gauge_fn("test_index_chunks", "Chunks.", answer_fn, &v);
  char *t = render();
  cr_assert_eq(sample(t, "test_index_chunks"), 1);
  free(t);
  v = 99;
  t = render();
  cr_assert_eq(sample(t, "test_index_chunks"), 99);
  free(t);
}

Test(metrics, process_metrics_are_exposed) {
  char *t = render();
  cr_assert(sample(t, "process_resident_memory_bytes") > 0, "%s", t);
  cr_assert(sample(t, "process_cpu_seconds_total") >= 0);
  cr_assert(sample(t, "process_open_fds") >= 3);
  cr_assert(sample(t, "process_max_fds") > 0);
  double start = sample(t, "process_start_time_seconds");
  double now = (double)time(NULL);
  cr_assert(start > now - 3600 && start <= now + 1, "start %f now %f", start, now);
  cr_assert_not_null(strstr(t, "# TYPE process_cpu_seconds_total counter\n"));
  free(t);
  /* Rendering again does not register them twice. */
  t = render();
  cr_assert_eq(count_lines_starting(t, "# TYPE process_open_fds "), 1);
  free(t);
}

#define THREADS 8
#define PER_THREAD 20000

static void *hammer(void *arg) {
  q_metric_t *c = q_metrics_counter("test_hammer_total", "x", "t");
  q_metric_t *h = q_metrics_histogram("test_hammer_seconds", "x", NULL, NULL, 0);
  const char *lv[] = {(const char *)arg};
  for (int i = 0; i < PER_THREAD; i++) {
    q_metrics_inc(c, lv);
    q_metrics_observe(h, NULL, 0.01);
  }
  return NULL;
}

Test(metrics, concurrent_updates_are_not_lost) {
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&th[i], NULL, hammer, (void *)(i % 2 ? "odd" : "even"));
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  char *t = render();
  cr_assert_eq(sample(t, "test_hammer_total{t=\"odd\"}"), THREADS / 2 * PER_THREAD);
  cr_assert_eq(sample(t, "test_hammer_total{t=\"even\"}"), THREADS / 2 * PER_THREAD);
  cr_assert_eq(sample(t, "test_hammer_seconds_count"), THREADS * PER_THREAD);
  free(t);
}

Test(metrics, exposition_passes_promtool) {
  q_metric_t *c =
      q_metrics_counter("http_requests_total", "HTTP requests.", "route,method,code");
  q_metric_t *h = q_metrics_histogram("http_request_duration_seconds", "HTTP latency.",
                                      "route,method", NULL, 0);
  q_metric_t *g = q_metrics_gauge("quarry_index_chunks", "Chunks indexed.", NULL);
  q_metrics_counter("quarry_unused_total", "Never updated.", "kind");
  q_metrics_inc(c, (const char *[]){"/v1/query", "POST", "200"});
  q_metrics_observe(h, (const char *[]){"/v1/query", "POST"}, 0.12);
  q_metrics_set(g, NULL, 1234);
  char *t = render();
  char msg[4096];
  int st = promtool(t, msg, sizeof msg);
  cr_assert_eq(st, 0, "promtool exit %d: %s\n%s", st, msg, t);
  free(t);
}

Test(metrics, promtool_catches_a_broken_exposition) {
  /* The check above can fail: promtool rejects a counter without _total. */
  char msg[4096];
  int st = promtool("# HELP bad Bad.\n# TYPE bad counter\nbad 1\n", msg, sizeof msg);
  cr_assert_neq(st, 0, "%s", msg);
}

Test(metrics, shutdown_empties_the_registry) {
  q_metrics_counter("test_gone_total", "x", NULL);
  q_metrics_shutdown();
  char *t = render();
  cr_assert_null(strstr(t, "test_gone_total"));
  cr_assert_not_null(strstr(t, "process_open_fds"));
  free(t);
  q_metrics_shutdown();
}

Test(metrics, render_reports_a_full_buffer) {
  q_metrics_counter("test_small_total", "x", NULL);
  q_buf_t b;
  q_buf_init(&b, 64);
  cr_assert_eq(q_metrics_render(&b), Q_ETOOBIG);
  q_buf_cleanup(&b);
}
