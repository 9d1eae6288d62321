/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* HTTP server for kiro-proxyd: libmicrohttpd in external-epoll mode on one sd-event loop, with deferred and
 * streamed responses that park the connection instead of blocking, and enforced limits. */
#pragma once

#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

typedef struct HttpServer HttpServer;
typedef struct HttpRequest HttpRequest;
typedef struct HttpTLS HttpTLS;

/* Limits, normally from [Proxy] in kiro-proxyd.conf. Zero fields are replaced by the defaults. */
typedef struct HttpLimits {
        unsigned max_connections;       /* MaxConnections=: over all listeners. At the limit a new connection
                                         * pushes out the one that has waited longest for its request to
                                         * arrive; if every connection is busy with a request, it is refused */
        unsigned max_connections_per_client; /* MaxConnectionsPerClient=: per peer IP address (unix socket
                                         * peers are not limited); the same rule within one client; 0:
                                         * max_connections (every local TCP client is 127.0.0.1 or ::1) */
        uint64_t max_body_bytes;        /* MaxBodyBytes=: larger bodies get 413 (from Content-Length before
                                         * reading the body; chunked bodies when they cross the cap) */
        uint64_t idle_timeout_usec;     /* IdleTimeoutSec=: a connection that makes no progress in either
                                         * direction for this long is closed (not counted while parked) */
        uint64_t request_timeout_usec;  /* a complete request (headers and body) must arrive within this
                                         * from accept or from the end of the previous response, however
                                         * steadily the bytes trickle in (slow-loris) */
        uint64_t header_timeout_usec;   /* HeaderTimeoutSec=: the same for the request line and headers */
        size_t max_header_bytes;        /* request line and headers; larger → 431/414 from libmicrohttpd */
        size_t max_pending_bytes;       /* per streamed response: bytes queued but not yet sent */
} HttpLimits;

#define HTTP_MAX_CONNECTIONS_DEFAULT 1024U
/* Kiro takes about 600 kB (MaxUpstreamPayloadBytes=); images travel base64 in both bodies, so a client body
 * much larger than that can only be served by TrimHistory=. 8 MiB is ~14 times the upstream limit: room for
 * a long client-side history to trim, or for MaxUpstreamPayloadBytes= raised to the 2 MB some sources
 * report, while keeping what one request costs to parse bounded. */
#define HTTP_MAX_BODY_BYTES_DEFAULT ((uint64_t) 8 * 1024 * 1024)
#define HTTP_IDLE_TIMEOUT_USEC_DEFAULT ((uint64_t) 120 * USEC_PER_SEC)
#define HTTP_REQUEST_TIMEOUT_USEC_DEFAULT ((uint64_t) 120 * USEC_PER_SEC)
#define HTTP_HEADER_TIMEOUT_USEC_DEFAULT ((uint64_t) 20 * USEC_PER_SEC)
#define HTTP_MAX_HEADER_BYTES_DEFAULT ((size_t) 32 * 1024)
#define HTTP_MAX_PENDING_BYTES_DEFAULT ((size_t) 64 * 1024 * 1024)

#define HTTP_LIMITS_DEFAULT                                             \
        ((HttpLimits) {                                                 \
                .max_connections = HTTP_MAX_CONNECTIONS_DEFAULT,        \
                .max_body_bytes = HTTP_MAX_BODY_BYTES_DEFAULT,          \
                .idle_timeout_usec = HTTP_IDLE_TIMEOUT_USEC_DEFAULT,    \
                .request_timeout_usec = HTTP_REQUEST_TIMEOUT_USEC_DEFAULT, \
                .header_timeout_usec = HTTP_HEADER_TIMEOUT_USEC_DEFAULT, \
                .max_header_bytes = HTTP_MAX_HEADER_BYTES_DEFAULT,      \
                .max_pending_bytes = HTTP_MAX_PENDING_BYTES_DEFAULT,    \
        })

/* Called once per request when the whole body is in. It may respond at once, start a stream, or return
 * without either: then the connection is parked (suspended, the loop keeps running) until the app calls
 * http_request_respond() or http_request_stream_begin() later, from any callback of the same loop (never
 * from another thread). A negative return without a response sends 500 through the error renderer. */
typedef int (*HttpHandler)(HttpRequest *r, void *userdata);

