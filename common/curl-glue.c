/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcurl multi interface driven by an sd-event loop. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/mman.h>
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

        CURLSH *share;
        CurlGlueLimits limits;
        unsigned n_transfers;
        uint64_t n_connects;
        sd_event_source *idle;  /* the idle sweep, armed while no transfer runs */
        bool multiplexing;      /* an upstream connection negotiated HTTP/2 */
        bool cap_changed;       /* apply it outside curl's callbacks (curl refuses multi calls there) */
        char *proxy;            /* Proxy=: NULL none (the environment ignored), "env", or a URL */
        char *noproxy;          /* NoProxy= */
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

/* The trust store. libcurl-gnutls 7.88 loads the CA file into fresh GnuTLS credentials for every new
 * connection and keeps them for the connection's life: with the system bundle (~140 roots) that cost
 * ~9 ms of CPU and ~4 MiB per connection, and curl offers GnuTLS no CA blob, CA cache or hook for
 * credentials of our own. So the file curl loads is made small: after a connection verified against the
 * configured file (CAFile=, or the system bundle), the glue finds the configured certificates that issued
 * the top of the peer's chain (parsing the file for that, the first time and after a failure with the
 * subset only) and from then on the file curl loads holds just those. That set is a subset of the configured one, so nothing is trusted that was
 * not before. A transfer that fails its TLS set-up with the subset (an endpoint whose root is not in it
 * yet) is started again, once, with the whole file, and its root joins the subset. The file curl is
 * given is a memfd from the start (a copy of the configured file until something was learned), rewritten
 * in place: curl reuses a connection only for the same CA file name. One entry per file, for the life of
 * the process. */
typedef struct GlueTrust {
        char *path;
        char *subset;                   /* the picked certificates, PEM */
        size_t subset_size;
        unsigned n_picked;
        int fd;                         /* memfd: the whole file, then the picked certificates in PEM */
        char fd_path[40];
        bool disabled;
        struct GlueTrust *next;
} GlueTrust;

static GlueTrust *trusts;

static int trust_open(GlueTrust *t) {
        if (t->fd >= 0)
                return 0;
        t->fd = memfd_create("kirod-trust", MFD_CLOEXEC);
        if (t->fd < 0)
                return -errno;
        (void) snprintf(t->fd_path, sizeof t->fd_path, "/proc/self/fd/%d", t->fd);
        return 0;
}

/* The memfd starts as a copy of the configured file. On failure there is no memfd: curl gets the file. */
static int trust_copy_file(GlueTrust *t) {
        gnutls_datum_t data = {};
        int r = trust_open(t);
        if (r < 0)
                return r;
        if (gnutls_load_file(t->path, &data) < 0 ||
            write(t->fd, data.data, data.size) != (ssize_t) data.size) {
                gnutls_free(data.data);
                t->fd = safe_close(t->fd);
                return -EIO;
        }
        gnutls_free(data.data);
        return 0;
}

static GlueTrust *trust_get(const char *path) {
        GlueTrust *t;

        for (t = trusts; t; t = t->next)
                if (streq(t->path, path))
                        return t;
        t = calloc(1, sizeof *t);
        if (!t)
                return NULL;
        t->path = strdup(path);
        if (!t->path) {
                free(t);
                return NULL;
        }
        t->fd = -EBADF;
        t->next = trusts;
        trusts = t;
        (void) trust_copy_file(t);
        return t;
}

static int trust_write(GlueTrust *t) {
        if (ftruncate(t->fd, 0) < 0 || lseek(t->fd, 0, SEEK_SET) < 0)
                return -errno;
        if (write(t->fd, t->subset, t->subset_size) != (ssize_t) t->subset_size)
                return -EIO;
        return 0;
}

