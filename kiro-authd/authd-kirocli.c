/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-cli's database through a directory fd: reading its login, writing rotated tokens back (authd-kirocli.h). */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authd-import.h"
#include "authd-kirocli.h"
#include "json-util.h"
#include "time-util.h"

#define LINK_VFS_PREFIX "/.kirod-link-fd/"
/* SQLite VM instructions a look-up or an update of a few rows by key may take (in units of 1000): a few
 * thousand are needed; a crafted schema is stopped after about 35 ms (by the import's measure, authd-import.h). */
#define KIROCLI_ROW_STEPS 1000

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(sqlite3 *, sqlite3_close_v2);
DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(sqlite3_stmt *, sqlite3_finalize);

/* The token row's JSON holds tokens: wiped before it is freed, on every path. */
static void json_erase_put(json_object *o) {
        if (o) {
                json_object_erase_strings(o);
                json_object_put(o);
        }
}
DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(json_object *, json_erase_put);

static sqlite3_syscall_ptr real_open, real_access, real_stat, real_lstat, real_readlink, real_unlink;

/* The database file SQLite opened last through the mapping: compared with our own openat() of the name. */
static struct {
        const char *name;       /* the main file's name while a connection is being opened, else NULL */
        dev_t dev;
        ino_t ino;
        bool seen;
} vfs_main;

/* "/.kirod-link-fd/N/REST" → N, *ret_rest = REST ("" for the directory itself); -1 for names of ours that
 * are malformed; -2 for every other name. */
static int vfs_parse(const char *path, const char **ret_rest) {
        const char *p;
        char *end;
        long fd;

        if (!path || !(p = startswith(path, LINK_VFS_PREFIX)))
                return -2;
        errno = 0;
        fd = strtol(p, &end, 10);
        if (errno != 0 || end == p || fd < 0 || fd > INT_MAX)
                return -1;
        if (*end == 0) {
                *ret_rest = "";
                return (int) fd;
        }
        if (*end != '/' || isempty(end + 1) || strchr(end + 1, '/') || streq(end + 1, ".") || streq(end + 1, ".."))
                return -1;
        *ret_rest = end + 1;
        return (int) fd;
}

static int vfs_open(const char *path, int flags, int mode) {
        const char *rest;
        struct stat st;
        int dfd = vfs_parse(path, &rest), fd;

        if (dfd == -2)
                return ((int (*)(const char *, int, int)) real_open)(path, flags, mode);
        if (dfd < 0) {
                errno = ENOENT;
                return -1;
        }
        if (isempty(rest))      /* the directory, for fsync() after a journal is created or deleted */
                return fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        fd = openat(dfd, rest, flags | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, (mode_t) mode);
        if (fd >= 0 && vfs_main.name && streq(rest, vfs_main.name) && fstat(fd, &st) >= 0) {
                vfs_main.dev = st.st_dev;
                vfs_main.ino = st.st_ino;
                vfs_main.seen = true;
        }
        return fd;
}

static int vfs_stat_common(const char *path, struct stat *st, sqlite3_syscall_ptr real) {
        const char *rest;
        int dfd = vfs_parse(path, &rest);

        if (dfd == -2)
                return ((int (*)(const char *, struct stat *)) real)(path, st);
        if (dfd < 0) {
                errno = ENOENT;
                return -1;
        }
        /* Never through a symlink, for stat() too: SQLite compares the file by this to see if it moved. */
        return fstatat(dfd, isempty(rest) ? "." : rest, st, AT_SYMLINK_NOFOLLOW);
}

static int vfs_stat(const char *path, struct stat *st) {
        return vfs_stat_common(path, st, real_stat);
}

static int vfs_lstat(const char *path, struct stat *st) {
        return vfs_stat_common(path, st, real_lstat);
}

