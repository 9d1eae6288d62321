/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kimi's answer stream (OpenAI-style server-sent events: "data: {chunk}" lines, "data: [DONE]") → internal
 * events, incrementally and bounded: content → TEXT, reasoning_content → THINKING, tool_calls deltas →
 * TOOL_START/ARGS/END as they arrive, usage → USAGE, finish_reason → the stop reason, an error chunk →
 * ERROR. A stream that ends without finish_reason or [DONE] ends with ERROR (truncated) and END with
 * stop reason error: never a fake normal stop. */
#pragma once

#include <stddef.h>

#include "chat/chat-event.h"

typedef struct KimiStream KimiStream;

/* Called for every event in order; a negative return stops the stream (kimi_stream_feed returns it). */
typedef int (*KimiEventCallback)(const ChatEvent *ev, void *userdata);

/* max_line bounds one SSE line (a chunk): a longer one is a protocol error. */
int kimi_stream_new(size_t max_line, KimiEventCallback cb, void *userdata, KimiStream **ret);
KimiStream *kimi_stream_free(KimiStream *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(KimiStream *, kimi_stream_free);

/* Feeds bytes as they come. Returns 0, the callback's negative return, or -EBADMSG after a protocol
 * error (already reported as ERROR + END). */
int kimi_stream_feed(KimiStream *s, const void *data, size_t size);
/* The transfer ended: emits END (after ERROR when the answer was cut). Idempotent. */
int kimi_stream_finish(KimiStream *s);
const ChatUsage *kimi_stream_usage(KimiStream *s);
/* Whether END was emitted. */
bool kimi_stream_ended(KimiStream *s);

/* Classifies a non-200 answer (HTTP status and body, JSON or not) into *ret (message never NULL). */
int kimi_error_parse(const void *body, size_t size, int http_status, ChatError *ret);
