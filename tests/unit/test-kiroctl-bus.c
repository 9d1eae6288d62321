/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl's bus calls against a fake org.kirod.Auth1 over a socketpair (no bus daemon). */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-id128.h>

#include "bus-names.h"
#include "fileio.h"
#include "kiroctl-bus.h"
#include "kiroctl-util.h"
#include "tests.h"

/* ---- the fake daemon (runs in a child process) ---------------------------------------------------- */

typedef struct FakeCred {
        char *id, *path, *provider, *auth_method, *source, *state, *last_error, *region, *profile_arn;
        int enabled;
        uint64_t expires, last_refresh, next_refresh, cooldown;
        uint32_t failures;
        bool removed;
} FakeCred;

static FakeCred fake_creds[3];
static size_t n_fake_creds;
static char last_import[4096];

static void fake_add(const char *id, const char *method, const char *state, uint64_t expires) {
        FakeCred *c = fake_creds + n_fake_creds++;
        *c = (FakeCred) {
                .id = strdup(id), .provider = strdup("kiro"), .auth_method = strdup(method),
                .source = strdup("refresh-token"), .state = strdup(state), .last_error = strdup(""),
                .region = strdup("us-east-1"), .profile_arn = strdup("arn:aws:codewhisperer:us-east-1:1:profile/X"),
                .enabled = 1, .expires = expires, .last_refresh = 11, .next_refresh = 22, .cooldown = 0,
                .failures = 7,
        };
        ASSERT_OK(kirod_credential_path(id, &c->path));
}

static FakeCred *fake_find(const char *path) {
        for (size_t i = 0; i < n_fake_creds; i++)
                if (!fake_creds[i].removed && streq(fake_creds[i].path, path))
                        return fake_creds + i;
        return NULL;
}

static int fake_find_cb(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                        sd_bus_error *error) {
        FakeCred *c = fake_find(path);
        if (!c)
                return 0;
        *found = c;
        return 1;
}

static int fake_enumerate(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        char **l = NULL;
        for (size_t i = 0; i < n_fake_creds; i++)
                if (!fake_creds[i].removed)
                        ASSERT_OK(strv_extend(&l, fake_creds[i].path));
        *nodes = l;
        return 1;
}

static int property_get_future(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        /* A property a newer daemon might add, of a type kiroctl does not expect. */
        return sd_bus_message_append(reply, "as", 2, "x", "y");
}

static int method_refresh(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeCred *c = userdata;
        uint64_t flags;
        int r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "flags");
        if (streq(c->state, "needs-login"))
                return sd_bus_error_setf(error, KIROD_ERROR_NEEDS_LOGIN, "Credential '%s' needs a new login.", c->id);
        c->expires += 3600;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_remove(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeCred *c = userdata;
        uint64_t flags;
        int r = sd_bus_message_read(m, "t", &flags);
        if (r < 0)
                return r;
        c->removed = true;
        return sd_bus_reply_method_return(m, NULL);
}

static int method_set_enabled(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        FakeCred *c = userdata;
        uint64_t flags;
        int b, r = sd_bus_message_read(m, "bt", &b, &flags);
        if (r < 0)
                return r;
        c->enabled = b;
        free(c->state);
        c->state = strdup(b ? "active" : "disabled");
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable fake_credential_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", NULL, offsetof(FakeCred, id), 0),
        SD_BUS_PROPERTY("Provider", "s", NULL, offsetof(FakeCred, provider), 0),
        SD_BUS_PROPERTY("AuthMethod", "s", NULL, offsetof(FakeCred, auth_method), 0),
        SD_BUS_PROPERTY("FutureProperty", "as", property_get_future, 0, 0),
        SD_BUS_PROPERTY("Source", "s", NULL, offsetof(FakeCred, source), 0),
        SD_BUS_PROPERTY("State", "s", NULL, offsetof(FakeCred, state), 0),
        SD_BUS_PROPERTY("Enabled", "b", NULL, offsetof(FakeCred, enabled), 0),
        SD_BUS_PROPERTY("AccessTokenExpiresAt", "t", NULL, offsetof(FakeCred, expires), 0),
        SD_BUS_PROPERTY("LastRefreshAt", "t", NULL, offsetof(FakeCred, last_refresh), 0),
        SD_BUS_PROPERTY("NextRefreshAt", "t", NULL, offsetof(FakeCred, next_refresh), 0),
        SD_BUS_PROPERTY("ConsecutiveFailures", "u", NULL, offsetof(FakeCred, failures), 0),
        SD_BUS_PROPERTY("LastError", "s", NULL, offsetof(FakeCred, last_error), 0),
        SD_BUS_PROPERTY("CooldownUntil", "t", NULL, offsetof(FakeCred, cooldown), 0),
        SD_BUS_PROPERTY("Region", "s", NULL, offsetof(FakeCred, region), 0),
        SD_BUS_PROPERTY("ProfileArn", "s", NULL, offsetof(FakeCred, profile_arn), 0),
        SD_BUS_METHOD("Refresh", "t", "", method_refresh, 0),
        SD_BUS_METHOD("Remove", "t", "", method_remove, 0),
        SD_BUS_METHOD("SetEnabled", "bt", "", method_set_enabled, 0),
        SD_BUS_VTABLE_END
};

