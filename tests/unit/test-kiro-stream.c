/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kiro stream → internal events: the A.11 stream shape, tool call dedup, usage, errors, truncation. */
#include <math.h>

#include "json-util.h"
#include "kiro/kiro-eventstream.h"
#include "kiro/kiro-stream.h"
#include "tests.h"

/* Every event rendered as one line, so that a whole stream is compared as a list. */
typedef struct Log {
        char *lines[512];
        size_t n;
        ChatUsage usage;        /* copy from the last USAGE/END */
        int fail_at;            /* return -ECANCELED at this event (1-based) */
} Log;

static int log_event(const ChatEvent *ev, void *userdata) {
        Log *l = userdata;
        char *line = NULL;

        if (l->fail_at > 0 && (size_t) l->fail_at == l->n + 1)
                return -ECANCELED;
        if (ev->text)
                ASSERT_EQ(strlen(ev->text), ev->size);
        switch (ev->type) {
        case CHAT_EVENT_TEXT:
        case CHAT_EVENT_THINKING:
        case CHAT_EVENT_THINKING_SIGNATURE:
        case CHAT_EVENT_THINKING_REDACTED:
                ASSERT_TRUE(asprintf(&line, "%s:%s", chat_event_type_to_string(ev->type), ev->text) > 0);
                break;
        case CHAT_EVENT_TOOL_START:
        case CHAT_EVENT_TOOL_END:
                ASSERT_TRUE(asprintf(&line, "%s:%u:%s:%s", chat_event_type_to_string(ev->type), ev->tool_index,
                                     ev->tool_id, ev->tool_name) > 0);
                break;
        case CHAT_EVENT_TOOL_ARGS:
                ASSERT_TRUE(asprintf(&line, "tool-args:%u:%s", ev->tool_index, ev->text) > 0);
                break;
        case CHAT_EVENT_USAGE:
                l->usage = *ev->usage;
                line = strdup("usage");
                break;
        case CHAT_EVENT_ERROR:
                ASSERT_NOT_NULL(ev->error);
                ASSERT_STREQ(ev->error->message, ev->text);
                ASSERT_TRUE(asprintf(&line, "error:%s:%s", chat_error_kind_to_string(ev->error->kind),
                                     ev->error->message) > 0);
                break;
        case CHAT_EVENT_END:
                l->usage = *ev->usage;
                ASSERT_TRUE(asprintf(&line, "end:%s%s", chat_stop_reason_to_string(ev->stop_reason),
                                     ev->truncated ? ":truncated" : "") > 0);
                break;
        default:
                ASSERT_FAIL("unexpected event type %d", ev->type);
        }
        ASSERT_TRUE(l->n < ELEMENTSOF(l->lines));
        l->lines[l->n++] = line;
        return 0;
}

static void log_done(Log *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->lines[i]);
        l->n = 0;
}

static void log_expect(Log *l, const char *const *expected) {
        size_t n = 0;

        for (; expected[n]; n++) {
                if (n >= l->n)
                        ASSERT_FAIL("event %zu missing, expected '%s'", n, expected[n]);
                if (!streq(l->lines[n], expected[n]))
                        ASSERT_FAIL("event %zu: '%s' != '%s'", n, l->lines[n], expected[n]);
        }
        if (l->n != n)
                ASSERT_FAIL("%zu extra events, first '%s'", l->n - n, l->lines[n]);
}

#define EXPECT(l, ...) log_expect(l, (const char *const[]) { __VA_ARGS__, NULL })

/* ---- building response bodies ------------------------------------------------------------------ */

typedef struct Body {
        uint8_t *data;
        size_t size;
} Body;

static void body_add(Body *b, const uint8_t *f, size_t n) {
        b->data = realloc(b->data, b->size + n);
        memcpy(b->data + b->size, f, n);
        b->size += n;
}

static void ev(Body *b, const char *type, const char *json) {
        _cleanup_free_ uint8_t *f = NULL;
        size_t n;

        ASSERT_OK(eventstream_encode_event(type, json, strlen(json), &f, &n));
        body_add(b, f, n);
}

static void exc(Body *b, const char *type, const char *json) {
        _cleanup_free_ uint8_t *f = NULL;
        size_t n;

        ASSERT_OK(eventstream_encode_exception(type, json, strlen(json), &f, &n));
        body_add(b, f, n);
}

static void text(Body *b, const char *json_string) {
        _cleanup_free_ char *j = NULL;
        ASSERT_TRUE(asprintf(&j, "{\"content\":%s}", json_string) > 0);
        ev(b, "assistantResponseEvent", j);
}

static void closing(Body *b) {
        ev(b, "meteringEvent", "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":0.0421}");
        ev(b, "contextUsageEvent", "{\"contextUsagePercentage\":78.56}");
}

