/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's SQLite snapshot: WAL included, sealed memfd, clear errors. */
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "kiroctl-snapshot.h"
#include "time-util.h"
#include "tests.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void rm_rf(const char *path) {
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-kiroctl-snapshot.XXXXXX");
        ASSERT_NOT_NULL(d);
        ASSERT_NOT_NULL(mkdtemp(d));
        return d;
}

static char *path_join(const char *a, const char *b) {
        char *p;
        ASSERT_TRUE(asprintf(&p, "%s/%s", a, b) >= 0);
        return p;
}

static void exec_ok(sqlite3 *db, const char *sql) {
        char *err = NULL;
        int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
        if (rc != SQLITE_OK)
                ASSERT_FAIL("'%s' failed: %s", sql, err ?: sqlite3_errstr(rc));
}

static void write_file(const char *path, const void *data, size_t size) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, size), (ssize_t) size);
        ASSERT_OK(close(fd));
}

static off_t file_size(const char *path) {
        struct stat st;
        ASSERT_OK(stat(path, &st));
        return st.st_size;
}

/* Opens the memfd's bytes as a database and returns the value stored under key (malloc'ed) or NULL. */
static char *lookup_in_snapshot(int fd, const char *key, size_t *ret_size) {
        char *buf = NULL, *value = NULL;
        sqlite3_stmt *stmt = NULL;
        sqlite3 *db = NULL;
        size_t size = 0;

        ASSERT_OK(read_full_fd(fd, KIRO_CLI_DB_MAX, &buf, &size));
        if (ret_size)
                *ret_size = size;
        ASSERT_TRUE(size >= 100);
        ASSERT_TRUE(memcmp(buf, "SQLite format 3", 16) == 0);
        /* Rollback-journal mode, so that deserializing needs no -wal. */
        ASSERT_EQ(buf[18], 1);
        ASSERT_EQ(buf[19], 1);

        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_deserialize(db, "main", (unsigned char *) buf, (sqlite3_int64) size,
                                      (sqlite3_int64) size, SQLITE_DESERIALIZE_READONLY),
                  SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT value FROM auth_kv WHERE key = ?", -1, &stmt, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC), SQLITE_OK);
        int rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW)
                value = strdup((const char *) sqlite3_column_text(stmt, 0));
        else
                ASSERT_EQ(rc, SQLITE_DONE);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        free(buf);
        return value;
}

static sqlite3 *create_wal_db(const char *path) {
        sqlite3 *db = NULL;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        exec_ok(db, "PRAGMA journal_mode=WAL");
        exec_ok(db, "PRAGMA wal_autocheckpoint=0");
        exec_ok(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT)");
        exec_ok(db, "INSERT INTO auth_kv VALUES ('old', 'checkpointed')");
        exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
        return db;
}

TEST(snapshot_includes_wal) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3"), *wal = path_join(dir, "data.sqlite3-wal");
        char *main_only = path_join(dir, "main-only.sqlite3"), *buf = NULL, *v;
        sqlite3 *writer = create_wal_db(path), *check = NULL;
        size_t size;
        int fd = -1;

        /* The newest row is committed to the -wal file only: no checkpoint, writer still open. */
        exec_ok(writer, "INSERT INTO auth_kv VALUES ('kirocli:social:token', '{\"refresh_token\":\"r1\"}')");
        ASSERT_TRUE(file_size(wal) > 0);

        /* Proof of the premise: the main file alone does not have the row. */
        ASSERT_OK(read_full_file(path, KIRO_CLI_DB_MAX, &buf, &size));
        buf[18] = buf[19] = 1;
        write_file(main_only, buf, size);
        free(buf);
        ASSERT_EQ(sqlite3_open_v2(main_only, &check, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        {
                sqlite3_stmt *stmt = NULL;
                ASSERT_EQ(sqlite3_prepare_v2(check, "SELECT count(*) FROM auth_kv WHERE key = 'kirocli:social:token'",
                                             -1, &stmt, NULL), SQLITE_OK);
                ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
                ASSERT_EQ(sqlite3_column_int(stmt, 0), 0);
                sqlite3_finalize(stmt);
        }
        sqlite3_close(check);

        uint64_t snap_size = 0;
        char *msg = NULL;
        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, &snap_size, &msg));
        ASSERT_NULL(msg);
        ASSERT_TRUE(fd >= 0);
        ASSERT_TRUE(snap_size > 0);

        v = lookup_in_snapshot(fd, "kirocli:social:token", &size);
        ASSERT_STREQ(v, "{\"refresh_token\":\"r1\"}");
        ASSERT_EQ(size, snap_size);
        free(v);
        v = lookup_in_snapshot(fd, "old", NULL);
        ASSERT_STREQ(v, "checkpointed");
        free(v);

        /* The source is untouched: still WAL, the row still only in the -wal file. */
        ASSERT_TRUE(file_size(wal) > 0);

        close(fd);
        sqlite3_close(writer);
        rm_rf(dir);
        free(main_only);
        free(wal);
        free(path);
        free(dir);
}

