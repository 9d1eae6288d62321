/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request checks shared by the front ends. */
#include <math.h>

#include "api/api-request.h"

size_t api_limits_max_containers(const ApiLimits *l) {
        /* A message is an object and a content array, a part an object with perhaps a nested one (an image
         * source, a tool result's blocks); a tool's schema may nest deeply. */
        return 4 * (l->max_messages + l->max_content_parts) + 128 * l->max_tools + 1024;
}

/* Objects and arrays outside strings: the bytes that make json-c allocate a container. */
static size_t count_containers(const char *p, size_t size, size_t stop_after) {
        bool in_string = false;
        size_t n = 0;

        for (size_t i = 0; i < size; i++) {
                char c = p[i];
                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                } else if (c == '"')
                        in_string = true;
                else if ((c == '{' || c == '[') && ++n > stop_after)
                        break;
        }
        return n;
}

int api_parse_body(const char *body, size_t size, const ApiLimits *l, json_object **ret, Failure *err) {
        _cleanup_json_ json_object *o = NULL;
        const char *why = NULL;
        size_t max = api_limits_max_containers(l);
        int r;

        if (count_containers(body, size, max) > max)
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL,
                                   "The request body has more than %zu JSON objects and arrays, more than requests within "
                                   "MaxMessages=%zu, MaxContentParts=%zu and MaxTools=%zu can need.",
                                   max, l->max_messages, l->max_content_parts, l->max_tools);
        r = json_parse_bounded(body, size, (int) l->max_json_depth, &o, &why);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return failure_set(err, FAILURE_INVALID_REQUEST, NULL, "The request body is not valid JSON: %s.",
                                   strna(why));
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

int api_get_number(json_object *o, const char *key, const char *field, double *ret, Failure *err) {
        json_object *v = member(o, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a number.", field);
        double d = json_object_get_double(v);
        if (!isfinite(d))
                return failure_set(err, FAILURE_INVALID_REQUEST, field, "'%s' must be a finite number.", field);
        *ret = d;
        return 1;
}
