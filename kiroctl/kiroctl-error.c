/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one table that turns an errno or a D-Bus error into kiroctl's exit status and its one-line message. */
#include <assert.h>
#include <stdarg.h>

#include "bus-names.h"
#include "config.h"
#include "kiroctl-error.h"
#include "kiroctl-util.h"

/* One row: when it applies, and what the user is told. Rows are tried in order, the first match wins.
 *
 * A row with a bus error name matches failures that came back from a bus call with that name (a name
 * ending in '.' is a prefix, "*" is any name); a row without one matches local failures by errno (0 is any
 * errno).
 *
 * Templates: {msg} the peer's error message or the local detail (else strerror), {strerror}, {id} (quoted),
 * {id_arg} (the id as a shell argument), {fix} (how to bring a credential back),
 * {path} (quoted; "-" is standard input), {extra} (quoted), {option}, {action}, {group} (the admin group
 * kiro-authd named in its message, else the built-in default; quoted), {bus} (system/user),
 * {busvar} (the environment variable naming that bus), {systemctl} and {journalctl} (with --user when
 * needed). */
typedef enum ErrorRequires {
        REQUIRES_ACTION = 1 << 0,       /* only when the caller said which changing action failed */
        REQUIRES_FIX    = 1 << 1,       /* only when the fix for the credential is known */
} ErrorRequires;

typedef struct ErrorRule {
        ErrorContext context;   /* ERROR_CONTEXT_ANY: every context */
        const char *bus_error;
        int error;
        ErrorRequires requires;
        int exit_status;
        const char *message;
} ErrorRule;

#define BUS(ctx, name, status, msg)        { ctx, name, 0, 0, status, msg }
#define LOCAL(ctx, errno_, status, msg)    { ctx, NULL, errno_, 0, status, msg }

#define NOT_RUNNING "kiro-authd is not running ({systemctl} start kiro-authd)"
#define SEE_JOURNAL "See '{journalctl} -u kiro-authd'."
#define KIRO_CLI_HINT "Use --db PATH to name kiro-cli's data.sqlite3."

