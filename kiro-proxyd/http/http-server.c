/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The HTTP server: listeners (one libmicrohttpd daemon each, external epoll) on the sd-event loop, their
 * connections (deadlines, hang-up watch) and the heap trim when idle. The request side is http-request.c. */
#include <assert.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "escape.h"
#include "log.h"
#include "time-util.h"
#include "http/http-internal.h"
#include "http/http-listen.h"

static bool peer_key(const struct sockaddr *addr, uint8_t ret[static 16]);

/* ── Connections ──────────────────────────────────────────────────────────────────────────────────── */

static void waiting_remove(HttpConnection *conn) {
        HttpServer *s = conn->listener->server;

        if (!conn->waiting)
                return;
        if (conn->wprev)
                conn->wprev->wnext = conn->wnext;
        else
                s->waiting_head = conn->wnext;
        if (conn->wnext)
                conn->wnext->wprev = conn->wprev;
        else
                s->waiting_tail = conn->wprev;
        conn->wprev = conn->wnext = NULL;
        conn->waiting = false;
}

static void waiting_append(HttpConnection *conn) {
        HttpServer *s = conn->listener->server;

        waiting_remove(conn);
        conn->wprev = s->waiting_tail;
        if (s->waiting_tail)
                s->waiting_tail->wnext = conn;
        else
                s->waiting_head = conn;
        s->waiting_tail = conn;
        conn->waiting = true;
}

/* Shuts the socket down; MHD sees the hang-up on its next run and closes the connection properly. */
static void connection_drop(HttpConnection *conn) {
        HttpServer *s = conn->listener->server;

        waiting_remove(conn);
        connection_disarm_deadline(conn);
        if (!conn->evicted) {
                conn->evicted = true;
                s->n_evicted++;
        }
        if (conn->fd >= 0)
                (void) shutdown(conn->fd, SHUT_RDWR);
        listener_kick(conn->listener);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpConnection *conn = userdata;

        /* A complete request did not arrive in time, however slowly the bytes came: drop the connection. */
        log_debug("HTTP connection on %s did not deliver a complete request in time, closing it.",
                  conn->listener->description);
        connection_drop(conn);
        return 0;
}