/* Feeds the body in chunks (0 = at once) and finishes; returns finish's result. */
static int run(const Body *b, size_t chunk, const KiroToolAliases *aliases, Log *l) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        int r = 0;

        ASSERT_OK(kiro_stream_new(0, aliases, log_event, l, &s));
        if (chunk == 0)
                r = kiro_stream_feed(s, b->data, b->size);
        else
                for (size_t off = 0; off < b->size && r >= 0; off += chunk)
                        r = kiro_stream_feed(s, b->data + off, MIN(chunk, b->size - off));
        if (r < 0)
                return r;
        return kiro_stream_finish(s);
}

static void a11_body(Body *b) {
        text(b, "\"Let me check.\"");
        text(b, "\"\\n\"");
        text(b, "\"\\n\"");
        ev(b, "toolUseEvent", "{\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"input\":\"\",\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"input\":\"{\\\"path\\\":\",\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"input\":\"\\\"a.c\\\"}\",\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"name\":\"Read\",\"stop\":true,\"toolUseId\":\"tooluse_1\"}");
        /* a replay of the whole call after its stop: ignored */
        ev(b, "toolUseEvent", "{\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"input\":\"{\\\"path\\\":\\\"a.c\\\"}\",\"name\":\"Read\",\"toolUseId\":\"tooluse_1\"}");
        ev(b, "toolUseEvent", "{\"name\":\"Read\",\"stop\":true,\"toolUseId\":\"tooluse_1\"}");
        /* a second call, first frame without input */
        ev(b, "toolUseEvent", "{\"name\":\"Bash\",\"toolUseId\":\"tooluse_2\"}");
        ev(b, "toolUseEvent", "{\"input\":\"{\\\"command\\\":\\\"ls\\\"}\",\"name\":\"Bash\",\"toolUseId\":\"tooluse_2\"}");
        ev(b, "toolUseEvent", "{\"name\":\"Bash\",\"stop\":true,\"toolUseId\":\"tooluse_2\"}");
        closing(b);
}

static const char *const a11_expected[] = {
        "text:Let me check.",
        "text:\n",
        "text:\n",
        "tool-start:0:tooluse_1:Read",
        "tool-args:0:{\"path\":",
        "tool-args:0:\"a.c\"}",
        "tool-end:0:tooluse_1:Read",
        "tool-start:1:tooluse_2:Bash",
        "tool-args:1:{\"command\":\"ls\"}",
        "tool-end:1:tooluse_2:Bash",
        "usage",
        "usage",
        "end:tool_use",
        NULL,
};

TEST(a11_stream_shape) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        a11_body(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        log_expect(&l, a11_expected);
        ASSERT_TRUE(l.usage.has_credits);
        ASSERT_TRUE(fabs(l.usage.credits - 0.0421) < 1e-9);
        ASSERT_TRUE(l.usage.has_context_usage);
        ASSERT_TRUE(fabs(l.usage.context_usage_percent - 78.56) < 1e-9);
        ASSERT_FALSE(l.usage.has_tokens);
        /* estimate over "Let me check." "\n" "\n" and both argument strings: 15+2+... quarter tokens */
        ASSERT_EQ(l.usage.output_tokens_estimate, (13 + 1 + 1 + 8 + 6 + 16 + 3) / 4);
        log_done(&l);
}

TEST(one_byte_at_a_time_equals_whole) {
        static const size_t chunks[] = { 1, 2, 3, 7, 13, 100 };
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};

        a11_body(&b);
        data = b.data;
        for (size_t i = 0; i < ELEMENTSOF(chunks); i++) {
                Log l = {};

                ASSERT_OK(run(&b, chunks[i], NULL, &l));
                log_expect(&l, a11_expected);
                log_done(&l);
        }
}

TEST(identical_text_events_all_delivered) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"same\"");
        text(&b, "\"same\"");
        text(&b, "\"same\"");
        text(&b, "\"\"");               /* empty content: nothing to say */
        closing(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:same", "text:same", "text:same", "usage", "usage", "end:end_turn");
        log_done(&l);
}

TEST(tool_input_object_and_odd_frames) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        /* input given as an object */
        ev(&b, "toolUseEvent", "{\"input\":{\"a\":[1,2],\"b\":\"x/y\"},\"name\":\"T\",\"toolUseId\":\"t1\"}");
        ev(&b, "toolUseEvent", "{\"name\":\"T\",\"stop\":true,\"toolUseId\":\"t1\"}");
        /* no id: dropped; no name on an unknown id: dropped */
        ev(&b, "toolUseEvent", "{\"input\":\"{}\",\"name\":\"T\"}");
        ev(&b, "toolUseEvent", "{\"input\":\"{}\",\"toolUseId\":\"t2\"}");
        ev(&b, "toolUseEvent", "{\"name\":\"\",\"toolUseId\":\"t3\"}");
        /* stop on the first frame: start and end at once; input null is no input */
        ev(&b, "toolUseEvent", "{\"input\":null,\"name\":\"U\",\"stop\":true,\"toolUseId\":\"t4\"}");
        /* a call that never gets its stop: closed at a complete end */
        ev(&b, "toolUseEvent", "{\"input\":\"{}\",\"name\":\"V\",\"toolUseId\":\"t5\"}");
        closing(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l,
               "tool-start:0:t1:T", "tool-args:0:{\"a\":[1,2],\"b\":\"x/y\"}", "tool-end:0:t1:T",
               "tool-start:1:t4:U", "tool-end:1:t4:U",
               "tool-start:2:t5:V", "tool-args:2:{}",
               "usage", "usage",
               "tool-end:2:t5:V",
               "end:tool_use");
        log_done(&l);
}

