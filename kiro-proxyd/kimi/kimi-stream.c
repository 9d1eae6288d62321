/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kimi's server-sent events → internal events (KIRO-PROTOCOL B §7; OpenAI chat completion chunks). */
#include <string.h>

#include "buf.h"
#include "json-util.h"
#include "chat/chat-tokens.h"
#include "kimi/kimi-stream.h"

#define KIMI_JSON_DEPTH 64
#define KIMI_TOOLS_MAX 256

typedef struct KimiTool {
        int64_t upstream_index;
        char *id;
        char *name;
} KimiTool;

struct KimiStream {
        KimiEventCallback cb;
        void *userdata;
        size_t max_line;
        Buf line;

        KimiTool *tools;
        size_t n_tools;
        bool tool_open;         /* the last of tools is open */

        bool have_finish;
        ChatStopReason stop;
        bool done;              /* [DONE] seen */
        bool ended;             /* END emitted */
        bool failed;
        ChatUsage usage;
        TokenCounter out;
};

int kimi_stream_new(size_t max_line, KimiEventCallback cb, void *userdata, KimiStream **ret) {
        KimiStream *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->cb = cb;
        s->userdata = userdata;
        s->max_line = max_line ?: 16 * 1024 * 1024;
        *ret = s;
        return 0;
}

KimiStream *kimi_stream_free(KimiStream *s) {
        if (!s)
                return NULL;
        buf_done(&s->line);
        for (size_t i = 0; i < s->n_tools; i++) {
                free(s->tools[i].id);
                free(s->tools[i].name);
        }
        free(s->tools);
        free(s);
        return NULL;
}

const ChatUsage *kimi_stream_usage(KimiStream *s) {
        return s ? &s->usage : NULL;
}

bool kimi_stream_ended(KimiStream *s) {
        return s && s->ended;
}

static int emit(KimiStream *s, ChatEvent ev) {
        return s->cb(&ev, s->userdata);
}

static int emit_end(KimiStream *s, ChatStopReason stop, bool truncated) {
        if (s->ended)
                return 0;
        s->ended = true;
        s->usage.output_tokens_estimate = token_counter_get(&s->out);
        return emit(s, (ChatEvent) { .type = CHAT_EVENT_END, .stop_reason = stop, .truncated = truncated, .usage = &s->usage });
}

/* Reports an error and ends the stream with stop reason error. */
static int fail(KimiStream *s, ChatErrorKind kind, const char *type, const char *message) {
        if (s->ended)
                return -EBADMSG;
        s->failed = true;
        ChatError e = { .kind = kind, .type = (char *) type, .message = (char *) message };
        int r = emit(s, (ChatEvent) { .type = CHAT_EVENT_ERROR, .error = &e });
        if (r < 0)
                return r;
        r = emit_end(s, CHAT_STOP_REASON_ERROR, kind == CHAT_ERROR_TRUNCATED);
        return r < 0 ? r : -EBADMSG;
}

static int close_tool(KimiStream *s) {
        if (!s->tool_open)
                return 0;
        s->tool_open = false;
        KimiTool *t = &s->tools[s->n_tools - 1];
        return emit(s, (ChatEvent) { .type = CHAT_EVENT_TOOL_END, .tool_id = t->id, .tool_name = t->name,
                                     .tool_index = (unsigned) (s->n_tools - 1) });
}

static ChatStopReason stop_from_finish(const char *f) {
        if (streq(f, "tool_calls") || streq(f, "function_call"))
                return CHAT_STOP_REASON_TOOL_USE;
        if (streq(f, "length"))
                return CHAT_STOP_REASON_MAX_TOKENS;
        return CHAT_STOP_REASON_END_TURN;
}

static ChatErrorKind kind_from_type(const char *type, int status) {
        if (status == 401 || (type && strstr(type, "auth")))
                return CHAT_ERROR_UNAUTHORIZED;
        if (status == 402 || (type && strstr(type, "quota")))
                return CHAT_ERROR_QUOTA;
        if (status == 429 || (type && strstr(type, "rate_limit")))
                return CHAT_ERROR_THROTTLED;
        if (status == 403 || (type && strstr(type, "permission")))
                return CHAT_ERROR_ACCESS_DENIED;
        if (type && strstr(type, "overload"))
                return CHAT_ERROR_OVERLOADED;
        if (status == 400 || status == 404 || status == 422 || (type && strstr(type, "invalid_request")))
                return CHAT_ERROR_VALIDATION;
        if (status >= 500 || (type && strstr(type, "server")))
                return CHAT_ERROR_SERVER;
        return CHAT_ERROR_UNKNOWN;
}

