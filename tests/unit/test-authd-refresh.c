/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Refresh request building, answer parsing and failure classification (KIRO-PROTOCOL.md B §2.3). */
#include "authd-refresh.h"
#include "json-util.h"
#include "tests.h"

static CredentialRecord *cred(AuthMethod m) {
        CredentialRecord *c = credential_record_new();
        c->method = m;
        c->refresh_token = strdup("rt-1");
        c->region = strdup("eu-west-1");
        c->machine_id = strdup("ab");
        c->client_id = strdup("cid");
        c->client_secret = strdup("csec");
        return c;
}

TEST(social_request) {
        CredentialRecord *c = cred(AUTH_METHOD_SOCIAL);
        RefreshRequest req;
        ASSERT_OK(refresh_build_request(c, "https://prod.{region}.auth.desktop.kiro.dev", "https://oidc.{region}.x", "https://auth.kimi.com", &req, NULL));
        ASSERT_STREQ(req.url, "https://prod.eu-west-1.auth.desktop.kiro.dev/refreshToken");
        ASSERT_STREQ(req.body, "{\"refreshToken\":\"rt-1\"}");
        ASSERT_STREQ(req.content_type, "application/json");
        ASSERT_STREQ(req.user_agent, "KiroIDE-0.7.45-ab");
        refresh_request_done(&req);
        credential_record_free(c);
}

TEST(oidc_request_camel_case_json) {
        CredentialRecord *c = cred(AUTH_METHOD_BUILDER_ID);
        RefreshRequest req;
        ASSERT_OK(refresh_build_request(c, "https://k", "https://oidc.{region}.example:99/base/", "https://auth.kimi.com", &req, NULL));
        ASSERT_STREQ(req.url, "https://oidc.eu-west-1.example:99/base/token");
        _cleanup_json_ json_object *o = NULL;
        ASSERT_OK(json_parse_bounded(req.body, req.body_size, 4, &o, NULL));
        ASSERT_STREQ(json_string_or_null(o, "grantType"), "refresh_token");
        ASSERT_STREQ(json_string_or_null(o, "clientId"), "cid");
        ASSERT_STREQ(json_string_or_null(o, "clientSecret"), "csec");
        ASSERT_STREQ(json_string_or_null(o, "refreshToken"), "rt-1");
        refresh_request_done(&req);
        credential_record_free(c);
}

TEST(external_idp_form) {
        CredentialRecord *c = cred(AUTH_METHOD_EXTERNAL_IDP);
        c->token_endpoint = strdup("https://idp.example/oauth2/token");
        c->scopes = strdup("openid offline_access");
        RefreshRequest req;
        ASSERT_OK(refresh_build_request(c, "https://k", "https://o", "https://auth.kimi.com", &req, NULL));
        ASSERT_STREQ(req.url, "https://idp.example/oauth2/token");
        ASSERT_STREQ(req.body, "grant_type=refresh_token&client_id=cid&refresh_token=rt-1&scope=openid%20offline_access");
        ASSERT_STREQ(req.content_type, "application/x-www-form-urlencoded");
        refresh_request_done(&req);
        credential_record_free(c);
}

TEST(refuses_plain_http_off_loopback) {
        CredentialRecord *c = cred(AUTH_METHOD_SOCIAL);
        RefreshRequest req;
        char *msg = NULL;
        ASSERT_EQ(refresh_build_request(c, "http://evil.example", "https://o", "https://auth.kimi.com", &req, &msg), REFRESH_E_BAD_URL);
        ASSERT_TRUE(strstr(msg, "https"));
        free(msg);
        c->method = AUTH_METHOD_API_KEY;
        ASSERT_EQ(refresh_build_request(c, "https://k", "https://o", "https://auth.kimi.com", &req, NULL), REFRESH_E_UNSUPPORTED);
        credential_record_free(c);
}

