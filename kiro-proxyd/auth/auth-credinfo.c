/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd's credentials through org.freedesktop.DBus.ObjectManager.GetManagedObjects. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "auth/auth-credinfo.h"

#define CREDINFO_TIMEOUT_USEC (2 * 1000 * 1000)

typedef struct Fetch {
        CredInfoCallback cb;
        void *userdata;
} Fetch;

static void credinfo_done(CredInfo *l, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(l[i].id);
                free(l[i].provider);
                free(l[i].state);
        }
        free(l);
}

bool credinfo_usable(const CredInfo *c) {
        return c->enabled && (streq_ptr(c->state, "active") || streq_ptr(c->state, "refreshing"));
}

static int read_refreshes(sd_bus_message *m, CredInfo *c) {
        int r = sd_bus_message_enter_container(m, 'v', "a{st}");
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(m, 'a', "{st}");
        if (r < 0)
                return r;
        const char *name;
        uint64_t n;
        while ((r = sd_bus_message_read(m, "{st}", &name, &n)) > 0) {
                RefreshResultKind k = refresh_result_kind_from_string(name);
                if (k >= 0)
                        c->refreshes[k] = n;
        }
        if (r < 0)
                return r;
        c->have_refreshes = true;
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int read_props(sd_bus_message *m, CredInfo *c) {
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *name, *s;
                r = sd_bus_message_read(m, "s", &name);
                if (r < 0)
                        return r;
                char **target = streq(name, "Id") ? &c->id : streq(name, "Provider") ? &c->provider
                                : streq(name, "State") ? &c->state : NULL;
                if (target) {
                        r = sd_bus_message_read(m, "v", "s", &s);
                        if (r >= 0) {
                                free(*target);
                                *target = strdup(s);
                                if (!*target)
                                        r = -ENOMEM;
                        }
                } else if (streq(name, "Enabled")) {
                        int b;
                        r = sd_bus_message_read(m, "v", "b", &b);
                        c->enabled = r >= 0 && b;
                } else if (streq(name, "AccessTokenExpiresAt"))
                        r = sd_bus_message_read(m, "v", "t", &c->expires_at);
                else if (streq(name, "CooldownUntil"))
                        r = sd_bus_message_read(m, "v", "t", &c->cooldown_until);
                else if (streq(name, "ConsecutiveFailures"))
                        r = sd_bus_message_read(m, "v", "u", &c->failures);
                else if (streq(name, "Refreshes"))
                        r = read_refreshes(m, c);
                else if (streq(name, "UsageUsed"))
                        r = sd_bus_message_read(m, "v", "d", &c->quota_used);
                else if (streq(name, "UsageLimit"))
                        r = sd_bus_message_read(m, "v", "d", &c->quota_limit);
                else if (streq(name, "UsageResetAt"))
                        r = sd_bus_message_read(m, "v", "t", &c->quota_reset_at);
                else if (streq(name, "UsageFetchedAt"))
                        r = sd_bus_message_read(m, "v", "t", &c->quota_fetched_at);
                else
                        r = sd_bus_message_skip(m, "v");
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

static int parse(sd_bus_message *m, CredInfo **ret, size_t *ret_n) {
        CredInfo *l = NULL;
        size_t n = 0;
        int r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;
                r = sd_bus_message_read(m, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
                while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                        const char *iface;
                        r = sd_bus_message_read(m, "s", &iface);
                        if (r >= 0 && streq(iface, KIROD_CREDENTIAL_INTERFACE)) {
                                CredInfo *a = realloc(l, sizeof(CredInfo) * (n + 1));
                                if (!a) {
                                        r = -ENOMEM;
                                        break;
                                }
                                l = a;
                                l[n] = (CredInfo) {};
                                r = read_props(m, &l[n++]);
                        } else if (r >= 0)
                                r = sd_bus_message_skip(m, "a{sv}");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(m);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                credinfo_done(l, n);
                return r;
        }
        *ret = l;
        *ret_n = n;
        return 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Fetch *f = userdata;
        const sd_bus_error *err = sd_bus_message_get_error(m);
        CredInfo *l = NULL;
        size_t n = 0;

        if (err)
                f->cb(-sd_bus_message_get_errno(m) ?: -EIO, "kiro-authd is not reachable on the bus", NULL, 0, f->userdata);
        else if (parse(m, &l, &n) < 0)
                f->cb(-EBADMSG, "kiro-authd sent a malformed credential list", NULL, 0, f->userdata);
        else
                f->cb(0, NULL, l, n, f->userdata);
        credinfo_done(l, n);
        free(f);
        return 0;
}

int credinfo_fetch(sd_bus *bus, CredInfoCallback cb, void *userdata) {
        Fetch *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->cb = cb;
        f->userdata = userdata;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, KIROD_BUS_NAME, KIROD_MANAGER_PATH,
                                               "org.freedesktop.DBus.ObjectManager", "GetManagedObjects");
        /* A floating slot: the reply, or the timeout or disconnect error, always comes; a health check
         * must not hang for the bus's default 25 s. */
        if (r >= 0)
                r = sd_bus_call_async(bus, NULL, m, on_reply, f, CREDINFO_TIMEOUT_USEC);
        if (r < 0) {
                free(f);
                return r;
        }
        return 0;
}
