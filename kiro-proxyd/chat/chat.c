/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One chat request: upstream events through the thinking splitter and stop sequences into a renderer. */
#include <assert.h>
#include <stdarg.h>
#include <systemd/sd-id128.h>

#include "escape.h"
#include "json-util.h"
#include "log.h"
#include "chat/chat.h"
#include "chat/chat-metrics.h"

/* Pause reading upstream while this much is queued for a slow client. */
#define CHAT_PENDING_HIGH (1024 * 1024)

const char *chat_stop_reason_openai(ChatStop s) {
        static const char *const t[_CHAT_STOP_MAX] = {
                [CHAT_STOP_END_TURN] = "stop", [CHAT_STOP_TOOL_USE] = "tool_calls",
                [CHAT_STOP_MAX_TOKENS] = "length", [CHAT_STOP_STOP_SEQUENCE] = "stop",
        };
        return t[s];
}

const char *chat_stop_reason_anthropic(ChatStop s) {
        static const char *const t[_CHAT_STOP_MAX] = {
                [CHAT_STOP_END_TURN] = "end_turn", [CHAT_STOP_TOOL_USE] = "tool_use",
                [CHAT_STOP_MAX_TOKENS] = "max_tokens", [CHAT_STOP_STOP_SEQUENCE] = "stop_sequence",
        };
        return t[s];
}

static void take_call_info(Chat *c, ChatCall *call) {
        const char *cred = NULL;
        unsigned n = 0;
        if (!call || !c->backend->ops || !c->backend->ops->call_info)
                return;
        c->backend->ops->call_info(call, &cred, &n);
        c->attempts = n;
        if (cred && !streq_ptr(cred, c->credential)) {
                free(c->credential);
                c->credential = strdup(cred);
        }
}

static const char *status_class(unsigned status) {
        static const char *const t[] = { "none", "1xx", "2xx", "3xx", "4xx", "5xx" };
        return status / 100 < ELEMENTSOF(t) ? t[status / 100] : "none";
}