static void connection_set_deadline(HttpConnection *conn, usec_t usec) {
        HttpServer *s = conn->listener->server;
        int r;

        if (!conn->deadline) {
                r = sd_event_add_time(s->event, &conn->deadline, CLOCK_MONOTONIC, usec, 0, on_deadline, conn);
                if (r < 0) {
                        log_warning_errno(r, "Failed to add request deadline timer, continuing without: %m");
                        return;
                }
                (void) sd_event_source_set_description(conn->deadline, "http-request-deadline");
                return;
        }
        r = sd_event_source_set_time(conn->deadline, usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(conn->deadline, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to re-arm request deadline timer: %m");
}

static usec_t deadline_after(usec_t base, uint64_t timeout) {
        return timeout == USEC_INFINITY || base > USEC_INFINITY - 1 - timeout ? USEC_INFINITY : base + timeout;
}

/* The connection waits for a request (a new connection, or a keep-alive one after a response): it has
 * HeaderTimeoutSec= for the headers and can be pushed out to make room. */
void connection_arm_deadline(HttpConnection *conn) {
        HttpServer *s = conn->listener->server;
        uint64_t t = MIN(s->limits.header_timeout_usec, s->limits.request_timeout_usec);

        if (conn->evicted)
                return;
        conn->armed_usec = now(CLOCK_MONOTONIC);
        waiting_append(conn);
        if (t == USEC_INFINITY)
                return;
        connection_set_deadline(conn, deadline_after(conn->armed_usec, t));
}

/* The headers are in: the whole request has until RequestTimeoutSec= after the wait began. */
void connection_headers_in(HttpConnection *conn) {
        HttpServer *s;

        if (!conn || conn->evicted || !conn->waiting)
                return;
        s = conn->listener->server;
        if (s->limits.request_timeout_usec == USEC_INFINITY) {
                connection_disarm_deadline(conn);
                return;
        }
        connection_set_deadline(conn, deadline_after(conn->armed_usec, s->limits.request_timeout_usec));
}

/* A response is complete: the connection waits for the next request, unless the client has already
 * shut down its sending side. */
void connection_request_done(HttpConnection *conn) {
        conn->in_request = false;
        if (conn->peer_gone)
                connection_drop(conn);
        else
                connection_arm_deadline(conn);
}

/* The request is with the app: the time it takes is not the client's fault, and the connection is busy. */
void connection_disarm_deadline(HttpConnection *conn) {
        if (!conn)
                return;
        waiting_remove(conn);
        if (conn->deadline)
                (void) sd_event_source_set_enabled(conn->deadline, SD_EVENT_OFF);
}

static int on_hangup(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        HttpConnection *conn = userdata;
        HttpRequest *r = conn->suspended;

        /* The client closed (or reset) its side. MHD notices that itself unless the connection is
         * suspended: then let MHD close it, which runs the abort handler from the completion callback. */
        conn->peer_gone = true;
        if (!r) {
                /* Between requests a client that closed its sending side can send no other: MHD would
                 * keep the connection until the idle timeout. */
                if (!conn->in_request)
                        connection_drop(conn);
                return 0;
        }
        if (r->state == REQUEST_OWNED && !r->responded && request_refuse_half_closed(r) >= 0) {
                server_post(conn->listener->server);
                return 0;
        }
        log_debug("HTTP client of %s '%s' went away while the response was pending.", LOG_ESC(r->method), LOG_ESC(r->path));
        r->client_gone = true;
        request_resume(r);
        server_post(conn->listener->server);
        return 0;
}

static void connection_watch_hangup(HttpConnection *conn) {
        int r;

        if (conn->fd < 0)
                return;
        r = sd_event_add_io(conn->listener->server->event, &conn->hangup, conn->fd, EPOLLRDHUP | EPOLLET,
                            on_hangup, conn);
        if (r < 0) {
                /* Not fatal: a disconnect during a suspension is then noticed at the next write. */
                log_debug_errno(r, "Failed to watch HTTP connection for hang-up: %m");
                return;
        }
        (void) sd_event_source_set_description(conn->hangup, "http-hangup");
}

static HttpConnection *connection_free(HttpConnection *conn) {
        HttpServer *s;

        if (!conn)
                return NULL;
        s = conn->listener->server;
        waiting_remove(conn);
        if (conn->evicted) {
                assert(s->n_evicted > 0);
                s->n_evicted--;
        }
        if (conn->prev)
                conn->prev->next = conn->next;
        else
                s->connections = conn->next;
        if (conn->next)
                conn->next->prev = conn->prev;
        if (conn->suspended)
                conn->suspended->conn = NULL;
        sd_event_source_disable_unref(conn->hangup);
        sd_event_source_disable_unref(conn->deadline);
        free(conn);
        return NULL;
}

/* A streamed answer or a large request leaves freed memory in the heap that malloc keeps for later. Once
 * the daemon has had no connection for a second, give it back, so that an idle daemon is small again. */
static int on_trim(sd_event_source *source, uint64_t usec, void *userdata) {
        HttpServer *s = userdata;

        if (s->n_connections != 0 || s->n_requests != 0)
                return 0;
        if (s->on_idle)
                s->on_idle(s->idle_userdata);
        (void) malloc_trim(0);
        return 0;
}

void http_server_set_idle_handler(HttpServer *s, HttpServerPost on_idle, void *userdata) {
        s->on_idle = on_idle;
        s->idle_userdata = userdata;
}

static void server_arm_trim(HttpServer *s) {
        int r;

        if (!s->trim_timer) {
                r = sd_event_add_time_relative(s->event, &s->trim_timer, CLOCK_MONOTONIC, USEC_PER_SEC,
                                               250 * USEC_PER_MSEC, on_trim, s);
                if (r >= 0)
                        (void) sd_event_source_set_description(s->trim_timer, "http-trim");
                return;
        }
        r = sd_event_source_set_time_relative(s->trim_timer, USEC_PER_SEC);
        if (r >= 0)
                (void) sd_event_source_set_enabled(s->trim_timer, SD_EVENT_ONESHOT);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
        HttpListener *l = cls;
        HttpServer *s = l->server;
        HttpConnection *conn;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

                conn = calloc(1, sizeof(HttpConnection));
                if (!conn) {
                        /* We cannot refuse from here; make MHD drop it. */
                        log_oom();
                        if (ci)
                                (void) shutdown(ci->connect_fd, SHUT_RDWR);
                        return;
                }
                conn->listener = l;
                conn->fd = ci ? ci->connect_fd : -EBADF;
                ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
                conn->has_peer = ci && ci->client_addr && peer_key(ci->client_addr, conn->peer);
                conn->next = s->connections;
                if (s->connections)
                        s->connections->prev = conn;
                s->connections = conn;
                s->n_connections++;
                connection_arm_deadline(conn);
                connection_watch_hangup(conn);
                *socket_context = conn;
                return;
        }

        conn = *socket_context;
        *socket_context = NULL;
        if (conn) {
                assert(s->n_connections > 0);
                s->n_connections--;
                connection_free(conn);
                if (s->n_connections == 0)
                        server_arm_trim(s);
        }
}

/* MHD's own limit: room above MaxConnections= for pushed-out connections that MHD has not closed yet. */
static unsigned connection_limit(HttpServer *s) {
        return s->limits.max_connections + MIN(s->limits.max_connections / 8 + 8, 1024U);
}

/* The peer address as 16 bytes (IPv4 v4-mapped); false for anything else (unix sockets). */
static bool peer_key(const struct sockaddr *addr, uint8_t ret[static 16]) {
        if (addr->sa_family == AF_INET6) {
                memcpy(ret, &((const struct sockaddr_in6 *) addr)->sin6_addr, 16);
                return true;
        }
        if (addr->sa_family == AF_INET) {
                memset(ret, 0, 10);
                ret[10] = ret[11] = 0xff;
                memcpy(ret + 12, &((const struct sockaddr_in *) addr)->sin_addr, 4);
                return true;
        }
        return false;
}

/* Makes room by pushing out the connection that has waited longest for its request (of one client if key
 * is given). False if there is none: every connection is busy with a request. */
static bool server_evict_oldest(HttpServer *s, const uint8_t *key) {
        for (HttpConnection *c = s->waiting_head; c; c = c->wnext) {
                if (key && (!c->has_peer || memcmp(c->peer, key, 16) != 0))
                        continue;
                log_debug("Closing the HTTP connection on %s that waited longest for a request, to make room.",
                          c->listener->description);
                connection_drop(c);
                return true;
        }
        return false;
}

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
        HttpListener *l = cls;
        HttpServer *s = l->server;
        uint8_t key[16];

        if (addr && addrlen >= sizeof(sa_family_t) && peer_key(addr, key)) {
                unsigned n = 0;

                for (HttpConnection *c = s->connections; c; c = c->next)
                        if (c->has_peer && !c->evicted && memcmp(c->peer, key, 16) == 0)
                                n++;
                if (n >= s->limits.max_connections_per_client && !server_evict_oldest(s, key)) {
                        log_debug("Refusing HTTP connection on %s: the client has %u connections busy "
                                  "(MaxConnectionsPerClient=%u).", l->description, n,
                                  s->limits.max_connections_per_client);
                        return MHD_NO;
                }
        }

        if (s->n_connections - s->n_evicted >= s->limits.max_connections && !server_evict_oldest(s, NULL)) {
                log_debug("Refusing HTTP connection on %s: %u connections busy (MaxConnections=%u).",
                          l->description, s->n_connections - s->n_evicted, s->limits.max_connections);
                return MHD_NO;
        }
        if (s->n_connections >= connection_limit(s)) {
                log_debug("Refusing HTTP connection on %s: %u connections still closing.", l->description,
                          s->n_evicted);
                return MHD_NO;
        }
        return MHD_YES;
}