static void summary_add(const char *format, ...) _printf_(1, 2);
static void summary_add(const char *format, ...) {
        size_t l = strlen(last_import);
        va_list ap;
        va_start(ap, format);
        vsnprintf(last_import + l, sizeof last_import - l, format, ap);
        va_end(ap);
}

/* Describes an fd: "sealed:<content>" for a fully sealed memfd, "unsealed:<content>" otherwise. */
static void summary_add_fd(int fd) {
        char *buf = NULL;
        size_t size = 0;
        int seals = fcntl(fd, F_GET_SEALS);

        ASSERT_OK(read_full_fd(fd, 1 << 20, &buf, &size));
        summary_add("%s:%s", seals == (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) ? "sealed" : "unsealed",
                    buf);
        free(buf);
}

static int method_import(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        const char *format, *key;
        uint64_t flags;
        int fd, r;

        last_import[0] = 0;
        r = sd_bus_message_read(m, "sh", &format, &fd);
        if (r < 0)
                return r;
        summary_add("format=%s data=", format);
        summary_add_fd(fd);

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *contents;
                char type;

                ASSERT_OK(sd_bus_message_read(m, "s", &key));
                ASSERT_OK(sd_bus_message_peek_type(m, &type, &contents));
                summary_add(" %s(%s)=", key, contents);
                if (streq(contents, "s")) {
                        const char *s;
                        ASSERT_OK(sd_bus_message_read(m, "v", "s", &s));
                        summary_add("%s", s);
                } else if (streq(contents, "b")) {
                        int b;
                        ASSERT_OK(sd_bus_message_read(m, "v", "b", &b));
                        summary_add("%d", b);
                } else if (streq(contents, "h")) {
                        int h;
                        ASSERT_OK(sd_bus_message_read(m, "v", "h", &h));
                        summary_add_fd(h);
                } else
                        ASSERT_OK(sd_bus_message_skip(m, "v"));
                ASSERT_OK(sd_bus_message_exit_container(m));
        }
        ASSERT_OK(r);
        ASSERT_OK(sd_bus_message_exit_container(m));
        ASSERT_OK(sd_bus_message_read(m, "t", &flags));
        summary_add(" flags=%" PRIu64, flags);

        if (streq(format, "api-key"))
                return sd_bus_error_set(error, KIROD_ERROR_CREDENTIAL_EXISTS, "Credential 'api-key' exists already.");
        return sd_bus_reply_method_return(m, "o", fake_creds[0].path);
}

static int method_last_import(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        return sd_bus_reply_method_return(m, "s", last_import);
}

static int method_list(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        uint64_t flags;

        ASSERT_OK(sd_bus_message_read(m, "t", &flags));
        ASSERT_OK(sd_bus_message_new_method_return(m, &reply));
        ASSERT_OK(sd_bus_message_open_container(reply, 'a', "o"));
        for (size_t i = 0; i < n_fake_creds; i++)
                if (!fake_creds[i].removed)
                        ASSERT_OK(sd_bus_message_append(reply, "o", fake_creds[i].path));
        /* One that vanished between the list and the GetAll. */
        ASSERT_OK(sd_bus_message_append(reply, "o", KIROD_CREDENTIAL_PREFIX "/vanished"));
        ASSERT_OK(sd_bus_message_close_container(reply));
        return sd_bus_send(NULL, reply, NULL);
}

static const sd_bus_vtable fake_manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("Import", "sha{sv}t", "o", method_import, 0),
        SD_BUS_METHOD("ListCredentials", "t", "ao", method_list, 0),
        SD_BUS_METHOD("LastImport", "", "s", method_last_import, 0),
        SD_BUS_VTABLE_END
};

