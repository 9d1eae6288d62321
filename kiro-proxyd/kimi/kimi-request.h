/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The conversation form → a Kimi (OpenAI-compatible) chat completions request body, with the quirks of
 * KIRO-PROTOCOL B §7 applied before it leaves: no client temperature on reasoning models, "developer" and
 * other non-user roles sent as "system", reasoning replayed as reasoning_content. */
#pragma once

#include <stddef.h>

#include "chat/chat-conversation.h"

/* Whether a Kimi model reasons (and so accepts no client temperature): a "-thinking" name, or any
 * conversation that asked for reasoning. */
bool kimi_model_reasons(const Conversation *conv);

/* Builds the streaming request body (stream: true, usage included). Returns 0 with a malloc'ed body and
 * its size; -EINVAL with *ret_error (malloc'ed, for the client) when the conversation cannot be sent;
 * -ENOMEM. */
int kimi_request_build(const Conversation *conv, char **ret_body, size_t *ret_size, char **ret_error);
