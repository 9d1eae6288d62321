/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests of http/http-access.c's web-page policy: Host parsing, loopback names, allow-lists, Content-Type. */
#include "http/http-access.h"
#include "tests.h"

static bool loopback(const char *h) {
        return http_host_is_loopback(h);
}

TEST(host_split) {
        char *h = NULL;
        unsigned port = 1;

        ASSERT_OK(http_host_split("LocalHost.:8399", &h, &port));
        ASSERT_STREQ(h, "localhost");
        ASSERT_EQ(port, 8399);
        free(h);
        ASSERT_OK(http_host_split("[::1]", &h, &port));
        ASSERT_STREQ(h, "::1");
        ASSERT_EQ(port, 0);
        free(h);
        ASSERT_OK(http_host_split("example.com:65535", &h, &port));
        ASSERT_EQ(port, 65535);
        free(h);

        const char *bad[] = { "", ":80", "a:", "a:0", "a:65536", "a:123456", "a:8x", "::1", "[::1", "[::1]x",
                              "[]", "a b", "a/b", "a@b", "a\nb", "a#b", "a?b", "a\\b", ".", NULL };
        for (const char **b = bad; *b; b++)
                if (http_host_split(*b, &h, &port) != -EINVAL)
                        ASSERT_FAIL("'%s' was accepted", *b);
}

TEST(loopback_names) {
        ASSERT_TRUE(loopback("localhost"));
        ASSERT_TRUE(loopback("localhost:8399"));
        ASSERT_TRUE(loopback("LOCALHOST."));
        ASSERT_TRUE(loopback("api.localhost:1"));
        ASSERT_TRUE(loopback("127.0.0.1"));
        ASSERT_TRUE(loopback("127.255.0.9:8399"));
        ASSERT_TRUE(loopback("[::1]:8399"));
        ASSERT_TRUE(loopback("[0:0:0:0:0:0:0:1]"));
        ASSERT_TRUE(loopback("[::ffff:127.0.0.1]"));

        ASSERT_FALSE(loopback(NULL));
        ASSERT_FALSE(loopback(".localhost"));
        ASSERT_FALSE(loopback("localhost.attacker.example"));
        ASSERT_FALSE(loopback("attackerlocalhost"));
        ASSERT_FALSE(loopback("127.0.0.1.attacker.example"));
        ASSERT_FALSE(loopback("128.0.0.1"));
        ASSERT_FALSE(loopback("0.0.0.0"));
        ASSERT_FALSE(loopback("127.1"));
        ASSERT_FALSE(loopback("0x7f000001"));
        ASSERT_FALSE(loopback("2130706433"));
        ASSERT_FALSE(loopback("[::]"));
        ASSERT_FALSE(loopback("[::ffff:10.0.0.1]"));
        ASSERT_FALSE(loopback("::1"));
        ASSERT_FALSE(loopback("localhost:0"));
}

TEST(allowed_hosts) {
        char *hosts[] = { (char *) "Gateway.LAN", (char *) "kiro.internal:8443", (char *) "10.0.0.5", NULL };
        HttpAccessPolicy p = { .allowed_hosts = hosts };

        ASSERT_TRUE(http_access_host_allowed(&p, "gateway.lan"));
        ASSERT_TRUE(http_access_host_allowed(&p, "gateway.lan.:9"));
        ASSERT_TRUE(http_access_host_allowed(&p, "kiro.internal:8443"));
        ASSERT_FALSE(http_access_host_allowed(&p, "kiro.internal"));
        ASSERT_FALSE(http_access_host_allowed(&p, "kiro.internal:8444"));
        ASSERT_TRUE(http_access_host_allowed(&p, "10.0.0.5:8399"));
        ASSERT_FALSE(http_access_host_allowed(&p, "10.0.0.6"));
        ASSERT_FALSE(http_access_host_allowed(&p, "x.gateway.lan"));
        ASSERT_TRUE(http_access_host_allowed(&p, "localhost"));
        ASSERT_TRUE(http_access_host_allowed(NULL, "127.0.0.1:1"));
        ASSERT_FALSE(http_access_host_allowed(NULL, "gateway.lan"));
        ASSERT_OK(http_access_policy_verify(&p));

        char *bad[] = { (char *) "gateway.lan/x", NULL };
        HttpAccessPolicy q = { .allowed_hosts = bad };
        ASSERT_ERROR(http_access_policy_verify(&q), EINVAL);
}

TEST(allowed_origins) {
        char *origins[] = { (char *) "https://app.example.com", (char *) "http://localhost:5173/", NULL };
        HttpAccessPolicy p = { .allowed_origins = origins };

        ASSERT_TRUE(http_access_origin_allowed(&p, "https://app.example.com"));
        ASSERT_TRUE(http_access_origin_allowed(&p, "HTTPS://APP.example.com"));
        ASSERT_TRUE(http_access_origin_allowed(&p, "http://localhost:5173"));
        ASSERT_FALSE(http_access_origin_allowed(&p, "http://localhost:5173/"));
        ASSERT_FALSE(http_access_origin_allowed(&p, "http://app.example.com"));
        ASSERT_FALSE(http_access_origin_allowed(&p, "https://app.example.com.attacker.example"));
        ASSERT_FALSE(http_access_origin_allowed(&p, "https://app.example.co"));
        ASSERT_FALSE(http_access_origin_allowed(&p, "null"));
        ASSERT_FALSE(http_access_origin_allowed(&p, NULL));
        ASSERT_FALSE(http_access_origin_allowed(NULL, "https://app.example.com"));
        ASSERT_OK(http_access_policy_verify(&p));

        const char *bad[] = { "app.example.com", "https://", "https://a/b", "ftp://a", "https://a:0", "*", NULL };
        for (const char **b = bad; *b; b++) {
                char *one[] = { (char *) *b, NULL };
                HttpAccessPolicy q = { .allowed_origins = one };
                if (http_access_policy_verify(&q) != -EINVAL)
                        ASSERT_FAIL("origin '%s' was accepted", *b);
        }
}

TEST(content_type) {
        ASSERT_TRUE(http_content_type_is_json("application/json"));
        ASSERT_TRUE(http_content_type_is_json("Application/JSON"));
        ASSERT_TRUE(http_content_type_is_json("application/json; charset=utf-8"));
        ASSERT_TRUE(http_content_type_is_json("application/json;charset=UTF-8"));
        ASSERT_TRUE(http_content_type_is_json(" application/json \t; x=y"));
        ASSERT_FALSE(http_content_type_is_json(NULL));
        ASSERT_FALSE(http_content_type_is_json(""));
        ASSERT_FALSE(http_content_type_is_json("text/plain"));
        ASSERT_FALSE(http_content_type_is_json("text/plain; application/json"));
        ASSERT_FALSE(http_content_type_is_json("application/jsonp"));
        ASSERT_FALSE(http_content_type_is_json("application/json-seq"));
        ASSERT_FALSE(http_content_type_is_json("application/x-www-form-urlencoded"));
        ASSERT_FALSE(http_content_type_is_json("multipart/form-data; boundary=application/json"));
}
