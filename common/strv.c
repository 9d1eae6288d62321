/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* String vectors. */
#include "macro.h"

int strv_extend(char ***l, const char *s) {
        size_t n = strv_length(*l);
        _cleanup_free_ char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        char **nl = realloc(*l, sizeof(char *) * (n + 2));
        if (!nl)
                return -ENOMEM;
        nl[n] = TAKE_PTR(c);
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_split(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        const char *p = s;
        int r;

        /* An empty string gives an empty (non-NULL) vector. */
        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (;;) {
                p += strspn(p, " \t\n");
                if (!*p)
                        break;
                size_t n = strcspn(p, " \t\n");
                _cleanup_free_ char *w = strndup(p, n);
                if (!w)
                        return -ENOMEM;
                r = strv_extend(&l, w);
                if (r < 0)
                        return r;
                p += n;
        }
        *ret = TAKE_PTR(l);
        return 0;
}
