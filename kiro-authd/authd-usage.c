/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* getUsageLimits: URL and answer (KIRO-PROTOCOL.md B §5.3). */
#include <assert.h>
#include <curl/curl.h>
#include <math.h>
#include <strings.h>

#include "authd-usage.h"
#include "json-util.h"
#include "url-util.h"

#define strcaseeq(a, b) (strcasecmp((a), (b)) == 0)

#define USAGE_NUMBER_MAX 1e12
#define USAGE_EPOCH_MIN 946684800.0             /* 2000-01-01 */
#define USAGE_EPOCH_MAX 7258118400.0            /* 2200-01-01 */

void usage_limits_done(UsageLimits *u) {
        if (!u)
                return;
        free(u->plan);
        free(u->plan_type);
        free(u->trial_status);
        *u = (UsageLimits) {};
}

int usage_build_url(const CredentialRecord *c, const char *url_template, char **ret) {
        _cleanup_free_ char *base = NULL, *query = NULL;
        char region[REGION_MAX + 1];
        CURLU *u = NULL;
        int r;

        assert(c);
        assert(url_template);
        assert(ret);

        r = url_from_template(url_template, credential_record_api_region(c, region, sizeof region),
                              "/getUsageLimits", &base);
        if (r < 0)
                return r;

        u = curl_url();
        if (!u)
                return -ENOMEM;
        r = 0;
        /* CURLU_URLENCODE percent-encodes the value; CURLU_APPENDQUERY adds the '&'. */
        if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_QUERY, "origin=AI_EDITOR", CURLU_APPENDQUERY) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_QUERY, "resourceType=AGENTIC_REQUEST", CURLU_APPENDQUERY) != CURLUE_OK)
                r = -EINVAL;
        if (r >= 0 && !isempty(c->profile_arn)) {
                if (asprintf(&query, "profileArn=%s", c->profile_arn) < 0)
                        r = -ENOMEM;
                else if (curl_url_set(u, CURLUPART_QUERY, query, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK)
                        r = -EINVAL;
        }
        char *out = NULL;
        if (r >= 0 && curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
                r = -EINVAL;
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        *ret = strdup(out);
        curl_free(out);
        return *ret ? 0 : -ENOMEM;
}

/* An optional number: absent is 0; present must be a finite number in range. */
static int get_number(json_object *o, const char *key, const char *fallback_key, double *ret) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) && (!fallback_key || !json_object_object_get_ex(o, fallback_key, &v)))
                v = NULL;
        if (!v) {
                *ret = 0;
                return 0;
        }
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        double d = json_object_get_double(v);
        if (!isfinite(d) || d < 0 || d >= USAGE_NUMBER_MAX)
                return -EBADMSG;
        *ret = d;
        return 0;
}

static int get_date(json_object *o, const char *key, usec_t *ret) {
        json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v) || !v) {
                *ret = 0;
                return 0;
        }
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return -EBADMSG;
        double d = json_object_get_double(v);
        if (!isfinite(d) || d < USAGE_EPOCH_MIN || d > USAGE_EPOCH_MAX)
                return -EBADMSG;
        *ret = (usec_t) (d * USEC_PER_SEC);
        return 0;
}

static int dup_string(json_object *o, const char *key, char **ret) {
        const char *s;
        int r = json_get_string(o, key, &s);
        if (r == -ENOENT)
                return 0;
        if (r < 0 || strlen(s) > 200)
                return -EBADMSG;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < ' ' || *p == 0x7f)
                        return -EBADMSG;
        return free_and_strdup(ret, s);
}

