/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c helpers: bounded parsing, typed field access, cleanup. */
#pragma once

#include <stdint.h>
#include <string.h>

#include <json-c/json.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(json_object *, json_object_put);
#define _cleanup_json_ _cleanup_(json_object_putp)

/* Parses exactly one JSON value from buf[0..size) with nesting limited to max_depth. Trailing white space
 * is allowed, anything else is -EBADMSG. On error *ret_error (if given) points to a static description. */
int json_parse_bounded(const char *buf, size_t size, int max_depth, json_object **ret, const char **ret_error);
/* Like json_parse_bounded(), for text holding secrets: the tokener's string buffer is sized for the whole
 * input first (so it never grows by realloc() and leaves partial copies behind) and wiped afterwards.
 * (Every parse wipes the part of a cached tokener's buffer the input could have reached.) */
int json_parse_secret(const char *buf, size_t size, int max_depth, json_object **ret, const char **ret_error);
/* The length of the longest prefix of data[0..n) that may stand for itself inside a JSON string: no
 * control character (< 0x20), '"' or '\\'. Eight bytes at a time: streamed answers pass every byte of text
 * through this twice (checking Kiro's text, escaping ours). */
static inline size_t json_plain_span(const void *data, size_t n) {
        const unsigned char *p = data;
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t x, q, b;
                memcpy(&x, p + i, 8);
                q = x ^ (ones * '"');
                b = x ^ (ones * '\\');
                /* A byte below 0x20; a byte equal to '"'; to '\\' (the "has a zero byte" test on x ^ c). */
                if ((((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs)
                        break;
        }
        for (; i < n; i++)
                if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
                        break;
        return i;
}

/* Adds v under key, taking it: v NULL (a failed json_object_new_*()) or a failed add is -ENOMEM, and
 * v is released on failure. */
int json_add(json_object *o, const char *key, json_object *v);

/* Frees the tokeners json_parse_bounded() keeps for reuse (at exit, for leak checkers). */
void json_parse_cache_clear(void);

/* Field access. Return 0 and the value, -ENOENT when the key is missing or null, -EMEDIUMTYPE when it
 * has another type. The returned strings belong to the object. */
int json_get_string(json_object *o, const char *key, const char **ret);
int json_get_bool(json_object *o, const char *key, bool *ret);
int json_get_int64(json_object *o, const char *key, int64_t *ret);
int json_get_double(json_object *o, const char *key, double *ret);
int json_get_object(json_object *o, const char *key, json_object **ret);
int json_get_array(json_object *o, const char *key, json_object **ret);

/* Like json_get_string(), but NULL for missing or wrong type. */
const char *json_string_or_null(json_object *o, const char *key);

/* Sets key to a string copy (NULL deletes the key). */
int json_set_string(json_object *o, const char *key, const char *value);

/* Serializes compactly into a malloc'ed string. */
char *json_to_string_dup(json_object *o, int flags);

/* Serializes a tree holding secrets into a malloc'ed string of exactly *ret_size + 1 bytes, leaving no
 * copy in json-c's memory: json-c serializes into a print buffer owned by the object, grown by realloc().
 * A first pass with every string replaced by a dummy of the longest length it could escape to grows that
 * buffer to its final size holding no secret; the real pass then fits without realloc(); the result is
 * copied out and the print buffer wiped. The strings of o are changed and restored in between. */
int json_to_string_secret(json_object *o, int flags, char **ret, size_t *ret_size);

/* Wipes every string value in a JSON tree that holds secrets, before it is freed. */
void json_object_erase_strings(json_object *o);
