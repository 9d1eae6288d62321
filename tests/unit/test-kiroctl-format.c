/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's output: status JSON, fixes, tables. */
#include "json-util.h"
#include "kiroctl-format.h"
#include "kiroctl-table.h"
#include "kiroctl-util.h"
#include "tests.h"

static const char *const status_keys[] = {
        "id", "provider", "auth_method", "state", "enabled", "region", "profile_arn", "expires_at",
        "expires_at_usec", "next_refresh_at_usec", "last_refresh_at_usec", "consecutive_failures", "last_error",
        "cooldown_until_usec", "cooldown_reason", "source", "link", "link_message", "unsaved", "requests_last_hour",
        "errors_last_hour", "failovers_last_hour", "fix",
};

static Credential make(const char *id, const char *method, const char *state, const char *source) {
        return (Credential) {
                .id = strdup(id),
                .provider = strdup("kiro"),
                .auth_method = strdup(method),
                .state = strdup(state),
                .source = strdup(source),
                .enabled = !streq(state, "disabled"),
                .last_error = strdup(""),
                .region = strdup("us-east-1"),
                .profile_arn = strdup(""),
        };
}

static char *fix_of(const char *id, const char *method, const char *state, const char *source) {
        Credential c = make(id, method, state, source);
        char *fix = NULL;
        ASSERT_OK(credential_fix(&c, &fix));
        credential_done(&c);
        return fix;
}

TEST(fix_commands) {
        char *f;

        /* Source is the import path when kiroctl sent one, else the import format. */
        f = fix_of("kiro-cli", "social", "needs-login", "/home/u/.local/share/kiro-cli/data.sqlite3");
        ASSERT_STREQ(f, "kiro-cli login && kiroctl import --from-kiro-cli --replace --id kiro-cli");
        free(f);
        f = fix_of("q", "builder-id", "needs-login", "/home/u/.local/share/amazon-q/data.sqlite3");
        ASSERT_STREQ(f, "kiro-cli login && kiroctl import --from-kiro-cli --replace --id q");
        free(f);
        f = fix_of("c", "idc", "needs-login", "kiro-cli-sqlite");
        ASSERT_STREQ(f, "kiro-cli login && kiroctl import --from-kiro-cli --replace --id c");
        free(f);
        f = fix_of("ide", "social", "needs-login", "/home/u/.aws/sso/cache/kiro-auth-token.json");
        ASSERT_STREQ(f, "log in again in the Kiro IDE, then: kiroctl import --from-kiro-ide --replace --id ide");
        free(f);
        f = fix_of("ide", "idc", "needs-login", "kiro-ide-json");
        ASSERT_STREQ(f, "log in again in the Kiro IDE, then: kiroctl import --from-kiro-ide --replace --id ide");
        free(f);
        f = fix_of("bare", "social", "needs-login", "refresh-token");
        ASSERT_STREQ(f, "kiroctl import --refresh-token-file FILE --replace --id bare");
        free(f);
        f = fix_of("key", "api-key", "needs-login", "api-key");
        ASSERT_STREQ(f, "kiroctl import --api-key-file FILE --replace --id key");
        free(f);
        /* A device login (kiroctl login) is fixed by logging in again. */
        f = fix_of("builder-id-1a2b3c4d", "builder-id", "needs-login", "login");
        ASSERT_STREQ(f, "kiroctl login builder-id --replace --id builder-id-1a2b3c4d");
        free(f);
        f = fix_of("k", "kimi-device", "needs-login", "login");
        ASSERT_STREQ(f, "kiroctl login kimi --replace --id k");
        free(f);
        f = fix_of("g", "social", "needs-login", "login");
        ASSERT_STREQ(f, "kiroctl login google --replace --id g (or github)");
        free(f);
        f = fix_of("odd id", "social", "needs-login", "refresh-token");
        ASSERT_STREQ(f, "kiroctl import --refresh-token-file FILE --replace --id 'odd id'");
        free(f);
        f = fix_of("k", "kimi-device", "needs-login", "");
        ASSERT_NOT_NULL(strstr(f, "--replace --id k"));
        free(f);

        /* Nothing to fix. */
        ASSERT_NULL(fix_of("a", "social", "active", "refresh-token"));
        ASSERT_NULL(fix_of("a", "social", "cooldown", "refresh-token"));
        ASSERT_NULL(fix_of("a", "social", "disabled", "refresh-token"));
}

