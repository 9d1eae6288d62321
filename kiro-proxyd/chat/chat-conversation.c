/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The internal conversation form: constructors, destructor and the input-token estimate. */
#include <assert.h>
#include <strings.h>

#include "chat/chat-conversation.h"
#include "chat/chat-tokens.h"

/* Rough costs the estimator adds beyond the text itself. */
#define TOKENS_PER_MESSAGE 4U
#define TOKENS_PER_IMAGE 1600U
#define TOKENS_PER_TOOL 8U

static const char *const role_table[_CONV_ROLE_MAX] = {
        [CONV_ROLE_USER]      = "user",
        [CONV_ROLE_ASSISTANT] = "assistant",
        [CONV_ROLE_OTHER]     = "other",
};

ConvRole conv_role_from_string(const char *s) {
        if (streq_ptr(s, "user"))
                return CONV_ROLE_USER;
        if (streq_ptr(s, "assistant"))
                return CONV_ROLE_ASSISTANT;
        return CONV_ROLE_OTHER;
}

const char *conv_role_to_string(ConvRole r) {
        if (r < 0 || r >= _CONV_ROLE_MAX)
                return NULL;
        return role_table[r];
}

static const char *const part_type_table[_CONV_PART_TYPE_MAX] = {
        [CONV_PART_TEXT]        = "text",
        [CONV_PART_IMAGE]       = "image",
        [CONV_PART_TOOL_USE]    = "tool_use",
        [CONV_PART_TOOL_RESULT] = "tool_result",
        [CONV_PART_THINKING]    = "thinking",
};

const char *conv_part_type_to_string(ConvPartType t) {
        if (t < 0 || t >= _CONV_PART_TYPE_MAX)
                return NULL;
        return part_type_table[t];
}

const char *conv_image_format(const char *mt, size_t len) {
        static const struct {
                const char *media_type;
                const char *format;
        } table[] = {
                { "image/jpeg", "jpeg" },
                { "image/jpg",  "jpeg" },
                { "image/png",  "png" },
                { "image/gif",  "gif" },
                { "image/webp", "webp" },
        };

        if (!mt)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strlen(table[i].media_type) == len && strncasecmp(mt, table[i].media_type, len) == 0)
                        return table[i].format;
        return NULL;
}

int conv_thinking_budget_from_effort(const char *effort, uint32_t *ret) {
        static const struct {
                const char *name;
                uint32_t budget;
        } table[] = {
                { "minimal", 4000 },
                { "low",     4000 },
                { "medium",  16000 },
                { "high",    32000 },
                { "xhigh",   32000 },
                { "max",     32000 },
        };

        assert(ret);
        if (!effort)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(effort, table[i].name) == 0) {
                        *ret = table[i].budget;
                        return 0;
                }
        return -EINVAL;
}

int conversation_new(Conversation **ret) {
        Conversation *c;

        assert(ret);
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->tool_choice = CONV_TOOL_CHOICE_AUTO;
        *ret = c;
        return 0;
}

static void part_done(ConvPart *p) {
        free(p->text);
        free(p->media_type);
        free(p->data);
        free(p->id);
        free(p->name);
        free(p->input);
        free(p->signature);
}

Conversation *conversation_free(Conversation *c) {
        if (!c)
                return NULL;

        for (size_t i = 0; i < c->n_messages; i++) {
                for (size_t j = 0; j < c->messages[i].n_parts; j++)
                        part_done(c->messages[i].parts + j);
                free(c->messages[i].parts);
        }
        free(c->messages);
        for (size_t i = 0; i < c->n_tools; i++) {
                free(c->tools[i].name);
                free(c->tools[i].description);
                json_object_put(c->tools[i].input_schema);
        }
        free(c->tools);
        free(c->model);
        free(c->model_id);
        free(c->system);
        free(c->tool_choice_name);
        strv_free(c->stop);
        free(c->session_id);
        free(c->affinity_key);
        free(c);
        return NULL;
}

/* Arrays of the form are only appended to, through the functions below: they grow to the next power of
 * two (at least 4) when their length reaches one, so n appends cost O(n) whatever realloc() does. */
static int grow(void **p, size_t n, size_t size) {
        void *q;

        if (n != 0 && (n < 4 || (n & (n - 1)) != 0))
                return 0;
        q = reallocarray(*p, n == 0 ? 4 : n * 2, size);
        if (!q)
                return -ENOMEM;
        *p = q;
        return 0;
}

int conversation_add_message(Conversation *c, ConvRole role, ConvMessage **ret) {
        ConvMessage *n;

        assert(c);
        assert(role >= 0 && role < _CONV_ROLE_MAX);

        if (grow((void **) &c->messages, c->n_messages, sizeof(ConvMessage)) < 0)
                return -ENOMEM;
        n = c->messages;
        n[c->n_messages] = (ConvMessage) { .role = role };
        if (ret)
                *ret = n + c->n_messages;
        c->n_messages++;
        return 0;
}