static const ErrorRule error_rules[] = {
        /* The command line. */
        LOCAL(ERROR_CONTEXT_USAGE, 0, KIROCTL_EXIT_USAGE, "{msg}. See 'kiroctl --help'."),

        /* The bus itself. */
        LOCAL(ERROR_CONTEXT_BUS_CONNECT, ENOMEDIUM, KIROCTL_EXIT_FAILURE,
              "cannot find the {bus} bus: neither ${busvar} nor $XDG_RUNTIME_DIR is set. Log in to a "
              "session, or use --system."),
        LOCAL(ERROR_CONTEXT_BUS_CONNECT, 0, KIROCTL_EXIT_FAILURE,
              "cannot connect to the {bus} bus: {strerror}. Is D-Bus running (and ${busvar} right, if "
              "set)?"),

        /* kiro-authd absent or unreachable. */
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.ServiceUnknown", KIROCTL_EXIT_FAILURE, NOT_RUNNING),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.NameHasNoOwner", KIROCTL_EXIT_FAILURE, NOT_RUNNING),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.Spawn.", KIROCTL_EXIT_FAILURE,
            "kiro-authd could not be started: {msg}. " SEE_JOURNAL),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.systemd1.", KIROCTL_EXIT_FAILURE,
            "kiro-authd could not be started: {msg}. " SEE_JOURNAL),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.NoReply", KIROCTL_EXIT_FAILURE,
            "kiro-authd did not answer in time. " SEE_JOURNAL),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.Timeout", KIROCTL_EXIT_FAILURE,
            "kiro-authd did not answer in time. " SEE_JOURNAL),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.TimedOut", KIROCTL_EXIT_FAILURE,
            "kiro-authd did not answer in time. " SEE_JOURNAL),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.Disconnected", KIROCTL_EXIT_FAILURE,
            "lost the connection to kiro-authd. " SEE_JOURNAL),

        /* Permission: kiro-authd's own check or the bus policy. Changing methods are for the admin group;
         * reading is open to everyone, so a denied read means the policy is off. */
        { ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.AccessDenied", 0, REQUIRES_ACTION, KIROCTL_EXIT_FAILURE,
          "permission denied: {action} needs root or membership in group {group}." },
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.AccessDenied", KIROCTL_EXIT_FAILURE,
            "permission denied: {msg}. Check the D-Bus policy for " KIROD_BUS_NAME "."),

        /* Credentials that are not there. */
        BUS(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_NO_SUCH_CREDENTIAL, KIROCTL_EXIT_NO_SUCH_CREDENTIAL,
            "no credential {id}. See 'kiroctl list'."),
        BUS(ERROR_CONTEXT_CREDENTIAL, "org.freedesktop.DBus.Error.UnknownObject", KIROCTL_EXIT_NO_SUCH_CREDENTIAL,
            "no credential {id}. See 'kiroctl list'."),
        BUS(ERROR_CONTEXT_CREDENTIAL, "org.freedesktop.DBus.Error.UnknownInterface",
            KIROCTL_EXIT_NO_SUCH_CREDENTIAL, "no credential {id}. See 'kiroctl list'."),
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_NO_SUCH_CREDENTIAL, KIROCTL_EXIT_NO_SUCH_CREDENTIAL,
            "{msg}. See 'kiroctl list'."),

        /* kiro-authd's own errors: its messages are specific and free of secrets, so they are shown as
         * they are, with what to do next where kiroctl knows better. */
        { ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_NEEDS_LOGIN, 0, REQUIRES_FIX, KIROCTL_EXIT_FAILURE,
          "credential {id} needs a new login. Fix: {fix}" },
        BUS(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_NEEDS_LOGIN, KIROCTL_EXIT_FAILURE,
            "credential {id} needs a new login. See 'kiroctl status {id_arg}'."),
        BUS(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_CREDENTIAL_DISABLED, KIROCTL_EXIT_FAILURE,
            "credential {id} is disabled. Enable it with 'kiroctl enable {id_arg}'."),
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_NO_USABLE_CREDENTIAL, KIROCTL_EXIT_FAILURE,
            "{msg}. See 'kiroctl status'."),
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_UNSUPPORTED_FORMAT, KIROCTL_EXIT_FAILURE,
            "{msg}. Is kiro-authd older than kiroctl?"),
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_STORAGE_FAILED, KIROCTL_EXIT_FAILURE, "{msg}. " SEE_JOURNAL),
        /* Ends with the commands to run: no full stop after them. */
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_SOURCE_NOT_ACCESSIBLE, KIROCTL_EXIT_FAILURE, "{msg}"),
        BUS(ERROR_CONTEXT_ANY, KIROD_ERROR_PREFIX, KIROCTL_EXIT_FAILURE, "{msg}."),
        /* sd_bus_error_set_errnof() in kiro-authd: an errno with a message saying what failed. */
        BUS(ERROR_CONTEXT_ANY, "System.Error.", KIROCTL_EXIT_FAILURE, "{msg}. " SEE_JOURNAL),

        /* Protocol mismatches. */
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.InvalidArgs", KIROCTL_EXIT_USAGE, "{msg}."),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.UnknownMethod", KIROCTL_EXIT_FAILURE,
            "kiro-authd does not understand the request ({msg}). Are kiroctl and kiro-authd the same version?"),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.UnknownObject", KIROCTL_EXIT_FAILURE,
            "kiro-authd does not understand the request ({msg}). Are kiroctl and kiro-authd the same version?"),
        BUS(ERROR_CONTEXT_ANY, "org.freedesktop.DBus.Error.UnknownInterface", KIROCTL_EXIT_FAILURE,
            "kiro-authd does not understand the request ({msg}). Are kiroctl and kiro-authd the same version?"),
        BUS(ERROR_CONTEXT_ANY, "*", KIROCTL_EXIT_FAILURE, "{msg}."),

        /* kiro-cli's database. */
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DEFAULT, ENOENT, KIROCTL_EXIT_FAILURE,
              "{path} not found; is kiro-cli installed and logged in? Use --db PATH to name its database."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, ENOENT, KIROCTL_EXIT_FAILURE,
              "{path} not found. Check the path given with --db."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EISDIR, KIROCTL_EXIT_FAILURE,
              "{path} is a directory, not a database. " KIRO_CLI_HINT),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EBADFD, KIROCTL_EXIT_FAILURE,
              "{path} is not a regular file. " KIRO_CLI_HINT),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EACCES, KIROCTL_EXIT_FAILURE,
              "cannot read {path}: {strerror}. Run kiroctl as the user who owns it."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EPERM, KIROCTL_EXIT_FAILURE,
              "cannot read {path}: {strerror}. Run kiroctl as the user who owns it."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, ENODATA, KIROCTL_EXIT_FAILURE,
              "{path} is empty. Log in with 'kiro-cli login' first."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EFBIG, KIROCTL_EXIT_FAILURE,
              "{path} is larger than 64 MiB, refusing it. " KIRO_CLI_HINT),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EMEDIUMTYPE, KIROCTL_EXIT_FAILURE,
              "{path} is not an SQLite database. " KIRO_CLI_HINT),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EBADMSG, KIROCTL_EXIT_FAILURE,
              "{path} is corrupt ({msg}). Log in with 'kiro-cli login' again, or use --db PATH."),
        LOCAL(ERROR_CONTEXT_KIRO_CLI_DB, EBUSY, KIROCTL_EXIT_FAILURE,
              "{path} is locked by another process. Try again when kiro-cli is idle."),

        /* The Kiro IDE's token file and its registration. */
        LOCAL(ERROR_CONTEXT_KIRO_IDE, ENOENT, KIROCTL_EXIT_FAILURE,
              "{path} not found; is the Kiro IDE installed and logged in? Use --file PATH to name the token "
              "file."),
        LOCAL(ERROR_CONTEXT_KIRO_IDE, EBADMSG, KIROCTL_EXIT_FAILURE,
              "{path} is not valid JSON ({msg}). Log in again in the Kiro IDE."),
        LOCAL(ERROR_CONTEXT_KIRO_IDE, EMEDIUMTYPE, KIROCTL_EXIT_FAILURE,
              "{path} is not a Kiro IDE token file ({msg}). Use --file PATH to name kiro-auth-token.json."),
        LOCAL(ERROR_CONTEXT_KIRO_IDE_REG, ENOENT, KIROCTL_EXIT_FAILURE,
              "client registration {path}, named by clientIdHash in {extra}, not found. Log in again in the "
              "Kiro IDE."),
        LOCAL(ERROR_CONTEXT_KIRO_IDE_REG, EBADMSG, KIROCTL_EXIT_FAILURE,
              "{extra} names no usable client registration ({msg}). Log in again in the Kiro IDE."),

        /* Token and key files. */
        LOCAL(ERROR_CONTEXT_INPUT_FILE, ENOENT, KIROCTL_EXIT_FAILURE,
              "{path} not found. Check the path given with {option}."),
        LOCAL(ERROR_CONTEXT_INPUT_FILE, ENODATA, KIROCTL_EXIT_FAILURE,
              "{path} is empty. {option} expects a file holding the token."),

        /* A call that failed on our side of the connection (no error name from the bus). */
        LOCAL(ERROR_CONTEXT_MANAGER, 0, KIROCTL_EXIT_FAILURE,
              "talking to kiro-authd failed: {strerror}. " SEE_JOURNAL),
        LOCAL(ERROR_CONTEXT_CREDENTIAL, 0, KIROCTL_EXIT_FAILURE,
              "talking to kiro-authd failed: {strerror}. " SEE_JOURNAL),

        /* Any file. */
        LOCAL(ERROR_CONTEXT_ANY, EISDIR, KIROCTL_EXIT_FAILURE, "{path} is a directory. Name a file."),
        LOCAL(ERROR_CONTEXT_ANY, EBADFD, KIROCTL_EXIT_FAILURE, "{path} is not a regular file. Name a file."),
        LOCAL(ERROR_CONTEXT_ANY, EFBIG, KIROCTL_EXIT_FAILURE, "{path} is too large ({msg})."),
        LOCAL(ERROR_CONTEXT_ANY, EACCES, KIROCTL_EXIT_FAILURE,
              "cannot read {path}: {strerror}. Run kiroctl as the user who owns it."),

        /* Whatever else. */
        LOCAL(ERROR_CONTEXT_ANY, ENOMEM, KIROCTL_EXIT_FAILURE, "out of memory."),
        LOCAL(ERROR_CONTEXT_ANY, 0, KIROCTL_EXIT_FAILURE, "{msg}."),
};

