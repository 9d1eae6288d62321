/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Import parsers: kiro-cli SQLite snapshots, Kiro IDE JSON, bare refresh tokens and API keys. */
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authd-import.h"
#include "tests.h"

/* Builds a kiro-cli-like database in memory and returns its serialized bytes. */
static unsigned char *make_db(const char *const *kv, const char *profile, bool with_state, size_t *ret_size) {
        sqlite3 *db;
        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);", NULL, NULL, NULL), SQLITE_OK);
        if (with_state)
                ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE state(key TEXT PRIMARY KEY, value BLOB);", NULL, NULL, NULL),
                          SQLITE_OK);
        for (size_t i = 0; kv && kv[i]; i += 2) {
                sqlite3_stmt *st;
                ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO auth_kv VALUES(?1, ?2)", -1, &st, NULL), SQLITE_OK);
                sqlite3_bind_text(st, 1, kv[i], -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, kv[i + 1], -1, SQLITE_STATIC);
                ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
                sqlite3_finalize(st);
        }
        if (profile) {
                sqlite3_stmt *st;
                ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO state VALUES('api.codewhisperer.profile', ?1)", -1, &st,
                                             NULL), SQLITE_OK);
                sqlite3_bind_blob(st, 1, profile, (int) strlen(profile), SQLITE_STATIC);
                ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
                sqlite3_finalize(st);
        }
        sqlite3_int64 size;
        unsigned char *p = sqlite3_serialize(db, "main", &size, 0);
        ASSERT_NOT_NULL(p);
        sqlite3_close(db);
        *ret_size = (size_t) size;
        return p;
}

#define SOCIAL_TOKEN "{\"access_token\":\"at-social\",\"refresh_token\":\"rt-social\"," \
        "\"expires_at\":\"2031-01-02T03:04:05.123456789Z\",\"region\":\"us-east-1\"," \
        "\"profile_arn\":\"arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK\"}"
#define ODIC_TOKEN "{\"access_token\":\"at-odic\",\"refresh_token\":\"rt-odic\"," \
        "\"expires_at\":\"2031-01-02T03:04:05.123456789Z\",\"region\":\"eu-west-1\"," \
        "\"start_url\":\"https://view.awsapps.com/start\",\"oauth_flow\":\"DeviceCode\",\"scopes\":[\"a\",\"b\"]}"
#define ODIC_REG "{\"client_id\":\"cid\",\"client_secret\":\"csecret\"," \
        "\"client_secret_expires_at\":\"2031-01-01T00:00:00Z\",\"region\":\"eu-west-1\"}"
#define PROFILE "{\"arn\":\"arn:aws:codewhisperer:eu-central-1:123456789012:profile/ABC\",\"profile_name\":\"p\"}"

static CredentialRecord *import_db_ok(const char *const *kv, const char *profile) {
        size_t size;
        unsigned char *p = make_db(kv, profile, true, &size);
        CredentialRecord *c = NULL;
        char *msg = NULL;
        int r = import_kiro_cli_sqlite(p, size, &c, &msg);
        if (r != 0)
                ASSERT_FAIL("import failed: %d %s", r, msg ?: "");
        sqlite3_free(p);
        free(msg);
        return c;
}

static int import_db_err(const char *const *kv, bool with_state, char **ret_msg) {
        size_t size;
        unsigned char *p = make_db(kv, NULL, with_state, &size);
        CredentialRecord *c = NULL;
        int r = import_kiro_cli_sqlite(p, size, &c, ret_msg);
        sqlite3_free(p);
        ASSERT_NULL(c);
        return r;
}

