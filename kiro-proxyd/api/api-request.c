/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request checks shared by the front ends. */
#include <assert.h>
#include <math.h>
#include <strings.h>

#include "buf.h"
#include "hash-util.h"
#include "api/api-request.h"

size_t api_limits_max_containers(const ApiLimits *l) {
        /* A message is an object and a content array, a part an object with perhaps a nested one (an image
         * source, a tool result's blocks); a tool's schema may nest deeply. */
        return 4 * (l->max_messages + l->max_content_parts) + 128 * l->max_tools + 1024;
}

/* The length of the UTF-8 character at p (left bytes available), or 0 when it is not one: RFC 3629's
 * UTF8-char, which leaves out overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
static size_t utf8_char(const unsigned char *p, size_t left) {
        unsigned char c = p[0], lo = 0x80, hi = 0xBF;
        size_t n;

        if (c < 0x80)
                return 1;
        if (c >= 0xC2 && c <= 0xDF)
                n = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
                n = 3;
                if (c == 0xE0)
                        lo = 0xA0;      /* overlong below U+0800 */
                else if (c == 0xED)
                        hi = 0x9F;      /* U+D800..U+DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
                n = 4;
                if (c == 0xF0)
                        lo = 0x90;      /* overlong below U+10000 */
                else if (c == 0xF4)
                        hi = 0x8F;      /* past U+10FFFF */
        } else
                return 0;               /* 0x80..0xC1 (continuation, overlong 2-byte), 0xF5..0xFF */
        if (left < n || p[1] < lo || p[1] > hi)
                return 0;
        for (size_t k = 2; k < n; k++)
                if ((p[k] & 0xC0) != 0x80)
                        return 0;
        return n;
}

/* The value of the 4 hex digits at p, or -1. */
static int hex4(const unsigned char *p) {
        int v = 0;
        for (size_t k = 0; k < 4; k++) {
                unsigned char c = p[k];
                int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
                        c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                if (d < 0)
                        return -1;
                v = v << 4 | d;
        }
        return v;
}

/* The length of the prefix of p[0..n) that is ASCII other than '"' and '\\': what needs no look inside a
 * string. */
