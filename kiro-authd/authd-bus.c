/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The org.kirod.Auth1 bus API: Manager and Credential objects, caller checks, LogControl1. */
#include <assert.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "authd-bus.h"
#include "authd-ids.h"
#include "authd-link.h"
#include "authd-usage-manager.h"
#include "authd-import.h"
#include "authd-kimi.h"
#include "authd-login.h"
#include "bus-names.h"
#include "curl-glue.h"
#include "log.h"
#include "url-util.h"

typedef enum Access {
        ACCESS_TOKEN,   /* root and the proxy user */
        ACCESS_ADMIN,   /* root and the admin group */
        ACCESS_ROOT,
} Access;

/* Who is calling: the UID and the groups of the sender's connection, as the bus reports them
 * (GetConnectionCredentials: UnixUserID is the SO_PEERCRED uid, UnixGroupIDs the SO_PEERGROUPS list, both
 * taken when the caller connected). Nothing is read from /proc and no NSS lookup is made: the bus answers
 * asynchronously, and the first call of a new sender is parked until it does, then dispatched again. The
 * answer is cached per unique name, which the bus never reuses. docs/ARCHITECTURE.md explains the choice. */
typedef struct BusCaller {
        char *sender;
        uid_t uid;
        gid_t *gids;
        size_t n_gids;
} BusCaller;

typedef struct BusCallerQuery {
        Manager *manager;
        char *sender;
        sd_bus_slot *slot;
        sd_bus_message **parked;
        size_t n_parked;
} BusCallerQuery;

#define BUS_CALLER_CACHE_SIZE 64

struct BusState {
        BusCaller callers[BUS_CALLER_CACHE_SIZE];       /* overwritten round-robin */
        size_t callers_next;
        BusCallerQuery **queries;                       /* one GetConnectionCredentials per sender */
        size_t n_queries;
};

static void bus_caller_done(BusCaller *c) {
        free(c->sender);
        free(c->gids);
        *c = (BusCaller) {};
}

static BusCallerQuery *bus_caller_query_free(BusCallerQuery *q) {
        if (!q)
                return NULL;
        sd_bus_slot_unref(q->slot);
        for (size_t i = 0; i < q->n_parked; i++)
                sd_bus_message_unref(q->parked[i]);
        free(q->parked);
        free(q->sender);
        free(q);
        return NULL;
}

static void bus_state_free(Manager *m) {
        BusState *b = m->bus_state;
        if (!b)
                return;
        for (size_t i = 0; i < BUS_CALLER_CACHE_SIZE; i++)
                bus_caller_done(b->callers + i);
        for (size_t i = 0; i < b->n_queries; i++)
                bus_caller_query_free(b->queries[i]);
        free(b->queries);
        m->bus_state = (free(b), NULL);
}

static const BusCaller *bus_caller_find(Manager *m, const char *sender) {
        for (size_t i = 0; sender && i < BUS_CALLER_CACHE_SIZE; i++)
                if (streq_ptr(m->bus_state->callers[i].sender, sender))
                        return m->bus_state->callers + i;
        return NULL;
}

/* Parses a GetConnectionCredentials reply. Groups are optional in the spec: without them the caller
 * counts as a member of no group. */
static int bus_caller_parse(sd_bus_message *reply, BusCaller *ret) {
        _cleanup_free_ gid_t *gids = NULL;
        size_t n_gids = 0;
        bool have_uid = false;
        uint32_t uid = 0;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "UnixUserID")) {
                        r = sd_bus_message_read(reply, "v", "u", &uid);
                        have_uid = r >= 0;
                } else if (streq(key, "UnixGroupIDs")) {
                        const void *a;
                        size_t size;
                        r = sd_bus_message_enter_container(reply, 'v', "au");
                        if (r >= 0)
                                r = sd_bus_message_read_array(reply, 'u', &a, &size);
                        if (r >= 0) {
                                free(gids);
                                n_gids = size / sizeof(uint32_t);
                                gids = n_gids > 0 ? malloc(n_gids * sizeof(gid_t)) : NULL;
                                if (n_gids > 0 && !gids)
                                        return -ENOMEM;
                                for (size_t i = 0; i < n_gids; i++)
                                        gids[i] = ((const uint32_t *) a)[i];
                                r = sd_bus_message_exit_container(reply);
                        }
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (!have_uid)
                return -EPERM;
        *ret = (BusCaller) { .uid = uid, .gids = TAKE_PTR(gids), .n_gids = n_gids };
        return 0;
}

static int bus_caller_store(Manager *m, const char *sender, BusCaller *c) {
        BusState *b = m->bus_state;
        BusCaller *slot = b->callers + b->callers_next;
        char *s = strdup(sender);
        if (!s) {
                bus_caller_done(c);
                return -ENOMEM;
        }
        bus_caller_done(slot);
        *slot = *c;
        slot->sender = s;
        *c = (BusCaller) {};
        b->callers_next = (b->callers_next + 1) % BUS_CALLER_CACHE_SIZE;
        return 0;
}

static void bus_caller_query_remove(Manager *m, BusCallerQuery *q) {
        BusState *b = m->bus_state;
        for (size_t i = 0; i < b->n_queries; i++)
                if (b->queries[i] == q) {
                        b->queries[i] = b->queries[--b->n_queries];
                        break;
                }
        bus_caller_query_free(q);
}

