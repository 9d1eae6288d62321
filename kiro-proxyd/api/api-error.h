/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An API error in neutral form; each front end renders it in its own JSON shape. */
#pragma once

#include "macro.h"
#include "time-util.h"

typedef enum ApiErrorKind {
        API_ERROR_INVALID_REQUEST,      /* 400 */
        API_ERROR_AUTHENTICATION,       /* 401 */
        API_ERROR_PERMISSION,           /* 403 */
        API_ERROR_NOT_FOUND,            /* 404 */
        API_ERROR_TOO_LARGE,            /* 413 */
        API_ERROR_RATE_LIMIT,           /* 429 */
        API_ERROR_API,                  /* 500 */
        API_ERROR_BAD_GATEWAY,          /* 502: upstream answered nonsense or broke off */
        API_ERROR_UNAVAILABLE,          /* 503: no usable credential, kiro-authd away */
        API_ERROR_TIMEOUT,              /* 504 */
        API_ERROR_OVERLOADED,           /* 529 (Anthropic) / 503 (OpenAI): upstream capacity */
        _API_ERROR_KIND_MAX,
        _API_ERROR_KIND_INVALID = -EINVAL,
} ApiErrorKind;

typedef struct ApiError {
        ApiErrorKind kind;
        char *message;          /* secret-free, for the client */
        char *param;            /* the offending field, OpenAI "param" (may be NULL) */
        char *code;             /* OpenAI "code" (may be NULL) */
        usec_t retry_after;     /* 0 = none */
} ApiError;

void api_error_done(ApiError *e);
/* Sets e (freeing what it held) with a formatted message. Returns -EINVAL for convenience. */
int api_error_set(ApiError *e, ApiErrorKind kind, const char *param, const char *fmt, ...) _printf_(4, 5);

unsigned api_error_status(ApiErrorKind kind, bool anthropic);
/* OpenAI "type" and Anthropic "error.type" strings. */
const char *api_error_openai_type(ApiErrorKind kind);
const char *api_error_anthropic_type(ApiErrorKind kind);