TEST(sqlite_social) {
        const char *kv[] = { "kirocli:social:token", SOCIAL_TOKEN, NULL };
        CredentialRecord *c = import_db_ok(kv, NULL);
        ASSERT_STREQ(auth_method_to_string(c->method), "social");
        ASSERT_STREQ(c->refresh_token, "rt-social");
        ASSERT_STREQ(c->access_token, "at-social");
        ASSERT_STREQ(c->profile_arn, "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK");
        /* nine fractional digits: truncated to µs */
        usec_t want;
        ASSERT_OK(parse_rfc3339("2031-01-02T03:04:05.123456Z", &want));
        ASSERT_EQ(c->expires_at, want);
        credential_record_free(c);
}

TEST(sqlite_priority_external_idp_first) {
        const char *kv[] = {
                "kirocli:social:token", SOCIAL_TOKEN,
                "kirocli:external-idp:token",
                "{\"access_token\":\"at-x\",\"refresh_token\":\"rt-x\",\"token_endpoint\":\"https://idp.example/token\","
                "\"client_id\":\"xid\",\"scopes\":\"openid offline\"}",
                NULL };
        CredentialRecord *c = import_db_ok(kv, NULL);
        ASSERT_STREQ(auth_method_to_string(c->method), "external-idp");
        ASSERT_STREQ(c->refresh_token, "rt-x");
        ASSERT_STREQ(c->token_endpoint, "https://idp.example/token");
        ASSERT_STREQ(c->scopes, "openid offline");
        credential_record_free(c);
}

TEST(sqlite_odic_builder_id_with_profile) {
        const char *kv[] = { "kirocli:odic:token", ODIC_TOKEN, "kirocli:odic:device-registration", ODIC_REG, NULL };
        CredentialRecord *c = import_db_ok(kv, PROFILE);
        ASSERT_STREQ(auth_method_to_string(c->method), "builder-id");
        ASSERT_STREQ(c->client_id, "cid");
        ASSERT_STREQ(c->client_secret, "csecret");
        ASSERT_STREQ(c->region, "eu-west-1");
        ASSERT_STREQ(c->scopes, "a b");
        ASSERT_STREQ(c->profile_arn, "arn:aws:codewhisperer:eu-central-1:123456789012:profile/ABC");
        char buf[64];
        ASSERT_STREQ(credential_record_api_region(c, buf, sizeof buf), "eu-central-1");
        credential_record_free(c);
}

TEST(sqlite_legacy_codewhisperer_idc) {
        const char *kv[] = {
                "codewhisperer:odic:token",
                "{\"access_token\":\"a\",\"refresh_token\":\"rt-legacy\",\"start_url\":\"https://corp.awsapps.com/start\","
                "\"region\":\"us-west-2\"}",
                "codewhisperer:odic:device-registration", "{\"clientId\":\"c2\",\"clientSecret\":\"s2\"}",
                NULL };
        CredentialRecord *c = import_db_ok(kv, NULL);
        ASSERT_STREQ(auth_method_to_string(c->method), "idc");
        ASSERT_STREQ(c->client_id, "c2");
        ASSERT_STREQ(c->refresh_token, "rt-legacy");
        ASSERT_STREQ(c->region, "us-west-2");
        credential_record_free(c);
}

TEST(sqlite_social_preferred_over_odic) {
        const char *kv[] = { "kirocli:odic:token", ODIC_TOKEN, "kirocli:odic:device-registration", ODIC_REG,
                             "kirocli:social:token", SOCIAL_TOKEN, NULL };
        CredentialRecord *c = import_db_ok(kv, NULL);
        ASSERT_STREQ(auth_method_to_string(c->method), "social");
        credential_record_free(c);
}

