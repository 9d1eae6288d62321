/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd.conf: defaults, parsing and the values that are corrected. */
#include "authd-config.h"
#include "fileio.h"
#include "tests.h"

static char *write_config(const char *text) {
        char *path = strdup("/tmp/kirod-test-config-XXXXXX");
        int fd = mkstemp(path);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        return path;
}

TEST(defaults) {
        AuthdConfig c;
        ASSERT_OK(authd_config_init(&c));
        ASSERT_EQ(c.refresh_margin, 600 * USEC_PER_SEC);
        ASSERT_EQ(c.max_parallel_refresh, 8);
        ASSERT_EQ(c.policy, SELECTION_STICKY);
        ASSERT_STREQ(c.kiro_auth_url, "https://prod.{region}.auth.desktop.kiro.dev");
        ASSERT_STREQ(c.oidc_url, "https://oidc.{region}.amazonaws.com");
        ASSERT_NULL(c.ca_file);
        authd_config_done(&c);
}

TEST(parse_and_correct) {
        _cleanup_free_ char *path = write_config(
                "[Auth]\nRefreshMarginSec=120\nSelectionPolicy=round-robin\nMaxParallelRefresh=0\n"
                "RetryInitialSec=10\nRetryMaxSec=5\nAdminGroup=ops\n"
                "[Endpoints]\nKiroAuthURL=http://127.0.0.1:9/base\nCAFile=/etc/ca.pem\n");
        AuthdConfig c;
        ASSERT_OK(authd_config_init(&c));
        ASSERT_OK(authd_config_parse(&c, path));
        ASSERT_EQ(c.refresh_margin, 120 * USEC_PER_SEC);
        ASSERT_EQ(c.policy, SELECTION_ROUND_ROBIN);
        ASSERT_EQ(c.max_parallel_refresh, 1);            /* 0 would never refresh */
        ASSERT_EQ(c.retry_max, 10 * USEC_PER_SEC);       /* never below the initial retry */
        ASSERT_STREQ(c.admin_group, "ops");
        ASSERT_STREQ(c.kiro_auth_url, "http://127.0.0.1:9/base");
        ASSERT_STREQ(c.ca_file, "/etc/ca.pem");
        authd_config_done(&c);
        ASSERT_OK(unlink(path) < 0 ? -errno : 0);
}

TEST(bad_values_keep_the_default) {
        /* A plain-http URL to a non-loopback host and an unknown policy are warned about and ignored. */
        _cleanup_free_ char *path = write_config(
                "[Auth]\nSelectionPolicy=random\n[Endpoints]\nOIDCURL=http://evil.example/{region}\n"
                "KiroAuthURL=https://auth.example/{region}\n");
        AuthdConfig c;
        ASSERT_OK(authd_config_init(&c));
        (void) authd_config_parse(&c, path);
        ASSERT_EQ(c.policy, SELECTION_STICKY);
        ASSERT_STREQ(c.oidc_url, "https://oidc.{region}.amazonaws.com");
        /* {region} outside the host: a region must never reach a path (url_from_template()). */
        ASSERT_STREQ(c.kiro_auth_url, "https://prod.{region}.auth.desktop.kiro.dev");
        authd_config_done(&c);
        ASSERT_OK(unlink(path) < 0 ? -errno : 0);
}

TEST(policy_strings) {
        ASSERT_STREQ(selection_policy_to_string(SELECTION_ROUND_ROBIN), "round-robin");
        ASSERT_EQ(selection_policy_from_string("sticky"), SELECTION_STICKY);
        ASSERT_EQ(selection_policy_from_string("nope"), _SELECTION_POLICY_INVALID);
        ASSERT_NULL(selection_policy_to_string(_SELECTION_POLICY_MAX));
}
