/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for kiro-proxyd's HTTP layer and API keys: a real server on an sd-event loop in this process,
 * driven by clients (libcurl or raw sockets) in forked children that report back through a pipe. */
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "log.h"
#include "http/http-access.h"
#include "http/http.h"
#include "http/http-listen.h"
#include "tests.h"
#include "time-util.h"

/* ── Test server ─────────────────────────────────────────────────────────────────────────────────── */

typedef struct TestServer {
        sd_event *event;
        HttpServer *server;
        int port;               /* TCP listener */
        int tls_port;           /* TLS listener, if any */
        char dir[256];
        char unix_path[300];

        ApiKeys *keys;
        bool custom_renderer;
        unsigned n_rendered;
        unsigned last_render_status;

        unsigned n_handled;
        unsigned n_aborted;
        unsigned n_drained;
        HttpRequest *parked;            /* a request the app holds */
        sd_event_source *timer;
        unsigned stream_i;
        size_t big_written;
} TestServer;

static TestServer T;

#define BIG_STREAM_SIZE ((size_t) 4 * 1024 * 1024)
#define BIG_STREAM_PIECE ((size_t) 64 * 1024)
#define BIG_STREAM_HIGH_WATER ((size_t) 256 * 1024)

static uint8_t pattern_byte(size_t i) {
        return (uint8_t) ((i * 7 + 3) ^ (i >> 9));
}

static void on_abort(HttpRequest *r, void *userdata) {
        T.n_aborted++;
        T.timer = sd_event_source_disable_unref(T.timer);
        /* Every path that sets this handler took a reference. */
        if (T.parked == r)
                T.parked = NULL;
        http_request_unref(r);
}

/* The app lets go of a request it never answered (as the chat did when its client hung up during held-back
 * text): the server must drop the connection and never call back into the app. */
static int on_release_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpRequest *r = TAKE_PTR(T.parked);
        ASSERT_NOT_NULL(r);
        http_request_unref(r);
        return 0;
}

static int on_slow_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpRequest *r = T.parked;
        T.parked = NULL;
        ASSERT_NOT_NULL(r);
        ASSERT_OK(http_request_respond(r, 200, "text/plain", "slow done", 9, NULL));
        http_request_unref(r);
        return 0;
}

static int on_stream_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpRequest *r = T.parked;
        char buf[32];
        int n;

        ASSERT_NOT_NULL(r);
        if (T.stream_i < 5) {
                n = snprintf(buf, sizeof(buf), "chunk-%u\n", T.stream_i++);
                ASSERT_OK(http_request_stream_write(r, buf, n));
                ASSERT_OK(sd_event_source_set_time_relative(s, 30 * USEC_PER_MSEC));
                ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
                return 0;
        }
        T.parked = NULL;
        ASSERT_OK(http_request_stream_end(r));
        http_request_unref(r);
        return 0;
}

static int on_tick_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        HttpRequest *r = T.parked;

        ASSERT_NOT_NULL(r);
        ASSERT_OK(http_request_stream_write(r, "tick\n", 5));
        ASSERT_OK(sd_event_source_set_time_relative(s, 20 * USEC_PER_MSEC));
        ASSERT_OK(sd_event_source_set_enabled(s, SD_EVENT_ONESHOT));
        return 0;
}

static void big_stream_pump(HttpRequest *r) {
        uint8_t piece[BIG_STREAM_PIECE];

        while (T.big_written < BIG_STREAM_SIZE && http_request_stream_pending(r) < BIG_STREAM_HIGH_WATER) {
                size_t n = MIN(BIG_STREAM_PIECE, BIG_STREAM_SIZE - T.big_written);
                for (size_t i = 0; i < n; i++)
                        piece[i] = pattern_byte(T.big_written + i);
                ASSERT_OK(http_request_stream_write(r, piece, n));
                T.big_written += n;
                /* The queue is bounded by the high-water mark plus one piece. */
                ASSERT_TRUE(http_request_stream_pending(r) <= BIG_STREAM_HIGH_WATER + BIG_STREAM_PIECE);
        }
        if (T.big_written == BIG_STREAM_SIZE) {
                T.parked = NULL;
                ASSERT_OK(http_request_stream_end(r));
                http_request_unref(r);
        }
}

static void on_drain(HttpRequest *r, void *userdata) {
        T.n_drained++;
        ASSERT_EQ(http_request_stream_pending(r), 0);
        if (T.parked == r)
                big_stream_pump(r);
}

static int add_timer(uint64_t usec, sd_event_time_handler_t cb) {
        ASSERT_NULL(T.timer);
        return sd_event_add_time_relative(T.event, &T.timer, CLOCK_MONOTONIC, usec, 1, cb, NULL);
}

static int on_request(HttpRequest *r, void *userdata) {
        const char *path = http_request_path(r);
        size_t size;
        const char *body;

        ASSERT_TRUE(userdata == &T);
        T.n_handled++;

        if (streq(path, "/hello")) {
                static const char *const extra[] = { "X-Test: yes", "Cache-Control:   no-store", NULL };
                return http_request_respond(r, 200, "text/plain", "hello world", 11, extra);
        }
        if (streq(path, "/echo")) {
                char h[64];
                body = http_request_body(r, &size);
                ASSERT_EQ(body[size], 0);
                snprintf(h, sizeof(h), "X-Body-Size: %zu", size);
                const char *const extra[] = { h, NULL };
                return http_request_respond(r, 200, "application/octet-stream", body, size, extra);
        }
        if (streq(path, "/query")) {
                const char *v = http_request_query(r, "a");
                return http_request_respond(r, 200, "text/plain", strempty(v), strlen(strempty(v)), NULL);
        }
        if (streq(path, "/fast"))
                return http_request_respond(r, 200, "text/plain", "fast", 4, NULL);
        if (streq(path, "/slow")) {
                /* Deferred: answered from a timer; the loop keeps serving meanwhile. */
                T.parked = http_request_ref(r);
                http_request_set_abort_handler(r, on_abort, NULL);
                return add_timer(400 * USEC_PER_MSEC, on_slow_timer);
        }
        if (streq(path, "/stream") || streq(path, "/stream-forever")) {
                static const char *const extra[] = { "Cache-Control: no-cache", NULL };
                bool forever = streq(path, "/stream-forever");
                T.parked = http_request_ref(r);
                T.stream_i = 0;
                http_request_set_abort_handler(r, on_abort, NULL);
                ASSERT_OK(http_request_stream_begin(r, 200, "text/event-stream", extra));
                /* Not twice, and no complete response after a stream began. */
                ASSERT_ERROR(http_request_stream_begin(r, 200, "text/plain", NULL), EBUSY);
                ASSERT_ERROR(http_request_respond(r, 200, "text/plain", "x", 1, NULL), EBUSY);
                return add_timer(30 * USEC_PER_MSEC, forever ? on_tick_timer : on_stream_timer);
        }
        if (streq(path, "/big-stream")) {
                T.parked = http_request_ref(r);
                T.big_written = 0;
                http_request_set_abort_handler(r, on_abort, NULL);
                http_request_set_drain_handler(r, on_drain, NULL);
                ASSERT_OK(http_request_stream_begin(r, 200, "application/octet-stream", NULL));
                big_stream_pump(r);
                return 0;
        }
        if (streq(path, "/park")) {
                T.parked = http_request_ref(r);
                http_request_set_abort_handler(r, on_abort, NULL);
                return 0;
        }
        if (streq(path, "/park-release")) {
                T.parked = http_request_ref(r);
                http_request_set_abort_handler(r, on_abort, NULL);
                return add_timer(50 * USEC_PER_MSEC, on_release_timer);
        }
        if (streq(path, "/stream-release")) {
                T.parked = http_request_ref(r);
                http_request_set_abort_handler(r, on_abort, NULL);
                ASSERT_OK(http_request_stream_begin(r, 200, "text/plain", NULL));
                ASSERT_OK(http_request_stream_write(r, "partial", 7));
                return add_timer(50 * USEC_PER_MSEC, on_release_timer);
        }
        if (streq(path, "/drop"))
                return 0;       /* neither an answer nor a reference */
        if (streq(path, "/park-noabort")) {
                T.parked = http_request_ref(r);
                return 0;
        }
        if (streq(path, "/bad-header")) {
                static const char *const extra[] = { "X-Evil: a\r\nSet-Cookie: b", NULL };
                /* Refused, and the request still gets an answer (500). */
                ASSERT_ERROR(http_request_respond(r, 200, "text/plain", "x", 1, extra), EINVAL);
                return 0;
        }
        if (streq(path, "/fail"))
                return -EIO;

        return http_request_respond_error(r, 404, "No such endpoint.");
}