TEST(status_json_keys_and_values) {
        Credential c = make("main", "social", "needs-login", "/h/.local/share/kiro-cli/data.sqlite3");
        json_object *o = NULL, *v;
        usec_t t;
        size_t n = 0;

        ASSERT_OK(parse_rfc3339("2025-12-31T02:32:45.144Z", &t));
        c.access_token_expires_at = t;
        c.next_refresh_at = t - 600 * USEC_PER_SEC;
        c.last_refresh_at = 1000;
        c.consecutive_failures = 3;
        free(c.last_error);
        c.last_error = strdup("HTTP 400: invalid_grant");
        free(c.profile_arn);
        c.profile_arn = strdup("arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK");
        c.cooldown_until = 42;
        c.requests_last_hour = 4000000000u;     /* a u32 beyond INT32_MAX stays positive */
        c.errors_last_hour = 2;
        c.failovers_last_hour = 1;

        ASSERT_OK(credential_status_json(&c, &o));

        /* Exactly the documented keys, in the documented order. */
        json_object_object_foreach(o, key, val) {
                (void) val;
                ASSERT_TRUE(n < ELEMENTSOF(status_keys));
                ASSERT_STREQ(key, status_keys[n]);
                n++;
        }
        ASSERT_EQ(n, ELEMENTSOF(status_keys));

        ASSERT_STREQ(json_string_or_null(o, "id"), "main");
        ASSERT_STREQ(json_string_or_null(o, "state"), "needs-login");
        ASSERT_TRUE(json_object_object_get_ex(o, "enabled", &v) && json_object_is_type(v, json_type_boolean) &&
                    json_object_get_boolean(v));
        ASSERT_STREQ(json_string_or_null(o, "expires_at"), "2025-12-31T02:32:45.144Z");
        ASSERT_TRUE(json_object_object_get_ex(o, "expires_at_usec", &v));
        ASSERT_TRUE(json_object_get_uint64(v) == t);
        ASSERT_TRUE(json_object_object_get_ex(o, "next_refresh_at_usec", &v));
        ASSERT_TRUE(json_object_get_uint64(v) == t - 600 * USEC_PER_SEC);
        ASSERT_TRUE(json_object_object_get_ex(o, "last_refresh_at_usec", &v) && json_object_get_uint64(v) == 1000);
        ASSERT_TRUE(json_object_object_get_ex(o, "consecutive_failures", &v) && json_object_get_int(v) == 3);
        ASSERT_TRUE(json_object_object_get_ex(o, "cooldown_until_usec", &v) && json_object_get_uint64(v) == 42);
        ASSERT_TRUE(json_object_object_get_ex(o, "requests_last_hour", &v) && json_object_is_type(v, json_type_int) &&
                    json_object_get_int64(v) == 4000000000);
        ASSERT_TRUE(json_object_object_get_ex(o, "errors_last_hour", &v) && json_object_get_int64(v) == 2);
        ASSERT_TRUE(json_object_object_get_ex(o, "failovers_last_hour", &v) && json_object_get_int64(v) == 1);
        ASSERT_STREQ(json_string_or_null(o, "last_error"), "HTTP 400: invalid_grant");
        ASSERT_STREQ(json_string_or_null(o, "profile_arn"),
                     "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK");
        ASSERT_STREQ(json_string_or_null(o, "source"), "/h/.local/share/kiro-cli/data.sqlite3");
        ASSERT_STREQ(json_string_or_null(o, "fix"), "kiro-cli login && kiroctl import --from-kiro-cli --replace --id main");
        ASSERT_TRUE(json_object_object_get_ex(o, "unsaved", &v) && json_object_is_type(v, json_type_boolean) &&
                    !json_object_get_boolean(v));

        /* Serialized, a slash stays a slash only with the flag kiroctl uses; the values survive a round trip. */
        {
                const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                json_object *back = NULL;
                ASSERT_NOT_NULL(strstr(s, "\"profile_arn\":\"arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK\""));
                ASSERT_OK(json_parse_bounded(s, strlen(s), 8, &back, NULL));
                ASSERT_TRUE(json_object_object_get_ex(back, "expires_at_usec", &v) && json_object_get_uint64(v) == t);
                json_object_put(back);
        }

        json_object_put(o);
        credential_done(&c);
}

