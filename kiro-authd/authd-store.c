/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The credential store: one 0600 JSON file per credential under <state>/credentials/. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "authd-store.h"
#include "fileio.h"
#include "log.h"

#define CREDENTIAL_FILE_MAX (1024 * 1024)

/* A directory that holds refresh tokens must be ours and closed to everyone else. Another owner is refused
 * (someone else could swap its content); access for group or others is taken away, with a warning. */
static int check_private_dir(int fd, const char *path) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Cannot stat '%s': %m", path);
        if (!S_ISDIR(st.st_mode))
                return log_error_errno(ENOTDIR, "'%s' is not a directory.", path);
        if (st.st_uid != geteuid())
                return log_error_errno(EPERM,
                                       "Refusing to use '%s': it is owned by UID %u, not by kiro-authd's user (UID %u). "
                                       "Fix it with 'chown -R %u %s'.",
                                       path, (unsigned) st.st_uid, (unsigned) geteuid(), (unsigned) geteuid(), path);
        if ((st.st_mode & 0077) != 0) {
                if (fchmod(fd, st.st_mode & 0700) < 0)
                        return log_error_errno(errno, "'%s' has mode %04o and cannot be made private: %m", path,
                                               (unsigned) (st.st_mode & 07777));
                log_warning("'%s' had mode %04o, open to other users; changed it to %04o.", path,
                            (unsigned) (st.st_mode & 07777), (unsigned) (st.st_mode & 0700));
        }
        return 0;
}

int store_open(const char *state_dir, Store *ret) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int state_fd = -EBADF, fd = -EBADF;
        int r;

        assert(state_dir);
        assert(ret);

        if (asprintf(&path, "%s/credentials", state_dir) < 0)
                return -ENOMEM;
        r = mkdir_p(state_dir, 0700);
        if (r < 0)
                return log_error_errno(r, "Cannot create state directory '%s': %m", state_dir);
        state_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (state_fd < 0)
                return log_error_errno(errno, "Cannot open state directory '%s': %m", state_dir);
        r = check_private_dir(state_fd, state_dir);
        if (r < 0)
                return r;
        if (mkdirat(state_fd, "credentials", 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create '%s': %m", path);
        /* Not through a symlink: the files below hold refresh tokens and are written as kiro-authd. */
        fd = openat(state_fd, "credentials", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ELOOP || errno == ENOTDIR)
                        return log_error_errno(errno, "Refusing to use '%s': it is a symlink or not a directory.",
                                               path);
                return log_error_errno(errno, "Cannot open '%s': %m", path);
        }
        r = check_private_dir(fd, path);
        if (r < 0)
                return r;

        /* Temporary files of an interrupted write are garbage: the rename never happened. */
        int dfd = dup(fd);
        DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
        if (d) {
                struct dirent *de;
                while ((de = readdir(d)))
                        if (startswith(de->d_name, ".#"))
                                (void) unlinkat(fd, de->d_name, 0);
                closedir(d);
        } else if (dfd >= 0)
                close(dfd);

        *ret = (Store) { .dir_fd = TAKE_FD(fd), .path = TAKE_PTR(path) };
        return 0;
}

void store_close(Store *s) {
        assert(s);

        s->dir_fd = safe_close(s->dir_fd);
        s->path = (free(s->path), NULL);
}

static int file_name(const char *id, char *buf, size_t n) {
        int r = snprintf(buf, n, "%s.json", id);
        return r < 0 || (size_t) r >= n ? -ENAMETOOLONG : 0;
}

int store_load_all(Store *s, StoreLoadFunc on_credential, StoreBadFunc on_bad, void *userdata) {
        assert(s);
        assert(s->dir_fd >= 0);
        assert(on_credential);
        assert(on_bad);

        _cleanup_strv_free_ char **names = NULL;
        int r;

        int dfd = dup(s->dir_fd);
        if (dfd < 0)
                return -errno;
        DIR *d = fdopendir(dfd);
        if (!d) {
                close(dfd);
                return -errno;
        }
        r = dir_list_suffix(d, ".json", &names);
        closedir(d);
        if (r < 0)
                return r;

        STRV_FOREACH(n, names) {
                /* O_NONBLOCK: a FIFO must not block start-up; only regular files are read. */
                _cleanup_close_ int fd = openat(s->dir_fd, *n, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
                char *text = NULL;
                size_t size = 0;
                const char *reason = NULL;
                CredentialRecord *c = NULL;
                struct stat st;

                if (fd < 0) {
                        on_bad(*n, -errno, errno == ELOOP ? "is a symlink" : "cannot open", userdata);
                        continue;
                }
                if (fstat(fd, &st) < 0) {
                        on_bad(*n, -errno, "cannot stat", userdata);
                        continue;
                }
                if (!S_ISREG(st.st_mode)) {
                        on_bad(*n, -EBADFD, "not a regular file", userdata);
                        continue;
                }
                r = read_full_fd(fd, CREDENTIAL_FILE_MAX, &text, &size);
                if (r < 0) {
                        on_bad(*n, r, r == -EFBIG ? "file too large" : "cannot read", userdata);
                        continue;
                }
                r = credential_record_from_json(text, size, &c, &reason);
                text = erase_and_free_sized(text, size);
                if (r < 0) {
                        on_bad(*n, r, reason ?: "cannot parse", userdata);
                        continue;
                }
                /* The file name is the id: a renamed file would otherwise shadow another credential. */
                char expected[128];
                if (file_name(c->id, expected, sizeof expected) < 0 || !streq(expected, *n)) {
                        on_bad(*n, -EBADMSG, "file name does not match the 'id' inside", userdata);
                        credential_record_free(c);
                        continue;
                }
                r = on_credential(c, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

int store_save(Store *s, CredentialRecord *c) {
        assert(s);
        assert(s->dir_fd >= 0);
        assert(c);
        assert(c->id);

        char name[128];
        _cleanup_free_ char *text = NULL;
        int r;

        r = file_name(c->id, name, sizeof name);
        if (r < 0)
                return r;
        r = credential_record_to_json(c, &text);
        if (r < 0)
                return r;
        size_t n = strlen(text);
        r = write_file_atomic_at(s->dir_fd, name, text, n, 0600);
        explicit_bzero(text, n);
        return r;
}

int store_remove(Store *s, const char *id) {
        assert(s);
        assert(s->dir_fd >= 0);
        assert(id);

        char name[128];
        int r = file_name(id, name, sizeof name);
        if (r < 0)
                return r;
        if (unlinkat(s->dir_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        if (fsync(s->dir_fd) < 0)
                return -errno;
        return 0;
}
