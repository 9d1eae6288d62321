/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Regions and URLs built from configured templates. */
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "url-util.h"

#define REGION_TEMPLATE "{region}"
/* Stands for the region while libcurl parses the template: a valid host label that no template uses. */
#define REGION_PLACEHOLDER "kirod-region-placeholder"

static bool is_lower(char c) {
        return c >= 'a' && c <= 'z';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

bool region_is_valid(const char *s) {
        size_t words = 0;

        if (!s || strlen(s) > REGION_MAX)
                return false;
        /* ^[a-z]{2} */
        if (!is_lower(s[0]) || !is_lower(s[1]))
                return false;
        s += 2;
        /* (-[a-z]+)+ then -[0-9]+$ */
        for (;;) {
                if (*s != '-')
                        return false;
                s++;
                if (is_lower(*s)) {
                        while (is_lower(*s))
                                s++;
                        words++;
                        continue;
                }
                if (!is_digit(*s) || words == 0)
                        return false;
                while (is_digit(*s))
                        s++;
                return *s == 0;
        }
}

int arn_get_region(const char *arn, char *buf, size_t n) {
        const char *p = arn;

        if (!arn || !startswith(arn, "arn:"))
                return -EINVAL;
        /* arn:partition:service:region:... */
        for (int i = 0; i < 3; i++) {
                p = strchr(p, ':');
                if (!p)
                        return -EINVAL;
                p++;
        }
        size_t l = strcspn(p, ":");
        if (p[l] != ':' || l == 0 || l > REGION_MAX || l >= n)
                return -EINVAL;
        memcpy(buf, p, l);
        buf[l] = 0;
        if (!region_is_valid(buf)) {
                buf[0] = 0;
                return -EINVAL;
        }
        return 0;
}

static size_t count(const char *s, const char *what) {
        size_t n = 0;
        for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
                n++;
        return n;
}

/* Replaces every 'from' in s by 'to'. */
static char *replace_all(const char *s, const char *from, const char *to) {
        size_t fl = strlen(from), tl = strlen(to), n = count(s, from);
        char *out = malloc(strlen(s) - n * fl + n * tl + 1), *o = out;
        if (!out)
                return NULL;
        while (*s) {
                if (startswith(s, from)) {
                        o = mempcpy(o, to, tl);
                        s += fl;
                } else
                        *o++ = *s++;
        }
        *o = 0;
        return out;
}

static void curl_freep(char **p) {
        curl_free(*p);
}
#define _cleanup_curl_free_ _cleanup_(curl_freep)

int url_from_template(const char *template, const char *region, const char *path, char **ret) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        _cleanup_curl_free_ char *scheme = NULL, *host = NULL, *old_path = NULL, *url = NULL, *check = NULL;
        _cleanup_free_ char *text = NULL, *new_host = NULL, *new_path = NULL;

        if (!template || !ret || !region_is_valid(region))
                return -EINVAL;
        if (strstr(template, REGION_PLACEHOLDER))
                return -EINVAL;

        text = replace_all(template, REGION_TEMPLATE, REGION_PLACEHOLDER);
        u = curl_url();
        if (!text || !u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, text, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return -EINVAL;
        if (!streq(scheme, "https") && !streq(scheme, "http"))
                return -EINVAL;
        /* Every "{region}" of the template must have landed in the host. */
        if (count(host, REGION_PLACEHOLDER) != count(template, REGION_TEMPLATE))
                return -EINVAL;

        new_host = replace_all(host, REGION_PLACEHOLDER, region);
        if (!new_host)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_HOST, new_host, 0) != CURLUE_OK)
                return -EINVAL;

        if (path) {
                if (curl_url_get(u, CURLUPART_PATH, &old_path, 0) != CURLUE_OK)
                        return -EINVAL;
                size_t l = strlen(old_path);
                while (l > 0 && old_path[l - 1] == '/')
                        l--;
                if (asprintf(&new_path, "%.*s%s%s", (int) l, old_path, path[0] == '/' ? "" : "/", path) < 0)
                        return -ENOMEM;
                if (curl_url_set(u, CURLUPART_PATH, new_path, 0) != CURLUE_OK)
                        return -EINVAL;
        }

        /* What libcurl will connect to is the host that was set, and nothing else. */
        if (curl_url_get(u, CURLUPART_HOST, &check, 0) != CURLUE_OK || !streq(check, new_host))
                return -EINVAL;
        if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
                return -EINVAL;
        char *s = strdup(url);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int url_expand_region(const char *template, const char *region, char **ret) {
        if (!template || !ret || !region_is_valid(region))
                return -EINVAL;
        char *s = replace_all(template, REGION_TEMPLATE, region);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}
