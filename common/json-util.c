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

/* The tokener's string buffer keeps the last strings it parsed; none of the input survives the parse. A
 * string of an input of size bytes reaches at most size + 1 bytes of it. */
static void tokener_wipe(json_tokener *t, size_t size) {
        struct printbuf *pb = t->pb;
        if (pb && pb->buf && pb->size > 0)
                explicit_bzero(pb->buf, MIN((size_t) pb->size, size + 1));
        if (pb)
                printbuf_reset(pb);
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

static int parse(const char *buf, size_t size, int max_depth, bool secret, json_object **ret,
                 const char **ret_error) {
        json_tokener *tok;
        json_object *o;

        if (size > INT32_MAX - 2) {
                if (ret_error)
                        *ret_error = "document too large";
                return -EFBIG;
        }
        tok = secret ? json_tokener_new_ex(max_depth) : tokener_get(max_depth);
        if (!tok)
                return -ENOMEM;
        if (secret && tok->pb) {
                if (printbuf_memset(tok->pb, 0, 0, (int) size + 2) < 0) {
                        json_tokener_free(tok);
                        return -ENOMEM;
                }
                printbuf_reset(tok->pb);
        }
        o = json_tokener_parse_ex(tok, buf, (int) size);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t consumed = json_tokener_get_parse_end(tok);
        tokener_wipe(tok, size);
        /* json_tokener_reset() (json-c 0.16) keeps a pending high surrogate: after a document that
         * failed right behind "\ud83d", the next document's first \u escape would become U+FFFD. Only a
         * tokener that finished its document goes back to the cache. */
        if (secret || jerr != json_tokener_success)
                json_tokener_free(tok);
        else
                tokener_put(tok, max_depth);

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

int json_parse_bounded(const char *buf, size_t size, int max_depth, json_object **ret, const char **ret_error) {
        return parse(buf, size, max_depth, false, ret, ret_error);
}

int json_parse_secret(const char *buf, size_t size, int max_depth, json_object **ret, const char **ret_error) {
        return parse(buf, size, max_depth, true, ret, ret_error);
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
                /* Range first: converting a double outside int64_t (or NaN) is undefined behaviour.
                 * 0x1p63 is exactly 2^63, the first value that does not fit. */
                if (!(d >= -0x1p63 && d < 0x1p63) || d != (double) (int64_t) d)
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

typedef struct SavedString {
        json_object *v;
        char *text;     /* the real value, wiped when restored */
        size_t len;
} SavedString;

typedef struct SavedStrings {
        SavedString *s;
        size_t n, allocated, longest;
} SavedStrings;

static int collect_strings(json_object *o, SavedStrings *acc) {
        int r;

        switch (json_object_get_type(o)) {
        case json_type_string: {
                if (acc->n == acc->allocated) {
                        size_t n = MAX(acc->allocated * 2, (size_t) 16);
                        SavedString *p = reallocarray(acc->s, n, sizeof *p);
                        if (!p)
                                return -ENOMEM;
                        acc->s = p;
                        acc->allocated = n;
                }
                acc->s[acc->n++] = (SavedString) { .v = o, .len = (size_t) json_object_get_string_len(o) };
                acc->longest = MAX(acc->longest, acc->s[acc->n - 1].len);
                return 0;
        }
        case json_type_object: {
                json_object_object_foreach(o, k, v) {
                        (void) k;
                        if (v && (r = collect_strings(v, acc)) < 0)
                                return r;
                }
                return 0;
        }
        case json_type_array:
                for (size_t i = 0; i < json_object_array_length(o); i++) {
                        json_object *v = json_object_array_get_idx(o, i);
                        if (v && (r = collect_strings(v, acc)) < 0)
                                return r;
                }
                return 0;
        default:
                return 0;
        }
}

/* Undoes the dummies, the last first: a string object that sits in the tree twice was saved twice, the
 * second time with its dummy. */
static void restore_strings(SavedStrings *acc) {
        for (size_t i = acc->n; i > 0; i--) {
                SavedString *e = acc->s + i - 1;
                if (!e->text)
                        continue;
                /* Shorter than the dummy: json-c copies it into the dummy's buffer, nothing is freed. */
                (void) json_object_set_string_len(e->v, e->text, (int) e->len);
                erase_and_free_sized(e->text, e->len + 1);
                e->text = NULL;
        }
        free(acc->s);
}

int json_to_string_secret(json_object *o, int flags, char **ret, size_t *ret_size) {
        _cleanup_free_ char *dummy = NULL;
        SavedStrings acc = {};
        const char *s;
        size_t len;
        int r;

        r = collect_strings(o, &acc);
        if (r < 0 || acc.longest > INT32_MAX / 6 - 1) {
                free(acc.s);
                return r < 0 ? r : -EFBIG;
        }
        /* The longest escape of a byte is "\u00XX", six characters. */
        dummy = malloc(acc.longest * 6 + 1);
        if (!dummy) {
                free(acc.s);
                return -ENOMEM;
        }
        memset(dummy, 'x', acc.longest * 6);
        dummy[acc.longest * 6] = 0;

        for (size_t i = 0; i < acc.n; i++) {
                SavedString *e = acc.s + i;
                char *t = malloc(e->len + 1);
                if (!t) {
                        restore_strings(&acc);
                        return -ENOMEM;
                }
                memcpy(t, json_object_get_string(e->v), e->len + 1);
                e->text = t;
                explicit_bzero((char *) json_object_get_string(e->v), e->len);
                if (json_object_set_string_len(e->v, dummy, (int) (e->len * 6)) == 0) {
                        restore_strings(&acc);
                        return -ENOMEM;
                }
        }
        s = json_object_to_json_string_length(o, flags, &len);
        if (s)
                explicit_bzero((char *) s, len);
        restore_strings(&acc);
        if (!s)
                return -ENOMEM;

        s = json_object_to_json_string_length(o, flags, &len);
        if (!s)
                return -ENOMEM;
        char *copy = malloc(len + 1);
        if (copy)
                memcpy(copy, s, len + 1);
        explicit_bzero((char *) s, len);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        if (ret_size)
                *ret_size = len;
        return 0;
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
