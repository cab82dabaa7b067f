/* progress.c - progress line arithmetic and layout (see progress.h). */
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Time constant of the moving average: the rate mostly reflects the last
 * few seconds, so it follows a change of link speed without jittering per
 * sample. */
#define RATE_TAU_S 3.0

void progress_init(progress_t *p, long long now_ms) {
  memset(p, 0, sizeof *p);
  p->start_ms = now_ms;
  p->last_sample_ms = now_ms;
  p->last_draw_ms = -1;
}

void progress_sample(progress_t *p, long long now_ms, long long bytes) {
  long long dt_ms = now_ms - p->last_sample_ms;
  if (dt_ms < 50) /* too short an interval says nothing about the rate */
    return;
  double dt = (double)dt_ms / 1000.0;
  double inst = (double)(bytes - p->last_bytes) / dt;
  if (inst < 0)
    inst = 0;
  if (!p->have_rate) {
    p->rate = inst;
    p->have_rate = true;
  } else {
    double a = 1.0 - exp(-dt / RATE_TAU_S);
    p->rate += a * (inst - p->rate);
  }
  p->last_sample_ms = now_ms;
  p->last_bytes = bytes;
}

bool progress_due(progress_t *p, long long now_ms, bool force) {
  if (!force && p->last_draw_ms >= 0 && now_ms - p->last_draw_ms < PROGRESS_REDRAW_MS)
    return false;
  p->last_draw_ms = now_ms;
  return true;
}

void progress_bytes(char *out, size_t outlen, double bytes) {
  static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 999.95 && u < 4) {
    bytes /= 1000.0;
    u++;
  }
  if (u == 0)
    snprintf(out, outlen, "%.0f %s", bytes, units[u]);
  else
    snprintf(out, outlen, "%.1f %s", bytes, units[u]);
}

void progress_eta(char *out, size_t outlen, double seconds) {
  if (!(seconds >= 0) || seconds > 99 * 3600.0) {
    snprintf(out, outlen, "--:--");
    return;
  }
  long s = (long)ceil(seconds);
  if (s >= 3600)
    snprintf(out, outlen, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else
    snprintf(out, outlen, "%ld:%02ld", s / 60, s % 60);
}

size_t progress_format(char *out, size_t outlen, const progress_view_t *v, int width) {
  if (outlen == 0)
    return 0;
  if (width < 1 || (size_t)width > outlen - 1)
    width = (int)(outlen - 1);
  double frac = v->total > 0 ? (double)v->done / (double)v->total : 0.0;
  bool bytes = v->bytes_total > 0;
  if (bytes) /* bytes say more about the time left than file counts do */
    frac = (double)v->bytes_done / (double)v->bytes_total;
  if (frac > 1)
    frac = 1;
  if (frac < 0)
    frac = 0;

  char head[96], pct[8], rate[32] = "", eta[32] = "";
  snprintf(head, sizeof head, "%s %lld/%lld %s", v->label, v->done, v->total, v->unit);
  snprintf(pct, sizeof pct, "%3d%%", (int)floor(frac * 100.0));
  if (bytes) {
    char b[24], e[16];
    progress_bytes(b, sizeof b, v->have_rate ? v->rate : 0);
    snprintf(rate, sizeof rate, "%s/s", b);
    double left = (double)(v->bytes_total - v->bytes_done);
    progress_eta(e, sizeof e, v->have_rate && v->rate > 0 ? left / v->rate : -1);
    snprintf(eta, sizeof eta, "ETA %s", e);
  }

  /* The text parts come first: drop them from the least useful end until
   * they fit; the bar takes what room is left, when that is 10 cells or
   * more. */
  const char *parts[4] = {head, pct, rate, eta};
  int n = bytes ? 4 : 2;
  size_t need;
  for (;;) {
    need = strlen(head);
    for (int i = 1; i < n; i++)
      need += 2 + strlen(parts[i]);
    if (n == 1 || need <= (size_t)width)
      break;
    n--;
  }
  int bar = (int)width - (int)need - 3; /* " [" and "]" */
  if (bar > 40)
    bar = 40;
  size_t len = 0;
  int w = snprintf(out, outlen, "%s", head);
  len = w > 0 ? (size_t)w : 0;
  if (bar >= 10 && len + (size_t)bar + 4 < outlen) {
    int fill = (int)floor(frac * bar + 1e-9);
    out[len++] = ' ';
    out[len++] = '[';
    for (int i = 0; i < bar; i++)
      out[len++] = i < fill ? '#' : '.';
    out[len++] = ']';
    out[len] = '\0';
  }
  for (int i = 1; i < n; i++) {
    w = snprintf(out + len, outlen - len, "  %s", parts[i]);
    if (w > 0)
      len = len + (size_t)w < outlen ? len + (size_t)w : outlen - 1;
  }
  if (len > (size_t)width) {
    len = (size_t)width;
    out[len] = '\0';
  }
  return len;
}
