/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small Prometheus registry: counters, gauges and histograms with fixed label names, rendered in the
 * text exposition format (version 0.0.4) into a Buf. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
        _METRIC_TYPE_MAX,
        _METRIC_TYPE_INVALID = -EINVAL,
} MetricType;

typedef struct Metric Metric;
typedef struct MetricsRegistry MetricsRegistry;

/* Each family holds at most this many label combinations; more are dropped (and counted in
 * kirod_metrics_series_dropped_total), so a bug or a hostile client cannot grow memory without bound. */
#define METRIC_MAX_SERIES 4096U
#define METRIC_MAX_LABELS 6U

int metrics_registry_new(MetricsRegistry **ret);
MetricsRegistry *metrics_registry_free(MetricsRegistry *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(MetricsRegistry *, metrics_registry_free);

/* Registers a family. 'labels' is NULL-terminated (NULL for none; at most METRIC_MAX_LABELS); histogram
 * 'buckets' are the upper bounds, ascending, without +Inf. Strings are not copied: they must be static.
 * Returns NULL on OOM; the metric_* functions accept NULL and then do nothing. */
Metric *metrics_register(MetricsRegistry *m, MetricType type, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t n_buckets);

/* 'values' holds one value per label name, in order (NULL for a family without labels); a NULL value
 * is rendered as "". Values are copied on first use of a combination. */
void metric_add(Metric *f, const char *const *values, double v);
void metric_set(Metric *f, const char *const *values, double v);
void metric_observe(Metric *f, const char *const *values, double v);
/* Drops every series of a family (for gauges that are rebuilt from a source before each scrape). */
void metric_clear(Metric *f);
/* The value of a counter or gauge (the count of a histogram); 0 when the combination is unused. */
double metric_get(Metric *f, const char *const *values);

int metrics_render(MetricsRegistry *m, Buf *out);
