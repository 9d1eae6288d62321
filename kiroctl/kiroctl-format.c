/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How kiroctl shows credentials: JSON, tables, the status block and the command that fixes a login. */
#include <assert.h>
#include <inttypes.h>

#include "json-util.h"
#include "kiroctl-format.h"
#include "kiroctl-table.h"
#include "kiroctl-util.h"

typedef enum SourceKind {
        SOURCE_KIRO_CLI,
        SOURCE_KIRO_IDE,
        SOURCE_REFRESH_TOKEN,
        SOURCE_API_KEY,
        SOURCE_LOGIN,           /* kiroctl login */
        SOURCE_OTHER,
} SourceKind;

static bool endswith(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && streq(s + a - b, suffix);
}

/* Source is the path the credential was imported from when kiroctl sent one, else the import format
 * ("kiro-cli-sqlite", "kiro-ide-json", "refresh-token", "api-key"). */
static SourceKind credential_source_kind(const Credential *c) {
        const char *s = strempty(c->source);

        if (startswith(s, "kiro-cli") || strstr(s, "/kiro-cli/") || strstr(s, "/amazon-q/") ||
            endswith(s, ".sqlite3") || endswith(s, ".sqlite") || endswith(s, ".db"))
                return SOURCE_KIRO_CLI;
        if (startswith(s, "kiro-ide") || endswith(s, ".json"))
                return SOURCE_KIRO_IDE;
        if (streq_ptr(c->auth_method, "api-key") || startswith(s, "api-key"))
                return SOURCE_API_KEY;
        if (startswith(s, "refresh-token"))
                return SOURCE_REFRESH_TOKEN;
        if (streq(s, "login"))
                return SOURCE_LOGIN;
        return SOURCE_OTHER;
}

#define UNSAVED_TEXT \
        "the rotated refresh token is only in kiro-authd's memory (the state directory is not writable); " \
        "make it writable before kiro-authd stops, or this login is lost"

int credential_fix(const Credential *c, char **ret) {
        _cleanup_free_ char *id = NULL;
        char *fix;
        int r;

        assert(c);
        assert(ret);

        if (!streq_ptr(c->state, "needs-login")) {
                *ret = NULL;
                return 0;
        }

        r = shell_quote(strempty(c->id), &id);
        if (r < 0)
                return r;

        switch (credential_source_kind(c)) {
        case SOURCE_KIRO_CLI:
                r = asprintf(&fix, "kiro-cli login && kiroctl import --from-kiro-cli --replace --id %s", id);
                break;
        case SOURCE_KIRO_IDE:
                r = asprintf(&fix, "log in again in the Kiro IDE, then: "
                             "kiroctl import --from-kiro-ide --replace --id %s", id);
                break;
        case SOURCE_REFRESH_TOKEN:
                r = asprintf(&fix, "kiroctl import --refresh-token-file FILE --replace --id %s", id);
                break;
        case SOURCE_API_KEY:
                r = asprintf(&fix, "kiroctl import --api-key-file FILE --replace --id %s", id);
                break;
        case SOURCE_LOGIN: {
                const char *m = strempty(c->auth_method);
                if (streq(m, "idc"))
                        r = asprintf(&fix, "kiroctl login idc --start-url URL --region %s --replace --id %s",
                                     isempty(c->region) ? "REGION" : c->region, id);
                else if (streq(m, "social"))
                        r = asprintf(&fix, "kiroctl login google --replace --id %s (or github)", id);
                else
                        r = asprintf(&fix, "kiroctl login %s --replace --id %s",
                                     streq(m, "kimi-device") ? "kimi" : "builder-id", id);
                break;
        }
        default:
                r = asprintf(&fix, "log in again, then import the new login: "
                             "kiroctl import ... --replace --id %s", id);
                break;
        }
        if (r < 0)
                return -ENOMEM;
        *ret = fix;
        return 0;
}

static int json_add_string(json_object *o, const char *key, const char *s) {
        return json_add(o, key, json_object_new_string(strempty(s)));
}

/* Empty strings are null: "no value" has one spelling for JSON readers. */
static int json_add_string_or_null(json_object *o, const char *key, const char *s) {
        if (isempty(s))
                return json_object_object_add(o, key, NULL) < 0 ? -ENOMEM : 0;
        return json_add_string(o, key, s);
}

int credential_list_json(const Credential *c, json_object **ret) {
        _cleanup_json_ json_object *o = NULL;
        int r;

        assert(c);
        assert(ret);

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "id", c->id)) < 0 ||
            (r = json_add_string(o, "provider", c->provider)) < 0 ||
            (r = json_add_string(o, "auth_method", c->auth_method)) < 0 ||
            (r = json_add_string(o, "state", c->state)) < 0 ||
            (r = json_add(o, "enabled", json_object_new_boolean(c->enabled))) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

