/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's calls to kiro-authd: reading credentials, importing, refreshing, removing, enabling. */
#include <assert.h>
#include <stddef.h>

#include "bus-names.h"
#include "kiroctl-bus.h"
#include "kiroctl-util.h"

#define OBJECT_MANAGER_INTERFACE "org.freedesktop.DBus.ObjectManager"
#define PROPERTIES_INTERFACE "org.freedesktop.DBus.Properties"

void credential_done(Credential *c) {
        if (!c)
                return;
        free(c->object_path);
        free(c->id);
        free(c->provider);
        free(c->auth_method);
        free(c->source);
        free(c->link);
        free(c->link_message);
        free(c->state);
        free(c->last_error);
        free(c->cooldown_reason);
        free(c->region);
        free(c->profile_arn);
        *c = (Credential) {};
}

Credential *credential_array_free(Credential *a, size_t n) {
        for (size_t i = 0; a && i < n; i++)
                credential_done(a + i);
        free(a);
        return NULL;
}

typedef struct PropertyMap {
        const char *name;
        char type;
        size_t offset;
} PropertyMap;

static const PropertyMap credential_properties[] = {
        { "Id",                   's', offsetof(Credential, id)                      },
        { "Provider",             's', offsetof(Credential, provider)                },
        { "AuthMethod",           's', offsetof(Credential, auth_method)             },
        { "Source",               's', offsetof(Credential, source)                  },
        { "Link",                 's', offsetof(Credential, link)                    },
        { "LinkMessage",          's', offsetof(Credential, link_message)            },
        { "State",                's', offsetof(Credential, state)                   },
        { "Enabled",              'b', offsetof(Credential, enabled)                 },
        { "AccessTokenExpiresAt", 't', offsetof(Credential, access_token_expires_at) },
        { "LastRefreshAt",        't', offsetof(Credential, last_refresh_at)         },
        { "NextRefreshAt",        't', offsetof(Credential, next_refresh_at)         },
        { "ConsecutiveFailures",  'u', offsetof(Credential, consecutive_failures)    },
        { "LastError",            's', offsetof(Credential, last_error)              },
        { "CooldownUntil",        't', offsetof(Credential, cooldown_until)          },
        { "CooldownReason",       's', offsetof(Credential, cooldown_reason)         },
        { "Region",               's', offsetof(Credential, region)                  },
        { "ProfileArn",           's', offsetof(Credential, profile_arn)             },
        { "Unsaved",              'b', offsetof(Credential, unsaved)                 },
        { "RequestsLastHour",     'u', offsetof(Credential, requests_last_hour)      },
        { "ErrorsLastHour",       'u', offsetof(Credential, errors_last_hour)        },
        { "FailoversLastHour",    'u', offsetof(Credential, failovers_last_hour)     },
};

