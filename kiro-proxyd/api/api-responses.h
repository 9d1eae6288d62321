/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI Responses API front end (POST /v1/responses, what Codex speaks): request parsing into the
 * conversation form and the Responses event sequence / response object. Errors use OpenAI's shape. */
#pragma once

#include "api/api-request.h"
#include "chat/chat-conversation.h"
#include "chat/chat-failure.h"
#include "chat/chat-models.h"

typedef struct ResponsesOptions {
        ModelInfo model;                /* the resolved model (always a Kiro one) */
        bool store;                     /* as the client sent it (default true); nothing is kept either way */
        bool parallel_tool_calls;       /* echoed; Kiro decides */
        char *reasoning_effort;         /* echoed, may be NULL */
        char *metadata;                 /* the client's metadata object as JSON text, echoed; NULL = {} */
        char *user;                     /* echoed, may be NULL */
        char *instructions;             /* echoed, may be NULL */
        char *text_format;              /* text.format as JSON text, echoed; NULL = {"type":"text"} */
        char *tool_choice;              /* tool_choice as JSON text, echoed; NULL = "auto" */
} ResponsesOptions;

void responses_options_done(ResponsesOptions *o);

/* Parses a POST /v1/responses body. On failure err names the field (OpenAI "param"). */
int responses_parse(const char *body, size_t size, const ApiLimits *limits, Conversation **ret, ResponsesOptions *opts,
                    Failure *err);

#include "chat/chat.h"

/* POST /v1/responses. */
int responses_handle(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits);