int conv_message_add_part(ConvMessage *m, ConvPartType type, ConvPart **ret) {
        ConvPart *n;

        assert(m);
        assert(type >= 0 && type < _CONV_PART_TYPE_MAX);

        if (grow((void **) &m->parts, m->n_parts, sizeof(ConvPart)) < 0)
                return -ENOMEM;
        n = m->parts;
        n[m->n_parts] = (ConvPart) { .type = type };
        if (ret)
                *ret = n + m->n_parts;
        m->n_parts++;
        return 0;
}

static int dup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* Builds the part completely first, so that a failed allocation leaves m unchanged. */
static int add_part(ConvMessage *m, const ConvPart *tmpl) {
        ConvPart p = { .type = tmpl->type, .is_error = tmpl->is_error }, *slot;
        int r;

        if (dup_opt(tmpl->text, &p.text) < 0 ||
            dup_opt(tmpl->media_type, &p.media_type) < 0 ||
            dup_opt(tmpl->data, &p.data) < 0 ||
            dup_opt(tmpl->id, &p.id) < 0 ||
            dup_opt(tmpl->name, &p.name) < 0 ||
            dup_opt(tmpl->input, &p.input) < 0 ||
            dup_opt(tmpl->signature, &p.signature) < 0) {
                part_done(&p);
                return -ENOMEM;
        }
        r = conv_message_add_part(m, p.type, &slot);
        if (r < 0) {
                part_done(&p);
                return r;
        }
        *slot = p;
        return 0;
}

int conv_message_add_text(ConvMessage *m, const char *text) {
        assert(text);
        return add_part(m, &(ConvPart) { .type = CONV_PART_TEXT, .text = (char *) text });
}

int conv_message_add_image(ConvMessage *m, const char *media_type, const char *data) {
        assert(data);
        return add_part(m, &(ConvPart) { .type = CONV_PART_IMAGE, .media_type = (char *) media_type,
                                         .data = (char *) data });
}

int conv_message_add_tool_use(ConvMessage *m, const char *id, const char *name, const char *input) {
        assert(id);
        assert(name);
        return add_part(m, &(ConvPart) { .type = CONV_PART_TOOL_USE, .id = (char *) id, .name = (char *) name,
                                         .input = (char *) input });
}

int conv_message_add_tool_result(ConvMessage *m, const char *tool_use_id, const char *content, bool is_error) {
        assert(tool_use_id);
        return add_part(m, &(ConvPart) { .type = CONV_PART_TOOL_RESULT, .id = (char *) tool_use_id,
                                         .text = (char *) (content ?: ""), .is_error = is_error });
}

int conv_message_add_thinking(ConvMessage *m, const char *text, const char *signature) {
        assert(text);
        return add_part(m, &(ConvPart) { .type = CONV_PART_THINKING, .text = (char *) text,
                                         .signature = (char *) signature });
}

int conversation_add_tool(Conversation *c, const char *name, const char *description, json_object *schema) {
        _cleanup_free_ char *n = NULL, *d = NULL;
        ConvTool *t;

        assert(c);
        assert(name);

        n = strdup(name);
        if (!n)
                return -ENOMEM;
        if (dup_opt(description, &d) < 0)
                return -ENOMEM;
        if (grow((void **) &c->tools, c->n_tools, sizeof(ConvTool)) < 0)
                return -ENOMEM;
        t = c->tools;
        t[c->n_tools++] = (ConvTool) {
                .name = TAKE_PTR(n),
                .description = TAKE_PTR(d),
                .input_schema = schema ? json_object_get(schema) : NULL,
        };
        return 0;
}

static void count(TokenCounter *tc, const char *s) {
        if (s)
                token_counter_add(tc, s, strlen(s));
}

uint64_t conversation_estimate_input_tokens(const Conversation *c) {
        TokenCounter tc = {};

        assert(c);

        count(&tc, c->system);
        for (size_t i = 0; i < c->n_messages; i++) {
                const ConvMessage *m = c->messages + i;

                token_counter_add_tokens(&tc, TOKENS_PER_MESSAGE);
                for (size_t j = 0; j < m->n_parts; j++) {
                        const ConvPart *p = m->parts + j;

                        switch (p->type) {
                        case CONV_PART_IMAGE:
                                token_counter_add_tokens(&tc, TOKENS_PER_IMAGE);
                                break;
                        case CONV_PART_TOOL_USE:
                                count(&tc, p->name);
                                count(&tc, p->input);
                                break;
                        default:
                                count(&tc, p->text);
                        }
                }
        }
        for (size_t i = 0; i < c->n_tools; i++) {
                const ConvTool *t = c->tools + i;

                token_counter_add_tokens(&tc, TOKENS_PER_TOOL);
                count(&tc, t->name);
                count(&tc, t->description);
                if (t->input_schema)
                        count(&tc, json_object_to_json_string_ext(t->input_schema, JSON_C_TO_STRING_PLAIN));
        }
        return token_counter_get(&tc);
}
