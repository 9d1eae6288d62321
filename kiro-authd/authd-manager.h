/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The manager: the credentials in memory, their refresh timers, single-flight refreshes and selection. */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <sys/types.h>

#include "authd-config.h"
#include "authd-counts.h"
#include "authd-credential.h"
#include "authd-refresh.h"
#include "authd-store.h"
#include "curl-glue.h"

typedef struct Manager Manager;
typedef struct Credential Credential;

/* What the bus side (authd-bus.c) hears from the manager. The manager calls these and never the bus code
 * by name, so the bus depends on the manager and not the other way round. Set by bus_register(). */
typedef struct ManagerHooks {
        void (*credential_added)(Credential *cred);
        void (*credential_removed)(Credential *cred);
        void (*credential_changed)(Credential *cred);
        /* Answers a parked GetToken call with the credential's token. */
        int (*reply_token)(Credential *cred, sd_bus_message *call);
        /* Frees the bus side's state (Manager.bus_state). */
        void (*done)(Manager *m);
} ManagerHooks;

/* The bus side's own state (authd-bus.c): which callers it knows. */
typedef struct BusState BusState;

/* A credential at run time: the stored record plus timer, in-flight refresh and waiting callers. */
struct Credential {
        Manager *manager;
        CredentialRecord *record;
        char *object_path;

        sd_event_source *timer;         /* CLOCK_REALTIME: the refresh before expiry */
        sd_event_source *retry_timer;   /* CLOCK_BOOTTIME: the retry after a failure */
        usec_t next_refresh_at;         /* CLOCK_REALTIME µs, 0 none */
        usec_t retry_at;                /* CLOCK_BOOTTIME µs, set while backing off after a transient failure */

        CURL *curl;
        struct curl_slist *headers;
        RefreshRequest request;
        char *response;                 /* secret */
        size_t response_size;
        bool refreshing;
        bool queued;                    /* waiting for a refresh slot (MaxParallelRefresh=) */
        bool save_pending;              /* rotated tokens that could not be written yet */
        bool token_rejected;            /* upstream refused the access token: hand it out no more */

        sd_bus_message **token_waiters; /* GetToken calls parked on this refresh */
        size_t n_token_waiters;
        sd_bus_message **refresh_waiters; /* Refresh() calls parked on this refresh */
        size_t n_refresh_waiters;

        struct CredentialUsage *usage;  /* usage limits (authd-usage-manager.h), NULL until asked */
        struct CredentialLink *link;    /* the followed source (authd-link.h), NULL when owned */
        UsageCounts counts;             /* the last hour as kiro-proxyd reports it (ReportUsageCounts) */
        uint64_t refreshes[_REFRESH_RESULT_MAX]; /* refresh attempts by result since kiro-authd started */
};

struct Manager {
        sd_event *event;
        sd_bus *bus;
        const ManagerHooks *hooks;      /* NULL until bus_register() */
        BusState *bus_state;
        CurlGlue *glue;
        Store store;

        Credential **credentials;       /* sorted by id */
        size_t n_credentials;
        char *sticky_id;
        size_t rr_next;
        unsigned n_refreshing;

        bool user_mode;
        char *state_dir;

        AuthdConfig config;

        struct Login *logins;           /* device logins under way (authd-login.c) */

        uid_t proxy_uid;                /* UID_INVALID when the user does not exist */
        gid_t admin_gid;
};

/* MESSAGE_IDs of kiro-authd's storage events (the others are in common/log.h). */
#define KIROD_MESSAGE_CREDENTIAL_UNSAVED   "b3e1c7a9d2f04e6b8a5c1d9e7f3b2a64"
#define KIROD_MESSAGE_CREDENTIAL_LOST      "e6a2d8f4c1b94a7e9d3f5b2c8a6e1d07"

#define UID_INVALID ((uid_t) -1)
#define GID_INVALID ((gid_t) -1)
/* An access token is handed out only with at least this much life left. */
#define TOKEN_MIN_VALIDITY_USEC (60 * USEC_PER_SEC)
/* A forced refresh after an upstream 403 is skipped when the token is this fresh. */
#define UNAUTHORIZED_REFRESH_GRACE_USEC (5 * USEC_PER_SEC)
/* The first throttling cooldown without Retry-After; doubled on each repeat without a success between. */
#define THROTTLE_COOLDOWN_USEC (5 * USEC_PER_SEC)

int manager_new(sd_event *e, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

int manager_resolve_users(Manager *m);
int manager_load(Manager *m);
int manager_import_system_credentials(Manager *m);

Credential *manager_find(Manager *m, const char *id);
/* Adds an imported credential (takes ownership), saving it first. */
int manager_add(Manager *m, CredentialRecord *c, Credential **ret);
int manager_remove(Manager *m, Credential *cred);
/* Replaces the login material of cred with that of login (takes ownership), keeping its identity, and
 * stores it. A refresh of the old login in flight is cancelled: its answer never reaches the new login. */
int manager_replace_login(Manager *m, Credential *cred, CredentialRecord *login);
/* At stop: writes the rotated tokens that could not be stored yet. A credential still unwritable is
 * logged as lost (KIROD_MESSAGE_CREDENTIAL_LOST); returns the first error. */
int manager_flush_unsaved(Manager *m);

CredentialState credential_state(Credential *cred);
void credential_schedule(Credential *cred);
/* Starts a refresh unless one runs (single flight). force: even while backing off. */
int credential_start_refresh(Credential *cred, bool force);
int credential_save(Credential *cred);

void credential_emit_changed(Credential *cred);
bool credential_token_usable(Credential *cred, usec_t n);

/* Chooses a credential for GetToken by policy; NULL and an error describing why when none is usable. */
Credential *manager_select(Manager *m, Provider p, sd_bus_error *error);
