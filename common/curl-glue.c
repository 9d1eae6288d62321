/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcurl multi interface driven by an sd-event loop. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "curl-glue.h"

/* curl's sockets live in an epoll set of the glue's own, which is one I/O source of the sd-event loop (as
 * libmicrohttpd's set is): one dispatch runs every upstream socket that is ready. With one sd-event
 * source per socket, sd-event dispatches one of them per loop iteration and each iteration's
 * epoll_wait() reports every ready socket again (they are level-triggered until read), so under load
 * the cost of an iteration grew with the number of connections.
 *
 * Sockets are looked up by fd in a table of our own rather than through curl_multi_assign(): a connection
 * socket that curl opened through on_open_socket() stays in the set while it idles in curl's connection
 * cache (curl says CURL_POLL_REMOVE after every transfer and CURL_POLL_IN at the next), so a reused
 * connection costs no epoll_ctl() per request. It leaves the set when on_close_socket() closes it, or
 * when it becomes readable while idle (the server closed it), until curl wants it again. Sockets curl
 * opens and closes by itself (the resolver's) leave the set at CURL_POLL_REMOVE. */
typedef struct GlueSocket {
        uint32_t events;        /* what the set watches; 0: not in the set (curl always wants IN or OUT) */
        bool owned;             /* opened by on_open_socket(), will be closed by on_close_socket() */
        bool wanted;            /* curl watches it now */
} GlueSocket;

#define GLUE_EVENTS_MAX 64

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        int epoll_fd;
        sd_event_source *io;
        sd_event_source *timer;
        sd_event_source *defer;
        GlueSocket *sockets;    /* indexed by fd */
        size_t n_sockets;
        CurlGluePost post;
        void *post_userdata;
};

static GlueSocket *glue_socket(CurlGlue *g, int fd, bool create) {
        if (fd < 0)
                return NULL;
        if ((size_t) fd >= g->n_sockets) {
                if (!create)
                        return NULL;
                size_t n = MAX((size_t) fd + 1, g->n_sockets * 2);
                GlueSocket *t = reallocarray(g->sockets, n, sizeof(GlueSocket));
                if (!t)
                        return NULL;
                memset(t + g->n_sockets, 0, (n - g->n_sockets) * sizeof(GlueSocket));
                g->sockets = t;
                g->n_sockets = n;
        }
        return &g->sockets[fd];
}

static int glue_socket_watch(CurlGlue *g, int fd, GlueSocket *gs, uint32_t events) {
        struct epoll_event ev = { .events = events, .data.fd = fd };

        if (gs->events == events)
                return 0;
        /* Not in the set yet; or it was, under a number since closed behind our back (the kernel drops
         * a closed file from the set by itself), so a MOD fails and an ADD is needed. */
        if ((gs->events == 0 || epoll_ctl(g->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0) &&
            epoll_ctl(g->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0 &&
            (errno != EEXIST || epoll_ctl(g->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0))
                return -errno;
        gs->events = events;
        return 0;
}

static void glue_socket_unwatch(CurlGlue *g, int fd, GlueSocket *gs) {
        if (gs->events != 0)
                (void) epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        gs->events = 0;
}

static void glue_socket_forget(CurlGlue *g, int fd, GlueSocket *gs) {
        glue_socket_unwatch(g, fd, gs);
        gs->owned = gs->wanted = false;
}

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
        struct epoll_event events[GLUE_EVENTS_MAX];
        int n, running;

        n = epoll_wait(g->epoll_fd, events, ELEMENTSOF(events), 0);
        for (int i = 0; i < n; i++) {
                int sfd = events[i].data.fd, action = 0;
                GlueSocket *gs = glue_socket(g, sfd, false);

                /* (An entry may describe a socket that an earlier action of this loop closed; curl copes
                 * with being told about a socket that has nothing for it.) */
                if (!gs || !gs->wanted) {
                        /* An idle cached connection became readable: the server closed it (or talks out of
                         * turn). Level-triggered, it would fire on and on: stop watching it until curl wants
                         * it again (curl finds it dead then and closes it). */
                        if (gs)
                                glue_socket_unwatch(g, sfd, gs);
                        else
                                (void) epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, sfd, NULL);
                        continue;
                }
                if (events[i].events & (EPOLLIN | EPOLLHUP))
                        action |= CURL_CSELECT_IN;
                if (events[i].events & EPOLLOUT)
                        action |= CURL_CSELECT_OUT;
                if (events[i].events & EPOLLERR)
                        action |= CURL_CSELECT_ERR;
                (void) curl_multi_socket_action(g->multi, sfd, action, &running);
        }
        glue_drain(g);
        if (g->post)
                g->post(g->post_userdata);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running;
        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        glue_drain(g);
        if (g->post)
                g->post(g->post_userdata);
        return 0;
}

static int socket_cb(CURL *c, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        GlueSocket *gs;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                gs = glue_socket(g, fd, false);
                if (!gs)
                        return 0;
                gs->wanted = false;
                if (!gs->owned)
                        glue_socket_forget(g, fd, gs);
                return 0;
        }
        if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
                events |= EPOLLIN;
        if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
                events |= EPOLLOUT;

        gs = glue_socket(g, fd, true);
        if (!gs)
                return -1;
        gs->wanted = true;
        return glue_socket_watch(g, fd, gs, events) < 0 ? -1 : 0;
}

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *address) {
        CurlGlue *g = clientp;
        GlueSocket *gs;
        int fd;

        if (purpose != CURLSOCKTYPE_IPCXN)
                return CURL_SOCKET_BAD;
        fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        if (fd < 0)
                return CURL_SOCKET_BAD;
        gs = glue_socket(g, fd, true);
        if (!gs) {
                safe_close(fd);
                return CURL_SOCKET_BAD;
        }
        /* A new file: whatever the entry says of an earlier one under this number is stale. */
        *gs = (GlueSocket) { .owned = true };
        return fd;
}

