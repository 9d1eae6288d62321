/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Access tokens from kiro-authd: an in-memory cache filled by asynchronous GetToken calls. */
#include <inttypes.h>

#include "bus-names.h"
#include "escape.h"
#include "log.h"
#include "auth/auth-tokencache.h"
#include "chat/chat-metrics.h"

/* A cached token is used while it has at least this much life left; below that a fresh one is fetched. */
#define TOKEN_RENEW_BEFORE_USEC (120 * USEC_PER_SEC)
/* While kiro-authd is away, a token that could not be renewed is still handed out if it has this much
 * life left: Kiro takes it until it expires. */
#define TOKEN_AWAY_MIN_USEC (10 * USEC_PER_SEC)

struct TokenRequest {
        TokenRequest *next;
        TokenCache *cache;
        struct Entry *entry;
        TokenCallback cb;
        void *userdata;
};

/* One entry per (provider, credential id) key: "" id means "whatever kiro-authd selects". */
typedef struct Entry {
        struct Entry *next;
        struct TokenCache *cache;
        char *provider;
        char *credential_id;
        Token *token;
        char *token_owner;      /* unique bus name of the kiro-authd that issued token */
        sd_bus_slot *call;      /* GetToken in flight */
        TokenRequest *waiters;
} Entry;

struct TokenCache {
        sd_bus *bus;
        sd_bus_slot *owner_match;
        Entry *entries;
        uint64_t n_calls;
};

Token *token_ref(Token *t) {
        if (t)
                t->n_ref++;
        return t;
}

Token *token_unref(Token *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        free(t->credential_id);
        erase_and_free(t->access_token);
        free(t->region);
        free(t->profile_arn);
        free(t->auth_method);
        free(t->machine_id);
        erase_and_free(t->proxy);
        free(t->api_base);
        free(t->user_agent);
        strv_free(t->headers);
        free(t);
        return NULL;
}

static void entry_drop_token(Entry *e) {
        e->token = token_unref(e->token);
        free(e->token_owner);
        e->token_owner = NULL;
}

/* DESIGN.md §3: kiro-authd stopping (crash, restart, upgrade) does not make a valid token invalid, so the
 * cache keeps serving what it holds while the name has no owner. A new owner is another kiro-authd, whose
 * view of the credentials (disabled, removed, replaced meanwhile) may differ: then every token that the
 * new owner did not issue is dropped. Unique names are never reused on a bus, so "not issued by the new
 * owner" is "issued by an earlier one". */
static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        TokenCache *tc = userdata;
        const char *name, *old_owner, *new_owner;
        unsigned n = 0;
        int r;

        r = sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner);
        if (r < 0) {
                log_debug_errno(r, "Ignoring a malformed NameOwnerChanged signal: %m");
                return 0;
        }
        if (!streq(name, KIROD_BUS_NAME))
                return 0;
        if (isempty(new_owner)) {
                for (Entry *e = tc->entries; e; e = e->next)
                        n += !!e->token;
                log_info("kiro-authd left the bus; serving %u cached token(s) until it is back or they expire.", n);
                return 0;
        }
        for (Entry *e = tc->entries; e; e = e->next)
                if (e->token && !streq_ptr(e->token_owner, new_owner)) {
                        /* One token may sit under "" and under its credential's id: count it once. */
                        bool again = false;
                        for (Entry *f = e->next; f && !again; f = f->next)
                                again = f->token == e->token;
                        entry_drop_token(e);
                        n += !again;
                }
        log_info("kiro-authd is on the bus as %s; dropped %u token(s) of the previous instance.",
                 LOG_ESC(new_owner), n);
        return 0;
}

int token_cache_new(sd_bus *bus, TokenCache **ret) {
        TokenCache *tc = calloc(1, sizeof *tc);
        int r;

        if (!tc)
                return -ENOMEM;
        tc->bus = sd_bus_ref(bus);
        /* Only kiro-authd's name: every other client coming and going is none of our business. Installed
         * synchronously (once, at start-up, before READY=1): a kiro-authd restart right after start-up
         * must not slip past an AddMatch still in flight. */
        r = sd_bus_add_match(bus, &tc->owner_match,
                                   "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                   "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" KIROD_BUS_NAME "'",
                                   on_owner_changed, tc);
        if (r < 0) {
                token_cache_free(tc);
                return r;
        }
        *ret = tc;
        return 0;
}