/* Whether the subset has the issuer of top already (connections set up while the first was learning). */
static bool trust_subset_has_issuer(GlueTrust *t, gnutls_x509_crt_t top) {
        gnutls_datum_t data = { .data = (unsigned char *) t->subset, .size = t->subset_size };
        gnutls_x509_crt_t *certs = NULL;
        unsigned n = 0;
        bool found = false;

        if (t->n_picked == 0 || gnutls_x509_crt_list_import2(&certs, &n, &data, GNUTLS_X509_FMT_PEM, 0) < 0)
                return false;
        for (unsigned i = 0; i < n; i++) {
                found = found || gnutls_x509_crt_check_issuer(top, certs[i]) || gnutls_x509_crt_equals(top, certs[i]);
                gnutls_x509_crt_deinit(certs[i]);
        }
        gnutls_free(certs);
        return found;
}

/* The connection's peer chain verified against the whole file: pick what issued its top. The file is
 * parsed for that and let go again (parsed, the system bundle takes ~4 MiB); it happens for the first
 * connection and after a failure with the subset only. */
static void trust_learn(GlueTrust *t, gnutls_session_t session) {
        const gnutls_datum_t *chain;
        gnutls_datum_t data = {};
        gnutls_x509_crt_t top = NULL, *certs = NULL;
        unsigned n = 0, n_certs = 0;
        bool added = false;

        chain = gnutls_certificate_get_peers(session, &n);
        if (!chain || n == 0 || gnutls_x509_crt_init(&top) < 0)
                return;
        if (gnutls_x509_crt_import(top, &chain[n - 1], GNUTLS_X509_FMT_DER) < 0 ||
            trust_subset_has_issuer(t, top) ||
            gnutls_load_file(t->path, &data) < 0 ||
            gnutls_x509_crt_list_import2(&certs, &n_certs, &data, GNUTLS_X509_FMT_PEM, 0) < 0)
                n_certs = 0;
        for (unsigned i = 0; i < n_certs; i++) {
                gnutls_datum_t pem = {};
                if ((gnutls_x509_crt_check_issuer(top, certs[i]) || gnutls_x509_crt_equals(top, certs[i])) &&
                    gnutls_x509_crt_export2(certs[i], GNUTLS_X509_FMT_PEM, &pem) >= 0 &&
                    !(t->subset && memmem(t->subset, t->subset_size, pem.data, pem.size))) {
                        char *p = realloc(t->subset, t->subset_size + pem.size);
                        if (p) {
                                memcpy(p + t->subset_size, pem.data, pem.size);
                                t->subset = p;
                                t->subset_size += pem.size;
                                t->n_picked++;
                                added = true;
                        }
                }
                gnutls_free(pem.data);
                gnutls_x509_crt_deinit(certs[i]);
        }
        gnutls_free(certs);
        gnutls_free(data.data);
        gnutls_x509_crt_deinit(top);
        /* (Should the rewrite fail, the memfd would be left half-written: use the file from then on.) */
        if (added && trust_write(t) < 0)
                t->disabled = true;
}

typedef struct Transfer {
        CurlGlueDone done;
        void *userdata;
        CURL *curl;
        CurlGlue *glue;
        GlueTrust *trust;       /* set by curl_glue_setup_easy() */
        bool subset;            /* verified with the trust subset (the memfd once something was learned) */
        bool retried;           /* started again with the whole file */
} Transfer;

/* Called once the connection is up (TLS verified), before the request goes out. */
static int glue_apply_cap(CurlGlue *g);

