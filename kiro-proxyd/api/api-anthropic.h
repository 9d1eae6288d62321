/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Anthropic Messages front end: POST /v1/messages (streamed or not) and /v1/messages/count_tokens. */
#pragma once

#include "api/api-request.h"
#include "chat/chat.h"

/* Parses a Messages request body into the conversation form and resolves its model (ret_model may be
 * NULL); count_only skips the checks that only matter for generation (max_tokens). */
int anthropic_parse_messages(const char *body, size_t size, const ApiLimits *limits, bool count_only,
                             Conversation **ret, ModelInfo *ret_model, Failure *err);

int anthropic_handle_messages(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits);
int anthropic_handle_count_tokens(HttpRequest *http, const ApiLimits *limits);
