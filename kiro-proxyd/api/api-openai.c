/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI chat completions front end: routes, response rendering (SSE chunks or one JSON body). */
#include "chat/chat.h"
#include "api/api-error.h"
#include "api/api-models.h"
#include "api/api-openai.h"

typedef struct OpenAIState {
        OpenAIOptions opts;
        bool role_sent;
        Buf chunk_prefix;       /* "data: {…,\"model\":…" — the same for every chunk of the stream */
        Buf scratch;            /* reused for every content chunk */
} OpenAIState;

static void state_free(void *p) {
        OpenAIState *st = p;
        if (!st)
                return;
        buf_done(&st->chunk_prefix);
        buf_done(&st->scratch);
        free(st);
}

static int sse_chunk_begin(Chat *c, Buf *b) {
        return buf_putf(b, "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%llu,\"model\":", c->id,
                        (unsigned long long) (c->created / USEC_PER_SEC)) < 0 ||
                               buf_put_json_string_utf8(b, c->conv->model, strlen(c->conv->model)) < 0
                       ? -ENOMEM
                       : 0;
}

static int start_stream(Chat *c) {
        static const char *const headers[] = { "Cache-Control: no-cache", "X-Accel-Buffering: no", NULL };
        OpenAIState *st = c->frontend_state;
        int r;

        if (!c->started) {
                r = http_request_stream_begin(c->http, 200, "text/event-stream", headers);
                if (r < 0)
                        return r;
                c->started = true;
        }
        if (st->role_sent)
                return 0;
        st->role_sent = true;
        _cleanup_(buf_done) Buf b = {};
        r = sse_chunk_begin(c, &b);
        if (r >= 0)
                r = buf_putf(&b, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                                 "\"finish_reason\":null}]}\n\n");
        return r < 0 ? r : chat_stream_write(c, b.data, b.size);
}

/* One chunk whose delta is {"<key>": "<text>"}: the per-token path of a stream, so without printf and
 * without an allocation per chunk. */
static int send_delta(Chat *c, const char *key, const char *s, size_t n) {
        OpenAIState *st = c->frontend_state;
        Buf *b = &st->scratch;
        int r = start_stream(c);
        if (r < 0)
                return r;
        if (st->chunk_prefix.size == 0) {
                r = sse_chunk_begin(c, &st->chunk_prefix);
                if (r < 0)
                        return r;
        }
        b->size = 0;
        r = buf_put(b, st->chunk_prefix.data, st->chunk_prefix.size);
        if (r >= 0)
                r = buf_puts_many(b, ",\"choices\":[{\"index\":0,\"delta\":{\"", key, "\":");
        if (r >= 0)
                r = buf_put_json_string(b, s, n);
        if (r >= 0)
                r = buf_puts(b, "},\"finish_reason\":null}]}\n\n");
        return r < 0 ? r : chat_stream_write(c, b->data, b->size);
}

static int render_text(Chat *c, const char *s, size_t n) {
        return c->conv->stream ? send_delta(c, "content", s, n) : 0;
}

static int render_thinking(Chat *c, const char *s, size_t n) {
        return c->conv->stream ? send_delta(c, "reasoning_content", s, n) : 0;
}