/* Domain errors are positive: nothing a syscall returns can be mistaken for one. */
TEST(domain_errors_positive) {
        CredentialRecord *c = cred(AUTH_METHOD_SOCIAL);
        RefreshRequest req;
        c->refresh_token = erase_and_free(c->refresh_token);
        ASSERT_EQ(refresh_build_request(c, "https://k", "https://o", "https://auth.kimi.com", &req, NULL), REFRESH_E_NO_LOGIN);
        c->method = AUTH_METHOD_BUILDER_ID;
        c->refresh_token = strdup("rt");
        c->client_secret = erase_and_free(c->client_secret);
        ASSERT_EQ(refresh_build_request(c, "https://k", "https://o", "https://auth.kimi.com", &req, NULL), REFRESH_E_NO_LOGIN);
        ASSERT_TRUE(REFRESH_E_NO_LOGIN > 0 && REFRESH_E_BAD_URL > 0 && REFRESH_E_BAD_REGION > 0);
        ASSERT_STREQ(refresh_error_to_string(REFRESH_E_NO_LOGIN),
                     "the credential has no refresh token or client registration");
        ASSERT_NULL(refresh_error_to_string(-ENOKEY));
        ASSERT_NULL(refresh_error_to_string(_REFRESH_E_MAX));
        credential_record_free(c);
}

/* A region from a crafted credential never reaches a host name (issue 9 item 4). */
TEST(hostile_region_refused) {
        static const char *const bad[] = { "evil.example#", "attacker.example/x#", "us-east-1@evil.example", "" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                for (AuthMethod m = AUTH_METHOD_SOCIAL; m <= AUTH_METHOD_IDC; m++) {
                        CredentialRecord *c = cred(m);
                        RefreshRequest req = {};
                        char *msg = NULL;
                        free(c->region);
                        c->region = strdup(bad[i]);
                        ASSERT_EQ(refresh_build_request(c, "https://prod.{region}.auth.desktop.kiro.dev",
                                                        "https://oidc.{region}.amazonaws.com", "https://auth.kimi.com", &req, &msg),
                                  REFRESH_E_BAD_REGION);
                        ASSERT_NULL(req.url);
                        ASSERT_TRUE(strstr(msg, "not a valid region"));
                        free(msg);
                        credential_record_free(c);
                }
        /* A template with {region} outside the host is a configuration error, not a URL. */
        CredentialRecord *c = cred(AUTH_METHOD_SOCIAL);
        RefreshRequest req = {};
        ASSERT_EQ(refresh_build_request(c, "https://k.example/{region}", "https://o", "https://auth.kimi.com", &req, NULL), REFRESH_E_BAD_URL);
        credential_record_free(c);
}

TEST(answer_profile_arn_validated) {
        RefreshResult res;
        const char *b = "{\"accessToken\":\"at\",\"refreshToken\":\"rt\","
                        "\"profileArn\":\"arn:aws:codewhisperer:attacker.example/x#:1:profile/P\"}";
        /* The tokens are kept (a rotated refresh token must not be lost), the ARN is not. */
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_SOCIAL, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_STREQ(res.refresh_token, "rt");
        ASSERT_NULL(res.profile_arn);
        ASSERT_TRUE(res.profile_arn_rejected);
        refresh_result_done(&res);

        b = "{\"accessToken\":\"at\",\"profileArn\":\"arn:aws:codewhisperer:eu-central-1:1:profile/P\"}";
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_SOCIAL, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_STREQ(res.profile_arn, "arn:aws:codewhisperer:eu-central-1:1:profile/P");
        ASSERT_FALSE(res.profile_arn_rejected);
        refresh_result_done(&res);
}

static RefreshOutcome classify(AuthMethod m, long status, const char *body) {
        RefreshResult res;
        RefreshOutcome o = refresh_parse_response(m, status, body, body ? strlen(body) : 0, &res);
        refresh_result_done(&res);
        return o;
}

TEST(classification) {
        const char *ig = "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid refresh token provided\"}";
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 400, ig), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_BUILDER_ID, 400, ig), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_BUILDER_ID, 400, "{\"__type\":\"com.amazonaws.sso#InvalidGrantException:x\"}"),
                  REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_IDC, 401, "{\"error\":\"invalid_client\"}"), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_IDC, 400, "{\"error\":\"expired_token\"}"), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 401, "unauthorized"), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 403, NULL), REFRESH_PERMANENT);
        /* transient */
        ASSERT_EQ(classify(AUTH_METHOD_IDC, 401, "not json"), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_BUILDER_ID, 400, "{\"error\":\"slow_down\"}"), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 500, ig), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 429, NULL), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 408, NULL), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 0, "Couldn't connect"), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 200, "{\"nope\":1}"), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_SOCIAL, 200, "garbage"), REFRESH_TRANSIENT);
}