static int read_property(sd_bus_message *m, const PropertyMap *p, Credential *c) {
        const char *contents = NULL;
        char type, want[2] = { p->type, 0 };
        void *where = (uint8_t *) c + p->offset;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (type != 'v' || !streq_ptr(contents, want))
                return sd_bus_message_skip(m, "v");

        r = sd_bus_message_enter_container(m, 'v', want);
        if (r < 0)
                return r;
        switch (p->type) {
        case 's': {
                const char *s;
                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                r = free_and_strdup((char **) where, s);
                break;
        }
        case 'b': {
                int b;
                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r >= 0)
                        *(bool *) where = b;
                break;
        }
        case 't':
                r = sd_bus_message_read_basic(m, 't', (uint64_t *) where);
                break;
        case 'u':
                r = sd_bus_message_read_basic(m, 'u', (uint32_t *) where);
                break;
        default:
                assert_not_reached();
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

int credential_read_properties(sd_bus_message *m, Credential *c) {
        int r;

        assert(m);
        assert(c);

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const PropertyMap *p = NULL;
                const char *name;

                r = sd_bus_message_read_basic(m, 's', &name);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < ELEMENTSOF(credential_properties); i++)
                        if (streq(credential_properties[i].name, name)) {
                                p = credential_properties + i;
                                break;
                        }
                r = p ? read_property(m, p, c) : sd_bus_message_skip(m, "v");
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

/* The object path names the credential even when the daemon did not send Id. */
static int credential_finish(Credential *c, const char *object_path) {
        int r;

        r = free_and_strdup(&c->object_path, object_path);
        if (r < 0)
                return r;
        if (isempty(c->id)) {
                free(c->id);
                c->id = NULL;
                r = kirod_credential_id_from_path(object_path, &c->id);
                if (r < 0)
                        return free_and_strdup(&c->id, object_path);
        }
        return 0;
}

int bus_get_credential(sd_bus *bus, const char *object_path, Credential *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(credential_done) Credential c = {};
        int r;

        assert(bus);
        assert(object_path);
        assert(ret);

        r = sd_bus_call_method(bus, KIROD_BUS_NAME, object_path, PROPERTIES_INTERFACE, "GetAll", error, &reply,
                               "s", KIROD_CREDENTIAL_INTERFACE);
        if (r < 0)
                return r;
        r = credential_read_properties(reply, &c);
        if (r < 0)
                return r;
        r = credential_finish(&c, object_path);
        if (r < 0)
                return r;

        *ret = c;
        c = (Credential) {};
        return 0;
}

void credential_list_done(CredentialList *l) {
        l->items = credential_array_free(l->items, l->n);
        l->n = 0;
}

static Credential *credential_list_new_item(CredentialList *l) {
        Credential *a = reallocarray(l->items, l->n + 1, sizeof(Credential));
        if (!a)
                return NULL;
        l->items = a;
        a[l->n] = (Credential) {};
        return a + l->n++;
}

static int credential_compare(const void *a, const void *b) {
        const Credential *x = a, *y = b;
        return strcmp(strempty(x->id), strempty(y->id));
}

static int list_via_object_manager(sd_bus *bus, CredentialList *l, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, KIROD_BUS_NAME, KIROD_MANAGER_PATH, OBJECT_MANAGER_INTERFACE,
                               "GetManagedObjects", error, &reply, NULL);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
                const char *path;

                r = sd_bus_message_read_basic(reply, 'o', &path);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
                if (r < 0)
                        return r;
                while ((r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
                        const char *interface;

                        r = sd_bus_message_read_basic(reply, 's', &interface);
                        if (r < 0)
                                return r;
                        if (streq(interface, KIROD_CREDENTIAL_INTERFACE)) {
                                Credential *c = credential_list_new_item(l);
                                if (!c)
                                        return -ENOMEM;
                                r = credential_read_properties(reply, c);
                                if (r < 0)
                                        return r;
                                r = credential_finish(c, path);
                        } else
                                r = sd_bus_message_skip(reply, "a{sv}");
                        if (r < 0)
                                return r;
                        r = sd_bus_message_exit_container(reply);
                        if (r < 0)
                                return r;
                }
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(reply);
}

static int list_via_manager(sd_bus *bus, CredentialList *l, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r;

        r = sd_bus_call_method(bus, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                               "ListCredentials", error, &reply, "t", UINT64_C(0));
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(reply, 'a', "o");
        if (r < 0)
                return r;
        for (;;) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                const char *path;
                Credential *c;

                r = sd_bus_message_read_basic(reply, 'o', &path);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                c = credential_list_new_item(l);
                if (!c)
                        return -ENOMEM;
                r = bus_get_credential(bus, path, c, &e);
                if (r < 0) {
                        /* Removed between the two calls: not an error, just gone. */
                        if (sd_bus_error_has_names(&e, "org.freedesktop.DBus.Error.UnknownObject",
                                                   KIROD_ERROR_NO_SUCH_CREDENTIAL)) {
                                credential_done(c);
                                l->n--;
                                continue;
                        }
                        (void) sd_bus_error_move(error, &e);
                        return r;
                }
        }
        return sd_bus_message_exit_container(reply);
}