TEST(tool_alias_restored) {
        _cleanup_free_ uint8_t *data = NULL;
        _cleanup_free_ char *payload = NULL;
        static const char longname[] = "a_very_long_original_name_that_is_well_over_the_sixty_four_byte_limit_of_kiro";
        _cleanup_(kiro_tool_aliases_done) KiroToolAliases aliases = {};
        const char *alias;
        Body b = {};
        Log l = {};

        ASSERT_OK(kiro_tool_aliases_get(&aliases, longname, &alias));
        ASSERT_EQ(strlen(alias), 64);
        ASSERT_TRUE(asprintf(&payload, "{\"input\":\"{}\",\"name\":\"%s\",\"stop\":true,\"toolUseId\":\"t1\"}", alias) > 0);
        ev(&b, "toolUseEvent", payload);
        closing(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, &aliases, &l));
        EXPECT(&l, "tool-start:0:t1:a_very_long_original_name_that_is_well_over_the_sixty_four_byte_limit_of_kiro",
               "tool-args:0:{}",
               "tool-end:0:t1:a_very_long_original_name_that_is_well_over_the_sixty_four_byte_limit_of_kiro",
               "usage", "usage", "end:tool_use");
        log_done(&l);
}

TEST(reasoning_events) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        ev(&b, "reasoningContentEvent", "{\"text\":\"Let me think\"}");
        ev(&b, "reasoningContentEvent", "{\"text\":\" more.\"}");
        ev(&b, "reasoningContentEvent", "{\"signature\":\"c2lnbmF0dXJl\"}");
        ev(&b, "reasoningContentEvent", "{\"redactedContent\":\"cmVkYWN0ZWQ=\"}");
        text(&b, "\"Answer.\"");
        closing(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "thinking:Let me think", "thinking: more.", "thinking-signature:c2lnbmF0dXJl",
               "thinking-redacted:cmVkYWN0ZWQ=", "text:Answer.", "usage", "usage", "end:end_turn");
        log_done(&l);
}

TEST(ignorable_events_skipped) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        ev(&b, "messageMetadataEvent", "{\"conversationId\":\"c\",\"utteranceId\":\"u\"}");
        text(&b, "\"a\"");
        ev(&b, "followupPromptEvent", "{\"followupPrompt\":{\"content\":\"more?\",\"userIntent\":\"x\"}}");
        ev(&b, "codeReferenceEvent", "{\"references\":[]}");
        ev(&b, "supplementaryWebLinksEvent", "{\"supplementaryWebLinks\":[]}");
        ev(&b, "invalidStateEvent", "{\"reason\":\"INVALID_TASK_ASSIST_PLAN\",\"message\":\"m\"}");
        ev(&b, "someFutureEvent", "not even json");
        text(&b, "\"b\"");
        closing(&b);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:a", "text:b", "usage", "usage", "end:end_turn");
        log_done(&l);
}

TEST(metadata_token_usage) {
        _cleanup_free_ uint8_t *data = NULL;
        uint64_t in, out;
        Body b = {};
        Log l = {};

        text(&b, "\"hi\"");
        ev(&b, "metadataEvent", "{\"tokenUsage\":{\"uncachedInputTokens\":1200,\"outputTokens\":34,"
                                "\"totalTokens\":1334,\"cacheReadInputTokens\":100,\"cacheWriteInputTokens\":0},"
                                "\"stopReason\":\"MAX_TOKENS\"}");
        data = b.data;
        /* metadataEvent alone counts as a proper end */
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:hi", "usage", "end:max_tokens");
        ASSERT_TRUE(l.usage.has_tokens);
        ASSERT_EQ(l.usage.input_tokens, 1200);
        ASSERT_EQ(l.usage.output_tokens, 34);
        ASSERT_EQ(l.usage.total_tokens, 1334);
        ASSERT_EQ(l.usage.cache_read_input_tokens, 100);
        chat_usage_resolve(&l.usage, 200000, 5, &in, &out);
        ASSERT_EQ(in, 1300);
        ASSERT_EQ(out, 34);
        log_done(&l);
}