static int vfs_access(const char *path, int mode) {
        const char *rest;
        int dfd = vfs_parse(path, &rest);

        if (dfd == -2)
                return ((int (*)(const char *, int)) real_access)(path, mode);
        if (dfd < 0) {
                errno = ENOENT;
                return -1;
        }
        return faccessat(dfd, isempty(rest) ? "." : rest, mode, AT_SYMLINK_NOFOLLOW);
}

static ssize_t vfs_readlink(const char *path, char *buf, size_t size) {
        const char *rest;
        int dfd = vfs_parse(path, &rest);

        if (dfd == -2)
                return ((ssize_t (*)(const char *, char *, size_t)) real_readlink)(path, buf, size);
        /* A symlink in the directory (SQLite asks only after lstat() said so) is not followed. */
        errno = ELOOP;
        return -1;
}

static int vfs_unlink(const char *path) {
        const char *rest;
        int dfd = vfs_parse(path, &rest);

        if (dfd == -2)
                return ((int (*)(const char *)) real_unlink)(path);
        if (dfd < 0 || isempty(rest)) {
                errno = ENOENT;
                return -1;
        }
        return unlinkat(dfd, rest, 0);
}

static int vfs_setup(void) {
        static int done = 0;
        static const struct {
                const char *name;
                sqlite3_syscall_ptr *real, ours;
        } calls[] = {
                { "open", &real_open, (sqlite3_syscall_ptr) vfs_open },
                { "access", &real_access, (sqlite3_syscall_ptr) vfs_access },
                { "stat", &real_stat, (sqlite3_syscall_ptr) vfs_stat },
                { "lstat", &real_lstat, (sqlite3_syscall_ptr) vfs_lstat },
                { "readlink", &real_readlink, (sqlite3_syscall_ptr) vfs_readlink },
                { "unlink", &real_unlink, (sqlite3_syscall_ptr) vfs_unlink },
        };
        sqlite3_vfs *vfs;

        if (done != 0)
                return done;
        /* The wiping allocator must be in place before SQLite initializes (sqlite3_vfs_find() does). */
        import_sqlite_init();
        vfs = sqlite3_vfs_find("unix");
        if (!vfs || vfs != sqlite3_vfs_find(NULL) || !vfs->xSetSystemCall)
                return (done = -EOPNOTSUPP);
        for (size_t i = 0; i < ELEMENTSOF(calls); i++) {
                *calls[i].real = vfs->xGetSystemCall(vfs, calls[i].name);
                if (!*calls[i].real || vfs->xSetSystemCall(vfs, calls[i].name, calls[i].ours) != SQLITE_OK)
                        return (done = -EOPNOTSUPP);
        }
        return (done = 1);
}

static int errno_from_sqlite(sqlite3 *db, int rc) {
        int e;

        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_READONLY:
                return -EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
                e = db ? sqlite3_system_errno(db) : 0;
                return e > 0 ? -e : -EIO;
        default:
                return -EIO;
        }
}

/* Our own look at the name first: SQLite says only "unable to open database file" for all of these. */
static int check_file(int dir_fd, const char *name, uint64_t max, struct stat *ret) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, ret) < 0)
                return -errno;
        if (!S_ISREG(ret->st_mode))
                return -EBADFD;
        if ((uint64_t) ret->st_size > max)
                return -EFBIG;
        return 0;
}

/* Opens NAME in dir_fd through the mapping; fails unless the file SQLite opened is the one our openat()
 * of the name found (a symlink or a file swapped in between is refused). */