static void entry_fail(Entry *e, const sd_bus_error *error) {
        TokenRequest *w = e->waiters;
        e->waiters = NULL;
        while (w) {
                TokenRequest *n = w->next;
                w->cb(NULL, error, w->userdata);
                free(w);
                w = n;
        }
}

TokenCache *token_cache_free(TokenCache *tc) {
        if (!tc)
                return NULL;
        while (tc->entries) {
                Entry *e = tc->entries;
                tc->entries = e->next;
                sd_bus_slot_unref(e->call);
                sd_bus_error err = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_NO_SERVER, "Shutting down.");
                entry_fail(e, &err);
                entry_drop_token(e);
                free(e->provider);
                free(e->credential_id);
                free(e);
        }
        sd_bus_slot_unref(tc->owner_match);
        sd_bus_unref(tc->bus);
        free(tc);
        return NULL;
}

static Entry *entry_get(TokenCache *tc, const char *provider, const char *id) {
        for (Entry *e = tc->entries; e; e = e->next)
                if (streq(e->provider, provider) && streq(e->credential_id, id))
                        return e;
        Entry *e = calloc(1, sizeof *e);
        if (!e)
                return NULL;
        e->provider = strdup(provider);
        e->credential_id = strdup(id);
        if (!e->provider || !e->credential_id) {
                free(e->provider);
                free(e->credential_id);
                free(e);
                return NULL;
        }
        e->cache = tc;
        e->next = tc->entries;
        tc->entries = e;
        return e;
}

static bool token_good(Token *t, usec_t n) {
        return t && (t->expires_at == UINT64_MAX || t->expires_at > n + TOKEN_RENEW_BEFORE_USEC);
}

static int parse_reply(sd_bus_message *m, Token **ret) {
        _cleanup_(token_unrefp) Token *t = calloc(1, sizeof *t);
        const char *id, *at;
        uint64_t exp;
        int r;

        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        /* The reply carries the access token: sd-bus wipes a sensitive message's memory when it frees it. */
        (void) sd_bus_message_sensitive(m);
        r = sd_bus_message_read(m, "sst", &id, &at, &exp);
        if (r < 0)
                return r;
        t->credential_id = strdup(id);
        t->access_token = strdup(at);
        t->expires_at = exp;
        if (!t->credential_id || !t->access_token)
                return -ENOMEM;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *val;
                char **dst = NULL;
                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "region"))
                        dst = &t->region;
                else if (streq(key, "profile_arn"))
                        dst = &t->profile_arn;
                else if (streq(key, "auth_method"))
                        dst = &t->auth_method;
                else if (streq(key, "machine_id"))
                        dst = &t->machine_id;
                else if (streq(key, "proxy"))
                        dst = &t->proxy;
                else if (streq(key, "api_base"))
                        dst = &t->api_base;
                else if (streq(key, "user_agent"))
                        dst = &t->user_agent;
                if (streq(key, "headers")) {
                        strv_free(t->headers);
                        t->headers = NULL;
                        r = sd_bus_message_enter_container(m, 'v', "as");
                        if (r >= 0)
                                r = sd_bus_message_read_strv(m, &t->headers);
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                        if (r < 0)
                                return r;
                } else if (dst && sd_bus_message_read(m, "v", "s", &val) >= 0) {
                        if (free_and_strdup(dst, val) < 0)
                                return -ENOMEM;
                } else {
                        r = sd_bus_message_skip(m, "v");
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}

/* kiro-authd is not there to answer (stopped, restarting), as opposed to answering "no". */
static bool error_is_absence(const sd_bus_error *err) {
        return sd_bus_error_has_names(err, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                      SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT, SD_BUS_ERROR_DISCONNECTED);
}

static void entry_succeed(Entry *e, Token *t) {
        TokenRequest *w = e->waiters;
        e->waiters = NULL;
        while (w) {
                TokenRequest *n = w->next;
                w->cb(t, NULL, w->userdata);
                free(w);
                w = n;
        }
}