TEST(usage_resolve_order) {
        ChatUsage u = { .has_context_usage = true, .context_usage_percent = 12.5, .output_tokens_estimate = 7 };
        uint64_t in, out;

        chat_usage_resolve(&u, 200000, 999, &in, &out);
        ASSERT_EQ(in, 25000);
        ASSERT_EQ(out, 7);
        chat_usage_resolve(&u, 0, 999, &in, NULL);
        ASSERT_EQ(in, 999);
        u.has_context_usage = false;
        chat_usage_resolve(&u, 200000, 999, &in, NULL);
        ASSERT_EQ(in, 999);
        /* Percentages that are none (from a broken or hostile upstream) fall back to the estimate. */
        static const double bad[] = { __builtin_nan(""), __builtin_inf(), 1e300, 100.5, -3 };
        u.has_context_usage = true;
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                u.context_usage_percent = bad[i];
                chat_usage_resolve(&u, 200000, 999, &in, NULL);
                ASSERT_EQ(in, 999);
        }
        u.context_usage_percent = 100;
        chat_usage_resolve(&u, 200000, 999, &in, NULL);
        ASSERT_EQ(in, 200000);
}

TEST(context_window_exceeded) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"x\"");
        ev(&b, "contextUsageEvent", "{\"contextUsagePercentage\":100}");
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:x", "usage", "end:model_context_window_exceeded");
        log_done(&l);
}

TEST(truncated_without_closing_events) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"partial answer\"");
        ev(&b, "toolUseEvent", "{\"input\":\"{\\\"a\\\"\",\"name\":\"T\",\"toolUseId\":\"t1\"}");
        data = b.data;
        ASSERT_ERROR(run(&b, 0, NULL, &l), EPIPE);
        EXPECT(&l, "text:partial answer", "tool-start:0:t1:T", "tool-args:0:{\"a\"",
               "error:truncated:the upstream response ended before its closing events; the answer is incomplete",
               "end:error:truncated");
        log_done(&l);
}

TEST(truncated_mid_frame) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"a\"");
        closing(&b);
        data = b.data;
        b.size -= 3;
        ASSERT_ERROR(run(&b, 0, NULL, &l), EPIPE);
        EXPECT(&l, "text:a", "usage", "error:truncated:stream ended inside frame 2 (132 of 135 bytes)",
               "end:error:truncated");
        log_done(&l);
}

TEST(content_after_closing_is_truncated) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        closing(&b);
        text(&b, "\"more\"");
        data = b.data;
        ASSERT_ERROR(run(&b, 0, NULL, &l), EPIPE);
        ASSERT_EQ(l.n, 5);
        ASSERT_STREQ(l.lines[4], "end:error:truncated");
        log_done(&l);
}

TEST(empty_body_is_truncated) {
        Body b = {};
        Log l = {};

        ASSERT_ERROR(run(&b, 0, NULL, &l), EPIPE);
        ASSERT_EQ(l.n, 2);
        ASSERT_STREQ(l.lines[1], "end:error:truncated");
        log_done(&l);
}

TEST(exception_frame) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"partial\"");
        exc(&b, "ThrottlingException", "{\"message\":\"Too many requests\",\"reason\":null}");
        /* anything after the exception means nothing */
        text(&b, "\"ignored\"");
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:partial", "error:throttled:Too many requests", "end:error");
        log_done(&l);
}

TEST(exception_kinds) {
        static const struct {
                const char *type, *payload, *expect;
        } cases[] = {
                { "ValidationException", "{\"message\":\"Improperly formed request.\",\"reason\":null}",
                  "error:validation:Improperly formed request." },
                { "ValidationException", "{\"message\":\"Too big\",\"reason\":\"CONTENT_LENGTH_EXCEEDS_THRESHOLD\"}",
                  "error:input-too-long:Too big" },
                { "ThrottlingException", "{\"message\":\"limit\",\"reason\":\"MONTHLY_REQUEST_COUNT\"}",
                  "error:quota-exhausted:limit" },
                { "ServiceQuotaExceededException", "{\"message\":\"q\"}", "error:quota-exhausted:q" },
                { "internalServerException", "{\"message\":\"oops\"}", "error:server-error:oops" },
                { "AccessDeniedException", "{\"message\":\"no\",\"reason\":\"TEMPORARILY_SUSPENDED\"}",
                  "error:suspended:no" },
                { "com.amazon.aws.codewhisperer#ThrottlingException", "plain text, not JSON",
                  "error:throttled:plain text, not JSON" },
                { "WeirdException", "", "error:unknown:WeirdException" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ uint8_t *data = NULL;
                Body b = {};
                Log l = {};

                exc(&b, cases[i].type, cases[i].payload);
                data = b.data;
                ASSERT_OK(run(&b, 0, NULL, &l));
                EXPECT(&l, cases[i].expect, "end:error");
                log_done(&l);
        }
}

TEST(content_length_exceeded_is_max_tokens) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"long answer\"");
        exc(&b, "ContentLengthExceededException", "{\"message\":\"Response too long\"}");
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:long answer", "end:max_tokens");
        log_done(&l);
}

