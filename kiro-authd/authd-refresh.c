/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Token refresh wire formats (KIRO-PROTOCOL.md A.8, B §2.1–2.3). */
#include <curl/curl.h>
#include <strings.h>

#include "authd-kimi.h"
#include "authd-refresh.h"
#include "curl-glue.h"
#include "json-util.h"
#include "url-util.h"

/* User agents seen from the IDE (B §2.1, §2.2); one place to change them. */
#define KIRO_IDE_VERSION "0.7.45"
#define OIDC_USER_AGENT "aws-sdk-js/3.980.0 ua/2.1 os/linux lang/js md/nodejs#20.18.0 api/sso-oidc#3.980.0 m/E KiroIDE"

/* Default access-token lifetime when the answer has no expiresIn (B §2.1). */
#define DEFAULT_EXPIRES_IN_SEC 3600

void refresh_request_done(RefreshRequest *r) {
        free(r->url);
        erase_and_free_sized(r->body, r->body_size);
        free(r->user_agent);
        strv_free(r->headers);
        *r = (RefreshRequest) {};
}

void refresh_result_done(RefreshResult *r) {
        erase_and_free(r->access_token);
        erase_and_free(r->refresh_token);
        free(r->profile_arn);
        free(r->error);
        *r = (RefreshResult) {};
}

static const char *const refresh_error_table[_REFRESH_E_MAX] = {
        [REFRESH_E_NO_LOGIN] = "the credential has no refresh token or client registration",
        [REFRESH_E_UNSUPPORTED] = "the credential's method has no refresh",
        [REFRESH_E_BAD_REGION] = "the credential's region is not a valid region",
        [REFRESH_E_BAD_URL] = "the refresh endpoint is not an allowed URL",
};

const char *refresh_error_to_string(int e) {
        return e > 0 && e < _REFRESH_E_MAX ? refresh_error_table[e] : NULL;
}

static int set_body_json(RefreshRequest *req, json_object *o) {
        /* Serialized so that json-c's own print buffer keeps no copy of the secrets. */
        int r = json_to_string_secret(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &req->body,
                                      &req->body_size);
        if (r < 0)
                return r;
        req->content_type = "application/json";
        return 0;
}

/* The refresh URL for a configured template and the credential's region, built with CURLU. */
static int build_url(const char *template, const char *region, const char *path, char **ret,
                     char **ret_message) {
        if (!region_is_valid(region)) {
                if (ret_message && asprintf(ret_message, "the credential's region '%.*s' is not a valid region",
                                            REGION_MAX, region) < 0)
                        *ret_message = NULL;
                return REFRESH_E_BAD_REGION;
        }
        int r = url_from_template(template, region, path, ret);
        if (r == -EINVAL) {
                if (ret_message && asprintf(ret_message,
                                            "the refresh URL template '%s' is not a URL with {region} only in its host",
                                            template) < 0)
                        *ret_message = NULL;
                return REFRESH_E_BAD_URL;
        }
        return r;
}

int form_append(char **buf, size_t *size, const char *key, const char *value) {
        char *e = curl_easy_escape(NULL, value, 0);
        if (!e)
                return -ENOMEM;
        size_t need = *size + (*size ? 1 : 0) + strlen(key) + 1 + strlen(e) + 1;
        char *n = malloc(need);
        if (!n) {
                explicit_bzero(e, strlen(e));
                curl_free(e);
                return -ENOMEM;
        }
        snprintf(n, need, "%s%s%s=%s", *buf ?: "", *size ? "&" : "", key, e);
        explicit_bzero(e, strlen(e));
        curl_free(e);
        erase_and_free_sized(*buf, *size);
        *buf = n;
        *size = strlen(n);
        return 0;
}

