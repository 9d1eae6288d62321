/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-proxyd's reading of kiro-authd's credential objects (GetManagedObjects) and the per-credential
 * families built from them: refreshes by result (unknown result names skipped), quota gauges only where a
 * usage answer exists. Against a fake kiro-authd on the other end of a socketpair. */
#include <sys/socket.h>
#include <systemd/sd-id128.h>

#include "bus-names.h"
#include "auth/auth-credinfo.h"
#include "auth/auth-credmetrics.h"
#include "tests.h"

/* Two credentials as a real sd-bus ObjectManager publishes them: "a" with refreshes (and a result name
 * from a newer kiro-authd) and a fetched usage, "b" as an older kiro-authd does (no Refreshes, no Usage*). */
static int get_prop(sd_bus *bus, const char *path, const char *interface, const char *property, sd_bus_message *reply,
                    void *userdata, sd_bus_error *error) {
        bool a = streq(path, KIROD_CREDENTIAL_PREFIX "/a");
        if (streq(property, "Id"))
                return sd_bus_message_append(reply, "s", a ? "a" : "b");
        if (streq(property, "Provider"))
                return sd_bus_message_append(reply, "s", a ? "kiro" : "kimi");
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", a ? "active" : "needs-login");
        if (streq(property, "Enabled"))
                return sd_bus_message_append(reply, "b", 1);
        if (streq(property, "Refreshes"))
                return sd_bus_message_append(reply, "a{st}", 4, "ok", UINT64_C(7), "rejected", UINT64_C(1),
                                             "from-the-future", UINT64_C(99), "transient-error", UINT64_C(3));
        if (streq(property, "UsageUsed"))
                return sd_bus_message_append(reply, "d", 412.5);
        if (streq(property, "UsageLimit"))
                return sd_bus_message_append(reply, "d", 1550.0);
        if (streq(property, "UsageResetAt"))
                return sd_bus_message_append(reply, "t", UINT64_C(1798761600000000));
        if (streq(property, "UsageFetchedAt"))
                return sd_bus_message_append(reply, "t", UINT64_C(1796520250000000));
        return sd_bus_message_append(reply, "as", 1, "something new");
}

static const sd_bus_vtable new_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("Provider", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("State", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("Enabled", "b", get_prop, 0, 0),
        SD_BUS_PROPERTY("Refreshes", "a{st}", get_prop, 0, 0),
        SD_BUS_PROPERTY("UsageUsed", "d", get_prop, 0, 0),
        SD_BUS_PROPERTY("UsageLimit", "d", get_prop, 0, 0),
        SD_BUS_PROPERTY("UsageResetAt", "t", get_prop, 0, 0),
        SD_BUS_PROPERTY("UsageFetchedAt", "t", get_prop, 0, 0),
        SD_BUS_PROPERTY("SomethingNew", "as", get_prop, 0, 0),
        SD_BUS_VTABLE_END
};

static const sd_bus_vtable old_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Id", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("Provider", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("State", "s", get_prop, 0, 0),
        SD_BUS_PROPERTY("Enabled", "b", get_prop, 0, 0),
        SD_BUS_VTABLE_END
};

static struct {
        bool done;
        int error;
        CredInfo c[4];
        char ids[4][8];
        size_t n;
        Buf text;
} got;

static void on_list(int error, const char *message, const CredInfo *l, size_t n, void *userdata) {
        MetricsRegistry *g = userdata;
        got.done = true;
        got.error = error;
        got.n = n;
        ASSERT_TRUE(n <= ELEMENTSOF(got.c));
        for (size_t i = 0; i < n; i++) {
                got.c[i] = l[i];
                snprintf(got.ids[i], sizeof got.ids[i], "%s", strempty(l[i].id));
                got.c[i].id = got.c[i].provider = got.c[i].state = NULL;        /* owned by the caller */
        }
        credential_metrics_fill(error, l, n);
        ASSERT_OK(metrics_render(g, &got.text));
}

static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);
        for (const char *p = text; (p = strstr(p, line)); p += n)
                if ((p == text || p[-1] == '\n') && p[n] == '\n')
                        return true;
        return false;
}