int kimi_error_parse(const void *body, size_t size, int http_status, ChatError *ret) {
        _cleanup_json_ json_object *o = NULL;
        const char *type = NULL, *message = NULL;

        *ret = (ChatError) {};
        if (body && size > 0 && json_parse_bounded(body, size, KIMI_JSON_DEPTH, &o, NULL) >= 0 &&
            json_object_is_type(o, json_type_object)) {
                json_object *e = NULL;
                if (json_get_object(o, "error", &e) >= 0 && e) {
                        type = json_string_or_null(e, "type");
                        message = json_string_or_null(e, "message");
                } else
                        message = json_string_or_null(o, "message");
        }
        ret->kind = kind_from_type(type, http_status);
        if (type && !(ret->type = strdup(type)))
                return -ENOMEM;
        if (message)
                ret->message = strdup(message);
        else if (body && size > 0)
                ret->message = strdup("Kimi answered something that is not a JSON error");
        else
                ret->message = strdup("Kimi answered with an empty body");
        return ret->message ? 0 : -ENOMEM;
}

static int on_tool_delta(KimiStream *s, json_object *tc) {
        int64_t idx = (int64_t) s->n_tools;
        json_object *f = NULL;
        const char *id = json_string_or_null(tc, "id"), *name = NULL, *args = NULL;
        int r;

        (void) json_get_int64(tc, "index", &idx);
        if (json_get_object(tc, "function", &f) >= 0 && f) {
                name = json_string_or_null(f, "name");
                args = json_string_or_null(f, "arguments");
        }

        KimiTool *t = s->n_tools > 0 ? &s->tools[s->n_tools - 1] : NULL;
        /* A delta continues the open call; any other starts a new one (a closed call never reopens). */
        if (!t || t->upstream_index != idx || !s->tool_open) {
                for (size_t i = 0; i < s->n_tools; i++)
                        if (s->tools[i].upstream_index == idx)
                                /* A delta for a call already closed: calls come one after another. */
                                return fail(s, CHAT_ERROR_PROTOCOL, NULL, "Kimi interleaved tool call deltas");
                if (s->n_tools >= KIMI_TOOLS_MAX)
                        return fail(s, CHAT_ERROR_PROTOCOL, NULL, "Kimi sent too many tool calls");
                r = close_tool(s);
                if (r < 0)
                        return r;
                KimiTool *n = reallocarray(s->tools, s->n_tools + 1, sizeof *n);
                if (!n)
                        return -ENOMEM;
                s->tools = n;
                t = &s->tools[s->n_tools++];
                *t = (KimiTool) { .upstream_index = idx };
                if (id)
                        t->id = strdup(id);
                else if (asprintf(&t->id, "call_%zu", s->n_tools - 1) < 0)
                        t->id = NULL;
                t->name = strdup(strempty(name));
                if (!t->id || !t->name)
                        return -ENOMEM;
                s->tool_open = true;
                r = emit(s, (ChatEvent) { .type = CHAT_EVENT_TOOL_START, .tool_id = t->id, .tool_name = t->name,
                                          .tool_index = (unsigned) (s->n_tools - 1) });
                if (r < 0)
                        return r;
        }
        if (!isempty(args)) {
                size_t n = strlen(args);
                token_counter_add(&s->out, args, n);
                return emit(s, (ChatEvent) { .type = CHAT_EVENT_TOOL_ARGS, .text = args, .size = n, .tool_id = t->id,
                                             .tool_name = t->name, .tool_index = (unsigned) (s->n_tools - 1) });
        }
        return 0;
}

static int on_usage(KimiStream *s, json_object *u) {
        int64_t prompt = 0, completion = 0, total = 0, cached = 0;
        json_object *d = NULL;

        if (!json_object_is_type(u, json_type_object))
                return 0;
        (void) json_get_int64(u, "prompt_tokens", &prompt);
        (void) json_get_int64(u, "completion_tokens", &completion);
        (void) json_get_int64(u, "total_tokens", &total);
        if (json_get_int64(u, "cached_tokens", &cached) < 0 && json_get_object(u, "prompt_tokens_details", &d) >= 0 && d)
                (void) json_get_int64(d, "cached_tokens", &cached);
        prompt = MAX(prompt, (int64_t) 0);
        cached = MIN(MAX(cached, (int64_t) 0), prompt);
        s->usage.has_tokens = true;
        s->usage.input_tokens = (uint64_t) (prompt - cached);
        s->usage.cache_read_input_tokens = (uint64_t) cached;
        s->usage.output_tokens = (uint64_t) MAX(completion, (int64_t) 0);
        s->usage.total_tokens = total > 0 ? (uint64_t) total : (uint64_t) prompt + s->usage.output_tokens;
        return emit(s, (ChatEvent) { .type = CHAT_EVENT_USAGE, .usage = &s->usage });
}

