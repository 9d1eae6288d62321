/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Import parsers: kiro-cli SQLite snapshots, Kiro IDE JSON, bare refresh tokens and API keys. */
#include <sqlite3.h>

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
        if (r < 0)
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
        ASSERT_ERROR(import_db_err(none, true, &msg), ENODATA);
        ASSERT_TRUE(strstr(msg, "no kiro-cli login"));
        free(msg), msg = NULL;

        const char *no_reg[] = { "kirocli:odic:token", ODIC_TOKEN, NULL };
        ASSERT_ERROR(import_db_err(no_reg, true, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "no device registration"));
        free(msg), msg = NULL;

        const char *expired[] = { "kirocli:odic:token", ODIC_TOKEN, "kirocli:odic:device-registration",
                                  "{\"client_id\":\"c\",\"client_secret\":\"s\",\"client_secret_expires_at\":\"2020-01-01T00:00:00Z\"}",
                                  NULL };
        ASSERT_ERROR(import_db_err(expired, true, &msg), EKEYREJECTED);
        ASSERT_TRUE(strstr(msg, "expired"));
        free(msg), msg = NULL;

        const char *bad_json[] = { "kirocli:social:token", "{not json", NULL };
        ASSERT_ERROR(import_db_err(bad_json, true, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "kirocli:social:token"));
        free(msg), msg = NULL;

        const char *wrong_type[] = { "kirocli:social:token", "{\"refresh_token\":42}", NULL };
        ASSERT_ERROR(import_db_err(wrong_type, true, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "'refresh_token'"));
        free(msg), msg = NULL;

        const char *bad_time[] = { "kirocli:social:token", "{\"refresh_token\":\"r\",\"expires_at\":\"tomorrow\"}", NULL };
        ASSERT_ERROR(import_db_err(bad_time, true, &msg), EBADMSG);
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
        ASSERT_ERROR(import_kiro_cli_sqlite("", 0, &c, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "empty"));
        free(msg), msg = NULL;
        char junk[4096];
        memset(junk, 'x', sizeof junk);
        ASSERT_ERROR(import_kiro_cli_sqlite(junk, sizeof junk, &c, &msg), EBADMSG);
        ASSERT_STREQ(msg, "not an SQLite database");
        free(msg), msg = NULL;

        /* a real header over garbage pages: corrupt */
        const char *kv[] = { "kirocli:social:token", SOCIAL_TOKEN, NULL };
        size_t size;
        unsigned char *p = make_db(kv, NULL, true, &size);
        memset(p + 100, 0xa5, size - 100);
        ASSERT_ERROR(import_kiro_cli_sqlite(p, size, &c, &msg), EBADMSG);
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
        ASSERT_ERROR(import_kiro_cli_sqlite(p, (size_t) n, &c, &msg), EBADMSG);
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

        ASSERT_ERROR(import_kiro_ide_json(idc, strlen(idc), NULL, 0, &c, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "registration"));
        free(msg), msg = NULL;

        const char *old_reg = "{\"clientId\":\"cid\",\"clientSecret\":\"sec\",\"expiresAt\":\"2021-01-01T00:00:00.000Z\"}";
        ASSERT_ERROR(import_kiro_ide_json(idc, strlen(idc), old_reg, strlen(old_reg), &c, &msg), EKEYREJECTED);
        free(msg), msg = NULL;

        const char *missing = "{\"accessToken\":\"at\"}";
        ASSERT_ERROR(import_kiro_ide_json(missing, strlen(missing), NULL, 0, &c, &msg), EBADMSG);
        ASSERT_STREQ(msg, "the Kiro IDE token file has no 'refreshToken'");
        free(msg), msg = NULL;

        const char *wrong = "{\"refreshToken\":\"rt\",\"expiresAt\":17}";
        ASSERT_ERROR(import_kiro_ide_json(wrong, strlen(wrong), NULL, 0, &c, &msg), EBADMSG);
        ASSERT_STREQ(msg, "'expiresAt' in the Kiro IDE token file is not an RFC 3339 timestamp");
        free(msg), msg = NULL;
        const char *wrong2 = "{\"refreshToken\":[1]}";
        ASSERT_ERROR(import_kiro_ide_json(wrong2, strlen(wrong2), NULL, 0, &c, &msg), EBADMSG);
        ASSERT_STREQ(msg, "'refreshToken' in the Kiro IDE token file is not a string");
        free(msg), msg = NULL;
        ASSERT_ERROR(import_kiro_ide_json("[]", 2, NULL, 0, &c, &msg), EBADMSG);
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

        ASSERT_ERROR(import_refresh_token("\n\n", 2, &c, &msg), EBADMSG);
        free(msg), msg = NULL;
        ASSERT_ERROR(import_refresh_token("two words", 9, &c, &msg), EBADMSG);
        free(msg), msg = NULL;

        ASSERT_OK(import_api_key("ksk_123\n", 8, &c, &msg));
        ASSERT_STREQ(c->access_token, "ksk_123");
        ASSERT_EQ(c->expires_at, USEC_INFINITY);
        credential_record_free(c);
        ASSERT_ERROR(import_api_key("abc", 3, &c, &msg), EBADMSG);
        ASSERT_TRUE(strstr(msg, "ksk_"));
        free(msg);
}

TEST(format_names) {
        ASSERT_EQ(import_format_from_string("kiro-cli-sqlite"), IMPORT_KIRO_CLI_SQLITE);
        ASSERT_EQ(import_format_from_string("api-key"), IMPORT_API_KEY);
        ASSERT_ERROR(import_format_from_string("nope"), EINVAL);
        ASSERT_STREQ(import_format_default_id(IMPORT_KIRO_IDE_JSON), "kiro-ide");
}
