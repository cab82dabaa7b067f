/* test_progress.c - the progress line: units, ETA, layout at every width,
 * the moving-average rate and redraw pacing. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "progress.h"

Test(progress, bytes_in_decimal_units) {
  char b[32];
  progress_bytes(b, sizeof b, 0);
  cr_assert_str_eq(b, "0 B");
  progress_bytes(b, sizeof b, 999);
  cr_assert_str_eq(b, "999 B");
  progress_bytes(b, sizeof b, 1000);
  cr_assert_str_eq(b, "1.0 kB");
  progress_bytes(b, sizeof b, 12400000);
  cr_assert_str_eq(b, "12.4 MB");
  progress_bytes(b, sizeof b, 999960);
  cr_assert_str_eq(b, "1.0 MB", "no \"1000.0 kB\"");
  progress_bytes(b, sizeof b, 3.2e15);
  cr_assert_str_eq(b, "3200.0 TB");
}

Test(progress, eta_formats) {
  char b[32];
  progress_eta(b, sizeof b, 0);
  cr_assert_str_eq(b, "0:00");
  progress_eta(b, sizeof b, 41.2);
  cr_assert_str_eq(b, "0:42", "rounded up: never promise too early");
  progress_eta(b, sizeof b, 725);
  cr_assert_str_eq(b, "12:05");
  progress_eta(b, sizeof b, 3723);
  cr_assert_str_eq(b, "1:02:03");
  progress_eta(b, sizeof b, -1);
  cr_assert_str_eq(b, "--:--");
  progress_eta(b, sizeof b, NAN);
  cr_assert_str_eq(b, "--:--");
  progress_eta(b, sizeof b, 1e12);
  cr_assert_str_eq(b, "--:--");
}

static const progress_view_t UPLOADING = {
    .label = "uploading",
    .done = 37,
    .total = 120,
    .unit = "files",
    .bytes_done = 31000000,
    .bytes_total = 100000000,
    .rate = 12400000,
    .have_rate = true,
};

Test(progress, full_line_on_a_wide_terminal) {
  char line[256];
  size_t n = progress_format(line, sizeof line, &UPLOADING, 100);
  cr_assert_eq(n, strlen(line));
  cr_assert_leq(n, 100);
  cr_assert(strncmp(line, "uploading 37/120 files [", 24) == 0, "%s", line);
  cr_assert(strstr(line, "]   31%  12.4 MB/s  ETA 0:06"), "%s", line);
  /* 31% of a 40-cell bar is 12 cells. */
  const char *bar = strchr(line, '[') + 1;
  cr_assert_eq(strspn(bar, "#"), 12, "%s", line);
  cr_assert_eq(strspn(bar + 12, "."), 28, "%s", line);
}

Test(progress, fits_every_width) {
  char line[256];
  for (int w = 1; w <= 120; w++) {
    size_t n = progress_format(line, sizeof line, &UPLOADING, w);
    cr_assert_leq(n, (size_t)w, "width %d: \"%s\"", w, line);
    cr_assert_eq(n, strlen(line));
  }
  progress_format(line, sizeof line, &UPLOADING, 40);
  cr_assert_str_eq(line, "uploading 37/120 files   31%  12.4 MB/s",
                   "text before the bar; the ETA goes first");
  progress_format(line, sizeof line, &UPLOADING, 20);
  cr_assert_str_eq(line, "uploading 37/120 fil", "the counts, cut");
}

Test(progress, without_bytes_counts_items) {
  progress_view_t v = {.label = "waiting", .done = 3, .total = 4, .unit = "jobs"};
  char line[256];
  progress_format(line, sizeof line, &v, 80);
  cr_assert(strstr(line, "waiting 3/4 jobs ["), "%s", line);
  cr_assert(strstr(line, "]   75%"), "%s", line);
  cr_assert_leq(strlen(line), 80);
  cr_assert_null(strstr(line, "ETA"), "no bytes, no rate, no ETA: %s", line);
}

Test(progress, unknown_rate_shows_no_eta) {
  progress_view_t v = UPLOADING;
  v.have_rate = false;
  char line[256];
  progress_format(line, sizeof line, &v, 100);
  cr_assert(strstr(line, "0 B/s  ETA --:--"), "%s", line);
}

Test(progress, rate_follows_the_transfer) {
  progress_t p;
  progress_init(&p, 0);
  long long bytes = 0;
  for (long long t = 100; t <= 20000; t += 100) { /* 1 MB/s for 20 s */
    bytes += 100000;
    progress_sample(&p, t, bytes);
  }
  cr_assert(p.have_rate);
  cr_assert(fabs(p.rate - 1e6) < 1e4, "rate %f", p.rate);
  for (long long t = 20100; t <= 40000; t += 100) { /* then 4 MB/s */
    bytes += 400000;
    progress_sample(&p, t, bytes);
  }
  cr_assert(fabs(p.rate - 4e6) < 1e5, "adapts to the new speed: %f", p.rate);
}

Test(progress, ignores_samples_too_close_together) {
  progress_t p;
  progress_init(&p, 0);
  progress_sample(&p, 10, 1000000); /* 10 ms: would say 100 MB/s */
  cr_assert_not(p.have_rate);
  progress_sample(&p, 1000, 1000000);
  cr_assert(fabs(p.rate - 1e6) < 1, "%f", p.rate);
}

Test(progress, redraws_at_most_ten_times_a_second) {
  progress_t p;
  progress_init(&p, 0);
  int draws = 0;
  for (long long t = 0; t < 1000; t += 7)
    draws += progress_due(&p, t, false);
  cr_assert_leq(draws, 10);
  cr_assert_geq(draws, 9);
  cr_assert(progress_due(&p, 1001, true), "forced draws always happen");
}