static void listener_run(HttpListener *l);

void server_post(HttpServer *s) {
        if (s && s->post)
                s->post(s->post_userdata);
}

static int on_listener_defer(sd_event_source *s, void *userdata) {
        HttpListener *l = userdata;
        l->defer_source = sd_event_source_disable_unref(l->defer_source);
        listener_run(l);
        server_post(l->server);
        return 0;
}

static void listener_arm_timer(HttpListener *l, uint64_t usec) {
        int r;

        if (!l->timer_source)
                return;         /* being stopped */
        if (usec == 0) {
                /* A new defer source each time, not a re-enabled one: see the comment in curl-glue.c's
                 * timer_cb() — a re-enabled defer source jumps ahead of every waiting I/O source. */
                if (l->defer_source)
                        return;
                r = sd_event_add_defer(l->server->event, &l->defer_source, on_listener_defer, l);
                if (r < 0)
                        log_warning_errno(r, "Failed to add HTTP defer source: %m");
                return;
        }
        r = sd_event_source_set_time_accuracy(l->timer_source, 250 * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_time_relative(l->timer_source, usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->timer_source, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to arm HTTP timer for %s: %m", l->description);
}

/* MHD must run soon: a resumed connection is only picked up by the next MHD_run(). */
void listener_kick(HttpListener *l) {
        l->kicked = true;
        if (!l->running)
                listener_arm_timer(l, 0);
}

/* ── Listeners ────────────────────────────────────────────────────────────────────────────────────── */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        char buf[512], esc[1024];
        size_t l;

        /* MHD's messages are about connections, not secrets, but keep them at debug: a client can make
         * it print as much as it likes. */
        if (log_get_max_level() < LOG_DEBUG)
                return;
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        l = strlen(buf);
        while (l > 0 && buf[l - 1] == '\n')
                buf[--l] = 0;
        log_debug("libmicrohttpd: %s", escape_for_log(buf, esc, sizeof esc));
}
#pragma GCC diagnostic pop

static void listener_run(HttpListener *l) {
        HttpServer *s = l->server;
        unsigned before = s->n_connections;
        MHD_UNSIGNED_LONG_LONG ms;
        int r;

        l->running = true;
        l->kicked = false;
        if (MHD_run(l->daemon) != MHD_YES)
                log_debug("MHD_run() failed for %s.", l->description);
        l->running = false;

        /* Something resumed a connection of this daemon from inside MHD_run(): run again at once. Likewise
         * when a connection closed while we were at MaxConnections=: MHD took its listening socket out of
         * its epoll set at the limit and puts it back only at the start of a run, so without another run
         * now a client waiting in the backlog would wait for the next connection timeout. */
        if (l->kicked || (s->n_connections < before && before >= connection_limit(s))) {
                listener_arm_timer(l, 0);
                return;
        }

        /* MHD_get_timeout() is relative (milliseconds from now): arm a relative one-shot timer. */
        if (MHD_get_timeout(l->daemon, &ms) != MHD_YES) {
                r = sd_event_source_set_enabled(l->timer_source, SD_EVENT_OFF);
                if (r < 0)
                        log_warning_errno(r, "Failed to disable HTTP timer for %s: %m", l->description);
                return;
        }
        /* Cap absurd values; MHD is simply run again then. */
        ms = MIN(ms, (MHD_UNSIGNED_LONG_LONG) 24 * 3600 * 1000);
        listener_arm_timer(l, (uint64_t) ms * USEC_PER_MSEC);
}

static int on_listener_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        HttpListener *l = userdata;
        listener_run(l);
        server_post(l->server);
        return 0;
}

