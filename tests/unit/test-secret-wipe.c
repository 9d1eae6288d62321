/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Secrets are wiped where they actually live (issue 9 item 9): an allocator hook scans every block as it
 * is freed for a known secret. Needs AddressSanitizer's hooks (the test build); skipped without. */
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "authd-credential.h"
#include "authd-import.h"
#include "authd-refresh.h"
#include "fileio.h"
#include "json-util.h"
#include "tests.h"

#define MARKER "SeCrEt-7f3a9c41-MARKER"

#ifdef __SANITIZE_ADDRESS__
void __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                               void (*free_hook)(const volatile void *));
size_t __sanitizer_get_allocated_size(const volatile void *p);

static unsigned found_in_freed;
static bool scanning;

static void on_malloc(const volatile void *p, size_t n) {
        (void) p, (void) n;
}

/* Runs before the allocator takes the block back: its content is still what the program left there. */
static void on_free(const volatile void *p) {
        if (!scanning || !p)
                return;
        size_t n = __sanitizer_get_allocated_size(p);
        /* Part of the marker is enough: a realloc()ed buffer may hold a cut-off copy. */
        if (n >= 12 && memmem((const void *) p, n, MARKER, 12))
                found_in_freed++;
}

static void scan_begin(void) {
        static bool installed;
        if (!installed) {
                __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
                installed = true;
        }
        found_in_freed = 0;
        scanning = true;
}

static unsigned scan_end(void) {
        scanning = false;
        return found_in_freed;
}
#define SKIP_WITHOUT_HOOKS() do {} while (0)
#else
static void scan_begin(void) {}
static unsigned scan_end(void) { return 0; }
#define SKIP_WITHOUT_HOOKS()                                                    \
        do {                                                                    \
                fprintf(stderr, "SKIP: no AddressSanitizer allocator hooks\n"); \
                exit(77);                                                       \
        } while (0)
#endif

/* A secret long enough that json-c's print buffer grows several times while writing it. */
static char *long_secret(size_t n) {
        char *s = malloc(n + 1);
        ASSERT_NOT_NULL(s);
        memset(s, 'k', n);
        memcpy(s, MARKER, strlen(MARKER));
        s[n] = 0;
        return s;
}

TEST(hook_sees_json_c_print_buffer) {
        SKIP_WITHOUT_HOOKS();
        /* The old way (erase the strings, then put) leaves the serialized text in json-c's buffer: the hook
         * must catch that, or the tests below prove nothing. */
        char *secret = long_secret(3000);
        json_object *o = json_object_new_object();
        ASSERT_OK(json_set_string(o, "refreshToken", secret));
        scan_begin();
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
        ASSERT_TRUE(strstr(s, MARKER));
        json_object_erase_strings(o);
        json_object_put(o);
        ASSERT_TRUE(scan_end() > 0);
        erase_and_free(secret);
}

TEST(json_to_string_secret_leaves_nothing) {
        SKIP_WITHOUT_HOOKS();
        char *secret = long_secret(3000);
        scan_begin();
        json_object *o = json_object_new_object();
        ASSERT_OK(json_set_string(o, "a", "not secret"));
        ASSERT_OK(json_set_string(o, "refreshToken", secret));
        ASSERT_OK(json_set_string(o, "quoted", "\"\\\n\x01" MARKER));
        json_object *arr = json_object_new_array();
        json_object_array_add(arr, json_object_new_string(secret));
        json_object_array_add(arr, json_object_get(json_object_object_get(o, "refreshToken"))); /* shared */
        json_object_object_add(o, "list", arr);
        char *text = NULL;
        size_t n = 0;
        ASSERT_OK(json_to_string_secret(o, JSON_C_TO_STRING_PRETTY, &text, &n));
        /* The same text json-c writes, strings restored. */
        ASSERT_EQ(n, strlen(text));
        _cleanup_json_ json_object *back = NULL;
        ASSERT_OK(json_parse_secret(text, n, 8, &back, NULL));
        ASSERT_STREQ(json_string_or_null(back, "refreshToken"), secret);
        ASSERT_STREQ(json_string_or_null(back, "quoted"), "\"\\\n\x01" MARKER);
        ASSERT_STREQ(json_string_or_null(o, "refreshToken"), secret);
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(arr, 1)), secret);
        json_object_erase_strings(back);
        json_object_put(TAKE_PTR(back));
        /* Serialized twice: the second time the buffer is already there. */
        char *text2 = NULL;
        ASSERT_OK(json_to_string_secret(o, JSON_C_TO_STRING_PRETTY, &text2, NULL));
        ASSERT_STREQ(text, text2);
        erase_and_free(text);
        erase_and_free(text2);
        json_object_erase_strings(o);
        json_object_put(o);
        ASSERT_EQ(scan_end(), 0);
        erase_and_free(secret);
}

