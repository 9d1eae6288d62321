/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The OpenAI Responses front end: the route, the streamed event sequence (response.created …
 * response.completed / .incomplete / .failed, every event with its sequence_number) and the response
 * object. The answer is a list of output items: reasoning, message (one output_text part) and
 * function_call, in the order the upstream produced them. */
#include "json-util.h"
#include "log.h"
#include "api/api-error.h"
#include "api/api-models.h"
#include "api/api-responses.h"

/* ---- the store of responses for previous_response_id ---------------------------------------------- */

typedef struct StoredResponse {
        char *id;
        char *items;
        usec_t expires;         /* CLOCK_MONOTONIC */
} StoredResponse;

struct ResponsesStore {
        StoredResponse *entries;        /* oldest first */
        size_t n, max;
        usec_t ttl;
};

int responses_store_new(size_t max, usec_t ttl, ResponsesStore **ret) {
        ResponsesStore *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->max = max;
        s->ttl = ttl;
        *ret = s;
        return 0;
}

static void stored_done(StoredResponse *e) {
        free(e->id);
        free(e->items);
}

static void store_drop_front(ResponsesStore *s, size_t k) {
        if (k == 0)
                return;
        for (size_t i = 0; i < k; i++)
                stored_done(s->entries + i);
        memmove(s->entries, s->entries + k, (s->n - k) * sizeof *s->entries);
        s->n -= k;
}

ResponsesStore *responses_store_free(ResponsesStore *s) {
        if (!s)
                return NULL;
        store_drop_front(s, s->n);
        free(s->entries);
        free(s);
        return NULL;
}

size_t responses_store_count(const ResponsesStore *s) {
        return s ? s->n : 0;
}

int responses_store_put(ResponsesStore *s, const char *id, char *items) {
        _cleanup_free_ char *it = items;
        usec_t t = now(CLOCK_MONOTONIC);
        size_t k = 0;
        if (!s || s->max == 0)
                return 0;
        /* Entries expire in insertion order: the expired ones are a prefix. */
        while (k < s->n && s->entries[k].expires <= t)
                k++;
        if (s->n - k >= s->max)
                k = s->n - s->max + 1;
        store_drop_front(s, k);
        if (!s->entries) {
                s->entries = calloc(s->max, sizeof *s->entries);
                if (!s->entries)
                        return -ENOMEM;
        }
        char *d = strdup(id);
        if (!d)
                return -ENOMEM;
        s->entries[s->n++] = (StoredResponse) { .id = d, .items = TAKE_PTR(it), .expires = s->ttl >= USEC_INFINITY - t ? USEC_INFINITY : t + s->ttl };
        return 0;
}

int responses_store_get(ResponsesStore *s, const char *id, const char **ret_items) {
        if (!s)
                return -ENOENT;
        for (size_t i = 0; i < s->n; i++) {
                if (!streq(s->entries[i].id, id))
                        continue;
                if (s->entries[i].expires <= now(CLOCK_MONOTONIC)) {
                        stored_done(s->entries + i);
                        memmove(s->entries + i, s->entries + i + 1, (s->n - i - 1) * sizeof *s->entries);
                        s->n--;
                        return -ESTALE;
                }
                *ret_items = s->entries[i].items;
                return 0;
        }
        return -ENOENT;
}

/* ---- the response ----------------------------------------------------------------------------------- */

typedef enum ItemType { ITEM_NONE, ITEM_MESSAGE, ITEM_REASONING, ITEM_FUNCTION_CALL } ItemType;

typedef struct ResponsesState {
        ResponsesOptions opts;
        ResponsesStore *store;  /* NULL = keep nothing */
        uint64_t seq;           /* the next sequence_number */
        ItemType open;          /* the output item currently open */
        unsigned index;         /* its output_index */
        unsigned n_items;
        unsigned tool;          /* ITEM_FUNCTION_CALL: its index in Chat.tools */
        char item_id[80];
        Buf item_text;          /* the open message's text or reasoning item's summary */
        Buf output;             /* the finished output items, comma-separated JSON */
        Buf escaped;            /* while an item closes: item_text as a JSON string, escaped once for the
                                 * four places the whole text goes (a 1 MiB answer is 5 MiB of events) */
        bool have_escaped;
        Buf scratch;            /* reused for every delta event */
} ResponsesState;