/* The request is over: one log line with its journal fields, and its metrics. Runs once, from chat_free(). */
static void chat_record(Chat *c) {
        ChatMetrics *m = &chat_metrics;
        usec_t end = now(CLOCK_MONOTONIC), start = http_request_started(c->http);
        unsigned status = http_request_status(c->http);
        const char *api = c->renderer->api ?: "other", *model = chat_metrics_model_label(&c->model);
        const char *outcome = c->outcome ?: "client-gone";
        bool ok = streq(outcome, "complete");
        double ttfb = c->first_byte > 0 ? (double) (c->first_byte - start) / USEC_PER_SEC : -1;
        double total = (double) (end - start) / USEC_PER_SEC;
        char st[8];

        (void) snprintf(st, sizeof st, "%u", status);
        metric_add(m->requests, (const char *const[]) { api, model, status_class(status), outcome }, 1);
        if (ttfb >= 0)
                metric_observe(m->first_byte_seconds, (const char *const[]) { api }, ttfb);
        metric_observe(m->duration_seconds, (const char *const[]) { api }, total);
        metric_add(m->tokens, (const char *const[]) { model, "input" }, (double) c->input_tokens);
        metric_add(m->tokens, (const char *const[]) { model, "output" }, (double) c->output_tokens);
        metric_add(m->bytes_out, (const char *const[]) { api }, (double) http_request_bytes_out(c->http));
        metric_add(m->open_streams, NULL, -1);
        if (c->credential)
                metric_add(m->credential_requests, (const char *const[]) { c->credential, ok ? "ok" : "error" }, 1);
        chat_metrics_credential_counts(c->credential, 1, 0, 0);

        if (log_get_max_level() < LOG_INFO)
                return;
        char f_req[64], f_cred[160], f_model[160], f_out[48], f_api[48], f_st[32], f_att[32], f_ttfb[48], f_end[48],
                f_in[48], f_outt[48];
        long long ms_ttfb = ttfb >= 0 ? (long long) (ttfb * 1000) : -1, ms_end = (long long) (total * 1000);
        (void) snprintf(f_req, sizeof f_req, "KIROD_REQUEST_ID=%s", http_request_id(c->http));
        (void) snprintf(f_cred, sizeof f_cred, "KIROD_CREDENTIAL=%s", strempty(c->credential));
        (void) snprintf(f_model, sizeof f_model, "KIROD_MODEL=%s", LOG_ESC(strempty(c->conv->model)));
        (void) snprintf(f_out, sizeof f_out, "KIROD_OUTCOME=%s", outcome);
        (void) snprintf(f_api, sizeof f_api, "KIROD_API=%s", api);
        (void) snprintf(f_st, sizeof f_st, "KIROD_STATUS=%u", status);
        (void) snprintf(f_att, sizeof f_att, "KIROD_ATTEMPTS=%u", c->attempts);
        (void) snprintf(f_ttfb, sizeof f_ttfb, "KIROD_FIRST_BYTE_MS=%lld", ms_ttfb);
        (void) snprintf(f_end, sizeof f_end, "KIROD_DURATION_MS=%lld", ms_end);
        (void) snprintf(f_in, sizeof f_in, "KIROD_INPUT_TOKENS=%" PRIu64, c->input_tokens);
        (void) snprintf(f_outt, sizeof f_outt, "KIROD_OUTPUT_TOKENS=%" PRIu64, c->output_tokens);
        const char *const fields[] = { f_req, f_cred, f_model, f_out, f_api, f_st, f_att, f_ttfb, f_end, f_in, f_outt, NULL };
        log_struct(LOG_INFO, KIROD_MESSAGE_REQUEST_FINISHED, fields,
                   "%s %s %s model='%s' credential=%s status=%s outcome=%s attempts=%u first-byte=%lldms end=%lldms "
                   "tokens=%" PRIu64 "/%" PRIu64 " id=%s",
                   http_request_method(c->http), LOG_ESC(http_request_path(c->http)), api, LOG_ESC(strempty(c->conv->model)),
                   c->credential ?: "-", st, outcome, c->attempts, ms_ttfb, ms_end, c->input_tokens, c->output_tokens,
                   http_request_id(c->http));
}

static void chat_free(Chat *c) {
        if (!c)
                return;
        if (c->recording) {
                c->recording = false;
                chat_record(c);
        }
        if (c->call && c->backend->ops->call_cancel)
                c->backend->ops->call_cancel(c->call);
        conversation_free(c->conv);
        if (c->frontend_state_free)
                c->frontend_state_free(c->frontend_state);
        free(c->id);
        free(c->credential);
        buf_done(&c->text);
        buf_done(&c->reasoning);
        buf_done(&c->signature);
        buf_done(&c->held);
        for (size_t i = 0; i < c->n_tools; i++) {
                free(c->tools[i].id);
                free(c->tools[i].name);
                buf_done(&c->tools[i].args);
        }
        free(c->tools);
        /* The chat's reference to the request: dropping it without a final call makes the HTTP layer drop
         * the connection, and no callback of the request can reach this chat afterwards. */
        http_request_unref(c->http);
        free(c);
}

/* The request is over from our side: the HTTP layer owns nothing of ours any more. */
static void chat_end(Chat *c) {
        c->finished = true;
        chat_free(c);
}

static void on_http_abort(HttpRequest *r, void *userdata) {
        Chat *c = userdata;
        if (c->call)
                take_call_info(c, c->call);
        c->outcome = "client-gone";
        /* The client is gone: stop the upstream call and free everything (r stays valid for our reference,
         * which chat_free() drops). */
        chat_free(c);
}

static void call_pause(Chat *c, bool pause) {
        if (c->call && c->backend->ops->call_pause)
                c->backend->ops->call_pause(c->call, pause);
}

static void on_http_drain(HttpRequest *r, void *userdata) {
        Chat *c = userdata;
        call_pause(c, false);
}