int refresh_build_request(const CredentialRecord *c, const char *kiro_auth_url, const char *oidc_url,
                          const char *kimi_auth_url, RefreshRequest *ret, char **ret_message) {
        RefreshRequest req = {};
        json_object *o = NULL;
        const char *region = c->region ?: "us-east-1";
        int r;

        if (c->method == AUTH_METHOD_API_KEY)
                return REFRESH_E_UNSUPPORTED;
        if (!c->refresh_token)
                return REFRESH_E_NO_LOGIN;

        switch (c->method) {
        case AUTH_METHOD_SOCIAL:
                r = build_url(kiro_auth_url, region, "/refreshToken", &req.url, ret_message);
                if (r != 0)
                        return r;
                o = json_object_new_object();
                if (!o || json_set_string(o, "refreshToken", c->refresh_token) < 0)
                        r = -ENOMEM;
                else
                        r = set_body_json(&req, o);
                if (asprintf(&req.user_agent, "KiroIDE-%s-%s", KIRO_IDE_VERSION, strempty(c->machine_id)) < 0)
                        r = -ENOMEM;
                break;

        case AUTH_METHOD_BUILDER_ID:
        case AUTH_METHOD_IDC:
                if (!c->client_id || !c->client_secret)
                        return REFRESH_E_NO_LOGIN;
                r = build_url(oidc_url, region, "/token", &req.url, ret_message);
                if (r != 0)
                        return r;
                /* camelCase JSON, not form encoding (B §2.2). */
                o = json_object_new_object();
                if (!o || json_set_string(o, "grantType", "refresh_token") < 0 ||
                    json_set_string(o, "clientId", c->client_id) < 0 ||
                    json_set_string(o, "clientSecret", c->client_secret) < 0 ||
                    json_set_string(o, "refreshToken", c->refresh_token) < 0)
                        r = -ENOMEM;
                else
                        r = set_body_json(&req, o);
                req.user_agent = strdup(OIDC_USER_AGENT);
                break;

        case AUTH_METHOD_EXTERNAL_IDP:
                if (!c->token_endpoint || !c->client_id)
                        return REFRESH_E_NO_LOGIN;
                req.url = strdup(c->token_endpoint);
                r = form_append(&req.body, &req.body_size, "grant_type", "refresh_token");
                if (r >= 0)
                        r = form_append(&req.body, &req.body_size, "client_id", c->client_id);
                if (r >= 0)
                        r = form_append(&req.body, &req.body_size, "refresh_token", c->refresh_token);
                if (r >= 0 && c->scopes)
                        r = form_append(&req.body, &req.body_size, "scope", c->scopes);
                req.content_type = "application/x-www-form-urlencoded";
                req.user_agent = strdup(OIDC_USER_AGENT);
                break;

        case AUTH_METHOD_KIMI_DEVICE: {
                char device_id[33];
                /* Form-encoded at the same token endpoint as the login, with kimi-cli's client id and
                 * headers (B §7). */
                r = url_from_template(kimi_auth_url, "us-east-1", "/api/oauth/token", &req.url);
                if (r == -EINVAL) {
                        if (ret_message && asprintf(ret_message, "the Kimi auth URL '%s' is not a URL", kimi_auth_url) < 0)
                                *ret_message = NULL;
                        return REFRESH_E_BAD_URL;
                }
                if (r < 0)
                        return r;
                r = form_append(&req.body, &req.body_size, "client_id", c->client_id ?: KIMI_CLIENT_ID);
                if (r >= 0)
                        r = form_append(&req.body, &req.body_size, "grant_type", "refresh_token");
                if (r >= 0)
                        r = form_append(&req.body, &req.body_size, "refresh_token", c->refresh_token);
                if (r >= 0)
                        r = kimi_headers(kimi_device_id(c, device_id), &req.headers);
                req.content_type = "application/x-www-form-urlencoded";
                req.user_agent = strdup(KIMI_USER_AGENT);
                break;
        }

        default:
                return REFRESH_E_UNSUPPORTED;
        }
        if (o) {
                json_object_erase_strings(o);
                json_object_put(o);
        }
        if (r >= 0 && (!req.url || !req.user_agent || !req.body))
                r = -ENOMEM;
        if (r >= 0 && url_check_scheme(req.url) < 0) {
                if (ret_message && asprintf(ret_message,
                                            "refusing refresh URL '%s': only https:// (or http:// to loopback) is allowed",
                                            req.url) < 0)
                        *ret_message = NULL;
                r = REFRESH_E_BAD_URL;
        }
        if (r != 0) {
                refresh_request_done(&req);
                return r;
        }
        *ret = req;
        return 0;
}

int refresh_error_code(const char *body, size_t size, char **ret_code, char **ret_description) {
        _cleanup_json_ json_object *o = NULL;
        const char *s, *d = NULL;

        *ret_code = NULL;
        if (ret_description)
                *ret_description = NULL;
        if (!body || json_parse_bounded(body, size, 8, &o, NULL) < 0 || !json_object_is_type(o, json_type_object))
                return 0;

        if (json_get_string(o, "error", &s) < 0 && json_get_string(o, "__type", &s) < 0 &&
            json_get_string(o, "code", &s) < 0)
                s = NULL;
        if (json_get_string(o, "error_description", &d) < 0 && json_get_string(o, "message", &d) < 0 &&
            json_get_string(o, "Message", &d) < 0)
                d = NULL;
        if (s) {
                /* "com.amazonaws.sso#InvalidGrantException:http://..." → "InvalidGrantException" */
                const char *h = strrchr(s, '#');
                if (h)
                        s = h + 1;
                *ret_code = strndup(s, strcspn(s, ":"));
                if (!*ret_code)
                        return -ENOMEM;
        }
        if (d && ret_description) {
                /* Descriptions are server text; keep them short and printable. */
                *ret_description = strndup(d, 200);
                for (char *p = *ret_description; p && *p; p++)
                        if ((unsigned char) *p < ' ')
                                *p = ' ';
        }
        return *ret_code ? 1 : 0;
}