static int on_get_token_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Entry *e = userdata;
        _cleanup_(token_unrefp) Token *t = NULL;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        int r;

        e->call = sd_bus_slot_unref(e->call);
        metric_add(chat_metrics.token_cache_calls, (const char *const[]) { err ? "error" : "ok" }, 1);
        if (err) {
                /* The renewal a little before expiry failed only because kiro-authd is away: the token
                 * still works for a while. */
                if (error_is_absence(err) && e->token && e->token->expires_at != UINT64_MAX &&
                    e->token->expires_at > now(CLOCK_REALTIME) + TOKEN_AWAY_MIN_USEC) {
                        log_debug("kiro-authd did not answer GetToken (%s); using the cached token of '%s' "
                                  "until it expires.", LOG_ESC(err->name), LOG_ESC(e->token->credential_id));
                        t = token_ref(e->token);
                        entry_succeed(e, t);
                        return 0;
                }
                log_debug("GetToken for %s/'%s' failed: %s: %s", e->provider, LOG_ESC(e->credential_id),
                          LOG_ESC(err->name), LOG_ESC(err->message));
                entry_fail(e, err);
                return 0;
        }
        r = parse_reply(m, &t);
        if (r < 0) {
                sd_bus_error bad = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_INCONSISTENT_MESSAGE,
                                                           "kiro-authd sent a malformed GetToken reply.");
                entry_fail(e, &bad);
                return 0;
        }
        entry_drop_token(e);
        e->token = token_ref(t);
        /* The reply comes from kiro-authd's unique name, whatever name the call went to. */
        e->token_owner = strdup(strempty(sd_bus_message_get_sender(m)));
        log_debug("Got a token for %s/'%s' from kiro-authd %s.", e->provider, LOG_ESC(t->credential_id),
                  LOG_ESC(e->token_owner));
        /* A token kiro-authd chose (credential "") serves later requests for that credential by name too,
         * as they come once the credential selector has read kiro-authd's list. */
        if (isempty(e->credential_id) && !isempty(t->credential_id)) {
                TokenCache *tc = e->cache;
                Entry *named = entry_get(tc, e->provider, t->credential_id);
                if (named && !named->call && !token_good(named->token, now(CLOCK_REALTIME))) {
                        entry_drop_token(named);
                        named->token = token_ref(t);
                        named->token_owner = strdup(strempty(e->token_owner));
                }
        }
        entry_succeed(e, t);
        return 0;
}

int token_cache_get(TokenCache *tc, const char *provider, const char *credential_id, TokenCallback cb,
                    void *userdata, Token **ret_token, TokenRequest **ret_request) {
        Entry *e = entry_get(tc, provider, strempty(credential_id));
        int r;

        if (!e)
                return -ENOMEM;
        if (token_good(e->token, now(CLOCK_REALTIME))) {
                metric_add(chat_metrics.token_cache_hits, NULL, 1);
                *ret_token = e->token;
                return 1;
        }
        TokenRequest *req = calloc(1, sizeof *req);
        if (!req)
                return -ENOMEM;
        if (!e->call) {
                r = sd_bus_call_method_async(tc->bus, &e->call, KIROD_BUS_NAME, KIROD_MANAGER_PATH,
                                             KIROD_MANAGER_INTERFACE, "GetToken", on_get_token_reply, e, "sst",
                                             e->provider, e->credential_id, UINT64_C(0));
                if (r < 0) {
                        free(req);
                        return r;
                }
                tc->n_calls++;
                log_debug("Asking kiro-authd for a token for %s/'%s' (GetToken call %" PRIu64 ").",
                          e->provider, LOG_ESC(e->credential_id), tc->n_calls);
        }
        req->cache = tc;
        req->entry = e;
        req->cb = cb;
        req->userdata = userdata;
        req->next = e->waiters;
        e->waiters = req;
        if (ret_request)
                *ret_request = req;
        return 0;
}

void token_request_cancel(TokenRequest *r) {
        if (!r)
                return;
        for (TokenRequest **p = &r->entry->waiters; *p; p = &(*p)->next)
                if (*p == r) {
                        *p = r->next;
                        free(r);
                        return;
                }
}

void token_cache_invalidate(TokenCache *tc, const char *credential_id) {
        for (Entry *e = tc->entries; e; e = e->next)
                if (e->token && streq(e->token->credential_id, credential_id))
                        entry_drop_token(e);
}

void token_cache_report(TokenCache *tc, const char *credential_id, const char *kind, usec_t retry_after) {
        int r;
        if (streq(kind, "unauthorized"))
                token_cache_invalidate(tc, credential_id);
        r = sd_bus_call_method_async(tc->bus, NULL, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                     "ReportUpstreamError", NULL, NULL, "sstt", credential_id, kind,
                                     (uint64_t) retry_after, UINT64_C(0));
        if (r < 0)
                log_warning_errno(r, "Failed to report upstream error for '%s': %m", LOG_ESC(credential_id));
}

uint64_t token_cache_n_calls(TokenCache *tc) {
        return tc->n_calls;
}
