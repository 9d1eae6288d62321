/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-proxyd's metric families (names and buckets documented in docs/monitoring.md). */
#include "chat/chat-metrics.h"

ChatMetrics chat_metrics = {};

static ChatCredentialCountsHook credential_hook = NULL;
static void *credential_hook_userdata = NULL;

/* Seconds; a chat answer takes from a fraction of a second to minutes. */
static const double latency_buckets[] = { .05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300 };

int chat_metrics_init(void) {
        ChatMetrics *m = &chat_metrics;
        int r = metrics_registry_new(&m->registry);
        if (r < 0)
                return r;
        static const char *const l_request[] = { "api", "model", "status", "outcome", NULL };
        static const char *const l_api[] = { "api", NULL };
        static const char *const l_tokens[] = { "model", "direction", NULL };
        static const char *const l_backend[] = { "backend", NULL };
        static const char *const l_reason[] = { "backend", "reason", NULL };
        static const char *const l_result[] = { "result", NULL };
        static const char *const l_cred[] = { "credential", "result", NULL };
        MetricsRegistry *g = m->registry;
        m->requests = metrics_register(g, METRIC_COUNTER, "kirod_requests_total",
                                       "Chat requests finished, by API, model, status class and outcome.", l_request, NULL, 0);
        m->first_byte_seconds = metrics_register(g, METRIC_HISTOGRAM, "kirod_request_first_byte_seconds",
                                                 "Time from the request to the first answer content from upstream.",
                                                 l_api, latency_buckets, ELEMENTSOF(latency_buckets));
        m->duration_seconds = metrics_register(g, METRIC_HISTOGRAM, "kirod_request_duration_seconds",
                                               "Time from the request to its end.", l_api, latency_buckets,
                                               ELEMENTSOF(latency_buckets));
        m->tokens = metrics_register(g, METRIC_COUNTER, "kirod_tokens_total", "Tokens by model and direction (input, output).",
                                     l_tokens, NULL, 0);
        m->open_streams = metrics_register(g, METRIC_GAUGE, "kirod_open_streams", "Chat requests in progress.", NULL, NULL, 0);
        m->bytes_out = metrics_register(g, METRIC_COUNTER, "kirod_relayed_bytes_total",
                                        "Response body bytes sent to clients by chat requests.", l_api, NULL, 0);
        m->upstream_attempts = metrics_register(g, METRIC_COUNTER, "kirod_upstream_attempts_total",
                                                "Upstream attempts (every try of every request).", l_backend, NULL, 0);
        m->upstream_failures = metrics_register(g, METRIC_COUNTER, "kirod_upstream_failures_total",
                                                "Upstream attempts that failed, by reason.", l_reason, NULL, 0);
        m->upstream_retries = metrics_register(g, METRIC_COUNTER, "kirod_upstream_retries_total",
                                               "Attempts retried with the same credential and endpoint, by reason.", l_reason, NULL, 0);
        m->upstream_failovers = metrics_register(g, METRIC_COUNTER, "kirod_upstream_failovers_total",
                                                 "Attempts moved to another endpoint or credential, by reason.", l_reason, NULL, 0);
        m->token_cache_hits = metrics_register(g, METRIC_COUNTER, "kirod_token_cache_hits_total",
                                               "Tokens served from the proxy's cache without a bus call.", NULL, NULL, 0);
        m->token_cache_calls = metrics_register(g, METRIC_COUNTER, "kirod_gettoken_calls_total",
                                                "GetToken round trips to kiro-authd, by result (ok, error).", l_result, NULL, 0);
        m->credential_requests = metrics_register(g, METRIC_COUNTER, "kirod_credential_requests_total",
                                                  "Chat requests finished per credential (ids only), by result (ok, error).",
                                                  l_cred, NULL, 0);
        if (!m->requests || !m->first_byte_seconds || !m->duration_seconds || !m->tokens || !m->open_streams ||
            !m->bytes_out || !m->upstream_attempts || !m->upstream_failures || !m->upstream_retries ||
            !m->upstream_failovers || !m->token_cache_hits || !m->token_cache_calls || !m->credential_requests) {
                chat_metrics_done();
                return -ENOMEM;
        }
        return 0;
}

void chat_metrics_done(void) {
        metrics_registry_free(chat_metrics.registry);
        chat_metrics = (ChatMetrics) {};
}

const char *chat_metrics_model_label(const ModelInfo *m) {
        /* Listed models are table entries: their id pointers are the table's own. */
        for (size_t i = 0, n = models_count(); m && m->id && i < n; i++)
                if (models_get(i)->id == m->id)
                        return m->id;
        return "other";
}

void chat_metrics_upstream(Metric *what, const char *backend, const char *reason) {
        if (reason)
                metric_add(what, (const char *const[]) { backend, reason }, 1);
        else
                metric_add(what, (const char *const[]) { backend }, 1);
}

void chat_metrics_set_credential_hook(ChatCredentialCountsHook hook, void *userdata) {
        credential_hook = hook;
        credential_hook_userdata = userdata;
}

void chat_metrics_credential_counts(const char *credential, unsigned requests, unsigned errors, unsigned failovers) {
        if (credential_hook && credential)
                credential_hook(credential, requests, errors, failovers, credential_hook_userdata);
}
