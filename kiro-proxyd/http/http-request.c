/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An HTTP request: the state machine driven by libmicrohttpd's callbacks (headers, body, completion) and
 * the response API the app calls (complete responses, streams, errors). */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <sys/socket.h>

#include "json-util.h"
#include "escape.h"
#include "log.h"
#include "http/http-internal.h"

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

void request_resume(HttpRequest *r) {
        if (!r->suspended)
                return;
        if (r->conn && r->conn->suspended == r)
                r->conn->suspended = NULL;
        r->suspended = false;
        MHD_resume_connection(r->connection);
        listener_kick(r->listener);
}

void request_suspend(HttpRequest *r) {
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
        if (k >= 0 && MHD_add_response_header(resp, "x-request-id", r->id) != MHD_YES)
                k = -EINVAL;
        if (k >= 0)
                r->status = status;
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
        if (r->close && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES) {
                MHD_destroy_response(resp);
                return -ENOMEM;
        }
        k = response_queue(r, status, resp, content_type, extra_headers);
        if (k < 0)
                return k;

        r->bytes_out += size;
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
                       const char *version, HttpRequest **ret) {
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
        /* Version 4 and the RFC 4122 variant are set by sd_id128_randomize(). */
        sd_id128_t id;
        if (sd_id128_randomize(&id) < 0) {
                request_free(r);
                return -EIO;
        }
        (void) sd_id128_to_uuid_string(id, r->id);
        r->started = now(CLOCK_MONOTONIC);
        r->n_ref = 1;
        r->server_ref = true;
        r->server = s;
        r->listener = l;
        r->connection = c;
        r->http10 = version && streq(version, MHD_HTTP_VERSION_1_0);
        r->bad_version = !version || (!r->http10 && !streq(version, MHD_HTTP_VERSION_1_1));
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->conn = ci ? ci->socket_context : NULL;
        if (r->conn)
                r->conn->in_request = true;

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

/* MHD's decoding of the request target (path and query) as before, but a %00 marks the connection: an
 * embedded NUL would cut the path short where we look at it and stay in it where others might. */
size_t http_unescape(void *cls, struct MHD_Connection *c, char *s) {
        const union MHD_ConnectionInfo *ci;
        size_t n = MHD_http_unescape(s);

        if (memchr(s, 0, n)) {
                ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
                if (ci && ci->socket_context)
                        ((HttpConnection *) ci->socket_context)->bad_target = true;
        }
        return n;
}

typedef struct HeaderCount {
        unsigned host, content_length, transfer_encoding;
} HeaderCount;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
        HeaderCount *n = cls;

        if ((strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0))
                n->host++;
        else if ((strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0))
                n->content_length++;
        else if ((strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0))
                n->transfer_encoding++;
        return MHD_YES;
}

/* Exactly "chunked" in any case, as libmicrohttpd reads it: it takes "chunked " (trailing white space) as
 * some other coding and would read the body as the next request. */
static bool is_chunked(const char *v) {
        return strcasecmp(v, "chunked") == 0;
}

/* RFC 9112 where libmicrohttpd is lenient: a message whose framing two parsers could read differently
 * (request smuggling) or that would wait for a body that never ends is refused before anything else.
 * Returns the reason, or NULL if the framing is sound. */
