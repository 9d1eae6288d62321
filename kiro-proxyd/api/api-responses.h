/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI Responses API front end (POST /v1/responses, what Codex speaks): request parsing into the
 * conversation form and the Responses event sequence / response object. Errors use OpenAI's shape. */
#pragma once

#include "time-util.h"
#include "api/api-request.h"
#include "chat/chat-conversation.h"
#include "chat/chat-failure.h"
#include "chat/chat-models.h"

/* Responses kept for previous_response_id (store: true): each as the JSON array of its input items (the
 * previous response's chain included) and output items, in memory only, for at most ttl and at most max
 * of them (the oldest go first). max 0 = nothing is kept. */
typedef struct ResponsesStore ResponsesStore;

#define RESPONSES_STORE_MAX_DEFAULT 64U
#define RESPONSES_STORE_SEC_DEFAULT (3600 * USEC_PER_SEC)

int responses_store_new(size_t max, usec_t ttl, ResponsesStore **ret);
ResponsesStore *responses_store_free(ResponsesStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ResponsesStore *, responses_store_free);
/* Takes items (a JSON array as text). */
int responses_store_put(ResponsesStore *s, const char *id, char *items);
/* 0 and the items; -ENOENT unknown, -ESTALE expired (then forgotten). */
int responses_store_get(ResponsesStore *s, const char *id, const char **ret_items);
size_t responses_store_count(const ResponsesStore *s);

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
        char *previous_response_id;     /* echoed, may be NULL */
        char *input_items;              /* with store: the whole input chain as a JSON array, to keep */
} ResponsesOptions;

void responses_options_done(ResponsesOptions *o);

/* Parses a POST /v1/responses body. On failure err names the field (OpenAI "param"). */
int responses_parse(const char *body, size_t size, const ApiLimits *limits, ResponsesStore *store, Conversation **ret,
                    ResponsesOptions *opts, Failure *err);

#include "chat/chat.h"

/* POST /v1/responses. */
int responses_handle(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, ResponsesStore *store);