/* Renders an error produced by the HTTP layer itself (413, 500, …) or by http_request_respond_error():
 * returns a malloc'ed body, its size and a static content type. r says which API was addressed (path)
 * so each front end can use its own error shape. Without one (the default) errors are plain text. */
typedef int (*HttpErrorRenderer)(HttpRequest *r, unsigned status, const char *message, char **ret_body,
                                 size_t *ret_size, const char **ret_content_type, void *userdata);

typedef void (*HttpRequestCallback)(HttpRequest *r, void *userdata);


/* ── Server ─────────────────────────────────────────────────────────────────────────────────────── */

int http_server_new(sd_event *e, const HttpLimits *limits, HttpHandler handler, void *userdata,
                    HttpServer **ret);

/* Stops every listener. Requests still owned by the app are aborted first: their abort handlers run
 * from inside this call (requests without one are detached, see below). Not to be called from inside
 * a handler or request callback. */
HttpServer *http_server_free(HttpServer *s);
/* Reload: the limits read per connection or request (MaxConnectionsPerClient=, MaxBodyBytes=,
 * HeaderTimeoutSec=, RequestTimeoutSec=) from limits, for what is accepted or armed from now on; the
 * others are fixed at start. */
void http_server_set_request_limits(HttpServer *s, const HttpLimits *limits);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpServer *, http_server_free);

/* Optional: called when the headers are in, before the body is read (same userdata as the handler),
 * e.g. to answer 401 before accepting an 8 MiB body. r is only lent for the call: it may look at the
 * headers and respond (then the body is discarded and the handler is not called), nothing else. A
 * negative return without a response sends 500. */
void http_server_set_headers_handler(HttpServer *s, HttpHandler on_headers);

/* Called at the end of each of the server's dispatch callbacks (see curl_glue_set_post()); and
 * http_server_flush() runs the MHD daemons that resumed connections are waiting for, at once; it returns
 * whether it ran any. */
typedef void (*HttpServerPost)(void *userdata);
void http_server_set_post(HttpServer *s, HttpServerPost post, void *userdata);
bool http_server_flush(HttpServer *s);

/* Called when the server has had no connection for a second (then it returns freed heap to the system):
 * a chance to drop caches that only help under load. */
void http_server_set_idle_handler(HttpServer *s, HttpServerPost on_idle, void *userdata);
void http_server_set_error_renderer(HttpServer *s, HttpErrorRenderer render, void *userdata);

/* Serves HTTP (or HTTPS with tls) on a listening stream socket. Takes ownership of fd, also on failure.
 * description is for logs ("127.0.0.1:8399"); NULL derives one. tls is only read during the call. */
int http_server_add_listener(HttpServer *s, int fd, const char *description, const HttpTLS *tls);
/* The same with a tag the app reads back from each request with http_request_listener_tag() (e.g. "serve only
 * /metrics here"); http_server_add_listener() tags 0. */
int http_server_add_listener_tagged(HttpServer *s, int fd, const char *description, const HttpTLS *tls, unsigned tag);

size_t http_server_n_listeners(HttpServer *s);
/* The bound TCP port of listener i (for Listen=127.0.0.1:0 in tests), or -errno. */
int http_server_listener_port(HttpServer *s, size_t i);
/* Open connections and live request objects (for tests and metrics). */
unsigned http_server_n_connections(HttpServer *s);
size_t http_server_n_requests(HttpServer *s);

/* PEM certificate chain and key for a TLS listener (TLSCertificateFile=, TLSKeyFile=). The key is wiped
 * on free. */
int http_tls_load(const char *cert_file, const char *key_file, HttpTLS **ret);
HttpTLS *http_tls_free(HttpTLS *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpTLS *, http_tls_free);