static int on_headers(HttpRequest *r, void *userdata) {
        if (T.keys && !apikeys_check(T.keys, r))
                return http_request_respond_error(r, 401, "Invalid API key.");
        return 0;
}

/* Renders like the Anthropic front end would for /v1/messages, else OpenAI's shape. */
static int test_render(HttpRequest *r, unsigned status, const char *message, char **ret_body, size_t *ret_size,
                       const char **ret_content_type, void *userdata) {
        ASSERT_TRUE(userdata == &T);
        T.n_rendered++;
        T.last_render_status = status;
        /* The real shapes live in api/api-error.c, which this layer must not know: a stand-in per API. */
        if (!startswith(http_request_path(r), "/v1/messages")) {
                if (asprintf(ret_body, "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,"
                             "\"code\":\"%s\"}}", message, status == 413 ? "request_too_large" : "other") < 0)
                        return -ENOMEM;
        } else if (asprintf(ret_body, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"}}",
                            status == 413 ? "request_too_large" : "api_error", message) < 0)
                return -ENOMEM;
        *ret_size = strlen(*ret_body);
        *ret_content_type = "application/json";
        return 0;
}

static void make_tempdir(char *buf, size_t n) {
        snprintf(buf, n, "%s/test-http-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        ASSERT_NOT_NULL(mkdtemp(buf));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void server_start_full(const HttpLimits *limits, const HttpTLS *tls) {
        ListenSpec spec;
        char buf[400];
        int fd;

        memset(&T, 0, sizeof(T));
        T.port = T.tls_port = -1;
        ASSERT_OK(sd_event_new(&T.event));
        ASSERT_OK(http_server_new(T.event, limits, on_request, &T, &T.server));
        http_server_set_headers_handler(T.server, on_headers);

        ASSERT_OK(listen_spec_parse("127.0.0.1:0", &spec));
        ASSERT_OK(listen_spec_open(&spec, 0666, &fd));
        listen_spec_done(&spec);
        ASSERT_OK(http_server_add_listener(T.server, fd, NULL, NULL));
        T.port = http_server_listener_port(T.server, 0);
        ASSERT_TRUE(T.port > 0);

        make_tempdir(T.dir, sizeof(T.dir));
        snprintf(T.unix_path, sizeof(T.unix_path), "%s/http.sock", T.dir);
        snprintf(buf, sizeof(buf), "unix:%s", T.unix_path);
        ASSERT_OK(listen_spec_parse(buf, &spec));
        ASSERT_OK(listen_spec_open(&spec, 0666, &fd));
        listen_spec_done(&spec);
        ASSERT_OK(http_server_add_listener(T.server, fd, "test unix socket", NULL));
        ASSERT_EQ(http_server_listener_port(T.server, 1), -EAFNOSUPPORT);

        if (tls) {
                ASSERT_OK(listen_spec_parse("127.0.0.1:0", &spec));
                ASSERT_OK(listen_spec_open(&spec, 0666, &fd));
                listen_spec_done(&spec);
                ASSERT_OK(http_server_add_listener(T.server, fd, NULL, tls));
                T.tls_port = http_server_listener_port(T.server, 2);
                ASSERT_TRUE(T.tls_port > 0);
        }
        ASSERT_EQ(http_server_n_listeners(T.server), tls ? 3 : 2);
}

static void server_start(const HttpLimits *limits) {
        server_start_full(limits, NULL);
}

static void run_for(usec_t usec) {
        usec_t end = now(CLOCK_MONOTONIC) + usec;
        while (now(CLOCK_MONOTONIC) < end)
                ASSERT_OK(sd_event_run(T.event, 10 * USEC_PER_MSEC));
}

#define RUN_UNTIL(cond, timeout_sec)                                                            \
        do {                                                                                    \
                usec_t _end = now(CLOCK_MONOTONIC) + (timeout_sec) * USEC_PER_SEC;              \
                while (!(cond)) {                                                               \
                        if (now(CLOCK_MONOTONIC) > _end)                                        \
                                ASSERT_FAIL("timed out waiting for %s", #cond);                 \
                        ASSERT_OK(sd_event_run(T.event, 50 * USEC_PER_MSEC));                   \
                }                                                                               \
        } while (0)

static void server_stop(void) {
        /* Nothing is left over: every request object was freed. */
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        T.timer = sd_event_source_disable_unref(T.timer);
        T.server = http_server_free(T.server);
        T.event = sd_event_unref(T.event);
        T.keys = apikeys_free(T.keys);
        (void) nftw(T.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ── Clients in child processes ──────────────────────────────────────────────────────────────────── */

typedef void (*ClientFunc)(int out, const void *arg);

typedef struct Client {
        pid_t pid;
        int fd;
        sd_event_source *source;
        char *buf;
        size_t size;
        bool done;
        usec_t done_usec;

        /* What a curl client reported. */
        long status;
        unsigned n_writes;
        char *headers;
        char *body;
        size_t body_size;
} Client;

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;
        char buf[65536];
        ssize_t n;

        n = read(fd, buf, sizeof(buf));
        if (n < 0) {
                ASSERT_TRUE(errno == EAGAIN || errno == EINTR);
                return 0;
        }
        if (n > 0) {
                c->buf = realloc(c->buf, c->size + n + 1);
                ASSERT_NOT_NULL(c->buf);
                memcpy(c->buf + c->size, buf, n);
                c->size += n;
                c->buf[c->size] = 0;
                return 0;
        }
        c->done = true;
        c->done_usec = now(CLOCK_MONOTONIC);
        c->source = sd_event_source_disable_unref(c->source);
        return 0;
}

static Client *client_spawn(ClientFunc f, const void *arg) {
        Client *c = calloc(1, sizeof(Client));
        int p[2];

        ASSERT_NOT_NULL(c);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        c->pid = fork();
        ASSERT_TRUE(c->pid >= 0);
        if (c->pid == 0) {
                /* Drop the server's fds (listeners, connections): a client must not keep a server-side
                 * socket of another connection alive. */
                int out = fcntl(p[1], F_DUPFD_CLOEXEC, 3);
                for (int fd = 3; fd < 1024; fd++)
                        if (fd != out)
                                (void) close(fd);
                (void) signal(SIGPIPE, SIG_IGN);
                f(out, arg);
                _exit(0);
        }
        close(p[1]);
        c->fd = p[0];
        ASSERT_OK(fcntl(c->fd, F_SETFL, O_NONBLOCK));
        ASSERT_OK(sd_event_add_io(T.event, &c->source, c->fd, EPOLLIN, on_client_io, c));
        return c;
}

/* Waits for the child to finish and parses a curl client's report:
 * "CURL <status> <n_writes>\n<header bytes>\n<headers><body>". */
static void client_wait(Client *c) {
        int status;

        RUN_UNTIL(c->done, 30);
        ASSERT_EQ(waitpid(c->pid, &status, 0), c->pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                ASSERT_FAIL("client child failed: status 0x%x", status);

        if (c->size > 0 && startswith(c->buf, "CURL ")) {
                unsigned hl;
                int off = 0;
                ASSERT_EQ(sscanf(c->buf, "CURL %ld %u\n%u\n%n", &c->status, &c->n_writes, &hl, &off), 3);
                ASSERT_TRUE((size_t) off + hl <= c->size);
                c->headers = strndup(c->buf + off, hl);
                c->body = c->buf + off + hl;
                c->body_size = c->size - off - hl;
        }
}

static Client *client_free(Client *c) {
        if (!c)
                return NULL;
        sd_event_source_disable_unref(c->source);
        safe_close(c->fd);
        free(c->buf);
        free(c->headers);
        free(c);
        return NULL;
}

typedef struct CurlSpec {
        const char *method;
        const char *path;
        bool use_unix;
        bool tls;
        bool http10;
        const char *headers[4];
        const char *body;
        size_t body_size;
        bool chunked;           /* upload without a length */
        unsigned repeat;        /* same handle, keep-alive */
} CurlSpec;

typedef struct Buf {
        char *data;
        size_t size;
        unsigned n_writes;
} Buf;

static size_t curl_write(char *p, size_t sz, size_t n, void *ud) {
        Buf *b = ud;
        b->data = realloc(b->data, b->size + sz * n + 1);
        if (!b->data)
                abort();
        memcpy(b->data + b->size, p, sz * n);
        b->size += sz * n;
        b->n_writes++;
        return sz * n;
}

typedef struct Upload {
        const char *data;
        size_t size, pos;
} Upload;

static size_t curl_read(char *p, size_t sz, size_t n, void *ud) {
        Upload *u = ud;
        /* Small pieces, so that the body really arrives as many chunks. */
        size_t k = MIN(MIN(sz * n, (size_t) 100), u->size - u->pos);
        memcpy(p, u->data + u->pos, k);
        u->pos += k;
        return k;
}

static void write_all(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        _exit(3);
                p = (const char *) p + k;
                n -= k;
        }
}

static void child_curl(int out, const void *arg) {
        const CurlSpec *s = arg;
        struct curl_slist *h = NULL;
        Buf body = {}, headers = {};
        Upload up = { s->body, s->body_size, 0 };
        long status = 0, connects = 0;
        char url[512], line[128];
        CURL *c;
        CURLcode cc = CURLE_OK;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
                _exit(2);
        c = curl_easy_init();
        if (!c)
                _exit(2);
        if (s->use_unix) {
                snprintf(url, sizeof(url), "http://localhost%s", s->path);
                curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, T.unix_path);
        } else if (s->tls) {
                snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", T.tls_port, s->path);
                curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
                curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        } else
                snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", T.port, s->path);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, curl_write);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &headers);
        if (s->http10)
                curl_easy_setopt(c, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_0);
        for (size_t i = 0; i < ELEMENTSOF(s->headers) && s->headers[i]; i++)
                h = curl_slist_append(h, s->headers[i]);
        if (s->body && s->chunked) {
                curl_easy_setopt(c, CURLOPT_POST, 1L);
                curl_easy_setopt(c, CURLOPT_READFUNCTION, curl_read);
                curl_easy_setopt(c, CURLOPT_READDATA, &up);
                h = curl_slist_append(h, "Transfer-Encoding: chunked");
        } else if (s->body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, s->body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) s->body_size);
        }
        if (s->method)
                curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, s->method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

        for (unsigned i = 0; i < MAX(s->repeat, 1U); i++) {
                cc = curl_easy_perform(c);
                if (cc != CURLE_OK)
                        break;
        }
        if (cc == CURLE_OK) {
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
        } else {
                free(headers.data);
                headers.data = strdup(curl_easy_strerror(cc));
                headers.size = strlen(headers.data);
        }

        /* After the last request: how many new connections it needed (0 = reused). */
        snprintf(line, sizeof(line), "CURL %ld %u\n%zu\n", status, body.n_writes, headers.size);
        write_all(out, line, strlen(line));
        write_all(out, headers.data ?: "", headers.size);
        write_all(out, body.data ?: "", body.size);
        if (s->repeat > 1 && connects != 0)
                _exit(4);

        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        free(body.data);
        free(headers.data);
}

