/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The normalized conversation → Kiro's generateAssistantResponse JSON body (KIRO-PROTOCOL A.3–A.5),
 * history trimming to the payload limit, and the conversationId. */
#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <systemd/sd-id128.h>

#include "buf.h"
#include "hash-util.h"
#include "kiro/kiro-normalize.h"
#include "kiro/kiro-request.h"

#define TOOL_INPUT_DEPTH_MAX 64
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(s));
}

static int json_append(json_object *a, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

_printf_(3, 4)
static int fail(char **ret_error, int error, const char *fmt, ...) {
        va_list ap;

        assert(error < 0);
        if (!ret_error)
                return error;
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return error;
}

static bool is_uuid(const char *s) {
        if (strlen(s) != 36)
                return false;
        for (size_t i = 0; i < 36; i++)
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char) s[i]))
                        return false;
        return true;
}

int kiro_uuid4(char ret[static SD_ID128_UUID_STRING_MAX]) {
        sd_id128_t id;
        /* Version 4 and the RFC 4122 variant are set by sd_id128_randomize(). */
        int r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        (void) sd_id128_to_uuid_string(id, ret);
        return 0;
}

int kiro_conversation_id_from_session(const char *session_id, char ret[static SD_ID128_UUID_STRING_MAX]) {
        uint8_t d[SHA256_DIGEST_SIZE];
        sd_id128_t id;
        int r;

        assert(session_id);

        if (is_uuid(session_id)) {
                for (size_t i = 0; i <= 36; i++)
                        ret[i] = (char) tolower((unsigned char) session_id[i]);
                return 0;
        }
        r = sha256(session_id, strlen(session_id), d);
        if (r < 0)
                return r;
        memcpy(id.bytes, d, sizeof id.bytes);
        /* Marked as a random (version 4) UUID: the digest is as good as random. */
        id.bytes[6] = (id.bytes[6] & 0x0F) | 0x40;
        id.bytes[8] = (id.bytes[8] & 0x3F) | 0x80;
        (void) sd_id128_to_uuid_string(id, ret);
        return 0;
}

KiroRequest *kiro_request_free(KiroRequest *r) {
        if (!r)
                return NULL;
        free(r->body);
        free(r->conversation_id);
        kiro_tool_aliases_done(&r->tool_aliases);
        free(r);
        return NULL;
}

/* ---- serialization ------------------------------------------------------------------------------ */

/* Text parts joined by blank lines; for an assistant with thinking (A.5):
 * "<thinking>{t}</thinking>\n\n{text}". */
static int message_content(const KiroConversation *k, const KiroMessage *m, char **ret) {
        _cleanup_(buf_done) Buf text = {}, thinking = {};
        int r;

        for (size_t j = 0; j < m->n_parts; j++) {
                const KiroPart *p = m->parts + j;

                if (!kiro_part_is_content(k, m, p))
                        continue;
                r = buf_join(p->type == CONV_PART_THINKING ? &thinking : &text, "\n\n", p->text);
                if (r < 0)
                        return r;
        }
        if (thinking.size > 0) {
                _cleanup_(buf_done) Buf out = {};

                if (buf_puts(&out, "<thinking>") < 0 ||
                    buf_puts(&out, thinking.data) < 0 ||
                    buf_puts(&out, "</thinking>") < 0 ||
                    (text.size > 0 && (buf_puts(&out, "\n\n") < 0 || buf_puts(&out, text.data) < 0)))
                        return -ENOMEM;
                *ret = buf_steal(&out);
        } else
                *ret = buf_steal(&text);
        return *ret ? 0 : -ENOMEM;
}

