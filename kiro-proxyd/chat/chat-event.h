/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a back end's answer stream says, in neutral form: the events a back end produces and the chat
 * and the front ends consume (text, reasoning, tool calls, usage, an upstream error, the end). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

/* Upstream errors, classified by the back end that saw them (the Kiro one follows KIRO-PROTOCOL B §6);
 * the back end's retry logic and the chat decide what to do with each kind. */
typedef enum ChatErrorKind {
        CHAT_ERROR_UNKNOWN,
        CHAT_ERROR_VALIDATION,          /* ValidationException, 400: the request is wrong, no retry */
        CHAT_ERROR_INPUT_TOO_LONG,      /* reason CONTENT_LENGTH_EXCEEDS_THRESHOLD, "Input is too long." */
        CHAT_ERROR_CONTENT_LENGTH_EXCEEDED, /* ContentLengthExceededException: the *output* hit its limit;
                                         * not a failure, the answer stops with max_tokens */
        CHAT_ERROR_THROTTLED,           /* ThrottlingException, 429 */
        CHAT_ERROR_QUOTA,               /* 402, ServiceQuotaExceeded, MONTHLY_REQUEST_COUNT & co */
        CHAT_ERROR_UNAUTHORIZED,        /* 401, 403 "bearer token … invalid": refresh and retry */
        CHAT_ERROR_ACCESS_DENIED,       /* AccessDeniedException / other 403 */
        CHAT_ERROR_SUSPENDED,           /* reason (TEMPORARILY_)SUSPENDED */
        CHAT_ERROR_OVERLOADED,          /* INSUFFICIENT_MODEL_CAPACITY, MODEL_TEMPORARILY_UNAVAILABLE, high load */
        CHAT_ERROR_SERVER,              /* InternalServerException, other 5xx */
        CHAT_ERROR_PROTOCOL,            /* the stream itself is broken: bad CRC, oversized frame, bad JSON */
        CHAT_ERROR_TRUNCATED,           /* the stream ended early (A.11) */
        _CHAT_ERROR_KIND_MAX,
        _CHAT_ERROR_KIND_INVALID = -EINVAL,
} ChatErrorKind;

const char *chat_error_kind_to_string(ChatErrorKind k) _pure_;

typedef struct ChatError {
        ChatErrorKind kind;
        char *type;             /* "ValidationException" (namespace stripped), may be NULL */
        char *reason;           /* "CONTENT_LENGTH_EXCEEDS_THRESHOLD", may be NULL */
        char *message;          /* human text, never NULL once filled */
} ChatError;

void chat_error_done(ChatError *e);

typedef enum ChatStopReason {
        CHAT_STOP_REASON_END_TURN,
        CHAT_STOP_REASON_TOOL_USE,
        CHAT_STOP_REASON_MAX_TOKENS,
        CHAT_STOP_REASON_CONTEXT_WINDOW_EXCEEDED,       /* context usage reached 100 % */
        CHAT_STOP_REASON_ERROR,                         /* an ERROR event came first: never a normal stop */
        _CHAT_STOP_REASON_MAX,
        _CHAT_STOP_REASON_INVALID = -EINVAL,
} ChatStopReason;

const char *chat_stop_reason_to_string(ChatStopReason s) _pure_;

/* Cumulative usage as reported by the stream. */
typedef struct ChatUsage {
        bool has_tokens;                        /* metadataEvent.tokenUsage seen */
        uint64_t input_tokens;                  /* uncachedInputTokens */
        uint64_t output_tokens;
        uint64_t total_tokens;
        uint64_t cache_read_input_tokens;
        uint64_t cache_write_input_tokens;
        bool has_context_usage;                 /* contextUsageEvent seen */
        double context_usage_percent;           /* 0..100 */
        bool has_credits;                       /* meteringEvent seen */
        double credits;
        uint64_t output_tokens_estimate;        /* estimator over all text, reasoning and tool arguments */
} ChatUsage;

/* KIRO-PROTOCOL A.6: input tokens = tokenUsage if reported, else context percentage × context_window / 100, else
 * input_estimate; output tokens = tokenUsage if reported, else the estimate. */
void chat_usage_resolve(const ChatUsage *u, uint64_t context_window, uint64_t input_estimate,
                        uint64_t *ret_input_tokens, uint64_t *ret_output_tokens);

typedef enum ChatEventType {
        CHAT_EVENT_TEXT,                /* text: answer delta (never deduplicated) */
        CHAT_EVENT_THINKING,            /* text: native reasoning delta (reasoningContentEvent) */
        CHAT_EVENT_THINKING_SIGNATURE,  /* text: signature of the reasoning so far */
        CHAT_EVENT_THINKING_REDACTED,   /* text: base64 redacted reasoning */
        CHAT_EVENT_TOOL_START,          /* tool_id, tool_name, tool_index */
        CHAT_EVENT_TOOL_ARGS,           /* tool_id, tool_name, tool_index, text: a fragment of JSON */
        CHAT_EVENT_TOOL_END,            /* tool_id, tool_name, tool_index */
        CHAT_EVENT_USAGE,               /* usage updated (metadata, context usage or metering) */
        CHAT_EVENT_ERROR,               /* error */
        CHAT_EVENT_END,                 /* last event: stop_reason, truncated, usage */
        _CHAT_EVENT_TYPE_MAX,
        _CHAT_EVENT_TYPE_INVALID = -EINVAL,
} ChatEventType;

const char *chat_event_type_to_string(ChatEventType t) _pure_;

/* One internal event; pointers are valid during the callback only. Text is always whole UTF-8 as it came
 * in a frame payload, NUL-terminated, with its size. */
typedef struct ChatEvent {
        ChatEventType type;
        const char *text;
        size_t size;
        const char *tool_id;
        const char *tool_name;          /* the client's name: aliases are restored */
        unsigned tool_index;            /* 0-based, in order of TOOL_START */
        const ChatUsage *usage;         /* USAGE, END */
        const ChatError *error;         /* ERROR */
        ChatStopReason stop_reason;     /* END */
        bool truncated;                 /* END: the stream did not end properly (A.11) */
} ChatEvent;
