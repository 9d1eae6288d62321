/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd.conf: the [Auth] and [Endpoints] keys, their defaults and their parsing. */
#include <assert.h>

#include "authd-config.h"
#include "bus-names.h"
#include "conf.h"
#include "curl-glue.h"
#include "log.h"

static const char *const policy_table[_SELECTION_POLICY_MAX] = {
        [SELECTION_STICKY] = "sticky",
        [SELECTION_ROUND_ROBIN] = "round-robin",
        [SELECTION_LEAST_USED] = "least-used",
};

const char *selection_policy_to_string(SelectionPolicy p) {
        return p >= 0 && p < _SELECTION_POLICY_MAX ? policy_table[p] : NULL;
}

SelectionPolicy selection_policy_from_string(const char *s) {
        for (int i = 0; i < _SELECTION_POLICY_MAX; i++)
                if (streq_ptr(s, policy_table[i]))
                        return i;
        return _SELECTION_POLICY_INVALID;
}

int authd_config_init(AuthdConfig *c) {
        assert(c);

        *c = (AuthdConfig) {
                .refresh_margin = 600 * USEC_PER_SEC,
                .refresh_jitter = 30 * USEC_PER_SEC,
                .retry_initial = 30 * USEC_PER_SEC,
                .retry_max = 900 * USEC_PER_SEC,
                .policy = SELECTION_STICKY,
                .max_parallel_refresh = 8,
                .usage_refresh = 3600 * USEC_PER_SEC,
                .quota_warn_percent = 90,
                .login_min_poll_interval = USEC_PER_SEC,
        };
        if (!(c->admin_group = strdup(KIROD_ADMIN_GROUP)) || !(c->proxy_user = strdup(KIROD_PROXY_USER)) ||
            !(c->kiro_auth_url = strdup("https://prod.{region}.auth.desktop.kiro.dev")) ||
            !(c->oidc_url = strdup("https://oidc.{region}.amazonaws.com")) ||
            !(c->kimi_auth_url = strdup("https://auth.kimi.com")) ||
            !(c->kimi_api_base = strdup("https://api.kimi.com/coding/v1")) ||
            !(c->usage_url = strdup("https://q.{region}.amazonaws.com"))) {
                authd_config_done(c);
                return -ENOMEM;
        }
        return 0;
}

void authd_config_done(AuthdConfig *c) {
        if (!c)
                return;
        free(c->admin_group);
        free(c->proxy_user);
        free(c->kiro_auth_url);
        free(c->oidc_url);
        free(c->kimi_auth_url);
        free(c->kimi_api_base);
        free(c->usage_url);
        free(c->ca_file);
        free(c->proxy);
        free(c->noproxy);
        *c = (AuthdConfig) {};
}

static int parse_policy(const char *v, void *data) {
        SelectionPolicy p = selection_policy_from_string(v);
        if (p < 0)
                return p;
        *(SelectionPolicy *) data = p;
        return 0;
}

static int parse_url_template(const char *v, void *data) {
        _cleanup_free_ char *probe = NULL;
        int r = url_check_scheme(v);
        if (r < 0)
                return r;
        /* Refused at start, not at the first refresh: "{region}" only in the host (url_from_template()). */
        r = url_from_template(v, "us-east-1", NULL, &probe);
        if (r < 0)
                return r;
        return free_and_strdup(data, v);
}

int authd_config_parse(AuthdConfig *c, const char *path) {
        assert(c);
        assert(path);

        const ConfigItem table[] = {
                { "Auth", "RefreshMarginSec", config_parse_sec, &c->refresh_margin },
                { "Auth", "RefreshJitterSec", config_parse_sec, &c->refresh_jitter },
                { "Auth", "RetryInitialSec", config_parse_sec, &c->retry_initial },
                { "Auth", "RetryMaxSec", config_parse_sec, &c->retry_max },
                { "Auth", "SelectionPolicy", parse_policy, &c->policy },
                { "Auth", "AdminGroup", config_parse_string, &c->admin_group },
                { "Auth", "ProxyUser", config_parse_string, &c->proxy_user },
                { "Auth", "MaxParallelRefresh", config_parse_unsigned, &c->max_parallel_refresh },
                { "Auth", "UsageRefreshSec", config_parse_sec, &c->usage_refresh },
                { "Auth", "QuotaWarnPercent", config_parse_unsigned, &c->quota_warn_percent },
                { "Endpoints", "KiroAuthURL", parse_url_template, &c->kiro_auth_url },
                { "Endpoints", "OIDCURL", parse_url_template, &c->oidc_url },
                { "Auth", "LoginMinPollIntervalSec", config_parse_sec, &c->login_min_poll_interval },
                { "Endpoints", "KimiAuthURL", parse_url_template, &c->kimi_auth_url },
                { "Endpoints", "KimiAPIBase", parse_url_template, &c->kimi_api_base },
                { "Endpoints", "UsageURL", parse_url_template, &c->usage_url },
                { "Endpoints", "CAFile", config_parse_string, &c->ca_file },
                { "Network", "Proxy", curl_glue_parse_proxy, &c->proxy },
                { "Network", "NoProxy", config_parse_string, &c->noproxy },
                {}
        };
        int r = config_parse_files(path, table, config_warn_log, c);
        if (r < 0)
                return log_error_errno(r, "Failed to parse configuration '%s': %m", path);
        if (c->quota_warn_percent > 100)
                c->quota_warn_percent = 100;
        if (c->max_parallel_refresh == 0)
                c->max_parallel_refresh = 1;
        if (c->refresh_jitter == USEC_INFINITY)
                c->refresh_jitter = 0;
        if (c->retry_initial == 0 || c->retry_initial == USEC_INFINITY)
                c->retry_initial = USEC_PER_SEC;
        if (c->login_min_poll_interval == USEC_INFINITY)
                c->login_min_poll_interval = USEC_PER_SEC;
        if (c->retry_max < c->retry_initial)
                c->retry_max = c->retry_initial;
        return 0;
}

int authd_config_reload(AuthdConfig *c, const char *path) {
        _cleanup_(authd_config_done) AuthdConfig n = {};
        int r;

        assert(c);
        assert(path);

        r = authd_config_init(&n);
        if (r < 0)
                return log_oom();
        r = authd_config_parse(&n, path);
        if (r < 0)
                return r;
        /* Users and groups are resolved once, at start. */
        if (!streq_ptr(n.admin_group, c->admin_group))
                log_notice("AdminGroup= changed; takes effect after a restart.");
        if (!streq_ptr(n.proxy_user, c->proxy_user))
                log_notice("ProxyUser= changed; takes effect after a restart.");
        AuthdConfig old = *c;
        *c = n;
        c->admin_group = old.admin_group;
        c->proxy_user = old.proxy_user;
        old.admin_group = n.admin_group;
        old.proxy_user = n.proxy_user;
        n = old;        /* freed on return */
        return 0;
}