TEST(status_json_nulls) {
        Credential c = make("key", "api-key", "active", "api-key");
        json_object *o = NULL, *v;

        free(c.region);
        c.region = strdup("");
        c.access_token_expires_at = USEC_INFINITY;     /* API keys never expire */
        ASSERT_OK(credential_status_json(&c, &o));

        /* Present, and null. */
        ASSERT_TRUE(json_object_object_get_ex(o, "region", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "profile_arn", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "last_error", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "fix", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "expires_at", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "expires_at_usec", &v) && json_object_get_uint64(v) == UINT64_MAX);
        json_object_put(o);

        c.access_token_expires_at = 0;
        ASSERT_OK(credential_status_json(&c, &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "expires_at", &v) && v == NULL);
        ASSERT_TRUE(json_object_object_get_ex(o, "expires_at_usec", &v) && json_object_get_uint64(v) == 0);
        json_object_put(o);
        credential_done(&c);
}

TEST(json_arrays) {
        Credential c[2] = { make("a", "social", "active", "refresh-token"), make("b", "idc", "disabled", "kiro-ide-json") };
        json_object *a = NULL, *o, *v;

        ASSERT_OK(credentials_json(c, 2, false, &a));
        ASSERT_EQ(json_object_array_length(a), 2);
        o = json_object_array_get_idx(a, 1);
        ASSERT_EQ(json_object_object_length(o), 5);
        ASSERT_STREQ(json_string_or_null(o, "id"), "b");
        ASSERT_STREQ(json_string_or_null(o, "auth_method"), "idc");
        ASSERT_TRUE(json_object_object_get_ex(o, "enabled", &v) && !json_object_get_boolean(v));
        json_object_put(a);

        ASSERT_OK(credentials_json(c, 1, true, &a));
        ASSERT_EQ(json_object_array_length(a), 1);
        ASSERT_EQ(json_object_object_length(json_object_array_get_idx(a, 0)), (int) ELEMENTSOF(status_keys));
        json_object_put(a);

        ASSERT_OK(credentials_json(NULL, 0, true, &a));
        ASSERT_STREQ(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN), "[]");
        json_object_put(a);

        credential_done(c);
        credential_done(c + 1);
}

static char *render(int (*print)(FILE *, const Credential *, size_t, const OutputFlags *), const Credential *c, size_t n,
                    const OutputFlags *flags) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(print(f, c, n, flags));
        ASSERT_EQ(fclose(f), 0);
        return buf;
}

static size_t count_lines(const char *s) {
        size_t n = 0;
        for (; *s; s++)
                n += *s == '\n';
        return n;
}

TEST(status_table_plain) {
        Credential c[2] = { make("main", "social", "active", "refresh-token"),
                            make("second-login", "idc", "needs-login", "/h/.local/share/kiro-cli/data.sqlite3") };
        OutputFlags flags = { .now = 1000 * USEC_PER_SEC };
        char *out;

        ASSERT_OK(parse_rfc3339("2025-12-31T02:32:45.144Z", &c[0].access_token_expires_at));
        c[1].consecutive_failures = 12;
        free(c[1].last_error);
        c[1].last_error = strdup("HTTP 400: invalid_grant\n(Invalid refresh token provided)");
        c[1].requests_last_hour = 25;
        c[1].errors_last_hour = 3;
        c[1].failovers_last_hour = 1;

        /* Not a terminal: no header, no colours, RFC 3339 times, "-" for nothing; then the fix. */
        out = render(credentials_print_table, c, 2, &flags);
        ASSERT_STREQ(out,
                     "main         social active      2025-12-31T02:32:45.144Z - 0  0/0/0  -\n"
                     "second-login idc    needs-login -                        - 12 25/3/1 HTTP 400: invalid_grant (Invalid refresh token provided)\n"
                     "\n"
                     "second-login needs a new login. Fix: kiro-cli login && kiroctl import --from-kiro-cli --replace --id second-login\n");
        ASSERT_NULL(strchr(out, '\x1b'));
        free(out);

        out = render(credentials_print_list, c, 2, &flags);
        ASSERT_STREQ(out,
                     "main         kiro social active\n"
                     "second-login kiro idc    needs-login\n");
        free(out);

        /* Nothing at all prints nothing. */
        out = render(credentials_print_list, NULL, 0, &flags);
        ASSERT_STREQ(out, "");
        free(out);

        credential_done(c);
        credential_done(c + 1);
}