static void state_free(void *p) {
        ResponsesState *st = p;
        if (!st)
                return;
        responses_options_done(&st->opts);
        buf_done(&st->item_text);
        buf_done(&st->output);
        buf_done(&st->escaped);
        buf_done(&st->scratch);
        free(st);
}

/* The open item's whole text as a JSON string. */
static int put_item_text(ResponsesState *st, Buf *b) {
        if (st->have_escaped)
                return buf_put(b, st->escaped.data, st->escaped.size);
        return buf_put_json_string(b, strempty(st->item_text.data), st->item_text.size);
}

static int put_str(Buf *b, const char *s) {
        return s ? buf_put_json_string_utf8(b, s, strlen(s)) : buf_puts(b, "null");
}

/* One SSE event: "event: <type>" and {"type":…,"sequence_number":N,<fields>}; fields is a JSON member
 * list without braces. */
static int send_event(Chat *c, const char *type, const char *fields, size_t n) {
        ResponsesState *st = c->frontend_state;
        Buf *b = &st->scratch;
        b->size = 0;
        int r = buf_puts_many(b, "event: ", type, "\ndata: {\"type\":\"", type, "\",\"sequence_number\":");
        if (r >= 0)
                r = buf_put_uint(b, st->seq++);
        if (r >= 0 && n > 0)
                r = buf_puts(b, ",");
        if (r >= 0 && n > 4096) {
                /* A large event (the whole answer again): written in place rather than copied once more. */
                r = chat_stream_write(c, b->data, b->size);
                if (r >= 0)
                        r = chat_stream_write(c, fields, n);
                return r < 0 ? r : chat_stream_write(c, "}\n\n", 3);
        }
        if (r >= 0)
                r = buf_put(b, fields, n);
        if (r >= 0)
                r = buf_puts(b, "}\n\n");
        return r < 0 ? r : chat_stream_write(c, b->data, b->size);
}

static int put_usage(Chat *c, Buf *b) {
        uint64_t in, out;
        chat_usage(c, &in, &out);
        return buf_putf(b, "{\"input_tokens\":%llu,\"input_tokens_details\":{\"cached_tokens\":%llu},\"output_tokens\":%llu,"
                           "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":%llu}",
                        (unsigned long long) in, (unsigned long long) chat_usage_cached(c), (unsigned long long) out,
                        (unsigned long long) (in + out));
}

/* The response object. status: in_progress (no output, no usage yet), completed, incomplete, failed. */
static int put_response(Chat *c, Buf *b, const char *status, const Failure *e) {
        ResponsesState *st = c->frontend_state;
        bool done = !streq(status, "in_progress");
        int r = buf_putf(b, "{\"id\":\"%s\",\"object\":\"response\",\"created_at\":%llu,\"status\":\"%s\",\"background\":false,"
                            "\"error\":",
                         c->id, (unsigned long long) (c->created / USEC_PER_SEC), status);
        if (r >= 0 && e) {
                const char *code = e->code ?: e->kind == FAILURE_RATE_LIMIT ? "rate_limit_exceeded" : "server_error";
                r = buf_puts_many(b, "{\"code\":\"", code, "\",\"message\":");
                if (r >= 0)
                        r = put_str(b, e->message ?: "Unknown error.");
                if (r >= 0)
                        r = buf_puts(b, "}");
        } else if (r >= 0)
                r = buf_puts(b, "null");
        if (r >= 0)
                r = buf_puts(b, streq(status, "incomplete") ? ",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}"
                                                             : ",\"incomplete_details\":null");
        if (r >= 0)
                r = buf_puts(b, ",\"instructions\":");
        if (r >= 0)
                r = put_str(b, st->opts.instructions);
        if (r >= 0)
                r = c->conv->max_tokens > 0 ? buf_putf(b, ",\"max_output_tokens\":%llu", (unsigned long long) c->conv->max_tokens)
                                            : buf_puts(b, ",\"max_output_tokens\":null");
        if (r >= 0)
                r = buf_puts(b, ",\"model\":");
        if (r >= 0)
                r = put_str(b, c->conv->model);
        if (r >= 0)
                r = buf_puts(b, ",\"output\":[");
        if (r >= 0 && done)
                r = buf_put(b, st->output.data, st->output.size);
        if (r >= 0)
                r = buf_putf(b, "],\"parallel_tool_calls\":%s,\"previous_response_id\":",
                             st->opts.parallel_tool_calls ? "true" : "false");
        if (r >= 0)
                r = put_str(b, st->opts.previous_response_id);
        if (r >= 0)
                r = buf_puts(b, ",\"reasoning\":{\"effort\":");
        if (r >= 0)
                r = put_str(b, st->opts.reasoning_effort);
        if (r >= 0)
                r = buf_putf(b, ",\"summary\":null},\"store\":%s", st->opts.store ? "true" : "false");
        if (r >= 0)
                r = c->conv->has_temperature ? buf_putf(b, ",\"temperature\":%g", c->conv->temperature)
                                             : buf_puts(b, ",\"temperature\":1");
        if (r >= 0)
                r = buf_puts_many(b, ",\"text\":{\"format\":", st->opts.text_format ?: "{\"type\":\"text\"}",
                                  "},\"tool_choice\":", st->opts.tool_choice ?: "\"auto\"", ",\"tools\":[]");
        if (r >= 0)
                r = c->conv->has_top_p ? buf_putf(b, ",\"top_p\":%g", c->conv->top_p) : buf_puts(b, ",\"top_p\":1");
        if (r >= 0)
                r = buf_puts(b, ",\"truncation\":\"disabled\",\"usage\":");
        if (r >= 0)
                r = done && !e ? put_usage(c, b) : buf_puts(b, "null");
        if (r >= 0)
                r = buf_puts(b, ",\"user\":");
        if (r >= 0)
                r = put_str(b, st->opts.user);
        if (r >= 0)
                r = buf_puts_many(b, ",\"metadata\":", st->opts.metadata ?: "{}", "}");
        return r;
}