static Client *curl_run(const CurlSpec *s) {
        Client *c = client_spawn(child_curl, s);
        client_wait(c);
        return c;
}

static int raw_connect(bool use_unix) {
        int fd;

        if (use_unix) {
                struct sockaddr_un a = { .sun_family = AF_UNIX };
                if (strlen(T.unix_path) >= sizeof(a.sun_path))
                        _exit(5);
                memcpy(a.sun_path, T.unix_path, strlen(T.unix_path) + 1);
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
                        _exit(5);
        } else {
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(T.port) };
                a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &a, sizeof(a)) < 0)
                        _exit(5);
        }
        return fd;
}

/* 1 if the peer closed (EOF/reset) within timeout_ms, 0 if still open and silent, -1 if it sent data. */
static int wait_closed(int fd, int timeout_ms) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        char buf[4096];
        ssize_t n;

        if (poll(&p, 1, timeout_ms) == 0)
                return 0;
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN))
                return 1;
        return n > 0 ? -1 : 0;
}

static void client_report(int out, const char *fmt, ...) _printf_(2, 3);
static void client_report(int out, const char *fmt, ...) {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        write_all(out, buf, strlen(buf));
}

/* ── HTTP layer tests ────────────────────────────────────────────────────────────────────────────── */

TEST(get_simple_tcp_and_unix) {
        server_start(NULL);

        for (int u = 0; u < 2; u++) {
                CurlSpec s = { .path = "/hello", .use_unix = u };
                Client *c = curl_run(&s);
                ASSERT_EQ(c->status, 200);
                ASSERT_EQ(c->body_size, 11);
                ASSERT_STREQ(c->body, "hello world");
                ASSERT_NOT_NULL(strcasestr(c->headers, "\r\nX-Test: yes\r\n"));
                ASSERT_NOT_NULL(strcasestr(c->headers, "\r\nCache-Control: no-store\r\n"));
                ASSERT_NOT_NULL(strcasestr(c->headers, "\r\nContent-Type: text/plain\r\n"));
                ASSERT_NOT_NULL(strcasestr(c->headers, "\r\nContent-Length: 11\r\n"));
                client_free(c);
        }
        ASSERT_EQ(T.n_handled, 2);

        /* Unknown path without an error renderer: plain text (the HTTP layer knows no API's shape). */
        CurlSpec s = { .path = "/nope" };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 404);
        ASSERT_STREQ(c->body, "No such endpoint.\n");
        ASSERT_NOT_NULL(strcasestr(c->headers, "Content-Type: text/plain; charset=utf-8"));
        client_free(c);

        server_stop();
}

TEST(query_and_keepalive) {
        server_start(NULL);

        CurlSpec q = { .path = "/query?a=b%20c&x=1" };
        Client *c = curl_run(&q);
        ASSERT_EQ(c->status, 200);
        ASSERT_STREQ(c->body, "b c");
        client_free(c);

        /* Three requests on one connection (the child checks the last one reused it). */
        CurlSpec k = { .path = "/hello", .repeat = 3 };
        c = curl_run(&k);
        ASSERT_EQ(c->status, 200);
        ASSERT_STREQ(c->body, "hello worldhello worldhello world");
        client_free(c);

        server_stop();
}

TEST(post_body_whole) {
        size_t n = 300 * 1000 + 7;
        char *data = malloc(n);

        ASSERT_NOT_NULL(data);
        for (size_t i = 0; i < n; i++)
                data[i] = (char) pattern_byte(i);
        server_start(NULL);

        for (int chunked = 0; chunked < 2; chunked++) {
                CurlSpec s = { .path = "/echo", .body = data, .body_size = n, .chunked = chunked,
                               .headers = { "Expect:" } };
                Client *c = curl_run(&s);
                ASSERT_EQ(c->status, 200);
                ASSERT_EQ(c->body_size, n);
                ASSERT_TRUE(memcmp(c->body, data, n) == 0);
                client_free(c);
        }

        /* Empty body. */
        CurlSpec e = { .path = "/echo", .body = "", .body_size = 0 };
        Client *c = curl_run(&e);
        ASSERT_EQ(c->status, 200);
        ASSERT_EQ(c->body_size, 0);
        ASSERT_NOT_NULL(strcasestr(c->headers, "X-Body-Size: 0"));
        client_free(c);

        server_stop();
        free(data);
}

TEST(deferred_does_not_block) {
        server_start(NULL);

        CurlSpec slow = { .path = "/slow" }, fast = { .path = "/fast", .use_unix = true };
        Client *a = client_spawn(child_curl, &slow);
        RUN_UNTIL(T.parked != NULL, 10);
        /* /slow is parked on a 400ms timer: /fast is served meanwhile. */
        Client *b = client_spawn(child_curl, &fast);
        client_wait(b);
        ASSERT_FALSE(a->done);
        ASSERT_NOT_NULL(T.parked);
        client_wait(a);

        ASSERT_EQ(b->status, 200);
        ASSERT_STREQ(b->body, "fast");
        if (a->status != 200)
                ASSERT_FAIL("slow request failed: %s", a->headers);
        ASSERT_STREQ(a->body, "slow done");
        ASSERT_TRUE(b->done_usec < a->done_usec);
        ASSERT_EQ(T.n_aborted, 0);

        client_free(a);
        client_free(b);
        server_stop();
}

