/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* OpenAI Responses request → conversation form. */
#include "json-util.h"
#include "chat/chat-models.h"
#include "api/api-responses.h"
#include "api/api-request.h"

#define WHERE_MAX 96

static bool strv_has(char **l, const char *s) {
        STRV_FOREACH(i, l)
                if (streq(*i, s))
                        return true;
        return false;
}

void responses_options_done(ResponsesOptions *o) {
        free(o->reasoning_effort);
        free(o->metadata);
        free(o->user);
        free(o->instructions);
        free(o->text_format);
        free(o->tool_choice);
        free(o->previous_response_id);
        free(o->input_items);
        *o = (ResponsesOptions) {};
}

static int dup_json(json_object *o, char **ret) {
        char *s = json_to_string_dup(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        free(*ret);
        *ret = s;
        return 0;
}

static int append_system(Conversation *c, const char *text) {
        char *s = NULL;
        if (isempty(text))
                return 0;
        if (asprintf(&s, "%s%s%s", strempty(c->system), c->system ? "\n\n" : "", text) < 0)
                return -ENOMEM;
        free(c->system);
        c->system = s;
        return 0;
}

/* The text of a message's content: a string, or input_text/output_text parts joined with newlines
 * (system and developer messages carry nothing else). */
static int content_text(json_object *content, const char *where, char **ret, Failure *err) {
        if (!content || json_object_is_type(content, json_type_null)) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        if (json_object_is_type(content, json_type_string)) {
                *ret = strdup(json_object_get_string(content));
                return *ret ? 0 : -ENOMEM;
        }
        if (!json_object_is_type(content, json_type_array))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be a string or an array of parts", where);
        _cleanup_(buf_done) Buf b = {};
        for (size_t i = 0; i < json_object_array_length(content); i++) {
                json_object *p = json_object_array_get_idx(content, i);
                const char *type = json_string_or_null(p, "type"), *t;
                if (!type || !STR_IN(type, "input_text", "output_text", "text", "summary_text", "reasoning_text") ||
                    json_get_string(p, "text", &t) < 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                           "'%s[%zu]' must be a text part (input_text or output_text) with a string 'text'",
                                           where, i);
                if ((b.size > 0 && buf_puts(&b, "\n") < 0) || buf_puts(&b, t) < 0)
                        return -ENOMEM;
        }
        *ret = b.data ? buf_steal(&b) : strdup("");
        return *ret ? 0 : -ENOMEM;
}

/* User (or other-role) content: text parts and images. */
static int add_user_content(ConvMessage *m, json_object *content, const char *where, Failure *err) {
        int r;
        if (!content || json_object_is_type(content, json_type_null) || json_object_is_type(content, json_type_string))
                return conv_message_add_text(m, content ? strempty(json_object_get_string(content)) : "");
        if (!json_object_is_type(content, json_type_array))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be a string or an array of parts", where);
        for (size_t i = 0; i < json_object_array_length(content); i++) {
                json_object *p = json_object_array_get_idx(content, i);
                const char *type = json_string_or_null(p, "type"), *s;
                char pw[WHERE_MAX + 64];
                snprintf(pw, sizeof pw, "%s[%zu]", where, i);
                if (!type)
                        return failure_set(err, FAILURE_INVALID_REQUEST, pw, "'%s.type' must be a string", pw);
                if (STR_IN(type, "input_text", "output_text", "text")) {
                        r = api_get_string(p, "text", pw, &s, err);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, pw, "'%s.text' must be a string", pw);
                        r = conv_message_add_text(m, s);
                } else if (streq(type, "input_image")) {
                        json_object *u = NULL;
                        (void) json_object_object_get_ex(p, "image_url", &u);
                        if (u && json_object_is_type(u, json_type_object))
                                u = json_object_object_get_ex(u, "url", &u) ? u : NULL;
                        if (!u || !json_object_is_type(u, json_type_string))
                                return failure_set(err, FAILURE_INVALID_REQUEST, pw,
                                                   "'%s.image_url' must be a base64 data: URL (file_id is not supported)", pw);
                        s = json_object_get_string(u);
                        if (!startswith(s, "data:"))
                                return failure_set(err, FAILURE_INVALID_REQUEST, pw,
                                                   "'%s.image_url': image URLs are not supported; send the image inline "
                                                   "as a base64 data: URL", pw);
                        r = api_check_image(NULL, s, pw, err);
                        if (r < 0)
                                return r;
                        r = conv_message_add_image(m, NULL, s);
                } else
                        return failure_set(err, FAILURE_INVALID_REQUEST, pw,
                                           "'%s.type' '%s' is not supported (input_text and input_image are)", pw, type);
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct ParseState {
        bool in_system_prefix;
        char **call_ids;                /* function_call ids seen so far */
} ParseState;

/* The assistant message the next reasoning / function_call / output item joins: the last message when it
 * is an assistant turn, else a new one. */
static int assistant_turn(Conversation *c, ConvMessage **ret) {
        if (c->n_messages > 0 && c->messages[c->n_messages - 1].role == CONV_ROLE_ASSISTANT) {
                *ret = c->messages + c->n_messages - 1;
                return 0;
        }
        return conversation_add_message(c, CONV_ROLE_ASSISTANT, ret);
}

/* Tool results join the last user turn when it holds only tool results (one turn answers all parallel
 * calls), else start one. */
static int tool_result_turn(Conversation *c, ConvMessage **ret) {
        if (c->n_messages > 0) {
                ConvMessage *m = c->messages + c->n_messages - 1;
                bool only_results = m->role == CONV_ROLE_USER && m->n_parts > 0;
                for (size_t i = 0; only_results && i < m->n_parts; i++)
                        only_results = m->parts[i].type == CONV_PART_TOOL_RESULT;
                if (only_results) {
                        *ret = m;
                        return 0;
                }
        }
        return conversation_add_message(c, CONV_ROLE_USER, ret);
}

static int parse_message_item(Conversation *c, ParseState *ps, json_object *item, const char *where, Failure *err) {
        char cw[WHERE_MAX + 16];
        const char *role;
        json_object *content = NULL;
        ConvMessage *m;
        int r;

        snprintf(cw, sizeof cw, "%s.content", where);
        r = api_get_string(item, "role", where, &role, err);
        if (r < 0)
                return r;
        if (r == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s.role' must be a string", where);
        (void) json_object_object_get_ex(item, "content", &content);

        if (STR_IN(role, "system", "developer")) {
                _cleanup_free_ char *text = NULL;
                r = content_text(content, cw, &text, err);
                if (r < 0)
                        return r;
                if (ps->in_system_prefix)
                        return append_system(c, text);
                r = conversation_add_message(c, CONV_ROLE_OTHER, &m);
                return r < 0 ? r : conv_message_add_text(m, text);
        }
        ps->in_system_prefix = false;
        if (streq(role, "user")) {
                r = conversation_add_message(c, CONV_ROLE_USER, &m);
                return r < 0 ? r : add_user_content(m, content, cw, err);
        }
        if (streq(role, "assistant")) {
                _cleanup_free_ char *text = NULL;
                r = content_text(content, cw, &text, err);
                if (r < 0)
                        return r;
                r = assistant_turn(c, &m);
                if (r >= 0 && !isempty(text))
                        r = conv_message_add_text(m, text);
                return r;
        }
        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                           "'%s.role' '%s' is not supported (user, assistant, system and developer are)", where, role);
}

static int parse_item(Conversation *c, ParseState *ps, json_object *item, size_t idx, Failure *err) {
        char where[WHERE_MAX];
        const char *type, *s, *id, *name;
        ConvMessage *m;
        int r;

        snprintf(where, sizeof where, "input[%zu]", idx);
        if (!json_object_is_type(item, json_type_object))
                return failure_set(err, FAILURE_INVALID_REQUEST, where, "'%s' must be an object", where);
        r = api_get_string(item, "type", where, &type, err);
        if (r < 0)
                return r;
        if (r == 0 || streq(type, "message")) /* EasyInputMessage has no type */
                return parse_message_item(c, ps, item, where, err);
        ps->in_system_prefix = false;

        if (streq(type, "function_call")) {
                const char *args = NULL;
                if (api_get_string(item, "call_id", where, &id, err) <= 0 || isempty(id) ||
                    api_get_string(item, "name", where, &name, err) <= 0 || isempty(name))
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                           "'%s' (function_call) needs non-empty string 'call_id' and 'name'", where);
                r = api_get_string(item, "arguments", where, &args, err);
                if (r < 0)
                        return r;
                r = strv_extend(&ps->call_ids, id);
                if (r >= 0)
                        r = assistant_turn(c, &m);
                return r < 0 ? r : conv_message_add_tool_use(m, id, name, args);
        }
        if (streq(type, "function_call_output")) {
                json_object *out = NULL;
                _cleanup_free_ char *text = NULL;
                char ow[WHERE_MAX + 16];
                snprintf(ow, sizeof ow, "%s.output", where);
                if (api_get_string(item, "call_id", where, &id, err) <= 0 || isempty(id))
                        return failure_set(err, FAILURE_INVALID_REQUEST, where,
                                           "'%s' (function_call_output) needs a non-empty string 'call_id'", where);
                if (!strv_has(ps->call_ids, id)) {
                        char iw[WHERE_MAX + 16];
                        snprintf(iw, sizeof iw, "%s.call_id", where);
                        return failure_set(err, FAILURE_INVALID_REQUEST, iw,
                                           "'%s': no function_call with call_id '%s' comes before this output", iw, id);
                }
                (void) json_object_object_get_ex(item, "output", &out);
                r = content_text(out, ow, &text, err);
                if (r < 0)
                        return r;
                r = tool_result_turn(c, &m);
                return r < 0 ? r : conv_message_add_tool_result(m, id, text, false);
        }
        if (streq(type, "reasoning")) {
                /* Replayed as thinking: the summary text (and the full text when the client kept it); the
                 * signature Kiro gave travels as encrypted_content. */
                json_object *summary = NULL, *content = NULL;
                _cleanup_free_ char *a = NULL, *b = NULL;
                char sw[WHERE_MAX + 16];
                (void) json_object_object_get_ex(item, "summary", &summary);
                (void) json_object_object_get_ex(item, "content", &content);
                snprintf(sw, sizeof sw, "%s.summary", where);
                r = content_text(summary, sw, &a, err);
                if (r < 0)
                        return r;
                snprintf(sw, sizeof sw, "%s.content", where);
                r = content_text(content, sw, &b, err);
                if (r < 0)
                        return r;
                r = api_get_string(item, "encrypted_content", where, &s, err);
                if (r < 0)
                        return r;
                const char *text = !isempty(b) ? b : a;
                if (isempty(text))
                        return 0;
                r = assistant_turn(c, &m);
                return r < 0 ? r : conv_message_add_thinking(m, text, startswith(strempty(s), "kirod.") ? NULL : s);
        }
        char tw[WHERE_MAX + 16];
        snprintf(tw, sizeof tw, "%s.type", where);
        return failure_set(err, FAILURE_INVALID_REQUEST, tw,
                           "'%s' '%s' is not supported (message, function_call, function_call_output and reasoning are)",
                           tw, type);
}

static int add_function_tool(Conversation *c, json_object *t, const char *w, Failure *err) {
        json_object *params = NULL;
        const char *name, *desc = NULL, *type = json_string_or_null(t, "type");
        if (!type)
                return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.type' must be a string", w);
        if (!streq(type, "function"))
                return failure_set(err, FAILURE_INVALID_REQUEST, w,
                                   "'%s': the built-in tool '%s' is not available through kiro-proxyd; only tools of type "
                                   "'function' are supported", w, type);
        if (json_get_string(t, "name", &name) < 0 || isempty(name))
                return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.name' must be a non-empty string", w);
        (void) json_get_string(t, "description", &desc);
        if (json_get_object(t, "parameters", &params) == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.parameters' must be an object", w);
        return conversation_add_tool(c, name, desc, params);
}

static int parse_tools(Conversation *c, json_object *req, const ApiLimits *l, ResponsesOptions *opts, Failure *err) {
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
                json_object *t = json_object_array_get_idx(tools, i), *inner;
                char w[64];
                snprintf(w, sizeof w, "tools[%zu]", i);
                const char *type = json_string_or_null(t, "type");
                if (streq_ptr(type, "namespace")) {
                        /* A group of function tools (Codex sends its sub-agent tools so): offered under their
                         * own names. */
                        if (json_get_array(t, "tools", &inner) < 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, w, "'%s.tools' must be an array", w);
                        for (size_t k = 0; r >= 0 && k < json_object_array_length(inner); k++) {
                                char wk[96];
                                snprintf(wk, sizeof wk, "%s.tools[%zu]", w, k);
                                r = add_function_tool(c, json_object_array_get_idx(inner, k), wk, err);
                        }
                } else
                        r = add_function_tool(c, t, w, err);
                if (r < 0)
                        return r;
        }
        r = api_check_limit("tools", "tools", c->n_tools, l->max_tools, "MaxTools", err);
        if (r < 0)
                return r;

        if (!json_object_object_get_ex(req, "tool_choice", &choice) || !choice)
                return 0;
        r = dup_json(choice, &opts->tool_choice);
        if (r < 0)
                return r;
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
                                           "'tool_choice' must be 'auto', 'none', 'required' or {\"type\":\"function\",\"name\":…}");
                return 0;
        }
        const char *type = json_string_or_null(choice, "type"), *name;
        if (!streq_ptr(type, "function") || json_get_string(choice, "name", &name) < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "tool_choice",
                                   "'tool_choice' must be 'auto', 'none', 'required' or {\"type\":\"function\",\"name\":…}");
        c->tool_choice = CONV_TOOL_CHOICE_TOOL;
        c->tool_choice_name = strdup(name);
        return c->tool_choice_name ? 0 : -ENOMEM;
}