static int on_listener_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpListener *l = userdata;
        listener_run(l);
        server_post(l->server);
        return 0;
}

bool http_server_flush(HttpServer *s) {
        bool any = false;

        /* Run the listeners that a resumed connection kicked now rather than in an iteration of their own. */
        for (size_t i = 0; s && i < s->n_listeners; i++) {
                HttpListener *l = s->listeners[i];
                if (!l->kicked || l->running || !l->timer_source)
                        continue;
                l->defer_source = sd_event_source_disable_unref(l->defer_source);
                listener_run(l);
                any = true;
        }
        return any;
}

void http_server_set_post(HttpServer *s, HttpServerPost post, void *userdata) {
        s->post = post;
        s->post_userdata = userdata;
}

static HttpListener *listener_free(HttpListener *l) {
        if (!l)
                return NULL;
        /* Out of sd-event's epoll before MHD closes the fd. */
        l->io_source = sd_event_source_disable_unref(l->io_source);
        l->timer_source = sd_event_source_disable_unref(l->timer_source);
        l->defer_source = sd_event_source_disable_unref(l->defer_source);
        if (l->daemon)
                MHD_stop_daemon(l->daemon);
        free(l->description);
        free(l);
        return NULL;
}

int http_server_add_listener(HttpServer *s, int fd, const char *description, const HttpTLS *tls) {
        return http_server_add_listener_tagged(s, fd, description, tls, 0);
}