static int on_prereq(void *clientp, char *primary_ip, char *local_ip, int primary_port, int local_port) {
        Transfer *t = clientp;
        struct curl_tlssessioninfo *info = NULL;
        gnutls_datum_t alpn = {};

        if (curl_easy_getinfo(t->curl, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info ||
            info->backend != CURLSSLBACKEND_GNUTLS || !info->internals)
                return CURL_PREREQFUNC_OK;
        if (t->trust && !t->subset && !t->trust->disabled)
                trust_learn(t->trust, info->internals);
        if (!t->glue->multiplexing &&
            gnutls_alpn_get_selected_protocol(info->internals, &alpn) >= 0 &&
            alpn.size == 2 && memcmp(alpn.data, "h2", 2) == 0) {
                t->glue->multiplexing = true;
                t->glue->cap_changed = true;
        }
        return CURL_PREREQFUNC_OK;
}

/* subset: the memfd (whatever it holds now); else the configured file. */
static int transfer_trust(Transfer *t, bool subset) {
        bool memfd = subset && t->trust->fd >= 0 && !t->trust->disabled;
        t->subset = memfd && t->trust->n_picked > 0;
        if (curl_easy_setopt(t->curl, CURLOPT_CAINFO, memfd ? t->trust->fd_path : t->trust->path) != CURLE_OK)
                return -EIO;
        return 0;
}

static int glue_multi_new(CurlGlue *g);
static int glue_apply_cap(CurlGlue *g);

static int on_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        (void) curl_glue_sweep(g);
        return 0;
}

static void glue_transfer_gone(CurlGlue *g) {
        assert(g->n_transfers > 0);
        if (--g->n_transfers > 0 || g->limits.idle_timeout_usec == USEC_INFINITY)
                return;
        /* The last transfer ended: close the cached connections if none starts for a while. */
        if (g->idle) {
                if (sd_event_source_set_time_relative(g->idle, g->limits.idle_timeout_usec) >= 0)
                        (void) sd_event_source_set_enabled(g->idle, SD_EVENT_ONESHOT);
                return;
        }
        if (sd_event_add_time_relative(g->event, &g->idle, CLOCK_MONOTONIC, g->limits.idle_timeout_usec,
                                       USEC_PER_SEC, on_idle, g) >= 0)
                (void) sd_event_source_set_description(g->idle, "curl-idle-sweep");
}

bool curl_glue_sweep(CurlGlue *g) {
        if (!g || g->n_transfers > 0)
                return false;
        if (g->idle)
                (void) sd_event_source_set_enabled(g->idle, SD_EVENT_OFF);
        /* curl 7.88 has no call that closes idle connections, but a multi handle with no transfer holds
         * nothing else: a new one replaces it, and the old one closes its cache (through
         * on_close_socket(), so the socket table stays right). TLS sessions and DNS answers live in the
         * share handle and survive. */
        CURLM *old = g->multi;
        g->multi = NULL;
        if (glue_multi_new(g) < 0) {
                if (g->multi)
                        (void) curl_multi_cleanup(g->multi);
                g->multi = old;
                return false;
        }
        (void) curl_multi_cleanup(old);
        /* The connections' memory (TLS state, HTTP/2 buffers) back to the system, not kept by malloc. */
        (void) malloc_trim(0);
        return true;
}

unsigned curl_glue_n_transfers(CurlGlue *g) {
        return g ? g->n_transfers : 0;
}

uint64_t curl_glue_n_connects(CurlGlue *g) {
        return g ? g->n_connects : 0;
}

