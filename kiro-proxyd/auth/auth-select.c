/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Credential selection: kiro-authd's credentials mirrored from its ObjectManager, picked per request. */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "bus-names.h"
#include "escape.h"
#include "log.h"
#include "auth/auth-select.h"

/* Session → credential bindings kept (oldest replaced first). */
#define SESSIONS_MAX 256

typedef enum Policy {
        POLICY_STICKY,
        POLICY_ROUND_ROBIN,
        POLICY_LEAST_USED,
} Policy;

typedef struct Cred {
        char *path;
        char *id;
        char *provider;
        bool enabled;
        bool needs_login;       /* State "needs-login" (or "disabled") */
        usec_t cooldown_until;  /* CLOCK_REALTIME µs */
        bool quota;             /* the cooldown is a spent quota, not throttling */
        bool throttled;         /* throttled lately: a success is reported to end it */
        uint64_t n_used;
} Cred;

typedef struct Session {
        char *key;
        char *id;
} Session;

struct CredentialSelector {
        sd_bus *bus;
        TokenCache *tokens;
        sd_bus_slot *matches[5];        /* the signals the mirror follows (credential_selector_new()) */
        sd_bus_slot *load_call, *policy_call;
        bool loaded;
        Policy policy;

        Cred *creds;            /* sorted by id */
        size_t n_creds;
        size_t rr_next;
        char *sticky_id;

        Session sessions[SESSIONS_MAX];
        size_t session_next;
};

static bool path_startswith_prefix(const char *path) {
        size_t n = strlen(KIROD_CREDENTIAL_PREFIX);
        return strncmp(path, KIROD_CREDENTIAL_PREFIX, n) == 0 && path[n] == '/';
}

static void cred_done(Cred *c) {
        free(c->path);
        free(c->id);
        free(c->provider);
}

static void selector_clear(CredentialSelector *s) {
        for (size_t i = 0; i < s->n_creds; i++)
                cred_done(&s->creds[i]);
        free(s->creds);
        s->creds = NULL;
        s->n_creds = 0;
        s->loaded = false;
}

static Cred *find_path(CredentialSelector *s, const char *path) {
        for (size_t i = 0; i < s->n_creds; i++)
                if (streq(s->creds[i].path, path))
                        return &s->creds[i];
        return NULL;
}

static Cred *find_id(CredentialSelector *s, const char *id) {
        for (size_t i = 0; i < s->n_creds; i++)
                if (streq_ptr(s->creds[i].id, id))
                        return &s->creds[i];
        return NULL;
}

static void forget(CredentialSelector *s, Cred *c) {
        if (s->tokens && c->id)
                token_cache_invalidate(s->tokens, c->id);
}

static Cred *add_path(CredentialSelector *s, const char *path) {
        Cred *c = find_path(s, path);
        if (c)
                return c;
        Cred *n = reallocarray(s->creds, s->n_creds + 1, sizeof *n);
        if (!n)
                return NULL;
        s->creds = n;
        c = &s->creds[s->n_creds];
        *c = (Cred) { .path = strdup(path), .enabled = true };
        if (!c->path)
                return NULL;
        s->n_creds++;
        return c;
}

static int cmp_cred(const void *a, const void *b) {
        return strcmp(strempty(((const Cred *) a)->id), strempty(((const Cred *) b)->id));
}

static void remove_path(CredentialSelector *s, const char *path) {
        Cred *c = find_path(s, path);
        if (!c)
                return;
        log_debug("Credential '%s' is gone; no request goes to it any more.", LOG_ESC(strna(c->id)));
        forget(s, c);
        cred_done(c);
        size_t i = c - s->creds;
        memmove(c, c + 1, (s->n_creds - i - 1) * sizeof *c);
        s->n_creds--;
}