TEST(stream_in_order) {
        server_start(NULL);

        for (int v10 = 0; v10 < 2; v10++) {
                CurlSpec s = { .path = "/stream", .http10 = v10 };
                usec_t t0 = now(CLOCK_MONOTONIC);
                Client *c = curl_run(&s);
                ASSERT_EQ(c->status, 200);
                ASSERT_STREQ(c->body, "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n");
                /* It trickled in: several deliveries, over the timers' ~150ms. */
                ASSERT_TRUE(c->n_writes >= 3);
                ASSERT_TRUE(now(CLOCK_MONOTONIC) - t0 >= 120 * USEC_PER_MSEC);
                ASSERT_NOT_NULL(strcasestr(c->headers, "Content-Type: text/event-stream"));
                ASSERT_NOT_NULL(strcasestr(c->headers, "Cache-Control: no-cache"));
                if (v10)
                        ASSERT_NULL(strcasestr(c->headers, "Transfer-Encoding"));
                else
                        ASSERT_NOT_NULL(strcasestr(c->headers, "Transfer-Encoding: chunked"));
                client_free(c);
                ASSERT_NULL(T.parked);
                T.timer = sd_event_source_disable_unref(T.timer);
        }
        ASSERT_EQ(T.n_aborted, 0);

        server_stop();
}

TEST(stream_back_pressure) {
        server_start(NULL);

        CurlSpec s = { .path = "/big-stream", .use_unix = true };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 200);
        ASSERT_EQ(c->body_size, BIG_STREAM_SIZE);
        for (size_t i = 0; i < BIG_STREAM_SIZE; i++)
                if ((uint8_t) c->body[i] != pattern_byte(i))
                        ASSERT_FAIL("byte %zu differs", i);
        /* The app was told to refill several times rather than queueing 4 MiB at once. */
        ASSERT_TRUE(T.n_drained >= 4);
        ASSERT_EQ(T.n_aborted, 0);
        client_free(c);

        server_stop();
}

static void child_disconnect_midstream(int out, const void *arg) {
        static const char req[] = "GET /stream-forever HTTP/1.1\r\nHost: test\r\n\r\n";
        char buf[4096];
        size_t have = 0;
        int fd = raw_connect(false);

        write_all(fd, req, sizeof(req) - 1);
        while (have < sizeof(buf) - 1) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 5000) <= 0)
                        _exit(6);
                ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
                if (n <= 0)
                        _exit(7);
                have += n;
                buf[have] = 0;
                if (strstr(buf, "tick\n") && strstr(buf, "200"))
                        break;
        }
        close(fd);
        client_report(out, "gone");
}

TEST(disconnect_midstream_aborts) {
        server_start(NULL);

        Client *c = client_spawn(child_disconnect_midstream, NULL);
        client_wait(c);
        ASSERT_STREQ(c->buf, "gone");
        /* The next tick write fails (or the hang-up watcher notices): the abort handler runs once and
         * the request is freed. */
        RUN_UNTIL(T.n_aborted == 1, 5);
        ASSERT_NULL(T.parked);
        ASSERT_NULL(T.timer);
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        run_for(100 * USEC_PER_MSEC);
        ASSERT_EQ(T.n_aborted, 1);
        client_free(c);

        server_stop();
}

static void child_request_then_close(int out, const void *arg) {
        const char *path = arg;
        char req[256];
        int fd = raw_connect(true);

        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
        write_all(fd, req, strlen(req));
        usleep(300 * 1000);
        close(fd);
        client_report(out, "closed");
}

TEST(disconnect_while_parked_aborts) {
        server_start(NULL);

        /* Nothing is written while parked: only the hang-up watcher can notice. */
        Client *c = client_spawn(child_request_then_close, "/park");
        RUN_UNTIL(T.parked != NULL, 5);
        ASSERT_EQ(http_server_n_requests(T.server), 1);
        client_wait(c);
        RUN_UNTIL(T.n_aborted == 1, 5);
        ASSERT_NULL(T.parked);
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        client_free(c);

        server_stop();
}

static void child_request_then_close_at_once(int out, const void *arg) {
        const char *path = arg;
        char req[256];
        int fd = raw_connect(true);

        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
        write_all(fd, req, strlen(req));
        close(fd);
        client_report(out, "closed");
}

TEST(disconnect_before_park_aborts) {
        server_start(NULL);

        /* The hang-up may well be seen before the request is parked, or MHD may read the end of the
         * stream with the request and never hand it over: either way nothing stays parked. */
        Client *c = client_spawn(child_request_then_close_at_once, "/park");
        client_wait(c);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        ASSERT_NULL(T.parked);
        ASSERT_EQ(T.n_aborted, T.n_handled);
        client_free(c);

        server_stop();
}

static void child_keepalive_then_park_and_close(int out, const void *arg) {
        char buf[4096];
        int fd = raw_connect(true);
        size_t n = 0;

        write_all(fd, "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n", 35);
        while (n < sizeof(buf) - 1) {
                ssize_t k = read(fd, buf + n, sizeof(buf) - 1 - n);
                if (k <= 0)
                        break;
                n += k;
                buf[n] = 0;
                if (strstr(buf, "\r\n\r\n") && strstr(buf, "hello"))
                        break;
        }
        /* Same connection, second request: parked, then the client goes away. */
        write_all(fd, "GET /park HTTP/1.1\r\nHost: test\r\n\r\n", 34);
        usleep(300 * 1000);
        close(fd);
        client_report(out, strstr(buf, " 200 ") ? "ok" : "bad");
}

TEST(disconnect_while_parked_on_keepalive_aborts) {
        server_start(NULL);

        Client *c = client_spawn(child_keepalive_then_park_and_close, NULL);
        RUN_UNTIL(T.parked != NULL, 5);
        client_wait(c);
        ASSERT_STREQ(c->buf, "ok");
        RUN_UNTIL(T.n_aborted == 1, 5);
        ASSERT_NULL(T.parked);
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        client_free(c);

        server_stop();
}

TEST(disconnect_without_abort_handler_detaches) {
        HttpRequest *r;

        server_start(NULL);

        Client *c = client_spawn(child_request_then_close, "/park-noabort");
        RUN_UNTIL(T.parked != NULL, 5);
        r = T.parked;
        client_wait(c);
        /* The connection is gone, the request object is not: the app still holds it. */
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        ASSERT_EQ(T.n_aborted, 0);
        ASSERT_STREQ(http_request_path(r), "/park-noabort");
        ASSERT_NULL(http_request_header(r, "Host"));
        ASSERT_NULL(http_request_server(r));
        ASSERT_ERROR(http_request_stream_begin(r, 200, "text/plain", NULL), ECONNRESET);
        /* The final call reports the reset; our reference is the last one (ASan would see a leak otherwise). */
        ASSERT_ERROR(http_request_respond(r, 200, "text/plain", "late", 4, NULL), ECONNRESET);
        T.parked = http_request_unref(r);
        client_free(c);

        server_stop();
}

static unsigned n_idle_calls;
static void on_idle_count(void *userdata) {
        n_idle_calls++;
}

TEST(idle_handler_after_last_connection) {
        int fd;

        server_start(NULL);
        n_idle_calls = 0;
        http_server_set_idle_handler(T.server, on_idle_count, NULL);

        /* While a connection is open, however quiet, the server is not idle. */
        fd = raw_connect(true);
        RUN_UNTIL(http_server_n_connections(T.server) == 1, 5);
        run_for(1500 * USEC_PER_MSEC);
        ASSERT_EQ(n_idle_calls, 0u);

        /* A second after it closes, once. */
        close(fd);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        run_for(600 * USEC_PER_MSEC);
        ASSERT_EQ(n_idle_calls, 0u);
        RUN_UNTIL(n_idle_calls == 1, 5);
        run_for(1500 * USEC_PER_MSEC);
        ASSERT_EQ(n_idle_calls, 1u);

        server_stop();
}