TEST(error_frame) {
        _cleanup_free_ uint8_t *data = NULL, *f = NULL;
        Body b = {};
        Log l = {};
        size_t n;

        text(&b, "\"x\"");
        ASSERT_OK(eventstream_encode_error("InternalServerError", "Encountered unexpectedly high load", &f, &n));
        body_add(&b, f, n);
        data = b.data;
        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "text:x", "error:overloaded:Encountered unexpectedly high load", "end:error");
        log_done(&l);
}

TEST(json_error_body) {
        static const char body[] = "{\"__type\":\"com.amazon.aws.codewhisperer#ValidationException\","
                                   "\"message\":\"Improperly formed request.\",\"reason\":null}";
        Body b = { .data = (uint8_t *) body, .size = sizeof body - 1 };
        Log l = {};

        ASSERT_OK(run(&b, 0, NULL, &l));
        EXPECT(&l, "error:validation:Improperly formed request.", "end:error");
        log_done(&l);
        ASSERT_OK(run(&b, 1, NULL, &l));
        EXPECT(&l, "error:validation:Improperly formed request.", "end:error");
        log_done(&l);
}

TEST(bad_crc_mid_stream) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"ok\"");
        text(&b, "\"corrupt\"");
        closing(&b);
        data = b.data;
        data[b.size / 4 + 60] ^= 0x40;   /* inside the second frame */

        ASSERT_OK(kiro_stream_new(0, NULL, log_event, &l, &s));
        ASSERT_ERROR(kiro_stream_feed(s, data, b.size), EBADMSG);
        ASSERT_EQ(l.n, 3);
        ASSERT_STREQ(l.lines[0], "text:ok");
        ASSERT_TRUE(startswith(l.lines[1], "error:protocol:message CRC mismatch in frame 1"));
        ASSERT_STREQ(l.lines[2], "end:error:truncated");
        ASSERT_TRUE(kiro_stream_truncated(s));
        /* sticky, silent */
        ASSERT_ERROR(kiro_stream_feed(s, data, b.size), EBADMSG);
        ASSERT_ERROR(kiro_stream_finish(s), EBADMSG);
        ASSERT_EQ(l.n, 3);
        log_done(&l);
}

TEST(oversized_frame) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"0123456789012345678901234567890123456789012345678901234567890123456789\"");
        data = b.data;
        ASSERT_OK(kiro_stream_new(128, NULL, log_event, &l, &s));
        ASSERT_ERROR(kiro_stream_feed(s, data, b.size), E2BIG);
        EXPECT(&l, "error:protocol:frame 0 is 192 bytes, over the limit of 128", "end:error:truncated");
        log_done(&l);
}

TEST(bad_json_payload) {
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"fine\"");
        ev(&b, "assistantResponseEvent", "{\"content\":\"unterminated");
        data = b.data;
        ASSERT_ERROR(run(&b, 0, NULL, &l), EBADMSG);
        ASSERT_EQ(l.n, 3);
        ASSERT_TRUE(startswith(l.lines[1], "error:protocol:the payload of assistantResponseEvent frame 1 is not JSON"));
        log_done(&l);

        free(TAKE_PTR(data));
        b = (Body) {};
        ev(&b, "toolUseEvent", "[1,2]");
        data = b.data;
        ASSERT_ERROR(run(&b, 0, NULL, &l), EBADMSG);
        EXPECT(&l, "error:protocol:the payload of toolUseEvent frame 0 is not a JSON object", "end:error:truncated");
        log_done(&l);
}

TEST(handler_stops_stream) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = { .fail_at = 2 };

        a11_body(&b);
        data = b.data;
        ASSERT_OK(kiro_stream_new(0, NULL, log_event, &l, &s));
        ASSERT_ERROR(kiro_stream_feed(s, data, b.size), ECANCELED);
        ASSERT_EQ(l.n, 1);
        ASSERT_ERROR(kiro_stream_feed(s, data, 1), ECANCELED);
        ASSERT_ERROR(kiro_stream_finish(s), ECANCELED);
        ASSERT_EQ(l.n, 1);
        log_done(&l);
}

TEST(finish_twice) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        _cleanup_free_ uint8_t *data = NULL;
        Body b = {};
        Log l = {};

        text(&b, "\"a\"");
        closing(&b);
        data = b.data;
        ASSERT_OK(kiro_stream_new(0, NULL, log_event, &l, &s));
        ASSERT_OK(kiro_stream_feed(s, data, b.size));
        ASSERT_EQ(kiro_stream_n_content_events(s), 1);
        ASSERT_OK(kiro_stream_finish(s));
        ASSERT_ERROR(kiro_stream_finish(s), ESTALE);
        ASSERT_ERROR(kiro_stream_feed(s, data, 1), ESTALE);
        ASSERT_FALSE(kiro_stream_truncated(s));
        ASSERT_NULL(kiro_stream_error(s));
        ASSERT_EQ(l.n, 4);
        log_done(&l);
}