static void glue_drain(CurlGlue *g) {
        CURLMsg *msg;
        int left;

        if (g->cap_changed) {
                g->cap_changed = false;
                (void) glue_apply_cap(g);
        }
        /* Drain every finished transfer, not only the first. */
        while ((msg = curl_multi_info_read(g->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;
                CURL *c = msg->easy_handle;
                CURLcode result = msg->data.result;
                Transfer *t = NULL;
                (void) curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **) &t);
                (void) curl_multi_remove_handle(g->multi, c);
                /* Not verified with the trust subset: again with the whole file (nothing was received). */
                if (t && t->subset && !t->retried &&
                    (result == CURLE_PEER_FAILED_VERIFICATION || result == CURLE_SSL_CONNECT_ERROR ||
                     result == CURLE_SSL_CACERT_BADFILE)) {
                        /* A memfd that cannot be read back (no /proc): not again. */
                        if (result == CURLE_SSL_CACERT_BADFILE)
                                t->trust->disabled = true;
                        t->retried = true;
                        if (transfer_trust(t, false) >= 0 && curl_multi_add_handle(g->multi, c) == CURLM_OK)
                                continue;
                }
                (void) curl_easy_setopt(c, CURLOPT_PRIVATE, NULL);
                glue_transfer_gone(g);
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
        g->n_connects++;
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

/* MaxUpstreamConnections= caps connections once they multiplex (or the version is forced): with
 * HTTPVersion=auto, until an endpoint has negotiated HTTP/2, every transfer in flight needs a connection
 * of its own (HTTP/1.1: plain http://, or an endpoint without h2), and a cap would hold streams back for
 * as long as others stream. */
static int glue_apply_cap(CurlGlue *g) {
        bool capped = g->limits.http_version != CURL_GLUE_HTTP_AUTO || g->multiplexing;
        long cap = capped ? (long) MIN(g->limits.max_connections, (unsigned) LONG_MAX) : 0;

        /* MAXCONNECTS: idle connections kept, no more than may be open (0: curl's default, 4 per transfer). */
        if (curl_multi_setopt(g->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, cap) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, cap) != CURLM_OK)
                return -EINVAL;
        return 0;
}

static int glue_multi_new(CurlGlue *g) {
        g->multi = curl_multi_init();
        if (!g->multi)
                return -ENOMEM;
        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX) != CURLM_OK)
                return -EINVAL;
        return glue_apply_cap(g);
}

int curl_glue_set_limits(CurlGlue *g, const CurlGlueLimits *l) {
        if (l->http_version < 0 || l->http_version >= _CURL_GLUE_HTTP_MAX)
                return -EINVAL;
        g->limits = *l;
        if (g->limits.idle_timeout_usec == 0)
                g->limits.idle_timeout_usec = CURL_GLUE_IDLE_TIMEOUT_DEFAULT;
        return glue_apply_cap(g);
}

CurlGlueHTTPVersion curl_glue_http_version_from_string(const char *s) {
        if (!s)
                return _CURL_GLUE_HTTP_INVALID;
        if (streq(s, "auto"))
                return CURL_GLUE_HTTP_AUTO;
        if (streq(s, "1.1"))
                return CURL_GLUE_HTTP_1_1;
        if (streq(s, "2"))
                return CURL_GLUE_HTTP_2;
        return _CURL_GLUE_HTTP_INVALID;
}

int curl_glue_parse_http_version(const char *value, void *data) {
        CurlGlueHTTPVersion v = curl_glue_http_version_from_string(value);
        if (v < 0)
                return v;
        *(CurlGlueHTTPVersion *) data = v;
        return 0;
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
        g->limits = CURL_GLUE_LIMITS_DEFAULT;
        r = glue_multi_new(g);
        if (r < 0)
                return r;
        /* One thread: no lock callbacks. The connection cache is the multi handle's own already. */
        g->share = curl_share_init();
        if (!g->share)
                return -ENOMEM;
        if (curl_share_setopt(g->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK ||
            curl_share_setopt(g->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK)
                return -EIO;
        r = sd_event_add_io(e, &g->io, g->epoll_fd, EPOLLIN, on_io, g);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(g->io, "curl-io");
        *ret = TAKE_PTR(g);
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        /* Closes the cached connections through on_close_socket(), which needs the table. */
        if (g->multi)
                (void) curl_multi_cleanup(g->multi);
        /* Still in use by an easy handle that outlived the glue (a caller's bug): leaked, not freed
         * under it. */
        if (g->share && curl_share_cleanup(g->share) != CURLSHE_OK)
                g->share = NULL;
        sd_event_source_disable_unref(g->idle);
        free(g->sockets);
        free(g->proxy);
        free(g->noproxy);
        sd_event_source_disable_unref(g->io);
        safe_close(g->epoll_fd);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->defer);
        sd_event_unref(g->event);
        free(g);
        return NULL;
}

static int glue_apply_limits(CurlGlue *g, CURL *c) {
        static const long version[_CURL_GLUE_HTTP_MAX] = {
                [CURL_GLUE_HTTP_AUTO] = CURL_HTTP_VERSION_2TLS,
                [CURL_GLUE_HTTP_1_1] = CURL_HTTP_VERSION_1_1,
                [CURL_GLUE_HTTP_2] = CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE,
        };
        if (curl_easy_setopt(c, CURLOPT_SHARE, g->share) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_HTTP_VERSION, version[g->limits.http_version]) != CURLE_OK ||
            /* curl copies the request (headers and body) into an upload buffer of this size, held for
             * as long as the transfer runs: 64 KiB by default, the better part of a held stream's memory.
             * 16 KiB is curl's minimum; larger bodies go out in more writes. */
            curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 16384L) != CURLE_OK ||
            /* (With AUTO, curl_glue_setup_easy() asked for PIPEWAIT on https:// URLs.) */
            (g->limits.http_version == CURL_GLUE_HTTP_2 && curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L) != CURLE_OK) ||
            curl_easy_setopt(c, CURLOPT_MAXAGE_CONN,
                             (long) MAX(g->limits.idle_timeout_usec == USEC_INFINITY ? 118 :
                                        g->limits.idle_timeout_usec / USEC_PER_SEC, (uint64_t) 1)) != CURLE_OK)
                return -EIO;
        return 0;
}