TEST(body_over_cap_413) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        char data[2048];

        memset(data, 'x', sizeof(data));
        l.max_body_bytes = 1024;
        server_start(&l);
        http_server_set_error_renderer(T.server, test_render, &T);

        /* Content-Length over the cap: refused before the body is read, in the front end's shape. */
        CurlSpec s = { .path = "/v1/messages", .body = data, .body_size = 2048 };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 413);
        ASSERT_STREQ(c->body, "{\"type\":\"error\",\"error\":{\"type\":\"request_too_large\",\"message\":"
                              "\"Request body too large: the limit is 1024 bytes.\"}}");
        ASSERT_NOT_NULL(strcasestr(c->headers, "Content-Type: application/json"));
        ASSERT_EQ(T.n_handled, 0);
        ASSERT_EQ(T.last_render_status, 413);
        client_free(c);

        /* Chunked, no length: refused once it crosses the cap; OpenAI shape for /v1/chat/completions. */
        CurlSpec k = { .path = "/v1/chat/completions", .body = data, .body_size = 2048, .chunked = true,
                       .headers = { "Expect:" } };
        c = curl_run(&k);
        ASSERT_EQ(c->status, 413);
        ASSERT_NOT_NULL(strstr(c->body, "\"code\":\"request_too_large\""));
        ASSERT_EQ(T.n_handled, 0);
        client_free(c);

        /* Exactly at the cap is fine. */
        CurlSpec ok = { .path = "/echo", .body = data, .body_size = 1024, .headers = { "Expect:" } };
        c = curl_run(&ok);
        ASSERT_EQ(c->status, 200);
        ASSERT_EQ(c->body_size, 1024);
        ASSERT_EQ(T.n_handled, 1);
        client_free(c);

        /* With API keys: an unauthenticated client gets 401, not the size verdict. */
        ASSERT_OK(apikeys_parse("k1\n", 3, &T.keys));
        CurlSpec noauth = { .path = "/v1/messages", .body = data, .body_size = 2048 };
        c = curl_run(&noauth);
        ASSERT_EQ(c->status, 401);
        client_free(c);
        CurlSpec auth = { .path = "/v1/messages", .body = data, .body_size = 2048, .headers = { "x-api-key: k1" } };
        c = curl_run(&auth);
        ASSERT_EQ(c->status, 413);
        ASSERT_EQ(T.n_handled, 1);
        client_free(c);

        server_stop();
}

TEST(header_too_large) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        char *h = malloc(20000);

        ASSERT_NOT_NULL(h);
        l.max_header_bytes = 16 * 1024;
        server_start(&l);

        strcpy(h, "X-Big: ");
        memset(h + 7, 'a', 20000 - 8);
        h[20000 - 1] = 0;
        CurlSpec s = { .path = "/hello", .headers = { h } };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 431);
        ASSERT_EQ(T.n_handled, 0);
        client_free(c);

        /* Headers under the limit are fine. */
        h[8000] = 0;
        c = curl_run(&s);
        ASSERT_EQ(c->status, 200);
        client_free(c);

        server_stop();
        free(h);
}

TEST(handler_errors_500) {
        server_start(NULL);

        CurlSpec s = { .path = "/fail" };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 500);
        ASSERT_STREQ(c->body, "Internal server error.\n");
        client_free(c);

        /* A header with CR/LF is refused and the client still gets an answer. */
        CurlSpec b = { .path = "/bad-header" };
        c = curl_run(&b);
        ASSERT_EQ(c->status, 500);
        ASSERT_NULL(strcasestr(c->headers, "Set-Cookie"));
        client_free(c);

        server_stop();
}

static void child_slow_loris(int out, const void *arg) {
        static const char start[] = "GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: ";
        usec_t t0 = now(CLOCK_MONOTONIC);
        int fd = raw_connect(false);

        write_all(fd, start, sizeof(start) - 1);
        /* One byte every 100ms: each resets an idle timer, none completes the request. */
        while (now(CLOCK_MONOTONIC) - t0 < 10 * USEC_PER_SEC) {
                if (send(fd, "a", 1, MSG_NOSIGNAL) < 0)
                        break;
                if (wait_closed(fd, 100) != 0)
                        break;
        }
        client_report(out, "%" PRIu64, (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
}

TEST(slow_loris_dropped) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.idle_timeout_usec = 10 * USEC_PER_SEC;
        l.request_timeout_usec = 1 * USEC_PER_SEC;
        server_start(&l);

        Client *c = client_spawn(child_slow_loris, NULL);
        client_wait(c);
        unsigned long ms = strtoul(c->buf, NULL, 10);
        fprintf(stderr, "slow client dropped after %lums\n", ms);
        ASSERT_TRUE(ms >= 800);
        ASSERT_TRUE(ms < 4000);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        ASSERT_EQ(T.n_handled, 0);
        client_free(c);

        server_stop();
}

static void child_idle(int out, const void *arg) {
        usec_t t0 = now(CLOCK_MONOTONIC);
        int fd = raw_connect(false), k;

        k = wait_closed(fd, 10000);
        client_report(out, "%d %" PRIu64, k, (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
}

TEST(idle_timeout) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        int k;
        unsigned long ms;

        l.idle_timeout_usec = 1 * USEC_PER_SEC;
        l.request_timeout_usec = 30 * USEC_PER_SEC;
        server_start(&l);

        Client *c = client_spawn(child_idle, NULL);
        client_wait(c);
        ASSERT_EQ(sscanf(c->buf, "%d %lu", &k, &ms), 2);
        fprintf(stderr, "idle client dropped after %lums\n", ms);
        ASSERT_EQ(k, 1);
        ASSERT_TRUE(ms >= 800);
        ASSERT_TRUE(ms < 4000);
        client_free(c);

        server_stop();
}

static void child_max_connections(int out, const void *arg) {
        static const char req[] = "GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
        int a = raw_connect(false), b = raw_connect(false), c, d;
        int ka, kb, kc;
        char buf[512];
        ssize_t n;

        /* Let the server accept both. */
        usleep(300 * 1000);
        /* A third connection, on the other listener: over the limit, closed at once. */
        c = raw_connect(true);
        kc = wait_closed(c, 2000);
        ka = wait_closed(a, 100);
        kb = wait_closed(b, 100);
        close(a);
        usleep(300 * 1000);
        /* A slot is free again: served. */
        d = raw_connect(true);
        write_all(d, req, sizeof(req) - 1);
        n = recv(d, buf, sizeof(buf) - 1, MSG_WAITALL);
        buf[MAX(n, (ssize_t) 0)] = 0;
        client_report(out, "%d %d %d %s", ka, kb, kc, startswith(buf, "HTTP/1.1 200") ? "served" : "refused");
}

TEST(max_connections) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.max_connections = 2;
        server_start(&l);

        /* a and b only wait for a request: the third connection pushes out the oldest (a) and is kept. */
        Client *c = client_spawn(child_max_connections, NULL);
        client_wait(c);
        ASSERT_STREQ(c->buf, "1 0 0 served");
        client_free(c);

        server_stop();
}

static void child_max_connections_busy(int out, const void *arg) {
        static const char req[] = "GET /park HTTP/1.1\r\nHost: test\r\n\r\n";
        int a = raw_connect(false), b = raw_connect(false), c;
        int ka, kb, kc;

        /* Both connections are busy with a request the app holds: nothing can be pushed out. */
        write_all(a, req, sizeof(req) - 1);
        write_all(b, req, sizeof(req) - 1);
        usleep(300 * 1000);
        c = raw_connect(true);
        kc = wait_closed(c, 2000);
        ka = wait_closed(a, 100);
        kb = wait_closed(b, 100);
        client_report(out, "%d %d %d", ka, kb, kc);
}

TEST(max_connections_busy_refused) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.max_connections = 2;
        server_start(&l);

        Client *c = client_spawn(child_max_connections_busy, NULL);
        client_wait(c);
        ASSERT_STREQ(c->buf, "0 0 1");
        ASSERT_EQ(T.n_handled, 2);
        client_free(c);
        T.parked = http_request_unref(T.parked);

        server_stop();
}

static void child_request_wait(int out, const void *arg) {
        const char *path = arg;
        char req[256];
        int fd = raw_connect(false);

        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path);
        write_all(fd, req, strlen(req));
        /* Wait for the server to go away. */
        for (;;) {
                char buf[1024];
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n <= 0)
                        break;
        }
        client_report(out, "eof");
}

