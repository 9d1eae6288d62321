/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's error table: exit statuses and the one line on stderr. */
#include "bus-names.h"
#include "config.h"
#include "kiroctl-error.h"
#include "tests.h"

/* Formats e with the table and checks that the report is exactly one "kiroctl: …" line. */
static char *message_of(const ErrorInfo *e, int *ret_status) {
        char *buf = NULL, *message = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);
        int status;

        ASSERT_NOT_NULL(f);
        status = error_info_report(e, f);
        ASSERT_EQ(fclose(f), 0);
        ASSERT_TRUE(strncmp(buf, "kiroctl: ", 9) == 0);
        ASSERT_TRUE(size > 10 && buf[size - 1] == '\n');
        ASSERT_NULL(memchr(buf, '\n', size - 1));

        ASSERT_EQ(error_info_format(e, &message), status);
        ASSERT_TRUE(strncmp(buf + 9, message, size - 10) == 0);
        free(buf);
        *ret_status = status;
        return message;
}

static char *bus_failure(ErrorContext context, const char *name, const char *text, const char *id, int *ret_status) {
        _cleanup_(sd_bus_error_free) sd_bus_error b = SD_BUS_ERROR_NULL;
        ErrorInfo e = ERROR_INFO_NULL;
        char *m;

        ASSERT_OK(kirod_bus_errors_register());
        sd_bus_error_set(&b, name, text);
        ASSERT_TRUE(error_info_set(&e, context, -EIO, &b) < 0);
        if (id)
                e.id = strdup(id);
        m = message_of(&e, ret_status);
        error_info_done(&e);
        return m;
}

TEST(daemon_not_running) {
        ErrorInfo e = ERROR_INFO_NULL;
        sd_bus_error b = SD_BUS_ERROR_NULL;
        int status;
        char *m;

        m = bus_failure(ERROR_CONTEXT_MANAGER, "org.freedesktop.DBus.Error.ServiceUnknown",
                        "The name is not activatable", NULL, &status);
        ASSERT_STREQ(m, "kiro-authd is not running (systemctl start kiro-authd)");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);

        /* NameHasNoOwner is ENXIO in sd-bus, like NoSuchCredential: the name decides, not the errno. */
        sd_bus_error_set(&b, "org.freedesktop.DBus.Error.NameHasNoOwner", "Could not get owner");
        ASSERT_EQ(sd_bus_error_get_errno(&b), ENXIO);
        error_info_set(&e, ERROR_CONTEXT_CREDENTIAL, -ENXIO, &b);
        e.user_bus = true;
        m = message_of(&e, &status);
        ASSERT_STREQ(m, "kiro-authd is not running (systemctl --user start kiro-authd)");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);
        error_info_done(&e);
        sd_bus_error_free(&b);
}

