/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A consistent, read-only copy of an SQLite database (WAL included) in a sealed memfd. */
#include <assert.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "kiroctl-snapshot.h"
#include "kiroctl-util.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(sqlite3 *, sqlite3_close_v2);
DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(sqlite3_stmt *, sqlite3_finalize);

static int errno_from_sqlite(sqlite3 *db, int rc) {
        int e;

        switch (rc & 0xff) {
        case SQLITE_OK:
                return 0;
        case SQLITE_NOTADB:
                return -EMEDIUMTYPE;
        case SQLITE_CORRUPT:
        case SQLITE_FORMAT:
                return -EBADMSG;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_TOOBIG:
                return -EFBIG;
        case SQLITE_CANTOPEN:
        case SQLITE_IOERR:
        case SQLITE_READONLY:
                e = db ? sqlite3_system_errno(db) : 0;
                return e > 0 ? -e : -EIO;
        default:
                return -EIO;
        }
}

static int fail(sqlite3 *db, int rc, const char *message, char **ret_sqlite_message) {
        int r = errno_from_sqlite(db, rc);

        if (ret_sqlite_message) {
                const char *m = message ?: (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                *ret_sqlite_message = m ? strdup(m) : NULL;
        }
        return r < 0 ? r : -EIO;
}

int sqlite_readonly_uri(const char *path, char **ret) {
        static const char hex[] = "0123456789ABCDEF";
        _cleanup_free_ char *abs = NULL, *uri = NULL;
        size_t n = 0;
        int r;

        assert(path);
        assert(ret);

        r = path_make_absolute_cwd(path, &abs);
        if (r < 0)
                return r;

        /* "file://" + an empty authority + the path; everything but unreserved characters and '/' is
         * escaped, so '?', '#' and '%' in a file name cannot be taken for URI syntax. */
        uri = malloc(strlen("file://") + strlen(abs) * 3 + strlen("?mode=ro") + 1);
        if (!uri)
                return -ENOMEM;
        n = (size_t) sprintf(uri, "file://");
        for (const unsigned char *p = (const unsigned char *) abs; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    strchr("/-._~", *p))
                        uri[n++] = (char) *p;
                else {
                        uri[n++] = '%';
                        uri[n++] = hex[*p >> 4];
                        uri[n++] = hex[*p & 15];
                }
        }
        strcpy(uri + n, "?mode=ro");

        *ret = TAKE_PTR(uri);
        return 0;
}

static int quick_check(sqlite3 *db, char **ret_sqlite_message) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *stmt = NULL;
        int rc;

        /* Preparing reads the schema from page 1, so "not a database" and "locked" show up already here. */
        rc = sqlite3_prepare_v2(db, "PRAGMA main.quick_check(1)", -1, &stmt, NULL);
        if (rc != SQLITE_OK)
                return fail(db, rc, NULL, ret_sqlite_message);

        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
                const char *result = (const char *) sqlite3_column_text(stmt, 0);
                if (!streq_ptr(result, "ok"))
                        return fail(db, SQLITE_CORRUPT, result, ret_sqlite_message);
                return 0;
        }
        if (rc == SQLITE_DONE)
                return fail(db, SQLITE_CORRUPT, "quick_check returned nothing", ret_sqlite_message);
        return fail(db, rc, NULL, ret_sqlite_message);
}

int sqlite_snapshot_to_memfd(
                const char *path,
                uint64_t max_size,
                unsigned busy_timeout_msec,
                int *ret_fd,
                uint64_t *ret_size,
                char **ret_sqlite_message) {

        _cleanup_(sqlite3_close_v2p) sqlite3 *db = NULL;
        _cleanup_free_ char *uri = NULL;
        unsigned char *data = NULL;
        sqlite3_int64 size = 0;
        struct stat st;
        int r, rc;

        assert(path);
        assert(ret_fd);

        if (ret_sqlite_message)
                *ret_sqlite_message = NULL;

        /* SQLite says only "unable to open database file" for all of these; stat() tells them apart. */
        if (stat(path, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max_size)
                return -EFBIG;
        if (access(path, R_OK) < 0)
                return -errno;

        r = sqlite_readonly_uri(path, &uri);
        if (r < 0)
                return r;

        rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
        if (rc != SQLITE_OK)
                return fail(db, rc, NULL, ret_sqlite_message);
        (void) sqlite3_extended_result_codes(db, 1);
        rc = sqlite3_busy_timeout(db, (int) MIN(busy_timeout_msec, (unsigned) INT32_MAX));
        if (rc != SQLITE_OK)
                return fail(db, rc, NULL, ret_sqlite_message);

        /* One read transaction around the check and the copy: both see the same snapshot, which
         * includes every transaction committed to the -wal file but not yet checkpointed. */
        rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return fail(db, rc, NULL, ret_sqlite_message);

        r = quick_check(db, ret_sqlite_message);
        if (r < 0)
                return r;

        /* sqlite3_serialize() of an on-disk database reads every page through the pager, i.e. from the
         * -wal file where the newest version of a page lives there. */
        data = sqlite3_serialize(db, "main", &size, 0);
        (void) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (!data) {
                if (size == 0)
                        return -ENODATA;
                return fail(db, SQLITE_NOMEM, NULL, ret_sqlite_message);
        }

        if (size <= 0)
                r = -ENODATA;
        else if ((uint64_t) size > max_size)
                r = -EFBIG;
        else {
                /* Bytes 18 and 19 of the header say "WAL mode" (2). The copy is a plain file image with no
                 * -wal beside it: mark it as a rollback-journal database (1) so that it can be opened
                 * with sqlite3_deserialize() or from any file. */
                if (size >= 100 && data[18] == 2 && data[19] == 2)
                        data[18] = data[19] = 1;
                r = memfd_new_sealed("kiroctl-sqlite-snapshot", data, (size_t) size, ret_fd);
        }

        /* The copy holds refresh tokens: wipe it. */
        explicit_bzero(data, (size_t) MAX(size, (sqlite3_int64) 0));
        sqlite3_free(data);
        if (r < 0)
                return r;

        if (ret_size)
                *ret_size = (uint64_t) size;
        return 0;
}

int kiro_cli_find_database(char **ret) {
        _cleanup_strv_free_ char **candidates = NULL;
        _cleanup_free_ char *data_dir = NULL;
        int r;

        assert(ret);

#ifdef __APPLE__
        {
                _cleanup_free_ char *home = NULL;

                r = get_home_dir(&home);
                if (r < 0)
                        return r;
                if (asprintf(&data_dir, "%s/Library/Application Support", home) < 0)
                        return -ENOMEM;
        }
#else
        r = get_user_data_dir(&data_dir);
        if (r < 0)
                return r;
#endif

        for (size_t i = 0; i < 2; i++) {
                char *p;

                if (asprintf(&p, "%s/%s/data.sqlite3", data_dir, i == 0 ? "kiro-cli" : "amazon-q") < 0)
                        return -ENOMEM;
                r = strv_extend(&candidates, p);
                free(p);
                if (r < 0)
                        return r;
        }

        STRV_FOREACH(c, candidates)
                if (access(*c, F_OK) >= 0) {
                        char *p = strdup(*c);
                        if (!p)
                                return -ENOMEM;
                        *ret = p;
                        return 1;
                }

        char *p = strdup(candidates[0]);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}
