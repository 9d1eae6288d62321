/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The neutral events of a back end's answer stream. */
#include <assert.h>

#include "chat/chat-event.h"

static const char *const error_kind_table[_CHAT_ERROR_KIND_MAX] = {
        [CHAT_ERROR_UNKNOWN]                 = "unknown",
        [CHAT_ERROR_VALIDATION]              = "validation",
        [CHAT_ERROR_INPUT_TOO_LONG]          = "input-too-long",
        [CHAT_ERROR_CONTENT_LENGTH_EXCEEDED] = "content-length-exceeded",
        [CHAT_ERROR_THROTTLED]               = "throttled",
        [CHAT_ERROR_QUOTA]                   = "quota-exhausted",
        [CHAT_ERROR_UNAUTHORIZED]            = "unauthorized",
        [CHAT_ERROR_ACCESS_DENIED]           = "access-denied",
        [CHAT_ERROR_SUSPENDED]               = "suspended",
        [CHAT_ERROR_OVERLOADED]              = "overloaded",
        [CHAT_ERROR_SERVER]                  = "server-error",
        [CHAT_ERROR_PROTOCOL]                = "protocol",
        [CHAT_ERROR_TRUNCATED]               = "truncated",
};

const char *chat_error_kind_to_string(ChatErrorKind k) {
        if (k < 0 || k >= _CHAT_ERROR_KIND_MAX)
                return NULL;
        return error_kind_table[k];
}

static const char *const stop_reason_table[_CHAT_STOP_REASON_MAX] = {
        [CHAT_STOP_REASON_END_TURN]                = "end_turn",
        [CHAT_STOP_REASON_TOOL_USE]                = "tool_use",
        [CHAT_STOP_REASON_MAX_TOKENS]              = "max_tokens",
        [CHAT_STOP_REASON_CONTEXT_WINDOW_EXCEEDED] = "model_context_window_exceeded",
        [CHAT_STOP_REASON_ERROR]                   = "error",
};

const char *chat_stop_reason_to_string(ChatStopReason s) {
        if (s < 0 || s >= _CHAT_STOP_REASON_MAX)
                return NULL;
        return stop_reason_table[s];
}

static const char *const event_type_table[_CHAT_EVENT_TYPE_MAX] = {
        [CHAT_EVENT_TEXT]               = "text",
        [CHAT_EVENT_THINKING]           = "thinking",
        [CHAT_EVENT_THINKING_SIGNATURE] = "thinking-signature",
        [CHAT_EVENT_THINKING_REDACTED]  = "thinking-redacted",
        [CHAT_EVENT_TOOL_START]         = "tool-start",
        [CHAT_EVENT_TOOL_ARGS]          = "tool-args",
        [CHAT_EVENT_TOOL_END]           = "tool-end",
        [CHAT_EVENT_USAGE]              = "usage",
        [CHAT_EVENT_ERROR]              = "error",
        [CHAT_EVENT_END]                = "end",
};

const char *chat_event_type_to_string(ChatEventType t) {
        if (t < 0 || t >= _CHAT_EVENT_TYPE_MAX)
                return NULL;
        return event_type_table[t];
}

void chat_error_done(ChatError *e) {
        if (!e)
                return;
        free(e->type);
        free(e->reason);
        free(e->message);
        *e = (ChatError) {};
}

void chat_usage_resolve(const ChatUsage *u, uint64_t context_window, uint64_t input_estimate,
                        uint64_t *ret_input_tokens, uint64_t *ret_output_tokens) {
        assert(u);

        if (ret_input_tokens) {
                if (u->has_tokens)
                        *ret_input_tokens = u->input_tokens + u->cache_read_input_tokens + u->cache_write_input_tokens;
                /* Only a percentage that is one: NaN, infinity or 1e300 from upstream would make the cast
                 * below undefined. */
                else if (u->has_context_usage && context_window > 0 && u->context_usage_percent > 0 &&
                         u->context_usage_percent <= 100)
                        *ret_input_tokens = (uint64_t) (u->context_usage_percent * (double) context_window / 100.0 + 0.5);
                else
                        *ret_input_tokens = input_estimate;
        }
        if (ret_output_tokens)
                *ret_output_tokens = u->has_tokens ? u->output_tokens : u->output_tokens_estimate;
}