static int on_caller_credentials(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BusCallerQuery *q = userdata;
        Manager *m = q->manager;
        BusCaller c = {};
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                r = -sd_bus_error_get_errno(sd_bus_message_get_error(reply)) ?: -EPERM;
        else
                r = bus_caller_parse(reply, &c);
        if (r >= 0)
                r = bus_caller_store(m, q->sender, &c);
        for (size_t i = 0; i < q->n_parked; i++) {
                sd_bus_message *msg = q->parked[i];
                if (r >= 0) {
                        /* Dispatched again from the start; this time the caller is known. */
                        (void) sd_bus_message_rewind(msg, true);
                        if (sd_bus_enqueue_for_read(m->bus, msg) >= 0)
                                continue;
                }
                (void) sd_bus_reply_method_errorf(msg, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's user.");
        }
        bus_caller_query_remove(m, q);
        return 0;
}

/* Asks the bus for the sender's credentials and parks msg until they arrive. One query per sender. */
static int bus_caller_query(Manager *m, sd_bus_message *msg, const char *sender) {
        BusState *b = m->bus_state;
        BusCallerQuery *q = NULL;
        int r;

        for (size_t i = 0; i < b->n_queries; i++)
                if (streq(b->queries[i]->sender, sender))
                        q = b->queries[i];
        if (!q) {
                BusCallerQuery **l = realloc(b->queries, sizeof(BusCallerQuery *) * (b->n_queries + 1));
                if (!l)
                        return -ENOMEM;
                b->queries = l;
                q = calloc(1, sizeof *q);
                if (!q)
                        return -ENOMEM;
                q->manager = m;
                q->sender = strdup(sender);
                if (!q->sender) {
                        bus_caller_query_free(q);
                        return -ENOMEM;
                }
                r = sd_bus_call_method_async(m->bus, &q->slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "GetConnectionCredentials",
                                             on_caller_credentials, q, "s", sender);
                if (r < 0) {
                        bus_caller_query_free(q);
                        return r;
                }
                b->queries[b->n_queries++] = q;
        }
        sd_bus_message **p = realloc(q->parked, sizeof(sd_bus_message *) * (q->n_parked + 1));
        if (!p)
                return -ENOMEM;
        q->parked = p;
        q->parked[q->n_parked++] = sd_bus_message_ref(msg);
        return 0;
}

static bool caller_in_group(const BusCaller *c, gid_t gid) {
        if (gid == GID_INVALID)
                return false;
        for (size_t i = 0; i < c->n_gids; i++)
                if (c->gids[i] == gid)
                        return true;
        return false;
}

/* 0: allowed; 1: parked until the bus says who the caller is (the handler returns 1, the call is
 * dispatched again later); negative: refused, with error set. */
static int check_access(Manager *m, sd_bus_message *msg, Access a, sd_bus_error *error) {
        const char *sender = sd_bus_message_get_sender(msg);
        const BusCaller *c;
        int r;

        assert(m);
        assert(msg);

        c = bus_caller_find(m, sender);
        if (!c) {
                if (!sender || sender[0] != ':')
                        return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's user.");
                r = bus_caller_query(m, msg, sender);
                if (r < 0)
                        return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's user.");
                return 1;
        }
        if (c->uid == 0 || (m->user_mode && c->uid == getuid()))
                return 0;
        switch (a) {
        case ACCESS_TOKEN:
                if (m->proxy_uid != UID_INVALID && c->uid == m->proxy_uid)
                        return 0;
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Access denied: tokens are only for root and the proxy user '%s'.",
                                         strna(m->config.proxy_user));
        case ACCESS_ADMIN:
                if (caller_in_group(c, m->admin_gid))
                        return 0;
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Access denied: changing credentials needs root or membership in group '%s' "
                                         "(the caller's process must have it: log in again after being added).",
                                         strna(m->config.admin_group));
        default:
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied: root only.");
        }
}

/* For a property setter, which cannot be parked: the caller's UID with a synchronous query to the bus
 * (no NSS involved). Root only. */
static int check_root_sync(Manager *m, sd_bus_message *msg, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *sender = msg ? sd_bus_message_get_sender(msg) : NULL;
        const BusCaller *c = bus_caller_find(m, sender);
        BusCaller q = {};
        int r;

        if (!c) {
                if (!sender || sender[0] != ':')
                        return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's user.");
                r = sd_bus_call_method(m->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "GetConnectionCredentials", NULL, &reply, "s", sender);
                if (r >= 0)
                        r = bus_caller_parse(reply, &q);
                if (r < 0)
                        return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot determine the caller's user.");
                c = &q;
        }
        r = c->uid == 0 ? 0 : sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied: root only.");
        if (c == &q)
                bus_caller_done(&q);
        return r;
}

static int check_flags(uint64_t flags, sd_bus_error *error) {
        if (flags != 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags 0x%llx.",
                                         (unsigned long long) flags);
        return 0;
}

/* Reads a trailing "t flags" argument and refuses unknown bits. */
static int read_flags(sd_bus_message *msg, sd_bus_error *error) {
        uint64_t flags;
        int r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        return check_flags(flags, error);
}

static Credential *credential_from_path(Manager *m, const char *path) {
        _cleanup_free_ char *id = NULL;
        if (kirod_credential_id_from_path(path, &id) < 0)
                return NULL;
        return manager_find(m, id);
}

/* ---- Manager ---------------------------------------------------------------------------------------- */

/* What kiro-proxyd needs to call Kimi as kimi-cli does (B §7): the API base, the credential's device id, the
 * User-Agent and the X-Msh-* headers ("Name: value"). None of it is secret. */
static int append_kimi_extra(Manager *m, const CredentialRecord *c, sd_bus_message *reply) {
        _cleanup_strv_free_ char **headers = NULL;
        char device_id[33];
        const char *d = kimi_device_id(c, device_id);
        int r;

        r = kimi_headers(d, &headers);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}", "api_base", "s", m->config.kimi_api_base);
        if (r >= 0 && d)
                r = sd_bus_message_append(reply, "{sv}", "device_id", "s", d);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}", "user_agent", "s", KIMI_USER_AGENT);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", "headers");
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(reply, headers);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int bus_reply_token(Credential *cred, sd_bus_message *call) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        CredentialRecord *c = cred->record;
        char region[64];
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        /* The reply carries a secret: keep it out of bus dumps and wipe it on free. */
        r = sd_bus_message_sensitive(reply);
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "sst", c->id, c->access_token,
                                  c->expires_at == USEC_INFINITY ? UINT64_MAX : c->expires_at);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        r = sd_bus_message_append(reply, "{sv}", "region", "s",
                                  credential_record_api_region(c, region, sizeof region));
        if (r >= 0 && c->profile_arn)
                r = sd_bus_message_append(reply, "{sv}", "profile_arn", "s", c->profile_arn);
        if (r >= 0)
                r = sd_bus_message_append(reply, "{sv}", "auth_method", "s", auth_method_to_string(c->method));
        if (r >= 0 && c->machine_id)
                r = sd_bus_message_append(reply, "{sv}", "machine_id", "s", c->machine_id);
        if (r >= 0 && c->provider == PROVIDER_KIMI)
                r = append_kimi_extra(cred->manager, c, reply);
        /* The credential's egress proxy, for kiro-proxyd's calls with this token. */
        if (r >= 0 && c->proxy)
                r = sd_bus_message_append(reply, "{sv}", "proxy", "s", c->proxy);
        if (r < 0)
                return r;
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int park(sd_bus_message ***list, size_t *n, sd_bus_message *msg) {
        sd_bus_message **l = realloc(*list, sizeof(sd_bus_message *) * (*n + 1));
        if (!l)
                return -ENOMEM;
        *list = l;
        l[(*n)++] = sd_bus_message_ref(msg);
        return 0;
}

