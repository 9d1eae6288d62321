/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small Prometheus registry: families of series keyed by their label values in an open-addressing hash
 * table, so that updating one costs a hash of a few short strings and no allocation after its first use. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

typedef struct Series {
        char *key;              /* the label values, each followed by '\0' */
        size_t key_size;
        uint64_t hash;
        double value;           /* counter/gauge value; histogram sum */
        uint64_t count;         /* histogram count */
        uint64_t *buckets;      /* histogram: per bucket (not cumulative), n_buckets of them */
} Series;

struct Metric {
        MetricsRegistry *registry;
        MetricType type;
        const char *name;
        const char *help;
        const char *labels[METRIC_MAX_LABELS];
        size_t n_labels;
        const double *buckets;
        size_t n_buckets;

        Series **table;         /* capacity a power of two, at most half full */
        size_t capacity, n_series;
        Series **order;         /* in order of first use, for a stable rendering */
};

struct MetricsRegistry {
        Metric **families;
        size_t n_families;
        uint64_t dropped;
};

int metrics_registry_new(MetricsRegistry **ret) {
        MetricsRegistry *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        *ret = m;
        return 0;
}

static void series_free(Series *s) {
        if (!s)
                return;
        free(s->key);
        free(s->buckets);
        free(s);
}

void metric_clear(Metric *f) {
        if (!f)
                return;
        for (size_t i = 0; i < f->n_series; i++)
                series_free(f->order[i]);
        free(f->order);
        free(f->table);
        f->order = NULL;
        f->table = NULL;
        f->capacity = f->n_series = 0;
}

MetricsRegistry *metrics_registry_free(MetricsRegistry *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_families; i++) {
                metric_clear(m->families[i]);
                free(m->families[i]);
        }
        free(m->families);
        free(m);
        return NULL;
}

Metric *metrics_register(MetricsRegistry *m, MetricType type, const char *name, const char *help,
                         const char *const *labels, const double *buckets, size_t n_buckets) {
        assert(m);
        assert(name);
        assert(type >= 0 && type < _METRIC_TYPE_MAX);
        Metric *f = calloc(1, sizeof *f);
        if (!f)
                return NULL;
        *f = (Metric) { .registry = m, .type = type, .name = name, .help = help, .buckets = buckets,
                        .n_buckets = type == METRIC_HISTOGRAM ? n_buckets : 0 };
        for (const char *const *l = labels; l && *l; l++) {
                assert(f->n_labels < METRIC_MAX_LABELS);
                f->labels[f->n_labels++] = *l;
        }
        Metric **a = realloc(m->families, sizeof(Metric *) * (m->n_families + 1));
        if (!a) {
                free(f);
                return NULL;
        }
        m->families = a;
        m->families[m->n_families++] = f;
        return f;
}

/* Builds the key on the stack: label values are short (model names, ids); a longer one is cut. */
#define KEY_MAX 512U

static size_t make_key(const Metric *f, const char *const *values, char *key, uint64_t *ret_hash) {
        size_t n = 0;
        uint64_t h = UINT64_C(14695981039346656037);
        for (size_t i = 0; i < f->n_labels; i++) {
                const char *v = values && values[i] ? values[i] : "";
                size_t l = strnlen(v, KEY_MAX / METRIC_MAX_LABELS - 1);
                memcpy(key + n, v, l);
                n += l;
                key[n++] = 0;
        }
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char) key[i];
                h *= UINT64_C(1099511628211);
        }
        *ret_hash = h;
        return n;
}

static Series **slot_find(Series **table, size_t capacity, const char *key, size_t size, uint64_t hash) {
        size_t mask = capacity - 1;
        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                Series *s = table[i];
                if (!s || (s->hash == hash && s->key_size == size && memcmp(s->key, key, size) == 0))
                        return table + i;
        }
}

