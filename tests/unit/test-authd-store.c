/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The credential record's JSON form and the atomic store. */
#include <fcntl.h>
#include <sys/stat.h>

#include "authd-store.h"
#include "fileio.h"
#include "json-util.h"
#include "tests.h"

static char *mktemp_dir(void) {
        char *t = strdup("/tmp/kirod-test-store-XXXXXX");
        ASSERT_NOT_NULL(mkdtemp(t));
        return t;
}

TEST(roundtrip_keeps_unknown_fields) {
        const char *text = "{\"id\":\"a\",\"provider\":\"kiro\",\"auth_method\":\"idc\",\"refresh_token\":\"rt\","
                           "\"expires_at\":\"2030-01-01T00:00:00.000Z\",\"future_field\":{\"x\":[1,2]},"
                           "\"health\":{\"state\":\"needs-login\",\"consecutive_failures\":3,\"extra\":true},"
                           "\"enabled\":false}";
        CredentialRecord *c = NULL;
        const char *err = NULL;
        ASSERT_OK(credential_record_from_json(text, strlen(text), &c, &err));
        ASSERT_EQ(c->method, AUTH_METHOD_IDC);
        ASSERT_EQ(c->health, HEALTH_NEEDS_LOGIN);
        ASSERT_EQ(c->consecutive_failures, 3);
        ASSERT_FALSE(c->enabled);
        free(c->refresh_token);
        c->refresh_token = strdup("rt-new");
        char *out = NULL;
        ASSERT_OK(credential_record_to_json(c, &out));
        _cleanup_json_ json_object *o = NULL;
        ASSERT_OK(json_parse_bounded(out, strlen(out), 8, &o, NULL));
        json_object *ff, *h;
        ASSERT_TRUE(json_object_object_get_ex(o, "future_field", &ff));
        ASSERT_STREQ(json_object_to_json_string_ext(ff, JSON_C_TO_STRING_PLAIN), "{\"x\":[1,2]}");
        ASSERT_STREQ(json_string_or_null(o, "refresh_token"), "rt-new");
        ASSERT_STREQ(json_string_or_null(o, "expires_at"), "2030-01-01T00:00:00.000Z");
        ASSERT_OK(json_get_object(o, "health", &h));
        bool extra = false;
        ASSERT_OK(json_get_bool(h, "extra", &extra));
        ASSERT_TRUE(extra);
        free(out);
        credential_record_free(c);
}

