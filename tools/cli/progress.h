/* progress.h - the live progress line of `quarry ingest` on a terminal.
 *
 *   uploading  37/120 files [########..........]  31%  12.4 MB/s  ETA 0:42
 *
 * Pure formatting and arithmetic, so the tests need no terminal: the caller
 * feeds counters and the monotonic clock, asks whether a redraw is due (at
 * most PROGRESS_REDRAW_MS apart, ~10 per second) and writes the line itself
 * ("\r" + line + clear-to-end-of-line). */
#ifndef QUARRY_CLI_PROGRESS_H
#define QUARRY_CLI_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#define PROGRESS_REDRAW_MS 100

/* Throughput over roughly the last few seconds (an exponentially weighted
 * moving average of bytes per second), and redraw pacing. */
typedef struct progress {
  long long start_ms;
  long long last_sample_ms;
  long long last_bytes;
  double rate; /* bytes per second; 0 until the first sample */
  bool have_rate;
  long long last_draw_ms; /* < 0: never drawn */
} progress_t;

/* What one line shows. */
typedef struct progress_view {
  const char *label; /* "uploading", "waiting" */
  long long done;    /* items finished */
  long long total;
  const char *unit;     /* "files", "jobs" */
  long long bytes_done; /* for the rate; both 0: no rate or ETA shown */
  long long bytes_total;
  double rate; /* bytes per second (progress_t.rate) */
  bool have_rate;
} progress_view_t;

void progress_init(progress_t *p, long long now_ms);

/* Adds a sample: bytes is the running total transferred so far. */
void progress_sample(progress_t *p, long long now_ms, long long bytes);

/* true when the line should be redrawn now (first time, forced, or at
 * least PROGRESS_REDRAW_MS since the last); records the draw when true. */
bool progress_due(progress_t *p, long long now_ms, bool force);

/* Writes the line (no \r, no newline) into out, at most width columns
 * (clamped to outlen - 1); parts drop out, least important first, when the
 * width is small. Returns the length. */
size_t progress_format(char *out, size_t outlen, const progress_view_t *v, int width);

/* "12.4 MB" style (decimal units: B, kB, MB, GB, TB). */
void progress_bytes(char *out, size_t outlen, double bytes);

/* "0:42", "12:05", "1:02:03"; "--:--" when unknown (< 0) or absurd. */
void progress_eta(char *out, size_t outlen, double seconds);

#endif