int chat_stream_write(Chat *c, const char *data, size_t size) {
        int r = http_request_stream_write(c->http, data, size);
        if (r < 0)
                return r;
        if (http_request_stream_pending(c->http) > CHAT_PENDING_HIGH)
                call_pause(c, true);
        return 0;
}

void chat_usage(Chat *c, uint64_t *ret_input, uint64_t *ret_output) {
        *ret_input = c->input_tokens;
        *ret_output = c->output_tokens;
}

uint64_t chat_usage_cached(Chat *c) {
        return c->cached_tokens;
}

static int emit_text(Chat *c, const char *s, size_t n) {
        if (n == 0)
                return 0;
        token_counter_add(&c->output_counter, s, n);
        /* Only a non-streamed response needs the whole answer text at the end. */
        if (!c->conv->stream) {
                int r = buf_put(&c->text, s, n);
                if (r < 0)
                        return r;
        }
        return c->renderer->text(c, s, n);
}

/* Passes answer text through the stop sequences: holds back a tail that could begin one. */
static int stop_filter(Chat *c, const char *s, size_t n) {
        int r;
        if (c->stopped)
                return 0;
        if (c->stop_max == 0)
                return emit_text(c, s, n);
        r = buf_put(&c->held, s, n);
        if (r < 0)
                return r;
        /* The earliest match of any stop sequence wins. */
        const char *best = NULL;
        STRV_FOREACH(stop, c->conv->stop) {
                const char *m = memmem(c->held.data, c->held.size, *stop, strlen(*stop));
                if (m && (!best || m < best)) {
                        best = m;
                        c->stop_matched = *stop;
                }
        }
        if (best) {
                c->stopped = true;
                return emit_text(c, c->held.data, (size_t) (best - c->held.data));
        }
        if (c->held.size < c->stop_max)
                return 0;
        size_t keep = c->stop_max - 1, out = c->held.size - keep;
        /* Never cut inside a UTF-8 sequence. */
        while (out > 0 && ((unsigned char) c->held.data[out] & 0xC0) == 0x80)
                out--;
        r = emit_text(c, c->held.data, out);
        if (r < 0)
                return r;
        memmove(c->held.data, c->held.data + out, c->held.size - out);
        c->held.size -= out;
        return 0;
}

static int on_split(bool thinking, const char *text, size_t size, void *userdata) {
        Chat *c = userdata;
        if (!thinking)
                return stop_filter(c, text, size);
        token_counter_add(&c->output_counter, text, size);
        int r = buf_put(&c->reasoning, text, size);
        if (r < 0)
                return r;
        return c->renderer->thinking(c, text, size);
}

static ChatToolCall *tool_at(Chat *c, unsigned index, const ChatEvent *ev) {
        if (index < c->n_tools)
                return c->tools + index;
        if (index != c->n_tools)
                return NULL;
        ChatToolCall *t = realloc(c->tools, sizeof(ChatToolCall) * (c->n_tools + 1));
        if (!t)
                return NULL;
        c->tools = t;
        t = c->tools + c->n_tools++;
        *t = (ChatToolCall) { .id = strdup(strempty(ev->tool_id)), .name = strdup(strempty(ev->tool_name)) };
        return t;
}

static void resolve_usage(Chat *c, const ChatUsage *u) {
        ChatUsage empty = {};
        if (!u)
                u = &empty;
        /* Exact numbers when Kiro reports them; otherwise our estimator, the one count_tokens uses, so that
         * the two agree (contextUsagePercentage is too coarse to be worth the disagreement). */
        if (u->has_tokens) {
                chat_usage_resolve(u, c->model.context_window, c->input_estimate, &c->input_tokens, &c->output_tokens);
                c->cached_tokens = u->cache_read_input_tokens;
        }
        else {
                c->input_tokens = c->input_estimate;
                c->output_tokens = token_counter_get(&c->output_counter);
        }
}

