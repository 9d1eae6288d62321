/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-proxyd's metrics: the families every part records into (front ends through the chat, back ends
 * through chat_metrics_upstream(), the token cache), in one process-wide registry. Before
 * chat_metrics_init() every recording call is a no-op, so unit tests need not set anything up. */
#pragma once

#include "metrics.h"
#include "chat/chat-models.h"

typedef struct ChatMetrics {
        MetricsRegistry *registry;
        Metric *requests;               /* {api, model, status, outcome} */
        Metric *first_byte_seconds;     /* {api} */
        Metric *duration_seconds;       /* {api} */
        Metric *tokens;                 /* {model, direction} */
        Metric *open_streams;
        Metric *bytes_out;              /* {api} */
        Metric *upstream_attempts;      /* {backend} */
        Metric *upstream_failures;      /* {backend, reason} */
        Metric *upstream_retries;       /* {backend, reason} */
        Metric *upstream_failovers;     /* {backend, reason} */
        Metric *token_cache_hits;
        Metric *token_cache_calls;      /* GetToken round trips {result} */
        Metric *credential_requests;    /* {credential, result}: requests finished per credential */
} ChatMetrics;

extern ChatMetrics chat_metrics;

int chat_metrics_init(void);
void chat_metrics_done(void);

/* The model label: the canonical id of a listed model, "other" for anything else (Kimi pass-through
 * names), so that the label set stays bounded whatever clients send. */
const char *chat_metrics_model_label(const ModelInfo *m);

/* For back ends: 'what' is one of the upstream_* families, 'reason' NULL for attempts. */
void chat_metrics_upstream(Metric *what, const char *backend, const char *reason);

/* Per-credential counts for kiro-authd's rolling hour (ReportUsageCounts), besides the Prometheus families:
 * requests finished on the credential, failed upstream attempts with it, and failovers away from it.
 * kiro-proxyd.c points the hook at its UsageReporter; without a hook this is a no-op. */
typedef void (*ChatCredentialCountsHook)(const char *credential, unsigned requests, unsigned errors,
                                         unsigned failovers, void *userdata);
void chat_metrics_set_credential_hook(ChatCredentialCountsHook hook, void *userdata);
void chat_metrics_credential_counts(const char *credential, unsigned requests, unsigned errors, unsigned failovers);
