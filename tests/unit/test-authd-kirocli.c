/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-cli's database through a directory fd (authd-kirocli.c): reading, the login digest, the write-back. */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "authd-import.h"
#include "authd-kirocli.h"
#include "json-util.h"
#include "tests.h"

#define KEY "kirocli:social:token"
#define ARN "arn:aws:codewhisperer:us-east-1:111122223333:profile/ACCOUNTA"
#define TOKEN(rt)                                                                                        \
        "{\"access_token\":\"at-" rt "\",\"refresh_token\":\"" rt "\",\"expires_at\":\"2030-01-02T03:04:05.123456789Z\"," \
        "\"region\":\"us-east-1\",\"profile_arn\":\"" ARN "\",\"future\":{\"kept\":[1,2,3]}}"

typedef struct Dir {
        char path[64];
        char db[96];
        int fd;
} Dir;

static void exec_sql(const char *path, const char *sql) {
        sqlite3 *db;
        char *err = NULL;
        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                ASSERT_FAIL("%s: %s", sql, err);
        sqlite3_close(db);
}

/* A text value of the database, or NULL. */
static char *query_text(const char *path, const char *sql) {
        sqlite3 *db;
        sqlite3_stmt *st;
        char *v = NULL;
        ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW)
                v = strdup((const char *) sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
}

static void dir_make(Dir *d, bool wal) {
        snprintf(d->path, sizeof d->path, "/tmp/test-kirocli-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(d->path));
        snprintf(d->db, sizeof d->db, "%s/data.sqlite3", d->path);
        exec_sql(d->db, wal ? "PRAGMA journal_mode=WAL" : "PRAGMA journal_mode=DELETE");
        exec_sql(d->db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
                        "CREATE TABLE state(key TEXT PRIMARY KEY, value BLOB);"
                        "CREATE TABLE conversations(key TEXT PRIMARY KEY, value TEXT);"
                        "INSERT INTO auth_kv VALUES('" KEY "', '" TOKEN("rt-0") "');"
                        "INSERT INTO auth_kv VALUES('other', 'x');"
                        "INSERT INTO state VALUES('telemetryClientId', X'0102');"
                        "INSERT INTO conversations VALUES('/p', '{}');");
        d->fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(d->fd >= 0);
}

static void dir_done(Dir *d) {
        char cmd[128];
        close(d->fd);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", d->path);
        ASSERT_EQ(system(cmd), 0);
}

TEST(read_through_the_fd) {
        for (int wal = 0; wal < 2; wal++) {
                Dir d;
                CredentialRecord *c = NULL;
                const char *key = NULL;
                char *message = NULL;

                dir_make(&d, wal);
                ASSERT_EQ(kirocli_db_read(d.fd, "data.sqlite3", &c, &key, &message), 0);
                ASSERT_STREQ(key, KEY);
                ASSERT_STREQ(c->refresh_token, "rt-0");
                ASSERT_STREQ(c->access_token, "at-rt-0");
                ASSERT_STREQ(c->profile_arn, ARN);
                ASSERT_EQ(c->method, AUTH_METHOD_SOCIAL);
                credential_record_free(c);
                ASSERT_ERROR(kirocli_db_read(d.fd, "nope.sqlite3", &c, &key, &message), ENOENT);
                /* Paths of our own still work in this process after the system calls were mapped. */
                char *v = query_text(d.db, "SELECT value FROM auth_kv WHERE key = 'other'");
                ASSERT_STREQ(v, "x");
                free(v);
                dir_done(&d);
        }
}

TEST(symlinks_are_refused) {
        Dir d;
        char link[128], target[128];
        CredentialRecord *c = NULL;
        char *message = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];

        dir_make(&d, false);
        snprintf(link, sizeof link, "%s/link.sqlite3", d.path);
        ASSERT_OK(symlink(d.db, link) < 0 ? -errno : 0);
        ASSERT_ERROR(kirocli_db_read(d.fd, "link.sqlite3", &c, NULL, &message), ELOOP);
        ASSERT_ERROR(kirocli_db_login_digest(d.fd, "link.sqlite3", digest), ELOOP);
        ASSERT_ERROR(kirocli_db_write_back(d.fd, "link.sqlite3", KEY, "rt-0", &(CredentialRecord) {}, &message), ELOOP);
        /* A -wal that is a symlink is not read either. */
        snprintf(link, sizeof link, "%s/data.sqlite3-wal", d.path);
        snprintf(target, sizeof target, "%s/elsewhere", d.path);
        ASSERT_OK(symlink(target, link) < 0 ? -errno : 0);
        ASSERT_ERROR(kirocli_db_read(d.fd, "data.sqlite3", &c, NULL, &message), ELOOP);
        ASSERT_NULL(c);
        free(message);
        dir_done(&d);
}

