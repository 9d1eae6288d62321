/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The conversation form → a Kimi chat completions request body (KIRO-PROTOCOL B §7). */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "json-util.h"
#include "kimi/kimi-request.h"

bool kimi_model_reasons(const Conversation *conv) {
        return conv->thinking || (conv->model_id && strstr(conv->model_id, "thinking"));
}

static int add_string(json_object *o, const char *key, const char *value) {
        return json_add(o, key, json_object_new_string(strempty(value)));
}

/* "data:<media>;base64,…" as is; bare base64 with its media type made into a data URL. */
static json_object *image_part(const ConvPart *p) {
        _cleanup_free_ char *url = NULL;
        if (startswith(strempty(p->data), "data:"))
                url = strdup(p->data);
        else if (asprintf(&url, "data:%s;base64,%s", p->media_type ?: "image/png", strempty(p->data)) < 0)
                url = NULL;
        if (!url)
                return NULL;
        json_object *o = json_object_new_object(), *iu = json_object_new_object();
        if (!o || !iu || add_string(iu, "url", url) < 0 || add_string(o, "type", "image_url") < 0 ||
            json_add(o, "image_url", iu) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* A user turn: its tool results become "tool" messages first (they answer the previous assistant turn),
 * then its text and images one user message (plain string content when there is only text). */
static int add_user(json_object *msgs, const ConvMessage *m, const char *role) {
        _cleanup_(buf_done) Buf text = {};
        bool has_image = false, has_text = false;
        int r;

        for (size_t i = 0; i < m->n_parts; i++) {
                const ConvPart *p = &m->parts[i];
                if (p->type == CONV_PART_TOOL_RESULT) {
                        json_object *t = json_object_new_object();
                        if (!t)
                                return -ENOMEM;
                        r = add_string(t, "role", "tool");
                        if (r >= 0)
                                r = add_string(t, "tool_call_id", p->id);
                        if (r >= 0)
                                r = add_string(t, "content", isempty(p->text) ? "(empty)" : p->text);
                        if (r < 0 || (r = json_object_array_add(msgs, t)) < 0) {
                                json_object_put(t);
                                return -ENOMEM;
                        }
                } else if (p->type == CONV_PART_IMAGE)
                        has_image = true;
                else if (p->type == CONV_PART_TEXT && p->text) {
                        if (has_text && buf_put(&text, "\n\n", 2) < 0)
                                return -ENOMEM;
                        if (buf_put(&text, p->text, strlen(p->text)) < 0)
                                return -ENOMEM;
                        has_text = true;
                }
        }
        if (!has_text && !has_image)
                return 0;

        json_object *u = json_object_new_object();
        if (!u || add_string(u, "role", role) < 0)
                goto oom;
        if (!has_image) {
                if (add_string(u, "content", text.data) < 0)
                        goto oom;
        } else {
                json_object *parts = json_object_new_array();
                if (!parts || json_add(u, "content", parts) < 0)
                        goto oom;
                for (size_t i = 0; i < m->n_parts; i++) {
                        const ConvPart *p = &m->parts[i];
                        json_object *o = NULL;
                        if (p->type == CONV_PART_IMAGE)
                                o = image_part(p);
                        else if (p->type == CONV_PART_TEXT && p->text) {
                                o = json_object_new_object();
                                if (o && (add_string(o, "type", "text") < 0 || add_string(o, "text", p->text) < 0))
                                        o = (json_object_put(o), NULL);
                        } else
                                continue;
                        if (!o || json_object_array_add(parts, o) < 0) {
                                json_object_put(o);
                                goto oom;
                        }
                }
        }
        if (json_object_array_add(msgs, u) < 0)
                goto oom;
        return 0;
oom:
        json_object_put(u);
        return -ENOMEM;
}

/* An assistant turn: text, reasoning_content (its thinking parts) and tool_calls. A replayed assistant tool
 * call carries its reasoning: with reasoning on, Kimi expects reasoning_content on every assistant message
 * that has tool_calls, so it is sent even when the client kept none (empty). */
static int add_assistant(json_object *msgs, const ConvMessage *m, bool reasoning) {
        _cleanup_(buf_done) Buf text = {}, thinking = {};
        json_object *calls = NULL;
        json_object *a = json_object_new_object();
        bool has_thinking = false;

        if (!a || add_string(a, "role", "assistant") < 0)
                goto oom;
        for (size_t i = 0; i < m->n_parts; i++) {
                const ConvPart *p = &m->parts[i];
                if (p->type == CONV_PART_TEXT && p->text) {
                        if (buf_put(&text, p->text, strlen(p->text)) < 0)
                                goto oom;
                } else if (p->type == CONV_PART_THINKING && p->text) {
                        if (buf_put(&thinking, p->text, strlen(p->text)) < 0)
                                goto oom;
                        has_thinking = true;
                } else if (p->type == CONV_PART_TOOL_USE) {
                        json_object *c = json_object_new_object(), *f = json_object_new_object();
                        if (!calls && !(calls = json_object_new_array()))
                                goto oom_call;
                        if (!c || !f || add_string(c, "id", p->id) < 0 || add_string(c, "type", "function") < 0 ||
                            add_string(f, "name", p->name) < 0 ||
                            add_string(f, "arguments", isempty(p->input) ? "{}" : p->input) < 0)
                                goto oom_call;
                        if (json_add(c, "function", f) < 0) {
                                f = NULL;
                                goto oom_call;
                        }
                        f = NULL;
                        if (json_object_array_add(calls, c) < 0)
                                goto oom_call;
                        continue;
                oom_call:
                        json_object_put(c);
                        json_object_put(f);
                        goto oom;
                }
        }
        if (add_string(a, "content", text.data) < 0)
                goto oom;
        if (has_thinking || (calls && reasoning))
                if (add_string(a, "reasoning_content", thinking.data) < 0)
                        goto oom;
        if (calls) {
                if (json_add(a, "tool_calls", calls) < 0) {
                        calls = NULL;
                        goto oom;
                }
                calls = NULL;
        }
        if (json_object_array_add(msgs, a) < 0)
                goto oom;
        return 0;
oom:
        json_object_put(calls);
        json_object_put(a);
        return -ENOMEM;
}

static int add_tools(json_object *body, const Conversation *conv) {
        if (conv->n_tools == 0)
                return 0;
        json_object *tools = json_object_new_array();
        if (!tools || json_add(body, "tools", tools) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < conv->n_tools; i++) {
                const ConvTool *t = &conv->tools[i];
                json_object *o = json_object_new_object(), *f = json_object_new_object();
                if (!o || !f || add_string(o, "type", "function") < 0 || add_string(f, "name", t->name) < 0 ||
                    (t->description && add_string(f, "description", t->description) < 0)) {
                        json_object_put(o);
                        json_object_put(f);
                        return -ENOMEM;
                }
                json_object *schema = t->input_schema ? json_object_get(t->input_schema) : json_object_new_object();
                if (json_add(f, "parameters", schema) < 0 || json_add(o, "function", f) < 0 ||
                    json_object_array_add(tools, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }

        json_object *choice = NULL;
        switch (conv->tool_choice) {
        case CONV_TOOL_CHOICE_NONE:
                choice = json_object_new_string("none");
                break;
        case CONV_TOOL_CHOICE_ANY:
                choice = json_object_new_string("required");
                break;
        case CONV_TOOL_CHOICE_TOOL: {
                json_object *f = json_object_new_object();
                choice = json_object_new_object();
                if (!f || !choice || add_string(f, "name", conv->tool_choice_name) < 0 ||
                    add_string(choice, "type", "function") < 0 || json_add(choice, "function", f) < 0) {
                        json_object_put(choice);
                        return -ENOMEM;
                }
                break;
        }
        default:
                choice = json_object_new_string("auto");
        }
        return json_add(body, "tool_choice", choice);
}

int kimi_request_build(const Conversation *conv, char **ret_body, size_t *ret_size, char **ret_error) {
        _cleanup_(json_object_putp) json_object *body = json_object_new_object();
        json_object *msgs = json_object_new_array();
        bool reasoning = kimi_model_reasons(conv);
        int r;

        if (!body || !msgs || json_add(body, "messages", msgs) < 0)
                return -ENOMEM;
        if (isempty(conv->model_id)) {
                if (ret_error)
                        *ret_error = strdup("No Kimi model given.");
                return -EINVAL;
        }
        if (add_string(body, "model", conv->model_id) < 0)
                return -ENOMEM;

        if (!isempty(conv->system)) {
                json_object *s = json_object_new_object();
                if (!s || add_string(s, "role", "system") < 0 || add_string(s, "content", conv->system) < 0 ||
                    json_object_array_add(msgs, s) < 0) {
                        json_object_put(s);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < conv->n_messages; i++) {
                const ConvMessage *m = &conv->messages[i];
                switch (m->role) {
                case CONV_ROLE_ASSISTANT:
                        r = add_assistant(msgs, m, reasoning);
                        break;
                case CONV_ROLE_USER:
                        r = add_user(msgs, m, "user");
                        break;
                default:
                        /* Kimi rejects "developer" (B §7): every other role is sent as system. */
                        r = add_user(msgs, m, "system");
                }
                if (r < 0)
                        return r;
        }
        if (json_object_array_length(msgs) == 0) {
                if (ret_error)
                        *ret_error = strdup("The conversation has no message Kimi can take.");
                return -EINVAL;
        }

        r = add_tools(body, conv);
        if (r < 0)
                return r;
        if (conv->max_tokens > 0 && json_add(body, "max_tokens", json_object_new_int64((int64_t) MIN(conv->max_tokens, (uint64_t) INT64_MAX))) < 0)
                return -ENOMEM;
        /* Reasoning models accept only temperature 1 ("only 1 is allowed", B §7): the client's value is
         * dropped rather than the request refused. */
        if (conv->has_temperature && !reasoning &&
            json_add(body, "temperature", json_object_new_double(conv->temperature)) < 0)
                return -ENOMEM;
        if (conv->has_top_p && !reasoning && json_add(body, "top_p", json_object_new_double(conv->top_p)) < 0)
                return -ENOMEM;
        if (conv->stop && conv->stop[0]) {
                json_object *stop = json_object_new_array();
                if (!stop || json_add(body, "stop", stop) < 0)
                        return -ENOMEM;
                STRV_FOREACH(s, conv->stop)
                        if (json_object_array_add(stop, json_object_new_string(*s)) < 0)
                                return -ENOMEM;
        }
        if (conv->thinking) {
                json_object *t = json_object_new_object();
                if (!t || add_string(t, "type", "enabled") < 0 || json_add(body, "thinking", t) < 0)
                        return -ENOMEM;
        }
        if (!isempty(conv->session_id) && add_string(body, "prompt_cache_key", conv->session_id) < 0)
                return -ENOMEM;
        /* Always streamed upstream; the front end renders one JSON body when the client did not stream. */
        json_object *so = json_object_new_object();
        if (json_add(body, "stream", json_object_new_boolean(true)) < 0 || !so ||
            json_add(so, "include_usage", json_object_new_boolean(true)) < 0 || json_add(body, "stream_options", so) < 0)
                return -ENOMEM;

        const char *s = json_object_to_json_string_ext(body, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        size_t n = strlen(s);
        char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        *ret_body = copy;
        *ret_size = n;
        return 0;
}
