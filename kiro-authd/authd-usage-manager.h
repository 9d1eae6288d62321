/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Usage limits per credential at run time: fetched on demand (GetUsage), at most every UsageRefreshSec=,
 * on the event loop. A spent quota puts the credential in cooldown until the reset date. */
#pragma once

#include "authd-manager.h"
#include "authd-usage.h"

typedef struct CredentialUsage {
        UsageLimits limits;             /* the last good answer (kept when a later fetch fails) */
        bool have_limits;
        usec_t fetched_at;              /* CLOCK_REALTIME µs of the last good answer, 0 none */
        usec_t attempted_at;            /* CLOCK_MONOTONIC µs of the last attempt's end, 0 none */
        char *error;                    /* the last attempt's failure, NULL after a good one */
        usec_t warned_for;              /* next_reset of the period the warning was logged for (+1) */

        CURL *curl;
        struct curl_slist *headers;     /* holds the access token: wiped on free */
        char *url;
        char *response;
        size_t response_size;
        sd_bus_message **waiters;       /* GetUsage calls parked on the fetch */
        size_t n_waiters;
} CredentialUsage;

/* The MESSAGE_ID of the once-per-period warning at QuotaWarnPercent=. */
#define KIROD_MESSAGE_QUOTA_WARNING "7d4b2e9f1a6c4d8eb3f5a7c9e1d2b4f6"
#define KIROD_MESSAGE_QUOTA_SPENT   "c1e5a9d3b7f24e8a9c6d0b2f4e8a1c37"

void credential_usage_free(Credential *cred);

/* For the selection: the reset date (CLOCK_REALTIME µs) until which the credential's quota is spent
 * according to its last usage limits, or 0 (not spent, or unknown). */
usec_t credential_quota_spent_until(Credential *cred);
/* The next reset date from the last usage limits, when known and in the future; else 0. For
 * ReportUpstreamError kind "quota-exhausted": the cooldown lasts until then. */
usec_t credential_quota_reset_at(Credential *cred);

/* org.kirod.Auth1.Credential.GetUsage(t flags) → a{sv} (docs/org.kirod.Auth1.md). */
int method_get_usage(sd_bus_message *msg, void *userdata, sd_bus_error *error);