TEST(success_parsing) {
        RefreshResult res;
        const char *b = "{\"accessToken\":\"at2\",\"refreshToken\":\"rt2\",\"expiresIn\":1800,\"profileArn\":\"arn:aws:codewhisperer:us-east-1:1:profile/X\"}";
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_SOCIAL, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_STREQ(res.access_token, "at2");
        ASSERT_STREQ(res.refresh_token, "rt2");
        ASSERT_STREQ(res.profile_arn, "arn:aws:codewhisperer:us-east-1:1:profile/X");
        ASSERT_EQ(res.expires_in, 1800 * USEC_PER_SEC);
        refresh_result_done(&res);

        /* no rotation, no expiresIn: keep the old refresh token, default 3600 s */
        b = "{\"accessToken\":\"at3\",\"tokenType\":\"Bearer\"}";
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_BUILDER_ID, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_NULL(res.refresh_token);
        ASSERT_EQ(res.expires_in, 3600 * USEC_PER_SEC);
        refresh_result_done(&res);

        b = "{\"access_token\":\"at4\",\"refresh_token\":\"rt4\",\"expires_in\":60}";
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_EXTERNAL_IDP, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_STREQ(res.refresh_token, "rt4");
        ASSERT_EQ(res.expires_in, 60 * USEC_PER_SEC);
        refresh_result_done(&res);

        b = "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid grant provided\"}";
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_SOCIAL, 400, b, strlen(b), &res), REFRESH_PERMANENT);
        ASSERT_STREQ(res.error, "HTTP 400: invalid_grant (Invalid grant provided)");
        ASSERT_NULL(res.access_token);
        refresh_result_done(&res);
}

/* Kimi (B §7): form-encoded at the Kimi token endpoint with kimi-cli's client id, User-Agent and
 * X-Msh-* headers, the device id derived from the stored machine id. */
