/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* getUsageLimits: the URL (CURLU, strict region) and the answer, hostile ones included. */
#include "authd-usage.h"
#include "tests.h"

static CredentialRecord *record(const char *arn) {
        CredentialRecord *c = credential_record_new();
        ASSERT_NOT_NULL(c);
        c->profile_arn = arn ? strdup(arn) : NULL;
        return c;
}

TEST(url) {
        _cleanup_(credential_record_freep) CredentialRecord *c =
                record("arn:aws:codewhisperer:eu-central-1:1:profile/A+B&c=d");
        _cleanup_(credential_record_freep) CredentialRecord *none = record(NULL);
        _cleanup_free_ char *u = NULL, *v = NULL, *w = NULL;

        ASSERT_OK(usage_build_url(c, "https://q.{region}.amazonaws.com", &u));
        ASSERT_STREQ(u, "https://q.eu-central-1.amazonaws.com/getUsageLimits?origin=AI_EDITOR&"
                        "resourceType=AGENTIC_REQUEST&profileArn=arn%3aaws%3acodewhisperer%3aeu-central-1%3a1%3a"
                        "profile%2fA%2bB%26c%3dd");
        ASSERT_OK(usage_build_url(none, "http://127.0.0.1:8080/base", &v));
        ASSERT_STREQ(v, "http://127.0.0.1:8080/base/getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST");
        ASSERT_ERROR(usage_build_url(none, "https://x/{region}", &w), EINVAL);
}

#define ENTRY(extra) "{\"usageBreakdownList\":[{\"resourceType\":\"CREDIT\",\"currentUsageWithPrecision\":12.5," \
                     "\"usageLimitWithPrecision\":50" extra "}],\"nextDateReset\":1764547200.0}"

TEST(parse_good) {
        UsageLimits u = {};
        const char *why = NULL;
        const char *body = "{\"subscriptionInfo\":{\"subscriptionTitle\":\"KIRO FREE\",\"type\":\"Q_DEVELOPER_STANDALONE_FREE\"},"
                           "\"usageBreakdownList\":[{\"resourceType\":\"OTHER\",\"currentUsage\":999,\"usageLimit\":1},"
                           "{\"resourceType\":\"CREDIT\",\"currentUsage\":3,\"usageLimit\":50,"
                           "\"freeTrialInfo\":{\"freeTrialStatus\":\"ACTIVE\",\"usageLimitWithPrecision\":500,"
                           "\"currentUsageWithPrecision\":500,\"freeTrialExpiry\":1764547200},"
                           "\"bonuses\":[{\"status\":\"ACTIVE\",\"usageLimit\":10,\"currentUsage\":10},"
                           "{\"status\":\"EXPIRED\",\"usageLimit\":100,\"currentUsage\":0}]}],"
                           "\"nextDateReset\":1764547200.5}";
        ASSERT_OK(usage_parse(body, strlen(body), &u, &why));
        ASSERT_STREQ(u.plan, "KIRO FREE");
        ASSERT_STREQ(u.plan_type, "Q_DEVELOPER_STANDALONE_FREE");
        ASSERT_TRUE(u.used == 3 && u.limit == 50);      /* the CREDIT entry, not the first */
        ASSERT_TRUE(u.bonus_used == 10 && u.bonus_limit == 10);
        ASSERT_STREQ(u.trial_status, "ACTIVE");
        ASSERT_EQ(u.next_reset, UINT64_C(1764547200500000));
        ASSERT_EQ(u.trial_expiry, UINT64_C(1764547200000000));
        ASSERT_TRUE(usage_limits_remaining(&u) == 47);
        /* UsageUsed and UsageLimit: the credit, the active bonus and the active trial, not the expired bonus. */
        ASSERT_TRUE(usage_limits_granted(&u) == 50 + 10 + 500);
        ASSERT_TRUE(usage_limits_consumed(&u) == 3 + 10 + 500);
        ASSERT_FALSE(usage_limits_spent(&u));
        u.used = 50;
        ASSERT_TRUE(usage_limits_spent(&u));
        usage_limits_done(&u);

        /* Nothing granted is never "spent". */
        const char *zero = "{\"usageBreakdownList\":[{\"currentUsage\":0,\"usageLimit\":0}]}";
        ASSERT_OK(usage_parse(zero, strlen(zero), &u, &why));
        ASSERT_FALSE(usage_limits_spent(&u));
        ASSERT_EQ(u.next_reset, 0U);
        usage_limits_done(&u);
}

TEST(parse_hostile) {
        static const char *const bad[] = {
                "", "null", "[]", "<html>", "{}", "{\"usageBreakdownList\":{}}", "{\"usageBreakdownList\":[]}",
                "{\"usageBreakdownList\":[1]}",
                "{\"usageBreakdownList\":[{\"currentUsage\":\"12\"}]}",
                "{\"usageBreakdownList\":[{\"currentUsage\":-1}]}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1e300}]}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1}],\"nextDateReset\":-5}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1}],\"nextDateReset\":1e30}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1}],\"subscriptionInfo\":{\"subscriptionTitle\":\"a\\nb\"}}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1,\"bonuses\":[{\"usageLimit\":\"x\"}]}]}",
                "{\"usageBreakdownList\":[{\"usageLimit\":1,\"freeTrialInfo\":7}]}",
                ENTRY(",\"bonuses\":{}"),
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                UsageLimits u = {};
                const char *why = NULL;
                ASSERT_ERROR(usage_parse(bad[i], strlen(bad[i]), &u, &why), EBADMSG);
                ASSERT_NOT_NULL(why);
                ASSERT_NULL(u.plan);
        }
        UsageLimits u = {};
        const char *why = NULL, *ok = ENTRY("");
        ASSERT_OK(usage_parse(ok, strlen(ok), &u, &why));
        ASSERT_TRUE(u.used == 12.5);
        usage_limits_done(&u);
}