/* Issue 9 item 11: the word "suspended" in a message must not take a credential out of service; only the
 * reason (TEMPORARILY_)SUSPENDED does. */
TEST(classify_suspended_only_by_reason) {
        _cleanup_(chat_error_done) ChatError e = {};
        static const char quoted[] = "{\"message\":\"Improperly formed request: my account was suspended\","
                                     "\"reason\":null}";
        static const char real[] = "{\"message\":\"Your account is temporarily unavailable.\","
                                   "\"reason\":\"TEMPORARILY_SUSPENDED\"}";

        ASSERT_EQ(kiro_error_classify(NULL, NULL, "Your account has been suspended", 403), CHAT_ERROR_ACCESS_DENIED);
        ASSERT_EQ(kiro_error_classify("AccessDeniedException", NULL, "suspended", 403), CHAT_ERROR_ACCESS_DENIED);
        ASSERT_EQ(kiro_error_classify("ValidationException", NULL, "text mentions suspended", 400), CHAT_ERROR_VALIDATION);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "suspended", 0), CHAT_ERROR_UNKNOWN);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "suspended", 500), CHAT_ERROR_SERVER);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "suspended", 429), CHAT_ERROR_THROTTLED);
        ASSERT_EQ(kiro_error_classify("AccessDeniedException", "TEMPORARILY_SUSPENDED", "x", 403), CHAT_ERROR_SUSPENDED);
        ASSERT_EQ(kiro_error_classify(NULL, "suspended", NULL, 403), CHAT_ERROR_SUSPENDED);

        ASSERT_OK(kiro_error_parse(quoted, sizeof quoted - 1, "ValidationException", 400, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_VALIDATION);
        chat_error_done(&e);
        ASSERT_OK(kiro_error_parse(quoted, sizeof quoted - 1, NULL, 403, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_ACCESS_DENIED);
        chat_error_done(&e);
        ASSERT_OK(kiro_error_parse(real, sizeof real - 1, "AccessDeniedException", 403, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_SUSPENDED);
        ASSERT_STREQ(e.reason, "TEMPORARILY_SUSPENDED");
}

/* Message markers count only with the status B §6 documents them with. */
TEST(classify_message_markers_need_their_status) {
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "The bearer token included in the request is invalid", 500),
                  CHAT_ERROR_SERVER);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "The bearer token included in the request is invalid", 0),
                  CHAT_ERROR_UNAUTHORIZED);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "Input is too long.", 503), CHAT_ERROR_OVERLOADED);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "Encountered unexpectedly high load", 500), CHAT_ERROR_OVERLOADED);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "Encountered unexpectedly high load", 400), CHAT_ERROR_VALIDATION);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "You have reached the limit.", 403), CHAT_ERROR_ACCESS_DENIED);
}

TEST(classify_table) {
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "The bearer token included in the request is invalid", 403),
                  CHAT_ERROR_UNAUTHORIZED);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "forbidden", 403), CHAT_ERROR_ACCESS_DENIED);
        ASSERT_EQ(kiro_error_classify(NULL, "SUSPENDED", "x", 403), CHAT_ERROR_SUSPENDED);
        ASSERT_EQ(kiro_error_classify(NULL, "MONTHLY_REQUEST_COUNT", "You have reached the limit.", 402),
                  CHAT_ERROR_QUOTA);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "You have reached the limit.", 0), CHAT_ERROR_QUOTA);
        ASSERT_EQ(kiro_error_classify("ThrottlingException", "INSUFFICIENT_MODEL_CAPACITY", "x", 429),
                  CHAT_ERROR_OVERLOADED);
        ASSERT_EQ(kiro_error_classify("ThrottlingException", "DAILY_REQUEST_COUNT", "x", 429), CHAT_ERROR_QUOTA);
        ASSERT_EQ(kiro_error_classify("ThrottlingException", NULL, "slow down", 429), CHAT_ERROR_THROTTLED);
        ASSERT_EQ(kiro_error_classify(NULL, "USER_REQUEST_RATE_EXCEEDED", NULL, 0), CHAT_ERROR_THROTTLED);
        ASSERT_EQ(kiro_error_classify("ValidationException", NULL, "Input is too long.", 400), CHAT_ERROR_INPUT_TOO_LONG);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, "Input is too long.", 429), CHAT_ERROR_INPUT_TOO_LONG);
        ASSERT_EQ(kiro_error_classify("ValidationException", "INVALID_MODEL_ID", "bad model", 400), CHAT_ERROR_VALIDATION);
        ASSERT_EQ(kiro_error_classify("ServiceUnavailableException", NULL, NULL, 503), CHAT_ERROR_OVERLOADED);
        ASSERT_EQ(kiro_error_classify(NULL, "MODEL_TEMPORARILY_UNAVAILABLE", NULL, 500), CHAT_ERROR_OVERLOADED);
        ASSERT_EQ(kiro_error_classify("ContentLengthExceededException", NULL, NULL, 0),
                  CHAT_ERROR_CONTENT_LENGTH_EXCEEDED);
        ASSERT_EQ(kiro_error_classify("x#ValidationException:http://internal", NULL, NULL, 0), CHAT_ERROR_VALIDATION);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, NULL, 502), CHAT_ERROR_SERVER);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, NULL, 401), CHAT_ERROR_UNAUTHORIZED);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, NULL, 400), CHAT_ERROR_VALIDATION);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, NULL, 0), CHAT_ERROR_UNKNOWN);
        ASSERT_EQ(kiro_error_classify(NULL, NULL, NULL, 418), CHAT_ERROR_UNKNOWN);
}

