/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What kiro-proxyd's metrics cost: CPU per request for the updates one chat request makes (the same calls
 * as chat_record(), the upstream and token-cache hooks), the per-request log line at info, and the size
 * and render time of a /metrics scrape with 300 credentials and 20 models. Run by bench/run. */
#include <stdio.h>
#include <time.h>

#include "log.h"
#include "auth/auth-credmetrics.h"
#include "chat/chat-metrics.h"

static double now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static const char *const apis[] = { "openai", "anthropic", "responses" };
static const char *const outcomes[] = { "complete", "truncated", "client-gone", "upstream-error" };
static const char *const classes[] = { "2xx", "4xx", "5xx" };
static char models[20][32];
static char creds[300][32];

/* Everything one finished request records (chat_record(), one attempt, one token-cache hit). */
static void one_request(unsigned i) {
        ChatMetrics *m = &chat_metrics;
        const char *api = apis[i % 3], *model = models[i % 20], *cred = creds[i % 300];
        metric_add(m->open_streams, NULL, 1);
        metric_add(m->token_cache_hits, NULL, 1);
        chat_metrics_upstream(m->upstream_attempts, "kiro", NULL);
        metric_add(m->requests, (const char *const[]) { api, model, classes[i % 3], outcomes[i % 4] }, 1);
        metric_observe(m->first_byte_seconds, (const char *const[]) { api }, (i % 1000) * 0.003);
        metric_observe(m->duration_seconds, (const char *const[]) { api }, (i % 1000) * 0.01);
        metric_add(m->tokens, (const char *const[]) { model, "input" }, 1000);
        metric_add(m->tokens, (const char *const[]) { model, "output" }, 300);
        metric_add(m->bytes_out, (const char *const[]) { api }, 4096);
        metric_add(m->open_streams, NULL, -1);
        metric_add(m->credential_requests, (const char *const[]) { cred, "ok" }, 1);
}

int main(void) {
        unsigned n = 2000000;
        for (unsigned i = 0; i < 20; i++)
                snprintf(models[i], sizeof models[i], "claude-model-%u.5", i);
        for (unsigned i = 0; i < 300; i++)
                snprintf(creds[i], sizeof creds[i], "credential-%03u", i);
        if (chat_metrics_init() < 0)
                return 2;

        for (unsigned i = 0; i < 100000; i++)   /* every label combination exists */
                one_request(i);
        double t0 = now_ns();
        for (unsigned i = 0; i < n; i++)
                one_request(i);
        double per = (now_ns() - t0) / n;
        printf("metrics updates per request: %.0f ns\n", per);

        /* The per-request log line at info, written to stderr (point it at /dev/null). */
        char f[11][64];
        const char *fields[12];
        for (unsigned k = 0; k < 11; k++) {
                snprintf(f[k], sizeof f[k], "KIROD_FIELD%u=value-%u", k, k);
                fields[k] = f[k];
        }
        fields[11] = NULL;
        unsigned nl = 200000;
        t0 = now_ns();
        for (unsigned i = 0; i < nl; i++) {
                char a[11][64];
                for (unsigned k = 0; k < 11; k++)
                        snprintf(a[k], sizeof a[k], "KIROD_FIELD%u=%u", k, i);
                log_struct(LOG_INFO, KIROD_MESSAGE_REQUEST_FINISHED, fields,
                           "%s %s %s model='%s' credential=%s status=%u outcome=%s attempts=%u first-byte=%dms end=%dms "
                           "tokens=%u/%u id=%s", "POST", "/v1/chat/completions", "openai", models[i % 20], creds[i % 300],
                           200, "complete", 1, 120, 900, 1000, 300, "942cdbeb-545d-4f79-8e9e-56f7b6567ce9");
        }
        printf("log line per request (%s): %.0f ns\n", getenv("KIROD_LOG_FORMAT") ?: "text", (now_ns() - t0) / nl);

        /* A scrape: 300 credentials as kiro-proxyd fills them from kiro-authd's objects (every refresh result,
         * and the quota of each), and all of the above. */
        MetricsRegistry *g = chat_metrics.registry;
        if (credential_metrics_init(g) < 0)
                return 2;
        static CredInfo infos[300];
        for (unsigned i = 0; i < 300; i++) {
                infos[i] = (CredInfo) { .id = creds[i], .provider = (char *) "kiro", .state = (char *) "active",
                                        .enabled = true, .expires_at = UINT64_C(1796520250000000),
                                        .cooldown_until = 0, .failures = i % 3, .have_refreshes = true,
                                        .refreshes = { 40 + i, i % 7, 0, 0, i % 2 },
                                        .quota_used = 412.5 + i, .quota_limit = 1000,
                                        .quota_reset_at = UINT64_C(1798761600000000),
                                        .quota_fetched_at = UINT64_C(1796520250000000) };
        }
        double tf = now_ns();
        credential_metrics_fill(0, infos, 300);
        tf = now_ns() - tf;
        Buf b = {};
        t0 = now_ns();
        if (metrics_render(g, &b) < 0)
                return 2;
        double tr = now_ns() - t0;
        unsigned lines = 0;
        for (size_t i = 0; i < b.size; i++)
                lines += b.data[i] == '\n';
        printf("scrape with 300 credentials, 20 models, 3 APIs, 4 outcomes, 3 status classes: %zu bytes, %u lines, "
               "fill %.0f µs, render %.0f µs\n", b.size, lines, tf / 1000, tr / 1000);
        buf_done(&b);
        chat_metrics_done();
        return 0;
}
