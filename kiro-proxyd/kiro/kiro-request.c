/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Builds the Kiro conversationState from the conversation form, applying the A.4 normalisation rules. */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>
#include <systemd/sd-id128.h>

#include "buf.h"
#include "hash-util.h"
#include "kiro/kiro-request.h"

#define PLACEHOLDER_EMPTY "(empty)"
#define PLACEHOLDER_CONTINUE "Continue"
#define PLACEHOLDER_TOOL_DESCRIPTION "Tool used in conversation history"
#define ALIAS_HASH_HEX 8U
#define ALIAS_PREFIX_MAX (KIRO_TOOL_NAME_MAX - 1 - ALIAS_HASH_HEX)
#define TOOL_INPUT_DEPTH_MAX 64
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* ---- small helpers ---------------------------------------------------------------------------- */

static bool is_blank(const char *s) {
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

/* ---- tool name aliases ------------------------------------------------------------------------ */

int kiro_tool_name_alias(const char *name, char **ret) {
        size_t l = strlen(name), prefix = ALIAS_PREFIX_MAX;
        uint8_t d[SHA256_DIGEST_SIZE];
        char h[2 * SHA256_DIGEST_SIZE + 1], *a;
        int r;

        assert(ret);

        if (l <= KIRO_TOOL_NAME_MAX)
                return -EINVAL;
        /* Do not cut a UTF-8 sequence in half. */
        while (prefix > 0 && ((unsigned char) name[prefix] & 0xC0) == 0x80)
                prefix--;
        r = sha256(name, l, d);
        if (r < 0)
                return r;
        (void) hex_encode(d, sizeof d, h);
        if (asprintf(&a, "%.*s_%.*s", (int) prefix, name, (int) ALIAS_HASH_HEX, h) < 0)
                return -ENOMEM;
        *ret = a;
        return 0;
}

void kiro_tool_aliases_done(KiroToolAliases *a) {
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++) {
                free(a->entries[i].alias);
                free(a->entries[i].name);
        }
        free(a->entries);
        *a = (KiroToolAliases) {};
}