TEST(status_table_terminal) {
        Credential c[3] = { make("a", "social", "active", "refresh-token"), make("b", "social", "cooldown", "refresh-token"),
                            make("c", "api-key", "disabled", "api-key") };
        OutputFlags flags = { .colors = true, .human_times = true, .legend = true, .width = 60,
                              .now = 1000 * USEC_PER_SEC };
        char *out;

        c[0].access_token_expires_at = flags.now + 3600 * USEC_PER_SEC + 5 * 60 * USEC_PER_SEC;
        c[0].next_refresh_at = flags.now + 55 * 60 * USEC_PER_SEC;
        c[2].access_token_expires_at = USEC_INFINITY;
        free(c[1].last_error);
        c[1].last_error = strdup("throttled by the server, retrying after the Retry-After interval is over");

        out = render(credentials_print_table, c, 3, &flags);
        /* Header, three rows, blank, legend. */
        ASSERT_EQ(count_lines(out), 6);
        ASSERT_NOT_NULL(strstr(out, ANSI_UNDERLINE "ID"));
        ASSERT_NOT_NULL(strstr(out, ANSI_GREEN "active" ANSI_NORMAL));
        ASSERT_NOT_NULL(strstr(out, ANSI_YELLOW "cooldown" ANSI_NORMAL));
        ASSERT_NOT_NULL(strstr(out, ANSI_GREY "disabled" ANSI_NORMAL));
        ASSERT_NOT_NULL(strstr(out, "in 1h 5min"));
        ASSERT_NOT_NULL(strstr(out, "in 55min 0s"));
        ASSERT_NOT_NULL(strstr(out, "never"));
        ASSERT_NOT_NULL(strstr(out, "\n3 credentials listed. LAST HOUR: requests/errors/failovers reported by kiro-proxyd.\n"));
        ASSERT_NOT_NULL(strstr(out, "LAST HOUR"));
        /* The long error was cut to the width. */
        ASSERT_NOT_NULL(strstr(out, "..."));
        ASSERT_NULL(strstr(out, "interval is over"));
        free(out);

        credential_done(c);
        credential_done(c + 1);
        credential_done(c + 2);
}

TEST(status_block) {
        Credential c = make("main", "social", "needs-login", "kiro-ide-json");
        OutputFlags flags = { .now = 1000 * USEC_PER_SEC };
        char *out;

        c.enabled = true;
        free(c.last_error);
        c.last_error = strdup("HTTP 400: invalid_grant");
        c.consecutive_failures = 1;
        c.cooldown_until = flags.now + 60 * USEC_PER_SEC;
        c.requests_last_hour = 1;
        c.errors_last_hour = 2;
        c.failovers_last_hour = 1;
        ASSERT_OK(parse_rfc3339("2025-12-31T02:32:45.144Z", &c.last_refresh_at));

        {
                char *buf = NULL;
                size_t size = 0;
                FILE *f = open_memstream(&buf, &size);
                ASSERT_OK(credential_print_status(f, &c, &flags));
                fclose(f);
                out = buf;
        }
        ASSERT_NOT_NULL(strstr(out, "main (kiro, social)\n"));
        ASSERT_NOT_NULL(strstr(out, "       State: needs-login\n"));
        ASSERT_NOT_NULL(strstr(out, "     Expires: -\n"));
        ASSERT_NOT_NULL(strstr(out, "Last refresh: 2025-12-31T02:32:45.144Z\n"));
        ASSERT_NOT_NULL(strstr(out, "  Last error: HTTP 400: invalid_grant\n"));
        ASSERT_NOT_NULL(strstr(out, "   Last hour: 1 request, 2 errors, 1 failover\n"));
        ASSERT_NOT_NULL(strstr(out, "    Cooldown: until "));
        ASSERT_NOT_NULL(strstr(out, "         Fix: log in again in the Kiro IDE, then: kiroctl import --from-kiro-ide --replace --id main\n"));
        ASSERT_NULL(strchr(out, '\x1b'));
        ASSERT_NULL(strstr(out, "Unsaved"));
        free(out);
        credential_done(&c);
}