TEST(error_parse_bodies) {
        ChatError e = {};
        static const char nested[] = "{\"error\":{\"message\":\"You have reached the limit.\","
                                     "\"reason\":\"MONTHLY_REQUEST_COUNT\"}}";
        static const char ugly[] = "  bad\x01\xff\xc3\xa9 text \n";

        ASSERT_OK(kiro_error_parse(nested, sizeof nested - 1, NULL, 402, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_QUOTA);
        ASSERT_STREQ(e.reason, "MONTHLY_REQUEST_COUNT");
        ASSERT_STREQ(e.message, "You have reached the limit.");
        ASSERT_NULL(e.type);
        chat_error_done(&e);

        {
                static const char j[] = "{\"Message\":\"m\",\"__type\":\"a.b#AccessDeniedException\"}";
                ASSERT_OK(kiro_error_parse(j, sizeof j - 1, NULL, 403, &e));
        }
        ASSERT_EQ(e.kind, CHAT_ERROR_ACCESS_DENIED);
        ASSERT_STREQ(e.type, "AccessDeniedException");
        ASSERT_STREQ(e.message, "m");
        chat_error_done(&e);

        /* the header hint wins over the body's __type */
        {
                static const char j[] = "{\"__type\":\"ValidationException\"}";
                ASSERT_OK(kiro_error_parse(j, sizeof j - 1, "ThrottlingException", 0, &e));
        }
        ASSERT_EQ(e.kind, CHAT_ERROR_THROTTLED);
        ASSERT_STREQ(e.message, "ThrottlingException");
        chat_error_done(&e);

        /* plain text is sanitised: control characters, invalid UTF-8 */
        ASSERT_OK(kiro_error_parse(ugly, sizeof ugly - 1, NULL, 500, &e));
        ASSERT_STREQ(e.message, "bad ?\xc3\xa9 text");
        ASSERT_EQ(e.kind, CHAT_ERROR_SERVER);
        chat_error_done(&e);

        ASSERT_OK(kiro_error_parse("", 0, NULL, 429, &e));
        ASSERT_STREQ(e.message, "HTTP status 429");
        ASSERT_EQ(e.kind, CHAT_ERROR_THROTTLED);
        chat_error_done(&e);
}

TEST(names) {
        ASSERT_STREQ(chat_error_kind_to_string(CHAT_ERROR_QUOTA), "quota-exhausted");
        ASSERT_NULL(chat_error_kind_to_string(_CHAT_ERROR_KIND_MAX));
        ASSERT_STREQ(chat_stop_reason_to_string(CHAT_STOP_REASON_TOOL_USE), "tool_use");
        ASSERT_STREQ(chat_event_type_to_string(CHAT_EVENT_TOOL_ARGS), "tool-args");
        ASSERT_NULL(chat_event_type_to_string(-1));
}

static size_t plain_span_reference(const unsigned char *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
                        return i;
        return n;
}

TEST(json_plain_span_matches_bytewise) {
        unsigned char buf[40];
        uint64_t seed = 0x9E3779B97F4A7C15ULL;

        /* Every byte value at every offset of a word and its neighbours. */
        for (unsigned v = 0; v < 256; v++)
                for (size_t at = 0; at < 24; at++) {
                        memset(buf, 'a', sizeof buf);
                        buf[at] = (unsigned char) v;
                        size_t want = (v < 0x20 || v == '"' || v == '\\') ? at : sizeof buf;
                        ASSERT_EQ(json_plain_span(buf, sizeof buf), want);
                        ASSERT_EQ(json_plain_span(buf, at), (size_t) at);
                }
        /* Random buffers, mostly plain with UTF-8 bytes, against the byte loop, at every length. */
        for (unsigned round = 0; round < 20000; round++) {
                for (size_t i = 0; i < sizeof buf; i++) {
                        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                        unsigned r = (unsigned) (seed % 100);
                        buf[i] = r < 2 ? (unsigned char) (seed >> 40) % 0x20 :
                                 r < 3 ? '"' : r < 4 ? '\\' :
                                 r < 30 ? (unsigned char) (0x80 | ((seed >> 32) & 0x7F)) : (unsigned char) ('a' + r % 26);
                }
                size_t n = (size_t) (seed >> 20) % (sizeof buf + 1);
                ASSERT_EQ(json_plain_span(buf, n), plain_span_reference(buf, n));
        }
}

/* The closing events in Kiro's exact form take a fast path; any other form goes through json-c. Both
 * must read the same numbers, and a malformed number must not be half-read. */
static void body_done(Body *b) {
        free(b->data);
        *b = (Body) {};
}

/* Runs a stream of one text event and the given closing events; returns the usage it reported. */
static ChatUsage usage_of(const char *metering_json, const char *context_json) {
        _cleanup_(body_done) Body b = {};
        Log l = {};

        text(&b, "\"x\"");
        if (metering_json)
                ev(&b, "meteringEvent", metering_json);
        if (context_json)
                ev(&b, "contextUsageEvent", context_json);
        ASSERT_OK(run(&b, 0, NULL, &l));
        log_done(&l);
        return l.usage;
}

TEST(closing_events_fast_and_slow_forms) {
        static const struct {
                const char *json;       /* the number as written */
                double value;
        } numbers[] = {
                { "0", 0 }, { "100", 100 }, { "78.56", 78.56 }, { "-0.5", -0.5 }, { "1e2", 100 },
                { "2.5E-1", 0.25 }, { "0.0421", 0.0421 }, { "12345678901234567890", 12345678901234567890.0 },
        };
        static const char *const bad_numbers[] = { "01", "1.", ".5", "+1", "1e", "--1", "0x10", "1 ", " 1", "NaN" };
        ChatUsage u;

        for (size_t i = 0; i < ELEMENTSOF(numbers); i++) {
                char fast_m[128], fast_c[128], slow_m[128], slow_c[128];
                snprintf(fast_m, sizeof fast_m, "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":%s}",
                         numbers[i].json);
                snprintf(fast_c, sizeof fast_c, "{\"contextUsagePercentage\":%s}", numbers[i].json);
                /* Other key order and spacing: json-c's path. */
                snprintf(slow_m, sizeof slow_m, "{ \"usage\": %s, \"unit\": \"credit\" }", numbers[i].json);
                snprintf(slow_c, sizeof slow_c, "{ \"contextUsagePercentage\" : %s }", numbers[i].json);

                u = usage_of(fast_m, fast_c);
                ASSERT_TRUE(u.has_credits && u.has_context_usage);
                ASSERT_TRUE(fabs(u.credits - numbers[i].value) <= 1e-9 * (fabs(numbers[i].value) > 1 ? fabs(numbers[i].value) : 1));
                ASSERT_TRUE(fabs(u.context_usage_percent - numbers[i].value) <= 1e-9 * (fabs(numbers[i].value) > 1 ? fabs(numbers[i].value) : 1));
                double fast_credits = u.credits, fast_percent = u.context_usage_percent;

                u = usage_of(slow_m, slow_c);
                ASSERT_TRUE(u.has_credits && u.has_context_usage);
                ASSERT_TRUE(u.credits == fast_credits);
                ASSERT_TRUE(u.context_usage_percent == fast_percent);
        }
        /* Odd numbers: whatever json-c makes of them (the spaced form always goes to json-c), the exact
         * form must give the same: the fast path takes only strict JSON numbers. */
        for (size_t i = 0; i < ELEMENTSOF(bad_numbers); i++) {
                int r[2];
                ChatUsage got[2];
                for (int slow = 0; slow < 2; slow++) {
                        _cleanup_(body_done) Body b = {};
                        Log l = {};
                        char j[128];
                        snprintf(j, sizeof j, slow ? "{ \"contextUsagePercentage\" : %s}" : "{\"contextUsagePercentage\":%s}",
                                 bad_numbers[i]);
                        text(&b, "\"x\"");
                        ev(&b, "contextUsageEvent", j);
                        r[slow] = run(&b, 0, NULL, &l);
                        got[slow] = l.usage;
                        log_done(&l);
                }
                ASSERT_EQ(r[0] < 0, r[1] < 0);
                ASSERT_EQ(got[0].has_context_usage, got[1].has_context_usage);
                if (got[0].has_context_usage && !isnan(got[1].context_usage_percent))
                        ASSERT_TRUE(got[0].context_usage_percent == got[1].context_usage_percent);
        }
        /* Summed over several metering events, as before. */
        {
                _cleanup_(body_done) Body b = {};
                Log l = {};
                text(&b, "\"x\"");
                ev(&b, "meteringEvent", "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":0.25}");
                ev(&b, "meteringEvent", "{\"usage\":0.5,\"unit\":\"credit\"}");
                ASSERT_OK(run(&b, 0, NULL, &l));
                log_done(&l);
                ASSERT_TRUE(fabs(l.usage.credits - 0.75) < 1e-12);
        }
}