int credential_status_json(const Credential *c, json_object **ret) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *fix = NULL;
        char expires[RFC3339_MAX];
        int r;

        assert(c);
        assert(ret);

        r = credential_fix(c, &fix);
        if (r < 0)
                return r;

        /* 0 is unknown, USEC_INFINITY never (API keys): neither is a time. */
        if (c->access_token_expires_at > 0 && c->access_token_expires_at != USEC_INFINITY)
                (void) format_rfc3339(expires, sizeof expires, c->access_token_expires_at);
        else
                expires[0] = 0;

        o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if ((r = json_add_string(o, "id", c->id)) < 0 ||
            (r = json_add_string(o, "provider", c->provider)) < 0 ||
            (r = json_add_string(o, "auth_method", c->auth_method)) < 0 ||
            (r = json_add_string(o, "state", c->state)) < 0 ||
            (r = json_add(o, "enabled", json_object_new_boolean(c->enabled))) < 0 ||
            (r = json_add_string_or_null(o, "region", c->region)) < 0 ||
            (r = json_add_string_or_null(o, "profile_arn", c->profile_arn)) < 0 ||
            (r = json_add_string_or_null(o, "expires_at", expires)) < 0 ||
            (r = json_add(o, "expires_at_usec", json_object_new_uint64(c->access_token_expires_at))) < 0 ||
            (r = json_add(o, "next_refresh_at_usec", json_object_new_uint64(c->next_refresh_at))) < 0 ||
            (r = json_add(o, "last_refresh_at_usec", json_object_new_uint64(c->last_refresh_at))) < 0 ||
            (r = json_add(o, "consecutive_failures", json_object_new_int64(c->consecutive_failures))) < 0 ||
            (r = json_add_string_or_null(o, "last_error", c->last_error)) < 0 ||
            (r = json_add(o, "cooldown_until_usec", json_object_new_uint64(c->cooldown_until))) < 0 ||
            (r = json_add_string_or_null(o, "cooldown_reason", c->cooldown_reason)) < 0 ||
            (r = json_add_string(o, "source", c->source)) < 0 ||
            (r = json_add_string(o, "link", c->link)) < 0 ||
            (r = json_add_string(o, "link_message", c->link_message)) < 0 ||
            (r = json_add(o, "unsaved", json_object_new_boolean(c->unsaved))) < 0 ||
            (r = json_add(o, "requests_last_hour", json_object_new_int64(c->requests_last_hour))) < 0 ||
            (r = json_add(o, "errors_last_hour", json_object_new_int64(c->errors_last_hour))) < 0 ||
            (r = json_add(o, "failovers_last_hour", json_object_new_int64(c->failovers_last_hour))) < 0 ||
            (r = json_add_string_or_null(o, "fix", fix)) < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

int credentials_json(const Credential *c, size_t n, bool full, json_object **ret) {
        _cleanup_json_ json_object *a = NULL;
        int r;

        assert(c || n == 0);
        assert(ret);

        a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *o;

                r = full ? credential_status_json(c + i, &o) : credential_list_json(c + i, &o);
                if (r < 0)
                        return r;
                if (json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(a);
        return 0;
}

static const char *state_color(const char *state) {
        if (streq_ptr(state, "active"))
                return ANSI_GREEN;
        if (streq_ptr(state, "cooldown") || streq_ptr(state, "refreshing"))
                return ANSI_YELLOW;
        if (streq_ptr(state, "needs-login"))
                return ANSI_RED;
        if (streq_ptr(state, "disabled"))
                return ANSI_GREY;
        return NULL;
}

/* "in 5min 3s" / "2h 1min ago" relative to now. */
static char *format_span(char *buf, size_t n, usec_t t, usec_t now_usec) {
        bool future = t >= now_usec;
        uint64_t d = (future ? t - now_usec : now_usec - t) / USEC_PER_SEC;
        char span[64];

        if (d >= 86400)
                snprintf(span, sizeof span, "%" PRIu64 "d %" PRIu64 "h", d / 86400, d % 86400 / 3600);
        else if (d >= 3600)
                snprintf(span, sizeof span, "%" PRIu64 "h %" PRIu64 "min", d / 3600, d % 3600 / 60);
        else if (d >= 60)
                snprintf(span, sizeof span, "%" PRIu64 "min %" PRIu64 "s", d / 60, d % 60);
        else
                snprintf(span, sizeof span, "%" PRIu64 "s", d);
        snprintf(buf, n, future ? "in %s" : "%s ago", span);
        return buf;
}

#define TIMESTAMP_MAX (RFC3339_MAX + 64)

/* A timestamp for a table cell: relative on a terminal, RFC 3339 otherwise; "" for none. */
static char *format_cell_time(char *buf, size_t n, usec_t t, const OutputFlags *flags) {
        if (t == 0)
                buf[0] = 0;
        else if (t == USEC_INFINITY)
                snprintf(buf, n, "never");
        else if (flags->human_times)
                format_span(buf, n, t, flags->now);
        else
                format_rfc3339(buf, n, t);
        return buf;
}

/* A timestamp for the status block: RFC 3339, and on a terminal how far away it is. */
static char *format_long_time(char *buf, size_t n, usec_t t, const OutputFlags *flags) {
        char a[RFC3339_MAX], b[64];

        if (t == 0)
                snprintf(buf, n, "-");
        else if (t == USEC_INFINITY)
                snprintf(buf, n, "never");
        else if (flags->human_times)
                snprintf(buf, n, "%s; %s", format_rfc3339(a, sizeof a, t),
                         format_span(b, sizeof b, t, flags->now));
        else
                format_rfc3339(buf, n, t);
        return buf;
}

bool credentials_usable(const Credential *c, size_t n) {
        bool usable = false;

        assert(c || n == 0);

        for (size_t i = 0; i < n; i++) {
                if (streq_ptr(c[i].state, "needs-login"))
                        return false;
                if (c[i].enabled && (streq_ptr(c[i].state, "active") || streq_ptr(c[i].state, "refreshing")))
                        usable = true;
        }
        return usable;
}

int credentials_print_list(FILE *f, const Credential *c, size_t n, const OutputFlags *flags) {
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        assert(f);
        assert(c || n == 0);
        assert(flags);

        t = table_new(4);
        if (!t)
                return -ENOMEM;
        if ((r = table_add_cell(t, "ID", NULL)) < 0 ||
            (r = table_add_cell(t, "PROVIDER", NULL)) < 0 ||
            (r = table_add_cell(t, "METHOD", NULL)) < 0 ||
            (r = table_add_cell(t, "STATE", NULL)) < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if ((r = table_add_cell(t, c[i].id, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].provider, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].auth_method, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].state, state_color(c[i].state))) < 0)
                        return r;

        if (n > 0) {
                r = table_print(t, f, flags->legend, flags->colors, flags->width);
                if (r < 0)
                        return r;
        }
        if (flags->legend) {
                if (n > 0)
                        fputc('\n', f);
                fprintf(f, "%zu credential%s listed.%s\n", n, n == 1 ? "" : "s",
                        n > 0 ? " LAST HOUR: requests/errors/failovers reported by kiro-proxyd." : "");
        }
        return 0;
}