void error_info_done(ErrorInfo *e) {
        assert(e);

        sd_bus_error_free(&e->bus_error);
        e->detail = mfree(e->detail);
        e->id = mfree(e->id);
        e->path = mfree(e->path);
        e->extra = mfree(e->extra);
        e->fix = mfree(e->fix);
}

int error_info_set(ErrorInfo *e, ErrorContext context, int error, const sd_bus_error *bus_error) {
        assert(e);

        e->context = context;
        e->error = abs(error);
        e->detail = mfree(e->detail);
        sd_bus_error_free(&e->bus_error);
        if (bus_error && sd_bus_error_is_set(bus_error)) {
                int k = sd_bus_error_get_errno(bus_error);
                if (k > 0)
                        e->error = k;
                /* Returns the error's own errno, not whether copying worked; on ENOMEM the copy is the
                 * NoMemory error, which is reported as such. */
                (void) sd_bus_error_copy(&e->bus_error, bus_error);
        }
        if (e->error == 0)
                e->error = EIO;
        return -e->error;
}

int error_info_set_detail(ErrorInfo *e, ErrorContext context, int error, const char *format, ...) {
        va_list ap;
        int r;

        r = error_info_set(e, context, error, NULL);
        if (format) {
                va_start(ap, format);
                if (vasprintf(&e->detail, format, ap) < 0)
                        e->detail = NULL;
                va_end(ap);
        }
        return r;
}

