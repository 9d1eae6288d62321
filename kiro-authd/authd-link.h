/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Linked credentials (kiroctl import --from-kiro-ide --link, --from-kiro-cli --link): the credential follows
 * the Kiro IDE's token file or kiro-cli's SQLite database. kiro-authd watches the directory through an fd
 * kiroctl passed with the import (inotify on /proc/self/fd/N; never a path of the user's), reads the source
 * again when it changes, takes a newer login of the same account, and writes its own rotated tokens back
 * (JSON: atomic replace in that directory; SQLite: one UPDATE transaction through authd-kirocli.h; unknown
 * fields kept either way).
 *
 * Across restarts: the link itself (format, file name, the path kiroctl showed) is in the credential's
 * record (authd-credential.h), and the directory fd is handed to the service manager's fd store
 * (FDSTORE=1, FDNAME=link-<id>); an explicit unlink (remove, an owned --replace, a re-link) takes it out
 * again (FDSTOREREMOVE=1), a shutdown never does. At start-up credential_links_restore() takes the stored
 * fds (sd_listen_fds_with_names) and attaches each linked record to its fd; the source is read again and
 * the normal states decide. systemd keeps the store across `systemctl restart` and Restart= after a
 * crash, not across a stop and start or a reboot (FileDescriptorStorePreserve= is systemd 254+): a linked
 * record whose fd did not come back is `detached` (LINK_DETACHED): it keeps working on its own login and
 * keeps refreshing, loudly, until it is linked again with `kiroctl import ... --link --replace`. */
#pragma once

#include "authd-import.h"
#include "authd-manager.h"
#include "hash-util.h"

/* A rotated refresh token could not be written into the linked source (yet). */
#define KIROD_MESSAGE_LINK_WRITE_PENDING "4d2f8a6c0e1b4c3a9f7e5d3b1a9c8e60"
/* A linked credential has no directory fd (after a stop and start, a reboot, not under systemd), or was
 * refreshed while so: it must be linked again. */
#define KIROD_MESSAGE_LINK_DETACHED "e89cd0a166bf4276be96bfadfb5c55d5"
/* The name prefix of our fds in the service manager's fd store: "link-<credential id>". */
#define LINK_FDNAME_PREFIX "link-"

typedef enum LinkState {
        LINK_FOLLOWING,         /* the source and the credential hold the same login */
        LINK_WRITE_PENDING,     /* the source still holds the refresh token we rotated away: write retried */
        LINK_SOURCE_CHANGED,    /* another account (or none: kiro-cli logged out) there, or a symlink: not followed */
        LINK_SOURCE_MISSING,    /* deleted or renamed away: the credential keeps its login */
        LINK_SOURCE_INVALID,    /* unreadable, truncated, not a login: kept, read again on the next change */
        LINK_DETACHED,          /* the stored link has no directory fd (it did not come back from the fd
                                 * store): nothing is read or written there until it is linked again */
        _LINK_STATE_MAX,
} LinkState;

const char *link_state_to_string(LinkState s);

typedef struct CredentialLink {
        int dir_fd;                     /* -EBADF when detached */
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
/* Links cred to name in the directory dir_fd (duplicated), from an Import: name must be a plain file name;
 * format says what the source is (IMPORT_KIRO_IDE_JSON or IMPORT_KIRO_CLI_SQLITE); path is what kiroctl
 * showed (display only, may be NULL). Stores the link in the record and the fd in the fd store (a previous
 * link of cred is taken out of it first). */
int credential_link_attach(Credential *cred, int dir_fd, const char *name, ImportFormat format, const char *path);
/* Takes the fds the service manager passed (LISTEN_FDS, names "link-<id>"), attaches each linked record to
 * its own, closes and removes from the store the ones no linked record uses, and marks each linked record
 * without one `detached`. Called once at start-up, after the credentials are loaded. */
void credential_links_restore(Manager *m);
/* An explicit unlink (Remove, an owned import replacing a linked credential): the fd leaves the fd store,
 * the link leaves the record (stored by the caller's next save; 0 or the error of that save when save). */
int credential_link_unlink(Credential *cred, bool save);
/* Frees the link in memory only (shutdown): the fd store and the record keep it. */
void credential_link_free(Credential *cred);
/* Whether refresh_token is what cred's source held when it was last seen although cred has rotated it
 * since (a re-link then writes cred's own login there rather than taking the stale one). */
bool credential_link_source_is_stale(Credential *cred, const char *refresh_token);
/* After a successful refresh: writes the rotated tokens into the source (a detached link: says loudly that
 * the source still holds the replaced refresh token). */
void credential_link_write_back(Credential *cred);
/* "" for an owned credential, else the link state ("following", "source-changed", ...). */
const char *credential_link_state(Credential *cred);
