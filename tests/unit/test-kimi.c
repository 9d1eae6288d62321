/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kimi back end's pure parts: the conversation → chat completions request, and the SSE → event parser. */
#include <string.h>

#include "buf.h"
#include "json-util.h"
#include "chat/chat-conversation.h"
#include "kimi/kimi-request.h"
#include "kimi/kimi-stream.h"
#include "tests.h"

static json_object *build(Conversation *c) {
        _cleanup_free_ char *body = NULL, *err = NULL;
        size_t n = 0;
        json_object *o = NULL;

        ASSERT_OK(kimi_request_build(c, &body, &n, &err));
        ASSERT_EQ(n, strlen(body));
        ASSERT_OK(json_parse_bounded(body, n, 64, &o, NULL));
        return o;
}

static const char *jstr(json_object *o, const char *path) {
        /* "a.b.0.c": object keys and array indexes */
        _cleanup_free_ char *p = strdup(path);
        char *save = NULL;
        for (char *t = strtok_r(p, ".", &save); t; t = strtok_r(NULL, ".", &save)) {
                if (!o)
                        return NULL;
                if (json_object_is_type(o, json_type_array))
                        o = json_object_array_get_idx(o, (size_t) atoi(t));
                else if (!json_object_object_get_ex(o, t, &o))
                        return NULL;
        }
        return o ? json_object_get_string(o) : NULL;
}

static Conversation *conv_with_tools(void) {
        Conversation *c = NULL;
        ConvMessage *m;

        ASSERT_OK(conversation_new(&c));
        c->model_id = strdup("kimi-for-coding");
        c->system = strdup("Be brief.");
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_OTHER, &m));   /* an OpenAI "developer" message */
        ASSERT_OK(conv_message_add_text(m, "dev note"));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));
        ASSERT_OK(conv_message_add_text(m, "list files"));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_ASSISTANT, &m));
        ASSERT_OK(conv_message_add_thinking(m, "I should call ls", NULL));
        ASSERT_OK(conv_message_add_text(m, "Calling."));
        ASSERT_OK(conv_message_add_tool_use(m, "call_1", "ls", "{\"dir\":\"/\"}"));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));
        ASSERT_OK(conv_message_add_tool_result(m, "call_1", "a b", false));
        ASSERT_OK(conv_message_add_text(m, "and now?"));
        json_object *schema = json_tokener_parse("{\"type\":\"object\",\"properties\":{\"dir\":{\"type\":\"string\"}}}");
        ASSERT_OK(conversation_add_tool(c, "ls", "Lists", schema));
        json_object_put(schema);
        return c;
}

TEST(request_messages_tools_reasoning) {
        _cleanup_(conversation_freep) Conversation *c = conv_with_tools();
        c->thinking = true;
        c->has_temperature = true;
        c->temperature = 0.2;
        c->max_tokens = 100;
        c->session_id = strdup("sess-1");
        _cleanup_json_ json_object *o = build(c);

        ASSERT_STREQ(jstr(o, "model"), "kimi-for-coding");
        ASSERT_STREQ(jstr(o, "stream"), "true");
        ASSERT_STREQ(jstr(o, "stream_options.include_usage"), "true");
        ASSERT_STREQ(jstr(o, "messages.0.role"), "system");
        ASSERT_STREQ(jstr(o, "messages.0.content"), "Be brief.");
        /* the developer role goes as system (B §7) */
        ASSERT_STREQ(jstr(o, "messages.1.role"), "system");
        ASSERT_STREQ(jstr(o, "messages.1.content"), "dev note");
        ASSERT_STREQ(jstr(o, "messages.2.role"), "user");
        ASSERT_STREQ(jstr(o, "messages.2.content"), "list files");
        ASSERT_STREQ(jstr(o, "messages.3.role"), "assistant");
        ASSERT_STREQ(jstr(o, "messages.3.content"), "Calling.");
        ASSERT_STREQ(jstr(o, "messages.3.reasoning_content"), "I should call ls");
        ASSERT_STREQ(jstr(o, "messages.3.tool_calls.0.id"), "call_1");
        ASSERT_STREQ(jstr(o, "messages.3.tool_calls.0.type"), "function");
        ASSERT_STREQ(jstr(o, "messages.3.tool_calls.0.function.name"), "ls");
        ASSERT_STREQ(jstr(o, "messages.3.tool_calls.0.function.arguments"), "{\"dir\":\"/\"}");
        /* the tool result first, then the user's text */
        ASSERT_STREQ(jstr(o, "messages.4.role"), "tool");
        ASSERT_STREQ(jstr(o, "messages.4.tool_call_id"), "call_1");
        ASSERT_STREQ(jstr(o, "messages.4.content"), "a b");
        ASSERT_STREQ(jstr(o, "messages.5.role"), "user");
        ASSERT_STREQ(jstr(o, "messages.5.content"), "and now?");
        ASSERT_NULL(jstr(o, "messages.6"));
        ASSERT_STREQ(jstr(o, "tools.0.type"), "function");
        ASSERT_STREQ(jstr(o, "tools.0.function.name"), "ls");
        ASSERT_STREQ(jstr(o, "tools.0.function.description"), "Lists");
        ASSERT_STREQ(jstr(o, "tools.0.function.parameters.properties.dir.type"), "string");
        ASSERT_STREQ(jstr(o, "tool_choice"), "auto");
        ASSERT_STREQ(jstr(o, "max_tokens"), "100");
        ASSERT_STREQ(jstr(o, "thinking.type"), "enabled");
        ASSERT_STREQ(jstr(o, "prompt_cache_key"), "sess-1");
        /* a reasoning request takes no client temperature (only 1 is allowed, B §7) */
        ASSERT_NULL(jstr(o, "temperature"));
}

