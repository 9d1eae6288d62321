/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-proxyd's batched ReportUsageCounts: counts summed per credential, one call per interval, the rest
 * sent at free. Against a fake kiro-authd on the other end of a socketpair, in this process's event loop. */
#include <sys/socket.h>
#include <systemd/sd-id128.h>

#include "bus-names.h"
#include "auth/auth-usage-report.h"
#include "tests.h"

typedef struct Entry {
        char id[32];
        uint64_t requests, errors, failovers;
} Entry;

typedef struct Call {
        Entry entries[32];
        size_t n;
        uint64_t flags;
        usec_t at;
} Call;

static Call calls[4];
static size_t n_calls;

static int fake_report(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Call *c = &calls[n_calls];
        const char *id;
        uint64_t req, err, fo;

        ASSERT_TRUE(n_calls < ELEMENTSOF(calls));
        ASSERT_OK(sd_bus_message_enter_container(m, 'a', "(sttt)"));
        while (sd_bus_message_read(m, "(sttt)", &id, &req, &err, &fo) > 0) {
                ASSERT_TRUE(c->n < ELEMENTSOF(c->entries));
                Entry *e = &c->entries[c->n++];
                *e = (Entry) { .requests = req, .errors = err, .failovers = fo };
                snprintf(e->id, sizeof e->id, "%s", id);
        }
        ASSERT_OK(sd_bus_message_exit_container(m));
        ASSERT_OK(sd_bus_message_read(m, "t", &c->flags));
        c->at = now(CLOCK_MONOTONIC);
        n_calls++;
        return sd_bus_reply_method_return(m, NULL);
}

static const sd_bus_vtable fake_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD("ReportUsageCounts", "a(sttt)t", "", fake_report, 0),
        SD_BUS_VTABLE_END
};

typedef struct Pair {
        sd_event *event;
        sd_bus *server, *client;
} Pair;

static Pair pair_new(void) {
        Pair p = {};
        sd_id128_t id;
        int sv[2];

        ASSERT_OK(sd_event_new(&p.event));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(sd_id128_randomize(&id));
        ASSERT_OK(sd_bus_new(&p.server));
        ASSERT_OK(sd_bus_set_fd(p.server, sv[1], sv[1]));
        ASSERT_OK(sd_bus_set_server(p.server, 1, id));
        ASSERT_OK(sd_bus_add_object_vtable(p.server, NULL, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE, fake_vtable,
                                           NULL));
        ASSERT_OK(sd_bus_start(p.server));
        ASSERT_OK(sd_bus_attach_event(p.server, p.event, 0));
        ASSERT_OK(sd_bus_new(&p.client));
        ASSERT_OK(sd_bus_set_fd(p.client, sv[0], sv[0]));
        ASSERT_OK(sd_bus_start(p.client));
        ASSERT_OK(sd_bus_attach_event(p.client, p.event, 0));
        return p;
}

static void pair_free(Pair *p) {
        p->client = sd_bus_flush_close_unref(p->client);
        p->server = sd_bus_flush_close_unref(p->server);
        p->event = sd_event_unref(p->event);
}

/* Runs the loop until n calls arrived, at most timeout. */
static void run_until_calls(sd_event *e, size_t n, usec_t timeout) {
        usec_t end = now(CLOCK_MONOTONIC) + timeout;
        while (n_calls < n && now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(e, 100 * USEC_PER_MSEC));
}

static const Entry *find(const Call *c, const char *id) {
        for (size_t i = 0; i < c->n; i++)
                if (streq(c->entries[i].id, id))
                        return &c->entries[i];
        return NULL;
}