TEST(sqlite_errors) {
        char *msg = NULL;
        const char *none[] = { "other", "x", NULL };
        ASSERT_EQ(import_db_err(none, true, &msg), IMPORT_E_NO_TOKEN);
        ASSERT_TRUE(strstr(msg, "no kiro-cli login"));
        free(msg), msg = NULL;

        const char *no_reg[] = { "kirocli:odic:token", ODIC_TOKEN, NULL };
        ASSERT_EQ(import_db_err(no_reg, true, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "no device registration"));
        free(msg), msg = NULL;

        const char *expired[] = { "kirocli:odic:token", ODIC_TOKEN, "kirocli:odic:device-registration",
                                  "{\"client_id\":\"c\",\"client_secret\":\"s\",\"client_secret_expires_at\":\"2020-01-01T00:00:00Z\"}",
                                  NULL };
        ASSERT_EQ(import_db_err(expired, true, &msg), IMPORT_E_REGISTRATION_EXPIRED);
        ASSERT_TRUE(strstr(msg, "expired"));
        free(msg), msg = NULL;

        const char *bad_json[] = { "kirocli:social:token", "{not json", NULL };
        ASSERT_EQ(import_db_err(bad_json, true, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "kirocli:social:token"));
        free(msg), msg = NULL;

        const char *wrong_type[] = { "kirocli:social:token", "{\"refresh_token\":42}", NULL };
        ASSERT_EQ(import_db_err(wrong_type, true, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "'refresh_token'"));
        free(msg), msg = NULL;

        const char *bad_time[] = { "kirocli:social:token", "{\"refresh_token\":\"r\",\"expires_at\":\"tomorrow\"}", NULL };
        ASSERT_EQ(import_db_err(bad_time, true, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "RFC 3339"));
        free(msg), msg = NULL;

        /* no state table is fine (older databases) */
        const char *ok[] = { "kirocli:social:token", SOCIAL_TOKEN, NULL };
        size_t size;
        unsigned char *p = make_db(ok, NULL, false, &size);
        CredentialRecord *c = NULL;
        ASSERT_OK(import_kiro_cli_sqlite(p, size, &c, &msg));
        credential_record_free(c);
        sqlite3_free(p);
}

TEST(sqlite_not_a_database) {
        char *msg = NULL;
        CredentialRecord *c = NULL;
        ASSERT_EQ(import_kiro_cli_sqlite("", 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "empty"));
        free(msg), msg = NULL;
        char junk[4096];
        memset(junk, 'x', sizeof junk);
        ASSERT_EQ(import_kiro_cli_sqlite(junk, sizeof junk, &c, &msg), IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "not an SQLite database");
        free(msg), msg = NULL;

        /* a real header over garbage pages: corrupt */
        const char *kv[] = { "kirocli:social:token", SOCIAL_TOKEN, NULL };
        size_t size;
        unsigned char *p = make_db(kv, NULL, true, &size);
        memset(p + 100, 0xa5, size - 100);
        ASSERT_EQ(import_kiro_cli_sqlite(p, size, &c, &msg), IMPORT_E_INVALID);
        ASSERT_NULL(c);
        sqlite3_free(p);
        free(msg);

        /* an SQLite database of something else */
        sqlite3 *db;
        sqlite3_int64 n;
        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x);", NULL, NULL, NULL), SQLITE_OK);
        p = sqlite3_serialize(db, "main", &n, 0);
        sqlite3_close(db);
        msg = NULL;
        ASSERT_EQ(import_kiro_cli_sqlite(p, (size_t) n, &c, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "auth_kv"));
        sqlite3_free(p);
        free(msg);
}