TEST(managed_objects_to_series) {
        _cleanup_(metrics_registry_freep) MetricsRegistry *g = NULL;
        sd_event *e = NULL;
        sd_bus *server = NULL, *client = NULL;
        sd_id128_t id;
        int sv[2];

        ASSERT_OK(metrics_registry_new(&g));
        ASSERT_OK(credential_metrics_init(g));
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(sd_id128_randomize(&id));
        ASSERT_OK(sd_bus_new(&server));
        ASSERT_OK(sd_bus_set_fd(server, sv[1], sv[1]));
        ASSERT_OK(sd_bus_set_server(server, 1, id));
        ASSERT_OK(sd_bus_add_object_manager(server, NULL, KIROD_MANAGER_PATH));
        ASSERT_OK(sd_bus_add_object_vtable(server, NULL, KIROD_CREDENTIAL_PREFIX "/a", KIROD_CREDENTIAL_INTERFACE,
                                           new_vtable, NULL));
        ASSERT_OK(sd_bus_add_object_vtable(server, NULL, KIROD_CREDENTIAL_PREFIX "/b", KIROD_CREDENTIAL_INTERFACE,
                                           old_vtable, NULL));
        ASSERT_OK(sd_bus_start(server));
        ASSERT_OK(sd_bus_attach_event(server, e, 0));
        ASSERT_OK(sd_bus_new(&client));
        ASSERT_OK(sd_bus_set_fd(client, sv[0], sv[0]));
        ASSERT_OK(sd_bus_start(client));
        ASSERT_OK(sd_bus_attach_event(client, e, 0));

        ASSERT_OK(credinfo_fetch(client, on_list, g));
        for (unsigned i = 0; i < 100 && !got.done; i++)
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
        ASSERT_TRUE(got.done);
        ASSERT_EQ(got.error, 0);
        ASSERT_EQ(got.n, 2U);

        /* In the order the ObjectManager sends them. */
        size_t ia = streq(got.ids[0], "a") ? 0 : 1;
        ASSERT_STREQ(got.ids[ia], "a");
        ASSERT_STREQ(got.ids[1 - ia], "b");
        const CredInfo *a = &got.c[ia], *b = &got.c[1 - ia];
        ASSERT_TRUE(a->have_refreshes);
        ASSERT_EQ(a->refreshes[REFRESH_RESULT_OK], 7U);
        ASSERT_EQ(a->refreshes[REFRESH_RESULT_TRANSIENT_ERROR], 3U);
        ASSERT_EQ(a->refreshes[REFRESH_RESULT_REJECTED], 1U);
        ASSERT_EQ(a->refreshes[REFRESH_RESULT_NO_LOGIN], 0U);
        ASSERT_TRUE(a->quota_used == 412.5 && a->quota_limit == 1550.0);
        ASSERT_EQ(a->quota_reset_at, UINT64_C(1798761600000000));
        ASSERT_FALSE(b->have_refreshes);
        ASSERT_EQ(b->quota_fetched_at, 0U);

        const char *t = got.text.data;
        ASSERT_TRUE(has_line(t, "# TYPE kirod_credential_refreshes_total counter"));
        ASSERT_TRUE(has_line(t, "kirod_credential_refreshes_total{credential=\"a\",result=\"ok\"} 7"));
        ASSERT_TRUE(has_line(t, "kirod_credential_refreshes_total{credential=\"a\",result=\"transient-error\"} 3"));
        ASSERT_TRUE(has_line(t, "kirod_credential_refreshes_total{credential=\"a\",result=\"rejected\"} 1"));
        ASSERT_TRUE(has_line(t, "kirod_credential_refreshes_total{credential=\"a\",result=\"no-login\"} 0"));
        ASSERT_TRUE(has_line(t, "kirod_credential_refreshes_total{credential=\"a\",result=\"local-error\"} 0"));
        ASSERT_NULL(strstr(t, "from-the-future"));
        ASSERT_NULL(strstr(t, "kirod_credential_refreshes_total{credential=\"b\""));
        ASSERT_TRUE(has_line(t, "kirod_credential_quota_used{credential=\"a\",provider=\"kiro\"} 412.5"));
        ASSERT_TRUE(has_line(t, "kirod_credential_quota_limit{credential=\"a\",provider=\"kiro\"} 1550"));
        ASSERT_TRUE(has_line(t, "kirod_credential_quota_reset_timestamp_seconds{credential=\"a\",provider=\"kiro\"} 1798761600"));
        ASSERT_NULL(strstr(t, "kirod_credential_quota_used{credential=\"b\""));
        ASSERT_NULL(strstr(t, "kirod_credential_quota_limit{credential=\"b\""));
        ASSERT_TRUE(has_line(t, "kirod_credential_state{credential=\"b\",provider=\"kimi\",state=\"needs-login\"} 1"));
        ASSERT_TRUE(has_line(t, "kirod_credentials_usable 1"));
        ASSERT_TRUE(has_line(t, "kirod_authd_up 1"));

        /* kiro-authd gone: every credential series goes with it. */
        buf_done(&got.text);
        credential_metrics_fill(-ETIMEDOUT, NULL, 0);
        ASSERT_OK(metrics_render(g, &got.text));
        ASSERT_TRUE(has_line(got.text.data, "kirod_authd_up 0"));
        ASSERT_NULL(strstr(got.text.data, "kirod_credential_refreshes_total{"));
        ASSERT_NULL(strstr(got.text.data, "kirod_credential_quota_used{"));
        buf_done(&got.text);

        client = sd_bus_flush_close_unref(client);
        server = sd_bus_flush_close_unref(server);
        e = sd_event_unref(e);
}
