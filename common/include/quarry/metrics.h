/* metrics.h - a small Prometheus registry and text-format exposition.
 *
 * Families are registered once at start (not thread-safe) and updated from
 * any thread (thread-safe). Label values are passed as an array whose length
 * equals the number of label names given at registration; a family keeps at
 * most 2000 label sets, beyond which updates are dropped (a bound against
 * label explosion). Names follow notes/observability.md: base units,
 * _total on counters, histograms as _bucket/_sum/_count.
 *
 * The registry also exposes process metrics (process_resident_memory_bytes,
 * process_cpu_seconds_total, process_open_fds, process_start_time_seconds)
 * and the standard gRPC server/client families used by grpc.c. */
#ifndef QUARRY_METRICS_H
#define QUARRY_METRICS_H

#include "quarry/buf.h"
#include <stddef.h>
#include "quarry/error.h"

typedef struct q_metric q_metric_t;

/* Register a family. labels is a comma-separated list of label names ("" or
 * NULL for none). Returns the family (owned by the registry, lives until
 * exit), or the existing one if the name is already registered. */
q_metric_t *q_metrics_counter(const char *name, const char *help, const char *labels);
q_metric_t *q_metrics_gauge(const char *name, const char *help, const char *labels);
/* buckets: upper bounds ascending, without +Inf; NULL uses latency defaults
 * (0.001 .. 10 seconds). */
q_metric_t *q_metrics_histogram(const char *name, const char *help, const char *labels,
                                const double *buckets, size_t nbuckets);

/* A gauge whose value is read by calling fn at scrape time (no labels). */
void q_metrics_gauge_fn(const char *name, const char *help, double (*fn)(void *),
                        void *ud);

/* Update. labelvalues may be NULL when the family has no labels. */
void q_metrics_add(q_metric_t *m, const char *const *labelvalues, double v);
void q_metrics_inc(q_metric_t *m, const char *const *labelvalues);
void q_metrics_set(q_metric_t *m, const char *const *labelvalues, double v);
void q_metrics_observe(q_metric_t *m, const char *const *labelvalues, double v);

/* Appends the whole registry in Prometheus text format 0.0.4. */
q_err_t q_metrics_render(q_buf_t *out);

/* Frees the registry (for leak checkers at exit). */
void q_metrics_shutdown(void);

#endif