TEST(ide_social_and_builder_id) {
        const char *tok = "{\"accessToken\":\"at\",\"refreshToken\":\"rt\",\"expiresAt\":\"2031-12-31T02:32:45.144Z\","
                          "\"authMethod\":\"social\",\"provider\":\"Github\",\"profileArn\":\"arn:aws:codewhisperer:us-east-1:1:profile/X\"}";
        CredentialRecord *c = NULL;
        char *msg = NULL;
        ASSERT_OK(import_kiro_ide_json(tok, strlen(tok), NULL, 0, &c, &msg));
        ASSERT_STREQ(auth_method_to_string(c->method), "social");
        ASSERT_STREQ(c->refresh_token, "rt");
        ASSERT_STREQ(c->region, "us-east-1");
        credential_record_free(c);

        const char *idc = "{\"accessToken\":\"at\",\"refreshToken\":\"rt2\",\"expiresAt\":\"2031-12-31T02:32:45.144Z\","
                          "\"authMethod\":\"IdC\",\"provider\":\"BuilderId\",\"clientIdHash\":\"abc\",\"region\":\"us-east-1\"}";
        const char *reg = "{\"clientId\":\"cid\",\"clientSecret\":\"sec\",\"expiresAt\":\"2031-01-01T00:00:00.000Z\"}";
        ASSERT_OK(import_kiro_ide_json(idc, strlen(idc), reg, strlen(reg), &c, &msg));
        ASSERT_STREQ(auth_method_to_string(c->method), "builder-id");
        ASSERT_STREQ(c->client_secret, "sec");
        credential_record_free(c);

        const char *ent = "{\"refreshToken\":\"rt3\",\"authMethod\":\"IdC\",\"provider\":\"Enterprise\"}";
        ASSERT_OK(import_kiro_ide_json(ent, strlen(ent), reg, strlen(reg), &c, &msg));
        ASSERT_STREQ(auth_method_to_string(c->method), "idc");
        credential_record_free(c);

        ASSERT_EQ(import_kiro_ide_json(idc, strlen(idc), NULL, 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "registration"));
        free(msg), msg = NULL;

        const char *old_reg = "{\"clientId\":\"cid\",\"clientSecret\":\"sec\",\"expiresAt\":\"2021-01-01T00:00:00.000Z\"}";
        ASSERT_EQ(import_kiro_ide_json(idc, strlen(idc), old_reg, strlen(old_reg), &c, &msg), IMPORT_E_REGISTRATION_EXPIRED);
        free(msg), msg = NULL;

        const char *missing = "{\"accessToken\":\"at\"}";
        ASSERT_EQ(import_kiro_ide_json(missing, strlen(missing), NULL, 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "the Kiro IDE token file has no 'refreshToken'");
        free(msg), msg = NULL;

        const char *wrong = "{\"refreshToken\":\"rt\",\"expiresAt\":17}";
        ASSERT_EQ(import_kiro_ide_json(wrong, strlen(wrong), NULL, 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "'expiresAt' in the Kiro IDE token file is not an RFC 3339 timestamp");
        free(msg), msg = NULL;
        const char *wrong2 = "{\"refreshToken\":[1]}";
        ASSERT_EQ(import_kiro_ide_json(wrong2, strlen(wrong2), NULL, 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "'refreshToken' in the Kiro IDE token file is not a string");
        free(msg), msg = NULL;
        ASSERT_EQ(import_kiro_ide_json("[]", 2, NULL, 0, &c, &msg), IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "the Kiro IDE token file is not a JSON object");
        free(msg);
}

TEST(bare_secrets) {
        CredentialRecord *c = NULL;
        char *msg = NULL;
        ASSERT_OK(import_refresh_token("  rt-abc\n", 9, &c, &msg));
        ASSERT_STREQ(c->refresh_token, "rt-abc");
        ASSERT_NULL(c->access_token);
        ASSERT_STREQ(auth_method_to_string(c->method), "social");
        credential_record_free(c);

        ASSERT_EQ(import_refresh_token("\n\n", 2, &c, &msg), IMPORT_E_INVALID);
        free(msg), msg = NULL;
        ASSERT_EQ(import_refresh_token("two words", 9, &c, &msg), IMPORT_E_INVALID);
        free(msg), msg = NULL;

        ASSERT_OK(import_api_key("ksk_123\n", 8, &c, &msg));
        ASSERT_STREQ(c->access_token, "ksk_123");
        ASSERT_EQ(c->expires_at, USEC_INFINITY);
        credential_record_free(c);
        ASSERT_EQ(import_api_key("abc", 3, &c, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "ksk_"));
        free(msg);
}

TEST(format_names) {
        ASSERT_EQ(import_format_from_string("kiro-cli-sqlite"), IMPORT_KIRO_CLI_SQLITE);
        ASSERT_EQ(import_format_from_string("api-key"), IMPORT_API_KEY);
        ASSERT_ERROR(import_format_from_string("nope"), EINVAL);
}

/* Hostile databases (issue 9 item 3): each is refused quickly with a message naming what is wrong. */

static unsigned char *serialize_sql(const char *sql, size_t *ret_size) {
        sqlite3 *db;
        char *err = NULL;
        ASSERT_EQ(sqlite3_open(":memory:", &db), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                ASSERT_FAIL("setting up the database: %s", err);
        sqlite3_int64 size;
        unsigned char *p = sqlite3_serialize(db, "main", &size, 0);
        ASSERT_NOT_NULL(p);
        sqlite3_close(db);
        *ret_size = (size_t) size;
        return p;
}

static usec_t mono(void) {
        return now(CLOCK_MONOTONIC);
}

/* Imports a database built by sql; returns the ImportError and the message (caller frees). */
static int import_sql(const char *sql, char **ret_message, usec_t *ret_elapsed) {
        size_t size;
        unsigned char *p = serialize_sql(sql, &size);
        CredentialRecord *c = NULL;
        usec_t t = mono();
        int r = import_kiro_cli_sqlite(p, size, &c, ret_message);
        if (ret_elapsed)
                *ret_elapsed = mono() - t;
        sqlite3_free(p);
        credential_record_free(c);
        return r;
}

#define SOCIAL_ROW "INSERT INTO auth_kv VALUES('kirocli:social:token', '" SOCIAL_TOKEN "');"

TEST(sqlite_view_over_recursive_cte) {
        char *msg = NULL;
        usec_t elapsed;
        /* Before the fix the import never returned. */
        int r = import_sql("CREATE TABLE real(key TEXT, value TEXT);"
                           "CREATE VIEW auth_kv(key, value) AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                           "SELECT 'kirocli:social:token', x FROM c WHERE x < 0;",
                           &msg, &elapsed);
        ASSERT_EQ(r, IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "'auth_kv' in the database is a view, not a plain table: not a kiro-cli database");
        ASSERT_TRUE(elapsed < USEC_PER_SEC);
        free(msg), msg = NULL;

        /* The same for 'state', which is read too. */
        r = import_sql("CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);" SOCIAL_ROW
                       "CREATE VIEW state(key, value) AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                       "SELECT 'api.codewhisperer.profile', x FROM c WHERE x < 0;",
                       &msg, &elapsed);
        ASSERT_EQ(r, IMPORT_E_INVALID);
        ASSERT_STREQ(msg, "'state' in the database is a view, not a plain table: not a kiro-cli database");
        ASSERT_TRUE(elapsed < USEC_PER_SEC);
        free(msg);
}

TEST(sqlite_triggers_never_run) {
        char *msg = NULL;
        usec_t elapsed;
        /* Triggers fire on writes only, and triggers are disabled besides: the login imports as usual. */
        size_t size;
        unsigned char *p = serialize_sql(
                "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);" SOCIAL_ROW
                "CREATE TABLE log(x);"
                "CREATE TRIGGER t1 AFTER INSERT ON auth_kv BEGIN "
                "  INSERT INTO log WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c; END;"
                "CREATE TRIGGER t2 BEFORE DELETE ON auth_kv BEGIN SELECT RAISE(ABORT, 'no'); END;",
                &size);
        CredentialRecord *c = NULL;
        usec_t t = mono();
        ASSERT_EQ(import_kiro_cli_sqlite(p, size, &c, &msg), 0);
        elapsed = mono() - t;
        ASSERT_STREQ(c->refresh_token, "rt-social");
        ASSERT_TRUE(elapsed < USEC_PER_SEC);
        credential_record_free(c);
        sqlite3_free(p);
}

TEST(sqlite_virtual_table_and_duplicates) {
        char *msg = NULL;
        int r = import_sql("CREATE VIRTUAL TABLE auth_kv USING fts4(key, value);", &msg, NULL);
        ASSERT_EQ(r, IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "not a plain table"));
        free(msg);
}

TEST(sqlite_huge_row) {
        char *msg = NULL;
        usec_t elapsed;
        /* 3 MiB of token value: over the 1 MiB a JSON value may have. */
        int r = import_sql("CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
                           "INSERT INTO auth_kv VALUES('kirocli:social:token', printf('%.*c', 3145728, 'x'));",
                           &msg, &elapsed);
        ASSERT_EQ(r, IMPORT_E_TOO_LARGE);
        ASSERT_TRUE(strstr(msg, "over 1024 KiB"));
        ASSERT_TRUE(elapsed < USEC_PER_SEC);
        free(msg), msg = NULL;

        /* Huge rows elsewhere (kiro-cli's conversations) do not matter. */
        r = import_sql("CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);" SOCIAL_ROW
                       "CREATE TABLE conversations(key TEXT PRIMARY KEY, value TEXT);"
                       "INSERT INTO conversations VALUES('c', printf('%.*c', 3145728, 'x'));",
                       &msg, NULL);
        ASSERT_EQ(r, 0);
        free(msg);
}

TEST(sqlite_step_budget) {
        /* A table scan that needs more steps than the budget allows is cut off with a clear error. */
        size_t size;
        unsigned char *p = serialize_sql(
                "CREATE TABLE auth_kv(key TEXT, value TEXT);"
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) "
                "INSERT INTO auth_kv SELECT 'k' || x, 'v' FROM c;" SOCIAL_ROW,
                &size);
        CredentialRecord *c = NULL;
        char *msg = NULL;
        ASSERT_EQ(import_kiro_cli_sqlite_budget(p, size, 20000, &c, &msg), IMPORT_E_TOO_COSTLY);
        ASSERT_NULL(c);
        ASSERT_TRUE(strstr(msg, "more work than any kiro-cli database needs"));
        free(msg), msg = NULL;
        /* The default budget reads it. */
        ASSERT_EQ(import_kiro_cli_sqlite(p, size, &c, &msg), 0);
        ASSERT_STREQ(c->refresh_token, "rt-social");
        credential_record_free(c);
        sqlite3_free(p);
}

TEST(sqlite_corrupt_page_fails_quick_check) {
        const char *kv[] = { "kirocli:social:token", SOCIAL_TOKEN, NULL };
        size_t size;
        unsigned char *p = make_db(kv, NULL, true, &size);
        CredentialRecord *c = NULL;
        char *msg = NULL;
        ASSERT_TRUE(size >= 3 * 4096);
        /* Page 2 (auth_kv's root, a leaf): a cell pointer past the page end. */
        unsigned char *page = p + 4096;
        page[8] = 0xff;
        page[9] = 0xf0;
        ASSERT_EQ(import_kiro_cli_sqlite(p, size, &c, &msg), IMPORT_E_INVALID);
        ASSERT_NULL(c);
        ASSERT_TRUE(strstr(msg, "corrupt") || strstr(msg, "malformed"));
        sqlite3_free(p);
        free(msg);
}

/* Regions end up in host names: only real ones are imported (issue 9 item 4). */
TEST(hostile_regions_refused) {
        static const char *const bad[] = { "evil.example#", "attacker.example/x#", "us-east-1.evil.example" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char tok[512], *msg = NULL;
                CredentialRecord *c = NULL;
                snprintf(tok, sizeof tok, "{\"refreshToken\":\"rt\",\"authMethod\":\"social\",\"region\":\"%s\"}", bad[i]);
                ASSERT_EQ(import_kiro_ide_json(tok, strlen(tok), NULL, 0, &c, &msg), IMPORT_E_INVALID);
                ASSERT_STREQ(msg, "'region' in the Kiro IDE token file is not a valid region (like 'us-east-1')");
                ASSERT_NULL(c);
                free(msg), msg = NULL;

                snprintf(tok, sizeof tok,
                         "{\"refreshToken\":\"rt\",\"authMethod\":\"social\",\"profileArn\":\"arn:aws:codewhisperer:%s:1:profile/X\"}",
                         bad[i]);
                ASSERT_EQ(import_kiro_ide_json(tok, strlen(tok), NULL, 0, &c, &msg), IMPORT_E_INVALID);
                ASSERT_STREQ(msg, "'profileArn' in the Kiro IDE token file is not an ARN with a valid region");
                free(msg), msg = NULL;

                /* kiro-cli: the token's region and the profile in 'state'. */
                char sql[1024];
                snprintf(sql, sizeof sql,
                         "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
                         "INSERT INTO auth_kv VALUES('kirocli:social:token', '{\"refresh_token\":\"rt\",\"region\":\"%s\"}');",
                         bad[i]);
                ASSERT_EQ(import_sql(sql, &msg, NULL), IMPORT_E_INVALID);
                ASSERT_TRUE(strstr(msg, "not a valid region"));
                free(msg), msg = NULL;
                snprintf(sql, sizeof sql,
                         "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);" SOCIAL_ROW
                         "UPDATE auth_kv SET value = '{\"refresh_token\":\"rt\"}';"
                         "CREATE TABLE state(key TEXT PRIMARY KEY, value BLOB);"
                         "INSERT INTO state VALUES('api.codewhisperer.profile', '{\"arn\":\"arn:aws:codewhisperer:%s:1:profile/X\"}');",
                         bad[i]);
                ASSERT_EQ(import_sql(sql, &msg, NULL), IMPORT_E_INVALID);
                ASSERT_TRUE(strstr(msg, "profile ARN"));
                free(msg), msg = NULL;
        }
        /* Registration region of a builder-id login. */
        const char *idc = "{\"refreshToken\":\"rt2\",\"authMethod\":\"IdC\",\"provider\":\"BuilderId\"}";
        const char *reg = "{\"clientId\":\"cid\",\"clientSecret\":\"sec\",\"region\":\"evil.example#\"}";
        CredentialRecord *c = NULL;
        char *msg = NULL;
        ASSERT_EQ(import_kiro_ide_json(idc, strlen(idc), reg, strlen(reg), &c, &msg), IMPORT_E_INVALID);
        ASSERT_TRUE(strstr(msg, "client registration file is not a valid region"));
        free(msg);
        /* Real regions pass. */
        const char *gov = "{\"refreshToken\":\"rt\",\"authMethod\":\"social\",\"region\":\"us-gov-west-1\"}";
        ASSERT_EQ(import_kiro_ide_json(gov, strlen(gov), NULL, 0, &c, NULL), 0);
        ASSERT_STREQ(c->region, "us-gov-west-1");
        credential_record_free(c);
}

TEST(sqlite_large_database_within_budget) {
        /* A kiro-cli database near the 64 MiB cap, mostly conversations: quick_check and the reads fit in the
         * default step budget. */
        size_t size;
        unsigned char *p = serialize_sql(
                "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);" SOCIAL_ROW
                "CREATE TABLE conversations(key TEXT PRIMARY KEY, value TEXT);"
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
                "INSERT INTO conversations SELECT 'c' || x, printf('%.*c', 20000, 'x') FROM c;",
                &size);
        CredentialRecord *c = NULL;
        char *msg = NULL;
        usec_t t = mono();
        int r = import_kiro_cli_sqlite(p, size, &c, &msg);
        if (r != 0)
                ASSERT_FAIL("import of %zu bytes: %d %s", size, r, strna(msg));
        fprintf(stderr, "imported %zu bytes in %" PRIu64 " ms\n", size, (uint64_t) ((mono() - t) / 1000));
        ASSERT_STREQ(c->refresh_token, "rt-social");
        credential_record_free(c);
        sqlite3_free(p);
}

static int memfd_with(const char *data, unsigned seals) {
        int fd = memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, data, strlen(data)), (ssize_t) strlen(data));
        if (seals)
                ASSERT_OK(fcntl(fd, F_ADD_SEALS, seals));
        return fd;
}