static int method_get_token(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *provider_s, *id;
        uint64_t flags;
        Credential *cred;
        int r;

        r = check_access(m, msg, ACCESS_TOKEN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "sst", &provider_s, &id, &flags);
        if (r < 0)
                return r;
        r = check_flags(flags, error);
        if (r < 0)
                return r;
        Provider p = provider_from_string(isempty(provider_s) ? "kiro" : provider_s);
        if (p < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown provider '%s'.", provider_s);

        if (!isempty(id)) {
                cred = manager_find(m, id);
                if (!cred)
                        return sd_bus_error_setf(error, KIROD_ERROR_NO_SUCH_CREDENTIAL, "No credential '%s'.", id);
                if (cred->record->provider != p)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Credential '%s' belongs to provider '%s'.", id,
                                                 provider_to_string(cred->record->provider));
                if (!cred->record->enabled)
                        return sd_bus_error_setf(error, KIROD_ERROR_CREDENTIAL_DISABLED,
                                                 "Credential '%s' is disabled; enable it with 'kiroctl enable %s'.", id, id);
                if (cred->record->health == HEALTH_NEEDS_LOGIN)
                        return sd_bus_error_setf(error, KIROD_ERROR_NEEDS_LOGIN,
                                                 "Credential '%s' needs a new login; see 'kiroctl status %s'.", id, id);
        } else {
                cred = manager_select(m, p, error);
                if (!cred)
                        return -ENOKEY;
        }

        /* Rotated tokens that are not on disk yet are not handed out: try to write them first. */
        if (cred->save_pending && credential_save(cred) < 0)
                return sd_bus_error_setf(error, KIROD_ERROR_STORAGE_FAILED,
                                         "Credential '%s' was refreshed but cannot be stored; check the state directory.",
                                         cred->record->id);

        usec_t n = now(CLOCK_REALTIME);
        if (credential_token_usable(cred, n)) {
                /* Still valid: answer now, and refresh in the background when inside the margin. */
                if (cred->record->expires_at != USEC_INFINITY && cred->record->expires_at < n + m->config.refresh_margin)
                        (void) credential_start_refresh(cred, false);
                r = bus_reply_token(cred, msg);
                return r < 0 ? r : 1;
        }

        /* Expired or about to: wait for the (single) refresh. */
        usec_t b = now(CLOCK_BOOTTIME);
        if (!cred->refreshing && !cred->queued && cred->retry_at > b)
                return sd_bus_error_setf(error, KIROD_ERROR_REFRESH_FAILED,
                                         "The access token of '%s' expired and refreshing failed (%s); retrying in %llus.",
                                         cred->record->id, strna(cred->record->last_error),
                                         (unsigned long long) ((cred->retry_at - b) / USEC_PER_SEC));
        r = credential_start_refresh(cred, false);
        if (r < 0 && r != -ENOKEY)
                return sd_bus_error_setf(error, KIROD_ERROR_REFRESH_FAILED, "Cannot refresh credential '%s'.",
                                         cred->record->id);
        if (cred->record->health == HEALTH_NEEDS_LOGIN)
                return sd_bus_error_setf(error, KIROD_ERROR_NEEDS_LOGIN, "Credential '%s' needs a new login.",
                                         cred->record->id);
        r = park(&cred->token_waiters, &cred->n_token_waiters, msg);
        return r < 0 ? r : 1;
}

static int method_report_upstream_error(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *id, *kind;
        uint64_t retry_after, flags;
        Credential *cred;
        int r;

        r = check_access(m, msg, ACCESS_TOKEN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "sstt", &id, &kind, &retry_after, &flags);
        if (r < 0)
                return r;
        r = check_flags(flags, error);
        if (r < 0)
                return r;
        cred = manager_find(m, id);
        if (!cred)
                return sd_bus_error_setf(error, KIROD_ERROR_NO_SUCH_CREDENTIAL, "No credential '%s'.", id);

        usec_t n = now(CLOCK_REALTIME);
        CredentialRecord *c = cred->record;
        if (streq(kind, "unauthorized")) {
                /* 403 with a bad token: one forced refresh, shared by everyone who saw it. */
                if (c->method != AUTH_METHOD_API_KEY && c->last_refresh_at + UNAUTHORIZED_REFRESH_GRACE_USEC < n) {
                        /* Callers that ask for a token now wait for the new one. */
                        cred->token_rejected = true;
                        (void) credential_start_refresh(cred, true);
                }
        } else if (streq(kind, "throttled") || streq(kind, "quota-exhausted")) {
                if (streq(kind, "throttled")) {
                        /* Retry-After (or 5 s) for the first one, doubled for each repeat without a success
                         * between, at most an hour. A single throttled account still serves: kiro-proxyd sends
                         * a request to the credential whose cooldown ends first when all are cooling down. */
                        c->throttle_count = MIN(c->throttle_count + 1, 12u);
                        usec_t base = retry_after ? MIN(retry_after, 3600 * USEC_PER_SEC) : THROTTLE_COOLDOWN_USEC;
                        c->cooldown_until = n + MIN(base << (c->throttle_count - 1), 3600 * USEC_PER_SEC);
                } else
                        /* Until the reset date of the last usage limits when known (authd-usage-manager.h). */
                        c->cooldown_until = credential_quota_reset_at(cred) ?: n + (retry_after ? retry_after : 3600 * USEC_PER_SEC);
                (void) free_and_strdup(&c->cooldown_reason, kind);
                log_credential_event(LOG_NOTICE, KIROD_MESSAGE_CREDENTIAL_COOLDOWN, c->id, kind,
                                     "Credential '%s' cools down for %llus: the proxy reported %s.", c->id,
                                     (unsigned long long) ((c->cooldown_until > n ? c->cooldown_until - n : 0) / USEC_PER_SEC),
                                     kind);
        } else if (streq(kind, "suspended")) {
                c->enabled = false;
                (void) free_and_strdup(&c->last_error, "suspended by the upstream service");
                log_credential_event(LOG_WARNING, KIROD_MESSAGE_CREDENTIAL_SUSPENDED, c->id, kind,
                                     "Credential '%s' was reported suspended upstream and is now disabled.", c->id);
        } else if (streq(kind, "server-error"))
                (void) free_and_strdup(&c->last_error, "upstream server error");
        else if (streq(kind, "ok")) {
                /* A success ends a throttling cooldown and its escalation; a spent quota stays spent. */
                if (c->throttle_count == 0 && !streq_ptr(c->cooldown_reason, "throttled"))
                        return sd_bus_reply_method_return(msg, NULL);
                c->throttle_count = 0;
                if (streq_ptr(c->cooldown_reason, "throttled")) {
                        c->cooldown_until = 0;
                        free(c->cooldown_reason);
                        c->cooldown_reason = NULL;
                }
        } else
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown upstream error kind '%s'.", kind);

        if (!streq(kind, "unauthorized")) {
                (void) credential_save(cred);
                credential_schedule(cred);
                credential_emit_changed(cred);
        }
        return sd_bus_reply_method_return(msg, NULL);
}

