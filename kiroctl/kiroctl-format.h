/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How kiroctl shows credentials: JSON, tables, the status block and the command that fixes a login. */
#pragma once

#include <json-c/json.h>
#include <stdio.h>

#include "kiroctl-bus.h"
#include "time-util.h"

typedef struct OutputFlags {
        bool colors;            /* ANSI colours */
        bool human_times;       /* "in 5min" next to timestamps; otherwise RFC 3339 only */
        bool legend;            /* column headers and the closing summary line */
        unsigned width;         /* terminal columns, 0 = unlimited */
        usec_t now;             /* CLOCK_REALTIME, for "in …" and cooldowns */
} OutputFlags;

/* What the user runs to bring a needs-login credential back: a malloc'ed string in *ret, or NULL when the
 * credential does not need a login. */
int credential_fix(const Credential *c, char **ret);

/* The status JSON object of one credential, with exactly the keys documented in docs/kiroctl.md. */
int credential_status_json(const Credential *c, json_object **ret);
/* The list JSON object: id, provider, auth_method, state, enabled. */
int credential_list_json(const Credential *c, json_object **ret);

/* A JSON array of status (full) or list objects. */
int credentials_json(const Credential *c, size_t n, bool full, json_object **ret);

/* Whether `kiroctl status` reports all is well (exit 0, else 3): no credential needs a login and at least
 * one is active or refreshing (a credential in cooldown or disabled serves no request now). */
bool credentials_usable(const Credential *c, size_t n);

/* `kiroctl list`: one line per credential. */
int credentials_print_list(FILE *f, const Credential *c, size_t n, const OutputFlags *flags);
/* `kiroctl status`: the table, then one line per credential that needs a login. */
int credentials_print_table(FILE *f, const Credential *c, size_t n, const OutputFlags *flags);
/* `kiroctl status ID`: the block about one credential. */
int credential_print_status(FILE *f, const Credential *c, const OutputFlags *flags);