static _Noreturn void fake_daemon(int fd, bool object_manager) {
        sd_bus *bus = NULL;
        sd_id128_t id;
        int r;

        fake_add("b.ide", "idc", "needs-login", 5000);
        fake_add("a-main", "social", "active", 1000);
        fake_add("c key", "api-key", "active", UINT64_MAX);

        ASSERT_OK(sd_id128_randomize(&id));
        ASSERT_OK(sd_bus_new(&bus));
        ASSERT_OK(sd_bus_set_fd(bus, fd, fd));
        ASSERT_OK(sd_bus_set_server(bus, 1, id));
        ASSERT_OK(sd_bus_negotiate_fds(bus, 1));
        ASSERT_OK(sd_bus_add_object_vtable(bus, NULL, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                           fake_manager_vtable, NULL));
        ASSERT_OK(sd_bus_add_fallback_vtable(bus, NULL, KIROD_CREDENTIAL_PREFIX, KIROD_CREDENTIAL_INTERFACE,
                                             fake_credential_vtable, fake_find_cb, NULL));
        ASSERT_OK(sd_bus_add_node_enumerator(bus, NULL, KIROD_CREDENTIAL_PREFIX, fake_enumerate, NULL));
        if (object_manager)
                ASSERT_OK(sd_bus_add_object_manager(bus, NULL, KIROD_MANAGER_PATH));
        ASSERT_OK(sd_bus_start(bus));

        for (;;) {
                r = sd_bus_process(bus, NULL);
                if (r < 0)
                        break;
                if (r > 0)
                        continue;
                if (sd_bus_wait(bus, UINT64_MAX) < 0)
                        break;
        }
        /* The client hung up: done. No atexit()/leak checks for the copy of the parent's heap. */
        _exit(r == -ECONNRESET || r == -ENOTCONN ? 0 : 3);
}

/* ---- the client side ---------------------------------------------------------------------------- */

typedef struct Fake {
        sd_bus *bus;
        pid_t pid;
} Fake;

static Fake fake_start(bool object_manager) {
        Fake f = {};
        int sv[2];

        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        f.pid = fork();
        ASSERT_TRUE(f.pid >= 0);
        if (f.pid == 0) {
                close(sv[0]);
                fake_daemon(sv[1], object_manager);
        }
        close(sv[1]);

        ASSERT_OK(kirod_bus_errors_register());
        ASSERT_OK(sd_bus_new(&f.bus));
        ASSERT_OK(sd_bus_set_fd(f.bus, sv[0], sv[0]));
        ASSERT_OK(sd_bus_negotiate_fds(f.bus, 1));
        ASSERT_OK(sd_bus_start(f.bus));
        return f;
}

static void fake_stop(Fake *f) {
        int status;

        f->bus = sd_bus_flush_close_unref(f->bus);
        ASSERT_EQ(waitpid(f->pid, &status, 0), f->pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
}

static void check_list(bool object_manager) {
        Fake f = fake_start(object_manager);
        sd_bus_error e = SD_BUS_ERROR_NULL;
        CredentialList list = {};
        Credential *l;

        ASSERT_OK(bus_list_credentials(f.bus, &list, &e));
        ASSERT_FALSE(sd_bus_error_is_set(&e));
        ASSERT_EQ(list.n, 3);
        l = list.items;

        /* Sorted by id, every property read, the unknown one skipped. */
        ASSERT_STREQ(l[0].id, "a-main");
        ASSERT_STREQ(l[1].id, "b.ide");
        ASSERT_STREQ(l[2].id, "c key");
        ASSERT_STREQ(l[0].object_path, KIROD_CREDENTIAL_PREFIX "/a_2dmain");
        ASSERT_STREQ(l[0].provider, "kiro");
        ASSERT_STREQ(l[0].auth_method, "social");
        ASSERT_STREQ(l[0].source, "refresh-token");
        ASSERT_STREQ(l[0].state, "active");
        ASSERT_TRUE(l[0].enabled);
        ASSERT_EQ(l[0].access_token_expires_at, 1000);
        ASSERT_EQ(l[0].last_refresh_at, 11);
        ASSERT_EQ(l[0].next_refresh_at, 22);
        ASSERT_EQ(l[0].consecutive_failures, 7);
        ASSERT_STREQ(l[0].last_error, "");
        ASSERT_EQ(l[0].cooldown_until, 0);
        ASSERT_STREQ(l[0].region, "us-east-1");
        ASSERT_STREQ(l[0].profile_arn, "arn:aws:codewhisperer:us-east-1:1:profile/X");
        ASSERT_STREQ(l[1].state, "needs-login");
        ASSERT_TRUE(l[2].access_token_expires_at == UINT64_MAX);

        credential_list_done(&list);
        fake_stop(&f);
}

TEST(list_with_object_manager) {
        check_list(true);
}

TEST(list_without_object_manager) {
        /* Falls back to ListCredentials + GetAll, and skips an object that is gone meanwhile. */
        check_list(false);
}

TEST(get_missing) {
        Fake f = fake_start(true);
        sd_bus_error e = SD_BUS_ERROR_NULL;
        Credential c = {};

        ASSERT_TRUE(bus_get_credential(f.bus, KIROD_CREDENTIAL_PREFIX "/nope", &c, &e) < 0);
        ASSERT_STREQ(e.name, "org.freedesktop.DBus.Error.UnknownObject");
        ASSERT_NULL(c.id);
        sd_bus_error_free(&e);
        fake_stop(&f);
}

static char *last_import_summary(sd_bus *bus) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *s;

        ASSERT_OK(sd_bus_call_method(bus, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE, "LastImport",
                                     NULL, &reply, NULL));
        ASSERT_OK(sd_bus_message_read(reply, "s", &s));
        return strdup(s);
}