TEST(link_roundtrip_and_old_files) {
        /* A file written before links were stored: owned, and no "link" appears on rewrite. */
        const char *old = "{\"id\":\"a\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"rt\","
                          "\"source\":{\"format\":\"kiro-cli-sqlite\",\"path\":\"/home/u/data.sqlite3\"}}";
        CredentialRecord *c = NULL;
        const char *err = NULL;
        char *out = NULL;
        ASSERT_OK(credential_record_from_json(old, strlen(old), &c, &err));
        ASSERT_NULL(c->link_format);
        ASSERT_NULL(c->link_name);
        ASSERT_OK(credential_record_to_json(c, &out));
        ASSERT_NULL(strstr(out, "\"link\""));
        free(out);

        /* Set, written, read back; unknown fields inside "link" kept. */
        ASSERT_OK(credential_record_set_link(c, "kiro-cli-sqlite", "data.sqlite3", "/home/u/data.sqlite3"));
        c->link_source_sha256 = strdup("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        ASSERT_OK(credential_record_to_json(c, &out));
        json_object *l = NULL;
        ASSERT_TRUE(json_object_object_get_ex(c->doc, "link", &l));
        json_object_object_add(l, "future", json_object_new_int(7));
        free(out);
        ASSERT_OK(credential_record_to_json(c, &out));
        credential_record_free(c);
        c = NULL;
        ASSERT_OK(credential_record_from_json(out, strlen(out), &c, &err));
        ASSERT_STREQ(c->link_format, "kiro-cli-sqlite");
        ASSERT_STREQ(c->link_name, "data.sqlite3");
        ASSERT_STREQ(c->link_path, "/home/u/data.sqlite3");
        ASSERT_STREQ(c->link_source_sha256, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        ASSERT_NOT_NULL(strstr(out, "\"future\""));
        free(out);

        /* Unlinked: "link" leaves the file. */
        ASSERT_OK(credential_record_set_link(c, NULL, NULL, NULL));
        ASSERT_NULL(c->link_source_sha256);
        ASSERT_OK(credential_record_to_json(c, &out));
        ASSERT_NULL(strstr(out, "\"link\""));
        free(out);
        credential_record_free(c);

        /* A link that names no known format, or a path rather than a file name, is refused. */
        const char *bad[] = {
                "{\"id\":\"a\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"rt\","
                "\"link\":{\"format\":\"refresh-token\",\"name\":\"x\"}}",
                "{\"id\":\"a\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"rt\","
                "\"link\":{\"format\":\"kiro-ide-json\",\"name\":\"../x\"}}",
                "{\"id\":\"a\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"rt\","
                "\"link\":{\"format\":\"kiro-ide-json\"}}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                c = NULL;
                ASSERT_ERROR(credential_record_from_json(bad[i], strlen(bad[i]), &c, &err), EBADMSG);
                ASSERT_STREQ(err, "invalid 'link'");
                ASSERT_NULL(c);
        }
}

TEST(bad_documents) {
        CredentialRecord *c = NULL;
        const char *err = NULL;
        ASSERT_ERROR(credential_record_from_json("[]", 2, &c, &err), EBADMSG);
        ASSERT_STREQ(err, "not a JSON object");
        const char *noid = "{\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"r\"}";
        ASSERT_ERROR(credential_record_from_json(noid, strlen(noid), &c, &err), EBADMSG);
        ASSERT_STREQ(err, "missing or invalid 'id'");
        const char *badid = "{\"id\":\"../x\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"r\"}";
        ASSERT_ERROR(credential_record_from_json(badid, strlen(badid), &c, &err), EBADMSG);
        const char *notok = "{\"id\":\"x\",\"provider\":\"kiro\",\"auth_method\":\"social\"}";
        ASSERT_ERROR(credential_record_from_json(notok, strlen(notok), &c, &err), EBADMSG);
        const char *badtime = "{\"id\":\"x\",\"provider\":\"kiro\",\"auth_method\":\"social\",\"refresh_token\":\"r\",\"expires_at\":5}";
        ASSERT_ERROR(credential_record_from_json(badtime, strlen(badtime), &c, &err), EBADMSG);
        ASSERT_NULL(c);
}

static int n_loaded;
static char *last_bad;
static int on_cred(CredentialRecord *c, void *userdata) {
        n_loaded++;
        ASSERT_STREQ(c->id, "good");
        credential_record_free(c);
        return 0;
}
static void on_bad(const char *file, int error, const char *reason, void *userdata) {
        free(last_bad);
        last_bad = strdup(file);
}

TEST(store_save_load_and_bad_files) {
        _cleanup_free_ char *dir = mktemp_dir();
        Store s;
        ASSERT_OK(store_open(dir, &s));
        CredentialRecord *c = credential_record_new();
        c->id = strdup("good");
        c->refresh_token = strdup("secret-rt");
        c->expires_at = 1700000000 * USEC_PER_SEC;
        ASSERT_OK(store_save(&s, c));
        credential_record_free(c);

        struct stat st;
        ASSERT_OK(fstatat(s.dir_fd, "good.json", &st, 0));
        ASSERT_EQ(st.st_mode & 07777, 0600);
        /* a torn write leaves only a temporary file, cleaned on open; a garbage file is reported */
        ASSERT_OK(write_file_atomic_at(s.dir_fd, "broken.json", "{\"id\":", 6, 0600));
        int fd = openat(s.dir_fd, ".#good.json.123", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        close(fd);
        store_close(&s);

        ASSERT_OK(store_open(dir, &s));
        ASSERT_ERROR(faccessat(s.dir_fd, ".#good.json.123", F_OK, 0) < 0 ? -errno : 0, ENOENT);
        n_loaded = 0;
        ASSERT_OK(store_load_all(&s, on_cred, on_bad, NULL));
        ASSERT_EQ(n_loaded, 1);
        ASSERT_STREQ(last_bad, "broken.json");
        /* the bad file is left untouched */
        char *text = NULL;
        size_t size;
        int dfd = openat(s.dir_fd, "broken.json", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(read_full_fd(dfd, 100, &text, &size));
        close(dfd);
        ASSERT_STREQ(text, "{\"id\":");
        free(text);
        ASSERT_OK(store_remove(&s, "good"));
        ASSERT_OK(store_remove(&s, "broken"));
        store_close(&s);
        free(last_bad);
        char sub[512];
        snprintf(sub, sizeof sub, "%s/credentials", dir);
        ASSERT_OK(rmdir(sub));
        ASSERT_OK(rmdir(dir));
}

TEST(store_open_checks) {
        _cleanup_free_ char *dir = mktemp_dir(), *other = mktemp_dir();
        char sub[512];
        struct stat st;
        Store s;

        last_bad = NULL;        /* freed by the test before */
        /* Open to others: made private. */
        ASSERT_OK(chmod(dir, 0755) < 0 ? -errno : 0);
        ASSERT_OK(store_open(dir, &s));
        ASSERT_OK(stat(dir, &st) < 0 ? -errno : 0);
        ASSERT_EQ(st.st_mode & 07777, 0700);

        /* A FIFO is reported and skipped, not opened for a blocking read. */
        ASSERT_OK(mkfifoat(s.dir_fd, "fifo.json", 0600) < 0 ? -errno : 0);
        n_loaded = 0;
        ASSERT_OK(store_load_all(&s, on_cred, on_bad, NULL));
        ASSERT_EQ(n_loaded, 0);
        ASSERT_STREQ(last_bad, "fifo.json");
        ASSERT_OK(unlinkat(s.dir_fd, "fifo.json", 0) < 0 ? -errno : 0);
        store_close(&s);

        /* credentials/ as a symlink: refused, nothing created at its target. */
        snprintf(sub, sizeof sub, "%s/credentials", dir);
        ASSERT_OK(rmdir(sub) < 0 ? -errno : 0);
        ASSERT_OK(symlink(other, sub) < 0 ? -errno : 0);
        {
                /* O_NOFOLLOW|O_DIRECTORY on a symlink: ELOOP or ENOTDIR, depending on the kernel. */
                int r = store_open(dir, &s);
                ASSERT_TRUE(r == -ELOOP || r == -ENOTDIR);
        }
        ASSERT_OK(unlink(sub) < 0 ? -errno : 0);

        /* Another owner: refused. */
        ASSERT_OK(chown(dir, 65534, 65534) < 0 ? -errno : 0);
        ASSERT_ERROR(store_open(dir, &s), EPERM);

        free(last_bad);
        last_bad = NULL;
        ASSERT_OK(rmdir(other) < 0 ? -errno : 0);
        ASSERT_OK(rmdir(dir) < 0 ? -errno : 0);
}

TEST(rfc3339) {
        usec_t t;
        ASSERT_OK(parse_rfc3339("2025-12-31T02:32:45.144Z", &t));
        ASSERT_EQ(t, 1767148365144000ULL);
        ASSERT_OK(parse_rfc3339("2025-12-31T03:32:45.144+01:00", &t));
        ASSERT_EQ(t, 1767148365144000ULL);
        ASSERT_OK(parse_rfc3339("2025-12-31T02:32:45.144999999Z", &t));
        ASSERT_EQ(t, 1767148365144999ULL);
        ASSERT_ERROR(parse_rfc3339("2025-12-31", &t), EINVAL);
        ASSERT_ERROR(parse_rfc3339("2025-12-31T02:32:45Zjunk", &t), EINVAL);
        char buf[RFC3339_MAX];
        ASSERT_STREQ(format_rfc3339(buf, sizeof buf, 1767148365144000ULL), "2025-12-31T02:32:45.144Z");
}
