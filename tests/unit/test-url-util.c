/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Region validation and URLs from templates (common/url-util.c). */
#include <errno.h>

#include "tests.h"
#include "url-util.h"

TEST(region_valid) {
        static const char *const good[] = {
                "us-east-1", "eu-central-1", "us-gov-west-1", "ap-southeast-2", "cn-north-1", "il-central-1",
                "us-isob-east-1", "eu-west-10",
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
                if (!region_is_valid(good[i]))
                        ASSERT_FAIL("'%s' should be a valid region", good[i]);
}

TEST(region_invalid) {
        static const char *const bad[] = {
                "evil.example#", "attacker.example/x#", "", "us", "us-", "us-east", "us-east-", "us--1",
                "us-1", "US-EAST-1", "u-east-1", "use-east-1", "us-east-1 ", " us-east-1", "us-east-1#",
                "us-east-1.evil.example", "us-east-1/x", "us-east-1a", "us-east1", "us_east-1", "us-east-1\n",
                "us-east-1@evil", "us-east-1:443", "us-eaSt-1", "us-verylongwordverylongwordlong-1",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                if (region_is_valid(bad[i]))
                        ASSERT_FAIL("'%s' should be refused", bad[i]);
        ASSERT_FALSE(region_is_valid(NULL));
}

TEST(arn_region) {
        char buf[REGION_MAX + 1];

        ASSERT_OK(arn_get_region("arn:aws:codewhisperer:eu-central-1:123456789012:profile/ABC", buf, sizeof buf));
        ASSERT_STREQ(buf, "eu-central-1");
        ASSERT_OK(arn_get_region("arn:aws-us-gov:codewhisperer:us-gov-west-1:1:profile/X", buf, sizeof buf));
        ASSERT_STREQ(buf, "us-gov-west-1");
        ASSERT_ERROR(arn_get_region("arn:aws:codewhisperer:attacker.example/x#:1:profile/X", buf, sizeof buf),
                     EINVAL);
        ASSERT_ERROR(arn_get_region("arn:aws:codewhisperer:evil.example#", buf, sizeof buf), EINVAL);
        ASSERT_ERROR(arn_get_region("arn:aws:codewhisperer", buf, sizeof buf), EINVAL);
        ASSERT_ERROR(arn_get_region("nope:aws:codewhisperer:us-east-1:1:p", buf, sizeof buf), EINVAL);
        ASSERT_ERROR(arn_get_region(NULL, buf, sizeof buf), EINVAL);
        ASSERT_ERROR(arn_get_region("arn:aws:x:us-east-1:1:p", buf, 4), EINVAL);
}

static void expect_url(const char *template, const char *region, const char *path, const char *want) {
        char *u = NULL;
        int r = url_from_template(template, region, path, &u);
        if (r < 0)
                ASSERT_FAIL("url_from_template('%s', '%s'): %s", template, region, strerror(-r));
        ASSERT_STREQ(u, want);
        free(u);
}

TEST(url_from_template_good) {
        expect_url("https://prod.{region}.auth.desktop.kiro.dev", "us-east-1", "/refreshToken",
                   "https://prod.us-east-1.auth.desktop.kiro.dev/refreshToken");
        expect_url("https://oidc.{region}.amazonaws.com", "us-gov-west-1", "/token",
                   "https://oidc.us-gov-west-1.amazonaws.com/token");
        expect_url("https://oidc.{region}.amazonaws.com/", "eu-central-1", "token",
                   "https://oidc.eu-central-1.amazonaws.com/token");
        expect_url("http://127.0.0.1:8080/base/", "eu-central-1", "/token", "http://127.0.0.1:8080/base/token");
        expect_url("https://runtime.{region}.kiro.dev", "eu-central-1", NULL, "https://runtime.eu-central-1.kiro.dev/");
        expect_url("https://{region}.{region}.example", "ap-south-1", NULL, "https://ap-south-1.ap-south-1.example/");
        expect_url("http://[::1]:8080", "us-east-1", "/token", "http://[::1]:8080/token");
        expect_url("https://q.{region}.amazonaws.com/a?x=1", "us-east-1", "/b", "https://q.us-east-1.amazonaws.com/a/b?x=1");
}

TEST(url_from_template_hostile_region) {
        static const char *const bad[] = { "evil.example#", "attacker.example/x#", "us-east-1@evil.example",
                                           "us-east-1.evil.example", "", "us-east-1:8443" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char *u = NULL;
                int r = url_from_template("https://prod.{region}.auth.desktop.kiro.dev", bad[i], "/refreshToken", &u);
                if (r != -EINVAL)
                        ASSERT_FAIL("region '%s': expected -EINVAL, got %d ('%s')", bad[i], r, u ?: "(null)");
                ASSERT_NULL(u);
        }
}

TEST(url_from_template_bad_template) {
        char *u = NULL;
        /* "{region}" only in the host. */
        ASSERT_ERROR(url_from_template("https://x.example/{region}", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template("https://x.example/?r={region}", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template("https://x.example/#{region}", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template("https://{region}@x.example/", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template("ftp://{region}.example/", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template("not a url", "us-east-1", NULL, &u), EINVAL);
        ASSERT_ERROR(url_from_template(NULL, "us-east-1", NULL, &u), EINVAL);
        ASSERT_NULL(u);
}
