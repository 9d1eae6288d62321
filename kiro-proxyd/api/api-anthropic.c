/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Anthropic Messages front end: request parsing, the event sequence Anthropic streams, one JSON body. */
#include <gnutls/crypto.h>

#include "hash-util.h"
#include "json-util.h"
#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "api/api-models.h"

/* A started stream with no output for this long gets a "ping" event, so clients and proxies keep it open
 * (PingIntervalSec= changes it). */
#define PING_INTERVAL_USEC (15 * USEC_PER_SEC)

/* ---- request ---------------------------------------------------------------------------------------- */

static int block_text(json_object *blocks, const char *where, char **ret, Failure *err) {
        /* tool_result content: a string or text blocks (images inside results are not supported). */
        if (!blocks || json_object_is_type(blocks, json_type_null)) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        if (json_object_is_type(blocks, json_type_string)) {
                *ret = strdup(json_object_get_string(blocks));
                return *ret ? 0 : -ENOMEM;
        }
        if (!json_object_is_type(blocks, json_type_array))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s: must be a string or an array of blocks",
                                     where);
        Buf b = {};
        for (size_t i = 0; i < json_object_array_length(blocks); i++) {
                json_object *blk = json_object_array_get_idx(blocks, i);
                const char *type = json_string_or_null(blk, "type"), *t;
                if (!type || !streq(type, "text") || json_get_string(blk, "text", &t) < 0) {
                        buf_done(&b);
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                             "%s.%zu: only text blocks are supported here", where, i);
                }
                if ((b.size > 0 && buf_puts(&b, "\n") < 0) || buf_put(&b, t, strlen(t)) < 0) {
                        buf_done(&b);
                        return -ENOMEM;
                }
        }
        *ret = b.data ?: strdup("");
        return *ret ? 0 : -ENOMEM;
}