const char *kiro_tool_aliases_restore(const KiroToolAliases *a, const char *name) {
        if (!a || !name)
                return name;
        for (size_t i = 0; i < a->n; i++)
                if (streq(a->entries[i].alias, name))
                        return a->entries[i].name;
        return name;
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

/* ---- the working copy --------------------------------------------------------------------------- */

/* Parts and messages of the working copy borrow the strings of the Conversation; strings made here
 * live in Builder.pool. */
typedef struct WPart {
        ConvPartType type;
        const char *text;       /* TEXT, THINKING, TOOL_RESULT content */
        const char *id;         /* TOOL_USE, TOOL_RESULT */
        const char *name;       /* TOOL_USE (the client's name) */
        const char *input;      /* TOOL_USE */
        const char *format;     /* IMAGE: "jpeg", "png", "gif", "webp" */
        const char *bytes;      /* IMAGE: base64 */
        bool is_error;
        bool placeholder;       /* an "(empty)" added by rule 6 */
        bool dropped;
} WPart;

typedef struct WMsg {
        ConvRole role;
        WPart *parts;
        size_t n_parts;
} WMsg;

typedef struct WTool {
        const char *name;       /* as sent: the alias for long names */
        const char *client_name;
        const char *description;
        json_object *schema;
} WTool;

typedef struct Builder {
        const Conversation *c;
        WMsg *msgs;
        size_t n_msgs;
        WTool *tools;
        size_t n_tools;
        char **pool;
        size_t n_pool;
        Buf tool_docs;
        KiroToolAliases aliases;
        char *error;
        size_t n_trimmed;
} Builder;

static void builder_done(Builder *b) {
        for (size_t i = 0; i < b->n_msgs; i++)
                free(b->msgs[i].parts);
        free(b->msgs);
        for (size_t i = 0; i < b->n_tools; i++)
                json_object_put(b->tools[i].schema);
        free(b->tools);
        for (size_t i = 0; i < b->n_pool; i++)
                free(b->pool[i]);
        free(b->pool);
        buf_done(&b->tool_docs);
        kiro_tool_aliases_done(&b->aliases);
        free(b->error);
}

_printf_(3, 4)
static int fail(Builder *b, int error, const char *fmt, ...) {
        va_list ap;

        assert(error < 0);
        free(b->error);
        va_start(ap, fmt);
        if (vasprintf(&b->error, fmt, ap) < 0)
                b->error = NULL;
        va_end(ap);
        return error;
}

/* Takes ownership of s (which may be NULL after a failed allocation). */
static const char *pool_take(Builder *b, char *s) {
        char **n;

        if (!s)
                return NULL;
        n = reallocarray(b->pool, b->n_pool + 1, sizeof(char *));
        if (!n) {
                free(s);
                return NULL;
        }
        b->pool = n;
        b->pool[b->n_pool++] = s;
        return s;
}

static int msg_insert(Builder *b, size_t index, ConvRole role, WMsg **ret) {
        WMsg *n;

        assert(index <= b->n_msgs);
        n = reallocarray(b->msgs, b->n_msgs + 1, sizeof(WMsg));
        if (!n)
                return -ENOMEM;
        b->msgs = n;
        memmove(n + index + 1, n + index, (b->n_msgs - index) * sizeof(WMsg));
        n[index] = (WMsg) { .role = role };
        b->n_msgs++;
        if (ret)
                *ret = n + index;
        return 0;
}

static void msg_remove(Builder *b, size_t index) {
        free(b->msgs[index].parts);
        memmove(b->msgs + index, b->msgs + index + 1, (b->n_msgs - index - 1) * sizeof(WMsg));
        b->n_msgs--;
}

static int part_insert(WMsg *m, size_t index, const WPart *p) {
        WPart *n;

        assert(index <= m->n_parts);
        n = reallocarray(m->parts, m->n_parts + 1, sizeof(WPart));
        if (!n)
                return -ENOMEM;
        m->parts = n;
        memmove(n + index + 1, n + index, (m->n_parts - index) * sizeof(WPart));
        n[index] = *p;
        m->n_parts++;
        return 0;
}

static int part_append(WMsg *m, const WPart *p) {
        return part_insert(m, m->n_parts, p);
}

/* Inserts a message with one text part. */
static int msg_insert_text(Builder *b, size_t index, ConvRole role, const char *text, bool placeholder) {
        WMsg *m;
        int r;

        r = msg_insert(b, index, role, &m);
        if (r < 0)
                return r;
        return part_append(m, &(WPart) { .type = CONV_PART_TEXT, .text = text, .placeholder = placeholder });
}

/* The name Kiro sees for a client tool name: an alias when it is too long, recorded for the way back. */
static int kiro_tool_name(Builder *b, const char *name, const char **ret) {
        _cleanup_free_ char *alias = NULL, *copy = NULL;
        KiroToolAlias *n;
        int r;

        if (strlen(name) <= KIRO_TOOL_NAME_MAX) {
                *ret = name;
                return 0;
        }
        for (size_t i = 0; i < b->aliases.n; i++)
                if (streq(b->aliases.entries[i].name, name)) {
                        *ret = b->aliases.entries[i].alias;
                        return 0;
                }

        r = kiro_tool_name_alias(name, &alias);
        if (r < 0)
                return r;
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        n = reallocarray(b->aliases.entries, b->aliases.n + 1, sizeof(KiroToolAlias));
        if (!n)
                return -ENOMEM;
        b->aliases.entries = n;
        n[b->aliases.n++] = (KiroToolAlias) { .alias = TAKE_PTR(alias), .name = TAKE_PTR(copy) };
        *ret = n[b->aliases.n - 1].alias;
        return 0;
}

/* ---- input validation and the working copy ------------------------------------------------------ */

static const char *image_format_from_media_type(const char *mt) {
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

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(mt, table[i].media_type) == 0)
                        return table[i].format;
        return NULL;
}