int curl_glue_add(CurlGlue *g, CURL *c, CurlGlueDone done, void *userdata) {
        return curl_glue_add_proxied(g, c, NULL, NULL, done, userdata);
}

int curl_glue_add_proxied(CurlGlue *g, CURL *c, const char *proxy, const char *noproxy, CurlGlueDone done,
                          void *userdata) {
        GlueTrust *trust = NULL;
        Transfer *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->done = done;
        t->userdata = userdata;
        t->curl = c;
        t->glue = g;
        /* curl_glue_setup_easy() left the trust entry here. */
        (void) curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **) &trust);
        t->trust = trust;
        if ((t->trust && transfer_trust(t, true) < 0) ||
            curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_PREREQDATA, t) != CURLE_OK ||
            glue_apply_limits(g, c) < 0 ||
            curl_glue_setup_proxy(c, proxy ?: g->proxy, proxy && noproxy ? noproxy : g->noproxy) < 0 ||
            curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, on_open_socket) != CURLE_OK ||
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
        g->n_transfers++;
        if (g->idle)
                (void) sd_event_source_set_enabled(g->idle, SD_EVENT_OFF);
        return 0;
}

int curl_glue_setup_proxy(CURL *c, const char *proxy, const char *noproxy) {
        /* "env": curl's own reading of http_proxy, https_proxy, all_proxy and no_proxy. Otherwise never
         * the environment: "" is "no proxy" to curl, where NULL would fall back to the variables. */
        if (!streq_ptr(proxy, CURL_GLUE_PROXY_ENV) &&
            curl_easy_setopt(c, CURLOPT_PROXY, strempty(proxy)) != CURLE_OK)
                return -EIO;
        if ((noproxy || !streq_ptr(proxy, CURL_GLUE_PROXY_ENV)) &&
            curl_easy_setopt(c, CURLOPT_NOPROXY, noproxy) != CURLE_OK)
                return -EIO;
        return 0;
}

int curl_glue_set_proxy(CurlGlue *g, const char *proxy, const char *noproxy) {
        _cleanup_free_ char *p = NULL, *n = NULL;

        if (proxy && curl_glue_proxy_check(proxy) < 0)
                return -EINVAL;
        if ((proxy && !(p = strdup(proxy))) || (noproxy && !(n = strdup(noproxy))))
                return -ENOMEM;
        free(g->proxy);
        g->proxy = TAKE_PTR(p);
        free(g->noproxy);
        g->noproxy = TAKE_PTR(n);
        return 0;
}