static int db_open(int dir_fd, const char *name, bool writable, sqlite3 **ret, char **ret_message) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        char path[sizeof LINK_VFS_PREFIX + 16 + 256];
        struct stat st, wal;
        int r, rc;

        r = vfs_setup();
        if (r < 0)
                return r;
        if (strlen(name) > 250)
                return -ENAMETOOLONG;
        r = check_file(dir_fd, name, IMPORT_SQLITE_MAX, &st);
        if (r < 0)
                return r;
        /* The -wal file is read with the database: the same cap, and never through a symlink. */
        snprintf(path, sizeof path, "%s-wal", name);
        if (fstatat(dir_fd, path, &wal, AT_SYMLINK_NOFOLLOW) >= 0) {
                if (!S_ISREG(wal.st_mode))
                        return S_ISLNK(wal.st_mode) ? -ELOOP : -EBADFD;
                if ((uint64_t) wal.st_size > IMPORT_SQLITE_MAX)
                        return -EFBIG;
        }

        snprintf(path, sizeof path, LINK_VFS_PREFIX "%d/%s", dir_fd, name);
        vfs_main.name = name;
        vfs_main.seen = false;
        rc = sqlite3_open_v2(path, &db,
                             (writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOFOLLOW |
                             SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                             NULL);
        vfs_main.name = NULL;
        if (rc != SQLITE_OK) {
                if (ret_message && db)
                        *ret_message = strdup(sqlite3_errmsg(db));
                return errno_from_sqlite(db, rc);
        }
        if (!vfs_main.seen || vfs_main.dev != st.st_dev || vfs_main.ino != st.st_ino)
                return -ESTALE;
        import_sqlite_harden(db);
        (void) sqlite3_busy_timeout(db, KIROCLI_BUSY_TIMEOUT_MSEC);
        *ret = TAKE_PTR(db);
        return 0;
}

static int sqlite_message(sqlite3 *db, int rc, char **ret_message) {
        if (ret_message && !*ret_message)
                *ret_message = strdup(sqlite3_errmsg(db));
        return errno_from_sqlite(db, rc);
}

static int query_int64(sqlite3 *db, const char *sql, int64_t *ret, char **ret_message) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return (rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT ? -EBADMSG
                                                                                       : sqlite_message(db, rc, ret_message);
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

int kirocli_db_read(int dir_fd, const char *name, CredentialRecord **ret, const char **ret_key,
                    char **ret_message) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        unsigned char *image = NULL;
        sqlite3_int64 size = 0;
        int64_t pages = 0, page_size = 0;
        int r, rc;

        assert(name);
        assert(ret);

        r = db_open(dir_fd, name, false, &db, ret_message);
        if (r < 0)
                return r;

        /* One read transaction around the size check and the copy: the copy is one consistent state,
         * with every transaction committed to the -wal file. */
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_message(db, rc, ret_message);
        r = query_int64(db, "PRAGMA main.page_count", &pages, ret_message);
        if (r >= 0)
                r = query_int64(db, "PRAGMA main.page_size", &page_size, ret_message);
        if (r == -EBADMSG) {
                (void) sqlite_message(db, SQLITE_NOTADB, ret_message);
                return IMPORT_E_INVALID;
        }
        if (r < 0)
                return r;
        if (pages <= 0 || page_size <= 0) {
                if (ret_message && !*ret_message)
                        *ret_message = strdup("the database is empty");
                return IMPORT_E_INVALID;
        }
        if (pages > IMPORT_SQLITE_MAX / page_size)
                return -EFBIG;
        /* sqlite3_serialize() of a file reads every page through the pager (so from the -wal file where
         * the newest version of a page is there). */
        image = sqlite3_serialize(db, "main", &size, 0);
        (void) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        db = (sqlite3_close_v2(db), NULL);
        if (!image)
                return -ENOMEM;
        if (size <= 0 || size > IMPORT_SQLITE_MAX)
                r = IMPORT_E_INVALID;
        else
                r = import_kiro_cli_sqlite_full(image, (size_t) size, IMPORT_SQLITE_STEP_BUDGET, ret, ret_key,
                                                ret_message);
        explicit_bzero(image, (size_t) MAX(size, (sqlite3_int64) 0));
        sqlite3_free(image);
        return r;
}

/* Reading the login's rows: auth_kv and state, nothing else. */
static int read_authorize(void *userdata, int action, const char *a, const char *b, const char *db,
                          const char *trigger) {
        (void) userdata, (void) b, (void) db;
        if (trigger)
                return SQLITE_DENY;
        if (action == SQLITE_SELECT || action == SQLITE_TRANSACTION)
                return SQLITE_OK;
        if (action == SQLITE_READ && (streq_ptr(a, "auth_kv") || streq_ptr(a, "state")))
                return SQLITE_OK;
        return SQLITE_DENY;
}

