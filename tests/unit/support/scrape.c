/* scrape.c - reading this process's metrics in tests (see scrape.h). */
#include "scrape.h"

#include "quarry/buf.h"
#include "quarry/metrics.h"

#include <stdlib.h>
#include <string.h>

double scrape_value(const char *series) {
  q_buf_t b;
  q_buf_init(&b, 1 << 20);
  q_metrics_render(&b);
  const char *p = b.data ? strstr(b.data, series) : NULL;
  double v = p ? strtod(p + strlen(series), NULL) : 0;
  q_buf_cleanup(&b);
  return v;
}