/* kiro-proxyd's batched counts since its last report: one call every few seconds at most, not one per
 * request. Ids of credentials removed meanwhile are skipped. */
static int method_report_usage_counts(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        usec_t n = now(CLOCK_MONOTONIC);
        uint64_t flags;
        int r;

        r = check_access(m, msg, ACCESS_TOKEN, error);
        if (r != 0)
                return r;
        /* Unknown flags refuse the whole report before any of it counts. */
        r = sd_bus_message_skip(msg, "a(sttt)");
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        r = check_flags(flags, error);
        if (r < 0)
                return r;
        r = sd_bus_message_rewind(msg, true);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(msg, 'a', "(sttt)");
        if (r < 0)
                return r;
        for (;;) {
                const char *id;
                uint64_t requests, errors, failovers;

                r = sd_bus_message_read(msg, "(sttt)", &id, &requests, &errors, &failovers);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                Credential *cred = manager_find(m, id);
                if (!cred || (requests | errors | failovers) == 0)
                        continue;
                usage_counts_add(&cred->counts, n, requests, errors, failovers);
                (void) sd_bus_emit_properties_changed(m->bus, cred->object_path, KIROD_CREDENTIAL_INTERFACE,
                                                      "RequestsLastHour", "ErrorsLastHour", "FailoversLastHour", NULL);
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int read_import_options(sd_bus_message *msg, const char **id, const char **region, int *replace,
                               int *registration_fd, const char **source_path, int *link_dir_fd,
                               const char **link_name, const char **proxy, sd_bus_error *error) {
        int r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key;
                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "id"))
                        r = sd_bus_message_read(msg, "v", "s", id);
                else if (streq(key, "region"))
                        r = sd_bus_message_read(msg, "v", "s", region);
                else if (streq(key, "replace"))
                        r = sd_bus_message_read(msg, "v", "b", replace);
                else if (streq(key, "registration"))
                        r = sd_bus_message_read(msg, "v", "h", registration_fd);
                else if (streq(key, "source_path"))
                        r = sd_bus_message_read(msg, "v", "s", source_path);
                else if (streq(key, "link_dir"))
                        r = sd_bus_message_read(msg, "v", "h", link_dir_fd);
                else if (streq(key, "link_name"))
                        r = sd_bus_message_read(msg, "v", "s", link_name);
                else if (streq(key, "proxy"))
                        r = sd_bus_message_read(msg, "v", "s", proxy);
                else
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown import option '%s'.", key);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Import option '%s' has the wrong type.",
                                                 key);
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(msg);
}

static int check_source_fd(int fd, sd_bus_error *error) {
        struct stat st;
        /* Reading a pipe or socket could block the event loop; kiroctl sends files and memfds. */
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return sd_bus_error_set(error, KIROD_ERROR_INVALID_SOURCE,
                                        "The source must be a regular file or a memfd.");
        return 0;
}

static bool printable(const char *s, size_t max) {
        size_t n = 0;
        for (; *s; s++, n++)
                if ((unsigned char) *s < ' ' || *s == 0x7f || n >= max)
                        return false;
        return true;
}

/* The system service's user reaches no home unless the user grants it: say exactly how. */
static int link_access_error(sd_bus_error *error, int r, const char *name, const char *source_path) {
        _cleanup_free_ char *dir = NULL, *user = NULL;
        struct passwd pw, *found = NULL;
        char buf[1024];

        if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found)
                user = strdup(found->pw_name);
        if (!user && asprintf(&user, "%u", (unsigned) geteuid()) < 0)
                return -ENOMEM;
        /* The directory for the commands, when the path can be quoted for a shell as it is. */
        const char *slash = source_path && source_path[0] == '/' && !strchr(source_path, '\'') ? strrchr(source_path, '/')
                                                                                           : NULL;
        if (slash && slash > source_path)
                dir = strndup(source_path, (size_t) (slash - source_path));
        return sd_bus_error_setf(
                error, KIROD_ERROR_SOURCE_NOT_ACCESSIBLE,
                "kiro-authd (user '%s') cannot read and write '%s' in the directory it was given (%s). It uses no rights "
                "but its own user's, so it never reaches a home directory it was not given. Either run kiro-authd as "
                "your user service ('systemctl --user enable --now kiro-authd.service', then 'kiroctl --user import "
                "... --link'), or grant user '%s' access to that directory and file only: "
                "setfacl -m u:%s:rwx '%s' && setfacl -m u:%s:rw '%s/%s' && setfacl -d -m u:%s:rw,u:\"$(id -un)\":rw '%s'",
                user, name, strerror(-r), user, user, dir ?: "DIR", user, dir ?: "DIR", name, user, dir ?: "DIR");
}