static size_t string_plain_span(const unsigned char *p, size_t n) {
        const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        size_t i = 0;

        for (; i + 8 <= n; i += 8) {
                uint64_t x, q, b;
                memcpy(&x, p + i, 8);
                q = x ^ (ones * '"');
                b = x ^ (ones * '\\');
                /* A byte >= 0x80; a byte equal to '"'; to '\\' (the "has a zero byte" test on x ^ c). */
                if ((x | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs)
                        break;
        }
        for (; i < n; i++)
                if (p[i] >= 0x80 || p[i] == '"' || p[i] == '\\')
                        break;
        return i;
}

typedef struct BodyScan {
        size_t containers;      /* objects and arrays outside strings (counting stops past the limit) */
        size_t bad_utf8;        /* offset of the first byte that is not UTF-8, or SIZE_MAX */
        size_t lone_surrogate;  /* offset of the first \u escape of an unpaired surrogate, or SIZE_MAX */
} BodyScan;

/* One pass over the body: the bytes that make json-c allocate a container, the UTF-8 check, and the
 * surrogate escapes json-c would silently turn into U+FFFD. */
static void scan_body(const char *body, size_t size, size_t stop_after, BodyScan *ret) {
        const unsigned char *p = (const unsigned char *) body;
        BodyScan s = { .bad_utf8 = SIZE_MAX, .lone_surrogate = SIZE_MAX };
        bool in_string = false;

        for (size_t i = 0; i < size; i++) {
                unsigned char c = p[i];
                if (c >= 0x80) {
                        size_t n = utf8_char(p + i, size - i);
                        if (n == 0) {
                                if (s.bad_utf8 == SIZE_MAX)
                                        s.bad_utf8 = i;
                        } else
                                i += n - 1;
                } else if (in_string) {
                        /* Plain ASCII text, the bulk of a request, eight bytes at a time. */
                        if (c != '"' && c != '\\') {
                                i += string_plain_span(p + i + 1, size - i - 1);
                                continue;
                        }
                        if (c == '\\' && i + 1 < size && p[i + 1] == 'u' && size - i >= 6) {
                                int u = hex4(p + i + 2), u2 = -1;
                                if (u >= 0xD800 && u <= 0xDBFF && size - i >= 12 && p[i + 6] == '\\' && p[i + 7] == 'u')
                                        u2 = hex4(p + i + 8);
                                if (u >= 0xD800 && u <= 0xDBFF && u2 >= 0xDC00 && u2 <= 0xDFFF)
                                        i += 11;
                                else if (u >= 0xD800 && u <= 0xDFFF) {
                                        if (s.lone_surrogate == SIZE_MAX)
                                                s.lone_surrogate = i;
                                        i += 5;
                                } else if (u >= 0)
                                        i += 5;
                                else
                                        i++;    /* not an escape json-c takes: it refuses the body */
                        } else if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if ((c == '{' || c == '[') && ++s.containers > stop_after)
                        break;
        }
        *ret = s;
}

static bool utf8_valid(const char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                size_t k = utf8_char((const unsigned char *) s + i, n - i);
                if (k == 0)
                        return false;
                i += k;
        }
        return true;
}

static int path_push_key(Buf *path, const char *key) {
        return path->size > 0 ? buf_putf(path, ".%s", key) : buf_puts(path, key);
}

/* The first string or key of v, in document order, that is not UTF-8: true with its place in path. */
static int find_bad_utf8(json_object *v, ApiPathStyle style, Buf *path) {
        size_t mark = path->size;
        int r;

        if (json_object_is_type(v, json_type_string))
                return !utf8_valid(json_object_get_string(v), (size_t) json_object_get_string_len(v));
        if (json_object_is_type(v, json_type_object)) {
                json_object_object_foreach(v, key, sub) {
                        r = path_push_key(path, key);
                        if (r < 0)
                                return r;
                        if (!utf8_valid(key, strlen(key)))
                                return 1;
                        r = find_bad_utf8(sub, style, path);
                        if (r != 0)
                                return r;
                        path->size = mark;
                        path->data[mark] = 0;
                }
        } else if (json_object_is_type(v, json_type_array))
                for (size_t i = 0; i < json_object_array_length(v); i++) {
                        r = style == API_PATH_DOTS ? buf_putf(path, ".%zu", i) : buf_putf(path, "[%zu]", i);
                        if (r < 0)
                                return r;
                        r = find_bad_utf8(json_object_array_get_idx(v, i), style, path);
                        if (r != 0)
                                return r;
                        path->size = mark;
                        path->data[mark] = 0;
                }
        return 0;
}

int api_parse_body(const char *body, size_t size, const ApiLimits *l, ApiPathStyle style, json_object **ret,
                   Failure *err) {
        _cleanup_json_ json_object *o = NULL;
        const char *why = NULL;
        size_t max = api_limits_max_containers(l);
        BodyScan scan;
        int r;

        scan_body(body, size, max, &scan);
        if (scan.containers > max)
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL,
                                   "The request body has more than %zu JSON objects and arrays, more than requests within "
                                   "MaxMessages=%zu, MaxContentParts=%zu and MaxTools=%zu can need.",
                                   max, l->max_messages, l->max_content_parts, l->max_tools);
        if (scan.lone_surrogate != SIZE_MAX)
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL,
                                   "The request body is not valid JSON: the escape '%.6s' at byte %zu is half of a UTF-16 "
                                   "surrogate pair without its other half.", body + scan.lone_surrogate, scan.lone_surrogate);
        r = json_parse_bounded(body, size, (int) l->max_json_depth, &o, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL, "The request body is not valid JSON: %s.",
                                   strna(why));
        if (scan.bad_utf8 != SIZE_MAX) {
                _cleanup_(buf_done) Buf path = {};
                r = find_bad_utf8(o, style, &path);
                if (r < 0)
                        return r;
                if (r > 0 && path.size > 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, path.data,
                                           "'%s' is not valid UTF-8 (an overlong form, a UTF-16 surrogate, a code point "
                                           "past U+10FFFF or a stray byte).", path.data);
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL,
                                   "The request body is not valid UTF-8 (byte %zu).", scan.bad_utf8);
        }
        if (!json_object_is_type(o, json_type_object))
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL, "The request body must be a JSON object.");
        *ret = TAKE_PTR(o);
        return 0;
}

int api_check_limit(const char *field, const char *what, size_t n, size_t max, const char *config_key, Failure *err) {
        if (n <= max)
                return 0;
        return failure_set(err, FAILURE_INVALID_REQUEST, field,
                           "'%s': %zu %s are over this proxy's limit of %zu (%s=).", field, n, what, max, config_key);
}

int api_check_content_parts(const Conversation *c, const ApiLimits *l, Failure *err) {
        size_t n = 0;
        for (size_t i = 0; i < c->n_messages; i++)
                n += c->messages[i].n_parts;
        return api_check_limit("messages", "content parts", n, l->max_content_parts, "MaxContentParts", err);
}

