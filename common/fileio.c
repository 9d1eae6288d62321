/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bounded reads and atomic file replacement. */
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "fileio.h"

/* Grows a buffer that may hold secrets: realloc() would leave the old copy in freed memory. */
static int grow_wiped(char **buf, size_t used, size_t *allocated, size_t n) {
        char *p = malloc(n);
        if (!p)
                return -ENOMEM;
        if (*buf) {
                memcpy(p, *buf, used);
                erase_and_free_sized(*buf, *allocated);
        }
        *buf = p;
        *allocated = n;
        return 0;
}

int read_full_fd(int fd, size_t max, char **ret, size_t *ret_size) {
        char *buf = NULL;
        size_t size = 0, allocated = 0;
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                if ((uint64_t) st.st_size > max)
                        return -EFBIG;
                /* memfds and files are read from the start, whatever the offset the sender left. */
                if (lseek(fd, 0, SEEK_SET) < 0)
                        return -errno;
                /* Sized at once for the common case: no growth, no copies. */
                r = grow_wiped(&buf, 0, &allocated, (size_t) st.st_size + 4096 + 1);
                if (r < 0)
                        return r;
        }

        for (;;) {
                if (size + 4096 + 1 > allocated) {
                        r = grow_wiped(&buf, size, &allocated, MAX(allocated * 2, (size_t) 8192));
                        if (r < 0)
                                goto fail;
                }
                ssize_t k = read(fd, buf + size, allocated - size - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                if (k == 0)
                        break;
                size += (size_t) k;
                if (size > max) {
                        r = -EFBIG;
                        goto fail;
                }
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[size] = 0;
        *ret = buf;
        if (ret_size)
                *ret_size = size;
        return 0;

fail:
        erase_and_free_sized(buf, allocated);
        return r;
}

bool fd_is_memfd(int fd) {
        char path[64], target[64];
        ssize_t n;

        snprintf(path, sizeof path, "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof target - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        return startswith(target, "/memfd:");
}

int read_full_file(const char *path, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        return read_full_fd(fd, max, ret, ret_size);
}

static int write_all(int fd, const void *data, size_t size) {
        const char *p = data;
        while (size > 0) {
                ssize_t k = write(fd, p, size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                size -= (size_t) k;
        }
        return 0;
}

int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t size, mode_t mode) {
        char tmp[256];
        uint64_t rnd;
        int r;

        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                return -errno ?: -EIO;
        r = snprintf(tmp, sizeof tmp, ".#%s.%016llx", name, (unsigned long long) rnd);
        if (r < 0 || (size_t) r >= sizeof tmp)
                return -ENAMETOOLONG;

        _cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, data, size);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dirfd, tmp, 0);
                return r;
        }
        /* The rename is durable only once the directory itself is synced. From here on the new content is
         * what every reader gets: a failure must not read as "nothing happened". */
        if (fsync(dirfd) < 0)
                return 1;
        return 0;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);
        if (!p)
                return -ENOMEM;
        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int dir_list_suffix(DIR *d, const char *suffix, char ***ret) {
        _cleanup_strv_free_ char **names = NULL;
        size_t sl = strlen(suffix);
        struct dirent *de;
        int r;

        rewinddir(d);
        errno = 0;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (de->d_name[0] == '.' || l <= sl || !streq(de->d_name + l - sl, suffix))
                        continue;
                r = strv_extend(&names, de->d_name);
                if (r < 0)
                        return r;
        }
        if (errno != 0)
                return -errno;
        if (names)
                qsort(names, strv_length(names), sizeof(char *), cmp_str);
        *ret = TAKE_PTR(names);
        return 0;
}