TEST(snapshot_is_sealed) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3");
        sqlite3 *writer = create_wal_db(path);
        int fd = -1, flags;

        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL));

        flags = fcntl(fd, F_GET_SEALS);
        ASSERT_EQ(flags, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_EQ(lseek(fd, 0, SEEK_CUR), 0);

        /* Nobody, the receiver included, can change what was sent. */
        ASSERT_TRUE(write(fd, "x", 1) < 0);
        ASSERT_EQ(errno, EPERM);
        ASSERT_TRUE(ftruncate(fd, 1) < 0);
        ASSERT_EQ(errno, EPERM);
        ASSERT_TRUE(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) < 0);
        ASSERT_EQ(errno, EPERM);

        close(fd);
        sqlite3_close(writer);
        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_rollback_journal_db) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3"), *v;
        sqlite3 *db = NULL;
        int fd = -1;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        exec_ok(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT)");
        exec_ok(db, "INSERT INTO auth_kv VALUES ('codewhisperer:odic:token', 'legacy')");
        sqlite3_close(db);

        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL));
        v = lookup_in_snapshot(fd, "codewhisperer:odic:token", NULL);
        ASSERT_STREQ(v, "legacy");
        free(v);

        close(fd);
        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_odd_file_name) {
        /* '?', '#', '%' and spaces must not be read as URI syntax. */
        char *dir = make_tmpdir(), *path = path_join(dir, "a b?mode=rw#x%41.sqlite3"), *v;
        sqlite3 *db = NULL;
        int fd = -1;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        exec_ok(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT)");
        exec_ok(db, "INSERT INTO auth_kv VALUES ('k', 'odd')");
        sqlite3_close(db);

        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL));
        v = lookup_in_snapshot(fd, "k", NULL);
        ASSERT_STREQ(v, "odd");
        free(v);
        close(fd);

        /* Read-only for real: the file was not changed, nothing was created beside it. */
        ASSERT_EQ(access(path, F_OK), 0);
        char *journal = path_join(dir, "a b?mode=rw#x%41.sqlite3-journal");
        ASSERT_TRUE(access(journal, F_OK) < 0);
        free(journal);

        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(readonly_uri) {
        char *uri = NULL;

        ASSERT_OK(sqlite_readonly_uri("/home/u/.local/share/kiro-cli/data.sqlite3", &uri));
        ASSERT_STREQ(uri, "file:///home/u/.local/share/kiro-cli/data.sqlite3?mode=ro");
        free(uri);
        ASSERT_OK(sqlite_readonly_uri("/x/a b?c#d%e", &uri));
        ASSERT_STREQ(uri, "file:///x/a%20b%3Fc%23d%25e?mode=ro");
        free(uri);
        ASSERT_OK(sqlite_readonly_uri("//twice", &uri));
        ASSERT_STREQ(uri, "file:////twice?mode=ro");
        free(uri);

        char *cwd = getcwd(NULL, 0), *expected;
        ASSERT_OK(sqlite_readonly_uri("rel.db", &uri));
        ASSERT_TRUE(asprintf(&expected, "file://%s/rel.db?mode=ro", streq_ptr(cwd, "/") ? "" : cwd) >= 0);
        ASSERT_STREQ(uri, expected);
        free(expected);
        free(uri);
        free(cwd);
}

TEST(snapshot_missing) {
        int fd = -1;
        ASSERT_ERROR(sqlite_snapshot_to_memfd("/nonexistent/kiro-cli/data.sqlite3", KIRO_CLI_DB_MAX, 100, &fd, NULL,
                                              NULL), ENOENT);
        ASSERT_EQ(fd, -1);
}

TEST(snapshot_directory) {
        char *dir = make_tmpdir();
        int fd = -1;
        ASSERT_ERROR(sqlite_snapshot_to_memfd(dir, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL), EISDIR);
        rm_rf(dir);
        free(dir);
}