int bus_list_credentials(sd_bus *bus, CredentialList *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(credential_list_done) CredentialList l = {};
        int r;

        assert(bus);
        assert(ret);

        r = list_via_object_manager(bus, &l, &e);
        if (r < 0 && sd_bus_error_has_names(&e, "org.freedesktop.DBus.Error.UnknownMethod",
                                            "org.freedesktop.DBus.Error.UnknownInterface",
                                            "org.freedesktop.DBus.Error.UnknownObject")) {
                credential_list_done(&l);
                sd_bus_error_free(&e);
                r = list_via_manager(bus, &l, &e);
        }
        if (r < 0) {
                (void) sd_bus_error_move(error, &e);
                return r;
        }

        if (l.n > 1)
                qsort(l.items, l.n, sizeof(Credential), credential_compare);
        *ret = l;
        l = (CredentialList) {};
        return 0;
}

int bus_import(sd_bus *bus, const char *format, int fd, const ImportOptions *o, char **ret_path,
               sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        const char *path;
        char *p;
        int r;

        assert(bus);
        assert(format);
        assert(fd >= 0);
        assert(o);
        assert(ret_path);

        r = sd_bus_message_new_method_call(bus, &m, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                           "Import");
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "sh", format, fd);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        if (o->id) {
                r = sd_bus_message_append(m, "{sv}", "id", "s", o->id);
                if (r < 0)
                        return r;
        }
        if (o->region) {
                r = sd_bus_message_append(m, "{sv}", "region", "s", o->region);
                if (r < 0)
                        return r;
        }
        if (o->proxy) {
                r = sd_bus_message_append(m, "{sv}", "proxy", "s", o->proxy);
                if (r < 0)
                        return r;
        }
        if (o->replace) {
                r = sd_bus_message_append(m, "{sv}", "replace", "b", 1);
                if (r < 0)
                        return r;
        }
        if (o->source_path) {
                r = sd_bus_message_append(m, "{sv}", "source_path", "s", o->source_path);
                if (r < 0)
                        return r;
        }
        if (o->registration_fd >= 0) {
                r = sd_bus_message_append(m, "{sv}", "registration", "h", o->registration_fd);
                if (r < 0)
                        return r;
        }
        if (o->link_dir_fd >= 0 && o->link_name) {
                r = sd_bus_message_append(m, "{sv}{sv}", "link_dir", "h", o->link_dir_fd, "link_name", "s", o->link_name);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(m);
        if (r < 0)
                return r;
        r = sd_bus_message_append(m, "t", UINT64_C(0));
        if (r < 0)
                return r;

        r = sd_bus_call(bus, m, KIROCTL_SLOW_CALL_TIMEOUT_USEC, error, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;

        p = strdup(path);
        if (!p)
                return -ENOMEM;
        *ret_path = p;
        return 0;
}

static int credential_call(sd_bus *bus, const char *id, const char *method, uint64_t timeout, sd_bus_error *error,
                           int enabled) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        assert(bus);
        assert(id);

        r = kirod_credential_path(id, &path);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, KIROD_BUS_NAME, path, KIROD_CREDENTIAL_INTERFACE, method);
        if (r < 0)
                return r;
        if (enabled >= 0) {
                r = sd_bus_message_append(m, "b", enabled);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_append(m, "t", UINT64_C(0));
        if (r < 0)
                return r;
        return sd_bus_call(bus, m, timeout, error, NULL);
}

int bus_credential_refresh(sd_bus *bus, const char *id, sd_bus_error *error) {
        return credential_call(bus, id, "Refresh", KIROCTL_SLOW_CALL_TIMEOUT_USEC, error, -1);
}

int bus_credential_remove(sd_bus *bus, const char *id, sd_bus_error *error) {
        return credential_call(bus, id, "Remove", 0, error, -1);
}

int bus_credential_set_enabled(sd_bus *bus, const char *id, bool enabled, sd_bus_error *error) {
        return credential_call(bus, id, "SetEnabled", 0, error, enabled);
}
