/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Turning the user's credential sources into the sealed memfds that Import() receives. */
#include <assert.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>

#include "fileio.h"
#include "json-util.h"
#include "kiroctl-import.h"
#include "kiroctl-snapshot.h"
#include "kiroctl-util.h"

static int error_set_path(ErrorInfo *e, ErrorContext context, int error, const char *path, const char *detail) {
        int r = error_info_set_detail(e, context, error, detail ? "%s" : NULL, detail);
        (void) free_and_strdup(&e->path, path);
        e->extra = mfree(e->extra);
        return r;
}

/* One line from the terminal with echo off, so that the token is not left on the screen. */
static int read_tty_line(int fd, size_t max, const char *prompt, char **ret, size_t *ret_size) {
        struct termios old, quiet;
        char *buf = NULL;
        size_t size = 0;
        bool restore;
        int r = 0;

        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;

        restore = tcgetattr(fd, &old) >= 0;
        if (restore) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                quiet.c_lflag |= ECHONL;
                (void) tcsetattr(fd, TCSANOW, &quiet);
        }
        if (prompt)
                fprintf(stderr, "%s", prompt);

        for (;;) {
                char c;
                ssize_t k = read(fd, &c, 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (k == 0 || c == '\n')
                        break;
                if (size >= max) {
                        r = -EFBIG;
                        break;
                }
                buf[size++] = c;
        }
        if (restore)
                (void) tcsetattr(fd, TCSANOW, &old);

        if (r < 0) {
                erase_and_free_sized(buf, max + 1);
                return r;
        }
        buf[size] = 0;
        *ret = buf;
        *ret_size = size;
        return 0;
}

int import_read_file(const char *path, size_t max, const char *prompt, ErrorContext context, ErrorInfo *e,
                     int *ret_fd) {
        _cleanup_close_ int opened = -EBADF;
        char *buf = NULL;
        size_t size = 0;
        struct stat st;
        int fd, r;

        assert(path);
        assert(e);
        assert(ret_fd);

        if (streq(path, "-"))
                fd = STDIN_FILENO;
        else {
                opened = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (opened < 0)
                        return error_set_path(e, context, errno, path, NULL);
                fd = opened;
        }

        if (fstat(fd, &st) < 0)
                return error_set_path(e, context, errno, path, NULL);
        if (S_ISDIR(st.st_mode))
                return error_set_path(e, context, EISDIR, path, NULL);

        if (fd == STDIN_FILENO && isatty(fd))
                r = read_tty_line(fd, max, prompt, &buf, &size);
        else
                r = read_full_fd(fd, max, &buf, &size);
        if (r == -EFBIG) {
                char limit[64];
                snprintf(limit, sizeof limit, "over %zu KiB", max / 1024);
                return error_set_path(e, context, r, path, limit);
        }
        if (r < 0)
                return error_set_path(e, context, r, path, NULL);

        if (size == 0)
                r = error_set_path(e, context, ENODATA, path, NULL);
        else {
                r = memfd_new_sealed("kiroctl-import", buf, size, ret_fd);
                if (r < 0)
                        (void) error_set_path(e, context, r, path, NULL);
        }
        erase_and_free_sized(buf, size);
        return r;
}

/* clientIdHash names a file in the token's directory: nothing that could point elsewhere. */
static bool client_id_hash_valid(const char *h) {
        if (isempty(h) || strlen(h) > 200 || h[0] == '.')
                return false;
        for (const char *p = h; *p; p++)
                if (*p == '/' || (unsigned char) *p < ' ' || *p == 0x7f)
                        return false;
        return true;
}