static json_object *member(json_object *o, const char *key) {
        json_object *v = NULL;
        return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

int api_get_string(json_object *o, const char *key, const char *field, const char **ret, Failure *err) {
        json_object *v = member(o, key);

        if (!v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a string.", field);
        const char *s = json_object_get_string(v);
        /* A NUL inside would cut the string short wherever it is used as a C string. */
        if (strlen(s) != (size_t) json_object_get_string_len(v))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must not contain a NUL character.", field);
        *ret = s;
        return 1;
}

int api_get_integer(json_object *o, const char *key, const char *field, uint64_t min, uint64_t max, uint64_t *ret,
                    Failure *err) {
        json_object *v = member(o, key);
        uint64_t n;

        if (!v)
                return 0;
        if (json_object_is_type(v, json_type_int)) {
                /* json-c keeps integers as int64 or uint64, clamping larger ones to UINT64_MAX: anything past
                 * max (far below) is refused, whatever it was. */
                if (json_object_get_int64(v) < 0)
                        goto range;
                n = json_object_get_uint64(v);
        } else if (json_object_is_type(v, json_type_double)) {
                double d = json_object_get_double(v);
                /* Compared as doubles before any cast: casting NaN or 1e30 to an integer is undefined. */
                if (!isfinite(d))
                        return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be an integer.", field);
                if (d < (double) min || d > (double) max)
                        goto range;
                n = (uint64_t) d;
                if ((double) n != d)
                        return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be an integer.", field);
        } else
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be an integer.", field);
        if (n < min || n > max)
                goto range;
        *ret = n;
        return 1;
range:
        return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be an integer from %llu to %llu.", field,
                           (unsigned long long) min, (unsigned long long) max);
}

int api_get_number(json_object *o, const char *key, const char *field, double min, double max, double *ret,
                   Failure *err) {
        json_object *v = member(o, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a number.", field);
        double d = json_object_get_double(v);
        if (!isfinite(d))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a finite number.", field);
        if (d < min || d > max)
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a number from %g to %g.", field,
                                   min, max);
        *ret = d;
        return 1;
}

int api_get_bool(json_object *o, const char *key, const char *field, bool *ret, Failure *err) {
        json_object *v = member(o, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a boolean.", field);
        *ret = json_object_get_boolean(v);
        return 1;
}

int api_get_object(json_object *o, const char *key, const char *field, json_object **ret, Failure *err) {
        json_object *v = member(o, key);

        if (!v) {
                *ret = NULL;
                return 0;
        }
        if (!json_object_is_type(v, json_type_object))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be an object.", field);
        *ret = v;
        return 1;
}

int api_get_enum(json_object *o, const char *key, const char *field, const char *const *set, const char **ret,
                 Failure *err) {
        _cleanup_(buf_done) Buf names = {};
        const char *s;
        int r;

        r = api_get_string(o, key, field, &s, err);
        if (r <= 0) {
                *ret = NULL;
                return r;
        }
        for (const char *const *i = set; *i; i++)
                if (streq(s, *i)) {
                        *ret = s;
                        return 1;
                }
        for (const char *const *i = set; *i; i++)
                if (buf_putf(&names, "%s'%s'", i == set ? "" : i[1] ? ", " : " or ", *i) < 0)
                        return -ENOMEM;
        return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be %s.", field, strempty(names.data));
}

static bool base64_valid(const char *s) {
        static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t n = strspn(s, chars), pad = strspn(s + n, "=");

        /* Padding only at the end, at most two, then a whole number of 4-character groups; unpadded, a
         * length no decoder refuses. */
        if (n == 0 || s[n + pad] != 0 || pad > 2)
                return false;
        return pad > 0 ? (n + pad) % 4 == 0 : n % 4 != 1;
}

int api_check_image(const char *media_type, const char *data, const char *field, Failure *err) {
        const char *mt = media_type, *b64 = data;
        size_t mt_len = mt ? strlen(mt) : 0;

        if (isempty(data))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s': the image has no data.", field);
        if (strncasecmp(data, "data:", 5) == 0) {
                const char *comma = strchr(data, ',');
                if (!comma)
                        return failure_set(err, FAILURE_INVALID_REQUEST, field,
                                           "'%s' is not a data: URL (data:<media type>;base64,<data>).", field);
                if (comma - data < 5 + 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
                        return failure_set(err, FAILURE_INVALID_REQUEST, field,
                                           "'%s': the image data: URL must be base64-encoded (data:<media type>;base64,…).",
                                           field);
                mt = data + 5;
                mt_len = strcspn(mt, ";,");
                b64 = comma + 1;
        } else if (strncasecmp(data, "http://", 7) == 0 || strncasecmp(data, "https://", 8) == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, field,
                                   "'%s': image URLs are not supported; send the image inline as base64 (a data: URL).",
                                   field);
        if (mt_len == 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s': the image has no media type.", field);
        if (!conv_image_format(mt, mt_len))
                return failure_set(err, FAILURE_INVALID_REQUEST, field,
                                   "'%s': the image type '%.*s' is not supported (image/jpeg, image/png, image/gif and "
                                   "image/webp are).", field, (int) MIN(mt_len, (size_t) 100), mt);
        if (!base64_valid(b64))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s': the image data is not valid base64.", field);
        return 0;
}

int api_set_affinity_key(Conversation *c, const char *key) {
        char *k = NULL;

        assert(c);

        if (isempty(key))
                return 0;
        if (strlen(key) <= API_AFFINITY_KEY_MAX)
                k = strdup(key);
        else {
                uint8_t d[SHA256_DIGEST_SIZE];
                char hex[2 * SHA256_DIGEST_SIZE + 1];
                int r = sha256(key, strlen(key), d);
                if (r < 0)
                        return r;
                if (asprintf(&k, "sha256:%s", hex_encode(d, sizeof d, hex)) < 0)
                        k = NULL;
        }
        if (!k)
                return -ENOMEM;
        free(c->affinity_key);
        c->affinity_key = k;
        return 0;
}