static int on_close_socket(void *clientp, curl_socket_t fd) {
        CurlGlue *g = clientp;
        GlueSocket *gs = glue_socket(g, fd, false);

        /* Out of the epoll set before the number can be reused. */
        if (gs)
                glue_socket_forget(g, fd, gs);
        return close(fd);
}

static void glue_run_now(CurlGlue *g) {
        int running;
        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        glue_drain(g);
}

static int on_defer(sd_event_source *s, void *userdata) {
        CurlGlue *g = userdata;
        g->defer = sd_event_source_disable_unref(g->defer);
        glue_run_now(g);
        if (g->post)
                g->post(g->post_userdata);
        return 0;
}

bool curl_glue_flush(CurlGlue *g) {
        /* curl asked to be called "now" (a transfer was added, say): do it here instead of in a loop
         * iteration of its own. */
        if (!g || !g->defer)
                return false;
        g->defer = sd_event_source_disable_unref(g->defer);
        glue_run_now(g);
        return true;
}

void curl_glue_set_post(CurlGlue *g, CurlGluePost post, void *userdata) {
        g->post = post;
        g->post_userdata = userdata;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        int r;

        if (timeout_ms < 0) {
                if (g->timer)
                        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
                return 0;
        }
        /* "Call me now": a defer source, not a timer (a 0 timer would wait for its accuracy). A new one each
         * time: sd-event leaves a defer source pending after its dispatch, with the iteration it was first
         * made pending in, so a re-enabled one would sort before every I/O source of the same priority
         * that is waiting, and under steady load those would wait for as long as defers keep coming (we
         * saw upstream answers sit unread for 100 ms to 1 s). A fresh source queues behind them. */
        if (timeout_ms == 0) {
                if (g->defer)
                        return 0;
                r = sd_event_add_defer(g->event, &g->defer, on_defer, g);
                return r < 0 ? -1 : 0;
        }
        /* A timeout may fire up to a quarter late (at least 1 ms, at most 250 ms): resolver polling and happy
         * eyeballs stay close to the millisecond, while the speed check every transfer arms a second ahead
         * (the earliest of them is what curl reports, so under load it is always some hundreds of ms
         * away) is coalesced by sd-event instead of costing a timerfd update per request. */
        uint64_t usec = (uint64_t) timeout_ms * USEC_PER_MSEC;
        uint64_t accuracy = MIN(MAX(usec / 4, USEC_PER_MSEC), 250 * USEC_PER_MSEC);
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
        int r;

        if (!global_done) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                global_done = true;
        }
        g = calloc(1, sizeof *g);
        if (!g)
                return -ENOMEM;
        g->epoll_fd = -EBADF;
        g->event = sd_event_ref(e);
        g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (g->epoll_fd < 0)
                return -errno;
        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;
        r = sd_event_add_io(e, &g->io, g->epoll_fd, EPOLLIN, on_io, g);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(g->io, "curl-io");
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
        /* Closes the cached connections through on_close_socket(), which needs the table. */
        if (g->multi)
                (void) curl_multi_cleanup(g->multi);
        free(g->sockets);
        sd_event_source_disable_unref(g->io);
        safe_close(g->epoll_fd);
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
        if (curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, g) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, on_close_socket) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, g) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PRIVATE, t) != CURLE_OK) {
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

static bool host_is_loopback(const char *host) {
        struct in_addr a;

        if (strcasecmp(host, "localhost") == 0 || streq(host, "[::1]"))
                return true;
        return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

int url_check_scheme(const char *url) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        char *host = NULL;
        bool loopback;

        if (!url)
                return -EINVAL;
        if (strncasecmp(url, "https://", 8) == 0)
                return 0;
        if (strncasecmp(url, "http://", 7) != 0)
                return -EPROTONOSUPPORT;
        /* Plain http only to loopback, for tests: the host as curl will see it (not a prefix of the URL,
         * which "http://127.0.0.1@example.com/" would pass). */
        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return -EPERM;
        loopback = host_is_loopback(host);
        curl_free(host);
        return loopback ? 0 : -EPERM;
}

int curl_glue_setup_easy(CURL *c, const char *url, const char *ca_file, uint64_t timeout_usec) {
        if (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L) != CURLE_OK)
                return -EIO;
        /* CURLOPT_TIMEOUT_MS 0 would mean "none": round up to 1 ms, and cap what a long can hold. */
        if (timeout_usec != USEC_INFINITY &&
            curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                             (long) MIN(MAX((timeout_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (uint64_t) 1),
                                        (uint64_t) LONG_MAX)) != CURLE_OK)
                return -EIO;
        if (ca_file && curl_easy_setopt(c, CURLOPT_CAINFO, ca_file) != CURLE_OK)
                return -EIO;
        return 0;
}