/* Reads an a{sv} of org.kirod.Auth1.Credential properties into c. */
static int read_props(CredentialSelector *s, sd_bus_message *m, Cred *c) {
        bool was_usable = c->enabled && !c->needs_login;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *str;
                int b;
                uint64_t t;

                r = sd_bus_message_read(m, "s", &key);
                if (r < 0)
                        return r;
                if (streq(key, "Id") && sd_bus_message_read(m, "v", "s", &str) >= 0) {
                        if (free_and_strdup(&c->id, str) < 0)
                                return -ENOMEM;
                } else if (streq(key, "Provider") && sd_bus_message_read(m, "v", "s", &str) >= 0) {
                        if (free_and_strdup(&c->provider, str) < 0)
                                return -ENOMEM;
                } else if (streq(key, "State") && sd_bus_message_read(m, "v", "s", &str) >= 0)
                        c->needs_login = streq(str, "needs-login") || streq(str, "disabled");
                else if (streq(key, "Enabled") && sd_bus_message_read(m, "v", "b", &b) >= 0)
                        c->enabled = b;
                else if (streq(key, "CooldownUntil") && sd_bus_message_read(m, "v", "t", &t) >= 0) {
                        c->cooldown_until = t;
                        if (t == 0)
                                c->throttled = false;
                } else if (streq(key, "CooldownReason") && sd_bus_message_read(m, "v", "s", &str) >= 0) {
                        c->quota = streq(str, "quota-exhausted");
                        c->throttled = streq(str, "throttled");
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
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        if (was_usable && !(c->enabled && !c->needs_login)) {
                log_debug("Credential '%s' is no longer usable.", LOG_ESC(strna(c->id)));
                forget(s, c);
        }
        return 0;
}

/* Reads an a{sa{sv}} of one object; only the Credential interface matters. */
static int read_interfaces(CredentialSelector *s, sd_bus_message *m, const char *path) {
        int r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *iface;
                r = sd_bus_message_read(m, "s", &iface);
                if (r < 0)
                        return r;
                if (streq(iface, KIROD_CREDENTIAL_INTERFACE) && path_startswith_prefix(path)) {
                        Cred *c = add_path(s, path);
                        if (!c)
                                return -ENOMEM;
                        r = read_props(s, m, c);
                } else
                        r = sd_bus_message_skip(m, "a{sv}");
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static void sort_creds(CredentialSelector *s) {
        if (s->n_creds > 1)
                qsort(s->creds, s->n_creds, sizeof *s->creds, cmp_cred);
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *path;
        int r = sd_bus_message_read(m, "o", &path);
        if (r >= 0)
                r = read_interfaces(s, m, path);
        if (r < 0)
                log_debug_errno(r, "Ignoring a malformed InterfacesAdded signal: %m");
        sort_creds(s);
        return 0;
}

static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *path;
        if (sd_bus_message_read(m, "o", &path) >= 0)
                remove_path(s, path);
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *iface, *path = sd_bus_message_get_path(m);
        int r;

        if (!path || !path_startswith_prefix(path))
                return 0;
        r = sd_bus_message_read(m, "s", &iface);
        if (r < 0 || !streq(iface, KIROD_CREDENTIAL_INTERFACE))
                return 0;
        Cred *c = find_path(s, path);
        if (!c) {
                /* A credential we missed (added while GetManagedObjects was under way): learn it now. */
                c = add_path(s, path);
                if (!c)
                        return 0;
        }
        r = read_props(s, m, c);
        if (r < 0)
                log_debug_errno(r, "Ignoring a malformed PropertiesChanged signal: %m");
        sort_creds(s);
        return 0;
}

static int on_policy_reply(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *p;

        s->policy_call = sd_bus_slot_unref(s->policy_call);
        if (sd_bus_message_is_method_error(m, NULL) || sd_bus_message_read(m, "v", "s", &p) < 0)
                return 0;
        s->policy = streq(p, "round-robin") ? POLICY_ROUND_ROBIN :
                    streq(p, "least-used") ? POLICY_LEAST_USED : POLICY_STICKY;
        log_debug("Selection policy: %s.", LOG_ESC(p));
        return 0;
}

static int on_managed_objects(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        int r;

        s->load_call = sd_bus_slot_unref(s->load_call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                log_debug("GetManagedObjects failed: %s", LOG_ESC(strna(sd_bus_message_get_error(m)->name)));
                return 0;
        }
        r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;
                r = sd_bus_message_read(m, "o", &path);
                if (r >= 0)
                        r = read_interfaces(s, m, path);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r < 0) {
                log_warning_errno(r, "kiro-authd sent a malformed credential list; letting it choose: %m");
                selector_clear(s);
                return 0;
        }
        sort_creds(s);
        s->loaded = true;
        log_debug("Following %zu credential(s) of kiro-authd.", s->n_creds);
        return 0;
}

/* Reads kiro-authd's credentials and policy anew (start-up, a new kiro-authd instance). The signal matches
 * are in place already, so nothing between the reply and the next signal is lost. */