static int send_response_event(Chat *c, const char *type, const char *status, const Failure *e) {
        _cleanup_(buf_done) Buf b = {};
        int r = buf_puts(&b, "\"response\":");
        if (r >= 0)
                r = put_response(c, &b, status, e);
        return r < 0 ? r : send_event(c, type, b.data, b.size);
}

static int start_stream(Chat *c) {
        static const char *const headers[] = { "Cache-Control: no-cache", "X-Accel-Buffering: no", NULL };
        int r;
        if (c->started)
                return 0;
        r = http_request_stream_begin(c->http, 200, "text/event-stream", headers);
        if (r < 0)
                return r;
        c->started = true;
        r = send_response_event(c, "response.created", "in_progress", NULL);
        return r < 0 ? r : send_response_event(c, "response.in_progress", "in_progress", NULL);
}

/* The open item as JSON; status "in_progress" for output_item.added (no content yet). */
static int put_item(Chat *c, Buf *b, const char *status) {
        ResponsesState *st = c->frontend_state;
        bool added = streq(status, "in_progress");
        int r = buf_puts(b, "{\"id\":");
        if (r >= 0)
                r = put_str(b, st->item_id);
        if (r < 0)
                return r;
        switch (st->open) {
        case ITEM_MESSAGE:
                r = buf_puts_many(b, ",\"type\":\"message\",\"status\":\"", status, "\",\"role\":\"assistant\",\"content\":[");
                if (r >= 0 && !added) {
                        r = buf_puts(b, "{\"type\":\"output_text\",\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, b);
                        if (r >= 0)
                                r = buf_puts(b, ",\"annotations\":[],\"logprobs\":[]}");
                }
                return r < 0 ? r : buf_puts(b, "]}");
        case ITEM_REASONING:
                r = buf_puts(b, ",\"type\":\"reasoning\",\"summary\":[");
                if (r >= 0 && !added) {
                        r = buf_puts(b, "{\"type\":\"summary_text\",\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, b);
                        if (r >= 0)
                                r = buf_puts(b, "}");
                }
                if (r >= 0)
                        r = buf_puts(b, "],\"encrypted_content\":");
                if (r >= 0)
                        r = !added && c->signature.size > 0 ? buf_put_json_string(b, c->signature.data, c->signature.size)
                                                            : buf_puts(b, "null");
                return r < 0 ? r : buf_puts(b, "}");
        case ITEM_FUNCTION_CALL: {
                ChatToolCall *t = c->tools + st->tool;
                r = buf_puts_many(b, ",\"type\":\"function_call\",\"status\":\"", status, "\",\"call_id\":");
                if (r >= 0)
                        r = put_str(b, t->id);
                if (r >= 0)
                        r = buf_puts(b, ",\"name\":");
                if (r >= 0)
                        r = put_str(b, t->name);
                if (r >= 0)
                        r = buf_puts(b, ",\"arguments\":");
                if (r >= 0)
                        r = added ? buf_puts(b, "\"\"")
                            : t->args.size > 0 ? buf_put_json_string(b, t->args.data, t->args.size)
                                               : buf_puts(b, "\"{}\"");
                return r < 0 ? r : buf_puts(b, "}");
        }
        default:
                return -EINVAL;
        }
}

static int put_item_ref(ResponsesState *st, Buf *b) {
        int r = buf_puts(b, "\"item_id\":");
        if (r >= 0)
                r = put_str(b, st->item_id);
        return r < 0 ? r : buf_putf(b, ",\"output_index\":%u", st->index);
}

/* Ends the open item: its closing events (streams), and it joins the response's output. */
static int close_item(Chat *c, const char *status) {
        ResponsesState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        int r = 0;

        if (st->open == ITEM_NONE)
                return 0;
        if (st->open != ITEM_FUNCTION_CALL) {
                st->escaped.size = 0;
                r = buf_put_json_string(&st->escaped, strempty(st->item_text.data), st->item_text.size);
                if (r < 0)
                        return r;
                st->have_escaped = true;
        }
        if (c->conv->stream) {
                r = put_item_ref(st, &b);
                if (st->open == ITEM_MESSAGE) {
                        if (r >= 0)
                                r = buf_puts(&b, ",\"content_index\":0,\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, &b);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"logprobs\":[]");
                        if (r >= 0)
                                r = send_event(c, "response.output_text.done", b.data, b.size);
                        b.size = 0;
                        if (r >= 0)
                                r = put_item_ref(st, &b);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, &b);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"annotations\":[],\"logprobs\":[]}");
                        if (r >= 0)
                                r = send_event(c, "response.content_part.done", b.data, b.size);
                } else if (st->open == ITEM_REASONING) {
                        if (r >= 0)
                                r = buf_puts(&b, ",\"summary_index\":0,\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, &b);
                        if (r >= 0)
                                r = send_event(c, "response.reasoning_summary_text.done", b.data, b.size);
                        b.size = 0;
                        if (r >= 0)
                                r = put_item_ref(st, &b);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":");
                        if (r >= 0)
                                r = put_item_text(st, &b);
                        if (r >= 0)
                                r = buf_puts(&b, "}");
                        if (r >= 0)
                                r = send_event(c, "response.reasoning_summary_part.done", b.data, b.size);
                } else {
                        ChatToolCall *t = c->tools + st->tool;
                        if (r >= 0)
                                r = buf_puts(&b, ",\"name\":");
                        if (r >= 0)
                                r = put_str(&b, t->name);
                        if (r >= 0)
                                r = buf_puts(&b, ",\"arguments\":");
                        if (r >= 0)
                                r = t->args.size > 0 ? buf_put_json_string(&b, t->args.data, t->args.size)
                                                     : buf_puts(&b, "\"{}\"");
                        if (r >= 0)
                                r = send_event(c, "response.function_call_arguments.done", b.data, b.size);
                }
                b.size = 0;
                if (r >= 0)
                        r = buf_putf(&b, "\"output_index\":%u,\"item\":", st->index);
                if (r >= 0)
                        r = put_item(c, &b, status);
                if (r >= 0)
                        r = send_event(c, "response.output_item.done", b.data, b.size);
                if (r < 0) {
                        st->have_escaped = false;
                        return r;
                }
        }
        if (st->output.size > 0 && buf_puts(&st->output, ",") < 0)
                return -ENOMEM;
        r = put_item(c, &st->output, status);
        st->open = ITEM_NONE;
        st->item_text.size = 0;
        st->have_escaped = false;
        st->escaped.size = 0;
        return r;
}