TEST(garbage_is_invalid) {
        Dir d;
        char path[128];
        CredentialRecord *c = NULL;
        char *message = NULL;
        int fd;

        dir_make(&d, false);
        snprintf(path, sizeof path, "%s/text.sqlite3", d.path);
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        char text[256];
        memset(text, '.', sizeof text);
        memcpy(text, "this is not a database", 22);
        ASSERT_EQ(write(fd, text, sizeof text), (ssize_t) sizeof text);
        close(fd);
        ASSERT_EQ(kirocli_db_read(d.fd, "text.sqlite3", &c, NULL, &message), IMPORT_E_INVALID);
        ASSERT_NOT_NULL(message);
        free(message);
        message = NULL;
        ASSERT_ERROR(truncate(d.db, 0) < 0 ? -errno : 0, 0);
        ASSERT_EQ(kirocli_db_read(d.fd, "data.sqlite3", &c, NULL, &message), IMPORT_E_INVALID);
        free(message);
        dir_done(&d);
}

TEST(write_back_keeps_everything_else) {
        for (int wal = 0; wal < 2; wal++) {
                Dir d;
                char *message = NULL;
                CredentialRecord c = {
                        .access_token = (char *) "at-new",
                        .refresh_token = (char *) "rt-new",
                        .expires_at = 1900000000ULL * 1000000ULL,
                };

                dir_make(&d, wal);
                char *before = query_text(d.db, "SELECT group_concat(key || '=' || hex(value)) FROM "
                                                "(SELECT key, value FROM auth_kv WHERE key != '" KEY "' UNION ALL "
                                                "SELECT key, value FROM state UNION ALL SELECT key, value FROM conversations)");
                ASSERT_EQ(kirocli_db_write_back(d.fd, "data.sqlite3", KEY, "rt-0", &c, &message), 0);
                char *after = query_text(d.db, "SELECT group_concat(key || '=' || hex(value)) FROM "
                                               "(SELECT key, value FROM auth_kv WHERE key != '" KEY "' UNION ALL "
                                               "SELECT key, value FROM state UNION ALL SELECT key, value FROM conversations)");
                ASSERT_STREQ(after, before);
                char *v = query_text(d.db, "SELECT value FROM auth_kv WHERE key = '" KEY "'");
                json_object *o = NULL;
                ASSERT_OK(json_parse_bounded(v, strlen(v), 16, &o, NULL));
                ASSERT_STREQ(json_string_or_null(o, "refresh_token"), "rt-new");
                ASSERT_STREQ(json_string_or_null(o, "access_token"), "at-new");
                ASSERT_STREQ(json_string_or_null(o, "expires_at"), "2030-03-17T17:46:40.000Z");
                ASSERT_STREQ(json_string_or_null(o, "profile_arn"), ARN);
                ASSERT_STREQ(json_object_to_json_string_ext(json_object_object_get(o, "future"), JSON_C_TO_STRING_PLAIN),
                             "{\"kept\":[1,2,3]}");
                json_object_put(o);
                free(v);
                v = query_text(d.db, "PRAGMA journal_mode");
                ASSERT_STREQ(v, wal ? "wal" : "delete");
                free(v);
                free(before);
                free(after);

                /* Not from the token it holds now: nothing written. */
                ASSERT_ERROR(kirocli_db_write_back(d.fd, "data.sqlite3", KEY, "rt-0", &c, &message), ESTALE);
                exec_sql(d.db, "DELETE FROM auth_kv WHERE key = '" KEY "'");
                ASSERT_ERROR(kirocli_db_write_back(d.fd, "data.sqlite3", KEY, "rt-new", &c, &message), ESTALE);
                free(message);
                dir_done(&d);
        }
}

static uint64_t now_msec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