static int print_fixes(FILE *f, const Credential *c, size_t n, const OutputFlags *flags) {
        bool first = true;
        int r;

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *fix = NULL;

                r = credential_fix(c + i, &fix);
                if (r < 0)
                        return r;
                if (c[i].unsaved) {
                        if (first)
                                fputc('\n', f);
                        first = false;
                        fprintf(f, "%s%s%s: %s\n", flags->colors ? ANSI_RED : "", c[i].id,
                                flags->colors ? ANSI_NORMAL : "", UNSAVED_TEXT);
                }
                if (!fix)
                        continue;
                if (first)
                        fputc('\n', f);
                first = false;
                fprintf(f, "%s%s%s needs a new login. Fix: %s\n",
                        flags->colors ? ANSI_RED : "", c[i].id, flags->colors ? ANSI_NORMAL : "", fix);
        }
        return 0;
}

int credentials_print_table(FILE *f, const Credential *c, size_t n, const OutputFlags *flags) {
        _cleanup_(table_freep) Table *t = NULL;
        int r;

        assert(f);
        assert(c || n == 0);
        assert(flags);

        t = table_new(8);
        if (!t)
                return -ENOMEM;
        if ((r = table_add_cell(t, "ID", NULL)) < 0 ||
            (r = table_add_cell(t, "METHOD", NULL)) < 0 ||
            (r = table_add_cell(t, "STATE", NULL)) < 0 ||
            (r = table_add_cell(t, "EXPIRES", NULL)) < 0 ||
            (r = table_add_cell(t, "NEXT REFRESH", NULL)) < 0 ||
            (r = table_add_cell(t, "FAILURES", NULL)) < 0 ||
            (r = table_add_cell(t, "LAST HOUR", NULL)) < 0 ||
            (r = table_add_cell(t, "LAST ERROR", NULL)) < 0)
                return r;

        for (size_t i = 0; i < n; i++) {
                char expires[TIMESTAMP_MAX], next[TIMESTAMP_MAX], failures[16], last_hour[40];
                const char *failures_color = c[i].consecutive_failures > 0 ? ANSI_YELLOW : NULL;

                (void) format_cell_time(expires, sizeof expires, c[i].access_token_expires_at, flags);
                (void) format_cell_time(next, sizeof next, c[i].next_refresh_at, flags);
                snprintf(failures, sizeof failures, "%" PRIu32, c[i].consecutive_failures);
                /* requests/errors/failovers, explained in the legend */
                snprintf(last_hour, sizeof last_hour, "%" PRIu32 "/%" PRIu32 "/%" PRIu32, c[i].requests_last_hour,
                         c[i].errors_last_hour, c[i].failovers_last_hour);

                if ((r = table_add_cell(t, c[i].id, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].auth_method, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].state, state_color(c[i].state))) < 0 ||
                    (r = table_add_cell(t, expires, NULL)) < 0 ||
                    (r = table_add_cell(t, next, NULL)) < 0 ||
                    (r = table_add_cell(t, failures, failures_color)) < 0 ||
                    (r = table_add_cell(t, last_hour, NULL)) < 0 ||
                    (r = table_add_cell(t, c[i].last_error, NULL)) < 0)
                        return r;
        }

        if (n > 0) {
                r = table_print(t, f, flags->legend, flags->colors, flags->width);
                if (r < 0)
                        return r;
        }
        if (flags->legend) {
                if (n > 0)
                        fputc('\n', f);
                fprintf(f, "%zu credential%s listed.%s\n", n, n == 1 ? "" : "s",
                        n > 0 ? " LAST HOUR: requests/errors/failovers reported by kiro-proxyd." : "");
        }
        return print_fixes(f, c, n, flags);
}