/* Sends a GET and reads until EOF: reports the status (0 for none), whether the body has "partial" and
 * whether a chunked body was terminated. */
static void child_read_to_eof(int out, const void *arg) {
        const char *path = arg;
        char req[256], resp[8192];
        size_t n = 0;
        int fd = raw_connect(false);

        bool eof = false;

        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", path);
        write_all(fd, req, strlen(req));
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 5000) <= 0)
                        break;  /* a hang: reported as no EOF */
                ssize_t k = read(fd, resp + n, sizeof(resp) - 1 - n);
                if (k <= 0) {
                        eof = true;
                        break;
                }
                n += (size_t) k;
        }
        resp[n] = 0;
        unsigned status = 0;
        (void) sscanf(resp, "HTTP/1.1 %u", &status);
        client_report(out, "%s %u %s %s", eof ? "eof" : "hang", status, strstr(resp, "partial") ? "partial" : "-",
                      n >= 5 && memcmp(resp + n - 5, "0\r\n\r\n", 5) == 0 ? "terminated" : "truncated");
}

TEST(release_without_final_call_drops_connection) {
        server_start(NULL);

        Client *c = client_spawn(child_read_to_eof, "/park-release");
        client_wait(c);
        ASSERT_STREQ(c->buf, "eof 0 - truncated");
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        RUN_UNTIL(http_server_n_connections(T.server) == 0, 5);
        /* No abort callback after the app let go. */
        ASSERT_EQ(T.n_aborted, 0);
        client_free(c);

        server_stop();
}

TEST(release_stream_without_end_truncates) {
        server_start(NULL);

        Client *c = client_spawn(child_read_to_eof, "/stream-release");
        client_wait(c);
        ASSERT_STREQ(c->buf, "eof 200 partial truncated");
        RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        ASSERT_EQ(T.n_aborted, 0);
        client_free(c);

        server_stop();
}

TEST(handler_without_answer_or_reference_gets_500) {
        server_start(NULL);

        Client *c = client_spawn(child_read_to_eof, "/drop");
        client_wait(c);
        ASSERT_TRUE(startswith(c->buf, "eof 500 "));
        client_free(c);

        server_stop();
}

TEST(server_free_aborts_parked) {
        server_start(NULL);

        Client *c = client_spawn(child_request_wait, "/park");
        RUN_UNTIL(T.parked != NULL, 5);
        Client *d = client_spawn(child_request_wait, "/stream-forever");
        RUN_UNTIL(T.n_handled == 2, 5);
        run_for(100 * USEC_PER_MSEC);

        /* Both are owned by the app: freeing the server runs their abort handlers. */
        T.timer = sd_event_source_disable_unref(T.timer);
        T.server = http_server_free(T.server);
        ASSERT_EQ(T.n_aborted, 2);

        client_wait(c);
        client_wait(d);
        ASSERT_STREQ(c->buf, "eof");
        ASSERT_STREQ(d->buf, "eof");
        client_free(c);
        client_free(d);

        T.event = sd_event_unref(T.event);
        (void) nftw(T.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tls(HttpTLS **ret) {
        gnutls_x509_privkey_t key;
        gnutls_x509_crt_t crt;
        gnutls_datum_t cert_pem, key_pem;
        char cert_path[300], key_path[300];
        time_t t = time(NULL);
        FILE *f;

        ASSERT_OK(gnutls_x509_privkey_init(&key));
        ASSERT_OK(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                               GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
        ASSERT_OK(gnutls_x509_crt_init(&crt));
        ASSERT_OK(gnutls_x509_crt_set_version(crt, 3));
        ASSERT_OK(gnutls_x509_crt_set_serial(crt, "\x01", 1));
        ASSERT_OK(gnutls_x509_crt_set_activation_time(crt, t - 3600));
        ASSERT_OK(gnutls_x509_crt_set_expiration_time(crt, t + 3600));
        ASSERT_OK(gnutls_x509_crt_set_dn(crt, "CN=localhost", NULL));
        ASSERT_OK(gnutls_x509_crt_set_key(crt, key));
        ASSERT_OK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0));
        ASSERT_OK(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cert_pem));
        ASSERT_OK(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &key_pem));

        snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", T.dir);
        snprintf(key_path, sizeof(key_path), "%s/key.pem", T.dir);
        ASSERT_NOT_NULL(f = fopen(cert_path, "we"));
        ASSERT_EQ(fwrite(cert_pem.data, 1, cert_pem.size, f), cert_pem.size);
        fclose(f);
        ASSERT_NOT_NULL(f = fopen(key_path, "we"));
        ASSERT_EQ(fwrite(key_pem.data, 1, key_pem.size, f), key_pem.size);
        fclose(f);
        ASSERT_OK(http_tls_load(cert_path, key_path, ret));

        gnutls_free(cert_pem.data);
        gnutls_free(key_pem.data);
        gnutls_x509_crt_deinit(crt);
        gnutls_x509_privkey_deinit(key);
}

