/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every client-facing error shape and the status <-> kind map, in one place: a Failure (chat/) in, the
 * API's JSON body and HTTP status out. Front ends and kiro-proxyd.c render errors only through this. */
#pragma once

#include "chat/chat-failure.h"
#include "http/http.h"

/* The client APIs, by the error shape they expect. The Responses API uses OpenAI's shape. */
typedef enum ApiShape {
        API_SHAPE_OPENAI,       /* {"error":{"message","type","param","code"}} */
        API_SHAPE_ANTHROPIC,    /* {"type":"error","error":{"type","message"}} */
        _API_SHAPE_MAX,
        _API_SHAPE_INVALID = -EINVAL,
} ApiShape;

/* The HTTP status for a failure of this kind in this API (Anthropic has 529 for "overloaded"). */
unsigned api_error_status(ApiShape shape, FailureKind kind);
/* The kind of a bare status (errors the HTTP layer raises itself). */
FailureKind api_error_kind_from_status(unsigned status);
/* OpenAI "type" / Anthropic "error.type". */
const char *api_error_type(ApiShape shape, FailureKind kind);

/* The JSON error body; the message is made valid UTF-8 (invalid bytes become U+FFFD), so a client's own
 * bytes echoed into it cannot break the JSON. */
int api_error_render(ApiShape shape, const Failure *f, char **ret_body, size_t *ret_size);
/* Responds with f in the API's shape, its status, and Retry-After when f has one. Final. */
int api_error_respond(HttpRequest *http, ApiShape shape, const Failure *f);