TEST(request_tool_call_carries_reasoning) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        ConvMessage *m;

        ASSERT_OK(conversation_new(&c));
        c->model_id = strdup("kimi-k2-thinking");
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));
        ASSERT_OK(conv_message_add_text(m, "go"));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_ASSISTANT, &m));
        ASSERT_OK(conv_message_add_tool_use(m, "t1", "run", NULL));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_ASSISTANT, &m));
        ASSERT_OK(conv_message_add_text(m, "plain"));
        c->has_temperature = true;
        c->temperature = 0.5;
        _cleanup_json_ json_object *o = build(c);

        /* a reasoning model: the replayed tool call carries reasoning_content even when none was kept */
        ASSERT_STREQ(jstr(o, "messages.1.reasoning_content"), "");
        ASSERT_STREQ(jstr(o, "messages.1.content"), "");
        ASSERT_STREQ(jstr(o, "messages.1.tool_calls.0.function.arguments"), "{}");
        /* an assistant message without tool calls or thinking gets none */
        ASSERT_NULL(jstr(o, "messages.2.reasoning_content"));
        ASSERT_NULL(jstr(o, "temperature"));
        ASSERT_NULL(jstr(o, "thinking"));
}

TEST(request_plain_sampling_images_choice) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        ConvMessage *m;

        ASSERT_OK(conversation_new(&c));
        c->model_id = strdup("kimi-for-coding");
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));
        ASSERT_OK(conv_message_add_text(m, "what is this"));
        ASSERT_OK(conv_message_add_image(m, "image/jpeg", "QUJD"));
        ASSERT_OK(conversation_add_tool(c, "f", NULL, NULL));
        c->tool_choice = CONV_TOOL_CHOICE_TOOL;
        c->tool_choice_name = strdup("f");
        c->has_temperature = true;
        c->temperature = 0.25;
        ASSERT_OK(strv_extend(&c->stop, "END"));
        _cleanup_json_ json_object *o = build(c);

        ASSERT_STREQ(jstr(o, "temperature"), "0.25");
        ASSERT_STREQ(jstr(o, "messages.0.content.0.type"), "text");
        ASSERT_STREQ(jstr(o, "messages.0.content.0.text"), "what is this");
        ASSERT_STREQ(jstr(o, "messages.0.content.1.type"), "image_url");
        ASSERT_STREQ(jstr(o, "messages.0.content.1.image_url.url"), "data:image/jpeg;base64,QUJD");
        ASSERT_STREQ(jstr(o, "tool_choice.type"), "function");
        ASSERT_STREQ(jstr(o, "tool_choice.function.name"), "f");
        ASSERT_STREQ(jstr(o, "tools.0.function.parameters"), "{ }");
        ASSERT_STREQ(jstr(o, "stop.0"), "END");
}