static int method_import(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *format_s, *id = NULL, *region = NULL, *source_path = NULL, *link_name = NULL, *proxy = NULL;
        int fd, registration_fd = -EBADF, replace = false, link_dir_fd = -EBADF;
        _cleanup_free_ char *message = NULL, *derived_id = NULL;
        CredentialRecord *c = NULL;
        int r;

        r = check_access(m, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "sh", &format_s, &fd);
        if (r < 0)
                return r;
        r = read_import_options(msg, &id, &region, &replace, &registration_fd, &source_path, &link_dir_fd,
                                &link_name, &proxy, error);
        if (r < 0)
                return r;
        r = read_flags(msg, error);
        if (r < 0)
                return r;

        ImportFormat f = import_format_from_string(format_s);
        if (f < 0)
                return sd_bus_error_setf(error, KIROD_ERROR_UNSUPPORTED_FORMAT,
                                         "Unknown import format '%s' (kiro-cli-sqlite, kiro-ide-json, refresh-token, api-key).",
                                         format_s);
        if ((link_dir_fd >= 0) != !!link_name ||
            (link_name && (!(f == IMPORT_KIRO_IDE_JSON || f == IMPORT_KIRO_CLI_SQLITE) || registration_fd >= 0)))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Options 'link_dir' and 'link_name' go together, with format 'kiro-cli-sqlite' "
                                        "or 'kiro-ide-json' of a login without a client registration (social or external IdP).");
        if (registration_fd >= 0 && f != IMPORT_KIRO_IDE_JSON)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Option 'registration' only applies to format 'kiro-ide-json'.");
        if (!isempty(id) && !credential_id_is_valid(id))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid credential id '%s': use 1-64 letters, digits, '.', '_' or '-'.", id);
        if (region && !region_is_valid(region))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid region (expected one like 'us-east-1').");
        if (proxy && (curl_glue_proxy_check(proxy) < 0 || streq(proxy, CURL_GLUE_PROXY_ENV)))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Invalid proxy (expected http://, https:// or socks5h://HOST:PORT).");
        if (source_path && !printable(source_path, 4096))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid source path.");
        r = check_source_fd(fd, error);
        if (r >= 0 && registration_fd >= 0)
                r = check_source_fd(registration_fd, error);
        if (r < 0)
                return r;

        if (link_name) {
                /* Before anything is stored: kiro-authd uses no rights but its own user's on the source. */
                r = credential_link_check(link_dir_fd, link_name, f);
                if (r == -EACCES || r == -EPERM || r == -EROFS)
                        return link_access_error(error, r, link_name, source_path);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Cannot link '%s' in the directory passed: %m.",
                                                       link_name);
        }

        Credential *existing = isempty(id) ? NULL : manager_find(m, id);
        if (existing && !replace)
                return sd_bus_error_setf(error, KIROD_ERROR_CREDENTIAL_EXISTS,
                                         "Credential '%s' exists already; pass --replace to update it or --id to add another.",
                                         id);

        /* Parse everything first: a bad source must not touch what is stored. */
        r = import_from_fds(f, fd, registration_fd, &c, &message);
        if (r == 0 && isempty(id)) {
                /* No id given: one derived from the account (authd-ids.h), or the account's existing one. */
                r = manager_import_default_id(m, c, &derived_id, &existing);
                if (r < 0) {
                        credential_record_free(c);
                        return r;
                }
                id = derived_id;
                if (existing && !replace) {
                        credential_record_free(c);
                        return sd_bus_error_setf(error, KIROD_ERROR_CREDENTIAL_EXISTS,
                                                 "This account is imported already as credential '%s'; pass --replace to update it or --id to add it again under another id.",
                                                 id);
                }
        }
        if (r != 0) {
                /* > 0: what is wrong with the source; < 0: a system error while reading it. */
                const char *name = r == IMPORT_E_TOO_LARGE              ? KIROD_ERROR_SOURCE_TOO_LARGE
                                   : r == IMPORT_E_NO_TOKEN             ? KIROD_ERROR_NO_TOKEN_IN_SOURCE
                                   : r == IMPORT_E_REGISTRATION_EXPIRED ? KIROD_ERROR_REGISTRATION_EXPIRED
                                   : r == -ENOMEM                       ? SD_BUS_ERROR_NO_MEMORY
                                                                        : KIROD_ERROR_INVALID_SOURCE;
                return sd_bus_error_setf(error, name, "Cannot import %s: %s.", format_s, strna(message));
        }
        if (region && free_and_strdup(&c->region, region) < 0) {
                credential_record_free(c);
                return -ENOMEM;
        }
        if (proxy && free_and_strdup(&c->proxy, proxy) < 0) {
                credential_record_free(c);
                return -ENOMEM;
        }
        c->imported_at = now(CLOCK_REALTIME);
        if (source_path && free_and_strdup(&c->source_path, source_path) < 0) {
                credential_record_free(c);
                return -ENOMEM;
        }

        Credential *cred;
        if (existing && link_name && c->refresh_token &&
            (streq_ptr(c->refresh_token, existing->record->refresh_token) ||
             credential_link_source_is_stale(existing, c->refresh_token))) {
                /* A re-link of a source that holds this credential's login, or the one it has rotated since
                 * (refreshes while detached): the credential keeps its login, health and counters, and the
                 * link writes its login into a stale source. Options given with it still apply (stored by
                 * the attach below). */
                credential_record_free(TAKE_PTR(c));
                cred = existing;
                if ((region && free_and_strdup(&cred->record->region, region) < 0) ||
                    (proxy && erase_and_strdup(&cred->record->proxy, proxy) < 0))
                        return -ENOMEM;
        } else if (existing) {
                r = manager_replace_login(m, existing, TAKE_PTR(c));
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Failed to store credential '%s': %m", id);
                cred = existing;
        } else {
                c->id = strdup(id);
                if (!c->id) {
                        credential_record_free(c);
                        return -ENOMEM;
                }
                r = manager_add(m, c, &cred);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Failed to store credential '%s': %m", id);
        }
        if (link_name) {
                r = credential_link_attach(cred, link_dir_fd, link_name, f, source_path);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Imported credential '%s', but cannot follow its source: %m",
                                                       cred->record->id);
        } else if (existing) {
                /* An owned login replaces a linked one: the link leaves the record and the fd store. */
                r = credential_link_unlink(cred, true);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Failed to store credential '%s': %m", id);
        }
        log_event(LOG_INFO, KIROD_MESSAGE_CREDENTIAL_IMPORTED, "%s credential '%s' (%s, %s) from %s.",
                  existing ? "Replaced" : "Imported", cred->record->id, auth_method_to_string(cred->record->method),
                  strna(cred->record->region), format_s);
        return sd_bus_reply_method_return(msg, "o", cred->object_path);
}