static int digest_progress(void *userdata) {
        uint64_t *left = userdata;
        if (*left == 0)
                return 1;
        (*left)--;
        return 0;
}

/* Appends key, NUL, value, NUL of each row the statement returns. */
static int digest_rows(sqlite3 *db, sqlite3_stmt *st, char **buf, size_t *size) {
        int rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
                for (int col = 0; col < 2; col++) {
                        const void *v = sqlite3_column_blob(st, col);
                        size_t n = (size_t) sqlite3_column_bytes(st, col);
                        char *m = malloc(*size + n + 1);
                        if (!m)
                                return -ENOMEM;
                        if (*size > 0)
                                memcpy(m, *buf, *size);
                        if (n > 0)
                                memcpy(m + *size, v, n);
                        m[*size + n] = 0;
                        erase_and_free_sized(*buf, *size);
                        *buf = m;
                        *size += n + 1;
                }
        return rc == SQLITE_DONE ? 0 : errno_from_sqlite(db, rc);
}

int kirocli_db_login_digest(int dir_fd, const char *name, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        /* KIRO-PROTOCOL.md B §1.3: the token keys, the registration keys. */
        static const char *const keys[] = {
                "kirocli:external-idp:token",        "kirocli:social:token",
                "kirocli:odic:token",                "codewhisperer:odic:token",
                "kirocli:odic:device-registration", "codewhisperer:odic:device-registration",
        };
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        uint64_t left = KIROCLI_ROW_STEPS;
        char *buf = NULL;
        size_t size = 0;
        int r, rc;

        r = db_open(dir_fd, name, false, &db, NULL);
        if (r < 0)
                return r;
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return errno_from_sqlite(db, rc);
        r = import_sqlite_check_auth_kv(db, NULL);
        if (r != 0)
                return r > 0 ? -EBADMSG : r;
        if (sqlite3_set_authorizer(db, read_authorize, NULL) != SQLITE_OK)
                return -EIO;
        sqlite3_progress_handler(db, 1000, digest_progress, &left);

        {
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
                rc = sqlite3_prepare_v2(db, "SELECT key, value FROM auth_kv WHERE key IN (?1, ?2, ?3, ?4, ?5, ?6) "
                                            "ORDER BY key", -1, &st, NULL);
                if (rc != SQLITE_OK)
                        return errno_from_sqlite(db, rc);
                for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                        (void) sqlite3_bind_text(st, (int) i + 1, keys[i], -1, SQLITE_STATIC);
                r = digest_rows(db, st, &buf, &size);
        }
        if (r >= 0) {
                /* An older database has no state table: then nothing is added for it. */
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
                if (sqlite3_prepare_v2(db, "SELECT key, value FROM state WHERE key = 'api.codewhisperer.profile'", -1,
                                       &st, NULL) == SQLITE_OK)
                        r = digest_rows(db, st, &buf, &size);
        }
        sqlite3_progress_handler(db, 0, NULL, NULL);
        (void) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (r >= 0)
                r = sha256(buf ?: "", size, ret);
        erase_and_free_sized(buf, size);
        return r;
}

/* Writing: reading auth_kv and updating it, nothing else. */
static int write_authorize(void *userdata, int action, const char *a, const char *b, const char *db,
                           const char *trigger) {
        (void) userdata, (void) b, (void) db;
        if (trigger)
                return SQLITE_DENY;
        switch (action) {
        case SQLITE_SELECT:
        case SQLITE_TRANSACTION:
                return SQLITE_OK;
        case SQLITE_READ:
        case SQLITE_UPDATE:
                return streq_ptr(a, "auth_kv") ? SQLITE_OK : SQLITE_DENY;
        default:
                return SQLITE_DENY;
        }
}

