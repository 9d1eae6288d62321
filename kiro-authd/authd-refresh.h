/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Token refresh wire formats (KIRO-PROTOCOL.md A.8, B §2): building the request, parsing the answer and
 * classifying failures as permanent or transient. Pure functions: the transfer itself is the manager's. */
#pragma once

#include "authd-credential.h"
#include "bus-names.h"

typedef struct RefreshRequest {
        char *url;
        char *body;             /* secret: wiped by refresh_request_done() */
        size_t body_size;
        const char *content_type;
        char *user_agent;
        char **headers;         /* extra "Name: value" headers (Kimi's X-Msh-*), not secret */
} RefreshRequest;

void refresh_request_done(RefreshRequest *r);

/* Domain errors of refresh_build_request(), returned as positive numbers (dbus-broker's error.h style):
 * a negative return is always a real errno (-ENOMEM), never a verdict on the credential. */
typedef enum RefreshError {
        _REFRESH_E_SUCCESS,
        REFRESH_E_NO_LOGIN,     /* no refresh token or client registration: the credential needs a login */
        REFRESH_E_UNSUPPORTED,  /* the method has no refresh (api-key) */
        REFRESH_E_BAD_REGION,   /* the credential's region is not a region (see region_is_valid()) */
        REFRESH_E_BAD_URL,      /* the endpoint is not https:// (or http:// to loopback), or no URL */
        _REFRESH_E_MAX,
} RefreshError;

const char *refresh_error_to_string(int e);

/* kiro_auth_url and oidc_url are templates with {region} in the host (url_from_template()); kimi_auth_url is
 * Kimi's OAuth base (no region). Returns 0,
 * a RefreshError > 0 (with *ret_message for REFRESH_E_BAD_URL and REFRESH_E_BAD_REGION), or -ENOMEM. */
int refresh_build_request(const CredentialRecord *c, const char *kiro_auth_url, const char *oidc_url,
                          const char *kimi_auth_url, RefreshRequest *ret, char **ret_message);

/* Appends key=value (form-urlencoded) to *buf of *size bytes; the old buffer is wiped. */
int form_append(char **buf, size_t *size, const char *key, const char *value);

typedef enum RefreshOutcome {
        REFRESH_OK,
        REFRESH_TRANSIENT,      /* network, timeouts, 5xx, 429, slow_down, other 400s: back off and retry */
        REFRESH_PERMANENT,      /* invalid_grant & co: the login is gone, needs a new one */
} RefreshOutcome;

typedef struct RefreshResult {
        char *access_token;     /* secrets */
        char *refresh_token;    /* NULL when the server did not rotate it */
        usec_t expires_in;      /* µs */
        char *profile_arn;      /* only when its region is valid (arn_get_region()) */
        bool profile_arn_rejected; /* the answer carried a profile ARN with an invalid region: dropped */
        char *error;            /* for failures: "HTTP 400: invalid_grant (Invalid refresh token provided)" */
} RefreshResult;

void refresh_result_done(RefreshResult *r);

/* Classifies an HTTP answer (status 0 = transport failure, then body is curl's error text). */
RefreshOutcome refresh_parse_response(AuthMethod m, long status, const char *body, size_t size, RefreshResult *ret);

/* The result a finished refresh answer counts as (the Refreshes property): ok when its tokens were stored,
 * local-error when they could not be, transient-error, rejected. */
RefreshResultKind refresh_result_kind_of(RefreshOutcome o, bool stored);

/* The error code of an OAuth/AWS error body: "error", or "__type" after '#' and before ':'. */
int refresh_error_code(const char *body, size_t size, char **ret_code, char **ret_description);