static int tool_spec_json(const KiroTool *t, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *spec = NULL, *schema = NULL;
        int r;

        o = json_object_new_object();
        spec = json_object_new_object();
        schema = json_object_new_object();
        if (!o || !spec || !schema)
                return -ENOMEM;
        r = json_add(schema, "json", json_object_get(t->schema));
        if (r < 0)
                return r;
        if (json_add_string(spec, "name", t->name) < 0 ||
            json_add_string(spec, "description", t->description) < 0 ||
            json_add(spec, "inputSchema", TAKE_PTR(schema)) < 0 ||
            json_add(o, "toolSpecification", TAKE_PTR(spec)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int tool_result_json(const KiroPart *p, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *content = NULL, *item = NULL;

        o = json_object_new_object();
        content = json_object_new_array();
        item = json_object_new_object();
        if (!o || !content || !item)
                return -ENOMEM;
        if (json_add_string(item, "text", kiro_text_is_blank(p->text) ? KIRO_PLACEHOLDER_EMPTY : p->text) < 0 ||
            json_append(content, TAKE_PTR(item)) < 0 ||
            json_add_string(o, "toolUseId", p->id) < 0 ||
            json_add(o, "content", TAKE_PTR(content)) < 0 ||
            json_add_string(o, "status", p->is_error ? "error" : "success") < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int tool_use_json(KiroConversation *k, const KiroPart *p, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *input = NULL;
        const char *name;
        int r;

        /* Arguments that are not a JSON object (a model's earlier garbage, echoed back by the client)
         * become {}: the history stays usable. */
        if (!kiro_text_is_blank(p->input) &&
            json_parse_bounded(p->input, strlen(p->input), TOOL_INPUT_DEPTH_MAX, &input, NULL) >= 0 &&
            !json_object_is_type(input, json_type_object)) {
                json_object_put(input);
                input = NULL;
        }
        if (!input) {
                input = json_object_new_object();
                if (!input)
                        return -ENOMEM;
        }

        /* Rule 10 for names in the history. */
        r = kiro_tool_aliases_get(&k->aliases, p->name, &name);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (json_add_string(o, "toolUseId", p->id) < 0 ||
            json_add_string(o, "name", name) < 0 ||
            json_add(o, "input", TAKE_PTR(input)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int user_message_json(KiroConversation *k, const KiroMessage *m, bool current, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *images = NULL, *ctx = NULL, *tools = NULL,
                *results = NULL;
        _cleanup_free_ char *content = NULL;
        int r;

        r = message_content(k, m, &content);
        if (r < 0)
                return r;

        o = json_object_new_object();
        images = json_object_new_array();
        ctx = json_object_new_object();
        tools = json_object_new_array();
        results = json_object_new_array();
        if (!o || !images || !ctx || !tools || !results)
                return -ENOMEM;

        if (json_add_string(o, "content", content) < 0 ||
            json_add_string(o, "modelId", k->conv->model_id) < 0 ||
            json_add_string(o, "origin", KIRO_ORIGIN) < 0)
                return -ENOMEM;

        for (size_t j = 0; j < m->n_parts; j++) {
                const KiroPart *p = m->parts + j;
                _cleanup_(json_object_putp) json_object *v = NULL;

                if (p->dropped)
                        continue;
                if (p->type == CONV_PART_IMAGE) {
                        _cleanup_(json_object_putp) json_object *source = NULL;

                        v = json_object_new_object();
                        source = json_object_new_object();
                        if (!v || !source ||
                            json_add_string(v, "format", p->format) < 0 ||
                            json_add_string(source, "bytes", p->bytes) < 0 ||
                            json_add(v, "source", TAKE_PTR(source)) < 0 ||
                            json_append(images, TAKE_PTR(v)) < 0)
                                return -ENOMEM;
                } else if (p->type == CONV_PART_TOOL_RESULT) {
                        r = tool_result_json(p, &v);
                        if (r < 0)
                                return r;
                        r = json_append(results, TAKE_PTR(v));
                        if (r < 0)
                                return r;
                }
        }

        if (current)
                for (size_t i = 0; i < k->n_tools; i++) {
                        json_object *v;

                        r = tool_spec_json(k->tools + i, &v);
                        if (r < 0)
                                return r;
                        r = json_append(tools, v);
                        if (r < 0)
                                return r;
                }

        if (json_object_array_length(images) > 0 && json_add(o, "images", TAKE_PTR(images)) < 0)
                return -ENOMEM;
        if (json_object_array_length(tools) > 0 && json_add(ctx, "tools", TAKE_PTR(tools)) < 0)
                return -ENOMEM;
        if (json_object_array_length(results) > 0 && json_add(ctx, "toolResults", TAKE_PTR(results)) < 0)
                return -ENOMEM;
        if (json_object_object_length(ctx) > 0 && json_add(o, "userInputMessageContext", TAKE_PTR(ctx)) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(o);
        return 0;
}

static int assistant_message_json(KiroConversation *k, const KiroMessage *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *arm = NULL, *uses = NULL;
        _cleanup_free_ char *content = NULL;
        int r;

        r = message_content(k, m, &content);
        if (r < 0)
                return r;

        o = json_object_new_object();
        arm = json_object_new_object();
        uses = json_object_new_array();
        if (!o || !arm || !uses)
                return -ENOMEM;
        r = json_add_string(arm, "content", content);
        if (r < 0)
                return r;
        for (size_t j = 0; j < m->n_parts; j++) {
                const KiroPart *p = m->parts + j;
                json_object *v;

                if (p->type != CONV_PART_TOOL_USE || p->dropped)
                        continue;
                r = tool_use_json(k, p, &v);
                if (r < 0)
                        return r;
                r = json_append(uses, v);
                if (r < 0)
                        return r;
        }
        if (json_object_array_length(uses) > 0 && json_add(arm, "toolUses", TAKE_PTR(uses)) < 0)
                return -ENOMEM;
        if (json_add(o, "assistantResponseMessage", TAKE_PTR(arm)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int request_body(KiroConversation *k, const char *conversation_id, const char *profile_arn, json_object **ret) {
        _cleanup_(json_object_putp) json_object *root = NULL, *state = NULL, *current = NULL, *history = NULL;
        json_object *v;
        int r;

        root = json_object_new_object();
        state = json_object_new_object();
        current = json_object_new_object();
        history = json_object_new_array();
        if (!root || !state || !current || !history)
                return -ENOMEM;

        for (size_t i = 0; i + 1 < k->n_messages; i++) {
                const KiroMessage *m = k->messages + i;

                if (m->role == CONV_ROLE_USER) {
                        _cleanup_(json_object_putp) json_object *u = NULL;

                        r = user_message_json(k, m, false, &u);
                        if (r < 0)
                                return r;
                        v = json_object_new_object();
                        if (!v)
                                return -ENOMEM;
                        r = json_add(v, "userInputMessage", TAKE_PTR(u));
                        if (r < 0) {
                                json_object_put(v);
                                return r;
                        }
                } else {
                        r = assistant_message_json(k, m, &v);
                        if (r < 0)
                                return r;
                }
                r = json_append(history, v);
                if (r < 0)
                        return r;
        }

        assert(k->messages[k->n_messages - 1].role == CONV_ROLE_USER);
        r = user_message_json(k, k->messages + k->n_messages - 1, true, &v);
        if (r < 0)
                return r;
        r = json_add(current, "userInputMessage", v);
        if (r < 0)
                return r;

        if (json_add_string(state, "chatTriggerType", "MANUAL") < 0 ||
            json_add_string(state, "conversationId", conversation_id) < 0 ||
            json_add(state, "currentMessage", TAKE_PTR(current)) < 0)
                return -ENOMEM;
        if (json_object_array_length(history) > 0 && json_add(state, "history", TAKE_PTR(history)) < 0)
                return -ENOMEM;
        if (json_add(root, "conversationState", TAKE_PTR(state)) < 0)
                return -ENOMEM;
        if (profile_arn && json_add_string(root, "profileArn", profile_arn) < 0)
                return -ENOMEM;

        *ret = TAKE_PTR(root);
        return 0;
}

/* The smallest a history entry can serialize to: {"userInputMessage":{}} (the assistant's is longer). */
#define KIRO_ENTRY_BYTES_MIN (sizeof("{\"userInputMessage\":{}}") - 1)

/* A lower bound of the body's size, in one cheap pass over the form: the text of the messages (normalization
 * keeps every non-blank text part, escaping only grows it) and one entry per run of same-role messages (the
 * merge rule is the only one that joins messages; none drops one). A request over the limit by this bound
 * is refused before the work of normalizing and serializing it: 200 000 tiny messages cost milliseconds
 * here and seconds there. */
static size_t body_size_lower_bound(const Conversation *c) {
        size_t total = 0;
        ConvRole last = _CONV_ROLE_INVALID;

        for (size_t i = 0; i < c->n_messages; i++) {
                const ConvMessage *m = c->messages + i;
                ConvRole role = m->role == CONV_ROLE_ASSISTANT ? CONV_ROLE_ASSISTANT : CONV_ROLE_USER;

                if (role != last)
                        total += KIRO_ENTRY_BYTES_MIN;
                last = role;
                for (size_t j = 0; j < m->n_parts; j++)
                        if (m->parts[j].type == CONV_PART_TEXT && !kiro_text_is_blank(m->parts[j].text))
                                total += strlen(m->parts[j].text);
        }
        return total;
}

static int build(const Conversation *c, const KiroRequestParams *params, KiroRequest **ret, char **ret_error) {
        _cleanup_(kiro_conversation_done) KiroConversation k = {};
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(kiro_request_freep) KiroRequest *req = NULL;
        char id[SD_ID128_UUID_STRING_MAX];
        const char *body;
        size_t n_trimmed = 0, body_size;
        size_t max = params && params->max_payload_bytes > 0 ? params->max_payload_bytes : KIRO_MAX_UPSTREAM_PAYLOAD_DEFAULT;
        int r;

        if (isempty(c->model_id))
                return fail(ret_error, -EINVAL, "model: no Kiro model id for '%s'", strna(c->model));

        if (!(params && params->trim_history)) {
                size_t least = body_size_lower_bound(c);
                if (least > max)
                        return fail(ret_error, -EMSGSIZE,
                                    "the request needs at least %zu bytes after conversion for Kiro, over the limit "
                                    "of %zu bytes (MaxUpstreamPayloadBytes=); shorten the conversation, tool "
                                    "results or images",
                                    least, max);
        }

        r = kiro_conversation_normalize(c, &k, ret_error);
        if (r < 0)
                return r;

        if (params && params->conversation_id) {
                if (!is_uuid(params->conversation_id))
                        return fail(ret_error, -EINVAL, "conversation id '%s' is not a UUID", params->conversation_id);
                strcpy(id, params->conversation_id);
                r = 0;
        } else if (!isempty(c->session_id))
                r = kiro_conversation_id_from_session(c->session_id, id);
        else
                r = kiro_uuid4(id);
        if (r < 0)
                return r;

        r = request_body(&k, id, params ? params->profile_arn : NULL, &root);
        if (r < 0)
                return r;
        body = json_object_to_json_string_length(root, JSON_FLAGS, &body_size);
        if (!body)
                return -ENOMEM;
        if (body_size > max && params && params->trim_history) {
                /* TrimHistory=yes: drop the oldest assistant/user pair after the first user message (which
                 * carries the system prompt) until the body fits. Pairs go together, so alternation and
                 * tool-use/result pairing hold; the last assistant turn always stays. */
                json_object *state = NULL, *history = NULL;
                if (json_object_object_get_ex(root, "conversationState", &state) &&
                    json_object_object_get_ex(state, "history", &history))
                        while (body_size > max && json_object_array_length(history) >= 4) {
                                /* How many pairs to drop, from the sizes of the entries (each is its
                                 * serialisation plus a comma in the array), so that the body is serialised
                                 * again once, not once per pair; the loop checks the result. */
                                size_t n = json_object_array_length(history), drop = 0, est = body_size;
                                while (est > max && n - drop >= 4) {
                                        for (size_t e = 1; e <= 2; e++) {
                                                size_t l = 0;
                                                (void) json_object_to_json_string_length(
                                                        json_object_array_get_idx(history, drop + e), JSON_FLAGS, &l);
                                                est -= MIN(est, l + 1);
                                        }
                                        drop += 2;
                                }
                                if (json_object_array_del_idx(history, 1, drop) < 0)
                                        return -ENOMEM;
                                n_trimmed += drop;
                                body = json_object_to_json_string_length(root, JSON_FLAGS, &body_size);
                                if (!body)
                                        return -ENOMEM;
                        }
        }
        if (body_size > max)
                return fail(ret_error, -EMSGSIZE,
                            "the request is %zu bytes after conversion for Kiro, over the limit of %zu bytes "
                            "(MaxUpstreamPayloadBytes=); shorten the conversation, tool results or images",
                            body_size, max);

        req = calloc(1, sizeof *req);
        if (!req)
                return -ENOMEM;
        req->body = strndup(body, body_size);
        req->conversation_id = strdup(id);
        if (!req->body || !req->conversation_id)
                return -ENOMEM;
        req->body_size = body_size;
        req->n_trimmed = n_trimmed;
        req->tool_aliases = k.aliases;
        k.aliases = (KiroToolAliases) {};

        *ret = TAKE_PTR(req);
        return 0;
}

int kiro_request_build(const Conversation *c, const KiroRequestParams *params, KiroRequest **ret,
                       char **ret_error) {
        assert(c);
        assert(ret);

        return build(c, params, ret, ret_error);
}