static int on_event(ChatCall *call, const ChatEvent *ev, void *userdata) {
        Chat *c = userdata;
        ChatToolCall *t;
        int r = 0;

        if (ev->type == CHAT_EVENT_END || ev->type == CHAT_EVENT_ERROR)
                take_call_info(c, call);
        else if (c->first_byte == 0) {
                c->first_byte = now(CLOCK_MONOTONIC);
                take_call_info(c, call);
        }
        if (c->stopped && ev->type != CHAT_EVENT_END && ev->type != CHAT_EVENT_ERROR)
                return 0;
        switch (ev->type) {
        case CHAT_EVENT_TEXT:
                r = thinking_splitter_feed(&c->splitter, ev->text, ev->size);
                if (r >= 0 && c->stopped) {
                        /* A stop sequence matched: the answer is complete, upstream is not needed. */
                        c->call = NULL;
                        c->outcome = "complete";
                        resolve_usage(c, c->backend->ops->call_usage ? c->backend->ops->call_usage(call) : NULL);
                        r = c->renderer->finish(c, CHAT_STOP_STOP_SEQUENCE);
                        chat_end(c);
                        return -ECANCELED;
                }
                break;
        case CHAT_EVENT_THINKING:
                token_counter_add(&c->output_counter, ev->text, ev->size);
                r = buf_put(&c->reasoning, ev->text, ev->size);
                if (r >= 0)
                        r = c->renderer->thinking(c, ev->text, ev->size);
                break;
        case CHAT_EVENT_THINKING_SIGNATURE:
                r = buf_put(&c->signature, ev->text, ev->size);
                if (r >= 0 && c->renderer->signature)
                        r = c->renderer->signature(c, ev->text, ev->size);
                break;
        case CHAT_EVENT_TOOL_START:
                t = tool_at(c, ev->tool_index, ev);
                if (!t)
                        return -ENOMEM;
                r = c->renderer->tool_start(c, t, ev->tool_index);
                break;
        case CHAT_EVENT_TOOL_ARGS:
                t = tool_at(c, ev->tool_index, ev);
                if (!t)
                        return -ENOMEM;
                token_counter_add(&c->output_counter, ev->text, ev->size);
                r = buf_put(&t->args, ev->text, ev->size);
                if (r >= 0)
                        r = c->renderer->tool_args(c, t, ev->tool_index, ev->text, ev->size);
                break;
        case CHAT_EVENT_TOOL_END:
                t = tool_at(c, ev->tool_index, ev);
                if (!t)
                        return -ENOMEM;
                r = c->renderer->tool_end(c, t, ev->tool_index);
                break;
        case CHAT_EVENT_ERROR: {
                /* After content: the stream ends with an explicit error, never a made-up normal stop. */
                Failure e = { .kind = ev->error && ev->error->kind == CHAT_ERROR_TRUNCATED ? FAILURE_BAD_GATEWAY
                                                                                             : FAILURE_INTERNAL };
                if (asprintf(&e.message, "The upstream stream failed after the answer began: %s",
                             ev->error ? strna(ev->error->message) : "unknown error") < 0)
                        e.message = NULL;
                c->call = NULL; /* the upstream layer frees the call after END */
                c->outcome = "truncated";
                resolve_usage(c, NULL);
                (void) c->renderer->fail(c, &e);
                failure_done(&e);
                chat_end(c);
                return -ECANCELED;
        }
        case CHAT_EVENT_END: {
                c->call = NULL; /* freed by the upstream layer when we return */
                r = thinking_splitter_finish(&c->splitter);
                if (r >= 0 && c->held.size > 0 && !c->stopped) {
                        size_t n = c->held.size;
                        c->held.size = 0;
                        r = emit_text(c, c->held.data, n);
                }
                resolve_usage(c, ev->usage);
                ChatStop stop = ev->stop_reason == CHAT_STOP_REASON_TOOL_USE || c->n_tools > 0 ? CHAT_STOP_TOOL_USE
                                : ev->stop_reason == CHAT_STOP_REASON_MAX_TOKENS || ev->stop_reason == CHAT_STOP_REASON_CONTEXT_WINDOW_EXCEEDED
                                        ? CHAT_STOP_MAX_TOKENS
                                        : CHAT_STOP_END_TURN;
                if (r >= 0)
                        r = c->renderer->finish(c, stop);
                c->outcome = r >= 0 ? "complete" : "client-gone";
                chat_end(c);
                return 0;
        }
        default:
                break;
        }
        if (r < 0) {
                /* The client went away or we ran out of memory: stop here. */
                c->call = NULL;
                c->outcome = "client-gone";
                if (c->http && c->started)
                        (void) http_request_stream_abort(c->http);
                else if (c->http)
                        (void) http_request_respond_error(c->http, 500, "Internal error while rendering the answer.");
                chat_end(c);
                return -ECANCELED;
        }
        return 0;
}

