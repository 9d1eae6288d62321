/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Linked credentials (kiroctl import --from-kiro-ide --link, --from-kiro-cli --link): the credential follows
 * the Kiro IDE's token file or kiro-cli's SQLite database. kiro-authd watches the directory through an fd
 * kiroctl passed with the import (inotify on /proc/self/fd/N; never a path of the user's), reads the source
 * again when it changes, takes a newer login of the same account, and writes its own rotated tokens back
 * (JSON: atomic replace in that directory; SQLite: one UPDATE transaction through authd-kirocli.h; unknown
 * fields kept either way). Only for the life of the kiro-authd process: the fd is not stored. */
#pragma once

#include "authd-import.h"
#include "authd-manager.h"
#include "hash-util.h"

/* A rotated refresh token could not be written into the linked source (yet). */
#define KIROD_MESSAGE_LINK_WRITE_PENDING "4d2f8a6c0e1b4c3a9f7e5d3b1a9c8e60"

typedef enum LinkState {
        LINK_FOLLOWING,         /* the source and the credential hold the same login */
        LINK_WRITE_PENDING,     /* the source still holds the refresh token we rotated away: write retried */
        LINK_SOURCE_CHANGED,    /* another account (or none: kiro-cli logged out) there, or a symlink: not followed */
        LINK_SOURCE_MISSING,    /* deleted or renamed away: the credential keeps its login */
        LINK_SOURCE_INVALID,    /* unreadable, truncated, not a login: kept, read again on the next change */
        _LINK_STATE_MAX,
} LinkState;

const char *link_state_to_string(LinkState s);

typedef struct CredentialLink {
        int dir_fd;
        char *name;
        ImportFormat format;            /* IMPORT_KIRO_IDE_JSON or IMPORT_KIRO_CLI_SQLITE */
        const char *key;                /* kiro-cli: the auth_kv key of the login (static), NULL until read */
        char *known_refresh_token;      /* what the source holds as far as we know: a write-back expects it */
        int inotify_fd;
        sd_event_source *io;
        sd_event_source *timer;         /* coalesces a burst of changes; retries a busy read or a write-back */
        unsigned write_failures;
        unsigned busy_reads;            /* reads in a row that found the source locked: their retry backs off */
        bool retry_due;                 /* the timer is (also) a retry: read the whole source when it fires */
        bool read_busy;                 /* the last read found the source locked */
        bool have_digest;
        uint8_t digest[SHA256_DIGEST_SIZE];     /* kiro-cli: kirocli_db_login_digest() when last read whole */
        char account[65];               /* account hash of the login (authd-ids.h), "" when it has none */
        LinkState state;
        char *message;
} CredentialLink;

/* Refuses (-EACCES, -EPERM, ...) a source kiro-authd cannot read and write through dir_fd, before anything
 * is stored: kiro-authd is given no rights it was not given with the fd. */
int credential_link_check(int dir_fd, const char *name, ImportFormat format);
/* Links cred to name in the directory dir_fd (duplicated). name must be a plain file name; format says what
 * the source is (IMPORT_KIRO_IDE_JSON or IMPORT_KIRO_CLI_SQLITE). */
int credential_link_attach(Credential *cred, int dir_fd, const char *name, ImportFormat format);
void credential_link_free(Credential *cred);
/* After a successful refresh: writes the rotated tokens into the source. */
void credential_link_write_back(Credential *cred);
/* "" for an owned credential, else the link state ("following", "source-changed", ...). */
const char *credential_link_state(Credential *cred);