int http_server_add_listener_tagged(HttpServer *s, int fd, const char *description, const HttpTLS *tls, unsigned tag) {
        _cleanup_close_ int owned_fd = fd;
        HttpListener *l = NULL, **ll;
        const union MHD_DaemonInfo *info;
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
        unsigned timeout_sec;
        int r;

        assert(s);
        assert(fd >= 0);

        if (tls) {
                if (!MHD_is_feature_supported(MHD_FEATURE_TLS))
                        return log_error_errno(EOPNOTSUPP, "libmicrohttpd was built without TLS support.");
                flags |= MHD_USE_TLS;
        }

        ll = reallocarray(s->listeners, s->n_listeners + 1, sizeof(HttpListener *));
        if (!ll)
                return log_oom();
        s->listeners = ll;

        l = calloc(1, sizeof(HttpListener));
        if (!l)
                return log_oom();
        l->server = s;
        l->port = listen_fd_port(fd);
        l->tag = tag;
        if (description)
                l->description = strdup(description);
        else if (listen_fd_describe(fd, &l->description) < 0)
                l->description = strdup("(socket)");
        if (!l->description) {
                listener_free(l);
                return log_oom();
        }

        /* MHD's timeout is in whole seconds and 0 means none: round up. */
        timeout_sec = (unsigned) MIN((s->limits.idle_timeout_usec + USEC_PER_SEC - 1) / USEC_PER_SEC,
                                     (uint64_t) UINT_MAX);
        if (s->limits.idle_timeout_usec == USEC_INFINITY)
                timeout_sec = 0;

        /* Without TLS the first MHD_OPTION_END ends the list. */
        l->daemon = MHD_start_daemon(
                        flags, 0,
                        on_accept, l,
                        http_on_access, l,
                        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, l,
                        MHD_OPTION_LISTEN_SOCKET, (MHD_socket) fd,
                        MHD_OPTION_CONNECTION_LIMIT, connection_limit(s),
                        MHD_OPTION_UNESCAPE_CALLBACK, http_unescape, l,
                        MHD_OPTION_CONNECTION_TIMEOUT, timeout_sec,
                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->limits.max_header_bytes,
                        MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, l,
                        MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
                        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, tls ? tls->cert : NULL,
                        MHD_OPTION_HTTPS_MEM_KEY, tls ? tls->key : NULL,
                        MHD_OPTION_END);
        if (!l->daemon) {
                /* Whether MHD closed the socket depends on where it failed. */
                if (fcntl(fd, F_GETFD) < 0)
                        owned_fd = -EBADF;
                r = log_error_errno(EINVAL, "Failed to start HTTP server on %s.", l->description);
                listener_free(l);
                return r;
        }
        owned_fd = -EBADF;      /* MHD owns it now and closes it in MHD_stop_daemon(). */

        info = MHD_get_daemon_info(l->daemon, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0) {
                listener_free(l);
                return log_error_errno(EIO, "libmicrohttpd did not give us its epoll fd.");
        }

        r = sd_event_add_io(s->event, &l->io_source, info->epoll_fd, EPOLLIN, on_listener_io, l);
        if (r < 0) {
                listener_free(l);
                return log_error_errno(r, "Failed to watch HTTP epoll fd: %m");
        }
        (void) sd_event_source_set_description(l->io_source, "http-epoll");

        /* Fires at once, so that MHD runs for the first time from the loop. */
        r = sd_event_add_time_relative(s->event, &l->timer_source, CLOCK_MONOTONIC, 0, 0, on_listener_timer, l);
        if (r < 0) {
                listener_free(l);
                return log_error_errno(r, "Failed to add HTTP timer: %m");
        }
        /* The default accuracy is 250ms; MHD's "run again in 0ms" must not wait that long. */
        r = sd_event_source_set_time_accuracy(l->timer_source, 1);
        if (r < 0) {
                listener_free(l);
                return log_error_errno(r, "Failed to set HTTP timer accuracy: %m");
        }
        (void) sd_event_source_set_description(l->timer_source, "http-timer");

        s->listeners[s->n_listeners++] = l;
        log_debug("Serving HTTP%s on %s.", tls ? "S" : "", l->description);
        return 0;
}

