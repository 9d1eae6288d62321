/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-credential series, relayed from kiro-authd's ObjectManager at each scrape (auth-credmetrics.h). */
#include "auth/auth-credmetrics.h"

static struct {
        Metric *authd_up, *usable, *state, *enabled, *expiry, *cooldown, *failures;
        Metric *refreshes, *quota_used, *quota_limit, *quota_reset;
} credential_metrics;

int credential_metrics_init(MetricsRegistry *g) {
        static const char *const l_id[] = { "credential", "provider", NULL };
        static const char *const l_state[] = { "credential", "provider", "state", NULL };
        static const char *const l_result[] = { "credential", "result", NULL };
        credential_metrics.authd_up = metrics_register(g, METRIC_GAUGE, "kirod_authd_up",
                                                       "1 when kiro-authd answered the credential list for this scrape.", NULL, NULL, 0);
        credential_metrics.usable = metrics_register(g, METRIC_GAUGE, "kirod_credentials_usable",
                                                     "Credentials enabled and active or refreshing.", NULL, NULL, 0);
        credential_metrics.state = metrics_register(g, METRIC_GAUGE, "kirod_credential_state",
                                                    "1 for the state a credential is in.", l_state, NULL, 0);
        credential_metrics.enabled = metrics_register(g, METRIC_GAUGE, "kirod_credential_enabled",
                                                      "1 when the credential is enabled.", l_id, NULL, 0);
        credential_metrics.expiry = metrics_register(g, METRIC_GAUGE, "kirod_credential_access_token_expiry_timestamp_seconds",
                                                     "When the credential's access token expires (0: unknown).", l_id, NULL, 0);
        credential_metrics.cooldown = metrics_register(g, METRIC_GAUGE, "kirod_credential_cooldown_until_timestamp_seconds",
                                                       "Until when the credential cools down (0: not cooling down).", l_id, NULL, 0);
        credential_metrics.failures = metrics_register(g, METRIC_GAUGE, "kirod_credential_consecutive_failures",
                                                       "Consecutive refresh or upstream failures of the credential.", l_id, NULL, 0);
        credential_metrics.refreshes = metrics_register(g, METRIC_COUNTER, "kirod_credential_refreshes_total",
                                                        "Refresh attempts per credential since kiro-authd started, by result "
                                                        "(ok, transient-error, rejected, no-login, local-error).", l_result, NULL, 0);
        credential_metrics.quota_used = metrics_register(g, METRIC_GAUGE, "kirod_credential_quota_used",
                                                         "Credits used in the current period, from the last usage fetch.", l_id, NULL, 0);
        credential_metrics.quota_limit = metrics_register(g, METRIC_GAUGE, "kirod_credential_quota_limit",
                                                          "Credits granted for the current period (limit, active bonuses and trial), "
                                                          "from the last usage fetch.", l_id, NULL, 0);
        credential_metrics.quota_reset = metrics_register(g, METRIC_GAUGE, "kirod_credential_quota_reset_timestamp_seconds",
                                                          "When the credits reset, from the last usage fetch.", l_id, NULL, 0);
        if (!credential_metrics.authd_up || !credential_metrics.usable || !credential_metrics.state ||
            !credential_metrics.enabled || !credential_metrics.expiry || !credential_metrics.cooldown ||
            !credential_metrics.failures || !credential_metrics.refreshes || !credential_metrics.quota_used ||
            !credential_metrics.quota_limit || !credential_metrics.quota_reset)
                return -ENOMEM;
        return 0;
}

void credential_metrics_fill(int error, const CredInfo *l, size_t n) {
        size_t usable = 0;
        metric_clear(credential_metrics.state);
        metric_clear(credential_metrics.enabled);
        metric_clear(credential_metrics.expiry);
        metric_clear(credential_metrics.cooldown);
        metric_clear(credential_metrics.failures);
        /* A counter relayed whole: kiro-authd's count replaces the series (a credential that is gone takes its
         * series with it; a restart of kiro-authd is a counter reset, which rate() handles). */
        metric_clear(credential_metrics.refreshes);
        metric_clear(credential_metrics.quota_used);
        metric_clear(credential_metrics.quota_limit);
        metric_clear(credential_metrics.quota_reset);
        metric_set(credential_metrics.authd_up, NULL, error < 0 ? 0 : 1);
        for (size_t i = 0; i < n; i++) {
                const CredInfo *c = &l[i];
                const char *const id[] = { strempty(c->id), strempty(c->provider) };
                const char *const st[] = { strempty(c->id), strempty(c->provider), strempty(c->state) };
                usable += credinfo_usable(c);
                metric_set(credential_metrics.state, st, 1);
                metric_set(credential_metrics.enabled, id, c->enabled);
                metric_set(credential_metrics.expiry, id, (double) (c->expires_at / USEC_PER_SEC));
                metric_set(credential_metrics.cooldown, id, (double) (c->cooldown_until / USEC_PER_SEC));
                metric_set(credential_metrics.failures, id, c->failures);
                for (RefreshResultKind k = 0; c->have_refreshes && k < _REFRESH_RESULT_MAX; k++)
                        metric_add(credential_metrics.refreshes,
                                   (const char *const[]) { strempty(c->id), refresh_result_kind_to_string(k) },
                                   (double) c->refreshes[k]);
                /* Unknown quota: no series rather than a 0 that reads as "nothing used of nothing". */
                if (c->quota_fetched_at > 0) {
                        metric_set(credential_metrics.quota_used, id, c->quota_used);
                        metric_set(credential_metrics.quota_limit, id, c->quota_limit);
                        if (c->quota_reset_at > 0)
                                metric_set(credential_metrics.quota_reset, id, (double) (c->quota_reset_at / USEC_PER_SEC));
                }
        }
        metric_set(credential_metrics.usable, NULL, (double) usable);
}
