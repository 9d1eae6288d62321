/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OpenAI chat completions request → conversation form. */
#include <assert.h>
#include <strings.h>

#include "json-util.h"
#include "chat/chat-models.h"
#include "api/api-openai.h"
#include "api/api-request.h"

static int text_of_content(json_object *content, const char *where, char **ret, Failure *err) {
        /* A string, or an array of {type:"text", text} parts (other part types are not text). */
        if (!content || json_object_is_type(content, json_type_null)) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        if (json_object_is_type(content, json_type_string)) {
                *ret = strdup(json_object_get_string(content));
                return *ret ? 0 : -ENOMEM;
        }
        if (!json_object_is_type(content, json_type_array))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be a string or an array of text parts",
                                     where);
        /* Joined in one pass (strcat() per part was quadratic in the number of parts: a body of many
         * tiny parts could hold the loop for minutes). */
        Buf b = {};
        for (size_t i = 0; i < json_object_array_length(content); i++) {
                const char *t;
                if (json_get_string(json_object_array_get_idx(content, i), "text", &t) < 0) {
                        buf_done(&b);
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                             "'%s[%zu]' must be a text part with a string 'text'", where, i);
                }
                if ((i > 0 && buf_puts(&b, "\n") < 0) || buf_puts(&b, t) < 0) {
                        buf_done(&b);
                        return -ENOMEM;
                }
        }
        *ret = b.data ?: strdup("");
        return *ret ? 0 : -ENOMEM;
}