static void on_fail(ChatCall *call, const Failure *err, void *userdata) {
        Chat *c = userdata;
        take_call_info(c, call);
        c->call = NULL;
        c->outcome = "upstream-error";
        (void) c->renderer->fail(c, err);
        chat_end(c);
}

static const ChatCallHandler call_handler = {
        .on_event = on_event,
        .on_fail = on_fail,
};

int chat_start(ChatContext *ctx, HttpRequest *http, Conversation *conv, const ModelInfo *model,
               const ChatRenderer *renderer, void *frontend_state, void (*frontend_state_free)(void *state),
               const char *id_prefix) {
        Chat *c = calloc(1, sizeof *c);
        sd_id128_t rnd;
        int r;

        if (!c) {
                conversation_free(conv);
                if (frontend_state_free)
                        frontend_state_free(frontend_state);
                return -ENOMEM;
        }
        c->http = http_request_ref(http);
        c->conv = conv;
        c->model = *model;
        c->renderer = renderer;
        c->frontend_state = frontend_state;
        c->frontend_state_free = frontend_state_free;
        assert(model->provider >= 0 && model->provider < _MODEL_PROVIDER_MAX);
        c->backend = &ctx->backends[model->provider];
        c->created = now(CLOCK_REALTIME);
        c->recording = true;
        metric_add(chat_metrics.open_streams, NULL, 1);
        (void) snprintf(conv->request_id, sizeof conv->request_id, "%s", http_request_id(http));
        r = sd_id128_randomize(&rnd);
        if (r < 0 || asprintf(&c->id, "%s" SD_ID128_FORMAT_STR, id_prefix, SD_ID128_FORMAT_VAL(rnd)) < 0) {
                chat_free(c);
                return -ENOMEM;
        }
        c->input_estimate = conversation_estimate_input_tokens(conv);
        STRV_FOREACH(s, conv->stop)
                c->stop_max = MAX(c->stop_max, strlen(*s));
        thinking_splitter_init(&c->splitter, conv->thinking, on_split, c);

        http_request_set_abort_handler(http, on_http_abort, c);
        http_request_set_drain_handler(http, on_http_drain, c);
        if (renderer->begin)
                (void) renderer->begin(c);
        if (!c->backend->ops) {
                Failure f = {};
                (void) failure_set(&f, FAILURE_INVALID_REQUEST, "model", "No back end serves the model '%s' (provider %s).",
                                   strna(conv->model), model_provider_to_string(model->provider));
                c->outcome = "upstream-error";
                (void) renderer->fail(c, &f);
                failure_done(&f);
                chat_end(c);
                return 0;
        }
        r = c->backend->ops->call_start(c->backend->data, c->conv, &call_handler, c, &c->call);
        if (r < 0) {
                Failure e = { .kind = FAILURE_INTERNAL, .message = strdup("Cannot start the upstream request.") };
                c->outcome = "upstream-error";
                (void) renderer->fail(c, &e);
                failure_done(&e);
                chat_end(c);
        }
        return 0;
}
