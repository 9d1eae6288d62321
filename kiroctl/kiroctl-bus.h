/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's calls to kiro-authd: reading credentials, importing, refreshing, removing, enabling. */
#pragma once

#include <systemd/sd-bus.h>

#include "macro.h"

/* Import and Refresh wait for network round trips in kiro-authd. */
#define KIROCTL_SLOW_CALL_TIMEOUT_USEC (90 * USEC_PER_SEC)

/* The properties of one org.kirod.Auth1.Credential object. Times are CLOCK_REALTIME µs, 0 = none. */
typedef struct Credential {
        char *object_path;
        char *id;
        char *provider;
        char *auth_method;
        char *source;
        char *link;                     /* "" owned; else "following", "source-changed", ... */
        char *link_message;             /* why a link is not following, "" else */
        char *state;
        bool enabled;
        uint64_t access_token_expires_at;
        uint64_t last_refresh_at;
        uint64_t next_refresh_at;
        uint32_t consecutive_failures;
        char *last_error;
        uint64_t cooldown_until;
        char *cooldown_reason;
        char *region;
        char *profile_arn;
        bool unsaved;                   /* a rotated refresh token kiro-authd could not write yet */
        /* The last hour's traffic as kiro-proxyd reported it: requests finished, failed upstream attempts,
         * failovers away from the credential (0 from a kiro-authd without these properties). */
        uint32_t requests_last_hour;
        uint32_t errors_last_hour;
        uint32_t failovers_last_hour;
} Credential;

void credential_done(Credential *c);
Credential *credential_array_free(Credential *a, size_t n);

typedef struct CredentialList {
        Credential *items;
        size_t n;
} CredentialList;

void credential_list_done(CredentialList *l);

/* Reads an a{sv} of Credential properties into c. Unknown properties and ones of an unexpected type are
 * skipped, so that an older or newer kiro-authd still works. */
int credential_read_properties(sd_bus_message *m, Credential *c);

/* GetAll on one object. */
int bus_get_credential(sd_bus *bus, const char *object_path, Credential *ret, sd_bus_error *error);

/* All credentials, sorted by id: one GetManagedObjects on /org/kirod/Auth1, or ListCredentials plus GetAll
 * per object when the daemon has no object manager. */
int bus_list_credentials(sd_bus *bus, CredentialList *ret, sd_bus_error *error);

typedef struct ImportOptions {
        const char *id;                 /* NULL: kiro-authd derives it */
        const char *region;
        const char *proxy;              /* the credential's egress proxy URL, NULL: kiro-authd's Proxy= */
        const char *source_path;        /* informational */
        bool replace;
        int registration_fd;            /* -EBADF: none */
        int link_dir_fd;                /* -EBADF: an owned copy; else the directory to follow link_name in */
        const char *link_name;
} ImportOptions;

#define IMPORT_OPTIONS_NULL ((ImportOptions) { .registration_fd = -EBADF, .link_dir_fd = -EBADF })

/* Manager.Import(format, fd, options, 0). Returns the new object's path. */
int bus_import(sd_bus *bus, const char *format, int fd, const ImportOptions *o, char **ret_path,
               sd_bus_error *error);

/* Credential.Refresh/Remove/SetEnabled on the credential with this id. */
int bus_credential_refresh(sd_bus *bus, const char *id, sd_bus_error *error);
int bus_credential_remove(sd_bus *bus, const char *id, sd_bus_error *error);
int bus_credential_set_enabled(sd_bus *bus, const char *id, bool enabled, sd_bus_error *error);