static int image_parse(Builder *b, size_t i, size_t j, const ConvPart *p, WPart *w) {
        static const char base64_chars[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
        _cleanup_free_ char *mt_copy = NULL;
        const char *mt = p->media_type, *data = p->data, *b64;
        size_t l;

        if (isempty(data))
                return fail(b, -EINVAL, "messages[%zu].content[%zu]: image without data", i, j);

        if (strncasecmp(data, "data:", 5) == 0) {
                const char *comma = strchr(data, ',');
                size_t hl;

                if (!comma)
                        return fail(b, -EINVAL, "messages[%zu].content[%zu]: malformed image data: URL", i, j);
                hl = comma - (data + 5);
                if (hl < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
                        return fail(b, -EINVAL,
                                    "messages[%zu].content[%zu]: image data: URL must be base64-encoded", i, j);
                mt_copy = strndup(data + 5, hl - 7);
                if (!mt_copy)
                        return -ENOMEM;
                mt_copy[strcspn(mt_copy, ";")] = 0;    /* drop parameters */
                mt = mt_copy;
                b64 = comma + 1;
        } else if (strncasecmp(data, "http://", 7) == 0 || strncasecmp(data, "https://", 8) == 0)
                return fail(b, -EINVAL,
                            "messages[%zu].content[%zu]: image URLs are not supported; send the image inline "
                            "as base64 or a data: URL", i, j);
        else
                b64 = data;

        if (isempty(mt))
                return fail(b, -EINVAL, "messages[%zu].content[%zu]: image without a media type", i, j);
        w->format = image_format_from_media_type(mt);
        if (!w->format)
                return fail(b, -EINVAL,
                            "messages[%zu].content[%zu]: unsupported image type '%s' (supported: image/jpeg, "
                            "image/png, image/gif, image/webp)", i, j, mt);

        l = strlen(b64);
        if (l == 0 || strspn(b64, base64_chars) != l)
                return fail(b, -EINVAL, "messages[%zu].content[%zu]: image data is not valid base64", i, j);
        w->bytes = b64;
        return 0;
}

static int builder_copy_messages(Builder *b) {
        const Conversation *c = b->c;
        int r;

        if (c->n_messages == 0)
                return fail(b, -EINVAL, "messages: at least one message is required");

        for (size_t i = 0; i < c->n_messages; i++) {
                const ConvMessage *m = c->messages + i;
                WMsg *w;

                assert(m->role >= 0 && m->role < _CONV_ROLE_MAX);
                r = msg_insert(b, b->n_msgs, m->role, &w);
                if (r < 0)
                        return r;

                for (size_t j = 0; j < m->n_parts; j++) {
                        const ConvPart *p = m->parts + j;
                        WPart wp = {
                                .type = p->type,
                                .text = strempty(p->text),
                                .id = p->id,
                                .name = p->name,
                                .input = p->input,
                                .is_error = p->is_error,
                        };

                        switch (p->type) {
                        case CONV_PART_IMAGE:
                                r = image_parse(b, i, j, p, &wp);
                                if (r < 0)
                                        return r;
                                /* Kiro has no images in assistant turns. */
                                if (m->role == CONV_ROLE_ASSISTANT)
                                        continue;
                                break;
                        case CONV_PART_TOOL_USE:
                                if (isempty(p->id))
                                        return fail(b, -EINVAL, "messages[%zu].content[%zu]: tool_use without an id",
                                                    i, j);
                                if (isempty(p->name))
                                        return fail(b, -EINVAL, "messages[%zu].content[%zu]: tool_use without a name",
                                                    i, j);
                                break;
                        case CONV_PART_TOOL_RESULT:
                                if (isempty(p->id))
                                        return fail(b, -EINVAL,
                                                    "messages[%zu].content[%zu]: tool_result without a tool_use_id", i, j);
                                break;
                        case CONV_PART_TEXT:
                        case CONV_PART_THINKING:
                                break;
                        default:
                                assert(false);
                        }
                        r = part_append(w, &wp);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* ---- tools (rules 9–12) ------------------------------------------------------------------------- */

static void schema_strip(json_object *s);

static void schema_strip_each(json_object *v, bool map) {
        if (map && json_object_is_type(v, json_type_object)) {
                json_object_object_foreach(v, k, sub) {
                        (void) k;
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

static int builder_add_tool(Builder *b, const char *client_name, const char *description, json_object *schema) {
        _cleanup_(json_object_putp) json_object *copy = NULL;
        const char *name, *desc = description;
        WTool *n;
        int r;

        r = kiro_tool_name(b, client_name, &name);
        if (r < 0)
                return r;

        if (schema && json_object_is_type(schema, json_type_object)) {
                if (json_object_deep_copy(schema, &copy, NULL) < 0)
                        return -ENOMEM;
        } else {
                copy = json_object_new_object();
                if (!copy)
                        return -ENOMEM;
                r = json_add_string(copy, "type", "object");
                if (r < 0)
                        return r;
        }
        schema_strip(copy);

        /* Rule 11. Kiro also refuses empty descriptions, so those get the tool's name. */
        if (is_blank(desc)) {
                char *t;

                if (asprintf(&t, "Tool: %s", name) < 0)
                        return -ENOMEM;
                desc = pool_take(b, t);
        } else if (utf8_length(desc) > KIRO_TOOL_DESCRIPTION_MAX) {
                char *doc, *ref;

                if (asprintf(&doc, "## Tool: %s\n%s", name, desc) < 0)
                        return -ENOMEM;
                r = buf_join(&b->tool_docs, "\n\n", doc);
                free(doc);
                if (r < 0)
                        return r;
                if (asprintf(&ref, "[Full documentation in system prompt under '## Tool: %s']", name) < 0)
                        return -ENOMEM;
                desc = pool_take(b, ref);
        }
        if (!desc)
                return -ENOMEM;

        n = reallocarray(b->tools, b->n_tools + 1, sizeof(WTool));
        if (!n)
                return -ENOMEM;
        b->tools = n;
        n[b->n_tools++] = (WTool) {
                .name = name,
                .client_name = client_name,
                .description = desc,
                .schema = TAKE_PTR(copy),
        };
        return 0;
}

static int builder_prepare_tools(Builder *b) {
        int r;

        for (size_t i = 0; i < b->c->n_tools; i++) {
                const ConvTool *t = b->c->tools + i;

                if (isempty(t->name))
                        return fail(b, -EINVAL, "tools[%zu].name: must not be empty", i);
                r = builder_add_tool(b, t->name, t->description, t->input_schema);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool builder_has_tool(Builder *b, const char *client_name) {
        /* Kiro matches tool names case-insensitively. */
        for (size_t i = 0; i < b->n_tools; i++)
                if (strcasecmp(b->tools[i].client_name, client_name) == 0)
                        return true;
        return false;
}

/* ---- the normalisation passes, KIRO-PROTOCOL A.4 in order -------------------------------------- */

/* The system text: A.5 thinking prefix, the client's system prompt, and the documentation of tools
 * whose descriptions were too long (rule 11, computed before rule 1 since it only depends on the tool
 * list; placeholder tools of rule 9 never have long descriptions). */
static int builder_system_text(Builder *b, char **ret) {
        const Conversation *c = b->c;
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
        if (!is_blank(c->system)) {
                r = buf_join(&s, "\n\n", c->system);
                if (r < 0)
                        return r;
        }
        if (b->tool_docs.size > 0) {
                r = buf_join(&s, "\n\n", b->tool_docs.data);
                if (r < 0)
                        return r;
        }
        *ret = s.data;
        s = (Buf) {};
        return 0;
}

/* Rule 1: the system text goes in front of the first user message (a user message of its own when
 * there is none). */
static int rule_system_prompt(Builder *b, const char *system) {
        if (!system)
                return 0;
        for (size_t i = 0; i < b->n_msgs; i++)
                if (b->msgs[i].role == CONV_ROLE_USER)
                        return part_insert(b->msgs + i, 0, &(WPart) { .type = CONV_PART_TEXT, .text = system });
        return msg_insert_text(b, 0, CONV_ROLE_USER, system, false);
}

/* Rule 2: unknown roles become user. */
static void rule_unknown_roles(Builder *b) {
        for (size_t i = 0; i < b->n_msgs; i++)
                if (b->msgs[i].role == CONV_ROLE_OTHER)
                        b->msgs[i].role = CONV_ROLE_USER;
}

/* Rule 3: adjacent messages of the same role become one (their parts concatenated). */
static int rule_merge(Builder *b) {
        int r;

        for (size_t i = 1; i < b->n_msgs;) {
                WMsg *prev = b->msgs + i - 1, *m = b->msgs + i;

                if (prev->role != m->role) {
                        i++;
                        continue;
                }
                for (size_t j = 0; j < m->n_parts; j++) {
                        r = part_append(prev, m->parts + j);
                        if (r < 0)
                                return r;
                }
                msg_remove(b, i);
        }
        return 0;
}

/* Rule 4: the first message is a user message. */
static int rule_first_user(Builder *b) {
        if (b->n_msgs > 0 && b->msgs[0].role == CONV_ROLE_USER)
                return 0;
        return msg_insert_text(b, 0, CONV_ROLE_USER, PLACEHOLDER_EMPTY, true);
}

/* Rule 5: a trailing assistant message stays in the history and the current message is "Continue". */
static int rule_trailing_assistant(Builder *b) {
        if (b->msgs[b->n_msgs - 1].role != CONV_ROLE_ASSISTANT)
                return 0;
        return msg_insert_text(b, b->n_msgs, CONV_ROLE_USER, PLACEHOLDER_CONTINUE, false);
}

static bool part_is_content(const Builder *b, const WMsg *m, const WPart *p) {
        if (p->dropped || is_blank(p->text))
                return false;
        if (p->type == CONV_PART_TEXT)
                return true;
        /* Thinking is sent back (A.5) only while reasoning is on. */
        return p->type == CONV_PART_THINKING && m->role == CONV_ROLE_ASSISTANT && b->c->thinking;
}

/* Rule 6: a message whose content text would be empty gets "(empty)". Tool uses, tool results and
 * images are not content text: Kiro refuses an empty "content" even next to them. The placeholder is
 * marked, so that rule 7 can replace it when it turns a tool result into text. */
static int rule_empty_content(Builder *b) {
        int r;

        for (size_t i = 0; i < b->n_msgs; i++) {
                WMsg *m = b->msgs + i;
                bool content = false;

                for (size_t j = 0; j < m->n_parts && !content; j++)
                        content = part_is_content(b, m, m->parts + j);
                if (content)
                        continue;
                r = part_append(m, &(WPart) { .type = CONV_PART_TEXT, .text = PLACEHOLDER_EMPTY, .placeholder = true });
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool msg_has_part(const WMsg *m, ConvPartType type, const char *id, size_t before) {
        for (size_t j = 0; j < MIN(before, m->n_parts); j++)
                if (m->parts[j].type == type && !m->parts[j].dropped && streq(m->parts[j].id, id))
                        return true;
        return false;
}

/* Rule 7: a tool result is paired when the assistant message right before it has a tool use with its
 * id (Kiro checks pairs between adjacent turns); a second result for the same id is not paired either.
 * Unpaired results become text. */
static int rule_orphan_tool_results(Builder *b) {
        for (size_t k = 0; k < b->n_msgs; k++) {
                WMsg *m = b->msgs + k;
                const WMsg *prev = k > 0 && b->msgs[k - 1].role == CONV_ROLE_ASSISTANT ? b->msgs + k - 1 : NULL;

                if (m->role != CONV_ROLE_USER)
                        continue;
                for (size_t j = 0; j < m->n_parts; j++) {
                        WPart *p = m->parts + j;
                        char *t;

                        if (p->type != CONV_PART_TOOL_RESULT || p->dropped)
                                continue;
                        if (prev && msg_has_part(prev, CONV_PART_TOOL_USE, p->id, SIZE_MAX) &&
                            !msg_has_part(m, CONV_PART_TOOL_RESULT, p->id, j))
                                continue;

                        if (asprintf(&t, "[Tool Result (%s)%s]\n%s", p->id, p->is_error ? " (error)" : "",
                                     p->text) < 0)
                                return -ENOMEM;
                        p->text = pool_take(b, t);
                        if (!p->text)
                                return -ENOMEM;
                        p->type = CONV_PART_TEXT;
                        for (size_t i = 0; i < m->n_parts; i++)
                                if (m->parts[i].placeholder)
                                        m->parts[i].dropped = true;
                }
        }
        return 0;
}

/* Rule 8: a tool use without a result in the next (user) message is dropped from the history. */
static void rule_unanswered_tool_uses(Builder *b) {
        for (size_t k = 0; k < b->n_msgs; k++) {
                WMsg *m = b->msgs + k;
                const WMsg *next = k + 1 < b->n_msgs ? b->msgs + k + 1 : NULL;

                if (m->role != CONV_ROLE_ASSISTANT)
                        continue;
                for (size_t j = 0; j < m->n_parts; j++) {
                        WPart *p = m->parts + j;

                        if (p->type != CONV_PART_TOOL_USE || p->dropped)
                                continue;
                        if (!next || !msg_has_part(next, CONV_PART_TOOL_RESULT, p->id, SIZE_MAX))
                                p->dropped = true;
                }
        }
}

/* Rule 9: tools used in the history but not declared get placeholder specs. */
static int rule_placeholder_tools(Builder *b) {
        int r;

        for (size_t k = 0; k < b->n_msgs; k++) {
                const WMsg *m = b->msgs + k;

                for (size_t j = 0; j < m->n_parts; j++) {
                        const WPart *p = m->parts + j;

                        if (p->type != CONV_PART_TOOL_USE || p->dropped || builder_has_tool(b, p->name))
                                continue;
                        r = builder_add_tool(b, p->name, PLACEHOLDER_TOOL_DESCRIPTION, NULL);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* ---- serialisation ------------------------------------------------------------------------------- */

/* Text parts joined by blank lines; for an assistant with thinking (A.5):
 * "<thinking>{t}</thinking>\n\n{text}". */
static int msg_content(const Builder *b, const WMsg *m, char **ret) {
        _cleanup_(buf_done) Buf text = {}, thinking = {};
        int r;

        for (size_t j = 0; j < m->n_parts; j++) {
                const WPart *p = m->parts + j;

                if (!part_is_content(b, m, p))
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

static int tool_spec_json(const WTool *t, json_object **ret) {
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

static int tool_result_json(const WPart *p, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *content = NULL, *item = NULL;

        o = json_object_new_object();
        content = json_object_new_array();
        item = json_object_new_object();
        if (!o || !content || !item)
                return -ENOMEM;
        if (json_add_string(item, "text", is_blank(p->text) ? PLACEHOLDER_EMPTY : p->text) < 0 ||
            json_append(content, TAKE_PTR(item)) < 0 ||
            json_add_string(o, "toolUseId", p->id) < 0 ||
            json_add(o, "content", TAKE_PTR(content)) < 0 ||
            json_add_string(o, "status", p->is_error ? "error" : "success") < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static int tool_use_json(Builder *b, const WPart *p, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *input = NULL;
        const char *name;
        int r;

        /* Arguments that are not a JSON object (a model's earlier garbage, echoed back by the client)
         * become {}: the history stays usable. */
        if (!is_blank(p->input) &&
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
        r = kiro_tool_name(b, p->name, &name);
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

static int user_message_json(Builder *b, const WMsg *m, bool current, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *images = NULL, *ctx = NULL, *tools = NULL,
                *results = NULL;
        _cleanup_free_ char *content = NULL;
        int r;

        r = msg_content(b, m, &content);
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
            json_add_string(o, "modelId", b->c->model_id) < 0 ||
            json_add_string(o, "origin", KIRO_ORIGIN) < 0)
                return -ENOMEM;

        for (size_t j = 0; j < m->n_parts; j++) {
                const WPart *p = m->parts + j;
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
                for (size_t i = 0; i < b->n_tools; i++) {
                        json_object *v;

                        r = tool_spec_json(b->tools + i, &v);
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

static int assistant_message_json(Builder *b, const WMsg *m, json_object **ret) {
        _cleanup_(json_object_putp) json_object *o = NULL, *arm = NULL, *uses = NULL;
        _cleanup_free_ char *content = NULL;
        int r;

        r = msg_content(b, m, &content);
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
                const WPart *p = m->parts + j;
                json_object *v;

                if (p->type != CONV_PART_TOOL_USE || p->dropped)
                        continue;
                r = tool_use_json(b, p, &v);
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

static int builder_body(Builder *b, const char *conversation_id, const char *profile_arn, json_object **ret) {
        _cleanup_(json_object_putp) json_object *root = NULL, *state = NULL, *current = NULL, *history = NULL;
        json_object *v;
        int r;

        root = json_object_new_object();
        state = json_object_new_object();
        current = json_object_new_object();
        history = json_object_new_array();
        if (!root || !state || !current || !history)
                return -ENOMEM;

        for (size_t i = 0; i + 1 < b->n_msgs; i++) {
                const WMsg *m = b->msgs + i;

                if (m->role == CONV_ROLE_USER) {
                        _cleanup_(json_object_putp) json_object *u = NULL;

                        r = user_message_json(b, m, false, &u);
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
                        r = assistant_message_json(b, m, &v);
                        if (r < 0)
                                return r;
                }
                r = json_append(history, v);
                if (r < 0)
                        return r;
        }

        assert(b->msgs[b->n_msgs - 1].role == CONV_ROLE_USER);
        r = user_message_json(b, b->msgs + b->n_msgs - 1, true, &v);
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

static int builder_run(Builder *b, const KiroRequestParams *params, KiroRequest **ret) {
        const Conversation *c = b->c;
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_(kiro_request_freep) KiroRequest *req = NULL;
        _cleanup_free_ char *system = NULL;
        char id[SD_ID128_UUID_STRING_MAX];
        const char *body;
        size_t body_size, max = params && params->max_payload_bytes > 0 ? params->max_payload_bytes
                                                                         : KIRO_MAX_UPSTREAM_PAYLOAD_DEFAULT;
        int r;

        if (isempty(c->model_id))
                return fail(b, -EINVAL, "model: no Kiro model id for '%s'", strna(c->model));

        r = builder_copy_messages(b);
        if (r < 0)
                return r;
        /* tool_choice "none": the client's tools are not offered; tools the history uses still get
         * placeholder specs (rule 9), since Kiro refuses a history that names undeclared tools. Kiro has
         * no other tool_choice. */
        if (c->tool_choice != CONV_TOOL_CHOICE_NONE) {
                r = builder_prepare_tools(b);
                if (r < 0)
                        return r;
        }
        r = builder_system_text(b, &system);
        if (r < 0)
                return r;

        r = rule_system_prompt(b, system);
        if (r < 0)
                return r;
        rule_unknown_roles(b);
        r = rule_merge(b);
        if (r < 0)
                return r;
        r = rule_first_user(b);
        if (r < 0)
                return r;
        r = rule_trailing_assistant(b);
        if (r < 0)
                return r;
        r = rule_empty_content(b);
        if (r < 0)
                return r;
        r = rule_orphan_tool_results(b);
        if (r < 0)
                return r;
        rule_unanswered_tool_uses(b);
        r = rule_placeholder_tools(b);
        if (r < 0)
                return r;
        /* Rules 10–12 (aliases, long descriptions, schemas) were applied to each tool as it was added;
         * rule 10 for history tool uses is applied as they are serialised. */

        if (params && params->conversation_id) {
                if (!is_uuid(params->conversation_id))
                        return fail(b, -EINVAL, "conversation id '%s' is not a UUID", params->conversation_id);
                strcpy(id, params->conversation_id);
                r = 0;
        } else if (!isempty(c->session_id))
                r = kiro_conversation_id_from_session(c->session_id, id);
        else
                r = kiro_uuid4(id);
        if (r < 0)
                return r;

        r = builder_body(b, id, params ? params->profile_arn : NULL, &root);
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
                                        for (size_t k = 1; k <= 2; k++) {
                                                size_t l = 0;
                                                (void) json_object_to_json_string_length(
                                                        json_object_array_get_idx(history, drop + k), JSON_FLAGS, &l);
                                                est -= MIN(est, l + 1);
                                        }
                                        drop += 2;
                                }
                                if (json_object_array_del_idx(history, 1, drop) < 0)
                                        return -ENOMEM;
                                b->n_trimmed += drop;
                                body = json_object_to_json_string_length(root, JSON_FLAGS, &body_size);
                                if (!body)
                                        return -ENOMEM;
                        }
        }
        if (body_size > max)
                return fail(b, -EMSGSIZE,
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
        req->n_trimmed = b->n_trimmed;
        req->tool_aliases = b->aliases;
        b->aliases = (KiroToolAliases) {};

        *ret = TAKE_PTR(req);
        return 0;
}

int kiro_request_build(const Conversation *c, const KiroRequestParams *params, KiroRequest **ret,
                       char **ret_error) {
        _cleanup_(builder_done) Builder b = { .c = c };
        int r;

        assert(c);
        assert(ret);

        r = builder_run(&b, params, ret);
        if (r < 0 && ret_error)
                *ret_error = TAKE_PTR(b.error);
        return r;
}