TEST(tls_listener) {
        HttpTLS *tls = NULL;
        char dir[256];

        make_tempdir(dir, sizeof(dir));
        snprintf(T.dir, sizeof(T.dir), "%s", dir);
        make_tls(&tls);
        server_start_full(NULL, tls);
        tls = http_tls_free(tls);

        CurlSpec s = { .path = "/stream", .tls = true };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 200);
        ASSERT_STREQ(c->body, "chunk-0\nchunk-1\nchunk-2\nchunk-3\nchunk-4\n");
        client_free(c);

        server_stop();
        (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ── API keys ────────────────────────────────────────────────────────────────────────────────────── */

TEST(apikeys_parse_and_check) {
        static const char text[] =
                "# client keys\n"
                "\n"
                "  sk-first-key  \n"
                "\t# indented comment\n"
                "sk-second#key\r\n"
                "last-without-newline";
        ApiKeys *k = NULL;

        ASSERT_OK(apikeys_parse(text, sizeof(text) - 1, &k));
        ASSERT_EQ(apikeys_count(k), 3);

        ASSERT_TRUE(apikeys_check_token(k, "sk-first-key"));
        ASSERT_TRUE(apikeys_check_token(k, "sk-second#key"));
        ASSERT_TRUE(apikeys_check_token(k, "last-without-newline"));
        ASSERT_FALSE(apikeys_check_token(k, "sk-first-ke"));
        ASSERT_FALSE(apikeys_check_token(k, "sk-first-key "));
        ASSERT_FALSE(apikeys_check_token(k, " sk-first-key"));
        ASSERT_FALSE(apikeys_check_token(k, "# client keys"));
        ASSERT_FALSE(apikeys_check_token(k, ""));
        ASSERT_FALSE(apikeys_check_token(k, NULL));

        ASSERT_TRUE(apikeys_check_headers(k, "Bearer sk-first-key", NULL));
        ASSERT_TRUE(apikeys_check_headers(k, "bearer   sk-first-key", NULL));
        ASSERT_TRUE(apikeys_check_headers(k, NULL, "sk-second#key"));
        ASSERT_TRUE(apikeys_check_headers(k, "Bearer wrong", "sk-first-key"));
        ASSERT_FALSE(apikeys_check_headers(k, "sk-first-key", NULL));          /* no scheme */
        ASSERT_FALSE(apikeys_check_headers(k, "Basic sk-first-key", NULL));
        ASSERT_FALSE(apikeys_check_headers(k, "Bearersk-first-key", NULL));
        ASSERT_FALSE(apikeys_check_headers(k, "Bearer ", NULL));
        ASSERT_FALSE(apikeys_check_headers(k, NULL, NULL));
        ASSERT_FALSE(apikeys_check_headers(k, "Bearer wrong", "wrong"));
        k = apikeys_free(k);

        /* No keys configured: everything passes. */
        ASSERT_TRUE(apikeys_check_token(NULL, NULL));
        ASSERT_TRUE(apikeys_check_headers(NULL, NULL, NULL));

        /* Control characters are refused. */
        ASSERT_ERROR(apikeys_parse("good\nba\001d\n", 11, &k), EINVAL);
        ASSERT_NULL(k);
        ASSERT_OK(apikeys_parse("", 0, &k));
        ASSERT_EQ(apikeys_count(k), 0);
        ASSERT_FALSE(apikeys_check_token(k, "anything"));
        apikeys_free(k);
}

TEST(apikeys_load) {
        char dir[256], path[300];
        ApiKeys *k = (ApiKeys *) 0x1;
        FILE *f;

        make_tempdir(dir, sizeof(dir));

        /* Nothing configured and no credential: NULL, everything allowed. */
        unsetenv("CREDENTIALS_DIRECTORY");
        ASSERT_OK(apikeys_load(NULL, &k));
        ASSERT_NULL(k);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        ASSERT_OK(apikeys_load("", &k));
        ASSERT_NULL(k);

        /* The systemd credential. */
        snprintf(path, sizeof(path), "%s/%s", dir, APIKEYS_CREDENTIAL);
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        fputs("# from LoadCredential=\ncred-key\n", f);
        fclose(f);
        ASSERT_OK(chmod(path, 0600));
        ASSERT_OK(apikeys_load(NULL, &k));
        ASSERT_EQ(apikeys_count(k), 1);
        ASSERT_TRUE(apikeys_check_token(k, "cred-key"));
        k = apikeys_free(k);

        /* APIKeysFile= wins over the credential. */
        snprintf(path, sizeof(path), "%s/keys", dir);
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        fputs("file-key-1\nfile-key-2\n", f);
        fclose(f);
        ASSERT_OK(apikeys_load(path, &k));
        ASSERT_EQ(apikeys_count(k), 2);
        ASSERT_FALSE(apikeys_check_token(k, "cred-key"));
        ASSERT_TRUE(apikeys_check_token(k, "file-key-2"));
        k = apikeys_free(k);

        /* Configured but empty or missing: an error, never "allow all". */
        ASSERT_NOT_NULL(f = fopen(path, "we"));
        fputs("# nothing yet\n\n", f);
        fclose(f);
        ASSERT_ERROR(apikeys_load(path, &k), ENOKEY);
        snprintf(path, sizeof(path), "%s/missing", dir);
        ASSERT_ERROR(apikeys_load(path, &k), ENOENT);
        ASSERT_ERROR(apikeys_load(dir, &k), EBADFD);

        unsetenv("CREDENTIALS_DIRECTORY");
        (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TEST(apikeys_http) {
        static const char keys[] = "sk-right\n";
        static const struct {
                const char *h1, *h2;
                long status;
        } cases[] = {
                { "Authorization: Bearer sk-right", NULL, 200 },
                { "x-api-key: sk-right", NULL, 200 },
                { "X-Api-Key: sk-right", "anthropic-version: 2023-06-01", 200 },
                { "Authorization: Bearer sk-wrong", NULL, 401 },
                { "x-api-key: sk-righ", NULL, 401 },
                { "Authorization: sk-right", NULL, 401 },
                { NULL, NULL, 401 },
        };
        char body[4096];

        memset(body, 'b', sizeof(body));
        server_start(NULL);
        ASSERT_OK(apikeys_parse(keys, sizeof(keys) - 1, &T.keys));

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                /* A POST with a body: refused ones never reach the handler. */
                CurlSpec s = { .path = "/echo", .body = body, .body_size = sizeof(body),
                               .headers = { cases[i].h1, cases[i].h2 } };
                unsigned before = T.n_handled;
                Client *c = curl_run(&s);
                if (c->status != cases[i].status)
                        ASSERT_FAIL("case %zu: status %ld, expected %ld", i, c->status, cases[i].status);
                if (c->status == 401) {
                        ASSERT_STREQ(c->body, "Invalid API key.\n");
                        ASSERT_EQ(T.n_handled, before);
                } else {
                        ASSERT_EQ(c->body_size, sizeof(body));
                        ASSERT_EQ(T.n_handled, before + 1);
                }
                client_free(c);
        }

        server_stop();
}

/* ── RFC 9112 framing and slow-loris ─────────────────────────────────────────────────────────────── */

typedef struct RawCase {
        const char *name;
        const char *request;
        size_t size;            /* 0: strlen(request) */
        bool half_close;        /* shut down the sending side right after the last byte */
        unsigned status;
        const char *expect;     /* in the response */
        bool handled;           /* the handler ran */
        unsigned half_close_after_ms;   /* instead: the whole request, then the half-close this much later */
} RawCase;

/* Sends c->request (the last byte and the FIN in one segment when half-closing), reads until EOF (5 s at
 * most) and reports "eof|open <ms>\n<response>". */
static void child_raw(int out, const void *arg) {
        const RawCase *c = arg;
        size_t size = c->size ?: strlen(c->request), n = 0;
        usec_t t0 = now(CLOCK_MONOTONIC);
        static char resp[16384];
        bool eof = false;
        int fd = raw_connect(false);

        if (c->half_close_after_ms > 0) {
                write_all(fd, c->request, size);
                usleep(c->half_close_after_ms * 1000);
                (void) shutdown(fd, SHUT_WR);
        } else if (c->half_close) {
                write_all(fd, c->request, size - 1);
                usleep(50 * 1000);
                if (send(fd, c->request + size - 1, 1, MSG_MORE | MSG_NOSIGNAL) != 1)
                        _exit(6);
                (void) shutdown(fd, SHUT_WR);
        } else
                write_all(fd, c->request, size);

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 5000) <= 0)
                        break;
                ssize_t k = read(fd, resp + n, sizeof(resp) - 1 - n);
                if (k <= 0) {
                        eof = true;
                        break;
                }
                n += (size_t) k;
        }
        resp[n] = 0;
        client_report(out, "%s %" PRIu64 "\n", eof ? "eof" : "open", (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
        write_all(out, resp, n);
}

TEST(framing_rfc9112) {
        /* libmicrohttpd's parser ends the target at a raw NUL and passes nothing after it: the request is
         * for "/hel" (here a 404) — what follows the NUL is never seen by anyone. */
        static const char nul_raw[] = "GET /hel\0lo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        static const RawCase cases[] = {
                { "duplicate Content-Length",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                  0, false, 400, "more than one Content-Length" },
                { "conflicting Content-Length",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nhello",
                  0, false, 400, "more than one Content-Length" },
                { "negative Content-Length",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\nhello",
                  0, false, 400, "Content-Length" },
                { "Content-Length with a sign",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
                  0, false, 400, "Content-Length" },
                { "missing Host in HTTP/1.1",
                  "GET /hello HTTP/1.1\r\n\r\n",
                  0, false, 400, "requires a Host header" },
                { "two Host headers",
                  "GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                  0, false, 400, "more than one Host" },
                { "NUL in the path (percent-encoded)",
                  "GET /hello%00.json HTTP/1.1\r\nHost: t\r\n\r\n",
                  0, false, 400, "NUL byte" },
                { "NUL in the query (percent-encoded)",
                  "GET /query?a=b%00c HTTP/1.1\r\nHost: t\r\n\r\n",
                  0, false, 400, "NUL byte" },
                { "NUL in the path (raw)", nul_raw, sizeof(nul_raw) - 1, false, 404, "No such endpoint", true },
                { "no HTTP version", "GET /hello\r\nHost: t\r\n\r\n", 0, false, 400, "" },
                { "HTTP/1.2", "GET /hello HTTP/1.2\r\nHost: t\r\n\r\n", 0, false, 400, "" },
                { "Transfer-Encoding: chunked, identity",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  0, false, 400, "only Transfer-Encoding accepted" },
                { "Transfer-Encoding: identity",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\nhello",
                  0, false, 400, "only Transfer-Encoding accepted" },
                { "Transfer-Encoding: chunked with trailing white space",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  0, false, 400, "only Transfer-Encoding accepted" },
                { "Transfer-Encoding and Content-Length",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  0, false, 400, "both Content-Length and Transfer-Encoding" },
                { "two Transfer-Encoding headers",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                  0, false, 400, "more than one Transfer-Encoding" },
                { "Transfer-Encoding in HTTP/1.0",
                  "POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  0, false, 400, "HTTP/1.0" },
                { "half-close after a full POST",
                  "POST /park HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                  0, true, 400, "half-close" },
                { "half-close while the request is parked",
                  "POST /park HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
                  0, false, 400, "half-close", true, 300 },
                /* What must still work. */
                { "HTTP/1.0 without Host", "GET /hello HTTP/1.0\r\n\r\n", 0, false, 200, "hello world", true },
                { "chunked (any case)",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                  0, false, 200, "X-Body-Size: 5", true },
                { "one Content-Length",
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                  0, false, 200, "hello", true },
                { "a half-close after a GET (costs nothing: answered)",
                  "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0, true, 200, "hello world", true },
        };

        server_start(NULL);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const RawCase *rc = &cases[i];
                unsigned handled = T.n_handled, status = 0;
                unsigned long ms = 0;
                char state[8] = "";
                const char *resp;

                fprintf(stderr, "  %s\n", rc->name);
                Client *c = client_spawn(child_raw, rc);
                client_wait(c);
                ASSERT_EQ(sscanf(c->buf, "%7s %lu", state, &ms), 2);
                resp = strchr(c->buf, '\n') + 1;
                (void) sscanf(resp, "HTTP/1.%*u %u", &status);
                if (status != rc->status || !strstr(resp, rc->expect))
                        ASSERT_FAIL("%s: expected %u with '%s', got: %s", rc->name, rc->status, rc->expect, resp);
                /* Refused framing closes the connection at once (nothing hangs to a deadline). */
                ASSERT_STREQ(state, "eof");
                ASSERT_TRUE(ms < 2000);
                if (rc->status == 400 && rc->size == 0)
                        ASSERT_NOT_NULL(strcasestr(resp, "\r\nConnection: close\r\n"));
                ASSERT_EQ(T.n_handled - handled, rc->handled ? 1U : 0U);
                if (rc->half_close_after_ms > 0) {
                        /* The app was told, as for a disconnect (its handler let go of r). */
                        ASSERT_EQ(T.n_aborted, 1U);
                        ASSERT_NULL(T.parked);
                }
                client_free(c);
                RUN_UNTIL(http_server_n_requests(T.server) == 0, 5);
        }
        /* The server still serves. */
        CurlSpec s = { .path = "/hello" };
        Client *c = curl_run(&s);
        ASSERT_EQ(c->status, 200);
        client_free(c);

        server_stop();
}

typedef struct Loris {
        const char *source;     /* bind to this loopback address */
        unsigned n;             /* connections to open */
        unsigned seconds;       /* how long to trickle */
} Loris;

/* Opens n connections from l->source, each sending a request line and then one header byte per 200ms
 * on every connection still open. Reports how many the server closed. */
static void child_loris(int out, const void *arg) {
        const Loris *l = arg;
        static const char start[] = "GET /hello HTTP/1.1\r\nHost: test\r\nX-Slow: ";
        int fds[512];
        unsigned closed = 0;
        usec_t t0;

        if (l->n > ELEMENTSOF(fds))
                _exit(7);
        for (unsigned i = 0; i < l->n; i++) {
                struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET, .sin_port = htons(T.port) };
                fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fds[i] < 0 || inet_pton(AF_INET, l->source, &src.sin_addr) != 1 ||
                    bind(fds[i], (struct sockaddr *) &src, sizeof(src)) < 0)
                        _exit(8);
                dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                if (connect(fds[i], (struct sockaddr *) &dst, sizeof(dst)) < 0)
                        _exit(9);
                (void) send(fds[i], start, sizeof(start) - 1, MSG_NOSIGNAL);
        }
        t0 = now(CLOCK_MONOTONIC);
        while (now(CLOCK_MONOTONIC) - t0 < l->seconds * USEC_PER_SEC) {
                usleep(200 * 1000);
                for (unsigned i = 0; i < l->n; i++) {
                        if (fds[i] < 0)
                                continue;
                        if (send(fds[i], "a", 1, MSG_NOSIGNAL) < 0 || wait_closed(fds[i], 0) != 0) {
                                fds[i] = safe_close(fds[i]);
                                closed++;
                        }
                }
        }
        client_report(out, "%u", closed);
}

/* While a loris holds connections, six clients must each be served at once. */
static void check_served_during_loris(const Loris *loris, unsigned *ret_closed) {
        Client *lc = client_spawn(child_loris, loris), *c[6];
        usec_t t0;

        run_for(700 * USEC_PER_MSEC);
        t0 = now(CLOCK_MONOTONIC);
        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                CurlSpec s = { .path = "/hello" };
                c[i] = client_spawn(child_curl, &s);
        }
        for (size_t i = 0; i < ELEMENTSOF(c); i++) {
                client_wait(c[i]);
                ASSERT_EQ(c[i]->status, 200);
                client_free(c[i]);
        }
        fprintf(stderr, "six clients served in %" PRIu64 "ms during a loris of %u connections from %s\n",
                (now(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC, loris->n, loris->source);
        ASSERT_TRUE(now(CLOCK_MONOTONIC) - t0 < 3 * USEC_PER_SEC);
        client_wait(lc);
        *ret_closed = (unsigned) strtoul(lc->buf, NULL, 10);
        client_free(lc);
}

TEST(slowloris_per_client_limit) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        unsigned closed;

        /* Timeouts far away: only the limits protect the other clients here. */
        l.max_connections = 64;
        l.max_connections_per_client = 10;
        l.header_timeout_usec = 60 * USEC_PER_SEC;
        l.request_timeout_usec = 60 * USEC_PER_SEC;
        server_start(&l);

        Loris loris = { .source = "127.0.0.2", .n = 100, .seconds = 3 };
        check_served_during_loris(&loris, &closed);
        /* The loris keeps at most its own ten. */
        fprintf(stderr, "the server closed %u of the loris's %u connections\n", closed, loris.n);
        ASSERT_TRUE(closed >= loris.n - l.max_connections_per_client);
        ASSERT_EQ(T.n_handled, 6);

        server_stop();
}

TEST(slowloris_same_address_pushed_out) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        unsigned closed;

        /* The loris shares the clients' address and fills every slot: the waiting ones are pushed out. */
        l.max_connections = 32;
        l.max_connections_per_client = 32;
        l.header_timeout_usec = 60 * USEC_PER_SEC;
        l.request_timeout_usec = 60 * USEC_PER_SEC;
        server_start(&l);

        Loris loris = { .source = "127.0.0.1", .n = 100, .seconds = 3 };
        check_served_during_loris(&loris, &closed);
        ASSERT_TRUE(closed >= loris.n - l.max_connections);
        ASSERT_EQ(T.n_handled, 6);
        ASSERT_TRUE(http_server_n_connections(T.server) <= 32 + 16);

        server_stop();
}

