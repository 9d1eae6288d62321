/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* HTTP server for kiro-proxyd: libmicrohttpd in external-epoll mode on one sd-event loop. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "escape.h"
#include "fileio.h"
#include "json-util.h"
#include "log.h"
#include "http/http.h"
#include "http/http-listen.h"

/* How it fits together.
 *
 * One MHD daemon per listening socket, each started with MHD_USE_EPOLL and without an internal thread.
 * MHD's epoll fd is an sd-event io source; after every MHD_run() a relative one-shot timer is re-armed
 * from MHD_get_timeout() (off when MHD has no timeout pending). In this mode MHD 0.9.75 drops its
 * inter-thread channel, so MHD_resume_connection() wakes nothing by itself: every resume "kicks" the
 * listener, i.e. sets that timer to fire at once (or, when it happens inside MHD_run(), right after it).
 *
 * In external mode MHD keeps a connection that waits for the application in its "ready" list: both a
 * request without a response and a content reader that returns 0 would make MHD_get_timeout() say 0,
 * i.e. a busy loop. So such connections are always suspended: on handler return without a response,
 * and inside the content reader when the stream queue is empty. They are resumed by the call that gives
 * MHD something to do (respond, stream write/end/abort) or by a hang-up on the socket.
 *
 * MHD does not notice a client disconnect while a connection is suspended, so every connection's socket
 * is also in sd-event's epoll set for EPOLLRDHUP, edge-triggered, from MHD's "started" to its "closed"
 * notification (one registration per connection, not two epoll_ctl() per suspension). A hang-up marks
 * the connection; a request suspended on it (then or later) is resumed with client_gone set, the
 * handler or the content reader then fails, MHD closes the connection and the completion callback runs
 * the abort handler. (A client that half-closes its sending side after the request counts as gone; HTTP clients
 * do not do that.) MHD's own connection timeout is an idle timeout (any byte resets it); a per-connection
 * deadline timer bounds the time to receive a whole request and shuts the socket down when it passes. */

#define STREAM_BLOCK_SIZE (4U * 1024U)
#define TLS_FILE_MAX (1024U * 1024U)

typedef struct HttpListener HttpListener;
typedef struct HttpConnection HttpConnection;

struct HttpTLS {
        char *cert;
        char *key;
        size_t key_size;
};

struct HttpServer {
        sd_event *event;
        HttpLimits limits;

        HttpHandler handler;
        HttpHandler on_headers;
        void *userdata;
        HttpErrorRenderer render;
        void *render_userdata;

        HttpListener **listeners;
        size_t n_listeners;

        HttpRequest *requests;          /* attached to a connection */
        size_t n_requests;
        unsigned n_connections;

        HttpServerPost post;
        void *post_userdata;

        sd_event_source *trim_timer;    /* gives freed heap back once the last connection is gone */
        HttpServerPost on_idle;
        void *idle_userdata;
};

struct HttpListener {
        HttpServer *server;
        struct MHD_Daemon *daemon;
        sd_event_source *io_source;
        sd_event_source *timer_source;
        sd_event_source *defer_source;
        char *description;
        int port;
        bool running;           /* inside MHD_run() */
        bool kicked;            /* a connection was resumed: MHD_run() must run again soon */
};

/* Per TCP/unix connection (MHD's "socket context"); outlives the requests on a keep-alive connection. */
struct HttpConnection {
        HttpListener *listener;
        int fd;
        sd_event_source *deadline;
        sd_event_source *hangup;        /* EPOLLRDHUP, edge-triggered, for the connection's lifetime */
        HttpRequest *suspended;         /* the request parked on this connection, if any */
        bool peer_gone;                 /* the hang-up was seen */
};

typedef enum RequestState {
        REQUEST_RECEIVING,      /* headers in, body coming: the app has not been handed r */
        REQUEST_OWNED,          /* handed to the app, no final call yet */
        REQUEST_DONE,           /* final call made, MHD finishes the response */
} RequestState;

