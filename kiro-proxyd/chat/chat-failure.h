/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Why a request failed, in neutral form: back ends and parsers report it, api/api-error renders it in the
 * client API's shape and maps it to an HTTP status. */
#pragma once

#include "macro.h"
#include "time-util.h"

typedef enum FailureKind {
        FAILURE_INVALID_REQUEST,        /* the client's request is wrong */
        FAILURE_AUTHENTICATION,         /* no or wrong client API key */
        FAILURE_PERMISSION,             /* the upstream account may not do this (denied, suspended) */
        FAILURE_NOT_FOUND,              /* unknown route or model */
        FAILURE_TOO_LARGE,              /* request over a size limit */
        FAILURE_RATE_LIMIT,             /* throttled or quota exhausted */
        FAILURE_INTERNAL,               /* our own fault (out of memory, cannot start) */
        FAILURE_BAD_GATEWAY,            /* upstream answered nonsense or broke off */
        FAILURE_UNAVAILABLE,            /* no usable credential, kiro-authd away */
        FAILURE_TIMEOUT,                /* upstream sent nothing in time */
        FAILURE_OVERLOADED,             /* upstream capacity */
        _FAILURE_KIND_MAX,
        _FAILURE_KIND_INVALID = -EINVAL,
} FailureKind;

typedef struct Failure {
        FailureKind kind;
        char *message;          /* secret-free, for the client; may be any bytes (renderers make it valid UTF-8) */
        char *param;            /* the offending request field (may be NULL) */
        char *code;             /* a machine-readable code (may be NULL) */
        usec_t retry_after;     /* 0 = none */
} Failure;

void failure_done(Failure *f);
/* Sets f (freeing what it held) with a formatted message. Returns -EINVAL for convenience. */
int failure_set(Failure *f, FailureKind kind, const char *param, const char *fmt, ...) _printf_(4, 5);