static int parse_block(ConvMessage *m, bool assistant, json_object *blk, const char *where, Failure *err) {
        const char *type = json_string_or_null(blk, "type"), *s, *s2;
        json_object *o;
        int r;

        if (!type)
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.type: Field required", where);
        if (streq(type, "text")) {
                if (json_get_string(blk, "text", &s) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.text: must be a string", where);
                return conv_message_add_text(m, s);
        }
        if (streq(type, "image")) {
                if (json_get_object(blk, "source", &o) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.source: Field required", where);
                const char *st = json_string_or_null(o, "type");
                char sw[128];
                snprintf(sw, sizeof sw, "%s.source", where);
                if (streq_ptr(st, "base64") && json_get_string(o, "media_type", &s) >= 0 &&
                    json_get_string(o, "data", &s2) >= 0) {
                        r = api_check_image(s, s2, sw, err);
                        return r < 0 ? r : conv_message_add_image(m, s, s2);
                }
                if (streq_ptr(st, "url") && json_get_string(o, "url", &s) >= 0) {
                        /* Kiro cannot fetch an image: refused, unless it is a data: URL. */
                        r = api_check_image(NULL, s, sw, err);
                        return r < 0 ? r : conv_message_add_image(m, NULL, s);
                }
                return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                     "%s.source: needs type 'base64' with 'media_type' and 'data'", where);
        }
        if (streq(type, "tool_use")) {
                if (!assistant)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s: tool_use blocks belong to assistant turns",
                                             where);
                if (json_get_string(blk, "id", &s) < 0 || json_get_string(blk, "name", &s2) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s: needs string 'id' and 'name'", where);
                const char *input = "{}";
                if (json_object_object_get_ex(blk, "input", &o) && o) {
                        if (!json_object_is_type(o, json_type_object))
                                return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                                   "%s.input: must be an object (the tool's arguments)", where);
                        input = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                }
                return conv_message_add_tool_use(m, s, s2, input);
        }
        if (streq(type, "tool_result")) {
                _cleanup_free_ char *text = NULL;
                bool is_error = false;
                char cw[160];
                if (assistant)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s: tool_result blocks belong to user turns",
                                             where);
                if (json_get_string(blk, "tool_use_id", &s) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.tool_use_id: Field required", where);
                snprintf(cw, sizeof cw, "%s.content", where);
                json_object_object_get_ex(blk, "content", &o);
                r = block_text(o, cw, &text, err);
                if (r < 0)
                        return r;
                (void) json_get_bool(blk, "is_error", &is_error);
                return conv_message_add_tool_result(m, s, text, is_error);
        }
        if (streq(type, "thinking")) {
                if (json_get_string(blk, "thinking", &s) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.thinking: must be a string", where);
                return conv_message_add_thinking(m, s, json_string_or_null(blk, "signature"));
        }
        if (streq(type, "redacted_thinking"))
                return 0; /* opaque to us and to Kiro: dropped */
        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.type: '%s' blocks are not supported", where, type);
}

static int parse_system(Conversation *c, json_object *sys, Failure *err) {
        if (!sys || json_object_is_type(sys, json_type_null))
                return 0;
        _cleanup_free_ char *text = NULL;
        int r = block_text(sys, "system", &text, err);
        if (r < 0)
                return r;
        if (!isempty(text))
                c->system = TAKE_PTR(text);
        return 0;
}

static int parse_tools(Conversation *c, json_object *req, const ApiLimits *l, Failure *err) {
        json_object *tools, *choice;
        int r = json_get_array(req, "tools", &tools);
        if (r == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "tools", "tools: must be an array");
        if (r >= 0) {
                r = api_check_limit("tools", "tools", json_object_array_length(tools), l->max_tools, "MaxTools", err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; r >= 0 && i < json_object_array_length(tools); i++) {
                json_object *t = json_object_array_get_idx(tools, i), *schema = NULL;
                const char *name, *type = json_string_or_null(t, "type");
                char w[48];
                snprintf(w, sizeof w, "tools.%zu", i);
                if (type && !streq(type, "custom"))
                        return failure_set(err, FAILURE_INVALID_REQUEST, w,
                                             "%s.type: server tool '%s' is not supported by Kiro", w, type);
                if (json_get_string(t, "name", &name) < 0 || isempty(name))
                        return failure_set(err, FAILURE_INVALID_REQUEST, w, "%s.name: Field required", w);
                if (json_get_object(t, "input_schema", &schema) == -EMEDIUMTYPE)
                        return failure_set(err, FAILURE_INVALID_REQUEST, w, "%s.input_schema: must be an object", w);
                r = conversation_add_tool(c, name, json_string_or_null(t, "description"), schema);
                if (r < 0)
                        return r;
        }
        r = api_get_object(req, "tool_choice", "tool_choice", &choice, err);
        if (r <= 0)
                return r;
        r = api_get_bool(choice, "disable_parallel_tool_use", "tool_choice.disable_parallel_tool_use", &(bool) { false }, err);
        if (r < 0)
                return r;
        const char *type = json_string_or_null(choice, "type");
        if (streq_ptr(type, "auto"))
                c->tool_choice = CONV_TOOL_CHOICE_AUTO;
        else if (streq_ptr(type, "any"))
                c->tool_choice = CONV_TOOL_CHOICE_ANY;
        else if (streq_ptr(type, "none"))
                c->tool_choice = CONV_TOOL_CHOICE_NONE;
        else if (streq_ptr(type, "tool") && json_string_or_null(choice, "name")) {
                c->tool_choice = CONV_TOOL_CHOICE_TOOL;
                c->tool_choice_name = strdup(json_string_or_null(choice, "name"));
                if (!c->tool_choice_name)
                        return -ENOMEM;
        } else
                return failure_set(err, FAILURE_INVALID_REQUEST, "tool_choice",
                                     "tool_choice: type must be 'auto', 'any', 'none' or 'tool' with a name");
        return 0;
}

int anthropic_parse_messages(const char *body, size_t size, const ApiLimits *l, bool count_only,
                             Conversation **ret, ModelInfo *ret_model, Failure *err) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        _cleanup_json_ json_object *req = NULL;
        json_object *messages, *v, *o;
        const char *model;
        bool thinking_alias = false;
        ModelInfo info;
        uint64_t n;
        int r;

        r = api_parse_body(body, size, l, API_PATH_DOTS, &req, err);
        if (r < 0)
                return r;
        r = api_get_string(req, "model", "model", &model, err);
        if (r < 0)
                return r;
        if (r == 0 || isempty(model))
                return failure_set(err, FAILURE_INVALID_REQUEST, "model", "model: Field required");
        r = json_get_array(req, "messages", &messages);
        if (r < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "messages", "messages: Field required (an array)");
        if (json_object_array_length(messages) == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "messages", "messages: at least one message is required");
        r = api_check_limit("messages", "messages", json_object_array_length(messages), l->max_messages, "MaxMessages", err);
        if (r < 0)
                return r;
        r = models_resolve(model, &info, &thinking_alias);
        if (r == -ENOENT)
                return failure_set(err, FAILURE_NOT_FOUND, "model", "model: %s", model);
        if (r < 0)
                return r;

        r = conversation_new(&c);
        if (r < 0)
                return r;
        c->model = strdup(model);
        c->model_id = strdup(info.upstream_id);
        if (!c->model || !c->model_id)
                return -ENOMEM;

        r = api_get_integer(req, "max_tokens", "max_tokens", 1, API_MAX_TOKENS_MAX, &c->max_tokens, err);
        if (r < 0)
                return r;
        if (r == 0 && !count_only)
                return failure_set(err, FAILURE_INVALID_REQUEST, "max_tokens", "max_tokens: Field required (an integer)");

        json_object_object_get_ex(req, "system", &v);
        r = parse_system(c, v, err);
        if (r < 0)
                return r;

        for (size_t i = 0; i < json_object_array_length(messages); i++) {
                json_object *msg = json_object_array_get_idx(messages, i), *content;
                char where[48];
                const char *role;
                ConvMessage *m;
                snprintf(where, sizeof where, "messages.%zu", i);
                if (json_get_string(msg, "role", &role) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.role: Field required", where);
                bool assistant = streq(role, "assistant");
                if (!assistant && !streq(role, "user"))
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                             "%s.role: must be 'user' or 'assistant'", where);
                r = conversation_add_message(c, assistant ? CONV_ROLE_ASSISTANT : CONV_ROLE_USER, &m);
                if (r < 0)
                        return r;
                if (!json_object_object_get_ex(msg, "content", &content) || !content)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "%s.content: Field required", where);
                if (json_object_is_type(content, json_type_string)) {
                        r = conv_message_add_text(m, json_object_get_string(content));
                        if (r < 0)
                                return r;
                        continue;
                }
                if (!json_object_is_type(content, json_type_array))
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                             "%s.content: must be a string or an array of blocks", where);
                for (size_t j = 0; j < json_object_array_length(content); j++) {
                        char bw[96];
                        snprintf(bw, sizeof bw, "%s.content.%zu", where, j);
                        r = parse_block(m, assistant, json_object_array_get_idx(content, j), bw, err);
                        if (r < 0)
                                return r;
                }
        }
        r = api_check_content_parts(c, l, err);
        if (r < 0)
                return r;
        r = parse_tools(c, req, l, err);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(req, "stream", &v) && v) {
                if (!json_object_is_type(v, json_type_boolean))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "stream", "stream: must be a boolean");
                c->stream = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(req, "stop_sequences", &v) && v) {
                if (!json_object_is_type(v, json_type_array))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "stop_sequences",
                                           "stop_sequences: must be an array of strings");
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        json_object *s = json_object_array_get_idx(v, i);
                        if (!json_object_is_type(s, json_type_string))
                                return failure_set(err, FAILURE_INVALID_REQUEST, "stop_sequences",
                                                     "stop_sequences: must be an array of strings");
                        if (!isempty(json_object_get_string(s)) && strv_extend(&c->stop, json_object_get_string(s)) < 0)
                                return -ENOMEM;
                }
        }
        /* Kiro takes no sampling parameters, but Anthropic's ranges hold: a client gets the 400 it would get
         * there. */
        r = api_get_number(req, "temperature", "temperature", 0, 1, &c->temperature, err);
        if (r < 0)
                return r;
        c->has_temperature = r > 0;
        r = api_get_number(req, "top_p", "top_p", 0, 1, &c->top_p, err);
        if (r < 0)
                return r;
        c->has_top_p = r > 0;
        r = api_get_integer(req, "top_k", "top_k", 0, API_MAX_TOKENS_MAX, &n, err);
        if (r < 0)
                return r;
        if (json_get_object(req, "metadata", &o) >= 0) {
                const char *uid = json_string_or_null(o, "user_id");
                if (!isempty(uid)) {
                        /* Claude Code: "user_…_account_…_session_<uuid>", or a JSON object with session_id. */
                        const char *sess = strstr(uid, "session_");
                        _cleanup_json_ json_object *j = NULL;
                        if (sess)
                                c->session_id = strdup(sess + 8);
                        else if (json_parse_bounded(uid, strlen(uid), 4, &j, NULL) >= 0 && json_string_or_null(j, "session_id"))
                                c->session_id = strdup(json_string_or_null(j, "session_id"));
                        else
                                c->session_id = strdup(uid);
                        if (!c->session_id)
                                return -ENOMEM;
                        /* The same session keeps its credential, so Kiro sees the conversation continue. */
                        r = api_set_affinity_key(c, c->session_id);
                        if (r < 0)
                                return r;
                }
        }
        r = api_get_object(req, "thinking", "thinking", &o, err);
        if (r < 0)
                return r;
        if (r > 0) {
                const char *type = json_string_or_null(o, "type");
                if (streq_ptr(type, "enabled")) {
                        r = api_get_integer(o, "budget_tokens", "thinking.budget_tokens", 1, API_MAX_TOKENS_MAX, &n, err);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, "thinking",
                                                     "thinking.budget_tokens: Field required (a positive integer)");
                        c->thinking = true;
                        c->thinking_budget = (uint32_t) n;
                } else if (streq_ptr(type, "adaptive")) {
                        c->thinking = true;
                        c->thinking_budget = CONV_THINKING_BUDGET_DEFAULT;
                } else if (!streq_ptr(type, "disabled"))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "thinking",
                                             "thinking.type: must be 'enabled', 'adaptive' or 'disabled'");
        }
        if (thinking_alias && !c->thinking) {
                c->thinking = true;
                c->thinking_budget = CONV_THINKING_BUDGET_DEFAULT;
        }
        if (ret_model)
                *ret_model = info;
        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- response --------------------------------------------------------------------------------------- */