/* ── Server ───────────────────────────────────────────────────────────────────────────────────────── */

int http_server_new(sd_event *e, const HttpLimits *limits, HttpHandler handler, void *userdata,
                    HttpServer **ret) {
        HttpLimits d = HTTP_LIMITS_DEFAULT;
        HttpServer *s;

        assert(e);
        assert(handler);
        assert(ret);

        s = calloc(1, sizeof(HttpServer));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(e);
        s->handler = handler;
        s->userdata = userdata;
        s->limits = limits ? *limits : d;
        if (s->limits.max_connections == 0)
                s->limits.max_connections = d.max_connections;
        s->limits.max_connections = MIN(s->limits.max_connections, UINT_MAX / 2);
        if (s->limits.max_connections_per_client == 0)
                s->limits.max_connections_per_client = s->limits.max_connections;
        if (s->limits.header_timeout_usec == 0)
                s->limits.header_timeout_usec = d.header_timeout_usec;
        if (s->limits.max_body_bytes == 0)
                s->limits.max_body_bytes = d.max_body_bytes;
        /* The body buffer is a size_t and one byte more for the NUL. */
        s->limits.max_body_bytes = MIN(s->limits.max_body_bytes, (uint64_t) SIZE_MAX / 2);
        if (s->limits.idle_timeout_usec == 0)
                s->limits.idle_timeout_usec = d.idle_timeout_usec;
        if (s->limits.request_timeout_usec == 0)
                s->limits.request_timeout_usec = d.request_timeout_usec;
        if (s->limits.max_header_bytes == 0)
                s->limits.max_header_bytes = d.max_header_bytes;
        if (s->limits.max_pending_bytes == 0)
                s->limits.max_pending_bytes = d.max_pending_bytes;

        *ret = s;
        return 0;
}

void http_server_set_request_limits(HttpServer *s, const HttpLimits *limits) {
        HttpLimits d = HTTP_LIMITS_DEFAULT;

        s->limits.max_connections_per_client = limits->max_connections_per_client ?: s->limits.max_connections;
        s->limits.max_body_bytes = MIN(limits->max_body_bytes ?: d.max_body_bytes, (uint64_t) SIZE_MAX / 2);
        s->limits.header_timeout_usec = limits->header_timeout_usec ?: d.header_timeout_usec;
        s->limits.request_timeout_usec = limits->request_timeout_usec ?: d.request_timeout_usec;
}

HttpServer *http_server_free(HttpServer *s) {
        if (!s)
                return NULL;

        /* MHD refuses to stop with suspended connections: resume them all, marked to be dropped. Their
         * completion callbacks (and the apps' abort handlers) run inside MHD_stop_daemon(). */
        for (HttpRequest *r = s->requests; r; r = r->next)
                if (r->suspended) {
                        r->client_gone = true;
                        request_resume(r);
                }

        for (size_t i = 0; i < s->n_listeners; i++)
                listener_free(s->listeners[i]);
        free(s->listeners);
        assert(!s->requests);
        assert(s->n_connections == 0);
        sd_event_source_disable_unref(s->trim_timer);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

void http_server_set_headers_handler(HttpServer *s, HttpHandler on_headers) {
        assert(s);
        s->on_headers = on_headers;
}

void http_server_set_error_renderer(HttpServer *s, HttpErrorRenderer render, void *userdata) {
        assert(s);
        s->render = render;
        s->render_userdata = userdata;
}

size_t http_server_n_listeners(HttpServer *s) {
        return s ? s->n_listeners : 0;
}

int http_server_listener_port(HttpServer *s, size_t i) {
        if (!s || i >= s->n_listeners)
                return -ENOENT;
        return s->listeners[i]->port;
}

unsigned http_server_n_connections(HttpServer *s) {
        return s ? s->n_connections : 0;
}

size_t http_server_n_requests(HttpServer *s) {
        return s ? s->n_requests : 0;
}