TEST(json_parse_leaves_nothing) {
        SKIP_WITHOUT_HOOKS();
        char *secret = long_secret(5000), *doc = NULL;
        ASSERT_TRUE(asprintf(&doc, "{\"accessToken\":\"%s\",\"x\":\"short\"}", secret) > 0);
        size_t n = strlen(doc);
        scan_begin();
        json_object *o = NULL;
        ASSERT_OK(json_parse_secret(doc, n, 8, &o, NULL));
        json_object_erase_strings(o);
        json_object_put(o);
        /* The cached tokeners of json_parse_bounded() keep nothing either, even once freed. */
        ASSERT_OK(json_parse_bounded(doc, n, 8, &o, NULL));
        json_object_erase_strings(o);
        json_object_put(o);
        json_parse_cache_clear();
        ASSERT_EQ(scan_end(), 0);
        erase_and_free(doc);
        erase_and_free(secret);
}

TEST(read_full_fd_leaves_nothing) {
        SKIP_WITHOUT_HOOKS();
        int sv[2];
        size_t total = 256 * 1024;
        char *secret = long_secret(total);
        /* A socket has no size up front: the buffer grows from 8 KiB, copying each time. */
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        int sz = (int) total * 2;
        (void) setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        (void) setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                close(sv[1]);
                for (size_t off = 0; off < total;) {
                        ssize_t k = write(sv[0], secret + off, total - off);
                        if (k <= 0)
                                _exit(1);
                        off += (size_t) k;
                }
                _exit(0);
        }
        close(sv[0]);
        char *data = NULL;
        size_t size = 0;
        scan_begin();
        ASSERT_OK(read_full_fd(sv[1], total * 2, &data, &size));
        ASSERT_EQ(size, total);
        ASSERT_TRUE(memcmp(data, MARKER, strlen(MARKER)) == 0);
        erase_and_free_sized(data, size);
        ASSERT_EQ(scan_end(), 0);
        close(sv[1]);
        erase_and_free(secret);
}

TEST(sqlite_import_leaves_nothing) {
        SKIP_WITHOUT_HOOKS();
        /* Build the database, then hand SQLite back so the import can install its wiping allocator. */
        char *tok = NULL;
        ASSERT_TRUE(asprintf(&tok, "{\"access_token\":\"a\",\"refresh_token\":\"%s\",\"region\":\"us-east-1\"}", MARKER) > 0);
        sqlite3 *db;
        sqlite3_stmt *st;
        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);", NULL, NULL, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO auth_kv VALUES('kirocli:social:token', ?1)", -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, tok, -1, SQLITE_STATIC);
        ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        sqlite3_int64 n;
        unsigned char *p = sqlite3_serialize(db, "main", &n, 0);
        ASSERT_NOT_NULL(p);
        unsigned char *image = malloc((size_t) n);
        memcpy(image, p, (size_t) n);
        explicit_bzero(p, (size_t) n);
        sqlite3_free(p);
        sqlite3_close(db);
        erase_and_free(tok);
        ASSERT_EQ(sqlite3_shutdown(), SQLITE_OK);

        CredentialRecord *c = NULL;
        char *msg = NULL;
        scan_begin();
        ASSERT_EQ(import_kiro_cli_sqlite(image, (size_t) n, &c, &msg), 0);
        ASSERT_STREQ(c->refresh_token, MARKER);
        credential_record_free(c);
        unsigned hits = scan_end();
        if (hits > 0)
                ASSERT_FAIL("%u freed blocks still held the refresh token", hits);
        erase_and_free_sized(image, (size_t) n);
}

TEST(credential_file_and_refresh_body_leave_nothing) {
        SKIP_WITHOUT_HOOKS();
        scan_begin();
        CredentialRecord *c = credential_record_new();
        ASSERT_NOT_NULL(c);
        c->id = strdup("x");
        c->method = AUTH_METHOD_BUILDER_ID;
        c->region = strdup("eu-central-1");
        c->refresh_token = long_secret(2000);
        c->client_id = strdup("cid");
        c->client_secret = strdup(MARKER "-client-secret");
        char *text = NULL;
        ASSERT_OK(credential_record_to_json(c, &text));
        ASSERT_TRUE(strstr(text, MARKER));
        CredentialRecord *back = NULL;
        ASSERT_OK(credential_record_from_json(text, strlen(text), &back, NULL));
        ASSERT_STREQ(back->refresh_token, c->refresh_token);
        erase_and_free(text);
        credential_record_free(back);

        RefreshRequest req = {};
        ASSERT_OK(refresh_build_request(c, "https://prod.{region}.auth.desktop.kiro.dev", "https://oidc.{region}.amazonaws.com",
                                        "https://auth.kimi.com", &req, NULL));
        ASSERT_STREQ(req.url, "https://oidc.eu-central-1.amazonaws.com/token");
        ASSERT_TRUE(strstr(req.body, MARKER));
        refresh_request_done(&req);
        credential_record_free(c);
        json_parse_cache_clear();
        unsigned hits = scan_end();
        if (hits > 0)
                ASSERT_FAIL("%u freed blocks still held a secret", hits);
}
