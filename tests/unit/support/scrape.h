/* scrape.h - reading this process's metrics the way Prometheus would, for
 * tests that check what a module counted. */
#ifndef QUARRY_TEST_SCRAPE_H
#define QUARRY_TEST_SCRAPE_H

/* The value of one series in the text exposition q_metrics_render writes.
 * series is the full series name with its labels and the space before the
 * value, e.g. "quarry_feedback_outbox_total{outcome=\"lost\"} ". 0 when the
 * series is not there. */
double scrape_value(const char *series);

#endif