TEST(status_unsaved) {
        Credential c = make("main", "social", "active", "refresh-token");
        OutputFlags flags = { .now = 1000 * USEC_PER_SEC };
        json_object *o = NULL, *v;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        c.unsaved = true;
        ASSERT_OK(credential_status_json(&c, &o));
        ASSERT_TRUE(json_object_object_get_ex(o, "unsaved", &v) && json_object_get_boolean(v));
        json_object_put(o);

        f = open_memstream(&buf, &size);
        ASSERT_OK(credential_print_status(f, &c, &flags));
        fclose(f);
        ASSERT_NOT_NULL(strstr(buf, "     Unsaved: the rotated refresh token is only in kiro-authd's memory"));
        free(buf);

        buf = NULL;
        f = open_memstream(&buf, &size);
        ASSERT_OK(credentials_print_table(f, &c, 1, &flags));
        fclose(f);
        ASSERT_NOT_NULL(strstr(buf, "main: the rotated refresh token is only in kiro-authd's memory"));
        free(buf);
        credential_done(&c);
}

TEST(shell_quoting) {
        char *q;
        ASSERT_OK(shell_quote("kiro-cli.2_x", &q));
        ASSERT_STREQ(q, "kiro-cli.2_x");
        free(q);
        ASSERT_OK(shell_quote("a b", &q));
        ASSERT_STREQ(q, "'a b'");
        free(q);
        ASSERT_OK(shell_quote("it's", &q));
        ASSERT_STREQ(q, "'it'\\''s'");
        free(q);
        ASSERT_OK(shell_quote("", &q));
        ASSERT_STREQ(q, "''");
        free(q);
        ASSERT_OK(shell_quote("$(rm -rf ~)", &q));
        ASSERT_STREQ(q, "'$(rm -rf ~)'");
        free(q);
}

/* kiroctl status exits 3 unless this holds: no credential needs a login, and one is active or refreshing. */
TEST(status_usable) {
        Credential c[3] = { make("a", "social", "active", "refresh-token"),
                            make("b", "social", "cooldown", "refresh-token"),
                            make("c", "social", "disabled", "refresh-token") };

        ASSERT_FALSE(credentials_usable(NULL, 0));              /* none at all */
        ASSERT_TRUE(credentials_usable(c, 3));                  /* one active is enough */
        ASSERT_FALSE(credentials_usable(c + 1, 2));             /* cooldown and disabled serve nothing now */
        ASSERT_FALSE(credentials_usable(c + 2, 1));

        free(c[1].state);
        c[1].state = strdup("refreshing");
        ASSERT_TRUE(credentials_usable(c + 1, 1));

        /* Disabled while its state still says active (the property changes after Enabled). */
        c[0].enabled = false;
        ASSERT_FALSE(credentials_usable(c, 1));
        c[0].enabled = true;

        /* One needing a login fails the whole status, however many others work. */
        free(c[2].state);
        c[2].state = strdup("needs-login");
        c[2].enabled = true;
        ASSERT_FALSE(credentials_usable(c, 3));
        ASSERT_TRUE(credentials_usable(c, 2));

        for (size_t i = 0; i < 3; i++)
                credential_done(&c[i]);
}