static int on_chunk(KimiStream *s, const char *data, size_t size) {
        _cleanup_json_ json_object *o = NULL;
        json_object *choices = NULL, *u = NULL, *e = NULL;
        const char *jerr = NULL;
        int r;

        r = json_parse_bounded(data, size, KIMI_JSON_DEPTH, &o, &jerr);
        if (r < 0 || !json_object_is_type(o, json_type_object))
                return r == -ENOMEM ? r : fail(s, CHAT_ERROR_PROTOCOL, NULL, "Kimi sent a chunk that is not a JSON object");

        if (json_get_object(o, "error", &e) >= 0 && e) {
                const char *type = json_string_or_null(e, "type");
                return fail(s, kind_from_type(type, 0), type, json_string_or_null(e, "message") ?: "Kimi reported an error");
        }

        if (json_get_array(o, "choices", &choices) >= 0 && choices && json_object_array_length(choices) > 0) {
                json_object *c = json_object_array_get_idx(choices, 0), *d = NULL, *tcs = NULL;
                if (json_get_object(c, "delta", &d) >= 0 && d) {
                        const char *rc = json_string_or_null(d, "reasoning_content");
                        const char *text = json_string_or_null(d, "content");
                        if (!isempty(rc)) {
                                size_t n = strlen(rc);
                                token_counter_add(&s->out, rc, n);
                                r = emit(s, (ChatEvent) { .type = CHAT_EVENT_THINKING, .text = rc, .size = n });
                                if (r < 0)
                                        return r;
                        }
                        if (!isempty(text)) {
                                size_t n = strlen(text);
                                r = close_tool(s);
                                if (r < 0)
                                        return r;
                                token_counter_add(&s->out, text, n);
                                r = emit(s, (ChatEvent) { .type = CHAT_EVENT_TEXT, .text = text, .size = n });
                                if (r < 0)
                                        return r;
                        }
                        if (json_get_array(d, "tool_calls", &tcs) >= 0 && tcs)
                                for (size_t i = 0; i < json_object_array_length(tcs); i++) {
                                        r = on_tool_delta(s, json_object_array_get_idx(tcs, i));
                                        if (r < 0)
                                                return r;
                                }
                }
                const char *fin = json_string_or_null(c, "finish_reason");
                if (fin) {
                        r = close_tool(s);
                        if (r < 0)
                                return r;
                        s->have_finish = true;
                        s->stop = stop_from_finish(fin);
                }
                /* Moonshot puts the usage of the last chunk inside the choice. */
                if (json_get_object(c, "usage", &u) >= 0 && u) {
                        r = on_usage(s, u);
                        if (r < 0)
                                return r;
                }
        }
        u = NULL;
        if (json_get_object(o, "usage", &u) >= 0 && u)
                return on_usage(s, u);
        return 0;
}

static int on_line(KimiStream *s, char *line, size_t size) {
        if (size > 0 && line[size - 1] == '\r')
                line[--size] = 0;
        /* Only data fields matter; comments (": keep-alive"), event:, id: and blank lines are skipped. */
        const char *v = startswith(line, "data:");
        if (!v)
                return 0;
        if (*v == ' ')
                v++;
        size -= (size_t) (v - line);
        if (size == 6 && memcmp(v, "[DONE]", 6) == 0) {
                s->done = true;
                int r = close_tool(s);
                if (r < 0)
                        return r;
                if (!s->have_finish)
                        return fail(s, CHAT_ERROR_TRUNCATED, NULL, "Kimi ended the answer without a finish reason");
                return emit_end(s, s->stop, false);
        }
        if (s->done)
                return fail(s, CHAT_ERROR_PROTOCOL, NULL, "Kimi sent data after [DONE]");
        return on_chunk(s, v, size);
}

int kimi_stream_feed(KimiStream *s, const void *data, size_t size) {
        const char *p = data, *end = p + size;
        int r;

        if (s->ended)
                return s->failed ? -EBADMSG : 0;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t take = (size_t) ((nl ? nl : end) - p);
                if (s->line.size + take > s->max_line)
                        return fail(s, CHAT_ERROR_PROTOCOL, NULL, "Kimi sent an event over the size limit");
                if (buf_put(&s->line, p, take) < 0)
                        return -ENOMEM;
                if (!nl)
                        break;
                p = nl + 1;
                r = on_line(s, s->line.data ?: (char[]) { 0 }, s->line.size);
                s->line.size = 0;
                if (s->line.data)
                        s->line.data[0] = 0;
                if (r < 0)
                        return r;
                if (s->ended)
                        return s->failed ? -EBADMSG : 0;
        }
        return 0;
}

int kimi_stream_finish(KimiStream *s) {
        int r;

        if (s->ended)
                return s->failed ? -EBADMSG : 0;
        if (s->line.size > 0) {
                /* A last line without its newline. */
                r = on_line(s, s->line.data, s->line.size);
                s->line.size = 0;
                if (r < 0 || s->ended)
                        return r < 0 ? r : 0;
        }
        if (s->have_finish) {
                /* finish_reason came; a missing [DONE] after it loses nothing. */
                r = close_tool(s);
                if (r < 0)
                        return r;
                return emit_end(s, s->stop, false);
        }
        return fail(s, CHAT_ERROR_TRUNCATED, NULL, "the Kimi answer stream was cut off before it finished");
}