TEST(write_back_locked_is_busy) {
        for (int wal = 0; wal < 2; wal++) {
                Dir d;
                sqlite3 *holder;
                char *message = NULL;
                CredentialRecord c = { .access_token = (char *) "at-new", .refresh_token = (char *) "rt-new" };

                dir_make(&d, wal);
                ASSERT_EQ(sqlite3_open(d.db, &holder), SQLITE_OK);
                ASSERT_EQ(sqlite3_exec(holder, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
                uint64_t t0 = now_msec();
                ASSERT_ERROR(kirocli_db_write_back(d.fd, "data.sqlite3", KEY, "rt-0", &c, &message), EBUSY);
                uint64_t took = now_msec() - t0;
                printf("locked (%s): refused after %llu ms\n", wal ? "wal" : "rollback", (unsigned long long) took);
                ASSERT_TRUE(took >= KIROCLI_BUSY_TIMEOUT_MSEC / 2 && took < 3 * KIROCLI_BUSY_TIMEOUT_MSEC);
                ASSERT_EQ(sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
                sqlite3_close(holder);
                free(message);
                message = NULL;
                ASSERT_EQ(kirocli_db_write_back(d.fd, "data.sqlite3", KEY, "rt-0", &c, &message), 0);
                dir_done(&d);
        }
}

TEST(digest_follows_the_login_only) {
        Dir d;
        uint8_t a[SHA256_DIGEST_SIZE], b[SHA256_DIGEST_SIZE];

        dir_make(&d, true);
        ASSERT_OK(kirocli_db_login_digest(d.fd, "data.sqlite3", a));
        exec_sql(d.db, "INSERT INTO conversations VALUES('/q', '{\"many\":\"turns\"}')");
        ASSERT_OK(kirocli_db_login_digest(d.fd, "data.sqlite3", b));
        ASSERT_TRUE(memcmp(a, b, sizeof a) == 0);
        exec_sql(d.db, "UPDATE auth_kv SET value = '" TOKEN("rt-1") "' WHERE key = '" KEY "'");
        ASSERT_OK(kirocli_db_login_digest(d.fd, "data.sqlite3", b));
        ASSERT_TRUE(memcmp(a, b, sizeof a) != 0);
        dir_done(&d);
}

/* What the digest saves when kiro-cli writes its conversations (about 20 MB of them here). */
TEST(digest_is_cheaper_than_a_read) {
        Dir d;
        uint8_t digest[SHA256_DIGEST_SIZE];
        CredentialRecord *c = NULL;
        char *message = NULL;

        dir_make(&d, true);
        exec_sql(d.db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
                       "INSERT INTO conversations SELECT 'c' || i, hex(randomblob(5000)) FROM n");
        uint64_t t0 = now_msec();
        ASSERT_EQ(kirocli_db_read(d.fd, "data.sqlite3", &c, NULL, &message), 0);
        uint64_t t1 = now_msec();
        ASSERT_OK(kirocli_db_login_digest(d.fd, "data.sqlite3", digest));
        uint64_t t2 = now_msec();
        printf("20 MB database: whole read %llu ms, login digest %llu ms\n", (unsigned long long) (t1 - t0),
               (unsigned long long) (t2 - t1));
        ASSERT_TRUE(t2 - t1 <= t1 - t0);
        credential_record_free(c);
        dir_done(&d);
}

/* auth_kv as a view (a recursive CTE could run for ever): refused by every path, nothing written. */
TEST(crafted_schema_is_refused) {
        Dir d;
        char path[128], *message = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];
        CredentialRecord *c = NULL;
        CredentialRecord new = { .access_token = (char *) "at-new", .refresh_token = (char *) "rt-new" };

        dir_make(&d, false);
        snprintf(path, sizeof path, "%s/view.sqlite3", d.path);
        exec_sql(path, "CREATE TABLE t(key TEXT, value TEXT);"
                       "INSERT INTO t VALUES('" KEY "', '" TOKEN("rt-0") "');"
                       "CREATE VIEW auth_kv AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                       "SELECT key, value FROM t, n;");
        ASSERT_ERROR(kirocli_db_login_digest(d.fd, "view.sqlite3", digest), EBADMSG);
        ASSERT_EQ(kirocli_db_read(d.fd, "view.sqlite3", &c, NULL, &message), IMPORT_E_INVALID);
        ASSERT_NULL(c);
        free(message);
        message = NULL;
        ASSERT_EQ(kirocli_db_write_back(d.fd, "view.sqlite3", KEY, "rt-0", &new, &message), IMPORT_E_INVALID);
        free(message);
        char *v = query_text(path, "SELECT value FROM t");
        ASSERT_TRUE(strstr(v, "\"rt-0\"") != NULL);
        free(v);
        dir_done(&d);
}