/* ── Requests ───────────────────────────────────────────────────────────────────────────────────────
 *
 * Lifetime: reference counted, one owner per reference. The server holds a reference while the
 * connection serves the request. The handler is lent r for the call; to answer later (a parked request
 * or a stream), the app takes its own reference with http_request_ref() and drops it with
 * http_request_unref() when done, normally right after its final call. Exactly one final call answers a
 * request: http_request_respond(), http_request_respond_error(), http_request_stream_end() or
 * http_request_stream_abort().
 *
 *   - The client goes away first (disconnect, idle timeout, server shutdown) while the app holds r without
 *     a final call: the abort handler (if any) runs once and r becomes detached: it stays valid while the
 *     app holds it, final calls and stream writes return -ECONNRESET, headers read as NULL.
 *   - The app drops its last reference without a final call: the server drops the connection (a stream
 *     ends truncated, a parked request gets no answer), and no callback (abort, drain) is made after that
 *     point. So a component that lets go of a request can never be called back into, and a request
 *     nobody answers never hangs.
 *   - A handler that returns without responding and without taking a reference gets a 500 sent for it.
 *
 * Re-entrancy: the handler, the headers handler and the abort and drain callbacks run from inside the
 * server's dispatch (MHD_run()). Inside them the app may make final calls, write, ref and unref (also
 * the last reference: the server keeps its own until the callback returns). Responses and resumed
 * connections are picked up by the next MHD_run() of that listener, which runs from a defer source or, in
 * the same loop iteration, from http_server_flush() (see http_server_set_post()). Final calls never call
 * back into the app. */

HttpRequest *http_request_ref(HttpRequest *r);
HttpRequest *http_request_unref(HttpRequest *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(HttpRequest *, http_request_unref);

const char *http_request_method(HttpRequest *r);
/* The decoded path without the query string. */
const char *http_request_path(HttpRequest *r);
/* Case-insensitive; NULL if absent or once the request is detached. */
const char *http_request_header(HttpRequest *r, const char *name);
/* A query argument; NULL if absent or detached. */
const char *http_request_query(HttpRequest *r, const char *name);
/* The whole body, NUL-terminated for convenience (the size excludes the NUL). Never NULL. */
const char *http_request_body(HttpRequest *r, size_t *ret_size);
HttpServer *http_request_server(HttpRequest *r);

void http_request_set_userdata(HttpRequest *r, void *userdata);
void *http_request_get_userdata(HttpRequest *r);

/* The client went away while the app held r without a final call (see Lifetime). Replaces an earlier
 * handler. Called at most once; r stays valid for the app's own reference. */
void http_request_set_abort_handler(HttpRequest *r, HttpRequestCallback on_abort, void *userdata);
/* A streamed response's queue has been emptied into the connection: for resuming a paused upstream.
 * Called from inside the server; it may call http_request_stream_write/end/abort on r. */
void http_request_set_drain_handler(HttpRequest *r, HttpRequestCallback on_drain, void *userdata);

/* A complete response. extra_headers: NULL-terminated "Name: value" strings (no CR/LF), may be NULL.
 * Final. -EBUSY if a response was already started, -ECONNRESET if the client is gone. */
int http_request_respond(HttpRequest *r, unsigned status, const char *content_type, const char *body,
                         size_t size, const char *const *extra_headers);
/* A response rendered by the server's error renderer. Final. */
int http_request_respond_error(HttpRequest *r, unsigned status, const char *message);

/* Starts a chunked response (HTTP/1.0 clients get a close-delimited body). Not final. */
int http_request_stream_begin(HttpRequest *r, unsigned status, const char *content_type,
                              const char *const *extra_headers);
/* Queues data and wakes the connection; never blocks. -ENOBUFS past max_pending_bytes, -ECONNRESET if the
 * client is gone. */
int http_request_stream_write(HttpRequest *r, const void *data, size_t size);
/* Sends what is queued, then the terminating chunk. Final. */
int http_request_stream_end(HttpRequest *r);
/* Drops the connection: a stream ends without its terminating chunk, so the client sees a truncated
 * response; a parked request gets no response at all. Final. */
int http_request_stream_abort(HttpRequest *r);
/* Bytes queued but not yet handed to the connection: for back pressure. */
size_t http_request_stream_pending(HttpRequest *r);

/* The tag of the listener r came in on (http_server_add_listener_tagged()). */
unsigned http_request_listener_tag(HttpRequest *r);
/* Whether r came in on a unix socket listener (no browser can connect there). */
bool http_request_is_unix(HttpRequest *r);
/* A "Name: value" line (no CR/LF) added to whatever response r gets, errors included (for CORS). */
int http_request_add_response_header(HttpRequest *r, const char *line);
/* The request's id (a UUID, sent to the client as x-request-id and used in logs and upstream). */
const char *http_request_id(HttpRequest *r);
/* The status of the response queued (0 before one is); body bytes queued so far; CLOCK_MONOTONIC arrival. */
unsigned http_request_status(HttpRequest *r);
uint64_t http_request_bytes_out(HttpRequest *r);
usec_t http_request_started(HttpRequest *r);