TEST(access_denied) {
        ErrorInfo e = ERROR_INFO_NULL;
        sd_bus_error b = SD_BUS_ERROR_NULL;
        int status;
        char *m;

        /* kiro-authd names the group it is configured with. */
        sd_bus_error_set(&b, SD_BUS_ERROR_ACCESS_DENIED,
                         "Access denied: changing credentials needs root or membership in group 'wheel-kiro'.");
        error_info_set(&e, ERROR_CONTEXT_MANAGER, -EACCES, &b);
        e.action = "importing credentials";
        m = message_of(&e, &status);
        ASSERT_STREQ(m, "permission denied: importing credentials needs root or membership in group 'wheel-kiro'.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);
        sd_bus_error_free(&b);

        /* The bus policy does not: the built-in default. */
        sd_bus_error_set(&b, SD_BUS_ERROR_ACCESS_DENIED, "Rejected send message, 2 matched rules");
        error_info_set(&e, ERROR_CONTEXT_CREDENTIAL, -EACCES, &b);
        e.action = "removing credentials";
        m = message_of(&e, &status);
        ASSERT_STREQ(m, "permission denied: removing credentials needs root or membership in group '" KIROD_ADMIN_GROUP "'.");
        free(m);

        /* A denied read is a policy problem, not a group one. */
        e.action = NULL;
        m = message_of(&e, &status);
        ASSERT_STREQ(m, "permission denied: rejected send message, 2 matched rules. Check the D-Bus policy for org.kirod.Auth1.");
        free(m);
        error_info_done(&e);
        sd_bus_error_free(&b);
}

TEST(no_such_credential) {
        int status;
        char *m;

        /* A credential object that is not there: sd-bus answers UnknownObject. */
        m = bus_failure(ERROR_CONTEXT_CREDENTIAL, "org.freedesktop.DBus.Error.UnknownObject",
                        "Unknown object '/org/kirod/Auth1/credential/nope'.", "nope", &status);
        ASSERT_STREQ(m, "no credential 'nope'. See 'kiroctl list'.");
        ASSERT_EQ(status, KIROCTL_EXIT_NO_SUCH_CREDENTIAL);
        free(m);

        m = bus_failure(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_NO_SUCH_CREDENTIAL, "No credential 'x'.", "x", &status);
        ASSERT_STREQ(m, "no credential 'x'. See 'kiroctl list'.");
        ASSERT_EQ(status, KIROCTL_EXIT_NO_SUCH_CREDENTIAL);
        free(m);

        m = bus_failure(ERROR_CONTEXT_MANAGER, KIROD_ERROR_NO_SUCH_CREDENTIAL, "No credential 'x'.", NULL, &status);
        ASSERT_STREQ(m, "no credential 'x'. See 'kiroctl list'.");
        ASSERT_EQ(status, KIROCTL_EXIT_NO_SUCH_CREDENTIAL);
        free(m);

        /* On the manager an unknown object is a version mismatch, not a missing credential. */
        m = bus_failure(ERROR_CONTEXT_MANAGER, "org.freedesktop.DBus.Error.UnknownObject", "Unknown object '/x'.",
                        NULL, &status);
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        ASSERT_NOT_NULL(strstr(m, "same version"));
        free(m);
}

TEST(kirod_errors_use_the_daemon_message) {
        int status;
        char *m;

        m = bus_failure(ERROR_CONTEXT_MANAGER, KIROD_ERROR_CREDENTIAL_EXISTS,
                        "Credential 'kiro-cli' exists already; pass --replace to update it or --id to add another.",
                        NULL, &status);
        ASSERT_STREQ(m, "credential 'kiro-cli' exists already; pass --replace to update it or --id to add another.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);

        /* Needs login: with the fix when kiroctl found it, else a pointer to status. */
        m = bus_failure(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_NEEDS_LOGIN, "The credential needs a new login.",
                        "it's", &status);
        ASSERT_STREQ(m, "credential 'it's' needs a new login. See 'kiroctl status 'it'\\''s''.");
        free(m);
        {
                ErrorInfo e = ERROR_INFO_NULL;
                sd_bus_error b = SD_BUS_ERROR_NULL;
                sd_bus_error_set(&b, KIROD_ERROR_NEEDS_LOGIN, "The credential needs a new login.");
                error_info_set(&e, ERROR_CONTEXT_CREDENTIAL, -EIO, &b);
                e.id = strdup("main");
                e.fix = strdup("kiro-cli login && kiroctl import --from-kiro-cli --replace --id main");
                m = message_of(&e, &status);
                ASSERT_STREQ(m, "credential 'main' needs a new login. Fix: kiro-cli login && kiroctl import "
                                "--from-kiro-cli --replace --id main");
                free(m);
                error_info_done(&e);
                sd_bus_error_free(&b);
        }

        /* Any other kirod error: the daemon's text; upper case only where it is an acronym. */
        m = bus_failure(ERROR_CONTEXT_MANAGER, KIROD_ERROR_INVALID_SOURCE,
                        "Cannot import kiro-ide-json: 'expiresAt' is not a string.", NULL, &status);
        ASSERT_STREQ(m, "cannot import kiro-ide-json: 'expiresAt' is not a string.");
        free(m);
        m = bus_failure(ERROR_CONTEXT_MANAGER, KIROD_ERROR_REGISTRATION_EXPIRED, "IdC registration expired.\nLog in.",
                        NULL, &status);
        ASSERT_STREQ(m, "IdC registration expired. Log in.");
        free(m);

        m = bus_failure(ERROR_CONTEXT_CREDENTIAL, KIROD_ERROR_CREDENTIAL_DISABLED, "Credential 'a b' is disabled.", "a b",
                        &status);
        ASSERT_STREQ(m, "credential 'a b' is disabled. Enable it with 'kiroctl enable 'a b''.");
        free(m);

        /* sd_bus_error_set_errnof() in the daemon. */
        m = bus_failure(ERROR_CONTEXT_CREDENTIAL, "System.Error.EIO", "Failed to store credential 'a': Input/output error",
                        "a", &status);
        ASSERT_STREQ(m, "failed to store credential 'a': Input/output error. See 'journalctl -u kiro-authd'.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);

        /* A name nobody knows: its message. */
        m = bus_failure(ERROR_CONTEXT_MANAGER, "com.example.Odd", "Odd things", NULL, &status);
        ASSERT_STREQ(m, "odd things.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);
}

TEST(invalid_args_is_usage) {
        int status;
        char *m = bus_failure(ERROR_CONTEXT_MANAGER, SD_BUS_ERROR_INVALID_ARGS,
                              "Invalid credential id 'a b': use 1-64 letters, digits, '.', '_' or '-'.", NULL, &status);
        ASSERT_STREQ(m, "invalid credential id 'a b': use 1-64 letters, digits, '.', '_' or '-'.");
        ASSERT_EQ(status, KIROCTL_EXIT_USAGE);
        free(m);
}

TEST(errno_mapping_of_registered_names) {
        sd_bus_error b = SD_BUS_ERROR_NULL;
        ErrorInfo e = ERROR_INFO_NULL;

        ASSERT_OK(kirod_bus_errors_register());
        sd_bus_error_set(&b, KIROD_ERROR_NEEDS_LOGIN, "x");
        ASSERT_ERROR(error_info_set(&e, ERROR_CONTEXT_CREDENTIAL, -EIO, &b), EKEYEXPIRED);
        ASSERT_EQ(e.error, EKEYEXPIRED);
        error_info_done(&e);
        sd_bus_error_free(&b);
}

static char *local_failure(ErrorContext context, int error, const char *path, const char *detail, int *ret_status) {
        ErrorInfo e = ERROR_INFO_NULL;
        char *m;

        if (detail)
                ASSERT_ERROR(error_info_set_detail(&e, context, error, "%s", detail), error);
        else
                ASSERT_ERROR(error_info_set(&e, context, error, NULL), error);
        if (path)
                e.path = strdup(path);
        e.option = "--refresh-token-file";
        m = message_of(&e, ret_status);
        error_info_done(&e);
        return m;
}

TEST(usage) {
        int status;
        char *m = local_failure(ERROR_CONTEXT_USAGE, EINVAL, NULL, "unknown command 'frob'", &status);
        ASSERT_STREQ(m, "unknown command 'frob'. See 'kiroctl --help'.");
        ASSERT_EQ(status, KIROCTL_EXIT_USAGE);
        free(m);
}

TEST(kiro_cli_database) {
        const char *p = "/home/u/.local/share/kiro-cli/data.sqlite3";
        int status;
        char *m;

        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DEFAULT, ENOENT, p, NULL, &status);
        ASSERT_STREQ(m, "'/home/u/.local/share/kiro-cli/data.sqlite3' not found; is kiro-cli installed and logged in? "
                        "Use --db PATH to name its database.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);

        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, ENOENT, "/x.db", NULL, &status);
        ASSERT_STREQ(m, "'/x.db' not found. Check the path given with --db.");
        free(m);

        /* The default location shares the rows of --db for everything but "not found". */
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DEFAULT, EBUSY, p, "database is locked", &status);
        ASSERT_STREQ(m, "'/home/u/.local/share/kiro-cli/data.sqlite3' is locked by another process. Try again when "
                        "kiro-cli is idle.");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, EBADMSG, "/x.db", "*** in database main ***\nPage 2: btreeInitPage() "
                          "returns error code 11", &status);
        ASSERT_STREQ(m, "'/x.db' is corrupt (*** in database main *** Page 2: btreeInitPage() returns error code 11). Log "
                        "in with 'kiro-cli login' again, or use --db PATH.");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, EMEDIUMTYPE, "/etc/passwd", "file is not a database", &status);
        ASSERT_STREQ(m, "'/etc/passwd' is not an SQLite database. Use --db PATH to name kiro-cli's data.sqlite3.");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, ENODATA, "/e.db", NULL, &status);
        ASSERT_STREQ(m, "'/e.db' is empty. Log in with 'kiro-cli login' first.");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, EFBIG, "/big.db", NULL, &status);
        ASSERT_STREQ(m, "'/big.db' is larger than 64 MiB, refusing it. Use --db PATH to name kiro-cli's data.sqlite3.");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, EACCES, "/root/x.db", NULL, &status);
        ASSERT_STREQ(m, "cannot read '/root/x.db': Permission denied. Run kiroctl as the user who owns it.");
        free(m);
        /* Something unforeseen: strerror. */
        m = local_failure(ERROR_CONTEXT_KIRO_CLI_DB, ELOOP, "/l.db", NULL, &status);
        ASSERT_STREQ(m, "too many levels of symbolic links.");
        ASSERT_EQ(status, KIROCTL_EXIT_FAILURE);
        free(m);
}