static int grow(Metric *f) {
        size_t capacity = f->capacity ? f->capacity * 2 : 16;
        Series **table = calloc(capacity, sizeof(Series *));
        if (!table)
                return -ENOMEM;
        Series **order = realloc(f->order, sizeof(Series *) * (capacity / 2));
        if (!order) {
                free(table);
                return -ENOMEM;
        }
        f->order = order;
        for (size_t i = 0; i < f->n_series; i++) {
                Series *s = f->order[i];
                *slot_find(table, capacity, s->key, s->key_size, s->hash) = s;
        }
        free(f->table);
        f->table = table;
        f->capacity = capacity;
        return 0;
}

static Series *series_get(Metric *f, const char *const *values, bool create) {
        char key[KEY_MAX];
        uint64_t hash;
        size_t size = make_key(f, values, key, &hash);

        if (f->capacity > 0) {
                Series **slot = slot_find(f->table, f->capacity, key, size, hash);
                if (*slot)
                        return *slot;
        }
        if (!create)
                return NULL;
        if (f->n_series >= METRIC_MAX_SERIES) {
                f->registry->dropped++;
                return NULL;
        }
        if ((f->n_series + 1) * 2 > f->capacity && grow(f) < 0)
                return NULL;
        Series *s = calloc(1, sizeof *s);
        if (!s)
                return NULL;
        s->key = malloc(size ?: 1);
        s->buckets = f->n_buckets > 0 ? calloc(f->n_buckets, sizeof(uint64_t)) : NULL;
        if (!s->key || (f->n_buckets > 0 && !s->buckets)) {
                series_free(s);
                return NULL;
        }
        memcpy(s->key, key, size);
        s->key_size = size;
        s->hash = hash;
        *slot_find(f->table, f->capacity, key, size, hash) = s;
        f->order[f->n_series++] = s;
        return s;
}

void metric_add(Metric *f, const char *const *values, double v) {
        if (!f)
                return;
        assert(f->type != METRIC_HISTOGRAM);
        Series *s = series_get(f, values, true);
        if (s)
                s->value += v;
}

void metric_set(Metric *f, const char *const *values, double v) {
        if (!f)
                return;
        assert(f->type == METRIC_GAUGE);
        Series *s = series_get(f, values, true);
        if (s)
                s->value = v;
}

void metric_observe(Metric *f, const char *const *values, double v) {
        if (!f)
                return;
        assert(f->type == METRIC_HISTOGRAM);
        Series *s = series_get(f, values, true);
        if (!s)
                return;
        s->value += v;
        s->count++;
        for (size_t i = 0; i < f->n_buckets; i++)
                if (v <= f->buckets[i]) {
                        s->buckets[i]++;
                        break;
                }
}

double metric_get(Metric *f, const char *const *values) {
        if (!f)
                return 0;
        Series *s = series_get(f, values, false);
        if (!s)
                return 0;
        return f->type == METRIC_HISTOGRAM ? (double) s->count : s->value;
}

static int put_double(Buf *out, double v) {
        if (isnan(v))
                return buf_puts(out, "NaN");
        if (isinf(v))
                return buf_puts(out, v > 0 ? "+Inf" : "-Inf");
        if (v == (double) (int64_t) v && fabs(v) < 1e15)
                return buf_putf(out, "%" PRIi64, (int64_t) v);
        return buf_putf(out, "%.17g", v);
}

/* Label values: backslash, double quote and line feed are escaped. */
static int put_label_value(Buf *out, const char *v) {
        int r = 0;
        for (const char *p = v; *p && r >= 0; p++)
                switch (*p) {
                case '\\': r = buf_puts(out, "\\\\"); break;
                case '"':  r = buf_puts(out, "\\\""); break;
                case '\n': r = buf_puts(out, "\\n"); break;
                default:   r = buf_put(out, p, 1);
                }
        return r;
}