static int import_fd(int fd, char **ret_message) {
        CredentialRecord *c = NULL;
        int r = import_from_fds(IMPORT_REFRESH_TOKEN, fd, -EBADF, &c, ret_message);
        if (r == 0)
                ASSERT_STREQ(c->refresh_token, "rt-fd");
        credential_record_free(c);
        return r;
}

/* Only regular files and sealed memfds are read (issue 9 item 3); the same rule for the registration. */
TEST(import_fd_kinds) {
        char *msg = NULL;
        int fd, sv[2];

        /* A FIFO with its write end open: reading would never end. */
        char fifo[] = "/tmp/test-authd-import-fifo-XXXXXX";
        ASSERT_NOT_NULL(mkdtemp(fifo));
        char path[128];
        snprintf(path, sizeof path, "%s/f", fifo);
        ASSERT_OK(mkfifo(path, 0600));
        fd = open(path, O_RDWR | O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(import_fd(fd, &msg), IMPORT_E_BAD_FD);
        ASSERT_STREQ(msg, "the source is a FIFO, not a regular file or sealed memfd");
        close(fd);
        unlink(path);
        rmdir(fifo);
        free(msg), msg = NULL;

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        ASSERT_EQ(import_fd(sv[0], &msg), IMPORT_E_BAD_FD);
        ASSERT_STREQ(msg, "the source is a socket, not a regular file or sealed memfd");
        close(sv[0]), close(sv[1]);
        free(msg), msg = NULL;

        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_EQ(import_fd(fd, &msg), IMPORT_E_BAD_FD);
        ASSERT_STREQ(msg, "the source is a character device, not a regular file or sealed memfd");
        close(fd);
        free(msg), msg = NULL;

        /* Memfds: every one of WRITE, GROW, SHRINK is needed. */
        static const unsigned partial[] = { 0, F_SEAL_SEAL, F_SEAL_GROW | F_SEAL_SHRINK, F_SEAL_WRITE | F_SEAL_GROW,
                                            F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_SEAL };
        for (size_t i = 0; i < ELEMENTSOF(partial); i++) {
                fd = memfd_with("rt-fd\n", partial[i]);
                ASSERT_EQ(import_fd(fd, &msg), IMPORT_E_BAD_FD);
                ASSERT_TRUE(strstr(msg, "memfd not sealed against writes"));
                close(fd);
                free(msg), msg = NULL;
        }
        fd = memfd_with("rt-fd\n", IMPORT_MEMFD_SEALS);
        ASSERT_EQ(import_fd(fd, &msg), 0);
        close(fd);
        fd = memfd_with("rt-fd\n", IMPORT_MEMFD_SEALS | F_SEAL_SEAL);
        ASSERT_EQ(import_fd(fd, &msg), 0);

        /* The registration fd is held to the same rule. */
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        CredentialRecord *c = NULL;
        ASSERT_EQ(import_from_fds(IMPORT_KIRO_IDE_JSON, fd, sv[0], &c, &msg), IMPORT_E_BAD_FD);
        ASSERT_STREQ(msg, "the client registration file is a socket, not a regular file or sealed memfd");
        close(sv[0]), close(sv[1]);
        close(fd);
        free(msg), msg = NULL;

        /* A plain file (systemd credentials are). */
        char file[] = "/tmp/test-authd-import-XXXXXX";
        fd = mkostemp(file, O_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, "rt-fd\n", 6), 6);
        ASSERT_EQ(import_fd(fd, &msg), 0);
        close(fd);
        unlink(file);
}
