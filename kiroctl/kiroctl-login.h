/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `kiroctl login`: starts a device login in kiro-authd, shows the URL and code, waits for LoginFinished. */
#pragma once

#include <stdio.h>
#include <systemd/sd-bus.h>

#include "kiroctl-error.h"
#include "kiroctl-format.h"

/* Exit status of a login cancelled with Ctrl-C (128 + SIGINT, as shells do). */
#define KIROCTL_EXIT_CANCELLED 130

typedef struct LoginOptions {
        const char *what;               /* builder-id, idc, google, github, kimi */
        const char *start_url;
        const char *region;
        const char *id;
        bool replace;
        bool no_wait;
        bool json;
        OutputFlags flags;
} LoginOptions;

/* The provider and method of StartLogin for a `kiroctl login` argument; -EINVAL for unknown ones. */
int login_names(const char *what, const char **ret_provider, const char **ret_method);

/* Draws text as a QR code with Unicode half blocks (two modules per character cell), with a quiet zone.
 * -EOPNOTSUPP when kiroctl was built without libqrencode. */
int login_print_qr(FILE *f, const char *text);

/* Runs the whole login. Returns 0, -ECANCELED when the user pressed Ctrl-C (and the login was cancelled in
 * kiro-authd), or a negative errno with e filled. */
int login_run(sd_bus *bus, const LoginOptions *o, ErrorInfo *e);