int curl_glue_proxy_check(const char *proxy) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        char *host = NULL;
        int r;

        if (!proxy)
                return -EINVAL;
        if (streq(proxy, CURL_GLUE_PROXY_ENV))
                return 0;
        /* socks5h: the proxy resolves the host name, so no DNS query for it leaves from here. */
        if (strncasecmp(proxy, "http://", 7) != 0 && strncasecmp(proxy, "https://", 8) != 0 &&
            strncasecmp(proxy, "socks5h://", 10) != 0)
                return -EPROTONOSUPPORT;
        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, proxy, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
                return -EINVAL;
        r = isempty(host) ? -EINVAL : 0;
        curl_free(host);
        return r;
}

int curl_glue_parse_proxy(const char *value, void *data) {
        int r;

        if (isempty(value)) {
                free(*(char **) data);
                *(char **) data = NULL;
                return 0;
        }
        r = curl_glue_proxy_check(value);
        if (r < 0)
                return r;
        return free_and_strdup(data, value);
}

int curl_glue_proxy_mask(const char *proxy, char **ret) {
        _cleanup_(curl_url_cleanupp) CURLU *u = NULL;
        char *pw = NULL, *s = NULL;

        if (!proxy)
                return (*ret = strdup("none")) ? 0 : -ENOMEM;
        u = curl_url();
        if (!u)
                return -ENOMEM;
        /* Whatever cannot be parsed is not shown at all: it might be a password. */
        if (curl_url_set(u, CURLUPART_URL, proxy, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
                return (*ret = strdup(streq(proxy, CURL_GLUE_PROXY_ENV) ? proxy : "(unparsable)")) ? 0 : -ENOMEM;
        if (curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK) {
                curl_free(pw);
                if (curl_url_set(u, CURLUPART_PASSWORD, "***", 0) != CURLUE_OK)
                        return -ENOMEM;
        }
        if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
                return -ENOMEM;
        *ret = strdup(s);
        curl_free(s);
        return *ret ? 0 : -ENOMEM;
}

void curl_glue_remove(CurlGlue *g, CURL *c) {
        Transfer *t = NULL;
        if (!c)
                return;
        (void) curl_easy_getinfo(c, CURLINFO_PRIVATE, (char **) &t);
        (void) curl_multi_remove_handle(g->multi, c);
        (void) curl_easy_setopt(c, CURLOPT_PRIVATE, NULL);
        if (t) {
                free(t);
                glue_transfer_gone(g);
        }
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

static bool glue_system_ca_file_exists(void) {
        static int cached = -1;
        if (cached < 0)
                cached = access(CURL_GLUE_SYSTEM_CA_FILE, R_OK) == 0;
        return cached;
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
        /* A new transfer waits for a connection being set up to the same host to tell whether it
         * multiplexes (HTTP/2) rather than open one of its own, so a burst of requests shares one
         * connection. Only where h2 can come: over TLS (plain http:// is HTTP/1.1 unless the glue forces
         * HTTP/2), and waiting there would hold every new transfer until the first's response headers. */
        if (strncasecmp(url, "https://", 8) == 0 && curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L) != CURLE_OK)
                return -EIO;
        if (!ca_file && glue_system_ca_file_exists())
                ca_file = CURL_GLUE_SYSTEM_CA_FILE;
        /* With a file to trust, NULL switches the CA directory off (curl_easy_reset() brings the built-in
         * default back, so this is set every time). Without one, curl's defaults stay. */
        if (ca_file && (curl_easy_setopt(c, CURLOPT_CAINFO, ca_file) != CURLE_OK ||
                        curl_easy_setopt(c, CURLOPT_CAPATH, NULL) != CURLE_OK))
                return -EIO;
        /* For curl_glue_add(), which owns CURLOPT_PRIVATE from then on (see GlueTrust). */
        if (curl_easy_setopt(c, CURLOPT_PRIVATE, ca_file && strncasecmp(url, "https://", 8) == 0 ?
                             (char *) trust_get(ca_file) : NULL) != CURLE_OK)
                return -EIO;
        return 0;
}