static const char *request_check_framing(HttpRequest *r) {
        HeaderCount n = {};
        const char *v;
        uint64_t length;

        /* MHD's request line parser stops at a raw NUL and takes what it saw ("GET /a\0b HTTP/1.1" is
         * "GET /a" without a version); HTTP/2 prefaces and typos end up here too. */
        if (r->bad_version)
                return "Bad request: malformed request line.";
        if (r->conn && r->conn->bad_target)
                return "Bad request: the request target contains a NUL byte.";
        (void) MHD_get_connection_values(r->connection, MHD_HEADER_KIND, count_header, &n);
        if (n.host > 1)
                return "Bad request: more than one Host header.";
        if (n.host == 0 && !r->http10)
                return "Bad request: HTTP/1.1 requires a Host header.";
        if (n.content_length > 1)
                return "Bad request: more than one Content-Length header.";
        if (n.transfer_encoding > 1)
                return "Bad request: more than one Transfer-Encoding header.";
        if (n.transfer_encoding > 0) {
                if (n.content_length > 0)
                        return "Bad request: both Content-Length and Transfer-Encoding.";
                if (r->http10)
                        return "Bad request: Transfer-Encoding in an HTTP/1.0 request.";
                v = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
                if (!v || !is_chunked(v))
                        return "Bad request: the only Transfer-Encoding accepted is 'chunked'.";
        }
        if (n.content_length > 0) {
                v = MHD_lookup_connection_value(r->connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (parse_content_length(v, &length) == -EINVAL)
                        return "Bad request: Content-Length is not a number.";
        }
        return NULL;
}

/* First call: the headers are in, the body (if any) is not read yet. */
static enum MHD_Result request_headers_in(HttpRequest *r) {
        HttpServer *s = r->server;
        const char *cl, *bad;
        uint64_t length;
        int k;

        connection_headers_in(r->conn);

        /* Framing errors first: the connection cannot be trusted to carry another request, so it closes. */
        bad = request_check_framing(r);
        if (bad) {
                log_debug("Refusing %s request: %s", LOG_ESC(r->method), bad);
                r->close = true;
                return request_queue_error(r, 400, bad) < 0 ? MHD_NO : MHD_YES;
        }

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

#define HALF_CLOSE_MESSAGE "Bad request: the client closed its sending side before the response (half-close)."

/* The app holds r, parked without an answer, and the client shut down its sending side (or went away
 * altogether: the two look alike). The app is told as for a disconnect (abort handler, r detached) and
 * the client gets a 400, which reaches it if it only half-closed. */
int request_refuse_half_closed(HttpRequest *r) {
        HttpRequestCallback cb = r->on_abort;
        int k;

        assert(r->state == REQUEST_OWNED && !r->responded);

        r->close = true;
        k = request_queue_error(r, 400, HALF_CLOSE_MESSAGE);
        if (k < 0)
                return k;
        log_debug("HTTP client of %s '%s' closed its sending side while the response was pending.",
                  LOG_ESC(r->method), LOG_ESC(r->path));
        r->detached = true;
        r->on_abort = NULL;
        if (cb) {
                /* The server's reference keeps r alive through the callback. */
                http_request_ref(r);
                cb(r, r->abort_userdata);
                http_request_unref(r);
        }
        return 0;
}

/* The client shut down its sending side after the request: we cannot tell that from a client that went
 * away altogether (the hang-up watch treats both alike), so rather than start work whose answer would
 * be thrown away (an upstream call costs the user's quota), a POST gets a 400 (which reaches a client
 * that only half-closed). A GET costs nothing and is answered ("printf 'GET /healthz …' | nc" works). */
static bool client_half_closed(HttpRequest *r) {
        char c;

        if (!r->conn || r->conn->fd < 0)
                return false;
        if (r->conn->peer_gone)
                return true;
        return recv(r->conn->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
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
        if (!streq(r->method, "GET") && !streq(r->method, "HEAD") && client_half_closed(r)) {
                log_debug("Refusing %s '%s': the client closed its sending side.", LOG_ESC(r->method),
                          LOG_ESC(r->path));
                r->close = true;
                return request_queue_error(r, 400, HALF_CLOSE_MESSAGE) < 0 ? MHD_NO : MHD_YES;
        }
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

        if (r->n_ref == 1) {
                /* The handler neither answered nor took a reference: nobody can answer any more. */
                log_debug("Handler for %s '%s' neither responded nor kept the request.", LOG_ESC(r->method), LOG_ESC(r->path));
                return request_queue_error(r, 500, "Internal server error.") < 0 ? MHD_NO : MHD_YES;
        }

        /* Deferred response: park the connection until the app responds. */
        request_suspend(r);
        return MHD_YES;
}

enum MHD_Result http_on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
        HttpListener *l = cls;
        HttpRequest *r = *con_cls;
        int k;

        if (!r) {
                k = request_new(l, c, method, url, version, &r);
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

void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        HttpRequest *r = *con_cls;
        const union MHD_ConnectionInfo *ci;

        *con_cls = NULL;

        /* The next request on this keep-alive connection has its own time to arrive. */
        ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (ci && ci->socket_context)
                connection_request_done(ci->socket_context);

        if (!r)
                return;

        request_unlink(r);
        r->server_ref = false;

        if (r->state == REQUEST_OWNED) {
                /* The app holds r and has made no final call: tell it, then r is detached (final calls fail
                 * with -ECONNRESET) and lives on until the app drops its reference. */
                log_debug("HTTP request %s '%s' ended before the response was complete (%s).", LOG_ESC(r->method), LOG_ESC(r->path),
                          termination_to_string(toe));
                r->detached = true;
                if (r->on_abort) {
                        HttpRequestCallback cb = r->on_abort;
                        r->on_abort = NULL;
                        cb(r, r->abort_userdata);
                }
        }
        http_request_unref(r);
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

        if (r->detached)
                return -ECONNRESET;
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

        if (r->detached)
                return -ECONNRESET;
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

        if (r->detached)
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

        if (r->detached || r->client_gone)
                return -ECONNRESET;
        if (!r->streaming || r->state != REQUEST_OWNED)
                return -EBUSY;
        if (size == 0)
                return 0;

        r->bytes_out += size;
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

        if (r->detached)
                return -ECONNRESET;
        if (!r->streaming || r->state != REQUEST_OWNED)
                return -EBUSY;

        r->stream_ended = true;
        r->state = REQUEST_DONE;
        request_resume(r);
        return 0;
}

int http_request_stream_abort(HttpRequest *r) {
        assert(r);

        if (r->detached)
                return -ECONNRESET;
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


/* ── Requests: references ─────────────────────────────────────────────────────────────────────────── */

HttpRequest *http_request_ref(HttpRequest *r) {
        assert(r);
        assert(r->n_ref > 0);
        r->n_ref++;
        return r;
}

/* The app let go of r: no callback may reach it any more, and a request it never answered must not wait
 * for an answer that cannot come. */
static void request_released(HttpRequest *r) {
        r->on_abort = r->on_drain = NULL;
        r->abort_userdata = r->drain_userdata = r->userdata = NULL;
        if (r->state != REQUEST_OWNED || r->in_callback)
                return;
        log_debug("HTTP request %s '%s' released without a final response, dropping the connection.",
                  LOG_ESC(r->method), LOG_ESC(r->path));
        request_fail_hard(r);
}

HttpRequest *http_request_unref(HttpRequest *r) {
        if (!r)
                return NULL;
        assert(r->n_ref > 0);
        if (--r->n_ref == 0)
                request_free(r);
        else if (r->n_ref == 1 && r->server_ref)
                request_released(r);
        return NULL;
}

/* ── Requests: about the connection, and headers for every response ───────────────────────────────── */

unsigned http_request_listener_tag(HttpRequest *r) {
        assert(r);
        return r->listener ? r->listener->tag : 0;
}

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

const char *http_request_id(HttpRequest *r) {
        assert(r);
        return r->id;
}

unsigned http_request_status(HttpRequest *r) {
        assert(r);
        return r->status;
}

uint64_t http_request_bytes_out(HttpRequest *r) {
        assert(r);
        return r->bytes_out;
}

usec_t http_request_started(HttpRequest *r) {
        assert(r);
        return r->started;
}
