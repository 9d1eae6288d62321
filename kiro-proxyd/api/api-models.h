/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /v1/models from the live catalog (chat/chat-catalog.h, chat-models' merged list): OpenAI's shape, or
 * Anthropic's with an anthropic-version header; and a second chance for a model name the catalog may
 * have learned since it was last fetched. */
#pragma once

#include "api/api-request.h"
#include "chat/chat.h"

/* GET /v1/models: waits for the catalog when it is stale (first use, or older than its refresh interval). */
int api_models_handle(ChatContext *ctx, HttpRequest *http);

/* The body of /v1/models as it stands (anthropic: Anthropic's shape), without the providers ctx does not
 * list (ctx may be NULL: all). */
int api_models_render(ChatContext *ctx, bool anthropic, char **ret, size_t *ret_size);

typedef int (*ApiHandler)(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, void *extra);

/* For a front end whose parser said "unknown model": 1 when the catalog was stale and is being refreshed,
 * after which handler runs again on http (once: a second miss is the 404); 0 when the catalog is current
 * (answer the 404 now). */
int api_models_retry_unknown(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, ApiHandler handler,
                             void *extra);