/* The token fields a refresh changes (KIRO-PROTOCOL.md B §1.3 "Write-back"); everything else is kept. */
static int merge_tokens(json_object *o, const CredentialRecord *c) {
        char ts[RFC3339_MAX];
        int r;

        r = json_set_string(o, "access_token", c->access_token);
        if (r >= 0)
                r = json_set_string(o, "refresh_token", c->refresh_token);
        if (r >= 0 && c->expires_at > 0 && c->expires_at != USEC_INFINITY)
                r = json_set_string(o, "expires_at", format_rfc3339(ts, sizeof ts, c->expires_at));
        /* A refresh answer may name the profile: only where kiro-cli keeps one in the token. */
        if (r >= 0 && c->profile_arn && json_object_object_get_ex(o, "profile_arn", NULL))
                r = json_set_string(o, "profile_arn", c->profile_arn);
        return r;
}

int kirocli_db_write_back(int dir_fd, const char *name, const char *key, const char *expect_refresh_token,
                          const CredentialRecord *c, char **ret_message) {
        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_(json_erase_putp) json_object *o = NULL;
        char *out = NULL;
        size_t out_size = 0;
        const char *perr = NULL, *there;
        uint64_t left = KIROCLI_ROW_STEPS;
        int r, rc;

        assert(name);
        assert(key);
        assert(c);

        r = db_open(dir_fd, name, true, &db, ret_message);
        if (r < 0)
                return r;

        /* The write lock first: kiro-cli cannot change the row between our check and our update. */
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return sqlite_message(db, rc, ret_message);

        r = import_sqlite_check_auth_kv(db, ret_message);
        if (r != 0)
                goto rollback;
        if (sqlite3_set_authorizer(db, write_authorize, NULL) != SQLITE_OK) {
                r = -EIO;
                goto rollback;
        }
        sqlite3_progress_handler(db, 1000, digest_progress, &left);

        {
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
                rc = sqlite3_prepare_v2(db, "SELECT value FROM auth_kv WHERE key = ?1", -1, &st, NULL);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(st);
                if (rc == SQLITE_DONE) {
                        r = -ESTALE;    /* kiro-cli logged out (or in with another method) */
                        goto rollback;
                }
                if (rc != SQLITE_ROW) {
                        r = sqlite_message(db, rc, ret_message);
                        goto rollback;
                }
                const char *text = (const char *) sqlite3_column_blob(st, 0);
                int n = sqlite3_column_bytes(st, 0);
                r = text && n > 0 ? json_parse_secret(text, (size_t) n, 16, &o, &perr) : -EBADMSG;
                if (r >= 0 && !json_object_is_type(o, json_type_object))
                        r = -EBADMSG;
                if (r < 0) {
                        r = -ESTALE;    /* not a login any more: read it again and say so */
                        goto rollback;
                }
        }
        if (json_get_string(o, "refresh_token", &there) < 0 || !streq_ptr(there, expect_refresh_token)) {
                r = -ESTALE;
                goto rollback;
        }

        r = merge_tokens(o, c);
        if (r >= 0)
                r = json_to_string_secret(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &out, &out_size);
        if (r < 0)
                goto rollback;

        {
                _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
                rc = sqlite3_prepare_v2(db, "UPDATE auth_kv SET value = ?1 WHERE key = ?2", -1, &st, NULL);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_text(st, 1, out, (int) out_size, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(st);
                erase_and_free_sized(out, out_size);
                if (rc != SQLITE_DONE) {
                        r = sqlite_message(db, rc, ret_message);
                        goto rollback;
                }
                if (sqlite3_changes(db) != 1) {
                        r = -ESTALE;
                        goto rollback;
                }
        }
        sqlite3_progress_handler(db, 0, NULL, NULL);
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                /* Readers kept the database busy past the timeout (a rollback-journal database): nothing
                 * was written; try again later. */
                r = sqlite_message(db, rc, ret_message);
                goto rollback;
        }
        return 0;

rollback:
        sqlite3_progress_handler(db, 0, NULL, NULL);
        (void) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}