struct HttpRequest {
        HttpServer *server;                     /* NULL once detached */
        HttpListener *listener;
        HttpConnection *conn;
        struct MHD_Connection *connection;      /* NULL once detached */
        HttpRequest *prev, *next;

        char *method;
        char *path;

        char *body;
        size_t body_size, body_alloc;
        uint64_t discarded;

        RequestState state;
        bool in_callback;       /* inside the handler or the headers handler */
        bool responded;         /* a response (complete or streamed) is queued with MHD */
        bool streaming;
        bool stream_ended;
        bool suspended;
        bool client_gone;       /* make MHD drop the connection at the next chance */
        bool too_large;
        bool detached;          /* the connection is gone, the app still owns r */
        bool aborting;          /* inside the abort handler */

        char *out;
        size_t out_start, out_end, out_alloc;

        HttpRequestCallback on_abort;
        void *abort_userdata;
        HttpRequestCallback on_drain;
        void *drain_userdata;
        void *userdata;
        char **response_headers;        /* http_request_add_response_header() */
};

static const char *termination_to_string(enum MHD_RequestTerminationCode t) {
        switch (t) {
        case MHD_REQUEST_TERMINATED_COMPLETED_OK:
                return "completed";
        case MHD_REQUEST_TERMINATED_WITH_ERROR:
                return "error";
        case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
                return "timeout";
        case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
                return "shutdown";
        case MHD_REQUEST_TERMINATED_READ_ERROR:
                return "read error";
        case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
                return "client abort";
        default:
                return "unknown";
        }
}

/* ── Error bodies ─────────────────────────────────────────────────────────────────────────────────── */

static const char *openai_error_type(unsigned status) {
        switch (status) {
        case 401:
                return "invalid_request_error";
        case 403:
                return "permission_error";
        case 429:
                return "rate_limit_error";
        default:
                return status >= 500 ? "server_error" : "invalid_request_error";
        }
}

static const char *openai_error_code(unsigned status) {
        switch (status) {
        case 401:
                return "invalid_api_key";
        case 404:
                return "not_found";
        case 413:
                return "request_too_large";
        default:
                return NULL;
        }
}

int http_error_render_openai(HttpRequest *r, unsigned status, const char *message, char **ret_body,
                             size_t *ret_size, const char **ret_content_type, void *userdata) {
        _cleanup_json_ json_object *o = NULL;
        json_object *e;
        const char *code = openai_error_code(status);
        char *s;

        o = json_object_new_object();
        e = json_object_new_object();
        if (!o || !e) {
                json_object_put(e);
                return -ENOMEM;
        }
        if (json_object_object_add(o, "error", e) < 0) {
                json_object_put(e);
                return -ENOMEM;
        }
        if (json_object_object_add(e, "message", json_object_new_string(strempty(message))) < 0 ||
            json_object_object_add(e, "type", json_object_new_string(openai_error_type(status))) < 0 ||
            json_object_object_add(e, "param", NULL) < 0 ||
            json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL) < 0)
                return -ENOMEM;

        s = json_to_string_dup(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        *ret_size = strlen(s);
        *ret_body = s;
        *ret_content_type = "application/json";
        return 0;
}

/* ── Connections ──────────────────────────────────────────────────────────────────────────────────── */

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpConnection *conn = userdata;

        /* A complete request did not arrive in time, however slowly the bytes came: drop the connection.
         * MHD sees the hang-up on its next run and closes it properly. */
        log_debug("HTTP connection on %s did not deliver a complete request in time, closing it.",
                  conn->listener->description);
        if (conn->fd >= 0)
                (void) shutdown(conn->fd, SHUT_RDWR);
        return 0;
}

