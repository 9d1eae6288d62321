/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kiro response stream: event-stream frames → internal events for the renderers (KIRO-PROTOCOL A.6,
 * A.7, A.11, B §4.2, §6). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "kiro/kiro-request.h"
#include "chat/chat-tokens.h"

/* Upstream errors, classified once here following B §6; the upstream layer and the renderers decide
 * what to do with each kind. */
typedef enum KiroErrorKind {
        KIRO_ERROR_UNKNOWN,
        KIRO_ERROR_VALIDATION,          /* ValidationException, 400: the request is wrong, no retry */
        KIRO_ERROR_INPUT_TOO_LONG,      /* reason CONTENT_LENGTH_EXCEEDS_THRESHOLD, "Input is too long." */
        KIRO_ERROR_CONTENT_LENGTH_EXCEEDED, /* ContentLengthExceededException: the *output* hit its limit;
                                         * not a failure, the answer stops with max_tokens */
        KIRO_ERROR_THROTTLED,           /* ThrottlingException, 429 */
        KIRO_ERROR_QUOTA,               /* 402, ServiceQuotaExceeded, MONTHLY_REQUEST_COUNT & co */
        KIRO_ERROR_UNAUTHORIZED,        /* 401, 403 "bearer token … invalid": refresh and retry */
        KIRO_ERROR_ACCESS_DENIED,       /* AccessDeniedException / other 403 */
        KIRO_ERROR_SUSPENDED,           /* reason (TEMPORARILY_)SUSPENDED */
        KIRO_ERROR_OVERLOADED,          /* INSUFFICIENT_MODEL_CAPACITY, MODEL_TEMPORARILY_UNAVAILABLE, high load */
        KIRO_ERROR_SERVER,              /* InternalServerException, other 5xx */
        KIRO_ERROR_PROTOCOL,            /* the stream itself is broken: bad CRC, oversized frame, bad JSON */
        KIRO_ERROR_TRUNCATED,           /* the stream ended early (A.11) */
        _KIRO_ERROR_KIND_MAX,
        _KIRO_ERROR_KIND_INVALID = -EINVAL,
} KiroErrorKind;

const char *kiro_error_kind_to_string(KiroErrorKind k) _pure_;

typedef struct KiroError {
        KiroErrorKind kind;
        char *type;             /* "ValidationException" (namespace stripped), may be NULL */
        char *reason;           /* "CONTENT_LENGTH_EXCEEDS_THRESHOLD", may be NULL */
        char *message;          /* human text, never NULL once filled */
} KiroError;

void kiro_error_done(KiroError *e);

/* Classification from whatever is known; all arguments may be NULL / 0. type may carry a namespace
 * ("com.amazon.aws.codewhisperer#ValidationException") or a suffix after ':'. http_status 0 means
 * "inside a 200 stream". */
KiroErrorKind kiro_error_classify(const char *type, const char *reason, const char *message, int http_status);

/* Parses an upstream error body (JSON {message|Message, reason, __type|_type} or plain text) into *ret.
 * type_hint is the x-amzn-errortype header or the :exception-type of a frame (may be NULL). */
int kiro_error_parse(const void *body, size_t size, const char *type_hint, int http_status, KiroError *ret);

typedef enum KiroStopReason {
        KIRO_STOP_END_TURN,
        KIRO_STOP_TOOL_USE,
        KIRO_STOP_MAX_TOKENS,
        KIRO_STOP_CONTEXT_WINDOW_EXCEEDED,      /* contextUsagePercentage reached 100 */
        KIRO_STOP_ERROR,                        /* an ERROR event came first; never render a normal stop */
        _KIRO_STOP_REASON_MAX,
        _KIRO_STOP_REASON_INVALID = -EINVAL,
} KiroStopReason;

const char *kiro_stop_reason_to_string(KiroStopReason s) _pure_;

/* Cumulative usage as reported by the stream. */
typedef struct KiroUsage {
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
} KiroUsage;

/* A.6: input tokens = tokenUsage if reported, else context percentage × context_window / 100, else
 * input_estimate; output tokens = tokenUsage if reported, else the estimate. */
void kiro_usage_resolve(const KiroUsage *u, uint64_t context_window, uint64_t input_estimate,
                        uint64_t *ret_input_tokens, uint64_t *ret_output_tokens);

