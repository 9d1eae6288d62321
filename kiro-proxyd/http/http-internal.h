/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Inside the HTTP server: the objects shared by http-server.c (listeners, connections, the loop glue) and
 * http-request.c (the request state machine and the response API). Not for use outside http/. */
#pragma once

#include <microhttpd.h>
#include <systemd/sd-id128.h>

#include "http/http.h"

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
 * the abort handler. (A client that half-closes its sending side looks the same: a parked request then gets a
 * 400 and the app is aborted, and a POST that arrives half-closed gets a 400 without reaching the app; see
 * request_refuse_half_closed().) MHD's own connection timeout is an idle timeout (any byte resets it); a per-connection
 * deadline timer bounds the time to receive the headers (HeaderTimeoutSec=) and the whole request
 * (RequestTimeoutSec=) and shuts the socket down when it passes.
 *
 * Slow-loris: a connection whose deadline is armed is waiting for its client (a request arriving, or an
 * idle keep-alive). Those sit in a list, oldest first. When a new connection would cross MaxConnections=
 * (or its client's MaxConnectionsPerClient=), the oldest waiting connection (of that client) is shut
 * down to make room: a connection busy with a request is never pushed out, and a client that trickles
 * its headers can hold a slot only until someone else needs it. MHD's own connection limit is set a
 * little higher so that it keeps accepting while pushed-out connections are being closed. */


#define STREAM_BLOCK_SIZE (4U * 1024U)

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
        unsigned n_evicted;             /* pushed out, not yet closed by MHD */
        HttpConnection *connections;    /* all of them, for the per-client count */
        HttpConnection *waiting_head, *waiting_tail;    /* deadline armed, oldest first: the evictable */

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
        unsigned tag;           /* the app's mark for requests arriving here (http_request_listener_tag()) */
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
        bool in_request;                /* a request is being received or answered */
        bool has_peer;                  /* an IP peer: counted against MaxConnectionsPerClient= */
        bool waiting;                   /* in the waiting list */
        bool evicted;                   /* shut down to make room, MHD has not closed it yet */
        bool bad_target;                /* the request target decoded to something with a NUL */
        uint8_t peer[16];               /* the peer address (IPv4 as v4-mapped IPv6) */
        uint64_t armed_usec;             /* when the current deadline started (CLOCK_MONOTONIC) */
        HttpConnection *prev, *next;            /* server->connections */
        HttpConnection *wprev, *wnext;          /* server->waiting_* */
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
        bool detached;          /* the connection is gone, the app still holds r */
        bool http10;            /* an HTTP/1.0 request */
        bool bad_version;       /* neither HTTP/1.0 nor HTTP/1.1 */
        bool close;             /* the response says "Connection: close" (framing errors) */

        unsigned n_ref;         /* the server's (while attached) and the app's */
        bool server_ref;        /* one of them is the server's: dropped when MHD completes the request */

        char *out;
        size_t out_start, out_end, out_alloc;

        HttpRequestCallback on_abort;
        void *abort_userdata;
        HttpRequestCallback on_drain;
        void *drain_userdata;
        void *userdata;
        char **response_headers;        /* http_request_add_response_header() */

        char id[SD_ID128_UUID_STRING_MAX];      /* the request id, sent back as x-request-id */
        unsigned status;                /* of the response queued, 0 before */
        uint64_t bytes_out;             /* body bytes handed to MHD (complete body or stream writes) */
        usec_t started;                 /* CLOCK_MONOTONIC when the headers arrived */
};

/* http-server.c */
void listener_kick(HttpListener *l);
void server_post(HttpServer *s);
void connection_arm_deadline(HttpConnection *conn);
void connection_disarm_deadline(HttpConnection *conn);
void connection_headers_in(HttpConnection *conn);
void connection_request_done(HttpConnection *conn);
size_t http_unescape(void *cls, struct MHD_Connection *c, char *s);

/* http-request.c */
void request_resume(HttpRequest *r);
void request_suspend(HttpRequest *r);
int request_refuse_half_closed(HttpRequest *r);
enum MHD_Result http_on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls);
void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);
