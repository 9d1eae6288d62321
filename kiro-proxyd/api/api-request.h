/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every front end checks in a request body before it becomes the conversation form: what one request
 * may cost (body parsing, messages, content parts, tools), text that is not UTF-8, fields whose JSON
 * values C cannot take as they are (NaN and infinities, integers past any sane range, strings with a NUL
 * inside), the ranges and types the official APIs enforce, and images. Each refusal is a
 * FAILURE_INVALID_REQUEST naming the field or the limit. */
#pragma once

#include "json-util.h"
#include "chat/chat-conversation.h"
#include "chat/chat-failure.h"

typedef struct ApiLimits {
        unsigned max_json_depth;        /* MaxJSONDepth= */
        size_t max_messages;            /* MaxMessages= */
        size_t max_content_parts;       /* MaxContentParts=: over all messages of a request */
        size_t max_tools;               /* MaxTools= */
} ApiLimits;

#define API_MAX_JSON_DEPTH_DEFAULT 64U
#define API_MAX_MESSAGES_DEFAULT 4096U
#define API_MAX_CONTENT_PARTS_DEFAULT 16384U
#define API_MAX_TOOLS_DEFAULT 512U
/* max_tokens and the like: above any model's output, below anything a client means as "no limit". */
#define API_MAX_TOKENS_MAX ((uint64_t) INT32_MAX)

#define API_LIMITS_DEFAULT                                              \
        ((ApiLimits) {                                                  \
                .max_json_depth = API_MAX_JSON_DEPTH_DEFAULT,           \
                .max_messages = API_MAX_MESSAGES_DEFAULT,               \
                .max_content_parts = API_MAX_CONTENT_PARTS_DEFAULT,     \
                .max_tools = API_MAX_TOOLS_DEFAULT,                     \
        })

/* The JSON containers (objects and arrays) a request within the limits can need; a body with more is
 * refused before json-c builds its tree, which costs about a kilobyte per object. */
size_t api_limits_max_containers(const ApiLimits *l);

/* How a front end names a place in the request: "messages[0].content" (OpenAI, Responses) or
 * "messages.0.content" (Anthropic). */
typedef enum ApiPathStyle {
        API_PATH_BRACKETS,
        API_PATH_DOTS,
        _API_PATH_STYLE_MAX,
        _API_PATH_STYLE_INVALID = -EINVAL,
} ApiPathStyle;

/* Parses a request body that must be a JSON object: first a linear scan that counts objects and arrays
 * (refused over api_limits_max_containers()) and checks that the text is UTF-8 as RFC 3629 defines it
 * (no overlong forms, no UTF-16 surrogates D800-DFFF, nothing past U+10FFFF, no stray or truncated
 * bytes) and that every \u escape of a surrogate is half of a pair; then json-c with the depth limit.
 * Invalid UTF-8 is refused naming the string (or key) that holds it, a lone surrogate escape as invalid
 * JSON (json-c would turn it into U+FFFD; Anthropic refuses it so). */
int api_parse_body(const char *body, size_t size, const ApiLimits *l, ApiPathStyle style, json_object **ret,
                   Failure *err);

/* The request header that names a client session for credential affinity, in every API. */
#define API_SESSION_HEADER "x-kirod-session"
/* Keys longer than this are kept as "sha256:" and their digest in hex, so a client cannot make the
 * selector hold megabytes per session. */
#define API_AFFINITY_KEY_MAX 128U

/* Sets c->affinity_key to key, replacing what an earlier source set; NULL or "" leaves it as it is. Call
 * it for the body's sources first (Anthropic session, then OpenAI `user`) and the x-kirod-session header
 * last, so the header wins. 0, or -ENOMEM/-EIO. */
int api_set_affinity_key(Conversation *c, const char *key);

/* Whether s is one of the strings given. */
static inline bool api_str_in(const char *s, const char *const *set) {
        for (; *set; set++)
                if (streq(s, *set))
                        return true;
        return false;
}
#define STR_IN(s, ...) api_str_in((s), (const char *const[]) { __VA_ARGS__, NULL })

/* n items of a list (what, e.g. "messages") against its limit (config_key, e.g. "MaxMessages"). */
int api_check_limit(const char *field, const char *what, size_t n, size_t max, const char *config_key, Failure *err);
/* The content parts of c against MaxContentParts=. */
int api_check_content_parts(const Conversation *c, const ApiLimits *l, Failure *err);

/* An optional string member. 0 and *ret = NULL when absent or null, 1 with *ret set; a non-string or a
 * string with a NUL inside is a failure naming field. */
int api_get_string(json_object *o, const char *key, const char *field, const char **ret, Failure *err);
/* An optional integer member in [min, max]. 0 when absent or null, 1 with *ret set; a fraction, NaN, an
 * infinity or a value out of range is a failure naming field. */
int api_get_integer(json_object *o, const char *key, const char *field, uint64_t min, uint64_t max, uint64_t *ret,
                    Failure *err);
/* An optional finite number in [min, max]. 0 when absent or null, 1 with *ret set. */
int api_get_number(json_object *o, const char *key, const char *field, double min, double max, double *ret,
                   Failure *err);
/* An optional boolean member. 0 when absent or null, 1 with *ret set. */
int api_get_bool(json_object *o, const char *key, const char *field, bool *ret, Failure *err);
/* An optional object member. 0 and *ret = NULL when absent or null, 1 with *ret set. */
int api_get_object(json_object *o, const char *key, const char *field, json_object **ret, Failure *err);
/* An optional string member that must be one of the NULL-terminated set. Like api_get_string(). */
int api_get_enum(json_object *o, const char *key, const char *field, const char *const *set, const char **ret,
                 Failure *err);

/* An image part as the front ends store it (ConvPart media_type and data): a "data:<type>;base64,…" URL,
 * or base64 with media_type. Refused naming field: an http(s) URL (Kiro cannot fetch one), a data: URL
 * that is not base64, a media type other than image/jpeg, png, gif or webp, data that is not base64. */
int api_check_image(const char *media_type, const char *data, const char *field, Failure *err);