/* text.format: json_object and json_schema become an instruction in the system prompt (Kiro has no
 * structured output mode; the answer is not validated against the schema). */
static int parse_text_format(Conversation *c, json_object *req, ResponsesOptions *opts, Failure *err) {
        json_object *text, *format, *schema;
        const char *type, *name;
        int r = json_get_object(req, "text", &text);
        if (r == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "text", "'text' must be an object");
        if (r < 0)
                return 0;
        r = json_get_object(text, "format", &format);
        if (r == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "text.format", "'text.format' must be an object");
        if (r < 0)
                return 0;
        r = dup_json(format, &opts->text_format);
        if (r < 0)
                return r;
        type = json_string_or_null(format, "type");
        if (streq_ptr(type, "text"))
                return 0;
        if (streq_ptr(type, "json_object"))
                return append_system(c, "Answer with a single valid JSON object and nothing else: no prose, no "
                                        "Markdown code fences.");
        if (!streq_ptr(type, "json_schema"))
                return failure_set(err, FAILURE_INVALID_REQUEST, "text.format.type",
                                   "'text.format.type' must be 'text', 'json_object' or 'json_schema'");
        if (json_get_string(format, "name", &name) < 0 || isempty(name))
                return failure_set(err, FAILURE_INVALID_REQUEST, "text.format.name",
                                   "'text.format.name' must be a non-empty string");
        if (json_get_object(format, "schema", &schema) < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "text.format.schema",
                                   "'text.format.schema' must be a JSON Schema object");
        const char *st = json_string_or_null(schema, "type");
        json_object *v;
        if (!st && !json_object_object_get_ex(schema, "properties", &v) && !json_object_object_get_ex(schema, "anyOf", &v) &&
            !json_object_object_get_ex(schema, "$ref", &v))
                return failure_set(err, FAILURE_INVALID_REQUEST, "text.format.schema",
                                   "'text.format.schema' is not a JSON Schema: it has no 'type', 'properties', 'anyOf' or '$ref'");
        _cleanup_free_ char *instr = NULL;
        if (asprintf(&instr,
                     "Answer with a single valid JSON value and nothing else (no prose, no Markdown code fences) that "
                     "conforms to this JSON Schema, named \"%s\":\n%s",
                     name, json_object_to_json_string_ext(schema, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
                return -ENOMEM;
        return append_system(c, instr);
}

/* The input items of a request that continues a stored response: the stored chain, then its own input. */
static int chain_input(ResponsesStore *store, const char *prev, json_object *input, const ApiLimits *l,
                       json_object **ret, Failure *err) {
        _cleanup_json_ json_object *stored = NULL, *all = NULL;
        const char *items;
        int r;

        if (!store)
                return failure_set(err, FAILURE_INVALID_REQUEST, "previous_response_id",
                                   "'previous_response_id' '%s' is unknown: this kiro-proxyd keeps no responses "
                                   "(ResponsesStoreMax=0); send the whole conversation in 'input'.", prev);
        r = responses_store_get(store, prev, &items);
        if (r == -ESTALE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "previous_response_id",
                                   "'previous_response_id' '%s' has expired (ResponsesStoreSec=); send the whole "
                                   "conversation in 'input'.", prev);
        if (r < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "previous_response_id",
                                   "'previous_response_id' '%s' is unknown: only responses created with \"store\": true "
                                   "are kept, in memory, for a bounded time (ResponsesStoreSec=) and number "
                                   "(ResponsesStoreMax=).", prev);
        r = json_parse_bounded(items, strlen(items), (int) l->max_json_depth + 2, &stored, NULL);
        if (r < 0 || !json_object_is_type(stored, json_type_array))
                return r < 0 ? r : -EINVAL;
        all = json_object_new_array();
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(stored); i++)
                if (json_object_array_add(all, json_object_get(json_object_array_get_idx(stored, i))) < 0)
                        return -ENOMEM;
        if (json_object_is_type(input, json_type_string)) {
                json_object *m = json_object_new_object();
                if (!m || json_add(m, "role", json_object_new_string("user")) < 0 ||
                    json_add(m, "content", json_object_get(input)) < 0 || json_object_array_add(all, m) < 0) {
                        json_object_put(m);
                        return -ENOMEM;
                }
        } else
                for (size_t i = 0; i < json_object_array_length(input); i++)
                        if (json_object_array_add(all, json_object_get(json_object_array_get_idx(input, i))) < 0)
                                return -ENOMEM;
        *ret = TAKE_PTR(all);
        return 0;
}

int responses_parse(const char *body, size_t size, const ApiLimits *l, ResponsesStore *store, Conversation **ret,
                    ResponsesOptions *opts, Failure *err) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        _cleanup_json_ json_object *req = NULL, *chained = NULL;
        const char *prev = NULL;
        _cleanup_strv_free_ char **call_ids = NULL;
        json_object *input = NULL, *v;
        const char *model, *s;
        bool thinking_alias = false;
        uint64_t n;
        ModelInfo info;
        int r;

        *opts = (ResponsesOptions) { .store = true, .parallel_tool_calls = true };
        r = api_parse_body(body, size, l, API_PATH_BRACKETS, &req, err);
        if (r < 0)
                return r;
        r = api_get_string(req, "model", "model", &model, err);
        if (r < 0)
                return r;
        if (r == 0 || isempty(model))
                return failure_set(err, FAILURE_INVALID_REQUEST, "model", "'model' must be a non-empty string.");

        r = api_get_string(req, "previous_response_id", "previous_response_id", &prev, err);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(req, "conversation", &v) && v)
                return failure_set(err, FAILURE_INVALID_REQUEST, "conversation",
                                   "'conversation' is not supported: kiro-proxyd keeps no conversations; send the whole "
                                   "conversation in 'input'.");
        r = api_get_integer(req, "n", "n", 0, API_MAX_TOKENS_MAX, &n, err);
        if (r < 0)
                return r;
        if (r > 0 && n != 1)
                return failure_set(err, FAILURE_INVALID_REQUEST, "n", "Only 'n': 1 is supported.");

        if (!json_object_object_get_ex(req, "input", &input) || !input ||
            !(json_object_is_type(input, json_type_string) ||
              (json_object_is_type(input, json_type_array) && json_object_array_length(input) > 0)))
                return failure_set(err, FAILURE_INVALID_REQUEST, "input",
                                   "'input' must be a string or a non-empty array of input items.");
        if (json_object_object_get_ex(req, "store", &v) && v) {
                if (!json_object_is_type(v, json_type_boolean))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "store", "'store' must be a boolean.");
                opts->store = json_object_get_boolean(v);
        }
        if (prev) {
                r = chain_input(store, prev, input, l, &chained, err);
                if (r < 0)
                        return r;
                input = chained;
                if (!(opts->previous_response_id = strdup(prev)))
                        return -ENOMEM;
        }
        if (opts->store && store) {
                /* What a later request's previous_response_id continues: this whole input. */
                if (json_object_is_type(input, json_type_string))
                        r = asprintf(&opts->input_items, "[{\"role\":\"user\",\"content\":%s}]",
                                     json_object_to_json_string_ext(input, JSON_C_TO_STRING_PLAIN)) < 0 ? -ENOMEM : 0;
                else
                        r = dup_json(input, &opts->input_items);
                if (r < 0)
                        return r;
        }
        if (json_object_is_type(input, json_type_array)) {
                r = api_check_limit("input", "input items", json_object_array_length(input), l->max_messages,
                                    "MaxMessages", err);
                if (r < 0)
                        return r;
        }

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
        opts->model = info;

        r = conversation_new(&c);
        if (r < 0)
                return r;
        c->model = strdup(model);
        c->model_id = strdup(info.upstream_id);
        if (!c->model || !c->model_id)
                return -ENOMEM;

        r = api_get_string(req, "instructions", "instructions", &s, err);
        if (r < 0)
                return r;
        if (r > 0) {
                opts->instructions = strdup(s);
                if (!opts->instructions)
                        return -ENOMEM;
                r = append_system(c, s);
                if (r < 0)
                        return r;
        }

        if (json_object_is_type(input, json_type_string)) {
                ConvMessage *m;
                r = conversation_add_message(c, CONV_ROLE_USER, &m);
                if (r >= 0)
                        r = conv_message_add_text(m, json_object_get_string(input));
                if (r < 0)
                        return r;
        } else {
                ParseState ps = { .in_system_prefix = true };
                for (size_t i = 0; i < json_object_array_length(input); i++) {
                        r = parse_item(c, &ps, json_object_array_get_idx(input, i), i, err);
                        if (r < 0) {
                                strv_free(ps.call_ids);
                                return r;
                        }
                }
                call_ids = ps.call_ids;
        }
        if (c->n_messages == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, "input", "'input' holds no message.");
        r = api_check_content_parts(c, l, err);
        if (r < 0)
                return r;
        r = parse_tools(c, req, l, opts, err);
        if (r < 0)
                return r;
        r = parse_text_format(c, req, opts, err);
        if (r < 0)
                return r;

        if (json_object_object_get_ex(req, "stream", &v) && v) {
                if (!json_object_is_type(v, json_type_boolean))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "stream", "'stream' must be a boolean.");
                c->stream = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(req, "parallel_tool_calls", &v) && v) {
                if (!json_object_is_type(v, json_type_boolean))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "parallel_tool_calls",
                                           "'parallel_tool_calls' must be a boolean.");
                opts->parallel_tool_calls = json_object_get_boolean(v);
        }
        if (json_object_object_get_ex(req, "metadata", &v) && v) {
                if (!json_object_is_type(v, json_type_object))
                        return failure_set(err, FAILURE_INVALID_REQUEST, "metadata", "'metadata' must be an object.");
                json_object_object_foreach(v, key, val) {
                        if (!json_object_is_type(val, json_type_string))
                                return failure_set(err, FAILURE_INVALID_REQUEST, "metadata",
                                                   "'metadata.%s' must be a string.", key);
                }
                r = dup_json(v, &opts->metadata);
                if (r < 0)
                        return r;
        }
        r = api_get_string(req, "user", "user", &s, err);
        if (r < 0)
                return r;
        if (r > 0 && !(opts->user = strdup(s)))
                return -ENOMEM;
        r = api_set_affinity_key(c, s);
        if (r < 0)
                return r;
        r = api_get_integer(req, "max_output_tokens", "max_output_tokens", 1, API_MAX_TOKENS_MAX, &c->max_tokens, err);
        if (r < 0)
                return r;
        /* Kiro takes no sampling parameters, but OpenAI's ranges hold. */
        r = api_get_number(req, "temperature", "temperature", 0, 2, &c->temperature, err);
        if (r < 0)
                return r;
        c->has_temperature = r > 0;
        r = api_get_number(req, "top_p", "top_p", 0, 1, &c->top_p, err);
        if (r < 0)
                return r;
        c->has_top_p = r > 0;

        json_object *reasoning;
        r = json_get_object(req, "reasoning", &reasoning);
        if (r == -EMEDIUMTYPE)
                return failure_set(err, FAILURE_INVALID_REQUEST, "reasoning", "'reasoning' must be an object.");
        if (r >= 0) {
                r = api_get_string(reasoning, "summary", "reasoning.summary", &s, err);
                if (r < 0)
                        return r;
                r = api_get_string(reasoning, "effort", "reasoning.effort", &s, err);
                if (r < 0)
                        return r;
                if (r > 0 && !streq(s, "none")) {
                        uint32_t budget;
                        if (conv_thinking_budget_from_effort(s, &budget) < 0)
                                return failure_set(err, FAILURE_INVALID_REQUEST, "reasoning.effort",
                                                   "'reasoning.effort' must be 'none', 'minimal', 'low', 'medium' or 'high'.");
                        c->thinking = true;
                        c->thinking_budget = budget;
                }
                if (r > 0 && !(opts->reasoning_effort = strdup(s)))
                        return -ENOMEM;
        }
        if (thinking_alias && !c->thinking) {
                c->thinking = true;
                c->thinking_budget = CONV_THINKING_BUDGET_DEFAULT;
        }

        *ret = TAKE_PTR(c);
        return 0;
}
