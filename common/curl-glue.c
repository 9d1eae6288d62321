/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcurl multi interface driven by an sd-event loop. */
#include <strings.h>

#include "curl-glue.h"

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *defer;
};

typedef struct Transfer {
        CurlGlueDone done;
        void *userdata;
} Transfer;

static void glue_drain(CurlGlue *g) {
        CURLMsg *msg;
        int left;

        /* Drain every finished transfer, not only the first. */
        while ((msg = curl_multi_info_read(g->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *c = msg->easy_handle;
                CURLcode result = msg->data.result;
                Transfer *t = NULL;
                (void) curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **) &t);
                (void) curl_multi_remove_handle(g->multi, c);
                (void) curl_easy_setopt(c, CURLOPT_PRIVATE, NULL);
                if (t) {
                        CurlGlueDone done = t->done;
                        void *userdata = t->userdata;
                        free(t);
                        done(g, c, result, userdata);
                }
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;
        (void) curl_multi_socket_action(g->multi, fd, action, &running);
        glue_drain(g);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running;
        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        glue_drain(g);
        return 0;
}

static int socket_cb(CURL *c, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        sd_event_source *io = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (io) {
                        (void) sd_event_source_set_enabled(io, SD_EVENT_OFF);
                        sd_event_source_unref(io);
                        (void) curl_multi_assign(g->multi, fd, NULL);
                }
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        if (io) {
                r = sd_event_source_set_io_events(io, events);
                if (r < 0)
                        return -1;
                r = sd_event_source_set_enabled(io, SD_EVENT_ON);
                return r < 0 ? -1 : 0;
        }
        r = sd_event_add_io(g->event, &io, fd, events, on_io, g);
        if (r < 0)
                return -1;
        (void) sd_event_source_set_description(io, "curl-io");
        if (curl_multi_assign(g->multi, fd, io) != CURLM_OK) {
                sd_event_source_unref(io);
                return -1;
        }
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        CurlGlue *g = userdata;
        int running;
        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        glue_drain(g);
        return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        int r;

        if (timeout_ms < 0) {
                if (g->timer)
                        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
                return 0;
        }
        /* "Call me now": a one-shot defer source, not a timer (a 0 timer would wait for its accuracy). */
        if (timeout_ms == 0) {
                if (g->defer)
                        return sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
                r = sd_event_add_defer(g->event, &g->defer, on_defer, g);
                if (r < 0)
                        return -1;
                (void) sd_event_source_set_enabled(g->defer, SD_EVENT_ONESHOT);
                return 0;
        }
        /* Short timeouts (resolver polling, happy eyeballs) must be kept to the millisecond; long ones
         * (connection and transfer timeouts) may be coalesced, which saves timerfd updates. */
        uint64_t usec = (uint64_t) timeout_ms * USEC_PER_MSEC;
        uint64_t accuracy = timeout_ms < 1000 ? USEC_PER_MSEC : 250 * USEC_PER_MSEC;
        if (!g->timer) {
                r = sd_event_add_time_relative(g->event, &g->timer, CLOCK_MONOTONIC, usec, accuracy, on_timer, g);
                if (r < 0)
                        return -1;
                (void) sd_event_source_set_description(g->timer, "curl-timer");
                return 0;
        }
        (void) sd_event_source_set_time_accuracy(g->timer, accuracy);
        r = sd_event_source_set_time_relative(g->timer, usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

int curl_glue_new(sd_event *e, CurlGlue **ret) {
        static bool global_done = false;
        _cleanup_(curl_glue_freep) CurlGlue *g = NULL;

        if (!global_done) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                global_done = true;
        }
        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(e);
        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;
        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK)
                return -EINVAL;
        *ret = TAKE_PTR(g);
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        if (g->multi)
                (void) curl_multi_cleanup(g->multi);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->defer);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}

int curl_glue_add(CurlGlue *g, CURL *c, CurlGlueDone done, void *userdata) {
        Transfer *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->done = done;
        t->userdata = userdata;
        if (curl_easy_setopt(c, CURLOPT_PRIVATE, t) != CURLE_OK) {
                free(t);
                return -EIO;
        }
        if (curl_multi_add_handle(g->multi, c) != CURLM_OK) {
                (void) curl_easy_setopt(c, CURLOPT_PRIVATE, NULL);
                free(t);
                return -EIO;
        }
        return 0;
}

void curl_glue_remove(CurlGlue *g, CURL *c) {
        Transfer *t = NULL;
        if (!c)
                return;
        (void) curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **) &t);
        (void) curl_multi_remove_handle(g->multi, c);
        (void) curl_easy_setopt(c, CURLOPT_PRIVATE, NULL);
        free(t);
}

int curl_glue_pause(CurlGlue *g, CURL *c, bool pause) {
        return curl_easy_pause(c, pause ? CURLPAUSE_RECV : CURLPAUSE_CONT) == CURLE_OK ? 0 : -EIO;
}

int url_check_scheme(const char *url) {
        const char *rest;

        if (!url)
                return -EINVAL;
        if (startswith(url, "https://"))
                return 0;
        rest = startswith(url, "http://");
        if (!rest)
                return -EPROTONOSUPPORT;
        /* Plain http only to loopback, for tests. */
        static const char *const loopback[] = { "127.", "localhost:", "localhost/", "[::1]" };
        for (size_t i = 0; i < ELEMENTSOF(loopback); i++)
                if (startswith(rest, loopback[i]))
                        return 0;
        if (streq(rest, "localhost"))
                return 0;
        return -EPERM;
}

int url_expand_region(const char *template, const char *region, char **ret) {
        size_t rl = strlen(region), n = 0;
        const char *p;

        for (p = template; (p = strstr(p, "{region}")); p += 8)
                n++;
        char *out = malloc(strlen(template) + n * rl + 1), *o = out;
        if (!out)
                return -ENOMEM;
        for (p = template; *p;) {
                if (startswith(p, "{region}")) {
                        memcpy(o, region, rl);
                        o += rl;
                        p += 8;
                } else
                        *o++ = *p++;
        }
        *o = 0;
        *ret = out;
        return 0;
}

int curl_glue_setup_easy(CURL *c, const char *url, const char *ca_file, uint64_t timeout_usec) {
        if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK)
                return -EIO;
        if (timeout_usec != USEC_INFINITY &&
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long) (timeout_usec / USEC_PER_MSEC)) != CURLE_OK)
                return -EIO;
        if (ca_file && curl_easy_setopt(c, CURLOPT_CAINFO, ca_file) != CURLE_OK)
                return -EIO;
        return 0;
}