static int open_item(Chat *c, ItemType type, unsigned tool) {
        ResponsesState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        static const char *const prefix[] = { [ITEM_MESSAGE] = "msg", [ITEM_REASONING] = "rs", [ITEM_FUNCTION_CALL] = "fc" };
        int r;

        if (st->open == type && (type != ITEM_FUNCTION_CALL || st->tool == tool))
                return 0;
        if (c->conv->stream) {
                r = start_stream(c);
                if (r < 0)
                        return r;
        }
        r = close_item(c, "completed");
        if (r < 0)
                return r;
        st->open = type;
        st->tool = tool;
        st->index = st->n_items++;
        snprintf(st->item_id, sizeof st->item_id, "%s_%s_%u", prefix[type], c->id + strlen("resp_"), st->index);
        if (!c->conv->stream)
                return 0;
        r = buf_putf(&b, "\"output_index\":%u,\"item\":", st->index);
        if (r >= 0)
                r = put_item(c, &b, "in_progress");
        if (r >= 0)
                r = send_event(c, "response.output_item.added", b.data, b.size);
        b.size = 0;
        if (r >= 0 && type == ITEM_MESSAGE) {
                r = put_item_ref(st, &b);
                if (r >= 0)
                        r = buf_puts(&b, ",\"content_index\":0,\"part\":{\"type\":\"output_text\",\"text\":\"\",\"annotations\":[],"
                                         "\"logprobs\":[]}");
                if (r >= 0)
                        r = send_event(c, "response.content_part.added", b.data, b.size);
        } else if (r >= 0 && type == ITEM_REASONING) {
                r = put_item_ref(st, &b);
                if (r >= 0)
                        r = buf_puts(&b, ",\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":\"\"}");
                if (r >= 0)
                        r = send_event(c, "response.reasoning_summary_part.added", b.data, b.size);
        }
        return r;
}