static int read_login_options(sd_bus_message *msg, LoginParams *p, sd_bus_error *error) {
        int replace = false, r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *key;
                r = sd_bus_message_enter_container(msg, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(msg, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "id"))
                        r = sd_bus_message_read(msg, "v", "s", &p->id);
                else if (streq(key, "start_url"))
                        r = sd_bus_message_read(msg, "v", "s", &p->start_url);
                else if (streq(key, "region"))
                        r = sd_bus_message_read(msg, "v", "s", &p->region);
                else if (streq(key, "replace")) {
                        r = sd_bus_message_read(msg, "v", "b", &replace);
                        p->replace = replace;
                } else
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Unknown login option '%s' (id, start_url, region, replace).", key);
                if (r < 0)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Login option '%s' has the wrong type.",
                                                 key);
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(msg);
}

static int method_start_login(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *provider, *method;
        LoginParams p = {};
        int r;

        r = check_access(m, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "ss", &provider, &method);
        if (r < 0)
                return r;
        r = read_login_options(msg, &p, error);
        if (r < 0)
                return r;
        r = read_flags(msg, error);
        if (r < 0)
                return r;
        if (!printable(provider, 64) || !printable(method, 64))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid provider or method.");
        p.kind = login_kind_from_names(provider, method);
        if (p.kind < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown login '%s' '%s': valid provider/method pairs are " LOGIN_VALID_NAMES ".",
                                         provider, method);
        if ((p.start_url && !printable(p.start_url, 1024)) || (p.region && !printable(p.region, 64)))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid start URL or region.");
        if (p.id && isempty(p.id))
                p.id = NULL;
        return login_start(m, msg, &p, error);
}

