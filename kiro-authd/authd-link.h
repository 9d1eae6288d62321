/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Linked credentials (kiroctl import --from-kiro-ide --link): the credential follows the Kiro IDE's token
 * file. kiro-authd watches the directory through an fd kiroctl passed with the import (inotify on
 * /proc/self/fd/N; never a path of the user's), reads the file again when it changes, takes a newer login
 * of the same account, and writes its own rotated tokens back (atomic replace in that directory, unknown
 * fields kept). Only for the life of the kiro-authd process: the fd is not stored. */
#pragma once

#include "authd-manager.h"

typedef enum LinkState {
        LINK_FOLLOWING,         /* the source and the credential hold the same login */
        LINK_SOURCE_CHANGED,    /* another account logged in there, or it became a symlink: not followed */
        LINK_SOURCE_MISSING,    /* deleted or renamed away: the credential keeps its login */
        LINK_SOURCE_INVALID,    /* unreadable, truncated, not a login: kept, read again on the next change */
        _LINK_STATE_MAX,
} LinkState;

const char *link_state_to_string(LinkState s);

typedef struct CredentialLink {
        int dir_fd;
        char *name;
        int inotify_fd;
        sd_event_source *io;
        char account[65];               /* account hash of the login (authd-ids.h), "" when it has none */
        LinkState state;
        char *message;
} CredentialLink;

/* Links cred to name in the directory dir_fd (duplicated). name must be a plain file name. */
int credential_link_attach(Credential *cred, int dir_fd, const char *name);
void credential_link_free(Credential *cred);
/* After a successful refresh: writes the rotated tokens into the source. */
void credential_link_write_back(Credential *cred);
/* "" for an owned credential, else the link state ("following", "source-changed", ...). */
const char *credential_link_state(Credential *cred);
