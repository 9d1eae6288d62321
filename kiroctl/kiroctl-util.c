/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers for kiroctl: sealed memfds and paths. */
#include <assert.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/mman.h>

#include "kiroctl-util.h"

int memfd_new_sealed(const char *name, const void *data, size_t size, int *ret_fd) {
        const char *p = data;

        assert(name);
        assert(data || size == 0);
        assert(ret_fd);

        _cleanup_close_ int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;

        for (size_t left = size; left > 0;) {
                ssize_t k = write(fd, p, left);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                left -= (size_t) k;
        }

        if (lseek(fd, 0, SEEK_SET) < 0)
                return -errno;
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;

        *ret_fd = TAKE_FD(fd);
        return 0;
}

int path_make_absolute_cwd(const char *path, char **ret) {
        char *p;

        assert(path);
        assert(ret);

        if (path[0] == '/')
                p = strdup(path);
        else {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);
                if (!cwd)
                        return -errno;
                if (asprintf(&p, "%s/%s", streq(cwd, "/") ? "" : cwd, path) < 0)
                        p = NULL;
        }
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int path_dirname(const char *path, char **ret) {
        const char *slash;
        char *d;

        assert(path);
        assert(ret);

        slash = strrchr(path, '/');
        if (!slash)
                d = strdup(".");
        else if (slash == path)
                d = strdup("/");
        else
                d = strndup(path, (size_t) (slash - path));
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int get_home_dir(char **ret) {
        const char *e = getenv("HOME");
        char *h;

        assert(ret);

        if (e && e[0] == '/')
                h = strdup(e);
        else {
                struct passwd *pw;

                errno = 0;
                pw = getpwuid(getuid());
                if (!pw || !pw->pw_dir || pw->pw_dir[0] != '/')
                        return errno > 0 ? -errno : -ENXIO;
                h = strdup(pw->pw_dir);
        }
        if (!h)
                return -ENOMEM;
        *ret = h;
        return 0;
}

int get_user_data_dir(char **ret) {
        const char *e = getenv("XDG_DATA_HOME");
        _cleanup_free_ char *home = NULL;
        char *d;
        int r;

        assert(ret);

        /* The XDG base directory spec says relative values are to be ignored. */
        if (e && e[0] == '/')
                d = strdup(e);
        else {
                r = get_home_dir(&home);
                if (r < 0)
                        return r;
                if (asprintf(&d, "%s/.local/share", home) < 0)
                        d = NULL;
        }
        if (!d)
                return -ENOMEM;
        *ret = d;
        return 0;
}

int shell_quote(const char *s, char **ret) {
        bool plain = !isempty(s);
        char *q, *p;

        assert(s);
        assert(ret);

        for (const char *c = s; *c && plain; c++)
                plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                        strchr("_-.+@:,/=%", *c);
        if (plain) {
                q = strdup(s);
                if (!q)
                        return -ENOMEM;
                *ret = q;
                return 0;
        }

        /* 'it'\''s' */
        q = malloc(strlen(s) * 4 + 3);
        if (!q)
                return -ENOMEM;
        p = q;
        *p++ = '\'';
        for (const char *c = s; *c; c++) {
                if (*c == '\'') {
                        memcpy(p, "'\\''", 4);
                        p += 4;
                } else
                        *p++ = *c;
        }
        *p++ = '\'';
        *p = 0;
        *ret = q;
        return 0;
}