TEST(request_empty_is_refused) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        _cleanup_free_ char *body = NULL, *err = NULL;
        size_t n;

        ASSERT_OK(conversation_new(&c));
        c->model_id = strdup("kimi-for-coding");
        ASSERT_ERROR(kimi_request_build(c, &body, &n, &err), EINVAL);
        ASSERT_NOT_NULL(err);
}

/* ---- the stream ---- */

typedef struct Log {
        Buf b;
        ChatUsage usage;
        ChatStopReason stop;
        bool truncated;
        unsigned ends;
} Log;

static int record(const ChatEvent *ev, void *userdata) {
        Log *l = userdata;
        ASSERT_EQ(l->ends, 0u);
        switch (ev->type) {
        case CHAT_EVENT_TEXT:
                ASSERT_OK(buf_putf(&l->b, "T(%s)", ev->text));
                break;
        case CHAT_EVENT_THINKING:
                ASSERT_OK(buf_putf(&l->b, "R(%s)", ev->text));
                break;
        case CHAT_EVENT_TOOL_START:
                ASSERT_OK(buf_putf(&l->b, "S%u(%s,%s)", ev->tool_index, ev->tool_id, ev->tool_name));
                break;
        case CHAT_EVENT_TOOL_ARGS:
                ASSERT_OK(buf_putf(&l->b, "A%u(%s)", ev->tool_index, ev->text));
                break;
        case CHAT_EVENT_TOOL_END:
                ASSERT_OK(buf_putf(&l->b, "E%u", ev->tool_index));
                break;
        case CHAT_EVENT_USAGE:
                ASSERT_OK(buf_putf(&l->b, "U"));
                l->usage = *ev->usage;
                break;
        case CHAT_EVENT_ERROR:
                ASSERT_OK(buf_putf(&l->b, "X(%s:%s)", chat_error_kind_to_string(ev->error->kind), ev->error->message));
                break;
        case CHAT_EVENT_END:
                ASSERT_OK(buf_putf(&l->b, "END(%s)", chat_stop_reason_to_string(ev->stop_reason)));
                l->stop = ev->stop_reason;
                l->truncated = ev->truncated;
                l->ends++;
                break;
        default:
                break;
        }
        return 0;
}

/* Feeds text in pieces of chunk bytes (every split point is exercised by chunk 1). */
static int feed(const char *text, size_t chunk, Log *l) {
        _cleanup_(kimi_stream_freep) KimiStream *s = NULL;
        int r = 0;

        ASSERT_OK(kimi_stream_new(4096, record, l, &s));
        for (size_t i = 0; i < strlen(text) && r >= 0; i += chunk)
                r = kimi_stream_feed(s, text + i, MIN(chunk, strlen(text) - i));
        int f = kimi_stream_finish(s);
        ASSERT_EQ(l->ends, 1u);
        return r < 0 ? r : f;
}

static const char tool_stream[] =
        ": keep-alive\n\n"
        "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"think\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \"}}]}\r\n\r\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"ls\",\"arguments\":\"\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"d\\\":\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"c2\",\"function\":{\"name\":\"cat\",\"arguments\":\"{}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\",\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7,\"total_tokens\":27,\"cached_tokens\":5}}]}\n\n"
        "data: [DONE]\n\n";

TEST(stream_tools_reasoning_usage) {
        static const char expect[] = "R(think)T(Hi )S0(c1,ls)A0({\"d\":)A0(1})E0S1(c2,cat)A1({})E1U"
                                     "END(tool_use)";
        for (size_t chunk = 1; chunk <= sizeof tool_stream; chunk = chunk * 3 + 1) {
                Log l = {};
                ASSERT_OK(feed(tool_stream, chunk, &l));
                ASSERT_STREQ(l.b.data, expect);
                ASSERT_FALSE(l.truncated);
                ASSERT_TRUE(l.usage.has_tokens);
                ASSERT_EQ(l.usage.input_tokens, 15u);
                ASSERT_EQ(l.usage.cache_read_input_tokens, 5u);
                ASSERT_EQ(l.usage.output_tokens, 7u);
                ASSERT_EQ(l.usage.total_tokens, 27u);
                buf_done(&l.b);
        }
}

