/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every client-facing error shape and the status <-> kind map. */
#include <assert.h>

#include "buf.h"
#include "api/api-error.h"

static const struct {
        unsigned status[_API_SHAPE_MAX];
        const char *type[_API_SHAPE_MAX];
} table[_FAILURE_KIND_MAX] = {
        [FAILURE_INVALID_REQUEST] = { { 400, 400 }, { "invalid_request_error", "invalid_request_error" } },
        [FAILURE_AUTHENTICATION] = { { 401, 401 }, { "authentication_error", "authentication_error" } },
        [FAILURE_PERMISSION] = { { 403, 403 }, { "permission_error", "permission_error" } },
        [FAILURE_NOT_FOUND] = { { 404, 404 }, { "invalid_request_error", "not_found_error" } },
        [FAILURE_TOO_LARGE] = { { 413, 413 }, { "invalid_request_error", "request_too_large" } },
        [FAILURE_RATE_LIMIT] = { { 429, 429 }, { "rate_limit_error", "rate_limit_error" } },
        [FAILURE_INTERNAL] = { { 500, 500 }, { "api_error", "api_error" } },
        [FAILURE_BAD_GATEWAY] = { { 502, 502 }, { "api_error", "api_error" } },
        [FAILURE_UNAVAILABLE] = { { 503, 503 }, { "api_error", "api_error" } },
        [FAILURE_TIMEOUT] = { { 504, 504 }, { "api_error", "api_error" } },
        [FAILURE_OVERLOADED] = { { 503, 529 }, { "api_error", "overloaded_error" } },
};

static bool valid(ApiShape shape, FailureKind kind) {
        return shape >= 0 && shape < _API_SHAPE_MAX && kind >= 0 && kind < _FAILURE_KIND_MAX;
}

unsigned api_error_status(ApiShape shape, FailureKind kind) {
        return valid(shape, kind) ? table[kind].status[shape] : 500;
}

const char *api_error_type(ApiShape shape, FailureKind kind) {
        return valid(shape, kind) ? table[kind].type[shape] : "api_error";
}

FailureKind api_error_kind_from_status(unsigned status) {
        /* The first kind with this status in either API; 529 is Anthropic's "overloaded". */
        for (FailureKind k = 0; k < _FAILURE_KIND_MAX; k++)
                for (ApiShape s = 0; s < _API_SHAPE_MAX; s++)
                        if (table[k].status[s] == status)
                                return k;
        return status >= 400 && status < 500 ? FAILURE_INVALID_REQUEST : FAILURE_INTERNAL;
}

int api_error_render(ApiShape shape, const Failure *f, char **ret_body, size_t *ret_size) {
        _cleanup_(buf_done) Buf b = {};
        const char *m = f->message ?: "Unknown error.";
        int r;

        assert(shape >= 0 && shape < _API_SHAPE_MAX);
        if (shape == API_SHAPE_ANTHROPIC) {
                r = buf_puts_many(&b, "{\"type\":\"error\",\"error\":{\"type\":\"", api_error_type(shape, f->kind),
                                  "\",\"message\":");
                if (r >= 0)
                        r = buf_put_json_string_utf8(&b, m, strlen(m));
                if (r >= 0)
                        r = buf_puts(&b, "}}");
        } else {
                r = buf_puts(&b, "{\"error\":{\"message\":");
                if (r >= 0)
                        r = buf_put_json_string_utf8(&b, m, strlen(m));
                if (r >= 0)
                        r = buf_puts_many(&b, ",\"type\":\"", api_error_type(shape, f->kind), "\",\"param\":");
                if (r >= 0)
                        r = f->param ? buf_put_json_string_utf8(&b, f->param, strlen(f->param)) : buf_puts(&b, "null");
                if (r >= 0)
                        r = buf_puts(&b, ",\"code\":");
                if (r >= 0)
                        r = f->code ? buf_put_json_string_utf8(&b, f->code, strlen(f->code)) : buf_puts(&b, "null");
                if (r >= 0)
                        r = buf_puts(&b, "}}");
        }
        if (r < 0)
                return r;
        *ret_size = b.size;
        *ret_body = buf_steal(&b);
        return *ret_body ? 0 : -ENOMEM;
}

int api_error_respond(HttpRequest *http, ApiShape shape, const Failure *f) {
        _cleanup_free_ char *body = NULL;
        size_t size = 0;
        char retry[64];
        const char *headers[2] = {};
        int r = api_error_render(shape, f, &body, &size);
        if (r < 0)
                return http_request_respond_error(http, 500, "Out of memory.");
        if (f->retry_after > 0) {
                snprintf(retry, sizeof retry, "Retry-After: %llu",
                         (unsigned long long) ((f->retry_after + USEC_PER_SEC - 1) / USEC_PER_SEC));
                headers[0] = retry;
        }
        return http_request_respond(http, api_error_status(shape, f->kind), "application/json", body, size, headers);
}