/* A delta event: the per-token path of a stream, without printf and without an allocation per event. */
static int send_delta(Chat *c, const char *type, const char *extra, const char *s, size_t n) {
        ResponsesState *st = c->frontend_state;
        Buf *b = &st->scratch;
        b->size = 0;
        int r = buf_puts_many(b, "event: ", type, "\ndata: {\"type\":\"", type, "\",\"sequence_number\":");
        if (r >= 0)
                r = buf_put_uint(b, st->seq++);
        if (r >= 0)
                r = buf_puts(b, ",\"item_id\":\"");
        if (r >= 0)
                r = buf_puts(b, st->item_id);
        if (r >= 0)
                r = buf_puts(b, "\",\"output_index\":");
        if (r >= 0)
                r = buf_put_uint(b, st->index);
        if (r >= 0)
                r = buf_puts_many(b, extra, ",\"delta\":");
        if (r >= 0)
                r = buf_put_json_string(b, s, n);
        if (r >= 0)
                r = buf_puts(b, "}\n\n");
        return r < 0 ? r : chat_stream_write(c, b->data, b->size);
}

static int render_text(Chat *c, const char *s, size_t n) {
        ResponsesState *st = c->frontend_state;
        int r = open_item(c, ITEM_MESSAGE, 0);
        if (r >= 0)
                r = buf_put(&st->item_text, s, n);
        if (r >= 0 && c->conv->stream)
                r = send_delta(c, "response.output_text.delta", ",\"content_index\":0,\"logprobs\":[]", s, n);
        return r;
}

static int render_thinking(Chat *c, const char *s, size_t n) {
        ResponsesState *st = c->frontend_state;
        int r = open_item(c, ITEM_REASONING, 0);
        if (r >= 0)
                r = buf_put(&st->item_text, s, n);
        if (r >= 0 && c->conv->stream)
                r = send_delta(c, "response.reasoning_summary_text.delta", ",\"summary_index\":0", s, n);
        return r;
}

static int render_tool_start(Chat *c, ChatToolCall *t, unsigned index) {
        return open_item(c, ITEM_FUNCTION_CALL, index);
}

static int render_tool_args(Chat *c, ChatToolCall *t, unsigned index, const char *s, size_t n) {
        int r = open_item(c, ITEM_FUNCTION_CALL, index);
        if (r >= 0 && c->conv->stream)
                r = send_delta(c, "response.function_call_arguments.delta", "", s, n);
        return r;
}