TEST(stream_text_stop_and_top_level_usage) {
        Log l = {};
        ASSERT_OK(feed("data: {\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"length\"}]}\n\n"
                       "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4,"
                       "\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n"
                       "data: [DONE]\n", 7, &l));
        ASSERT_STREQ(l.b.data, "T(ok)UEND(max_tokens)");
        ASSERT_EQ(l.usage.input_tokens, 1u);
        ASSERT_EQ(l.usage.cache_read_input_tokens, 2u);
        buf_done(&l.b);
}

TEST(stream_cut_is_an_error_never_a_stop) {
        Log l = {};
        ASSERT_ERROR(feed("data: {\"choices\":[{\"delta\":{\"content\":\"half\"}}]}\n\ndata: {\"choi", 5, &l), EBADMSG);
        ASSERT_TRUE(startswith(l.b.data, "T(half)X(protocol:") || startswith(l.b.data, "T(half)X(truncated:"));
        ASSERT_TRUE(strstr(l.b.data, "END(error)") && strlen(strstr(l.b.data, "END(error)")) == 10);
        ASSERT_EQ(l.stop, CHAT_STOP_REASON_ERROR);
        buf_done(&l.b);

        /* [DONE] without a finish reason is cut too */
        l = (Log) {};
        ASSERT_ERROR(feed("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n", 100, &l), EBADMSG);
        ASSERT_STREQ(l.b.data, "T(a)X(truncated:Kimi ended the answer without a finish reason)END(error)");
        buf_done(&l.b);

        /* an open tool call at the cut */
        l = (Log) {};
        ASSERT_ERROR(feed("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\"}}]}}]}\n\n", 100, &l), EBADMSG);
        ASSERT_STREQ(l.b.data, "S0(c,f)X(truncated:the Kimi answer stream was cut off before it finished)END(error)");
        ASSERT_TRUE(l.truncated);
        buf_done(&l.b);
}

TEST(stream_garbage_and_error_chunks) {
        Log l = {};
        ASSERT_ERROR(feed("<html>502 Bad Gateway</html>\ndata: not json\n\n", 100, &l), EBADMSG);
        ASSERT_STREQ(l.b.data, "X(protocol:Kimi sent a chunk that is not a JSON object)END(error)");
        buf_done(&l.b);

        l = (Log) {};
        ASSERT_ERROR(feed("data: {\"error\":{\"type\":\"rate_limit_reached_error\",\"message\":\"slow down\"}}\n\n", 100, &l), EBADMSG);
        ASSERT_STREQ(l.b.data, "X(throttled:slow down)END(error)");
        buf_done(&l.b);

        /* an overlong line */
        _cleanup_free_ char *big = malloc(6000);
        memset(big, 'a', 5999);
        big[5999] = 0;
        l = (Log) {};
        ASSERT_ERROR(feed(big, 1000, &l), EBADMSG);
        ASSERT_STREQ(l.b.data, "X(protocol:Kimi sent an event over the size limit)END(error)");
        buf_done(&l.b);
}

TEST(error_parse) {
        ChatError e = {};
        static const char j[] = "{\"error\":{\"message\":\"Invalid Authentication\",\"type\":\"invalid_authentication_error\"}}";

        ASSERT_OK(kimi_error_parse(j, strlen(j), 401, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_UNAUTHORIZED);
        ASSERT_STREQ(e.message, "Invalid Authentication");
        chat_error_done(&e);
        ASSERT_OK(kimi_error_parse("<html>oops</html>", 17, 500, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_SERVER);
        ASSERT_STREQ(e.message, "Kimi answered something that is not a JSON error");
        chat_error_done(&e);
        static const char v[] = "{\"error\":{\"message\":\"bad temperature\",\"type\":\"invalid_request_error\"}}";
        ASSERT_OK(kimi_error_parse(v, strlen(v), 400, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_VALIDATION);
        chat_error_done(&e);
        ASSERT_OK(kimi_error_parse(NULL, 0, 429, &e));
        ASSERT_EQ(e.kind, CHAT_ERROR_THROTTLED);
        chat_error_done(&e);
}