typedef enum BlockType { BLOCK_NONE, BLOCK_TEXT, BLOCK_THINKING, BLOCK_TOOL } BlockType;

typedef struct AnthropicState {
        BlockType open;         /* the content block currently open in the stream */
        unsigned index;         /* its index */
        unsigned n_blocks;
        bool signature_sent;
        sd_event_source *ping;
        usec_t ping_interval;   /* USEC_INFINITY: no pings */
        usec_t last_output;     /* CLOCK_MONOTONIC of the last event written (loop time) */
        Chat *chat;
        Buf scratch;            /* reused for every delta event */
} AnthropicState;

static void state_free(void *p) {
        AnthropicState *st = p;
        if (!st)
                return;
        sd_event_source_disable_unref(st->ping);
        buf_done(&st->scratch);
        free(st);
}

static int send_event(Chat *c, const char *name, Buf *data) {
        _cleanup_(buf_done) Buf b = {};
        int r = buf_putf(&b, "event: %s\ndata: ", name);
        if (r >= 0)
                r = buf_put(&b, data->data, data->size);
        if (r >= 0)
                r = buf_puts(&b, "\n\n");
        return r < 0 ? r : chat_stream_write(c, b.data, b.size);
}

static int start_stream(Chat *c);

static int on_ping(sd_event_source *s, uint64_t usec, void *userdata) {
        AnthropicState *st = userdata;
        Buf b = {};
        usec_t n = 0;

        /* The timer is not moved on every event written (that was a timer update per token): it fires an
         * interval after it was armed, and if something was written since, it is re-armed for an interval
         * after that instead. */
        (void) sd_event_now(sd_event_source_get_event(s), CLOCK_MONOTONIC, &n);
        if (st->last_output > 0 && n < st->last_output + st->ping_interval) {
                (void) sd_event_source_set_time(s, st->last_output + st->ping_interval);
                return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        if (buf_puts(&b, "{\"type\": \"ping\"}") >= 0)
                (void) send_event(st->chat, "ping", &b);
        buf_done(&b);
        st->last_output = n;
        (void) sd_event_source_set_time_relative(s, st->ping_interval);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static void touch_ping(AnthropicState *st) {
        if (st->ping)
                (void) sd_event_now(sd_event_source_get_event(st->ping), CLOCK_MONOTONIC, &st->last_output);
}

static int start_stream(Chat *c) {
        static const char *const headers[] = { "Cache-Control: no-cache", "X-Accel-Buffering: no", NULL };
        AnthropicState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        int r;

        if (c->started) {
                touch_ping(st);
                return 0;
        }
        r = http_request_stream_begin(c->http, 200, "text/event-stream", headers);
        if (r < 0)
                return r;
        c->started = true;
        r = buf_putf(&b, "{\"type\":\"message_start\",\"message\":{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\","
                         "\"model\":", c->id);
        if (r >= 0)
                r = buf_put_json_string_utf8(&b, c->conv->model, strlen(c->conv->model));
        if (r >= 0)
                r = buf_putf(&b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":%llu,"
                                 "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}",
                             (unsigned long long) c->input_estimate);
        if (r >= 0)
                r = send_event(c, "message_start", &b);
        if (r < 0)
                return r;
        st->chat = c;
        sd_event *e = NULL;
        if (!st->ping && st->ping_interval != USEC_INFINITY && sd_event_default(&e) >= 0) {
                (void) sd_event_add_time_relative(e, &st->ping, CLOCK_MONOTONIC, st->ping_interval, 0, on_ping, st);
                sd_event_unref(e);
        }
        touch_ping(st);
        return 0;
}

/* A synthetic signature for prompt-tag thinking (Kiro gives none): opaque, stable for the same text. */
static int make_signature(Chat *c, char **ret) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        int r = sha256(c->reasoning.data ?: "", c->reasoning.size, digest);
        if (r < 0)
                return r;
        gnutls_datum_t in = { .data = digest, .size = sizeof digest }, out = {};
        if (gnutls_base64_encode2(&in, &out) < 0)
                return -ENOMEM;
        r = asprintf(ret, "kirod.%.*s", (int) out.size, (const char *) out.data) < 0 ? -ENOMEM : 0;
        gnutls_free(out.data);
        return r;
}

static int close_block(Chat *c) {
        AnthropicState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        int r = 0;
        if (st->open == BLOCK_NONE)
                return 0;
        if (st->open == BLOCK_THINKING && !st->signature_sent) {
                _cleanup_free_ char *sig = NULL;
                if (c->signature.size > 0)
                        sig = strdup(c->signature.data);
                else
                        r = make_signature(c, &sig);
                if (r >= 0 && !sig)
                        r = -ENOMEM;
                if (r >= 0)
                        r = buf_putf(&b, "{\"type\":\"content_block_delta\",\"index\":%u,\"delta\":{\"type\":\"signature_delta\","
                                         "\"signature\":", st->index);
                if (r >= 0)
                        r = buf_put_json_string(&b, sig, strlen(sig));
                if (r >= 0)
                        r = buf_puts(&b, "}}");
                if (r >= 0)
                        r = send_event(c, "content_block_delta", &b);
                if (r < 0)
                        return r;
                st->signature_sent = true;
                b.size = 0;
        }
        r = buf_putf(&b, "{\"type\":\"content_block_stop\",\"index\":%u}", st->index);
        if (r >= 0)
                r = send_event(c, "content_block_stop", &b);
        st->open = BLOCK_NONE;
        return r;
}

static int open_block(Chat *c, BlockType type, ChatToolCall *t) {
        AnthropicState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        int r = start_stream(c);
        if (r < 0)
                return r;
        if (st->open == type && type != BLOCK_TOOL)
                return 0;
        r = close_block(c);
        if (r < 0)
                return r;
        st->index = st->n_blocks++;
        st->open = type;
        r = buf_putf(&b, "{\"type\":\"content_block_start\",\"index\":%u,\"content_block\":", st->index);
        if (r < 0)
                return r;
        if (type == BLOCK_TEXT)
                r = buf_puts(&b, "{\"type\":\"text\",\"text\":\"\"}}");
        else if (type == BLOCK_THINKING) {
                st->signature_sent = false;
                r = buf_puts(&b, "{\"type\":\"thinking\",\"thinking\":\"\"}}");
        } else {
                r = buf_puts(&b, "{\"type\":\"tool_use\",\"id\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->id, strlen(t->id));
                if (r >= 0)
                        r = buf_puts(&b, ",\"name\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->name, strlen(t->name));
                if (r >= 0)
                        r = buf_puts(&b, ",\"input\":{}}}");
        }
        return r < 0 ? r : send_event(c, "content_block_start", &b);
}

/* A content_block_delta event: the per-token path of a stream, so without printf and without an
 * allocation per event. */
static int send_delta(Chat *c, const char *delta_type, const char *key, const char *s, size_t n) {
        AnthropicState *st = c->frontend_state;
        Buf *b = &st->scratch;
        int r;

        b->size = 0;
        r = buf_puts(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
        if (r >= 0)
                r = buf_put_uint(b, st->index);
        if (r >= 0)
                r = buf_puts_many(b, ",\"delta\":{\"type\":\"", delta_type, "\",\"", key, "\":");
        if (r >= 0)
                r = buf_put_json_string(b, s, n);
        if (r >= 0)
                r = buf_puts(b, "}}\n\n");
        return r < 0 ? r : chat_stream_write(c, b->data, b->size);
}

static int render_text(Chat *c, const char *s, size_t n) {
        if (!c->conv->stream)
                return 0;
        int r = open_block(c, BLOCK_TEXT, NULL);
        return r < 0 ? r : send_delta(c, "text_delta", "text", s, n);
}

static int render_thinking(Chat *c, const char *s, size_t n) {
        if (!c->conv->stream)
                return 0;
        int r = open_block(c, BLOCK_THINKING, NULL);
        return r < 0 ? r : send_delta(c, "thinking_delta", "thinking", s, n);
}

static int render_tool_start(Chat *c, ChatToolCall *t, unsigned index) {
        return c->conv->stream ? open_block(c, BLOCK_TOOL, t) : 0;
}

static int render_tool_args(Chat *c, ChatToolCall *t, unsigned index, const char *s, size_t n) {
        if (!c->conv->stream)
                return 0;
        int r = start_stream(c);
        return r < 0 ? r : send_delta(c, "input_json_delta", "partial_json", s, n);
}

static int render_tool_end(Chat *c, ChatToolCall *t, unsigned index) {
        return c->conv->stream ? close_block(c) : 0;
}

/* A tool call's arguments as a JSON object for the non-streamed body; Kiro's text is JSON already. */
static int put_tool_input(Buf *b, ChatToolCall *t) {
        _cleanup_json_ json_object *o = NULL;
        if (t->args.size == 0 || json_parse_bounded(t->args.data, t->args.size, 64, &o, NULL) < 0 ||
            !json_object_is_type(o, json_type_object))
                return buf_puts(b, "{}");
        return buf_put(b, t->args.data, t->args.size);
}

static int render_finish(Chat *c, ChatStop stop) {
        AnthropicState *st = c->frontend_state;
        _cleanup_(buf_done) Buf b = {};
        const char *matched = stop == CHAT_STOP_STOP_SEQUENCE ? c->stop_matched : NULL;
        uint64_t in, out;
        int r;

        chat_usage(c, &in, &out);

        if (c->conv->stream) {
                r = start_stream(c);
                if (r >= 0)
                        r = close_block(c);
                if (r >= 0)
                        r = buf_putf(&b, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":",
                                     chat_stop_reason_anthropic(stop));
                if (r >= 0)
                        r = matched ? buf_put_json_string_utf8(&b, matched, strlen(matched)) : buf_puts(&b, "null");
                if (r >= 0)
                        r = buf_putf(&b, "},\"usage\":{\"input_tokens\":%llu,\"output_tokens\":%llu}}", (unsigned long long) in,
                                     (unsigned long long) out);
                if (r >= 0)
                        r = send_event(c, "message_delta", &b);
                b.size = 0;
                if (r >= 0)
                        r = buf_puts(&b, "{\"type\":\"message_stop\"}");
                if (r >= 0)
                        r = send_event(c, "message_stop", &b);
                st->ping = sd_event_source_disable_unref(st->ping);
                if (r < 0) {
                        (void) http_request_stream_abort(c->http);
                        return r;
                }
                return http_request_stream_end(c->http);
        }

        r = buf_putf(&b, "{\"id\":\"%s\",\"type\":\"message\",\"role\":\"assistant\",\"model\":", c->id);
        if (r >= 0)
                r = buf_put_json_string_utf8(&b, c->conv->model, strlen(c->conv->model));
        if (r >= 0)
                r = buf_puts(&b, ",\"content\":[");
        bool first = true;
        if (r >= 0 && c->reasoning.size > 0) {
                _cleanup_free_ char *sig = NULL;
                r = c->signature.size > 0 ? ((sig = strdup(c->signature.data)) ? 0 : -ENOMEM) : make_signature(c, &sig);
                if (r >= 0)
                        r = buf_puts(&b, "{\"type\":\"thinking\",\"thinking\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, c->reasoning.data, c->reasoning.size);
                if (r >= 0)
                        r = buf_puts(&b, ",\"signature\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, sig, strlen(sig));
                if (r >= 0)
                        r = buf_puts(&b, "}");
                first = false;
        }
        if (r >= 0 && (c->text.size > 0 || c->n_tools == 0)) {
                r = buf_putf(&b, "%s{\"type\":\"text\",\"text\":", first ? "" : ",");
                if (r >= 0)
                        r = buf_put_json_string(&b, strempty(c->text.data), c->text.size);
                if (r >= 0)
                        r = buf_puts(&b, "}");
                first = false;
        }
        for (size_t i = 0; r >= 0 && i < c->n_tools; i++) {
                ChatToolCall *t = c->tools + i;
                r = buf_putf(&b, "%s{\"type\":\"tool_use\",\"id\":", first ? "" : ",");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->id, strlen(t->id));
                if (r >= 0)
                        r = buf_puts(&b, ",\"name\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, t->name, strlen(t->name));
                if (r >= 0)
                        r = buf_puts(&b, ",\"input\":");
                if (r >= 0)
                        r = put_tool_input(&b, t);
                if (r >= 0)
                        r = buf_puts(&b, "}");
                first = false;
        }
        if (r >= 0)
                r = buf_putf(&b, "],\"stop_reason\":\"%s\",\"stop_sequence\":", chat_stop_reason_anthropic(stop));
        if (r >= 0)
                r = matched ? buf_put_json_string_utf8(&b, matched, strlen(matched)) : buf_puts(&b, "null");
        if (r >= 0)
                r = buf_putf(&b, ",\"usage\":{\"input_tokens\":%llu,\"cache_creation_input_tokens\":0,"
                                 "\"cache_read_input_tokens\":0,\"output_tokens\":%llu}}",
                             (unsigned long long) in, (unsigned long long) out);
        if (r < 0)
                return http_request_respond_error(c->http, 500, "Out of memory.");
        return http_request_respond(c->http, 200, "application/json", b.data, b.size, NULL);
}

static int render_fail(Chat *c, const Failure *e) {
        AnthropicState *st = c->frontend_state;
        if (!c->started)
                return api_error_respond(c->http, API_SHAPE_ANTHROPIC, e);
        /* Mid-stream: an error event, then the stream ends; no message_stop (it was not a normal end). */
        st->ping = sd_event_source_disable_unref(st->ping);
        _cleanup_free_ char *body = NULL;
        size_t size;
        Buf b = {};
        int r = api_error_render(API_SHAPE_ANTHROPIC, e, &body, &size);
        if (r >= 0)
                r = buf_put(&b, body, size);
        if (r >= 0)
                r = send_event(c, "error", &b);
        buf_done(&b);
        if (r < 0)
                return http_request_stream_abort(c->http);
        return http_request_stream_end(c->http);
}

/* No ping before the answer commits: the stream (and its HTTP 200) starts with the first content, so that
 * a failure before it (a 429 after the retries, an overloaded model) reaches the client as that HTTP
 * status, which SDKs retry, rather than as an error event under a 200. The wait before the first token
 * is bounded by FirstTokenTimeoutSec= per attempt. Pings keep a started stream alive during silences. */
static int render_begin(Chat *c) {
        AnthropicState *st = c->frontend_state;
        st->chat = c;
        return 0;
}

static const ChatRenderer anthropic_renderer = {
        .api = "anthropic",
        .begin = render_begin,
        .text = render_text,
        .thinking = render_thinking,
        .tool_start = render_tool_start,
        .tool_args = render_tool_args,
        .tool_end = render_tool_end,
        .finish = render_finish,
        .fail = render_fail,
};

static int handle_messages_again(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, void *extra) {
        return anthropic_handle_messages(ctx, http, limits);
}

int anthropic_handle_messages(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits) {
        _cleanup_(failure_done) Failure err = {};
        Conversation *conv = NULL;
        ModelInfo info;
        size_t size;
        const char *body = http_request_body(http, &size);
        int r;

        r = anthropic_parse_messages(body, size, limits, false, &conv, &info, &err);
        if (r < 0 && err.kind == FAILURE_NOT_FOUND && streq_ptr(err.param, "model") &&
            api_models_retry_unknown(ctx, http, limits, handle_messages_again, NULL) > 0)
                return 0;
        if (r == -ENOMEM)
                return http_request_respond_error(http, 500, "Out of memory.");
        if (r < 0)
                return api_error_respond(http, API_SHAPE_ANTHROPIC, &err);
        r = api_set_affinity_key(conv, http_request_header(http, API_SESSION_HEADER));
        if (r < 0) {
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Failed to keep the session key.");
        }
        AnthropicState *st = calloc(1, sizeof *st);
        if (!st) {
                conversation_free(conv);
                return http_request_respond_error(http, 500, "Out of memory.");
        }
        st->ping_interval = ctx->ping_interval ?: PING_INTERVAL_USEC;
        r = chat_start(ctx, http, conv, &info, &anthropic_renderer, st, state_free, "msg_");
        return r;
}

int anthropic_handle_count_tokens(HttpRequest *http, const ApiLimits *limits) {
        _cleanup_(failure_done) Failure err = {};
        _cleanup_(conversation_freep) Conversation *conv = NULL;
        size_t size;
        const char *body = http_request_body(http, &size);
        char out[64];
        int r;

        r = anthropic_parse_messages(body, size, limits, true, &conv, NULL, &err);
        if (r == -ENOMEM)
                return http_request_respond_error(http, 500, "Out of memory.");
        if (r < 0)
                return api_error_respond(http, API_SHAPE_ANTHROPIC, &err);
        int n = snprintf(out, sizeof out, "{\"input_tokens\":%llu}",
                         (unsigned long long) conversation_estimate_input_tokens(conv));
        return http_request_respond(http, 200, "application/json", out, (size_t) n, NULL);
}