TEST(batched) {
        Pair p = pair_new();
        UsageReporter *u = NULL;
        uint64_t req, err, fo;
        const Entry *e;

        n_calls = 0;
        ASSERT_OK(usage_reporter_new(p.event, p.client, &u));
        ASSERT_FALSE(usage_reporter_pending(u, "a", &req, &err, &fo));

        usec_t t0 = now(CLOCK_MONOTONIC);
        for (unsigned i = 0; i < 1000; i++)
                ASSERT_OK(usage_reporter_add(u, "a", 1, 0, 0));
        ASSERT_OK(usage_reporter_add(u, "a", 0, 2, 1));
        ASSERT_OK(usage_reporter_add(u, "b", 0, 3, 0));
        ASSERT_OK(usage_reporter_add(u, "c", 0, 0, 0));         /* nothing: not sent */
        ASSERT_OK(usage_reporter_add(u, NULL, 1, 1, 1));        /* no credential: ignored */
        ASSERT_TRUE(usage_reporter_pending(u, "a", &req, &err, &fo));
        ASSERT_EQ(req, 1000);
        ASSERT_EQ(err, 2);
        ASSERT_EQ(fo, 1);
        ASSERT_FALSE(usage_reporter_pending(u, "c", &req, &err, &fo));

        /* One call for all of it, after the interval. */
        run_until_calls(p.event, 1, 5 * USEC_PER_SEC);
        ASSERT_EQ(n_calls, 1);
        ASSERT_TRUE(calls[0].at - t0 >= USAGE_REPORT_INTERVAL_USEC - 100 * USEC_PER_MSEC);
        ASSERT_EQ(calls[0].n, 2);
        ASSERT_EQ(calls[0].flags, 0);
        ASSERT_NOT_NULL(e = find(&calls[0], "a"));
        ASSERT_EQ(e->requests, 1000);
        ASSERT_EQ(e->errors, 2);
        ASSERT_EQ(e->failovers, 1);
        ASSERT_NOT_NULL(e = find(&calls[0], "b"));
        ASSERT_EQ(e->requests, 0);
        ASSERT_EQ(e->errors, 3);
        ASSERT_FALSE(usage_reporter_pending(u, "a", &req, &err, &fo));

        /* Nothing new: no call. */
        run_until_calls(p.event, 2, USAGE_REPORT_INTERVAL_USEC + 500 * USEC_PER_MSEC);
        ASSERT_EQ(n_calls, 1);

        /* What is pending at free is sent then (kiro-proxyd flushes the bus after). */
        ASSERT_OK(usage_reporter_add(u, "c", 7, 0, 0));
        u = usage_reporter_free(u);
        run_until_calls(p.event, 2, 2 * USEC_PER_SEC);
        ASSERT_EQ(n_calls, 2);
        ASSERT_EQ(calls[1].n, 1);
        ASSERT_NOT_NULL(e = find(&calls[1], "c"));
        ASSERT_EQ(e->requests, 7);
        ASSERT_TRUE(calls[1].at - t0 < 2 * USAGE_REPORT_INTERVAL_USEC + 2 * USEC_PER_SEC);
        pair_free(&p);
}

/* The cost per counted event on the request path (no bus call): printed, and bounded loosely. */
TEST(cost) {
        Pair p = pair_new();
        UsageReporter *u = NULL;
        char ids[20][16];
        const unsigned n = 1000000;

        ASSERT_OK(usage_reporter_new(p.event, p.client, &u));
        memset(calls, 0, sizeof calls);
        for (unsigned i = 0; i < ELEMENTSOF(ids); i++)
                snprintf(ids[i], sizeof ids[i], "cred-%02u", i);
        usec_t t0 = now(CLOCK_MONOTONIC);
        for (unsigned i = 0; i < n; i++)
                ASSERT_OK(usage_reporter_add(u, ids[i % ELEMENTSOF(ids)], 1, 0, 0));
        usec_t dt = now(CLOCK_MONOTONIC) - t0;
        fprintf(stderr, "usage_reporter_add: %.1f ns per call (20 credentials pending)\n", (double) dt * 1000 / n);
        /* Under sanitizers and a busy machine: a generous bound, far below the 5 µs per request budget. */
        ASSERT_TRUE(dt / n < 5);
        /* A million events, one call. */
        n_calls = 0;
        u = usage_reporter_free(u);
        run_until_calls(p.event, 1, 2 * USEC_PER_SEC);
        ASSERT_EQ(n_calls, 1);
        ASSERT_EQ(calls[0].n, ELEMENTSOF(ids));
        ASSERT_EQ(find(&calls[0], "cred-07")->requests, n / ELEMENTSOF(ids));
        pair_free(&p);
}