TEST(input_files) {
        int status;
        char *m;

        m = local_failure(ERROR_CONTEXT_INPUT_FILE, ENODATA, "-", NULL, &status);
        ASSERT_STREQ(m, "standard input is empty. --refresh-token-file expects a file holding the token.");
        free(m);
        m = local_failure(ERROR_CONTEXT_INPUT_FILE, ENOENT, "rt.txt", NULL, &status);
        ASSERT_STREQ(m, "'rt.txt' not found. Check the path given with --refresh-token-file.");
        free(m);
        m = local_failure(ERROR_CONTEXT_INPUT_FILE, EFBIG, "big", "over 1024 KiB", &status);
        ASSERT_STREQ(m, "'big' is too large (over 1024 KiB).");
        free(m);
        m = local_failure(ERROR_CONTEXT_KIRO_IDE, ENOENT, "/h/.aws/sso/cache/kiro-auth-token.json", NULL, &status);
        ASSERT_STREQ(m, "'/h/.aws/sso/cache/kiro-auth-token.json' not found; is the Kiro IDE installed and logged in? "
                        "Use --file PATH to name the token file.");
        free(m);
}

TEST(bus_connect) {
        int status;
        char *m = local_failure(ERROR_CONTEXT_BUS_CONNECT, ECONNREFUSED, NULL, NULL, &status);
        ASSERT_STREQ(m, "cannot connect to the system bus: Connection refused. Is D-Bus running (and "
                        "$DBUS_SYSTEM_BUS_ADDRESS right, if set)?");
        free(m);
}
