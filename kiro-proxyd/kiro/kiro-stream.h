/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kiro response stream: event-stream frames → internal events for the renderers (KIRO-PROTOCOL A.6,
 * A.7, A.11, B §4.2, §6). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "chat/chat-event.h"
#include "kiro/kiro-request.h"
#include "chat/chat-tokens.h"

/* Classification from whatever is known; all arguments may be NULL / 0. type may carry a namespace
 * ("com.amazon.aws.codewhisperer#ValidationException") or a suffix after ':'. http_status 0 means
 * "inside a 200 stream". */
ChatErrorKind kiro_error_classify(const char *type, const char *reason, const char *message, int http_status);

/* Parses an upstream error body (JSON {message|Message, reason, __type|_type} or plain text) into *ret.
 * type_hint is the x-amzn-errortype header or the :exception-type of a frame (may be NULL). */
int kiro_error_parse(const void *body, size_t size, const char *type_hint, int http_status, ChatError *ret);

/* A negative return stops the stream: it is returned by feed/finish and no more events come. */
typedef int (*kiro_event_handler_t)(const ChatEvent *ev, void *userdata);

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
 * When the stream is broken (CRC, size, malformed frame or payload) this emits ERROR (CHAT_ERROR_PROTOCOL)
 * and END (stop ERROR, truncated) and returns the decoder's negative errno (-EBADMSG, -E2BIG); later
 * calls return it again without events. */
int kiro_stream_feed(KiroStream *s, const void *data, size_t size);

/* End of the response body: emits END exactly once. The stream is complete when a closing event
 * (meteringEvent, contextUsageEvent or metadataEvent) or an exception was seen and no partial frame is
 * left; otherwise it is truncated: an ERROR (CHAT_ERROR_TRUNCATED) comes before END (truncated=true,
 * stop ERROR) and -EPIPE is returned. Tool calls still open at a complete end are closed with
 * TOOL_END. Returns 0 for a complete stream (even one that carried an upstream exception). */
int kiro_stream_finish(KiroStream *s);

bool kiro_stream_truncated(const KiroStream *s);
const ChatUsage *kiro_stream_usage(const KiroStream *s);
/* The upstream error seen, if any (NULL otherwise). */
const ChatError *kiro_stream_error(const KiroStream *s);
/* Number of text/reasoning/tool events emitted so far: 0 means nothing reached the client yet, so the
 * upstream layer may still retry. */
uint64_t kiro_stream_n_content_events(const KiroStream *s);