static int method_cancel_login(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *id;
        int r;

        r = check_access(m, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "s", &id);
        if (r < 0)
                return r;
        r = read_flags(msg, error);
        if (r < 0)
                return r;
        r = login_cancel(m, id);
        if (r == -ESRCH)
                return sd_bus_error_setf(error, KIROD_ERROR_NO_SUCH_LOGIN, "No login '%s' is running.",
                                         printable(id, 64) ? id : "?");
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_list_credentials(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        Manager *m = userdata;
        int r;

        r = read_flags(msg, error);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "o");
        for (size_t i = 0; r >= 0 && i < m->n_credentials; i++)
                r = sd_bus_message_append(reply, "o", m->credentials[i]->object_path);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static int property_get_version(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", PACKAGE_VERSION);
}

static int property_get_policy(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", selection_policy_to_string(m->config.policy));
}

static int property_get_count(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) m->n_credentials);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get_version, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("SelectionPolicy", "s", property_get_policy, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CredentialCount", "u", property_get_count, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("GetToken",
                                SD_BUS_ARGS("s", provider, "s", credential, "t", flags),
                                SD_BUS_RESULT("s", credential_id, "s", access_token, "t", expires_realtime_usec,
                                              "a{sv}", extra),
                                method_get_token, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("ReportUpstreamError",
                                SD_BUS_ARGS("s", credential_id, "s", kind, "t", retry_after_usec, "t", flags),
                                SD_BUS_NO_RESULT, method_report_upstream_error, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReportUsageCounts",
                                SD_BUS_ARGS("a(sttt)", counts, "t", flags),
                                SD_BUS_NO_RESULT, method_report_usage_counts, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Import",
                                SD_BUS_ARGS("s", format, "h", data, "a{sv}", options, "t", flags),
                                SD_BUS_RESULT("o", credential),
                                method_import, SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("ListCredentials", SD_BUS_ARGS("t", flags), SD_BUS_RESULT("ao", credentials),
                                method_list_credentials, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("StartLogin",
                                SD_BUS_ARGS("s", provider, "s", method, "a{sv}", options, "t", flags),
                                SD_BUS_RESULT("s", login_id, "s", verification_uri, "s", verification_uri_complete,
                                              "s", user_code, "t", expires_usec),
                                method_start_login, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("CancelLogin", SD_BUS_ARGS("s", login_id, "t", flags), SD_BUS_NO_RESULT,
                                method_cancel_login, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS(KIROD_SIGNAL_LOGIN_FINISHED, SD_BUS_ARGS("s", login_id, "o", credential, "s", error), 0),
        SD_BUS_VTABLE_END
};

/* ---- Credential objects ----------------------------------------------------------------------------- */

static int method_refresh(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        int r;

        r = check_access(cred->manager, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = read_flags(msg, error);
        if (r < 0)
                return r;
        if (cred->record->method == AUTH_METHOD_API_KEY)
                return sd_bus_error_setf(error, SD_BUS_ERROR_NOT_SUPPORTED,
                                         "Credential '%s' is an API key: it does not expire and has nothing to refresh.",
                                         cred->record->id);
        if (!cred->record->enabled)
                return sd_bus_error_setf(error, KIROD_ERROR_CREDENTIAL_DISABLED,
                                         "Credential '%s' is disabled; enable it first.", cred->record->id);
        /* An operator asking for a refresh gets one, even after a permanent failure: the server may agree now. */
        if (cred->record->health == HEALTH_NEEDS_LOGIN && !cred->refreshing)
                cred->record->health = HEALTH_OK;
        cred->retry_at = 0;
        r = credential_start_refresh(cred, true);
        if (r < 0 && cred->record->health == HEALTH_NEEDS_LOGIN)
                return sd_bus_error_setf(error, KIROD_ERROR_NEEDS_LOGIN, "Credential '%s' needs a new login.",
                                         cred->record->id);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot refresh credential '%s': %m", cred->record->id);
        r = park(&cred->refresh_waiters, &cred->n_refresh_waiters, msg);
        return r < 0 ? r : 1;
}

static int method_remove(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        Manager *m = cred->manager;
        int r;

        r = check_access(m, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = read_flags(msg, error);
        if (r < 0)
                return r;
        _cleanup_free_ char *id = strdup(cred->record->id);
        if (!id)
                return -ENOMEM;
        r = manager_remove(m, cred);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Failed to remove credential '%s': %m", id);
        log_info("Removed credential '%s'.", id);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_set_enabled(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        uint64_t flags;
        int enabled, r;

        r = check_access(cred->manager, msg, ACCESS_ADMIN, error);
        if (r != 0)
                return r;
        r = sd_bus_message_read(msg, "bt", &enabled, &flags);
        if (r < 0)
                return r;
        r = check_flags(flags, error);
        if (r < 0)
                return r;
        if (cred->record->enabled != !!enabled) {
                bool old = cred->record->enabled;
                cred->record->enabled = enabled;
                if (enabled) {
                        cred->record->cooldown_until = 0;
                        cred->record->throttle_count = 0;
                }
                r = credential_save(cred);
                if (r < 0) {
                        cred->record->enabled = old;
                        return sd_bus_error_set_errnof(error, r, "Failed to store credential '%s': %m", cred->record->id);
                }
                credential_schedule(cred);
                credential_emit_changed(cred);
        }
        return sd_bus_reply_method_return(msg, NULL);
}

#define CREDENTIAL_STRING_PROPERTY(name, expr)                                                              \
        static int property_get_##name(sd_bus *bus, const char *path, const char *interface,                \
                                       const char *property, sd_bus_message *reply, void *userdata,         \
                                       sd_bus_error *error) {                                               \
                Credential *cred = userdata;                                                                \
                return sd_bus_message_append(reply, "s", strempty(expr));                                   \
        }
#define CREDENTIAL_TIME_PROPERTY(name, expr)                                                                \
        static int property_get_##name(sd_bus *bus, const char *path, const char *interface,                \
                                       const char *property, sd_bus_message *reply, void *userdata,         \
                                       sd_bus_error *error) {                                               \
                Credential *cred = userdata;                                                                \
                return sd_bus_message_append(reply, "t", (uint64_t) (expr));                                \
        }

CREDENTIAL_STRING_PROPERTY(id, cred->record->id)
CREDENTIAL_STRING_PROPERTY(provider, provider_to_string(cred->record->provider))
CREDENTIAL_STRING_PROPERTY(auth_method, auth_method_to_string(cred->record->method))
CREDENTIAL_STRING_PROPERTY(source, cred->record->link_path ?: cred->record->source_path ?: cred->record->source_format)
CREDENTIAL_STRING_PROPERTY(state, credential_state_to_string(credential_state(cred)))
CREDENTIAL_STRING_PROPERTY(last_error, cred->record->last_error)
CREDENTIAL_STRING_PROPERTY(cooldown_reason, cred->record->cooldown_until > 0 ? cred->record->cooldown_reason : NULL)
CREDENTIAL_STRING_PROPERTY(region, cred->record->region)
CREDENTIAL_STRING_PROPERTY(profile_arn, cred->record->profile_arn)
CREDENTIAL_TIME_PROPERTY(expires_at, cred->record->expires_at)
CREDENTIAL_TIME_PROPERTY(last_refresh_at, cred->record->last_refresh_at)
CREDENTIAL_TIME_PROPERTY(next_refresh_at, cred->next_refresh_at)
CREDENTIAL_TIME_PROPERTY(cooldown_until, cred->record->cooldown_until)

static int property_get_enabled(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        return sd_bus_message_append(reply, "b", cred->record->enabled);
}

static int property_get_unsaved(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        return sd_bus_message_append(reply, "b", cred->save_pending);
}

static int property_get_failures(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        return sd_bus_message_append(reply, "u", (uint32_t) cred->record->consecutive_failures);
}

/* RequestsLastHour, ErrorsLastHour, FailoversLastHour: the rolling hour, aged when read. */
static int property_get_last_hour(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        UsageCountsSum s = usage_counts_sum(&cred->counts, now(CLOCK_MONOTONIC));
        return sd_bus_message_append(reply, "u", streq(property, "RequestsLastHour") ? s.requests
                                                 : streq(property, "ErrorsLastHour") ? s.errors
                                                                                     : s.failovers);
}

/* Refreshes: every result of the fixed set (bus-names.h), in its order, zeros included. */
static int property_get_refreshes(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "{st}");
        for (RefreshResultKind k = 0; r >= 0 && k < _REFRESH_RESULT_MAX; k++)
                r = sd_bus_message_append(reply, "{st}", refresh_result_kind_to_string(k), cred->refreshes[k]);
        if (r < 0)
                return r;
        return sd_bus_message_close_container(reply);
}

/* UsageUsed, UsageLimit, UsageResetAt, UsageFetchedAt: the last good usage answer (GetUsage); UsageFetchedAt
 * 0 means none yet, and then the others are 0 too. */
static int property_get_usage(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        const CredentialUsage *u = cred->usage && cred->usage->have_limits ? cred->usage : NULL;
        if (streq(property, "UsageUsed"))
                return sd_bus_message_append(reply, "d", u ? usage_limits_consumed(&u->limits) : 0.0);
        if (streq(property, "UsageLimit"))
                return sd_bus_message_append(reply, "d", u ? usage_limits_granted(&u->limits) : 0.0);
        if (streq(property, "UsageResetAt"))
                return sd_bus_message_append(reply, "t", (uint64_t) (u ? u->limits.next_reset : 0));
        return sd_bus_message_append(reply, "t", (uint64_t) (u ? u->fetched_at : 0));
}

static int property_get_link(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", credential_link_state(userdata));
}

static int property_get_link_message(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        return sd_bus_message_append(reply, "s", cred->link ? strempty(cred->link->message) : "");
}

#define EC SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE
static const sd_bus_vtable credential_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", property_get_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Provider", "s", property_get_provider, 0, EC),
        SD_BUS_PROPERTY("AuthMethod", "s", property_get_auth_method, 0, EC),
        SD_BUS_PROPERTY("Source", "s", property_get_source, 0, EC),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, EC),
        SD_BUS_PROPERTY("Enabled", "b", property_get_enabled, 0, EC),
        SD_BUS_PROPERTY("AccessTokenExpiresAt", "t", property_get_expires_at, 0, EC),
        SD_BUS_PROPERTY("LastRefreshAt", "t", property_get_last_refresh_at, 0, EC),
        SD_BUS_PROPERTY("NextRefreshAt", "t", property_get_next_refresh_at, 0, EC),
        SD_BUS_PROPERTY("ConsecutiveFailures", "u", property_get_failures, 0, EC),
        SD_BUS_PROPERTY("LastError", "s", property_get_last_error, 0, EC),
        SD_BUS_PROPERTY("CooldownUntil", "t", property_get_cooldown_until, 0, EC),
        SD_BUS_PROPERTY("CooldownReason", "s", property_get_cooldown_reason, 0, EC),
        SD_BUS_PROPERTY("Region", "s", property_get_region, 0, EC),
        SD_BUS_PROPERTY("ProfileArn", "s", property_get_profile_arn, 0, EC),
        SD_BUS_PROPERTY("Unsaved", "b", property_get_unsaved, 0, EC),
        SD_BUS_PROPERTY("Link", "s", property_get_link, 0, EC),
        SD_BUS_PROPERTY("LinkMessage", "s", property_get_link_message, 0, EC),
        SD_BUS_PROPERTY("RequestsLastHour", "u", property_get_last_hour, 0, EC),
        SD_BUS_PROPERTY("ErrorsLastHour", "u", property_get_last_hour, 0, EC),
        SD_BUS_PROPERTY("FailoversLastHour", "u", property_get_last_hour, 0, EC),
        SD_BUS_PROPERTY("Refreshes", "a{st}", property_get_refreshes, 0, EC),
        SD_BUS_PROPERTY("UsageUsed", "d", property_get_usage, 0, EC),
        SD_BUS_PROPERTY("UsageLimit", "d", property_get_usage, 0, EC),
        SD_BUS_PROPERTY("UsageResetAt", "t", property_get_usage, 0, EC),
        SD_BUS_PROPERTY("UsageFetchedAt", "t", property_get_usage, 0, EC),
        SD_BUS_METHOD_WITH_ARGS("Refresh", SD_BUS_ARGS("t", flags), SD_BUS_NO_RESULT, method_refresh,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Remove", SD_BUS_ARGS("t", flags), SD_BUS_NO_RESULT, method_remove,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetEnabled", SD_BUS_ARGS("b", enabled, "t", flags), SD_BUS_NO_RESULT,
                                method_set_enabled, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetUsage", SD_BUS_ARGS("t", flags), SD_BUS_RESULT("a{sv}", usage),
                                method_get_usage, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END
};
#undef EC

static int credential_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                           sd_bus_error *error) {
        Credential *cred = credential_from_path(userdata, path);
        if (!cred)
                return 0;
        *found = cred;
        return 1;
}

static int credential_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes,
                                sd_bus_error *error) {
        Manager *m = userdata;
        char **l = calloc(m->n_credentials + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_credentials; i++) {
                l[i] = strdup(m->credentials[i]->object_path);
                if (!l[i]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        *nodes = l;
        return 1;
}

static void bus_credential_added(Credential *cred) {
        Manager *m = cred->manager;
        if (!m->bus)
                return;
        (void) sd_bus_emit_object_added(m->bus, cred->object_path);
        (void) sd_bus_emit_properties_changed(m->bus, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                              "CredentialCount", NULL);
}

static void bus_credential_changed(Credential *cred) {
        Manager *m = cred->manager;
        if (!m->bus)
                return;
        (void) sd_bus_emit_properties_changed_strv(m->bus, cred->object_path, KIROD_CREDENTIAL_INTERFACE, NULL);
}

static void bus_credential_removed(Credential *cred) {
        Manager *m = cred->manager;
        if (!m->bus)
                return;
        (void) sd_bus_emit_object_removed(m->bus, cred->object_path);
        (void) sd_bus_emit_properties_changed(m->bus, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                              "CredentialCount", NULL);
}

/* ---- org.freedesktop.LogControl1 -------------------------------------------------------------------- */

static int property_get_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", log_level_to_string(log_get_max_level()));
}

static int property_set_log_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *value, void *userdata, sd_bus_error *error) {
        const char *s;
        int r = check_root_sync(userdata, sd_bus_get_current_message(bus), error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(value, "s", &s);
        if (r < 0)
                return r;
        int level = log_level_from_string(s);
        if (level < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid log level '%s'.", s);
        log_set_max_level(level);
        log_info("Log level set to '%s'.", s);
        return 0;
}

static int property_get_log_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", getenv("JOURNAL_STREAM") ? "journal" : "console");
}

static int property_set_log_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *value, void *userdata, sd_bus_error *error) {
        return sd_bus_error_set(error, SD_BUS_ERROR_NOT_SUPPORTED, "kiro-authd always logs to stderr.");
}