/* Writes s, or "-" when empty, on one line. */
static void put_line_safe(FILE *f, const char *s) {
        if (isempty(s)) {
                fputc('-', f);
                return;
        }
        for (const char *p = s; *p; p++)
                fputc((unsigned char) *p < ' ' || *p == 0x7f ? ' ' : *p, f);
}

int credential_print_status(FILE *f, const Credential *c, const OutputFlags *flags) {
        _cleanup_free_ char *fix = NULL;
        const char *color = flags->colors ? state_color(c->state) : NULL;
        const char *on = color ?: "", *off = color ? ANSI_NORMAL : "";
        char buf[TIMESTAMP_MAX];
        int r;

        assert(f);
        assert(c);
        assert(flags);

        r = credential_fix(c, &fix);
        if (r < 0)
                return r;

        fprintf(f, "%s\u25CF%s %s (%s, %s)\n", on, off, strna(c->id), strna(c->provider), strna(c->auth_method));
        fprintf(f, "       State: %s%s%s%s\n", on, strna(c->state), off, c->enabled ? "" : " (disabled)");
        fputs("      Source: ", f);
        put_line_safe(f, c->source);
        if (!isempty(c->link)) {
                fputs(" (linked: ", f);
                put_line_safe(f, c->link);
                fputc(')', f);
                if (!isempty(c->link_message)) {
                        fputs("\n        Link: ", f);
                        put_line_safe(f, c->link_message);
                }
        }
        fputs("\n      Region: ", f);
        put_line_safe(f, c->region);
        fputc('\n', f);
        if (!isempty(c->profile_arn)) {
                fputs(" Profile ARN: ", f);
                put_line_safe(f, c->profile_arn);
                fputc('\n', f);
        }
        fprintf(f, "     Expires: %s\n", format_long_time(buf, sizeof buf, c->access_token_expires_at, flags));
        fprintf(f, "Last refresh: %s\n", format_long_time(buf, sizeof buf, c->last_refresh_at, flags));
        fprintf(f, "Next refresh: %s\n", format_long_time(buf, sizeof buf, c->next_refresh_at, flags));
        fprintf(f, "    Failures: %" PRIu32 "\n", c->consecutive_failures);
        fprintf(f, "   Last hour: %" PRIu32 " request%s, %" PRIu32 " error%s, %" PRIu32 " failover%s\n",
                c->requests_last_hour, c->requests_last_hour == 1 ? "" : "s",
                c->errors_last_hour, c->errors_last_hour == 1 ? "" : "s",
                c->failovers_last_hour, c->failovers_last_hour == 1 ? "" : "s");
        if (!isempty(c->last_error)) {
                fputs("  Last error: ", f);
                put_line_safe(f, c->last_error);
                fputc('\n', f);
        }
        if (c->unsaved)
                fprintf(f, "     Unsaved: %s%s%s\n", flags->colors ? ANSI_RED : "", UNSAVED_TEXT,
                        flags->colors ? ANSI_NORMAL : "");
        if (c->cooldown_until > flags->now)
                fprintf(f, "    Cooldown: until %s%s%s%s\n",
                        format_long_time(buf, sizeof buf, c->cooldown_until, flags),
                        isempty(c->cooldown_reason) ? "" : " (", strempty(c->cooldown_reason),
                        isempty(c->cooldown_reason) ? "" : ")");
        if (fix)
                fprintf(f, "         Fix: %s%s%s\n",
                        flags->colors ? ANSI_RED : "", fix, flags->colors ? ANSI_NORMAL : "");
        return 0;
}
