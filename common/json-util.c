/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* json-c helpers: bounded parsing, typed field access, cleanup. */
#include "json-util.h"

/* A tokener allocates a stack of max_depth entries: the daemons parse on every request and every upstream
 * event, so the last few are kept, one per depth (the daemons are single-threaded; so is this cache). */
#define TOKENER_CACHE 4
static struct {
        int depth;
        json_tokener *tok;
} tokener_cache[TOKENER_CACHE];

static json_tokener *tokener_get(int depth) {
        for (size_t i = 0; i < TOKENER_CACHE; i++)
                if (tokener_cache[i].tok && tokener_cache[i].depth == depth) {
                        json_tokener *t = tokener_cache[i].tok;
                        tokener_cache[i].tok = NULL;
                        json_tokener_reset(t);
                        return t;
                }
        return json_tokener_new_ex(depth);
}

static void tokener_put(json_tokener *t, int depth) {
        for (size_t i = 0; i < TOKENER_CACHE; i++)
                if (!tokener_cache[i].tok) {
                        tokener_cache[i].tok = t;
                        tokener_cache[i].depth = depth;
                        return;
                }
        json_tokener_free(t);
}

void json_parse_cache_clear(void) {
        for (size_t i = 0; i < TOKENER_CACHE; i++)
                if (tokener_cache[i].tok) {
                        json_tokener_free(tokener_cache[i].tok);
                        tokener_cache[i].tok = NULL;
                }
}

int json_parse_bounded(const char *buf, size_t size, int max_depth, json_object **ret, const char **ret_error) {
        json_tokener *tok;
        json_object *o;

        if (size > INT32_MAX) {
                if (ret_error)
                        *ret_error = "document too large";
                return -EFBIG;
        }
        tok = tokener_get(max_depth);
        if (!tok)
                return -ENOMEM;
        o = json_tokener_parse_ex(tok, buf, (int) size);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t consumed = json_tokener_get_parse_end(tok);
        /* json_tokener_reset() (json-c 0.16) keeps a pending high surrogate: after a document that
         * failed right behind "\ud83d", the next document's first \u escape would become U+FFFD. Only a
         * tokener that finished its document goes back to the cache. */
        if (jerr == json_tokener_success)
                tokener_put(tok, max_depth);
        else
                json_tokener_free(tok);

        if (jerr != json_tokener_success || !o) {
                if (ret_error)
                        *ret_error = jerr == json_tokener_continue ? "unexpected end of input"
                                                                   : json_tokener_error_desc(jerr);
                json_object_put(o);
                return -EBADMSG;
        }
        for (size_t i = consumed; i < size; i++)
                if (!strchr(" \t\r\n", buf[i])) {
                        if (ret_error)
                                *ret_error = "trailing data after the JSON value";
                        json_object_put(o);
                        return -EBADMSG;
                }
        *ret = o;
        return 0;
}

static int get_typed(json_object *o, const char *key, json_type type, json_object **ret) {
        json_object *v;
        if (!o || !json_object_is_type(o, json_type_object))
                return -EMEDIUMTYPE;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return -ENOENT;
        if (!json_object_is_type(v, type))
                return -EMEDIUMTYPE;
        *ret = v;
        return 0;
}

int json_get_string(json_object *o, const char *key, const char **ret) {
        json_object *v;
        int r = get_typed(o, key, json_type_string, &v);
        if (r < 0)
                return r;
        *ret = json_object_get_string(v);
        return 0;
}

int json_get_bool(json_object *o, const char *key, bool *ret) {
        json_object *v;
        int r = get_typed(o, key, json_type_boolean, &v);
        if (r < 0)
                return r;
        *ret = json_object_get_boolean(v);
        return 0;
}

int json_get_int64(json_object *o, const char *key, int64_t *ret) {
        json_object *v;
        int r = get_typed(o, key, json_type_int, &v);
        if (r == -EMEDIUMTYPE && get_typed(o, key, json_type_double, &v) >= 0) {
                double d = json_object_get_double(v);
                /* Range first: casting NaN, infinity or anything beyond ±2^63 is undefined. */
                if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != (double) (int64_t) d)
                        return -EMEDIUMTYPE;
                *ret = (int64_t) d;
                return 0;
        }
        if (r < 0)
                return r;
        errno = 0;
        *ret = json_object_get_int64(v);
        return 0;
}

int json_get_double(json_object *o, const char *key, double *ret) {
        json_object *v;
        int r = get_typed(o, key, json_type_double, &v);
        if (r == -EMEDIUMTYPE)
                r = get_typed(o, key, json_type_int, &v);
        if (r < 0)
                return r;
        *ret = json_object_get_double(v);
        return 0;
}

int json_get_object(json_object *o, const char *key, json_object **ret) {
        return get_typed(o, key, json_type_object, ret);
}

int json_get_array(json_object *o, const char *key, json_object **ret) {
        return get_typed(o, key, json_type_array, ret);
}

const char *json_string_or_null(json_object *o, const char *key) {
        const char *s;
        return json_get_string(o, key, &s) < 0 ? NULL : s;
}

int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int json_set_string(json_object *o, const char *key, const char *value) {
        if (!value) {
                json_object_object_del(o, key);
                return 0;
        }
        return json_add(o, key, json_object_new_string(value));
}

char *json_to_string_dup(json_object *o, int flags) {
        const char *s = json_object_to_json_string_ext(o, flags);
        return s ? strdup(s) : NULL;
}

void json_object_erase_strings(json_object *o) {
        if (!o)
                return;
        switch (json_object_get_type(o)) {
        case json_type_string: {
                /* json-c owns the buffer; overwrite it in place before release. */
                char *s = (char *) json_object_get_string(o);
                explicit_bzero(s, (size_t) json_object_get_string_len(o));
                break;
        }
        case json_type_object: {
                json_object_object_foreach(o, k, v) {
                        (void) k;
                        json_object_erase_strings(v);
                }
                break;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++)
                        json_object_erase_strings(json_object_array_get_idx(o, i));
                break;
        default:
                break;
        }
}