static bool bus_name_matches(const char *pattern, const char *name) {
        size_t l = strlen(pattern);

        if (streq(pattern, "*"))
                return true;
        if (l > 0 && pattern[l - 1] == '.')
                return strneq(pattern, name, l);
        return streq(pattern, name);
}

static bool context_matches(ErrorContext rule, ErrorContext actual) {
        if (rule == ERROR_CONTEXT_ANY || rule == actual)
                return true;
        /* The default location of kiro-cli's database inherits the rows for an explicit --db. */
        return rule == ERROR_CONTEXT_KIRO_CLI_DB && actual == ERROR_CONTEXT_KIRO_CLI_DEFAULT;
}

static const ErrorRule *error_rule_find(const ErrorInfo *e) {
        const char *name = e->bus_error.name;

        for (size_t i = 0; i < ELEMENTSOF(error_rules); i++) {
                const ErrorRule *rule = error_rules + i;

                if (!context_matches(rule->context, e->context))
                        continue;
                if ((rule->requires & REQUIRES_ACTION) && !e->action)
                        continue;
                if ((rule->requires & REQUIRES_FIX) && isempty(e->fix))
                        continue;
                if (name) {
                        if (!rule->bus_error || !bus_name_matches(rule->bus_error, name))
                                continue;
                } else {
                        if (rule->bus_error)
                                continue;
                        if (rule->error != 0 && rule->error != e->error)
                                continue;
                }
                return rule;
        }

        /* The last row matches everything local, and "*" everything from the bus. */
        assert_not_reached();
}

/* Writes s to f on one line: control characters become spaces, trailing dots and white space go (the
 * template supplies the punctuation). */
static void put_sanitized(FILE *f, const char *s) {
        size_t l = strlen(s);

        while (l > 0 && (s[l - 1] == '.' || s[l - 1] == ' ' || s[l - 1] == '\n' || s[l - 1] == '\t'))
                l--;
        for (size_t i = 0; i < l; i++)
                fputc((unsigned char) s[i] < ' ' || s[i] == 0x7f ? ' ' : s[i], f);
}

/* A message in the middle of ours: "Credential 'x' …" reads "credential 'x' …", but a first word that is not
 * an ordinary capitalised one ("IdC", "HTTP", "OIDC") stays as it is. */