TEST(import_passes_fds_and_options) {
        Fake f = fake_start(true);
        sd_bus_error e = SD_BUS_ERROR_NULL;
        ImportOptions o = IMPORT_OPTIONS_NULL;
        char *path = NULL, *s;
        int data, reg;

        ASSERT_OK(memfd_new_sealed("test", "{\"token\":1}", 11, &data));
        ASSERT_OK(memfd_new_sealed("test", "{\"reg\":2}", 9, &reg));
        o.id = "main";
        o.region = "eu-central-1";
        o.replace = true;
        o.source_path = "/home/u/.aws/sso/cache/kiro-auth-token.json";
        o.registration_fd = reg;

        ASSERT_OK(bus_import(f.bus, "kiro-ide-json", data, &o, &path, &e));
        ASSERT_STREQ(path, KIROD_CREDENTIAL_PREFIX "/b_2eide");
        s = last_import_summary(f.bus);
        ASSERT_STREQ(s, "format=kiro-ide-json data=sealed:{\"token\":1} id(s)=main region(s)=eu-central-1 replace(b)=1 "
                        "source_path(s)=/home/u/.aws/sso/cache/kiro-auth-token.json registration(h)=sealed:{\"reg\":2} "
                        "flags=0");
        free(s);
        free(path);

        /* Only what was given. */
        o = IMPORT_OPTIONS_NULL;
        ASSERT_OK(bus_import(f.bus, "refresh-token", data, &o, &path, &e));
        s = last_import_summary(f.bus);
        ASSERT_STREQ(s, "format=refresh-token data=sealed:{\"token\":1} flags=0");
        free(s);
        free(path);

        /* An error comes back with its name and errno. */
        ASSERT_ERROR(bus_import(f.bus, "api-key", data, &o, &path, &e), EEXIST);
        ASSERT_STREQ(e.name, KIROD_ERROR_CREDENTIAL_EXISTS);
        sd_bus_error_free(&e);

        close(data);
        close(reg);
        fake_stop(&f);
}

TEST(refresh_enable_remove) {
        Fake f = fake_start(true);
        sd_bus_error e = SD_BUS_ERROR_NULL;
        Credential c = {};

        ASSERT_OK(bus_credential_refresh(f.bus, "a-main", &e));
        ASSERT_OK(bus_get_credential(f.bus, KIROD_CREDENTIAL_PREFIX "/a_2dmain", &c, &e));
        ASSERT_EQ(c.access_token_expires_at, 1000 + 3600);
        credential_done(&c);

        ASSERT_ERROR(bus_credential_refresh(f.bus, "b.ide", &e), EKEYEXPIRED);
        ASSERT_STREQ(e.name, KIROD_ERROR_NEEDS_LOGIN);
        ASSERT_STREQ(e.message, "Credential 'b.ide' needs a new login.");
        sd_bus_error_free(&e);

        ASSERT_OK(bus_credential_set_enabled(f.bus, "a-main", false, &e));
        ASSERT_OK(bus_get_credential(f.bus, KIROD_CREDENTIAL_PREFIX "/a_2dmain", &c, &e));
        ASSERT_FALSE(c.enabled);
        ASSERT_STREQ(c.state, "disabled");
        credential_done(&c);

        /* Ids with any characters reach the right object. */
        ASSERT_OK(bus_credential_remove(f.bus, "c key", &e));
        ASSERT_TRUE(bus_credential_remove(f.bus, "c key", &e) < 0);
        ASSERT_STREQ(e.name, "org.freedesktop.DBus.Error.UnknownObject");
        sd_bus_error_free(&e);

        fake_stop(&f);
}