static void connection_arm_deadline(HttpConnection *conn) {
        HttpServer *s = conn->listener->server;
        int r;

        if (s->limits.request_timeout_usec == USEC_INFINITY)
                return;
        if (!conn->deadline) {
                r = sd_event_add_time_relative(s->event, &conn->deadline, CLOCK_MONOTONIC,
                                               s->limits.request_timeout_usec, 0, on_deadline, conn);
                if (r < 0)
                        log_warning_errno(r, "Failed to add request deadline timer, continuing without: %m");
                else
                        (void) sd_event_source_set_description(conn->deadline, "http-request-deadline");
                return;
        }
        r = sd_event_source_set_time_relative(conn->deadline, s->limits.request_timeout_usec);
        if (r >= 0)
                r = sd_event_source_set_enabled(conn->deadline, SD_EVENT_ONESHOT);
        if (r < 0)
                log_warning_errno(r, "Failed to re-arm request deadline timer: %m");
}

static void connection_disarm_deadline(HttpConnection *conn) {
        if (conn && conn->deadline)
                (void) sd_event_source_set_enabled(conn->deadline, SD_EVENT_OFF);
}

static void request_resume(HttpRequest *r);
static void server_post(HttpServer *s);

static int on_hangup(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        HttpConnection *conn = userdata;
        HttpRequest *r = conn->suspended;

        /* The client closed (or reset) its side. MHD notices that itself unless the connection is
         * suspended: then let MHD close it, which runs the abort handler from the completion callback. */
        conn->peer_gone = true;
        if (!r)
                return 0;
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
        if (!conn)
                return NULL;
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

static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
        HttpListener *l = cls;
        HttpServer *s = l->server;

        if (s->n_connections >= s->limits.max_connections) {
                log_debug("Refusing HTTP connection on %s: %u connections open (MaxConnections=%u).",
                          l->description, s->n_connections, s->limits.max_connections);
                return MHD_NO;
        }
        return MHD_YES;
}

/* ── Requests: state helpers ──────────────────────────────────────────────────────────────────────── */

static HttpRequest *request_free(HttpRequest *r) {
        if (!r)
                return NULL;
        assert(!r->prev && !r->next);
        free(r->method);
        free(r->path);
        free(r->body);
        free(r->out);
        strv_free(r->response_headers);
        free(r);
        return NULL;
}

static void request_unlink(HttpRequest *r) {
        HttpServer *s = r->server;

        if (r->conn && r->conn->suspended == r)
                r->conn->suspended = NULL;
        if (s) {
                if (r->prev)
                        r->prev->next = r->next;
                else
                        s->requests = r->next;
                if (r->next)
                        r->next->prev = r->prev;
                assert(s->n_requests > 0);
                s->n_requests--;
        }
        r->prev = r->next = NULL;
        r->server = NULL;
        r->connection = NULL;
        r->conn = NULL;
        r->suspended = false;
}