typedef enum KiroEventType {
        KIRO_EVENT_TEXT,                /* text: answer delta (never deduplicated) */
        KIRO_EVENT_THINKING,            /* text: native reasoning delta (reasoningContentEvent) */
        KIRO_EVENT_THINKING_SIGNATURE,  /* text: signature of the reasoning so far */
        KIRO_EVENT_THINKING_REDACTED,   /* text: base64 redacted reasoning */
        KIRO_EVENT_TOOL_START,          /* tool_id, tool_name, tool_index */
        KIRO_EVENT_TOOL_ARGS,           /* tool_id, tool_name, tool_index, text: a fragment of JSON */
        KIRO_EVENT_TOOL_END,            /* tool_id, tool_name, tool_index */
        KIRO_EVENT_USAGE,               /* usage updated (metadata, context usage or metering) */
        KIRO_EVENT_ERROR,               /* error */
        KIRO_EVENT_END,                 /* last event: stop_reason, truncated, usage */
        _KIRO_EVENT_TYPE_MAX,
        _KIRO_EVENT_TYPE_INVALID = -EINVAL,
} KiroEventType;

const char *kiro_event_type_to_string(KiroEventType t) _pure_;

/* One internal event; pointers are valid during the callback only. Text is always whole UTF-8 as it came
 * in a frame payload, NUL-terminated, with its size. */
typedef struct KiroEvent {
        KiroEventType type;
        const char *text;
        size_t size;
        const char *tool_id;
        const char *tool_name;          /* the client's name: aliases are restored */
        unsigned tool_index;            /* 0-based, in order of TOOL_START */
        const KiroUsage *usage;         /* USAGE, END */
        const KiroError *error;         /* ERROR */
        KiroStopReason stop_reason;     /* END */
        bool truncated;                 /* END: the stream did not end properly (A.11) */
} KiroEvent;

/* A negative return stops the stream: it is returned by feed/finish and no more events come. */
typedef int (*kiro_event_handler_t)(const KiroEvent *ev, void *userdata);

typedef struct KiroStream KiroStream;

/* max_frame_size as for eventstream_decoder_new() (0 = 16 MiB). aliases (may be NULL) must outlive
 * the stream. */
int kiro_stream_new(size_t max_frame_size, const KiroToolAliases *aliases, kiro_event_handler_t handler,
                    void *userdata, KiroStream **ret);
KiroStream *kiro_stream_free(KiroStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(KiroStream *, kiro_stream_free);

/* Feeds response body bytes, split anywhere. Event frames become events; ignorable event types (B §4.2)
 * are skipped; tool calls are deduplicated by toolUseId (a replay after its stop is ignored); text is
 * never deduplicated. An exception or error frame becomes one ERROR event and ends the interpretation of
 * the stream (except ContentLengthExceededException, which only sets the stop reason to max_tokens).
 * A body that starts with '{' is taken as a JSON error object (HTTP 200 carrying an error) and reported
 * as ERROR at finish.
 * When the stream is broken (CRC, size, malformed frame or payload) this emits ERROR (KIRO_ERROR_PROTOCOL)
 * and END (stop ERROR, truncated) and returns the decoder's negative errno (-EBADMSG, -E2BIG); later
 * calls return it again without events. */
int kiro_stream_feed(KiroStream *s, const void *data, size_t size);

/* End of the response body: emits END exactly once. The stream is complete when a closing event
 * (meteringEvent, contextUsageEvent or metadataEvent) or an exception was seen and no partial frame is
 * left; otherwise it is truncated: an ERROR (KIRO_ERROR_TRUNCATED) comes before END (truncated=true,
 * stop ERROR) and -EPIPE is returned. Tool calls still open at a complete end are closed with
 * TOOL_END. Returns 0 for a complete stream (even one that carried an upstream exception). */
int kiro_stream_finish(KiroStream *s);

bool kiro_stream_truncated(const KiroStream *s);
const KiroUsage *kiro_stream_usage(const KiroStream *s);
/* The upstream error seen, if any (NULL otherwise). */
const KiroError *kiro_stream_error(const KiroStream *s);
/* Number of text/reasoning/tool events emitted so far: 0 means nothing reached the client yet, so the
 * upstream layer may still retry. */
uint64_t kiro_stream_n_content_events(const KiroStream *s);
