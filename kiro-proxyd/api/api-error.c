/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An API error in neutral form; each front end renders it in its own JSON shape. */
#include <stdarg.h>

#include "api/api-error.h"

static const struct {
        unsigned openai_status, anthropic_status;
        const char *openai_type, *anthropic_type;
} table[_API_ERROR_KIND_MAX] = {
        [API_ERROR_INVALID_REQUEST] = { 400, 400, "invalid_request_error", "invalid_request_error" },
        [API_ERROR_AUTHENTICATION] = { 401, 401, "authentication_error", "authentication_error" },
        [API_ERROR_PERMISSION] = { 403, 403, "permission_error", "permission_error" },
        [API_ERROR_NOT_FOUND] = { 404, 404, "invalid_request_error", "not_found_error" },
        [API_ERROR_TOO_LARGE] = { 413, 413, "invalid_request_error", "request_too_large" },
        [API_ERROR_RATE_LIMIT] = { 429, 429, "rate_limit_error", "rate_limit_error" },
        [API_ERROR_API] = { 500, 500, "api_error", "api_error" },
        [API_ERROR_BAD_GATEWAY] = { 502, 502, "api_error", "api_error" },
        [API_ERROR_UNAVAILABLE] = { 503, 503, "api_error", "api_error" },
        [API_ERROR_TIMEOUT] = { 504, 504, "api_error", "api_error" },
        [API_ERROR_OVERLOADED] = { 503, 529, "api_error", "overloaded_error" },
};

void api_error_done(ApiError *e) {
        free(e->message);
        free(e->param);
        free(e->code);
        *e = (ApiError) {};
}

int api_error_set(ApiError *e, ApiErrorKind kind, const char *param, const char *fmt, ...) {
        va_list ap;
        api_error_done(e);
        e->kind = kind;
        va_start(ap, fmt);
        if (vasprintf(&e->message, fmt, ap) < 0)
                e->message = NULL;
        va_end(ap);
        e->param = param ? strdup(param) : NULL;
        return -EINVAL;
}

unsigned api_error_status(ApiErrorKind kind, bool anthropic) {
        if (kind < 0 || kind >= _API_ERROR_KIND_MAX)
                return 500;
        return anthropic ? table[kind].anthropic_status : table[kind].openai_status;
}

const char *api_error_openai_type(ApiErrorKind kind) {
        return kind >= 0 && kind < _API_ERROR_KIND_MAX ? table[kind].openai_type : "api_error";
}

const char *api_error_anthropic_type(ApiErrorKind kind) {
        return kind >= 0 && kind < _API_ERROR_KIND_MAX ? table[kind].anthropic_type : "api_error";
}