static void child_slow_body(int out, const void *arg) {
        static const char head[] = "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 20\r\nConnection: close\r\n\r\n";
        char resp[1024];
        size_t n = 0;
        int fd = raw_connect(false);

        /* The headers at once, then the body over two seconds: past the header timeout, within the request
         * timeout. */
        write_all(fd, head, sizeof(head) - 1);
        for (unsigned i = 0; i < 20; i++) {
                usleep(100 * 1000);
                write_all(fd, "b", 1);
        }
        for (;;) {
                ssize_t k = read(fd, resp + n, sizeof(resp) - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        resp[n] = 0;
        client_report(out, "%s", startswith(resp, "HTTP/1.1 200") && strstr(resp, "X-Body-Size: 20") ? "served" : resp);
}

TEST(header_timeout) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.header_timeout_usec = 1 * USEC_PER_SEC;
        l.request_timeout_usec = 5 * USEC_PER_SEC;
        l.idle_timeout_usec = 10 * USEC_PER_SEC;
        server_start(&l);

        /* Headers trickled: dropped after the header timeout, long before the request timeout. */
        Client *c = client_spawn(child_slow_loris, NULL);
        client_wait(c);
        unsigned long ms = strtoul(c->buf, NULL, 10);
        fprintf(stderr, "slow headers dropped after %lums\n", ms);
        ASSERT_TRUE(ms >= 800);
        ASSERT_TRUE(ms < 2500);
        client_free(c);

        /* A slow body after quick headers has the whole request timeout. */
        c = client_spawn(child_slow_body, NULL);
        client_wait(c);
        ASSERT_STREQ(c->buf, "served");
        client_free(c);
        ASSERT_EQ(T.n_handled, 1);

        server_stop();
}

static void __attribute__((constructor)) init(void) {
        log_set_max_level(getenv("TEST_DEBUG") ? LOG_DEBUG : LOG_INFO);
        (void) signal(SIGPIPE, SIG_IGN);
}