static void put_message(FILE *f, const char *s) {
        bool ordinary = s[0] >= 'A' && s[0] <= 'Z';

        for (const char *p = s + 1; ordinary && *p && *p != ' ' && *p != ':' && *p != ','; p++)
                if (!(*p >= 'a' && *p <= 'z'))
                        ordinary = false;
        if (ordinary && s[1] >= 'a' && s[1] <= 'z') {
                fputc(s[0] - 'A' + 'a', f);
                s++;
        }
        put_sanitized(f, s);
}

/* kiro-authd names its configured admin group in "… group 'NAME'"; that beats our compiled-in default. */
static void put_group(FILE *f, const ErrorInfo *e) {
        const char *m = e->bus_error.message, *p, *end;

        if (m && (p = strstr(m, "group '")) && (end = strchr(p + 7, '\'')) && end > p + 7 && end - p - 7 < 64) {
                fputc('\'', f);
                for (p += 7; p < end; p++)
                        fputc((unsigned char) *p < ' ' ? ' ' : *p, f);
                fputc('\'', f);
                return;
        }
        fputs("'" KIROD_ADMIN_GROUP "'", f);
}

static void put_quoted(FILE *f, const char *s) {
        if (!s) {
                fputs("(unknown)", f);
                return;
        }
        if (streq(s, "-")) {
                fputs("standard input", f);
                return;
        }
        fputc('\'', f);
        put_sanitized(f, s);
        fputc('\'', f);
}

static void expand(FILE *f, const char *template, const ErrorInfo *e) {
        for (const char *p = template; *p;) {
                const char *end;

                if (*p != '{' || !(end = strchr(p, '}'))) {
                        fputc(*p++, f);
                        continue;
                }

                size_t l = (size_t) (end - p - 1);
                const char *key = p + 1;
#define KEY(k) (l == strlen(k) && strneq(key, k, l))
                if (KEY("msg")) {
                        const char *m = e->bus_error.name ? e->bus_error.message : e->detail;
                        put_message(f, !isempty(m) ? m : strerror(e->error));
                } else if (KEY("strerror"))
                        put_sanitized(f, strerror(e->error));
                else if (KEY("id"))
                        put_quoted(f, e->id);
                else if (KEY("id_arg")) {
                        _cleanup_free_ char *q = NULL;
                        if (shell_quote(strempty(e->id), &q) >= 0)
                                put_sanitized(f, q);
                } else if (KEY("path"))
                        put_quoted(f, e->path);
                else if (KEY("extra"))
                        put_quoted(f, e->extra);
                else if (KEY("option"))
                        fputs(strempty(e->option), f);
                else if (KEY("fix"))
                        put_sanitized(f, strempty(e->fix));
                else if (KEY("group"))
                        put_group(f, e);
                else if (KEY("action"))
                        fputs(strempty(e->action), f);
                else if (KEY("bus"))
                        fputs(e->user_bus ? "user" : "system", f);
                else if (KEY("busvar"))
                        fputs(e->user_bus ? "DBUS_SESSION_BUS_ADDRESS" : "DBUS_SYSTEM_BUS_ADDRESS", f);
                else if (KEY("systemctl"))
                        fputs(e->user_bus ? "systemctl --user" : "systemctl", f);
                else if (KEY("journalctl"))
                        fputs(e->user_bus ? "journalctl --user" : "journalctl", f);
                else
                        fwrite(p, 1, l + 2, f);
#undef KEY
                p = end + 1;
        }
}

int error_info_format(const ErrorInfo *e, char **ret_message) {
        const ErrorRule *rule;
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        assert(e);
        assert(ret_message);

        rule = error_rule_find(e);

        f = open_memstream(&buf, &size);
        if (!f) {
                *ret_message = NULL;
                return rule->exit_status;
        }
        expand(f, rule->message, e);
        if (fclose(f) != 0)
                buf = mfree(buf);
        *ret_message = buf;
        return rule->exit_status;
}

int error_info_report(const ErrorInfo *e, FILE *f) {
        _cleanup_free_ char *message = NULL;
        int status;

        status = error_info_format(e, &message);
        fprintf(f, "kiroctl: %s\n", message ?: strerror(e->error));
        return status;
}