int import_kiro_ide(const char *token_path, ErrorInfo *e, int *ret_token_fd, int *ret_registration_fd,
                    char **ret_registration_path) {
        _cleanup_close_ int token_fd = -EBADF, registration_fd = -EBADF;
        _cleanup_free_ char *dir = NULL, *registration_path = NULL;
        _cleanup_json_ json_object *o = NULL;
        const char *parse_error = NULL, *hash = NULL;
        char *buf = NULL;
        size_t size = 0;
        int r;

        assert(token_path);
        assert(e);
        assert(ret_token_fd);
        assert(ret_registration_fd);

        r = import_read_file(token_path, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_KIRO_IDE, e, &token_fd);
        if (r < 0)
                return r;

        /* Parse the very bytes that go to kiro-authd, so that the registration matches them. */
        r = read_full_fd(token_fd, SECRET_FILE_MAX, &buf, &size);
        if (r < 0)
                return error_set_path(e, ERROR_CONTEXT_KIRO_IDE, r, token_path, NULL);
        r = json_parse_bounded(buf, size, 16, &o, &parse_error);
        erase_and_free_sized(buf, size);
        if (r < 0)
                return error_set_path(e, ERROR_CONTEXT_KIRO_IDE, EBADMSG, token_path, parse_error);
        if (!json_object_is_type(o, json_type_object))
                return error_set_path(e, ERROR_CONTEXT_KIRO_IDE, EMEDIUMTYPE, token_path, "not a JSON object");
        if (lseek(token_fd, 0, SEEK_SET) < 0)
                return error_set_path(e, ERROR_CONTEXT_KIRO_IDE, errno, token_path, NULL);

        r = json_get_string(o, "clientIdHash", &hash);
        if (r == -ENOENT || (r >= 0 && isempty(hash))) {
                /* Social logins have no client registration. */
                json_object_erase_strings(o);
                *ret_token_fd = TAKE_FD(token_fd);
                *ret_registration_fd = -EBADF;
                if (ret_registration_path)
                        *ret_registration_path = NULL;
                return 0;
        }
        if (r < 0 || !client_id_hash_valid(hash)) {
                json_object_erase_strings(o);
                r = error_set_path(e, ERROR_CONTEXT_KIRO_IDE_REG, EBADMSG, NULL,
                                   r < 0 ? "clientIdHash is not a string" : "clientIdHash is not a file name");
                (void) free_and_strdup(&e->extra, token_path);
                return r;
        }

        r = path_dirname(token_path, &dir);
        if (r >= 0 && asprintf(&registration_path, "%s/%s.json", dir, hash) < 0)
                r = -ENOMEM;
        json_object_erase_strings(o);
        if (r < 0)
                return error_set_path(e, ERROR_CONTEXT_KIRO_IDE_REG, r, token_path, NULL);

        r = import_read_file(registration_path, SECRET_FILE_MAX, NULL, ERROR_CONTEXT_KIRO_IDE_REG, e,
                             &registration_fd);
        if (r < 0) {
                (void) free_and_strdup(&e->extra, token_path);
                return r;
        }

        *ret_token_fd = TAKE_FD(token_fd);
        *ret_registration_fd = TAKE_FD(registration_fd);
        if (ret_registration_path)
                *ret_registration_path = TAKE_PTR(registration_path);
        return 0;
}

int import_kiro_cli(const char *db_path, ErrorInfo *e, int *ret_fd, char **ret_path) {
        _cleanup_free_ char *path = NULL, *sqlite_message = NULL;
        ErrorContext context = db_path ? ERROR_CONTEXT_KIRO_CLI_DB : ERROR_CONTEXT_KIRO_CLI_DEFAULT;
        int fd = -EBADF, r;

        assert(e);
        assert(ret_fd);
        assert(ret_path);

        if (db_path)
                r = path_make_absolute_cwd(db_path, &path);
        else {
                r = kiro_cli_find_database(&path);
                if (r == 0)
                        return error_set_path(e, context, ENOENT, path, NULL);
        }
        if (r < 0)
                return error_set_path(e, context, r, db_path, NULL);

        r = sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, SQLITE_BUSY_TIMEOUT_MSEC, &fd, NULL, &sqlite_message);
        if (r < 0)
                return error_set_path(e, context, r, path, sqlite_message);

        *ret_fd = fd;
        *ret_path = TAKE_PTR(path);
        return 0;
}