static int selector_load(CredentialSelector *s) {
        int r;

        s->load_call = sd_bus_slot_unref(s->load_call);
        s->policy_call = sd_bus_slot_unref(s->policy_call);
        selector_clear(s);
        r = sd_bus_call_method_async(s->bus, &s->load_call, KIROD_BUS_NAME, KIROD_MANAGER_PATH,
                                     "org.freedesktop.DBus.ObjectManager", "GetManagedObjects", on_managed_objects,
                                     s, NULL);
        if (r < 0)
                return r;
        return sd_bus_call_method_async(s->bus, &s->policy_call, KIROD_BUS_NAME, KIROD_MANAGER_PATH,
                                        "org.freedesktop.DBus.Properties", "Get", on_policy_reply, s, "ss",
                                        KIROD_MANAGER_INTERFACE, "SelectionPolicy");
}

/* SelectionPolicy= changed by a reload of kiro-authd: read it again. */
static int on_manager_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) < 0 || !streq(iface, KIROD_MANAGER_INTERFACE))
                return 0;
        s->policy_call = sd_bus_slot_unref(s->policy_call);
        (void) sd_bus_call_method_async(s->bus, &s->policy_call, KIROD_BUS_NAME, KIROD_MANAGER_PATH,
                                        "org.freedesktop.DBus.Properties", "Get", on_policy_reply, s, "ss",
                                        KIROD_MANAGER_INTERFACE, "SelectionPolicy");
        return 0;
}

static int on_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        CredentialSelector *s = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, KIROD_BUS_NAME))
                return 0;
        /* While kiro-authd is away the mirror stays as it was (the tokens do too); a new instance is read
         * afresh. */
        if (!isempty(new_owner))
                (void) selector_load(s);
        return 0;
}