static int property_get_syslog_identifier(sd_bus *bus, const char *path, const char *interface,
                                          const char *property, sd_bus_message *reply, void *userdata,
                                          sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", program_invocation_short_name);
}

static const sd_bus_vtable log_control_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", property_get_log_level, property_set_log_level, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", property_get_log_target, property_set_log_target, 0,
                                 SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("SyslogIdentifier", "s", property_get_syslog_identifier, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END
};

static const ManagerHooks bus_hooks = {
        .credential_added = bus_credential_added,
        .credential_removed = bus_credential_removed,
        .credential_changed = bus_credential_changed,
        .reply_token = bus_reply_token,
        .done = bus_state_free,
};

int bus_register(Manager *m) {
        int r;

        assert(m);
        assert(m->bus);
        assert(!m->bus_state);

        m->bus_state = calloc(1, sizeof(BusState));
        if (!m->bus_state)
                return log_oom();
        m->hooks = &bus_hooks;

        r = sd_bus_add_object_vtable(m->bus, NULL, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE, manager_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add manager object: %m");
        r = sd_bus_add_fallback_vtable(m->bus, NULL, KIROD_CREDENTIAL_PREFIX, KIROD_CREDENTIAL_INTERFACE,
                                       credential_vtable, credential_find, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add credential objects: %m");
        r = sd_bus_add_node_enumerator(m->bus, NULL, KIROD_CREDENTIAL_PREFIX, credential_enumerate, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add credential enumerator: %m");
        r = sd_bus_add_object_manager(m->bus, NULL, KIROD_MANAGER_PATH);
        if (r < 0)
                return log_error_errno(r, "Failed to add object manager: %m");
        r = sd_bus_add_object_vtable(m->bus, NULL, KIROD_LOG_CONTROL_PATH, "org.freedesktop.LogControl1",
                                     log_control_vtable, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add LogControl1 object: %m");
        return 0;
}
