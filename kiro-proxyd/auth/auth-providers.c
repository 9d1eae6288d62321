/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Which providers kiro-authd has credentials for, from its ObjectManager and its signals. */
#include <string.h>

#include "bus-names.h"
#include "log.h"
#include "auth/auth-providers.h"

#define OBJECT_MANAGER "org.freedesktop.DBus.ObjectManager"

typedef struct Entry {
        char *path;
        char *provider;
} Entry;

struct ProviderWatch {
        sd_bus *bus;
        sd_bus_slot *added, *removed, *owner, *call;
        Entry *entries;
        size_t n_entries;
};

static void entries_clear(ProviderWatch *w) {
        for (size_t i = 0; i < w->n_entries; i++) {
                free(w->entries[i].path);
                free(w->entries[i].provider);
        }
        free(w->entries);
        w->entries = NULL;
        w->n_entries = 0;
}

static void entry_remove(ProviderWatch *w, const char *path) {
        for (size_t i = 0; i < w->n_entries; i++)
                if (streq(w->entries[i].path, path)) {
                        free(w->entries[i].path);
                        free(w->entries[i].provider);
                        w->entries[i] = w->entries[--w->n_entries];
                        return;
                }
}

static int entry_set(ProviderWatch *w, const char *path, const char *provider) {
        entry_remove(w, path);
        Entry *n = reallocarray(w->entries, w->n_entries + 1, sizeof *n);
        if (!n)
                return -ENOMEM;
        w->entries = n;
        Entry e = { .path = strdup(path), .provider = strdup(provider) };
        if (!e.path || !e.provider) {
                free(e.path);
                free(e.provider);
                return -ENOMEM;
        }
        w->entries[w->n_entries++] = e;
        return 0;
}

bool provider_watch_has(ProviderWatch *w, const char *provider) {
        for (size_t i = 0; w && i < w->n_entries; i++)
                if (streq(w->entries[i].provider, provider))
                        return true;
        return false;
}

/* Reads one a{sa{sv}} (interfaces and their properties) for path. */
static int read_interfaces(ProviderWatch *w, sd_bus_message *m, const char *path) {
        int r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
                const char *iface;
                r = sd_bus_message_read(m, "s", &iface);
                if (r < 0)
                        return r;
                if (!streq(iface, KIROD_CREDENTIAL_INTERFACE)) {
                        r = sd_bus_message_skip(m, "a{sv}");
                } else {
                        r = sd_bus_message_enter_container(m, 'a', "{sv}");
                        if (r < 0)
                                return r;
                        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                                const char *key, *val;
                                r = sd_bus_message_read(m, "s", &key);
                                if (r < 0)
                                        return r;
                                if (streq(key, "Provider") && sd_bus_message_read(m, "v", "s", &val) >= 0) {
                                        r = entry_set(w, path, val);
                                } else
                                        r = sd_bus_message_skip(m, "v");
                                if (r < 0)
                                        return r;
                                r = sd_bus_message_exit_container(m);
                                if (r < 0)
                                        return r;
                        }
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(m);
                }
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

static int on_managed_objects(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ProviderWatch *w = userdata;
        int r;

        w->call = sd_bus_slot_unref(w->call);
        if (sd_bus_message_is_method_error(m, NULL)) {
                log_debug("kiro-authd did not list its credentials: %s", sd_bus_message_get_error(m)->message);
                return 0;
        }
        entries_clear(w);
        r = sd_bus_message_enter_container(m, 'a', "{oa{sa{sv}}}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;
                r = sd_bus_message_read(m, "o", &path);
                if (r >= 0)
                        r = read_interfaces(w, m, path);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        if (r < 0)
                log_debug_errno(r, "Cannot read kiro-authd's credential list: %m");
        return 0;
}

static void refetch(ProviderWatch *w) {
        w->call = sd_bus_slot_unref(w->call);
        int r = sd_bus_call_method_async(w->bus, &w->call, KIROD_BUS_NAME, KIROD_MANAGER_PATH, OBJECT_MANAGER,
                                         "GetManagedObjects", on_managed_objects, w, NULL);
        if (r < 0)
                log_debug_errno(r, "Cannot ask kiro-authd for its credentials: %m");
}

static int on_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ProviderWatch *w = userdata;
        const char *path;
        if (sd_bus_message_read(m, "o", &path) >= 0)
                (void) read_interfaces(w, m, path);
        return 0;
}

static int on_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ProviderWatch *w = userdata;
        const char *path;
        if (sd_bus_message_read(m, "o", &path) >= 0)
                entry_remove(w, path);
        return 0;
}

static int on_owner(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ProviderWatch *w = userdata;
        const char *name, *old_owner, *new_owner;
        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, KIROD_BUS_NAME))
                return 0;
        entries_clear(w);
        if (!isempty(new_owner))
                refetch(w);
        return 0;
}

int provider_watch_new(sd_bus *bus, ProviderWatch **ret) {
        _cleanup_(provider_watch_freep) ProviderWatch *w = calloc(1, sizeof *w);
        int r;

        if (!w)
                return -ENOMEM;
        w->bus = sd_bus_ref(bus);
        r = sd_bus_match_signal_async(bus, &w->added, KIROD_BUS_NAME, KIROD_MANAGER_PATH, OBJECT_MANAGER,
                                      "InterfacesAdded", on_added, NULL, w);
        if (r >= 0)
                r = sd_bus_match_signal_async(bus, &w->removed, KIROD_BUS_NAME, KIROD_MANAGER_PATH, OBJECT_MANAGER,
                                              "InterfacesRemoved", on_removed, NULL, w);
        if (r >= 0)
                r = sd_bus_match_signal_async(bus, &w->owner, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                              "org.freedesktop.DBus", "NameOwnerChanged", on_owner, NULL, w);
        if (r < 0)
                return r;
        refetch(w);
        *ret = TAKE_PTR(w);
        return 0;
}

ProviderWatch *provider_watch_free(ProviderWatch *w) {
        if (!w)
                return NULL;
        sd_bus_slot_unref(w->added);
        sd_bus_slot_unref(w->removed);
        sd_bus_slot_unref(w->owner);
        sd_bus_slot_unref(w->call);
        entries_clear(w);
        sd_bus_unref(w->bus);
        free(w);
        return NULL;
}