static int parse_breakdown(json_object *b, UsageLimits *u, const char **err) {
        json_object *trial, *bonuses;
        int r;

        if ((r = get_number(b, "currentUsageWithPrecision", "currentUsage", &u->used)) < 0 ||
            (r = get_number(b, "usageLimitWithPrecision", "usageLimit", &u->limit)) < 0) {
                *err = "the credit numbers are not numbers in range";
                return r;
        }
        if (u->next_reset == 0 && get_date(b, "nextDateReset", &u->next_reset) < 0) {
                *err = "nextDateReset is not a date";
                return -EBADMSG;
        }
        if (json_object_object_get_ex(b, "freeTrialInfo", &trial) && trial) {
                if (!json_object_is_type(trial, json_type_object)) {
                        *err = "freeTrialInfo is not an object";
                        return -EBADMSG;
                }
                if (dup_string(trial, "freeTrialStatus", &u->trial_status) < 0 ||
                    get_number(trial, "currentUsageWithPrecision", "currentUsage", &u->trial_used) < 0 ||
                    get_number(trial, "usageLimitWithPrecision", "usageLimit", &u->trial_limit) < 0 ||
                    get_date(trial, "freeTrialExpiry", &u->trial_expiry) < 0) {
                        *err = "freeTrialInfo has fields of the wrong type or out of range";
                        return -EBADMSG;
                }
        }
        if (json_object_object_get_ex(b, "bonuses", &bonuses) && bonuses) {
                if (!json_object_is_type(bonuses, json_type_array)) {
                        *err = "bonuses is not a list";
                        return -EBADMSG;
                }
                for (size_t i = 0; i < json_object_array_length(bonuses); i++) {
                        json_object *x = json_object_array_get_idx(bonuses, i);
                        const char *status = NULL;
                        double used, limit;
                        if (!json_object_is_type(x, json_type_object) ||
                            get_number(x, "currentUsageWithPrecision", "currentUsage", &used) < 0 ||
                            get_number(x, "usageLimitWithPrecision", "usageLimit", &limit) < 0) {
                                *err = "a bonus has fields of the wrong type or out of range";
                                return -EBADMSG;
                        }
                        if (json_get_string(x, "status", &status) >= 0 && strcaseeq(status, "ACTIVE")) {
                                u->bonus_used += used;
                                u->bonus_limit += limit;
                        }
                }
        }
        return 0;
}

int usage_parse(const char *body, size_t size, UsageLimits *ret, const char **ret_error) {
        _cleanup_json_ json_object *o = NULL;
        json_object *sub, *list;
        UsageLimits u = {};
        const char *err = NULL;
        int r;

        assert(body || size == 0);
        assert(ret);
        assert(ret_error);

        r = json_parse_bounded(body, size, 16, &o, &err);
        if (r < 0 || !json_object_is_type(o, json_type_object)) {
                *ret_error = "the answer is not a JSON object";
                return -EBADMSG;
        }
        if (json_object_object_get_ex(o, "subscriptionInfo", &sub) && sub) {
                if (!json_object_is_type(sub, json_type_object) || dup_string(sub, "subscriptionTitle", &u.plan) < 0 ||
                    dup_string(sub, "type", &u.plan_type) < 0) {
                        err = "subscriptionInfo is not what it should be";
                        goto fail;
                }
        }
        if (get_date(o, "nextDateReset", &u.next_reset) < 0) {
                err = "nextDateReset is not a date";
                goto fail;
        }
        if (!json_object_object_get_ex(o, "usageBreakdownList", &list) || !json_object_is_type(list, json_type_array) ||
            json_object_array_length(list) == 0) {
                err = "the answer has no usageBreakdownList";
                goto fail;
        }
        /* The CREDIT entry; without one, the first. */
        json_object *pick = NULL;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                json_object *b = json_object_array_get_idx(list, i);
                const char *t;
                if (!json_object_is_type(b, json_type_object)) {
                        err = "an entry of usageBreakdownList is not an object";
                        goto fail;
                }
                if (!pick)
                        pick = b;
                if (json_get_string(b, "resourceType", &t) >= 0 && streq(t, "CREDIT")) {
                        pick = b;
                        break;
                }
        }
        if (parse_breakdown(pick, &u, &err) < 0)
                goto fail;
        *ret = u;
        return 0;

fail:
        usage_limits_done(&u);
        *ret_error = err;
        return -EBADMSG;
}

double usage_limits_granted(const UsageLimits *u) {
        double g = u->limit + u->bonus_limit;
        if (u->trial_status && strcaseeq(u->trial_status, "ACTIVE"))
                g += u->trial_limit;
        return g;
}

double usage_limits_consumed(const UsageLimits *u) {
        double c = u->used + u->bonus_used;
        if (u->trial_status && strcaseeq(u->trial_status, "ACTIVE"))
                c += u->trial_used;
        return c;
}

double usage_limits_remaining(const UsageLimits *u) {
        assert(u);
        double left = usage_limits_granted(u) - usage_limits_consumed(u);
        return left > 0 ? left : 0;
}

double usage_limits_percent(const UsageLimits *u) {
        assert(u);
        double g = usage_limits_granted(u);
        return g > 0 ? 100.0 * usage_limits_consumed(u) / g : 0;
}

bool usage_limits_spent(const UsageLimits *u) {
        assert(u);
        return usage_limits_granted(u) > 0 && usage_limits_consumed(u) >= usage_limits_granted(u);
}