TEST(kimi_request_form_and_headers) {
        CredentialRecord *c = cred(AUTH_METHOD_KIMI_DEVICE);
        RefreshRequest req;
        bool device = false, platform = false;

        free(c->client_id);
        c->client_id = NULL; /* falls back to kimi-cli's client id */
        free(c->machine_id);
        c->machine_id = strdup("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        ASSERT_OK(refresh_build_request(c, "https://k", "https://o", "https://auth.kimi.com", &req, NULL));
        ASSERT_STREQ(req.url, "https://auth.kimi.com/api/oauth/token");
        ASSERT_STREQ(req.body, "client_id=17e5f671-d194-4dfb-9706-5516cb48c098&grant_type=refresh_token&refresh_token=rt-1");
        ASSERT_STREQ(req.content_type, "application/x-www-form-urlencoded");
        ASSERT_TRUE(startswith(req.user_agent, "KimiCLI/"));
        STRV_FOREACH(h, req.headers) {
                if (streq(*h, "X-Msh-Device-Id: 0123456789abcdef0123456789abcdef"))
                        device = true;
                if (streq(*h, "X-Msh-Platform: kimi_cli"))
                        platform = true;
                for (const char *p = *h; *p; p++)
                        ASSERT_TRUE((unsigned char) *p >= ' ' && (unsigned char) *p < 0x7f);
        }
        ASSERT_TRUE(device);
        ASSERT_TRUE(platform);
        ASSERT_EQ(strv_length(req.headers), 6U);
        refresh_request_done(&req);

        /* A Kimi auth URL that is no URL is refused like the others. */
        ASSERT_EQ(refresh_build_request(c, "https://k", "https://o", "ftp://auth.kimi.com", &req, NULL), REFRESH_E_BAD_URL);
        credential_record_free(c);
}

TEST(kimi_answers) {
        RefreshResult res;
        const char *b = "{\"access_token\":\"at5\",\"expires_in\":900,\"scope\":\"kimi-code\",\"token_type\":\"Bearer\"}";
        /* No new refresh token: the old one stays (the manager keeps it when refresh_token is NULL). */
        ASSERT_EQ(refresh_parse_response(AUTH_METHOD_KIMI_DEVICE, 200, b, strlen(b), &res), REFRESH_OK);
        ASSERT_STREQ(res.access_token, "at5");
        ASSERT_NULL(res.refresh_token);
        ASSERT_EQ(res.expires_in, 900 * USEC_PER_SEC);
        refresh_result_done(&res);
        /* 401 and 403 are permanent for Kimi whatever the body says; 429 and 5xx are not. */
        ASSERT_EQ(classify(AUTH_METHOD_KIMI_DEVICE, 401, "{\"error\":\"unauthorized\"}"), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_KIMI_DEVICE, 403, "<html>forbidden</html>"), REFRESH_PERMANENT);
        ASSERT_EQ(classify(AUTH_METHOD_KIMI_DEVICE, 429, NULL), REFRESH_TRANSIENT);
        ASSERT_EQ(classify(AUTH_METHOD_KIMI_DEVICE, 502, NULL), REFRESH_TRANSIENT);
}

/* The Refreshes property's results: what each classified answer counts as, and the fixed names. */
TEST(refresh_result_kinds) {
        const char *ig = "{\"error\":\"invalid_grant\",\"error_description\":\"Invalid refresh token provided\"}";
        ASSERT_EQ(refresh_result_kind_of(classify(AUTH_METHOD_SOCIAL, 400, ig), false), REFRESH_RESULT_REJECTED);
        ASSERT_EQ(refresh_result_kind_of(classify(AUTH_METHOD_SOCIAL, 503, NULL), false), REFRESH_RESULT_TRANSIENT_ERROR);
        ASSERT_EQ(refresh_result_kind_of(classify(AUTH_METHOD_SOCIAL, 0, "Timeout was reached"), false),
                  REFRESH_RESULT_TRANSIENT_ERROR);
        ASSERT_EQ(refresh_result_kind_of(REFRESH_OK, true), REFRESH_RESULT_OK);
        /* The server answered, but the rotated tokens are not on disk: not a success. */
        ASSERT_EQ(refresh_result_kind_of(REFRESH_OK, false), REFRESH_RESULT_LOCAL_ERROR);
        ASSERT_EQ(refresh_result_kind_of(REFRESH_TRANSIENT, true), REFRESH_RESULT_TRANSIENT_ERROR);

        static const char *const names[] = { "ok", "transient-error", "rejected", "no-login", "local-error" };
        ASSERT_EQ((size_t) _REFRESH_RESULT_MAX, sizeof names / sizeof names[0]);
        for (RefreshResultKind k = 0; k < _REFRESH_RESULT_MAX; k++) {
                ASSERT_STREQ(refresh_result_kind_to_string(k), names[k]);
                ASSERT_EQ(refresh_result_kind_from_string(names[k]), k);
        }
        ASSERT_NULL(refresh_result_kind_to_string(_REFRESH_RESULT_MAX));
        ASSERT_NULL(refresh_result_kind_to_string(_REFRESH_RESULT_INVALID));
        ASSERT_EQ(refresh_result_kind_from_string("OK"), _REFRESH_RESULT_INVALID);
        ASSERT_EQ(refresh_result_kind_from_string(NULL), _REFRESH_RESULT_INVALID);
}