static bool code_is_permanent(const char *code) {
        static const char *const permanent[] = {
                "invalid_grant", "invalid_client", "expired_token", "invalid_token", "access_denied",
                "unauthorized_client", "InvalidGrantException", "InvalidClientException", "ExpiredTokenException",
                "InvalidTokenException", "AccessDeniedException", "UnauthorizedClientException",
        };
        for (size_t i = 0; i < ELEMENTSOF(permanent); i++)
                if (strcasecmp(code, permanent[i]) == 0)
                        return true;
        return false;
}

static RefreshOutcome failure(RefreshResult *res, RefreshOutcome o, long status, const char *code,
                              const char *desc) {
        int r;

        if (status == 0)
                r = asprintf(&res->error, "network error: %s", desc ?: "unknown");
        else if (code)
                r = asprintf(&res->error, "HTTP %ld: %s%s%s%s", status, code, desc ? " (" : "", desc ?: "",
                             desc ? ")" : "");
        else
                r = asprintf(&res->error, "HTTP %ld%s%s", status, desc ? ": " : "", desc ?: "");
        if (r < 0)
                res->error = NULL;
        return o;
}

RefreshOutcome refresh_parse_response(AuthMethod m, long status, const char *body, size_t size, RefreshResult *ret) {
        RefreshResult res = {};
        RefreshOutcome o;

        if (status == 0) {
                o = failure(&res, REFRESH_TRANSIENT, 0, NULL, body);
                *ret = res;
                return o;
        }
        if (status != 200) {
                _cleanup_free_ char *code = NULL, *desc = NULL;
                (void) refresh_error_code(body, size, &code, &desc);
                /* B §2.3 (the LB rule): dead iff 400/401/403 with a permanent code, or a social 401/403
                 * without any code. Everything else (5xx, 408, 429, slow_down, other 400s) is transient. */
                if ((status == 400 || status == 401 || status == 403) && code && code_is_permanent(code))
                        o = REFRESH_PERMANENT;
                else if ((status == 401 || status == 403) && !code && m == AUTH_METHOD_SOCIAL)
                        o = REFRESH_PERMANENT;
                /* Kimi: any 401/403 means a new login (B §7, kimi-cli's oauth.py). */
                else if ((status == 401 || status == 403) && m == AUTH_METHOD_KIMI_DEVICE)
                        o = REFRESH_PERMANENT;
                else
                        o = REFRESH_TRANSIENT;
                o = failure(&res, o, status, code, desc);
                *ret = res;
                return o;
        }

        _cleanup_json_ json_object *j = NULL;
        const char *at = NULL, *rt = NULL, *arn = NULL;
        int64_t expires = DEFAULT_EXPIRES_IN_SEC;
        bool snake = m == AUTH_METHOD_EXTERNAL_IDP || m == AUTH_METHOD_KIMI_DEVICE;

        if (json_parse_secret(body, size, 8, &j, NULL) < 0 || !json_object_is_type(j, json_type_object)) {
                o = failure(&res, REFRESH_TRANSIENT, status, NULL, "answer is not a JSON object");
                *ret = res;
                return o;
        }
        if (json_get_string(j, snake ? "access_token" : "accessToken", &at) < 0 || isempty(at)) {
                json_object_erase_strings(j);
                o = failure(&res, REFRESH_TRANSIENT, status, NULL, "answer has no access token");
                *ret = res;
                return o;
        }
        (void) json_get_string(j, snake ? "refresh_token" : "refreshToken", &rt);
        (void) json_get_string(j, "profileArn", &arn);
        if (json_get_int64(j, snake ? "expires_in" : "expiresIn", &expires) < 0 || expires <= 0 ||
            expires > 366 * 86400)
                expires = DEFAULT_EXPIRES_IN_SEC;

        res.access_token = strdup(at);
        res.refresh_token = isempty(rt) ? NULL : strdup(rt);
        /* A server's ARN names the region the proxy sends prompts to: only a real region gets through. */
        char region[REGION_MAX + 1];
        if (!isempty(arn) && arn_get_region(arn, region, sizeof region) < 0) {
                res.profile_arn_rejected = true;
                arn = NULL;
        }
        res.profile_arn = isempty(arn) ? NULL : strdup(arn);
        res.expires_in = (usec_t) expires * USEC_PER_SEC;
        json_object_erase_strings(j);
        if (!res.access_token) {
                refresh_result_done(&res);
                res.error = strdup("out of memory");
                *ret = res;
                return REFRESH_TRANSIENT;
        }
        *ret = res;
        return REFRESH_OK;
}

RefreshResultKind refresh_result_kind_of(RefreshOutcome o, bool stored) {
        switch (o) {
        case REFRESH_OK:
                return stored ? REFRESH_RESULT_OK : REFRESH_RESULT_LOCAL_ERROR;
        case REFRESH_TRANSIENT:
                return REFRESH_RESULT_TRANSIENT_ERROR;
        case REFRESH_PERMANENT:
                return REFRESH_RESULT_REJECTED;
        }
        return _REFRESH_RESULT_INVALID;
}
