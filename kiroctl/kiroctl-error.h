/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one table that turns an errno or a D-Bus error into kiroctl's exit status and its one-line message. */
#pragma once

#include <stdio.h>
#include <systemd/sd-bus.h>

#include "macro.h"

/* Exit statuses, documented in --help and docs/kiroctl.md. */
enum {
        KIROCTL_EXIT_SUCCESS = 0,
        KIROCTL_EXIT_FAILURE = 1,
        KIROCTL_EXIT_USAGE = 2,
        KIROCTL_EXIT_NOT_USABLE = 3,            /* status: a credential needs a login, or none is usable */
        KIROCTL_EXIT_NO_SUCH_CREDENTIAL = 4,
};

/* What kiroctl was doing when it failed; rows of the table can be specific to one of these. */
typedef enum ErrorContext {
        ERROR_CONTEXT_ANY,
        ERROR_CONTEXT_USAGE,            /* bad command line; detail says what */
        ERROR_CONTEXT_BUS_CONNECT,      /* connecting to the bus */
        ERROR_CONTEXT_MANAGER,          /* a call on /org/kirod/Auth1 */
        ERROR_CONTEXT_CREDENTIAL,       /* a call on a credential object ('id' set) */
        ERROR_CONTEXT_KIRO_CLI_DB,      /* snapshotting kiro-cli's database named with --db ('path') */
        ERROR_CONTEXT_KIRO_CLI_DEFAULT, /* same, at the default location */
        ERROR_CONTEXT_KIRO_IDE,         /* the Kiro IDE token file ('path') */
        ERROR_CONTEXT_KIRO_IDE_REG,     /* its <clientIdHash>.json registration ('path', 'extra' = token file) */
        ERROR_CONTEXT_INPUT_FILE,       /* --refresh-token-file / --api-key-file ('path', 'option') */
        _ERROR_CONTEXT_MAX,
        _ERROR_CONTEXT_INVALID = -EINVAL,
} ErrorContext;

/* Everything the message templates may refer to. */
typedef struct ErrorInfo {
        ErrorContext context;
        int error;                      /* positive errno */
        sd_bus_error bus_error;         /* set when a bus call failed */
        char *detail;                   /* {msg} for local failures: what exactly went wrong */
        char *id;                       /* {id} */
        char *path;                     /* {path} */
        char *extra;                    /* {extra} */
        char *fix;                      /* {fix}: the command that brings the credential back */
        const char *option;             /* {option}, e.g. "--db" */
        const char *action;             /* {action}, e.g. "importing credentials" */
        bool user_bus;                  /* --user: changes the systemctl/journalctl hints */
} ErrorInfo;

#define ERROR_INFO_NULL ((ErrorInfo) { .bus_error = SD_BUS_ERROR_NULL })

void error_info_done(ErrorInfo *e);

/* Records a failure in e (replacing an earlier one) and returns -abs(error). The bus error, if given, is
 * copied; a bus error's own errno (sd_bus_error_get_errno) wins over 'error' when it has one. */
int error_info_set(ErrorInfo *e, ErrorContext context, int error, const sd_bus_error *bus_error);
int error_info_set_detail(ErrorInfo *e, ErrorContext context, int error, const char *format, ...) _printf_(4, 5);

/* Looks up e in the table and writes "kiroctl: <message>\n" to f. Returns the exit status. */
int error_info_report(const ErrorInfo *e, FILE *f);

/* The same without printing: the exit status and the message (without "kiroctl: " and newline). */
int error_info_format(const ErrorInfo *e, char **ret_message);
