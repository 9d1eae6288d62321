/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd.conf: the [Auth] and [Endpoints] keys, their defaults and their parsing. */
#pragma once

#include "macro.h"
#include "time-util.h"

typedef enum SelectionPolicy {
        SELECTION_STICKY,
        SELECTION_ROUND_ROBIN,
        SELECTION_LEAST_USED,   /* counted by kiro-proxyd, which picks; GetToken("") alone rotates */
        _SELECTION_POLICY_MAX,
        _SELECTION_POLICY_INVALID = -EINVAL,
} SelectionPolicy;

const char *selection_policy_to_string(SelectionPolicy p);
SelectionPolicy selection_policy_from_string(const char *s);

typedef struct AuthdConfig {
        /* [Auth] */
        usec_t refresh_margin;
        usec_t refresh_jitter;
        usec_t retry_initial;
        usec_t retry_max;
        SelectionPolicy policy;
        char *admin_group;
        char *proxy_user;
        unsigned max_parallel_refresh;
        usec_t usage_refresh;
        unsigned quota_warn_percent;    /* 0: no warning */
        usec_t login_min_poll_interval; /* floor under the device flow's server interval */
        /* [Endpoints]: URL templates with {region} */
        char *kiro_auth_url;
        char *oidc_url;
        char *kimi_auth_url;
        char *kimi_api_base;            /* handed to kiro-proxyd as GetToken's api_base for Kimi */
        char *usage_url;
        char *ca_file;
        /* [Network]: the egress proxy (curl_glue_set_proxy()) */
        char *proxy;
        char *noproxy;
} AuthdConfig;

/* The defaults of DESIGN.md §8. */
int authd_config_init(AuthdConfig *c);
void authd_config_done(AuthdConfig *c);
/* Reads path and its drop-ins over the current values; unknown keys warn. Logs its errors. */
int authd_config_parse(AuthdConfig *c, const char *path);
/* SIGHUP: parses path into a fresh configuration; on success moves what can change at run time into c,
 * logs each restart-only setting that changed (AdminGroup=, ProxyUser=) and keeps its old value. On a
 * parse error c is left as it was. */
int authd_config_reload(AuthdConfig *c, const char *path);