static int parse_user_content(ConvMessage *m, json_object *content, const char *where, Failure *err) {
        int r;
        if (!content || json_object_is_type(content, json_type_null) || json_object_is_type(content, json_type_string))
                return conv_message_add_text(m, content ? strempty(json_object_get_string(content)) : "");
        if (!json_object_is_type(content, json_type_array))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be a string or an array of parts",
                                     where);
        size_t n = json_object_array_length(content);
        for (size_t i = 0; i < n; i++) {
                json_object *p = json_object_array_get_idx(content, i), *iu;
                const char *type, *s;
                char pw[128];
                snprintf(pw, sizeof pw, "%s[%zu]", where, i);
                if (json_get_string(p, "type", &type) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, pw, "'%s.type' must be a string", pw);
                if (streq(type, "text")) {
                        if (json_get_string(p, "text", &s) < 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, pw, "'%s.text' must be a string", pw);
                        r = conv_message_add_text(m, s);
                } else if (streq(type, "image_url")) {
                        if (json_get_object(p, "image_url", &iu) >= 0)
                                s = json_string_or_null(iu, "url");
                        else
                                s = json_string_or_null(p, "image_url");
                        if (!s)
                                return failure_set(err, FAILURE_INVALID_REQUEST, pw, "'%s.image_url.url' must be a string",
                                                     pw);
                        /* Refused here, where the client's message index is known (the Kiro request
                         * builder counts without the leading system messages). */
                        char uw[160];
                        snprintf(uw, sizeof uw, "%s.image_url.url", pw);
                        r = api_check_image(NULL, s, uw, err);
                        if (r < 0)
                                return r;
                        r = conv_message_add_image(m, NULL, s);
                } else
                        return failure_set(err, FAILURE_INVALID_REQUEST, pw,
                                             "'%s.type' '%s' is not supported (text and image_url are)", pw, type);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int parse_message(Conversation *c, json_object *msg, size_t idx, bool *in_system_prefix, Failure *err) {
        char where[64], cw[96];
        const char *role;
        json_object *content = NULL;
        ConvMessage *m;
        int r;

        snprintf(where, sizeof where, "messages[%zu]", idx);
        snprintf(cw, sizeof cw, "%s.content", where);
        if (!json_object_is_type(msg, json_type_object))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be an object", where);
        if (json_get_string(msg, "role", &role) < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s.role' must be a string", where);
        if (!STR_IN(role, "system", "developer", "user", "assistant", "tool", "function")) {
                char rw[80];
                snprintf(rw, sizeof rw, "%s.role", where);
                return failure_set(err, FAILURE_INVALID_REQUEST, rw,
                                   "'%s' '%s' is not a role (system, developer, user, assistant, tool and function are)",
                                   rw, role);
        }
        (void) json_object_object_get_ex(msg, "content", &content);

        if (streq(role, "system") || streq(role, "developer")) {
                _cleanup_free_ char *text = NULL;
                r = text_of_content(content, cw, &text, err);
                if (r < 0)
                        return r;
                if (*in_system_prefix) {
                        /* Leading system/developer messages are the system prompt. */
                        char *s = NULL;
                        if (asprintf(&s, "%s%s%s", strempty(c->system), c->system ? "\n\n" : "", text) < 0)
                                return -ENOMEM;
                        free(c->system);
                        c->system = s;
                        return 0;
                }
                r = conversation_add_message(c, CONV_ROLE_OTHER, &m);
                return r < 0 ? r : conv_message_add_text(m, text);
        }
        *in_system_prefix = false;

        if (streq(role, "user")) {
                r = conversation_add_message(c, CONV_ROLE_USER, &m);
                return r < 0 ? r : parse_user_content(m, content, cw, err);
        }

        if (streq(role, "tool") || streq(role, "function")) {
                const char *id;
                _cleanup_free_ char *text = NULL;
                if (json_get_string(msg, "tool_call_id", &id) < 0 && json_get_string(msg, "name", &id) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                             "'%s.tool_call_id' must be a string", where);
                r = text_of_content(content, cw, &text, err);
                if (r < 0)
                        return r;
                r = conversation_add_message(c, CONV_ROLE_USER, &m);
                return r < 0 ? r : conv_message_add_tool_result(m, id, text, false);
        }

        if (streq(role, "assistant")) {
                json_object *calls;
                const char *reasoning;
                _cleanup_free_ char *text = NULL;
                r = conversation_add_message(c, CONV_ROLE_ASSISTANT, &m);
                if (r < 0)
                        return r;
                if (json_get_string(msg, "reasoning_content", &reasoning) >= 0 && !isempty(reasoning)) {
                        r = conv_message_add_thinking(m, reasoning, NULL);
                        if (r < 0)
                                return r;
                }
                r = text_of_content(content, cw, &text, err);
                if (r < 0)
                        return r;
                if (!isempty(text)) {
                        r = conv_message_add_text(m, text);
                        if (r < 0)
                                return r;
                }
                r = json_get_array(msg, "tool_calls", &calls);
                if (r == -EMEDIUMTYPE)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s.tool_calls' must be an array", where);
                for (size_t i = 0; r >= 0 && i < json_object_array_length(calls); i++) {
                        json_object *tc = json_object_array_get_idx(calls, i), *fn;
                        const char *id, *name, *args = NULL;
                        char tw[128];
                        snprintf(tw, sizeof tw, "%s.tool_calls[%zu]", where, i);
                        if (json_get_string(tc, "id", &id) < 0 || json_get_object(tc, "function", &fn) < 0 ||
                            json_get_string(fn, "name", &name) < 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, tw,
                                                     "'%s' needs a string 'id' and 'function.name'", tw);
                        if (json_get_string(fn, "arguments", &args) == -EMEDIUMTYPE)
                                return failure_set(err, FAILURE_INVALID_REQUEST, tw,
                                                     "'%s.function.arguments' must be a JSON string", tw);
                        r = conv_message_add_tool_use(m, id, name, args);
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        assert(false);  /* every role was checked above */
        return -EINVAL;
}

static int parse_tools(Conversation *c, json_object *req, const ApiLimits *l, Failure *err) {
        json_object *tools, *choice;
        int r = json_get_array(req, "tools", &tools);
        if (r == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "tools", "'tools' must be an array");
        if (r >= 0) {
                r = api_check_limit("tools", "tools", json_object_array_length(tools), l->max_tools, "MaxTools", err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; r >= 0 && i < json_object_array_length(tools); i++) {
                json_object *t = json_object_array_get_idx(tools, i), *fn, *params = NULL;
                const char *name, *type, *desc = NULL;
                char w[64];
                snprintf(w, sizeof w, "tools[%zu]", i);
                if (json_get_string(t, "type", &type) >= 0 && !streq(type, "function"))
                        return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.type' must be 'function'", w);
                if (json_get_object(t, "function", &fn) < 0 || json_get_string(fn, "name", &name) < 0 || isempty(name))
                        return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.function.name' must be a non-empty string",
                                             w);
                (void) json_get_string(fn, "description", &desc);
                if (json_get_object(fn, "parameters", &params) == -EMEDIUMTYPE)
                        return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.function.parameters' must be an object",
                                             w);
                r = conversation_add_tool(c, name, desc, params);
                if (r < 0)
                        return r;
        }

        if (!json_object_object_get_ex(req, "tool_choice", &choice) || !choice)
                return 0;
        if (json_object_is_type(choice, json_type_string)) {
                const char *s = json_object_get_string(choice);
                if (streq(s, "auto"))
                        c->tool_choice = CONV_TOOL_CHOICE_AUTO;
                else if (streq(s, "none"))
                        c->tool_choice = CONV_TOOL_CHOICE_NONE;
                else if (streq(s, "required"))
                        c->tool_choice = CONV_TOOL_CHOICE_ANY;
                else
                        return failure_set(err, FAILURE_INVALID_REQUEST, "tool_choice",
                                             "'tool_choice' must be 'auto', 'none', 'required' or a function");
                return 0;
        }
        json_object *fn;
        const char *name;
        if (json_get_object(choice, "function", &fn) < 0 || json_get_string(fn, "name", &name) < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "tool_choice",
                                     "'tool_choice.function.name' must be a string");
        c->tool_choice = CONV_TOOL_CHOICE_TOOL;
        c->tool_choice_name = strdup(name);
        return c->tool_choice_name ? 0 : -ENOMEM;
}

int openai_parse_chat(const char *body, size_t size, const ApiLimits *l, Conversation **ret, OpenAIOptions *opts,
                      Failure *err) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        _cleanup_json_ json_object *req = NULL;
        json_object *messages, *v;
        const char *model, *s;
        bool thinking_alias = false;
        uint64_t n;
        ModelInfo info;
        int r;

        *opts = (OpenAIOptions) {};
        r = api_parse_body(body, size, l, API_PATH_BRACKETS, &req, err);
        if (r < 0)
                return r;
        r = api_get_string(req, "model", "model", &model, err);
        if (r < 0)
                return r;
        if (r == 0 || isempty(model))
                return failure_set(err, FAILURE_INVALID_REQUEST, "model", "'model' must be a non-empty string.");
        r = json_get_array(req, "messages", &messages);
        if (r < 0 || json_object_array_length(messages) == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "messages", "'messages' must be a non-empty array.");
        r = api_check_limit("messages", "messages", json_object_array_length(messages), l->max_messages, "MaxMessages", err);
        if (r < 0)
                return r;

        r = models_resolve(model, &info, &thinking_alias);
        if (r == -ENOENT) {
                failure_set(err, FAILURE_NOT_FOUND, "model",
                              "The model '%s' does not exist; GET /v1/models lists the available ones.", model);
                free(err->code);
                err->code = strdup("model_not_found");
                return -ENOENT;
        }
        if (r < 0)
                return r;

        r = conversation_new(&c);
        if (r < 0)
                return r;
        c->model = strdup(model);
        c->model_id = strdup(info.upstream_id);
        if (!c->model || !c->model_id)
                return -ENOMEM;
        opts->model = info;

        bool in_system_prefix = true;
        for (size_t i = 0; i < json_object_array_length(messages); i++) {
                r = parse_message(c, json_object_array_get_idx(messages, i), i, &in_system_prefix, err);
                if (r < 0)
                        return r;
        }
        /* System messages alone are a conversation (the builder adds the user turn Kiro needs); nothing
         * at all is not. */
        if (c->n_messages == 0 && isempty(c->system))
                return failure_set(err, FAILURE_INVALID_REQUEST, "messages",
                                   "'messages' holds no message with content.");
        r = api_check_content_parts(c, l, err);
        if (r < 0)
                return r;
        r = parse_tools(c, req, l, err);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(req, "stream", &v) && v) {
                if (!json_object_is_type(v, json_type_boolean))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "stream", "'stream' must be a boolean.");
                c->stream = json_object_get_boolean(v);
        }
        json_object *so;
        r = api_get_object(req, "stream_options", "stream_options", &so, err);
        if (r > 0) {
                r = api_get_bool(so, "include_usage", "stream_options.include_usage", &opts->include_usage, err);
                if (r >= 0)
                        r = api_get_bool(so, "include_obfuscation", "stream_options.include_obfuscation", &(bool) { false }, err);
        }
        if (r < 0)
                return r;
        r = api_get_integer(req, "n", "n", 0, API_MAX_TOKENS_MAX, &n, err);
        if (r < 0)
                return r;
        if (r > 0 && n != 1)
                return failure_set(err, FAILURE_INVALID_REQUEST, "n", "Only 'n': 1 is supported.");
        /* OpenAI's end-user id: the same user stays on one credential (Kiro's conversation continuity). */
        r = api_get_string(req, "user", "user", &s, err);
        if (r < 0)
                return r;
        r = api_set_affinity_key(c, s);
        if (r < 0)
                return r;
        r = api_get_integer(req, "max_completion_tokens", "max_completion_tokens", 1, API_MAX_TOKENS_MAX, &c->max_tokens, err);
        if (r == 0)
                r = api_get_integer(req, "max_tokens", "max_tokens", 1, API_MAX_TOKENS_MAX, &c->max_tokens, err);
        if (r < 0)
                return r;
        /* Kiro takes no sampling parameters, but OpenAI's ranges hold: a client gets the 400 it would get there. */
        r = api_get_number(req, "temperature", "temperature", 0, 2, &c->temperature, err);
        if (r < 0)
                return r;
        c->has_temperature = r > 0;
        r = api_get_number(req, "top_p", "top_p", 0, 1, &c->top_p, err);
        if (r < 0)
                return r;
        c->has_top_p = r > 0;
        if (json_object_object_get_ex(req, "stop", &v) && v) {
                if (json_object_is_type(v, json_type_string))
                        r = strv_extend(&c->stop, json_object_get_string(v));
                else if (json_object_is_type(v, json_type_array)) {
                        r = 0;
                        for (size_t i = 0; r >= 0 && i < json_object_array_length(v); i++) {
                                const char *ss = json_object_get_string(json_object_array_get_idx(v, i));
                                if (!json_object_is_type(json_object_array_get_idx(v, i), json_type_string))
                                        return failure_set(err, FAILURE_INVALID_REQUEST, "stop",
                                                             "'stop' must be a string or an array of strings.");
                                if (!isempty(ss))
                                        r = strv_extend(&c->stop, ss);
                        }
                } else
                        return failure_set(err, FAILURE_INVALID_REQUEST, "stop",
                                             "'stop' must be a string or an array of strings.");
                if (r < 0)
                        return r;
        }
        r = api_get_string(req, "reasoning_effort", "reasoning_effort", &s, err);
        if (r < 0)
                return r;
        if (r > 0 && !streq(s, "none")) {
                uint32_t budget;
                if (conv_thinking_budget_from_effort(s, &budget) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, "reasoning_effort",
                                           "'reasoning_effort' must be 'none', 'minimal', 'low', 'medium', 'high' or 'xhigh'.");
                c->thinking = true;
                c->thinking_budget = budget;
        }
        if (thinking_alias && !c->thinking) {
                c->thinking = true;
                c->thinking_budget = CONV_THINKING_BUDGET_DEFAULT;
        }

        *ret = TAKE_PTR(c);
        return 0;
}