int credential_selector_new(sd_bus *bus, TokenCache *tokens, CredentialSelector **ret) {
        _cleanup_(credential_selector_freep) CredentialSelector *s = calloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        s->bus = sd_bus_ref(bus);
        s->tokens = tokens;
        /* Synchronous, once at start-up before READY=1, like the token cache's: no signal may slip past a
         * match still being installed. sender= the well-known name: the bus daemon matches its owner. */
        static const struct {
                const char *rule;
                sd_bus_message_handler_t handler;
        } matches[] = {
                { "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                  "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" KIROD_BUS_NAME "'",
                  on_owner_changed },
                { "type='signal',sender='" KIROD_BUS_NAME "',path='" KIROD_MANAGER_PATH "',"
                  "interface='org.freedesktop.DBus.ObjectManager',member='InterfacesAdded'",
                  on_interfaces_added },
                { "type='signal',sender='" KIROD_BUS_NAME "',path='" KIROD_MANAGER_PATH "',"
                  "interface='org.freedesktop.DBus.ObjectManager',member='InterfacesRemoved'",
                  on_interfaces_removed },
                { "type='signal',sender='" KIROD_BUS_NAME "',path_namespace='" KIROD_CREDENTIAL_PREFIX "',"
                  "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
                  on_properties_changed },
                { "type='signal',sender='" KIROD_BUS_NAME "',path='" KIROD_MANAGER_PATH "',"
                  "interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'",
                  on_manager_changed },
        };
        _Static_assert(ELEMENTSOF(matches) == ELEMENTSOF(s->matches), "one slot per match");
        for (size_t i = 0; i < ELEMENTSOF(matches); i++) {
                r = sd_bus_add_match(bus, &s->matches[i], matches[i].rule, matches[i].handler, s);
                if (r < 0)
                        return r;
        }
        r = selector_load(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

CredentialSelector *credential_selector_free(CredentialSelector *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(s->matches); i++)
                sd_bus_slot_unref(s->matches[i]);
        sd_bus_slot_unref(s->load_call);
        sd_bus_slot_unref(s->policy_call);
        selector_clear(s);
        for (size_t i = 0; i < SESSIONS_MAX; i++) {
                free(s->sessions[i].key);
                free(s->sessions[i].id);
        }
        free(s->sticky_id);
        sd_bus_unref(s->bus);
        free(s);
        return NULL;
}

static bool cred_of(const Cred *c, const char *provider) {
        return c->id && streq_ptr(c->provider, provider);
}

static bool cred_usable(const Cred *c, const char *provider, usec_t n) {
        return cred_of(c, provider) && c->enabled && !c->needs_login && c->cooldown_until <= n;
}

static bool cred_usable_avoiding(const Cred *c, const char *provider, const char *avoid, usec_t n) {
        return !streq_ptr(c->id, avoid) && cred_usable(c, provider, n);
}


static Session *session_find(CredentialSelector *s, const char *key) {
        for (size_t i = 0; i < SESSIONS_MAX; i++)
                if (streq_ptr(s->sessions[i].key, key))
                        return &s->sessions[i];
        return NULL;
}

static void session_bind(CredentialSelector *s, const char *key, const char *id) {
        Session *e = session_find(s, key);
        if (!e) {
                e = &s->sessions[s->session_next];
                s->session_next = (s->session_next + 1) % SESSIONS_MAX;
                free(e->key);
                e->key = strdup(key);
        }
        if (e->key)
                (void) free_and_strdup(&e->id, id);
}

int credential_selector_pick(CredentialSelector *s, const char *provider, const char *session, const char *avoid,
                             const char **ret_id, usec_t *ret_retry_at) {
        usec_t n = now(CLOCK_REALTIME), soonest_quota = 0;
        Cred *pick = NULL, *soonest_throttled = NULL;
        size_t total = 0;

        assert(s);
        assert(provider);

        if (!s->loaded)
                return 0;

        if (!isempty(session)) {
                Session *e = session_find(s, session);
                Cred *c = e ? find_id(s, e->id) : NULL;
                if (c && cred_usable_avoiding(c, provider, avoid, n))
                        pick = c;
        }
        if (!pick && s->policy == POLICY_STICKY && s->sticky_id) {
                Cred *c = find_id(s, s->sticky_id);
                if (c && cred_usable_avoiding(c, provider, avoid, n))
                        pick = c;
        }
        bool found = pick;
        for (size_t k = 0; !found && k < s->n_creds; k++) {
                size_t i = s->policy == POLICY_ROUND_ROBIN ? (s->rr_next + k) % s->n_creds : k;
                Cred *c = &s->creds[i];
                if (!cred_of(c, provider))
                        continue;
                total++;
                if (cred_usable_avoiding(c, provider, avoid, n)) {
                        if (s->policy == POLICY_LEAST_USED) {
                                if (!pick || c->n_used < pick->n_used)
                                        pick = c;
                                continue;
                        }
                        pick = c;
                        found = true;
                        if (s->policy == POLICY_ROUND_ROBIN)
                                s->rr_next = (i + 1) % s->n_creds;
                        break;
                }
                if (!c->enabled || c->needs_login || streq_ptr(c->id, avoid) || c->cooldown_until <= n)
                        continue;
                if (c->quota) {
                        if (soonest_quota == 0 || c->cooldown_until < soonest_quota)
                                soonest_quota = c->cooldown_until;
                } else if (!soonest_throttled || c->cooldown_until < soonest_throttled->cooldown_until)
                        soonest_throttled = c;
        }
        /* Every enabled credential is cooling down after throttling: the one that comes back first gets the
         * request rather than the client an error at once. A single account throttled once keeps serving. */
        if (!pick)
                pick = soonest_throttled;
        if (!pick) {
                log_debug("None of %zu '%s' credential(s) is usable.", total, provider);
                if (ret_retry_at)
                        *ret_retry_at = soonest_quota;
                return -ENOKEY;
        }
        pick->n_used++;
        if (s->policy == POLICY_STICKY)
                (void) free_and_strdup(&s->sticky_id, pick->id);
        if (!isempty(session))
                session_bind(s, session, pick->id);
        *ret_id = pick->id;
        return 1;
}

void credential_selector_note(CredentialSelector *s, const char *id, const char *kind, usec_t retry_after) {
        Cred *c = s ? find_id(s, id) : NULL;
        if (!c)
                return;
        usec_t n = now(CLOCK_REALTIME);
        if (streq(kind, "throttled") || streq(kind, "quota-exhausted")) {
                c->cooldown_until = MAX(c->cooldown_until, n + MAX(retry_after, USEC_PER_SEC));
                c->quota = streq(kind, "quota-exhausted");
                c->throttled = !c->quota;
        } else if (streq(kind, "suspended")) {
                c->enabled = false;
                forget(s, c);
        } else if (streq(kind, "ok") && !c->quota) {
                c->cooldown_until = 0;
                c->throttled = false;
        }
}

bool credential_selector_throttled(CredentialSelector *s, const char *id) {
        Cred *c = s ? find_id(s, id) : NULL;
        return c && c->throttled;
}

bool credential_selector_has_other(CredentialSelector *s, const char *provider, const char *id) {
        usec_t n = now(CLOCK_REALTIME);
        if (!s)
                return false;
        for (size_t i = 0; i < s->n_creds; i++)
                if (!streq_ptr(s->creds[i].id, id) && cred_usable(&s->creds[i], provider, n))
                        return true;
        return false;
}

bool credential_selector_has_provider(CredentialSelector *s, const char *provider) {
        for (size_t i = 0; s && i < s->n_creds; i++)
                if (cred_of(&s->creds[i], provider))
                        return true;
        return false;
}

size_t credential_selector_count(CredentialSelector *s) {
        return s ? s->n_creds : 0;
}