/* HELP text: backslash and line feed are escaped. */
static int put_help(Buf *out, const char *v) {
        int r = 0;
        for (const char *p = v; *p && r >= 0; p++)
                r = *p == '\\' ? buf_puts(out, "\\\\") : *p == '\n' ? buf_puts(out, "\\n") : buf_put(out, p, 1);
        return r;
}

/* name{l1="v1",…[,le="x"]} */
static int put_series_name(Buf *out, const Metric *f, const Series *s, const char *suffix, const char *le) {
        int r = buf_puts(out, f->name);
        if (r >= 0 && suffix)
                r = buf_puts(out, suffix);
        if (r < 0 || (f->n_labels == 0 && !le))
                return r;
        r = buf_puts(out, "{");
        const char *v = s->key;
        for (size_t i = 0; i < f->n_labels && r >= 0; i++) {
                r = buf_putf(out, "%s%s=\"", i > 0 ? "," : "", f->labels[i]);
                if (r >= 0)
                        r = put_label_value(out, v);
                if (r >= 0)
                        r = buf_puts(out, "\"");
                v += strlen(v) + 1;
        }
        if (r >= 0 && le)
                r = buf_putf(out, "%sle=\"%s\"", f->n_labels > 0 ? "," : "", le);
        if (r >= 0)
                r = buf_puts(out, "}");
        return r;
}

static int render_family(Buf *out, const Metric *f) {
        static const char *const type_name[_METRIC_TYPE_MAX] = {
                [METRIC_COUNTER] = "counter", [METRIC_GAUGE] = "gauge", [METRIC_HISTOGRAM] = "histogram",
        };
        int r = buf_putf(out, "# HELP %s ", f->name);
        if (r >= 0)
                r = put_help(out, strempty(f->help));
        if (r >= 0)
                r = buf_putf(out, "\n# TYPE %s %s\n", f->name, type_name[f->type]);
        for (size_t i = 0; i < f->n_series && r >= 0; i++) {
                const Series *s = f->order[i];
                if (f->type != METRIC_HISTOGRAM) {
                        r = put_series_name(out, f, s, NULL, NULL);
                        if (r >= 0)
                                r = buf_puts(out, " ");
                        if (r >= 0)
                                r = put_double(out, s->value);
                        if (r >= 0)
                                r = buf_puts(out, "\n");
                        continue;
                }
                uint64_t cum = 0;
                for (size_t b = 0; b <= f->n_buckets && r >= 0; b++) {
                        char le[32];
                        if (b < f->n_buckets) {
                                cum += s->buckets[b];
                                (void) snprintf(le, sizeof le, "%g", f->buckets[b]);
                        } else
                                strcpy(le, "+Inf");
                        r = put_series_name(out, f, s, "_bucket", le);
                        if (r >= 0)
                                r = buf_putf(out, " %" PRIu64 "\n", b < f->n_buckets ? cum : s->count);
                }
                if (r >= 0)
                        r = put_series_name(out, f, s, "_sum", NULL);
                if (r >= 0)
                        r = buf_puts(out, " ");
                if (r >= 0)
                        r = put_double(out, s->value);
                if (r >= 0)
                        r = buf_puts(out, "\n");
                if (r >= 0)
                        r = put_series_name(out, f, s, "_count", NULL);
                if (r >= 0)
                        r = buf_putf(out, " %" PRIu64 "\n", s->count);
        }
        return r;
}

int metrics_render(MetricsRegistry *m, Buf *out) {
        int r = 0;
        assert(m);
        for (size_t i = 0; i < m->n_families && r >= 0; i++)
                r = render_family(out, m->families[i]);
        if (r >= 0)
                r = buf_putf(out, "# HELP kirod_metrics_series_dropped_total Label combinations not recorded because a family was full.\n"
                                  "# TYPE kirod_metrics_series_dropped_total counter\n"
                                  "kirod_metrics_series_dropped_total %" PRIu64 "\n", m->dropped);
        return r;
}
