/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Usage limits (getUsageLimits, KIRO-PROTOCOL.md B §5.3): the request URL and the parsed answer. Pure
 * functions; the transfer is authd-usage-manager.c's. */
#pragma once

#include "authd-credential.h"

typedef struct UsageLimits {
        char *plan;                     /* subscriptionInfo.subscriptionTitle, e.g. "KIRO FREE" */
        char *plan_type;                /* subscriptionInfo.type */
        double used;                    /* the CREDIT breakdown's currentUsageWithPrecision */
        double limit;                   /* its usageLimitWithPrecision */
        double bonus_used;              /* the sums over bonuses with status ACTIVE */
        double bonus_limit;
        char *trial_status;             /* freeTrialInfo.freeTrialStatus, NULL without a trial */
        double trial_used;
        double trial_limit;
        usec_t trial_expiry;            /* CLOCK_REALTIME µs, 0 unknown */
        usec_t next_reset;              /* nextDateReset, CLOCK_REALTIME µs, 0 unknown */
} UsageLimits;

void usage_limits_done(UsageLimits *u);

/* GET <UsageURL with the API region>/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST
 * [&profileArn=<the profile ARN, percent-encoded>]. Built with CURLU (url_from_template()). 0, -EINVAL
 * (bad template or region), -ENOMEM. */
int usage_build_url(const CredentialRecord *c, const char *url_template, char **ret);

/* Parses the JSON answer. Every number must be finite, >= 0 and below 1e12, dates within years
 * 2000..2200: anything else is -EBADMSG with a static *ret_error, and u is left empty. */
int usage_parse(const char *body, size_t size, UsageLimits *ret, const char **ret_error);

/* Everything granted (limit + active bonuses + an active trial) and everything used of it. */
double usage_limits_granted(const UsageLimits *u);
double usage_limits_consumed(const UsageLimits *u);
/* What is left: limit + active trial + active bonuses - used (never below 0). */
double usage_limits_remaining(const UsageLimits *u);
/* The share used in percent of everything granted (0 when nothing is granted). */
double usage_limits_percent(const UsageLimits *u);
/* Whether nothing is left (and something was ever granted). */
bool usage_limits_spent(const UsageLimits *u);
