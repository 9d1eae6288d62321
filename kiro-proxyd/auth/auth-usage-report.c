/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The batched ReportUsageCounts to kiro-authd (auth-usage-report.h). */
#include <assert.h>

#include "bus-names.h"
#include "escape.h"
#include "log.h"
#include "auth/auth-usage-report.h"

typedef struct Pending {
        char *credential;
        uint64_t requests, errors, failovers;
} Pending;

struct UsageReporter {
        sd_event *event;
        sd_bus *bus;
        sd_event_source *timer;
        Pending *pending;
        size_t n_pending, n_allocated;
};

static void pending_clear(UsageReporter *u) {
        for (size_t i = 0; i < u->n_pending; i++)
                free(u->pending[i].credential);
        u->n_pending = 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) usage_reporter_flush(userdata);
        return 0;
}

int usage_reporter_new(sd_event *e, sd_bus *bus, UsageReporter **ret) {
        _cleanup_(usage_reporter_freep) UsageReporter *u = NULL;
        int r;

        assert(ret);
        u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->event = sd_event_ref(e);
        u->bus = sd_bus_ref(bus);
        r = sd_event_add_time_relative(e, &u->timer, CLOCK_MONOTONIC, USAGE_REPORT_INTERVAL_USEC, USEC_PER_SEC / 10,
                                       on_timer, u);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(u->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(u->timer, "usage-report");
        *ret = TAKE_PTR(u);
        return 0;
}

UsageReporter *usage_reporter_free(UsageReporter *u) {
        if (!u)
                return NULL;
        (void) usage_reporter_flush(u);
        pending_clear(u);
        free(u->pending);
        sd_event_source_disable_unref(u->timer);
        sd_bus_unref(u->bus);
        sd_event_unref(u->event);
        free(u);
        return NULL;
}

int usage_reporter_add(UsageReporter *u, const char *credential, unsigned requests, unsigned errors,
                       unsigned failovers) {
        Pending *p = NULL;
        int r;

        assert(u);
        if (!credential || (requests | errors | failovers) == 0)
                return 0;
        /* Linear: only the credentials used since the last report (a couple of seconds) are here. */
        for (size_t i = 0; i < u->n_pending && !p; i++)
                if (streq(u->pending[i].credential, credential))
                        p = &u->pending[i];
        if (!p) {
                if (u->n_pending == u->n_allocated) {
                        size_t n = MAX(u->n_allocated * 2, (size_t) 8);
                        Pending *a = reallocarray(u->pending, n, sizeof *a);
                        if (!a)
                                return -ENOMEM;
                        u->pending = a;
                        u->n_allocated = n;
                }
                char *id = strdup(credential);
                if (!id)
                        return -ENOMEM;
                p = &u->pending[u->n_pending++];
                *p = (Pending) { .credential = id };
        }
        p->requests += requests;
        p->errors += errors;
        p->failovers += failovers;

        r = sd_event_source_get_enabled(u->timer, NULL);
        if (r == 0) {
                r = sd_event_source_set_time_relative(u->timer, USAGE_REPORT_INTERVAL_USEC);
                if (r >= 0)
                        r = sd_event_source_set_enabled(u->timer, SD_EVENT_ONESHOT);
        }
        return r < 0 ? r : 0;
}

static int on_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(m);
        if (e)
                log_debug("kiro-authd did not take the usage counts: %s", LOG_ESC(strna(e->message)));
        return 0;
}

int usage_reporter_flush(UsageReporter *u) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r;

        assert(u);
        if (u->n_pending == 0)
                return 0;
        r = sd_bus_message_new_method_call(u->bus, &m, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                           "ReportUsageCounts");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sttt)");
        for (size_t i = 0; r >= 0 && i < u->n_pending; i++) {
                Pending *p = &u->pending[i];
                r = sd_bus_message_append(m, "(sttt)", p->credential, p->requests, p->errors, p->failovers);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "t", UINT64_C(0));
        if (r >= 0)
                r = sd_bus_call_async(u->bus, NULL, m, on_reply, NULL, 0);
        pending_clear(u);
        if (r < 0)
                return log_debug_errno(r, "Failed to report the usage counts to kiro-authd: %m");
        return 0;
}

bool usage_reporter_pending(UsageReporter *u, const char *credential, uint64_t *ret_requests,
                            uint64_t *ret_errors, uint64_t *ret_failovers) {
        for (size_t i = 0; i < u->n_pending; i++)
                if (streq(u->pending[i].credential, credential)) {
                        *ret_requests = u->pending[i].requests;
                        *ret_errors = u->pending[i].errors;
                        *ret_failovers = u->pending[i].failovers;
                        return true;
                }
        return false;
}
