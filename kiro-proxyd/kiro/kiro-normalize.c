/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The KIRO-PROTOCOL A.4 normalization rules on a working copy of the conversation (never modified).
 * Every rule is one pass: messages are compacted in place rather than removed one at a time, arrays
 * grow geometrically, and id and name lookups go through hash sets, so a request of n parts costs O(n). */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>

#include "kiro/kiro-normalize.h"

#define PLACEHOLDER_CONTINUE "Continue"
#define PLACEHOLDER_TOOL_DESCRIPTION "Tool used in conversation history"

/* ---- helpers ---------------------------------------------------------------------------------- */

bool kiro_text_is_blank(const char *s) {
        if (!s)
                return true;
        for (; *s; s++)
                if (!isspace((unsigned char) *s))
                        return false;
        return true;
}

static size_t utf8_length(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xC0) != 0x80)
                        n++;
        return n;
}

/* Makes room for at least n elements of size in *p (of *allocated), doubling. */
static int reserve(void **p, size_t *allocated, size_t n, size_t size) {
        void *q;
        size_t a;

        if (n <= *allocated)
                return 0;
        a = MAX(MAX(*allocated * 2, n), (size_t) 4);
        q = reallocarray(*p, a, size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *allocated = a;
        return 0;
}

_printf_(3, 4)
static int fail(KiroConversation *k, int error, const char *fmt, ...) {
        va_list ap;

        assert(error < 0);
        free(k->error);
        va_start(ap, fmt);
        if (vasprintf(&k->error, fmt, ap) < 0)
                k->error = NULL;
        va_end(ap);
        return error;
}

/* Takes ownership of s (which may be NULL after a failed allocation). */
static const char *pool_take(KiroConversation *k, char *s) {
        if (!s)
                return NULL;
        if (reserve((void **) &k->pool, &k->n_pool_allocated, k->n_pool + 1, sizeof(char *)) < 0) {
                free(s);
                return NULL;
        }
        k->pool[k->n_pool++] = s;
        return s;
}

void kiro_conversation_done(KiroConversation *k) {
        for (size_t i = 0; i < k->n_messages; i++)
                free(k->messages[i].parts);
        free(k->messages);
        for (size_t i = 0; i < k->n_tools; i++)
                json_object_put(k->tools[i].schema);
        free(k->tools);
        strmap_done(&k->tool_names);
        for (size_t i = 0; i < k->n_pool; i++)
                free(k->pool[i]);
        free(k->pool);
        buf_done(&k->tool_docs);
        kiro_tool_aliases_done(&k->aliases);
        free(k->error);
        *k = (KiroConversation) {};
}

static int part_append(KiroMessage *m, const KiroPart *p) {
        int r = reserve((void **) &m->parts, &m->n_allocated, m->n_parts + 1, sizeof(KiroPart));
        if (r < 0)
                return r;
        m->parts[m->n_parts++] = *p;
        return 0;
}

/* Inserts a message with one text part (rules 1, 4, 5: at most once each, so the move is fine). */
static int message_insert_text(KiroConversation *k, size_t index, ConvRole role, const char *text, bool placeholder) {
        KiroMessage m = { .role = role };
        int r;

        assert(index <= k->n_messages);
        r = part_append(&m, &(KiroPart) { .type = CONV_PART_TEXT, .text = text, .placeholder = placeholder });
        if (r < 0)
                return r;
        r = reserve((void **) &k->messages, &k->n_allocated, k->n_messages + 1, sizeof(KiroMessage));
        if (r < 0) {
                free(m.parts);
                return r;
        }
        memmove(k->messages + index + 1, k->messages + index, (k->n_messages - index) * sizeof(KiroMessage));
        k->messages[index] = m;
        k->n_messages++;
        return 0;
}

/* ---- input validation and the working copy ------------------------------------------------------ */

/* The front ends refuse what fails here already (api_check_image(), naming the client's field, for
 * count_tokens too); this stays as the builder's own guard for whatever fills a Conversation. */
static int image_parse(KiroConversation *k, size_t i, size_t j, const ConvPart *p, KiroPart *w) {
        static const char base64_chars[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
        _cleanup_free_ char *mt_copy = NULL;
        const char *mt = p->media_type, *data = p->data, *b64;
        size_t l;

        if (isempty(data))
                return fail(k, -EINVAL, "messages[%zu].content[%zu]: image without data", i, j);

        if (strncasecmp(data, "data:", 5) == 0) {
                const char *comma = strchr(data, ',');
                size_t hl;

                if (!comma)
                        return fail(k, -EINVAL, "messages[%zu].content[%zu]: malformed image data: URL", i, j);
                hl = comma - (data + 5);
                if (hl < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
                        return fail(k, -EINVAL,
                                    "messages[%zu].content[%zu]: image data: URL must be base64-encoded", i, j);
                mt_copy = strndup(data + 5, hl - 7);
                if (!mt_copy)
                        return -ENOMEM;
                mt_copy[strcspn(mt_copy, ";")] = 0;    /* drop parameters */
                mt = mt_copy;
                b64 = comma + 1;
        } else if (strncasecmp(data, "http://", 7) == 0 || strncasecmp(data, "https://", 8) == 0)
                return fail(k, -EINVAL,
                            "messages[%zu].content[%zu]: image URLs are not supported; send the image inline "
                            "as base64 or a data: URL", i, j);
        else
                b64 = data;

        if (isempty(mt))
                return fail(k, -EINVAL, "messages[%zu].content[%zu]: image without a media type", i, j);
        w->format = conv_image_format(mt, strlen(mt));
        if (!w->format)
                return fail(k, -EINVAL,
                            "messages[%zu].content[%zu]: unsupported image type '%s' (supported: image/jpeg, "
                            "image/png, image/gif, image/webp)", i, j, mt);

        l = strlen(b64);
        if (l == 0 || strspn(b64, base64_chars) != l)
                return fail(k, -EINVAL, "messages[%zu].content[%zu]: image data is not valid base64", i, j);
        w->bytes = b64;
        return 0;
}

static int copy_messages(KiroConversation *k) {
        const Conversation *c = k->conv;
        int r;

        if (c->n_messages == 0)
                return fail(k, -EINVAL, "messages: at least one message is required");
        /* Room for the messages rules 1, 4 and 5 may add. */
        r = reserve((void **) &k->messages, &k->n_allocated, c->n_messages + 3, sizeof(KiroMessage));
        if (r < 0)
                return r;

        for (size_t i = 0; i < c->n_messages; i++) {
                const ConvMessage *m = c->messages + i;
                KiroMessage *w = k->messages + k->n_messages++;

                assert(m->role >= 0 && m->role < _CONV_ROLE_MAX);
                *w = (KiroMessage) { .role = m->role };
                r = reserve((void **) &w->parts, &w->n_allocated, m->n_parts, sizeof(KiroPart));
                if (r < 0)
                        return r;

                for (size_t j = 0; j < m->n_parts; j++) {
                        const ConvPart *p = m->parts + j;
                        KiroPart wp = {
                                .type = p->type,
                                .text = strempty(p->text),
                                .id = p->id,
                                .name = p->name,
                                .input = p->input,
                                .is_error = p->is_error,
                        };

                        switch (p->type) {
                        case CONV_PART_IMAGE:
                                r = image_parse(k, i, j, p, &wp);
                                if (r < 0)
                                        return r;
                                /* Kiro has no images in assistant turns. */
                                if (m->role == CONV_ROLE_ASSISTANT)
                                        continue;
                                break;
                        case CONV_PART_TOOL_USE:
                                if (isempty(p->id))
                                        return fail(k, -EINVAL, "messages[%zu].content[%zu]: tool_use without an id",
                                                    i, j);
                                if (isempty(p->name))
                                        return fail(k, -EINVAL, "messages[%zu].content[%zu]: tool_use without a name",
                                                    i, j);
                                break;
                        case CONV_PART_TOOL_RESULT:
                                if (isempty(p->id))
                                        return fail(k, -EINVAL,
                                                    "messages[%zu].content[%zu]: tool_result without a tool_use_id", i, j);
                                break;
                        case CONV_PART_TEXT:
                        case CONV_PART_THINKING:
                                break;
                        default:
                                assert(false);
                        }
                        w->parts[w->n_parts++] = wp;
                }
        }
        return 0;
}

/* ---- tools (rules 9–12) ------------------------------------------------------------------------- */

static void schema_strip(json_object *s);

static void schema_strip_each(json_object *v, bool map) {
        if (map && json_object_is_type(v, json_type_object)) {
                json_object_object_foreach(v, key, sub) {
                        (void) key;
                        schema_strip(sub);
                }
        } else if (!map && json_object_is_type(v, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(v); i++)
                        schema_strip(json_object_array_get_idx(v, i));
        }
}

/* Rule 12: drop additionalProperties, $schema, empty (or null) required and properties, recursing into
 * the places where JSON Schema nests schemas — never into the names of a properties map. */
static void schema_strip(json_object *s) {
        static const char *const single[] = { "items", "not", "if", "then", "else", "contains",
                                              "propertyNames", "additionalItems" };
        static const char *const lists[] = { "anyOf", "oneOf", "allOf", "prefixItems", "items" };
        static const char *const maps[] = { "$defs", "definitions", "patternProperties", "dependentSchemas" };
        json_object *v;

        if (!json_object_is_type(s, json_type_object))
                return;

        json_object_object_del(s, "additionalProperties");
        json_object_object_del(s, "$schema");

        if (json_object_object_get_ex(s, "properties", &v)) {
                schema_strip_each(v, true);
                if (!v || (json_object_is_type(v, json_type_object) && json_object_object_length(v) == 0))
                        json_object_object_del(s, "properties");
        }
        if (json_object_object_get_ex(s, "required", &v) &&
            (!v || (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0)))
                json_object_object_del(s, "required");

        for (size_t i = 0; i < ELEMENTSOF(single); i++)
                if (json_object_object_get_ex(s, single[i], &v))
                        schema_strip(v);
        for (size_t i = 0; i < ELEMENTSOF(lists); i++)
                if (json_object_object_get_ex(s, lists[i], &v))
                        schema_strip_each(v, false);
        for (size_t i = 0; i < ELEMENTSOF(maps); i++)
                if (json_object_object_get_ex(s, maps[i], &v))
                        schema_strip_each(v, true);
}

static int add_tool(KiroConversation *k, const char *client_name, const char *description, json_object *schema) {
        _cleanup_(json_object_putp) json_object *copy = NULL;
        const char *name, *desc = description;
        int r;

        r = kiro_tool_aliases_get(&k->aliases, client_name, &name);
        if (r < 0)
                return r;

        if (schema && json_object_is_type(schema, json_type_object)) {
                if (json_object_deep_copy(schema, &copy, NULL) < 0)
                        return -ENOMEM;
        } else {
                copy = json_object_new_object();
                if (!copy)
                        return -ENOMEM;
                r = json_add(copy, "type", json_object_new_string("object"));
                if (r < 0)
                        return r;
        }
        schema_strip(copy);

        /* Rule 11. Kiro also refuses empty descriptions, so those get the tool's name. */
        if (kiro_text_is_blank(desc)) {
                char *t;

                if (asprintf(&t, "Tool: %s", name) < 0)
                        return -ENOMEM;
                desc = pool_take(k, t);
        } else if (utf8_length(desc) > KIRO_TOOL_DESCRIPTION_MAX) {
                char *doc, *ref;

                if (asprintf(&doc, "## Tool: %s\n%s", name, desc) < 0)
                        return -ENOMEM;
                r = buf_join(&k->tool_docs, "\n\n", doc);
                free(doc);
                if (r < 0)
                        return r;
                if (asprintf(&ref, "[Full documentation in system prompt under '## Tool: %s']", name) < 0)
                        return -ENOMEM;
                desc = pool_take(k, ref);
        }
        if (!desc)
                return -ENOMEM;

        r = reserve((void **) &k->tools, &k->n_tools_allocated, k->n_tools + 1, sizeof(KiroTool));
        if (r < 0)
                return r;
        r = strmap_put(&k->tool_names, client_name, (void *) client_name);
        if (r < 0)
                return r;
        k->tools[k->n_tools++] = (KiroTool) {
                .name = name,
                .client_name = client_name,
                .description = desc,
                .schema = TAKE_PTR(copy),
        };
        return 0;
}

static int prepare_tools(KiroConversation *k) {
        int r;

        for (size_t i = 0; i < k->conv->n_tools; i++) {
                const ConvTool *t = k->conv->tools + i;

                if (isempty(t->name))
                        return fail(k, -EINVAL, "tools[%zu].name: must not be empty", i);
                r = add_tool(k, t->name, t->description, t->input_schema);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- the normalization passes, KIRO-PROTOCOL A.4 in order --------------------------------------- */

/* The system text: A.5 thinking prefix, the client's system prompt, and the documentation of tools
 * whose descriptions were too long (rule 11, computed before rule 1 since it only depends on the tool
 * list; placeholder tools of rule 9 never have long descriptions). NULL when there is none. */
static int system_text(KiroConversation *k, const char **ret) {
        const Conversation *c = k->conv;
        _cleanup_(buf_done) Buf s = {};
        int r;

        if (c->thinking) {
                char t[128];

                (void) snprintf(t, sizeof t,
                                "<thinking_mode>enabled</thinking_mode><max_thinking_length>%" PRIu32
                                "</max_thinking_length>",
                                c->thinking_budget ?: CONV_THINKING_BUDGET_DEFAULT);
                r = buf_join(&s, "\n\n", t);
                if (r < 0)
                        return r;
        }
        if (!kiro_text_is_blank(c->system)) {
                r = buf_join(&s, "\n\n", c->system);
                if (r < 0)
                        return r;
        }
        if (k->tool_docs.size > 0) {
                r = buf_join(&s, "\n\n", k->tool_docs.data);
                if (r < 0)
                        return r;
        }
        if (!s.data) {
                *ret = NULL;
                return 0;
        }
        *ret = pool_take(k, buf_steal(&s));
        return *ret ? 0 : -ENOMEM;
}

/* Rule 1: the system text goes in front of the first user message (a user message of its own when
 * there is none). */
static int rule_system_prompt(KiroConversation *k, const char *system) {
        if (!system)
                return 0;
        for (size_t i = 0; i < k->n_messages; i++) {
                KiroMessage *m = k->messages + i;
                int r;

                if (m->role != CONV_ROLE_USER)
                        continue;
                r = reserve((void **) &m->parts, &m->n_allocated, m->n_parts + 1, sizeof(KiroPart));
                if (r < 0)
                        return r;
                memmove(m->parts + 1, m->parts, m->n_parts * sizeof(KiroPart));
                m->parts[0] = (KiroPart) { .type = CONV_PART_TEXT, .text = system };
                m->n_parts++;
                return 0;
        }
        return message_insert_text(k, 0, CONV_ROLE_USER, system, false);
}

/* Rule 2: unknown roles become user. */
static void rule_unknown_roles(KiroConversation *k) {
        for (size_t i = 0; i < k->n_messages; i++)
                if (k->messages[i].role == CONV_ROLE_OTHER)
                        k->messages[i].role = CONV_ROLE_USER;
}

/* Rule 3: adjacent messages of the same role become one (their parts concatenated), in one compaction
 * pass. */
static int rule_merge(KiroConversation *k) {
        size_t w = 0;
        int r;

        if (k->n_messages == 0)
                return 0;
        for (size_t i = 1; i < k->n_messages; i++) {
                KiroMessage *into = k->messages + w, *m = k->messages + i;

                if (into->role != m->role) {
                        k->messages[++w] = *m;
                        continue;
                }
                r = reserve((void **) &into->parts, &into->n_allocated, into->n_parts + m->n_parts, sizeof(KiroPart));
                if (r < 0) {
                        /* Keep the list consistent for kiro_conversation_done(): close the gap. */
                        memmove(k->messages + w + 1, m, (k->n_messages - i) * sizeof(KiroMessage));
                        k->n_messages = w + 1 + k->n_messages - i;
                        return r;
                }
                if (m->n_parts > 0)
                        memcpy(into->parts + into->n_parts, m->parts, m->n_parts * sizeof(KiroPart));
                into->n_parts += m->n_parts;
                free(m->parts);
                *m = (KiroMessage) {};
        }
        k->n_messages = w + 1;
        return 0;
}

/* Rule 4: the first message is a user message. */
static int rule_first_user(KiroConversation *k) {
        if (k->n_messages > 0 && k->messages[0].role == CONV_ROLE_USER)
                return 0;
        return message_insert_text(k, 0, CONV_ROLE_USER, KIRO_PLACEHOLDER_EMPTY, true);
}

/* Rule 5: a trailing assistant message stays in the history and the current message is "Continue". */
static int rule_trailing_assistant(KiroConversation *k) {
        if (k->messages[k->n_messages - 1].role != CONV_ROLE_ASSISTANT)
                return 0;
        return message_insert_text(k, k->n_messages, CONV_ROLE_USER, PLACEHOLDER_CONTINUE, false);
}

bool kiro_part_is_content(const KiroConversation *k, const KiroMessage *m, const KiroPart *p) {
        if (p->dropped || kiro_text_is_blank(p->text))
                return false;
        if (p->type == CONV_PART_TEXT)
                return true;
        /* Thinking is sent back (A.5) only while reasoning is on. */
        return p->type == CONV_PART_THINKING && m->role == CONV_ROLE_ASSISTANT && k->conv->thinking;
}

/* Rule 6: a message whose content text would be empty gets "(empty)". Tool uses, tool results and
 * images are not content text: Kiro refuses an empty "content" even next to them. The placeholder is
 * marked, so that rule 7 can replace it when it turns a tool result into text. */
static int rule_empty_content(KiroConversation *k) {
        int r;

        for (size_t i = 0; i < k->n_messages; i++) {
                KiroMessage *m = k->messages + i;
                bool content = false;

                for (size_t j = 0; j < m->n_parts && !content; j++)
                        content = kiro_part_is_content(k, m, m->parts + j);
                if (content)
                        continue;
                r = part_append(m, &(KiroPart) { .type = CONV_PART_TEXT, .text = KIRO_PLACEHOLDER_EMPTY, .placeholder = true });
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The ids of the live parts of one type in m, into set (emptied first). */
static int collect_ids(StrMap *set, const KiroMessage *m, ConvPartType type) {
        strmap_clear(set);
        for (size_t j = 0; m && j < m->n_parts; j++) {
                const KiroPart *p = m->parts + j;
                if (p->type == type && !p->dropped) {
                        int r = strmap_put(set, p->id, (void *) p->id);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Rule 7: a tool result is paired when the assistant message right before it has a tool use with its
 * id (Kiro checks pairs between adjacent turns); a second result for the same id is not paired either.
 * Unpaired results become text. */
static int rule_orphan_tool_results(KiroConversation *k) {
        _cleanup_(strmap_done) StrMap uses = STRMAP_INIT, paired = STRMAP_INIT;
        int r;

        for (size_t i = 0; i < k->n_messages; i++) {
                KiroMessage *m = k->messages + i;
                const KiroMessage *prev = i > 0 && k->messages[i - 1].role == CONV_ROLE_ASSISTANT ? m - 1 : NULL;
                bool converted = false;

                if (m->role != CONV_ROLE_USER)
                        continue;
                r = collect_ids(&uses, prev, CONV_PART_TOOL_USE);
                if (r < 0)
                        return r;
                strmap_clear(&paired);
                for (size_t j = 0; j < m->n_parts; j++) {
                        KiroPart *p = m->parts + j;
                        char *t;

                        if (p->type != CONV_PART_TOOL_RESULT || p->dropped)
                                continue;
                        if (strmap_contains(&uses, p->id)) {
                                r = strmap_put(&paired, p->id, (void *) p->id);
                                if (r < 0)
                                        return r;
                                if (r == 0)
                                        continue;       /* the first result for this id */
                        }
                        if (asprintf(&t, "[Tool Result (%s)%s]\n%s", p->id, p->is_error ? " (error)" : "",
                                     p->text) < 0)
                                return -ENOMEM;
                        p->text = pool_take(k, t);
                        if (!p->text)
                                return -ENOMEM;
                        p->type = CONV_PART_TEXT;
                        converted = true;
                }
                /* The message has content text now: rule 6's placeholder goes. */
                if (converted)
                        for (size_t j = 0; j < m->n_parts; j++)
                                if (m->parts[j].placeholder)
                                        m->parts[j].dropped = true;
        }
        return 0;
}

/* Rule 8: a tool use without a result in the next (user) message is dropped from the history. */
static int rule_unanswered_tool_uses(KiroConversation *k) {
        _cleanup_(strmap_done) StrMap results = STRMAP_INIT;
        int r;

        for (size_t i = 0; i < k->n_messages; i++) {
                KiroMessage *m = k->messages + i;

                if (m->role != CONV_ROLE_ASSISTANT)
                        continue;
                r = collect_ids(&results, i + 1 < k->n_messages ? m + 1 : NULL, CONV_PART_TOOL_RESULT);
                if (r < 0)
                        return r;
                for (size_t j = 0; j < m->n_parts; j++) {
                        KiroPart *p = m->parts + j;

                        if (p->type == CONV_PART_TOOL_USE && !p->dropped && !strmap_contains(&results, p->id))
                                p->dropped = true;
                }
        }
        return 0;
}

/* Rule 9: tools used in the history but not declared get placeholder specs. */
static int rule_placeholder_tools(KiroConversation *k) {
        int r;

        for (size_t i = 0; i < k->n_messages; i++) {
                const KiroMessage *m = k->messages + i;

                for (size_t j = 0; j < m->n_parts; j++) {
                        const KiroPart *p = m->parts + j;

                        if (p->type != CONV_PART_TOOL_USE || p->dropped || strmap_contains(&k->tool_names, p->name))
                                continue;
                        r = add_tool(k, p->name, PLACEHOLDER_TOOL_DESCRIPTION, NULL);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int normalize(KiroConversation *k) {
        const char *system;
        int r;

        r = copy_messages(k);
        if (r < 0)
                return r;
        /* tool_choice "none": the client's tools are not offered; tools the history uses still get
         * placeholder specs (rule 9), since Kiro refuses a history that names undeclared tools. Kiro has
         * no other tool_choice. */
        if (k->conv->tool_choice != CONV_TOOL_CHOICE_NONE) {
                r = prepare_tools(k);
                if (r < 0)
                        return r;
        }
        r = system_text(k, &system);
        if (r < 0)
                return r;

        r = rule_system_prompt(k, system);
        if (r < 0)
                return r;
        rule_unknown_roles(k);
        r = rule_merge(k);
        if (r < 0)
                return r;
        r = rule_first_user(k);
        if (r < 0)
                return r;
        r = rule_trailing_assistant(k);
        if (r < 0)
                return r;
        r = rule_empty_content(k);
        if (r < 0)
                return r;
        r = rule_orphan_tool_results(k);
        if (r < 0)
                return r;
        r = rule_unanswered_tool_uses(k);
        if (r < 0)
                return r;
        /* Rules 10–12 (aliases, long descriptions, schemas) are applied to each tool as it is added;
         * rule 10 for history tool uses is applied as they are serialized. */
        return rule_placeholder_tools(k);
}

int kiro_conversation_normalize(const Conversation *c, KiroConversation *ret, char **ret_error) {
        int r;

        assert(c);
        assert(ret);

        *ret = (KiroConversation) { .conv = c, .tool_names = STRMAP_INIT_IGNORE_CASE };
        r = normalize(ret);
        if (r < 0 && ret_error)
                *ret_error = TAKE_PTR(ret->error);
        return r;
}
