/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI chat completions front end: request parsing and response rendering. */
#pragma once

#include "api/api-request.h"
#include "chat/chat-failure.h"
#include "chat/chat-conversation.h"
#include "chat/chat-models.h"

typedef struct OpenAIOptions {
        bool include_usage;     /* stream_options.include_usage */
        ModelInfo model;        /* the resolved model (always a Kiro one) */
} OpenAIOptions;

/* Parses a POST /v1/chat/completions body. On failure err names the field (OpenAI "param"). */
int openai_parse_chat(const char *body, size_t size, const ApiLimits *limits, Conversation **ret,
                      OpenAIOptions *opts, Failure *err);

#include "chat/chat.h"

/* POST /v1/chat/completions. */
int openai_handle_chat(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits);