static int tool_delta(Chat *c, unsigned index, ChatToolCall *t, bool first, const char *args, size_t n) {
        _cleanup_(buf_done) Buf b = {};
        int r = start_stream(c);
        if (r < 0)
                return r;
        r = sse_chunk_begin(c, &b);
        if (r >= 0)
                r = buf_putf(&b, ",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%u", index);
        if (r >= 0 && first) {
                r = buf_puts(&b, ",\"id\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->id, strlen(t->id));
                if (r >= 0)
                        r = buf_puts(&b, ",\"type\":\"function\",\"function\":{\"name\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->name, strlen(t->name));
                if (r >= 0)
                        r = buf_puts(&b, ",\"arguments\":\"\"}");
        } else if (r >= 0) {
                r = buf_puts(&b, ",\"function\":{\"arguments\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, args, n);
                if (r >= 0)
                        r = buf_puts(&b, "}");
        }
        if (r >= 0)
                r = buf_putf(&b, "}]},\"finish_reason\":null}]}\n\n");
        return r < 0 ? r : chat_stream_write(c, b.data, b.size);
}

static int render_tool_start(Chat *c, ChatToolCall *t, unsigned index) {
        return c->conv->stream ? tool_delta(c, index, t, true, NULL, 0) : 0;
}

static int render_tool_args(Chat *c, ChatToolCall *t, unsigned index, const char *s, size_t n) {
        return c->conv->stream ? tool_delta(c, index, t, false, s, n) : 0;
}

static int render_tool_end(Chat *c, ChatToolCall *t, unsigned index) {
        return 0;
}

static int put_usage(Chat *c, Buf *b) {
        uint64_t in, out;
        chat_usage(c, &in, &out);
        return buf_putf(b, "\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,\"total_tokens\":%llu}",
                        (unsigned long long) in, (unsigned long long) out, (unsigned long long) (in + out));
}

static int render_finish(Chat *c, ChatStop stop) {
        OpenAIState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        int r;

        if (c->conv->stream) {
                r = start_stream(c);
                if (r < 0)
                        return r;
                r = sse_chunk_begin(c, &b);
                if (r >= 0)
                        r = buf_putf(&b, ",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"%s\"}]}\n\n",
                                     chat_stop_reason_openai(stop));
                if (r >= 0 && st->opts.include_usage) {
                        r = sse_chunk_begin(&*c, &b);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"choices\":[],");
                        if (r >= 0)
                                r = put_usage(c, &b);
                        if (r >= 0)
                                r = buf_puts(&b, "}\n\n");
                }
                if (r >= 0)
                        r = buf_puts(&b, "data: [DONE]\n\n");
                if (r >= 0)
                        r = chat_stream_write(c, b.data, b.size);
                if (r < 0) {
                        (void) http_request_stream_abort(c->http);
                        return r;
                }
                return http_request_stream_end(c->http);
        }

        r = buf_putf(&b, "{\"id\":\"%s\",\"object\":\"chat.completion\",\"created\":%llu,\"model\":", c->id,
                     (unsigned long long) (c->created / USEC_PER_SEC));
        if (r >= 0)
                r = buf_put_json_string_utf8(&b, c->conv->model, strlen(c->conv->model));
        if (r >= 0)
                r = buf_putf(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        if (r >= 0)
                r = c->text.size > 0 || c->n_tools == 0 ? buf_put_json_string(&b, strempty(c->text.data), c->text.size)
                                                        : buf_puts(&b, "null");
        if (r >= 0 && c->reasoning.size > 0) {
                r = buf_puts(&b, ",\"reasoning_content\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, c->reasoning.data, c->reasoning.size);
        }
        if (r >= 0 && c->n_tools > 0) {
                r = buf_puts(&b, ",\"tool_calls\":[");
                for (size_t i = 0; r >= 0 && i < c->n_tools; i++) {
                        ChatToolCall *t = c->tools + i;
                        r = buf_putf(&b, "%s{\"id\":", i ? "," : "");
                        if (r >= 0)
                                r = buf_put_json_string(&b, t->id, strlen(t->id));
                        if (r >= 0)
                                r = buf_puts(&b, ",\"type\":\"function\",\"function\":{\"name\":");
                        if (r >= 0)
                                r = buf_put_json_string(&b, t->name, strlen(t->name));
                        if (r >= 0)
                                r = buf_puts(&b, ",\"arguments\":");
                        if (r >= 0)
                                r = t->args.size > 0 ? buf_put_json_string(&b, t->args.data, t->args.size)
                                                     : buf_puts(&b, "\"{}\"");
                        if (r >= 0)
                                r = buf_puts(&b, "}}");
                }
                if (r >= 0)
                        r = buf_puts(&b, "]");
        }
        if (r >= 0)
                r = buf_putf(&b, "},\"finish_reason\":\"%s\"}],", chat_stop_reason_openai(stop));
        if (r >= 0)
                r = put_usage(c, &b);
        if (r >= 0)
                r = buf_puts(&b, "}");
        if (r < 0)
                return http_request_respond_error(c->http, 500, "Out of memory.");
        return http_request_respond(c->http, 200, "application/json", b.data, b.size, NULL);
}

static int render_fail(Chat *c, const Failure *e) {
        if (!c->started)
                return api_error_respond(c->http, API_SHAPE_OPENAI, e);
        /* Mid-stream: an error event, then the stream ends without [DONE] and without a finish_reason. */
        _cleanup_free_ char *body = NULL;
        size_t size;
        _cleanup_(buf_done) Buf b = {};
        int r = api_error_render(API_SHAPE_OPENAI, e, &body, &size);
        if (r >= 0)
                r = buf_puts(&b, "data: ");
        if (r >= 0)
                r = buf_put(&b, body, size);
        if (r >= 0)
                r = buf_puts(&b, "\n\n");
        if (r >= 0)
                r = chat_stream_write(c, b.data, b.size);
        if (r < 0)
                return http_request_stream_abort(c->http);
        return http_request_stream_end(c->http);
}

static const ChatRenderer openai_renderer = {
        .api = "openai",
        .text = render_text,
        .thinking = render_thinking,
        .tool_start = render_tool_start,
        .tool_args = render_tool_args,
        .tool_end = render_tool_end,
        .finish = render_finish,
        .fail = render_fail,
};

static int handle_chat_again(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, void *extra) {
        return openai_handle_chat(ctx, http, limits);
}

int openai_handle_chat(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits) {
        _cleanup_(failure_done) Failure err = {};
        Conversation *conv = NULL;
        OpenAIOptions opts;
        size_t size;
        const char *body = http_request_body(http, &size);
        int r;

        r = openai_parse_chat(body, size, limits, &conv, &opts, &err);
        if (r < 0 && err.kind == FAILURE_NOT_FOUND && streq_ptr(err.param, "model") &&
            api_models_retry_unknown(ctx, http, limits, handle_chat_again, NULL) > 0)
                return 0;
        if (r == -ENOMEM)
                return http_request_respond_error(http, 500, "Out of memory.");
        if (r < 0)
                return api_error_respond(http, API_SHAPE_OPENAI, &err);
        r = api_set_affinity_key(conv, http_request_header(http, API_SESSION_HEADER));
        if (r < 0) {
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Failed to keep the session key.");
        }
        OpenAIState *st = calloc(1, sizeof *st);
        if (!st) {
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Out of memory.");
        }
        st->opts = opts;
        return chat_start(ctx, http, conv, &opts.model, &openai_renderer, st, state_free, "chatcmpl-");
}