static void listener_run(HttpListener *l);
static void server_post(HttpServer *s) {
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
static void listener_kick(HttpListener *l) {
        l->kicked = true;
        if (!l->running)
                listener_arm_timer(l, 0);
}

static void request_resume(HttpRequest *r) {
        if (!r->suspended)
                return;
        if (r->conn && r->conn->suspended == r)
                r->conn->suspended = NULL;
        r->suspended = false;
        MHD_resume_connection(r->connection);
        listener_kick(r->listener);
}

static void request_suspend(HttpRequest *r) {
        assert(!r->suspended);
        assert(r->connection);

        MHD_suspend_connection(r->connection);
        r->suspended = true;
        if (!r->conn)
                return;
        r->conn->suspended = r;
        if (r->conn->peer_gone) {
                /* The client hung up before (the edge is gone): drop the connection at once. */
                r->client_gone = true;
                request_resume(r);
        }
}

/* Parses "Name: value" and adds it; refuses anything that could split the header block. */
static int response_add_header_line(struct MHD_Response *resp, const char *line) {
        _cleanup_free_ char *name = NULL;
        const char *colon, *value;

        if (strpbrk(line, "\r\n"))
                return -EINVAL;
        colon = strchr(line, ':');
        if (!colon || colon == line)
                return -EINVAL;
        name = strndup(line, colon - line);
        if (!name)
                return -ENOMEM;
        if (strpbrk(name, " \t()<>@,;:\\\"/[]?={}"))
                return -EINVAL;
        value = colon + 1;
        value += strspn(value, " \t");
        if (MHD_add_response_header(resp, name, value) != MHD_YES)
                return -EINVAL;
        return 0;
}

static int response_add_headers(struct MHD_Response *resp, const char *content_type,
                                const char *const *extra_headers) {
        int k;

        if (content_type) {
                if (strpbrk(content_type, "\r\n"))
                        return -EINVAL;
                if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
                        return -EINVAL;
        }
        for (const char *const *h = extra_headers; h && *h; h++) {
                k = response_add_header_line(resp, *h);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* Adds the headers to resp and queues it for r; resp is released either way. */
static int response_queue(HttpRequest *r, unsigned status, struct MHD_Response *resp, const char *content_type,
                          const char *const *extra_headers) {
        int k = response_add_headers(resp, content_type, extra_headers);
        if (k >= 0)
                k = response_add_headers(resp, NULL, (const char *const *) r->response_headers);
        if (k >= 0 && MHD_queue_response(r->connection, status, resp) != MHD_YES)
                k = -EIO;
        MHD_destroy_response(resp);
        return k;
}

/* Queues a complete response and makes r DONE. Nothing is changed on failure. */
static int request_queue(HttpRequest *r, unsigned status, const char *content_type, const char *body,
                         size_t size, const char *const *extra_headers) {
        struct MHD_Response *resp;
        int k;

        assert(r->connection);

        if (status < 100 || status > 999)
                return -EINVAL;

        resp = MHD_create_response_from_buffer(size, (void *) (size > 0 ? body : ""), MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return -ENOMEM;
        k = response_queue(r, status, resp, content_type, extra_headers);
        if (k < 0)
                return k;

        r->responded = true;
        r->state = REQUEST_DONE;
        request_resume(r);
        return 0;
}

static int request_queue_error(HttpRequest *r, unsigned status, const char *message) {
        HttpServer *s = r->server;
        _cleanup_free_ char *body = NULL;
        const char *content_type = NULL;
        size_t size = 0;
        int k = -EINVAL;

        if (s && s->render)
                k = s->render(r, status, message, &body, &size, &content_type, s->render_userdata);
        if (k < 0) {
                /* The renderer failed: plain text is better than nothing. */
                free(body);
                body = NULL;
                if (asprintf(&body, "%s\n", strempty(message)) < 0) {
                        body = NULL;
                        return -ENOMEM;
                }
                size = strlen(body);
                content_type = "text/plain; charset=utf-8";
        }
        return request_queue(r, status, content_type, body, size, NULL);
}

/* When even an error response cannot be queued: make MHD drop the connection. */
static void request_fail_hard(HttpRequest *r) {
        r->state = REQUEST_DONE;
        r->client_gone = true;
        request_resume(r);
}

/* ── Requests: MHD callbacks ──────────────────────────────────────────────────────────────────────── */

static int request_new(HttpListener *l, struct MHD_Connection *c, const char *method, const char *url,
                       HttpRequest **ret) {
        HttpServer *s = l->server;
        const union MHD_ConnectionInfo *ci;
        HttpRequest *r;

        r = calloc(1, sizeof(HttpRequest));
        if (!r)
                return -ENOMEM;
        r->method = strdup(method);
        r->path = strdup(url);
        r->body = calloc(1, 1);
        if (!r->method || !r->path || !r->body) {
                request_free(r);
                return -ENOMEM;
        }
        r->body_alloc = 1;
        r->server = s;
        r->listener = l;
        r->connection = c;
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn = ci ? ci->socket_context : NULL;

        r->next = s->requests;
        if (s->requests)
                s->requests->prev = r;
        s->requests = r;
        s->n_requests++;

        *ret = r;
        return 0;
}

static int parse_content_length(const char *v, uint64_t *ret) {
        uint64_t n = 0;

        if (!v || !v[0])
                return -EINVAL;
        for (const char *p = v; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (n > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                n = n * 10 + (uint64_t) (*p - '0');
        }
        *ret = n;
        return 0;
}

static enum MHD_Result request_reject_too_large(HttpRequest *r) {
        char msg[160];

        (void) snprintf(msg, sizeof(msg), "Request body too large: the limit is %" PRIu64 " bytes.",
                        r->listener->server->limits.max_body_bytes);
        log_debug("Refusing %s '%s': body larger than %" PRIu64 " bytes.", LOG_ESC(r->method), LOG_ESC(r->path),
                  r->listener->server->limits.max_body_bytes);
        return request_queue_error(r, 413, msg) < 0 ? MHD_NO : MHD_YES;
}

/* First call: the headers are in, the body (if any) is not read yet. */
static enum MHD_Result request_headers_in(HttpRequest *r) {
        HttpServer *s = r->server;
        const char *cl;
        uint64_t length;
        int k;

        /* Everything here is answered before the body is read: MHD then discards the body and closes
         * the connection, and an "Expect: 100-continue" client does not even send it. The app's check
         * (authentication) goes first, so that unauthenticated clients learn nothing else. */
        if (s->on_headers) {
                r->in_callback = true;
                k = s->on_headers(r, s->userdata);
                r->in_callback = false;
                if (r->state == REQUEST_DONE)
                        return r->responded ? MHD_YES : MHD_NO;
                if (k < 0) {
                        log_debug_errno(k, "Headers handler for %s '%s' failed: %m", LOG_ESC(r->method), LOG_ESC(r->path));
                        return request_queue_error(r, 500, "Internal server error.") < 0 ? MHD_NO : MHD_YES;
                }
        }

        cl = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
                k = parse_content_length(cl, &length);
                if (k == -ERANGE || (k >= 0 && length > s->limits.max_body_bytes))
                        return request_reject_too_large(r);
        }
        return MHD_YES;
}

static int request_append_body(HttpRequest *r, const char *data, size_t size) {
        uint64_t max = r->server->limits.max_body_bytes;

        if (r->too_large) {
                /* Swallow the rest of an oversized chunked body so the 413 can be sent, but not
                 * forever: past twice the limit, just close. */
                r->discarded += size;
                return r->discarded > 2 * max ? -EFBIG : 0;
        }
        if (size > max - r->body_size) {
                r->too_large = true;
                r->discarded = r->body_size + size;
                free(r->body);
                r->body = NULL;
                r->body_size = r->body_alloc = 0;
                return 0;
        }
        if (r->body_size + size + 1 > r->body_alloc) {
                size_t n = MAX(r->body_size + size + 1, MIN(r->body_alloc * 2, (size_t) max + 1));
                char *b = realloc(r->body, n);
                if (!b)
                        return -ENOMEM;
                r->body = b;
                r->body_alloc = n;
        }
        memcpy(r->body + r->body_size, data, size);
        r->body_size += size;
        r->body[r->body_size] = 0;
        return 0;
}

/* Final call: the whole request is in (or the connection was resumed to be dropped). */
static enum MHD_Result request_complete(HttpRequest *r) {
        HttpServer *s = r->server;
        int k;

        if (r->client_gone)
                return MHD_NO;

        switch (r->state) {
        case REQUEST_DONE:
                return r->responded ? MHD_YES : MHD_NO;
        case REQUEST_OWNED:
                /* Resumed without a response: should not happen, park it again rather than spin. */
                log_debug("HTTP request %s '%s' resumed without a response, parking it again.", LOG_ESC(r->method), LOG_ESC(r->path));
                request_suspend(r);
                return MHD_YES;
        case REQUEST_RECEIVING:
                break;
        }

        /* From here on, the time the app takes is not the client's fault. */
        connection_disarm_deadline(r->conn);

        if (r->too_large)
                return request_reject_too_large(r);
        if (!r->body) {
                log_oom();
                return MHD_NO;
        }

        r->state = REQUEST_OWNED;
        r->in_callback = true;
        k = s->handler(r, s->userdata);
        r->in_callback = false;

        if (r->responded || r->state == REQUEST_DONE) {
                if (k < 0)
                        log_debug_errno(k, "Handler for %s '%s' failed after responding: %m", LOG_ESC(r->method), LOG_ESC(r->path));
                return r->responded ? MHD_YES : MHD_NO;
        }
        if (k < 0) {
                log_debug_errno(k, "Handler for %s '%s' failed: %m", LOG_ESC(r->method), LOG_ESC(r->path));
                if (request_queue_error(r, 500, "Internal server error.") < 0)
                        return MHD_NO;
                return MHD_YES;
        }

        /* Deferred response: park the connection until the app responds. */
        request_suspend(r);
        return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        HttpListener *l = cls;
        HttpRequest *r = *con_cls;
        int k;

        if (!r) {
                k = request_new(l, c, method, url, &r);
                if (k < 0) {
                        log_oom();
                        return MHD_NO;
                }
                *con_cls = r;
                return request_headers_in(r);
        }

        if (*upload_data_size > 0) {
                k = request_append_body(r, upload_data, *upload_data_size);
                *upload_data_size = 0;
                if (k == -EFBIG)
                        log_debug("Closing connection: oversized request body keeps coming.");
                else if (k < 0)
                        log_oom();
                return k < 0 ? MHD_NO : MHD_YES;
        }

        return request_complete(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        HttpRequest *r = *con_cls;
        const union MHD_ConnectionInfo *ci;

        *con_cls = NULL;

        /* The next request on this keep-alive connection has its own time to arrive. */
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context)
                connection_arm_deadline(ci->socket_context);

        if (!r)
                return;

        request_unlink(r);

        if (r->state != REQUEST_OWNED) {
                request_free(r);
                return;
        }

        log_debug("HTTP request %s '%s' ended before the response was complete (%s).", LOG_ESC(r->method), LOG_ESC(r->path),
                  termination_to_string(toe));
        if (r->on_abort) {
                r->aborting = true;
                r->on_abort(r, r->abort_userdata);
                request_free(r);
                return;
        }
        /* No abort handler: the app may still hold r. Keep it until its final call. */
        r->detached = true;
}

static ssize_t on_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
        HttpRequest *r = cls;
        size_t n;

        if (r->client_gone)
                return MHD_CONTENT_READER_END_WITH_ERROR;

        n = r->out_end - r->out_start;
        if (n > 0) {
                n = MIN(n, max);
                memcpy(buf, r->out + r->out_start, n);
                r->out_start += n;
                if (r->out_start == r->out_end) {
                        r->out_start = r->out_end = 0;
                        if (r->on_drain && r->state == REQUEST_OWNED)
                                r->on_drain(r, r->drain_userdata);
                }
                return (ssize_t) n;
        }

        if (r->stream_ended)
                return MHD_CONTENT_READER_END_OF_STREAM;

        /* Nothing to send yet: park the connection instead of letting MHD poll us in a loop. */
        request_suspend(r);
        return 0;
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
        if (l->kicked || (s->n_connections < before && before >= s->limits.max_connections)) {
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
                        on_access, l,
                        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, l,
                        MHD_OPTION_LISTEN_SOCKET, (MHD_socket) fd,
                        MHD_OPTION_CONNECTION_LIMIT, s->limits.max_connections,
                        MHD_OPTION_CONNECTION_TIMEOUT, timeout_sec,
                        MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->limits.max_header_bytes,
                        MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
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
        s->render = http_error_render_openai;
        s->limits = limits ? *limits : d;
        if (s->limits.max_connections == 0)
                s->limits.max_connections = d.max_connections;
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
        s->render = render ?: http_error_render_openai;
        s->render_userdata = render ? userdata : NULL;
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

/* ── TLS material ─────────────────────────────────────────────────────────────────────────────────── */

HttpTLS *http_tls_free(HttpTLS *t) {
        if (!t)
                return NULL;
        free(t->cert);
        erase_and_free_sized(t->key, t->key_size);
        free(t);
        return NULL;
}

int http_tls_load(const char *cert_file, const char *key_file, HttpTLS **ret) {
        _cleanup_(http_tls_freep) HttpTLS *t = NULL;
        size_t n;
        int r;

        assert(cert_file);
        assert(key_file);
        assert(ret);

        t = calloc(1, sizeof(HttpTLS));
        if (!t)
                return log_oom();
        r = read_full_file(cert_file, TLS_FILE_MAX, &t->cert, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to read TLS certificate '%s': %m", cert_file);
        r = read_full_file(key_file, TLS_FILE_MAX, &t->key, &t->key_size);
        if (r < 0)
                return log_error_errno(r, "Failed to read TLS key '%s': %m", key_file);
        if (strlen(t->cert) != n || strlen(t->key) != t->key_size)
                return log_error_errno(EINVAL, "TLS certificate or key file contains NUL bytes; PEM expected.");

        *ret = TAKE_PTR(t);
        return 0;
}

/* ── Requests: public API ─────────────────────────────────────────────────────────────────────────── */

const char *http_request_method(HttpRequest *r) {
        assert(r);
        return r->method;
}

const char *http_request_path(HttpRequest *r) {
        assert(r);
        return r->path;
}

const char *http_request_header(HttpRequest *r, const char *name) {
        assert(r);
        assert(name);
        if (!r->connection)
                return NULL;
        return MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, name);
}

const char *http_request_query(HttpRequest *r, const char *name) {
        assert(r);
        assert(name);
        if (!r->connection)
                return NULL;
        return MHD_lookup_connection_value(r->connection, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_request_body(HttpRequest *r, size_t *ret_size) {
        assert(r);
        if (ret_size)
                *ret_size = r->body ? r->body_size : 0;
        return r->body ?: "";
}

HttpServer *http_request_server(HttpRequest *r) {
        assert(r);
        return r->server;
}

void http_request_set_userdata(HttpRequest *r, void *userdata) {
        assert(r);
        r->userdata = userdata;
}

void *http_request_get_userdata(HttpRequest *r) {
        assert(r);
        return r->userdata;
}

void http_request_set_abort_handler(HttpRequest *r, HttpRequestCallback on_abort, void *userdata) {
        assert(r);
        r->on_abort = on_abort;
        r->abort_userdata = userdata;
}

void http_request_set_drain_handler(HttpRequest *r, HttpRequestCallback on_drain, void *userdata) {
        assert(r);
        r->on_drain = on_drain;
        r->drain_userdata = userdata;
}

/* The app's final call on a request whose client is gone: it was kept only for this. */
static int request_finish_detached(HttpRequest *r) {
        if (r->aborting)
                return -ECONNRESET;     /* called from the abort handler: r is freed after it */
        request_free(r);
        return -ECONNRESET;
}

static bool request_may_respond(HttpRequest *r) {
        /* The app owns r, or the headers handler is looking at it. */
        return !r->responded &&
               (r->state == REQUEST_OWNED || (r->state == REQUEST_RECEIVING && r->in_callback));
}

int http_request_respond(HttpRequest *r, unsigned status, const char *content_type, const char *body,
                         size_t size, const char *const *extra_headers) {
        int k;

        assert(r);
        assert(body || size == 0);

        if (r->detached || r->aborting)
                return request_finish_detached(r);
        if (!request_may_respond(r))
                return -EBUSY;

        k = request_queue(r, status, content_type, body, size, extra_headers);
        if (k >= 0)
                return 0;

        /* A final call must finish the request whatever happens. */
        log_debug_errno(k, "Failed to queue response for %s '%s': %m", LOG_ESC(r->method), LOG_ESC(r->path));
        if (request_queue_error(r, 500, "Internal server error.") < 0)
                request_fail_hard(r);
        return k;
}

int http_request_respond_error(HttpRequest *r, unsigned status, const char *message) {
        int k;

        assert(r);

        if (r->detached || r->aborting)
                return request_finish_detached(r);
        if (!request_may_respond(r))
                return -EBUSY;

        k = request_queue_error(r, status, message);
        if (k < 0)
                request_fail_hard(r);
        return k;
}

int http_request_stream_begin(HttpRequest *r, unsigned status, const char *content_type,
                              const char *const *extra_headers) {
        struct MHD_Response *resp;
        int k;

        assert(r);

        if (r->detached || r->aborting)
                return -ECONNRESET;
        if (r->state != REQUEST_OWNED || r->responded)
                return -EBUSY;
        if (status < 100 || status > 999)
                return -EINVAL;

        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK_SIZE, on_stream_read, r, NULL);
        if (!resp)
                return -ENOMEM;
        k = response_queue(r, status, resp, content_type, extra_headers);
        if (k < 0)
                return k;

        r->responded = r->streaming = true;
        request_resume(r);
        return 0;
}

int http_request_stream_write(HttpRequest *r, const void *data, size_t size) {
        size_t pending;

        assert(r);
        assert(data || size == 0);

        if (r->detached || r->aborting || r->client_gone)
                return -ECONNRESET;
        if (!r->streaming || r->state != REQUEST_OWNED)
                return -EBUSY;
        if (size == 0)
                return 0;

        pending = r->out_end - r->out_start;
        if (size > r->server->limits.max_pending_bytes - MIN(pending, r->server->limits.max_pending_bytes))
                return -ENOBUFS;

        if (r->out_end + size > r->out_alloc) {
                /* Compact first; grow only if that is not enough. */
                if (r->out_start > 0) {
                        memmove(r->out, r->out + r->out_start, pending);
                        r->out_start = 0;
                        r->out_end = pending;
                }
                if (r->out_end + size > r->out_alloc) {
                        size_t n = MAX(r->out_end + size, r->out_alloc * 2);
                        char *b = realloc(r->out, n);
                        if (!b)
                                return -ENOMEM;
                        r->out = b;
                        r->out_alloc = n;
                }
        }
        memcpy(r->out + r->out_end, data, size);
        r->out_end += size;

        request_resume(r);
        return 0;
}

int http_request_stream_end(HttpRequest *r) {
        assert(r);

        if (r->detached || r->aborting)
                return request_finish_detached(r);
        if (!r->streaming || r->state != REQUEST_OWNED)
                return -EBUSY;

        r->stream_ended = true;
        r->state = REQUEST_DONE;
        request_resume(r);
        return 0;
}

int http_request_stream_abort(HttpRequest *r) {
        assert(r);

        if (r->detached || r->aborting)
                return request_finish_detached(r);
        if (r->state != REQUEST_OWNED)
                return -EBUSY;

        r->state = REQUEST_DONE;
        request_fail_hard(r);
        return 0;
}

size_t http_request_stream_pending(HttpRequest *r) {
        assert(r);
        return r->out_end - r->out_start;
}

/* ── Requests: about the connection, and headers for every response ───────────────────────────────── */

bool http_request_is_unix(HttpRequest *r) {
        const union MHD_ConnectionInfo *ci;
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);

        assert(r);
        if (!r->connection)
                return false;
        ci = MHD_get_connection_info(r->connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci || getsockname(ci->connect_fd, (struct sockaddr *) &sa, &len) < 0)
                return false;
        return sa.ss_family == AF_UNIX;
}

int http_request_add_response_header(HttpRequest *r, const char *line) {
        assert(r);
        assert(line);
        if (strpbrk(line, "\r\n") || !strchr(line, ':'))
                return -EINVAL;
        return strv_extend(&r->response_headers, line);
}