static int render_tool_end(Chat *c, ChatToolCall *t, unsigned index) {
        ResponsesState *st = c->frontend_state;
        if (st->open != ITEM_FUNCTION_CALL || st->tool != index)
                return 0;
        return close_item(c, "completed");
}

/* store: true: the input chain and this answer's output, for a later previous_response_id. */
static void keep_response(Chat *c) {
        ResponsesState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        const char *in = st->opts.input_items;
        if (!st->store || !st->opts.store || !in)
                return;
        /* in is "[…]": its items, then the output's. */
        size_t n = strlen(in);
        int r = buf_put(&b, in, n - 1);
        if (r >= 0 && st->output.size > 0)
                r = buf_puts(&b, n > 2 ? "," : "");
        if (r >= 0)
                r = buf_put(&b, st->output.data, st->output.size);
        if (r >= 0)
                r = buf_puts(&b, "]");
        if (r >= 0)
                r = responses_store_put(st->store, c->id, buf_steal(&b));
        if (r < 0)
                log_warning_errno(r, "Cannot keep response %s for previous_response_id: %m", c->id);
}

static int render_finish(Chat *c, ChatStop stop) {
        const char *status = stop == CHAT_STOP_MAX_TOKENS ? "incomplete" : "completed";
        _cleanup_(buf_done) Buf b = {};
        int r;

        if (c->conv->stream) {
                r = start_stream(c);
                if (r >= 0)
                        r = close_item(c, status);
                if (r >= 0)
                        keep_response(c);
                if (r >= 0)
                        r = send_response_event(c, stop == CHAT_STOP_MAX_TOKENS ? "response.incomplete" : "response.completed",
                                                status, NULL);
                if (r < 0) {
                        (void) http_request_stream_abort(c->http);
                        return r;
                }
                return http_request_stream_end(c->http);
        }
        r = close_item(c, status);
        if (r >= 0)
                keep_response(c);
        if (r >= 0)
                r = put_response(c, &b, status, NULL);
        if (r < 0)
                return http_request_respond_error(c->http, 500, "Out of memory.");
        return http_request_respond(c->http, 200, "application/json", b.data, b.size, NULL);
}

static int render_fail(Chat *c, const Failure *e) {
        if (!c->started)
                return api_error_respond(c->http, API_SHAPE_OPENAI, e);
        /* Mid-stream: the open item ends incomplete, then response.failed with the error; never a made-up
         * response.completed. */
        int r = close_item(c, "incomplete");
        if (r >= 0)
                r = send_response_event(c, "response.failed", "failed", e);
        if (r < 0)
                return http_request_stream_abort(c->http);
        return http_request_stream_end(c->http);
}

static const ChatRenderer responses_renderer = {
        .api = "responses",
        .text = render_text,
        .thinking = render_thinking,
        .tool_start = render_tool_start,
        .tool_args = render_tool_args,
        .tool_end = render_tool_end,
        .finish = render_finish,
        .fail = render_fail,
};

static int handle_again(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, void *store) {
        return responses_handle(ctx, http, limits, store);
}

int responses_handle(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, ResponsesStore *store) {
        _cleanup_(failure_done) Failure err = {};
        Conversation *conv = NULL;
        ResponsesOptions opts;
        size_t size;
        const char *body = http_request_body(http, &size);
        int r;

        if (store && store->max == 0)
                store = NULL;
        r = responses_parse(body, size, limits, store, &conv, &opts, &err);
        if (r < 0)
                responses_options_done(&opts);
        if (r < 0 && err.kind == FAILURE_NOT_FOUND && streq_ptr(err.param, "model") &&
            api_models_retry_unknown(ctx, http, limits, handle_again, store) > 0)
                return 0;
        if (r == -ENOMEM)
                return http_request_respond_error(http, 500, "Out of memory.");
        if (r < 0)
                return api_error_respond(http, API_SHAPE_OPENAI, &err);
        r = api_set_affinity_key(conv, http_request_header(http, API_SESSION_HEADER));
        if (r < 0) {
                responses_options_done(&opts);
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Failed to keep the session key.");
        }
        ResponsesState *st = calloc(1, sizeof *st);
        if (!st) {
                responses_options_done(&opts);
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Out of memory.");
        }
        st->opts = opts;
        st->store = store;
        return chat_start(ctx, http, conv, &opts.model, &responses_renderer, st, state_free, "resp_");
}