TEST(snapshot_empty) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3");
        int fd = -1;

        write_file(path, "", 0);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL), ENODATA);
        ASSERT_EQ(fd, -1);
        /* And still empty: a read-only open must not have initialised it. */
        ASSERT_EQ(file_size(path), 0);

        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_not_a_database) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3"), *msg = NULL;
        static const char line[] = "{\"accessToken\":\"not a database\"}\n";
        char text[8192];
        int fd = -1;

        for (size_t i = 0; i < sizeof text; i++)
                text[i] = line[i % (sizeof line - 1)];
        write_file(path, text, sizeof text);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, &msg), EMEDIUMTYPE);
        ASSERT_NOT_NULL(msg);
        free(msg);

        /* Short garbage too. */
        write_file(path, "hello", 5);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, NULL), EMEDIUMTYPE);

        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_corrupt) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3"), *msg = NULL;
        sqlite3 *db = NULL;
        unsigned char junk[4096];
        int fd = -1, f;

        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        exec_ok(db, "PRAGMA page_size=4096");
        exec_ok(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT)");
        exec_ok(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) "
                    "INSERT INTO auth_kv SELECT 'key' || i, printf('%.200c', 'v') FROM n");
        sqlite3_close(db);
        ASSERT_TRUE(file_size(path) > 4 * 4096);

        /* Page 2 (a b-tree page of the table) becomes noise. */
        for (size_t i = 0; i < sizeof junk; i++)
                junk[i] = (unsigned char) (i * 131 + 7);
        f = open(path, O_WRONLY | O_CLOEXEC);
        ASSERT_TRUE(f >= 0);
        ASSERT_EQ(pwrite(f, junk, sizeof junk, 4096), (ssize_t) sizeof junk);
        close(f);

        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, NULL, &msg), EBADMSG);
        ASSERT_NOT_NULL(msg);
        free(msg);

        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_locked) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3");
        sqlite3 *writer = NULL;
        int fd = -1;

        /* A rollback-journal writer in the middle of a transaction with an exclusive lock: readers must wait,
         * and give up after the busy timeout. */
        ASSERT_EQ(sqlite3_open(path, &writer), SQLITE_OK);
        exec_ok(writer, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT)");
        exec_ok(writer, "BEGIN EXCLUSIVE");
        exec_ok(writer, "INSERT INTO auth_kv VALUES ('k', 'v')");

        usec_t start = now(CLOCK_MONOTONIC);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 200, &fd, NULL, NULL), EBUSY);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - start >= 150 * USEC_PER_MSEC);

        exec_ok(writer, "COMMIT");
        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 200, &fd, NULL, NULL));
        close(fd);

        sqlite3_close(writer);
        rm_rf(dir);
        free(path);
        free(dir);
}

TEST(snapshot_oversize) {
        char *dir = make_tmpdir(), *path = path_join(dir, "data.sqlite3");
        sqlite3 *writer = create_wal_db(path);
        uint64_t main_size;
        int fd = -1;

        /* The file itself is too big. */
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, 1024, 100, &fd, NULL, NULL), EFBIG);

        /* The file is small enough, but with what waits in the -wal file the snapshot is not. */
        main_size = (uint64_t) file_size(path);
        exec_ok(writer, "INSERT INTO auth_kv VALUES ('big', printf('%.100000c', 'x'))");
        ASSERT_EQ((uint64_t) file_size(path), main_size);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, main_size + 4096, 100, &fd, NULL, NULL), EFBIG);
        ASSERT_EQ(fd, -1);

        /* Exactly at the limit is fine. */
        uint64_t size = 0;
        ASSERT_OK(sqlite_snapshot_to_memfd(path, KIRO_CLI_DB_MAX, 100, &fd, &size, NULL));
        close(fd);
        ASSERT_OK(sqlite_snapshot_to_memfd(path, size, 100, &fd, NULL, NULL));
        close(fd);
        ASSERT_ERROR(sqlite_snapshot_to_memfd(path, size - 1, 100, &fd, NULL, NULL), EFBIG);

        sqlite3_close(writer);
        rm_rf(dir);
        free(path);
        free(dir);
}

static void touch(const char *path) {
        char *d = strdup(path);
        *strrchr(d, '/') = 0;
        (void) mkdir_p(d, 0755);
        write_file(path, "", 0);
        free(d);
}

TEST(find_database) {
        char *dir = make_tmpdir(), *p = NULL, *expected;
        char *legacy = path_join(dir, "data/amazon-q/data.sqlite3"), *current = path_join(dir, "data/kiro-cli/data.sqlite3");
        char *data = path_join(dir, "data");

        ASSERT_OK(setenv("XDG_DATA_HOME", data, 1));

        /* Nothing there: the preferred path, for the error message. */
        ASSERT_EQ(kiro_cli_find_database(&p), 0);
        ASSERT_STREQ(p, current);
        free(p);

        touch(legacy);
        ASSERT_EQ(kiro_cli_find_database(&p), 1);
        ASSERT_STREQ(p, legacy);
        free(p);

        touch(current);
        ASSERT_EQ(kiro_cli_find_database(&p), 1);
        ASSERT_STREQ(p, current);
        free(p);

        /* A relative XDG_DATA_HOME is ignored (XDG base directory spec): ~/.local/share. */
        ASSERT_OK(setenv("XDG_DATA_HOME", "relative/dir", 1));
        ASSERT_OK(setenv("HOME", dir, 1));
        ASSERT_EQ(kiro_cli_find_database(&p), 0);
        expected = path_join(dir, ".local/share/kiro-cli/data.sqlite3");
        ASSERT_STREQ(p, expected);
        free(expected);
        free(p);

        rm_rf(dir);
        free(data);
        free(current);
        free(legacy);
        free(dir);
}
