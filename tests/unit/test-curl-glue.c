/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests for common/curl-glue: libcurl's multi interface on an sd-event loop, against a small keep-alive
 * HTTP/1.1 server on loopback that runs in a forked child and reports its connections through a pipe. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "curl-glue.h"
#include "tests.h"
#include "time-util.h"

/* ── Loopback HTTP/1.1 server in a child process ─────────────────────────────────────────────────── */

/* Requests are answered at once with "<method> <path>[ <request body>]" as the body, on a connection that
 * stays open, except:
 *   /close-after…  the server closes the connection after the answer (without saying so in a header);
 *   /stall…        never answered;
 *   /big/<n>       an n-byte body of pattern_byte().
 * Commands on the control pipe: 'K' closes every connection (as a server drops idle ones); end of file
 * ends the server. On the report pipe the server writes 'A' per accepted connection and 'C' per closed
 * one. */

#define SERVER_CONNS_MAX 256
#define BIG_BODY_MAX ((size_t) 256 * 1024)

typedef struct ServerConn {
        int fd;
        bool stalled;
        size_t size;
        char buf[4096];
} ServerConn;

typedef struct Server {
        pid_t pid;
        int port;
        int ctl;                /* write end of the control pipe */
        int report;             /* read end of the report pipe */
        unsigned n_accepted;
        unsigned n_closed;
} Server;

static char pattern_byte(size_t i) {
        return (char) ('a' + (i * 7 + i / 26) % 26);
}

static bool send_all(int fd, const void *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return false;
                p = (const char *) p + k;
                n -= k;
        }
        return true;
}

static bool send_big(int fd, size_t n) {
        char head[128], piece[4096];
        int k = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", n);

        if (!send_all(fd, head, k))
                return false;
        for (size_t off = 0; off < n; off += sizeof piece) {
                size_t m = MIN(sizeof piece, n - off);
                for (size_t i = 0; i < m; i++)
                        piece[i] = pattern_byte(off + i);
                if (!send_all(fd, piece, m))
                        return false;
        }
        return true;
}

/* Returns 1 if a request was answered (look for the next one), 0 if more data is needed, -1 to close. */
static int server_answer(ServerConn *c) {
        char head[sizeof c->buf + 1], method[16], path[256];
        char body[sizeof c->buf + 512], reply[sizeof body + 128];
        const char *end, *cl;
        size_t head_size, content_length = 0;
        int n, m;

        end = memmem(c->buf, c->size, "\r\n\r\n", 4);
        if (!end)
                return c->size < sizeof c->buf ? 0 : -1;
        head_size = end + 4 - c->buf;
        memcpy(head, c->buf, head_size);
        head[head_size] = 0;
        if (sscanf(head, "%15s %255s", method, path) != 2)
                return -1;
        cl = strcasestr(head, "\r\nContent-Length:");
        if (cl)
                content_length = strtoul(cl + strlen("\r\nContent-Length:"), NULL, 10);
        if (content_length > sizeof c->buf - head_size)
                return -1;
        if (c->size < head_size + content_length)
                return 0;

        if (startswith(path, "/stall")) {
                c->stalled = true;
                c->size = 0;
                return 0;
        }
        if (startswith(path, "/big/")) {
                size_t size = strtoul(path + strlen("/big/"), NULL, 10);
                if (size > BIG_BODY_MAX || !send_big(c->fd, size))
                        return -1;
        } else {
                n = snprintf(body, sizeof body, "%s %s%s%.*s", method, path, content_length > 0 ? " " : "",
                             (int) content_length, c->buf + head_size);
                m = snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
                             n, body);
                if (!send_all(c->fd, reply, m))
                        return -1;
        }
        c->size -= head_size + content_length;
        memmove(c->buf, c->buf + head_size + content_length, c->size);
        return startswith(path, "/close-after") ? -1 : 1;
}

static void server_report(int report, char what) {
        /* A lost report shows as a failed assertion in the parent. */
        if (write(report, &what, 1) != 1)
                return;
}

static void server_conn_close(ServerConn *conns, size_t *n_conns, size_t i, int report) {
        (void) close(conns[i].fd);
        if (i != --*n_conns)
                conns[i] = conns[*n_conns];
        server_report(report, 'C');
}

static _Noreturn void server_child(int listen_fd, int ctl, int report) {
        static ServerConn conns[SERVER_CONNS_MAX];
        static struct pollfd p[SERVER_CONNS_MAX + 2];
        size_t n_conns = 0;

        for (;;) {
                size_t n_polled = n_conns;

                p[0] = (struct pollfd) { .fd = ctl, .events = POLLIN };
                p[1] = (struct pollfd) { .fd = listen_fd,
                                         .events = n_conns < SERVER_CONNS_MAX ? POLLIN : 0 };
                for (size_t i = 0; i < n_polled; i++)
                        p[2 + i] = (struct pollfd) { .fd = conns[i].fd, .events = POLLIN };
                if (poll(p, n_polled + 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(EXIT_FAILURE);
                }
                if (p[0].revents != 0) {
                        char cmd;
                        if (read(ctl, &cmd, 1) != 1)
                                _exit(EXIT_SUCCESS);
                        if (cmd != 'K')
                                _exit(EXIT_FAILURE);
                        while (n_conns > 0)
                                server_conn_close(conns, &n_conns, n_conns - 1, report);
                        continue;
                }
                if (p[1].revents & POLLIN) {
                        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd >= 0) {
                                conns[n_conns].fd = fd;
                                conns[n_conns].stalled = false;
                                conns[n_conns].size = 0;
                                n_conns++;
                                server_report(report, 'A');
                        }
                }
                /* Backwards, so that closing one (the last moves into its slot) skips none. */
                for (size_t i = n_polled; i-- > 0;) {
                        ServerConn *c = &conns[i];
                        ssize_t k;
                        int r;

                        if (p[2 + i].revents == 0)
                                continue;
                        k = read(c->fd, c->buf + c->size, sizeof c->buf - c->size);
                        if (k < 0 && errno == EINTR)
                                continue;
                        r = k > 0 ? 0 : -1;
                        if (k > 0) {
                                c->size += k;
                                if (c->stalled)
                                        c->size = 0;
                                else
                                        do
                                                r = server_answer(c);
                                        while (r > 0);
                        }
                        if (r < 0)
                                server_conn_close(conns, &n_conns, i, report);
                }
        }
}

static void server_start(Server *s) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t l = sizeof sa;
        int fd, ctl[2], report[2];

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(listen(fd, SOMAXCONN));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        ASSERT_OK(pipe2(ctl, O_CLOEXEC));
        ASSERT_OK(pipe2(report, O_CLOEXEC));

        *s = (Server) { .port = ntohs(sa.sin_port) };
        s->pid = fork();
        ASSERT_TRUE(s->pid >= 0);
        if (s->pid == 0) {
                (void) close(ctl[1]);
                (void) close(report[0]);
                (void) signal(SIGPIPE, SIG_IGN);
                server_child(fd, ctl[0], report[1]);
        }
        (void) close(fd);
        (void) close(ctl[0]);
        (void) close(report[1]);
        s->ctl = ctl[1];
        s->report = report[0];
        ASSERT_OK(fcntl(s->report, F_SETFL, O_NONBLOCK));
}

/* Reads what the server reported so far. */
static void server_update(Server *s) {
        char buf[256];
        ssize_t n;

        while ((n = read(s->report, buf, sizeof buf)) > 0)
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] == 'A')
                                s->n_accepted++;
                        else if (buf[i] == 'C')
                                s->n_closed++;
                }
        ASSERT_TRUE(n < 0 && errno == EAGAIN);
}

static unsigned server_accepted(Server *s) {
        server_update(s);
        return s->n_accepted;
}

/* Waits (outside the event loop) until the server has closed n connections in all. */
static void server_wait_closed(Server *s, unsigned n) {
        usec_t end = now(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;

        for (;;) {
                struct pollfd p = { .fd = s->report, .events = POLLIN };
                server_update(s);
                if (s->n_closed >= n)
                        return;
                if (now(CLOCK_MONOTONIC) > end)
                        ASSERT_FAIL("server closed %u connections, expected %u", s->n_closed, n);
                (void) poll(&p, 1, 100);
        }
}

static void server_command(Server *s, char cmd) {
        ASSERT_EQ(write(s->ctl, &cmd, 1), 1);
}

static void server_stop(Server *s) {
        int status;

        s->ctl = safe_close(s->ctl);
        ASSERT_EQ(waitpid(s->pid, &status, 0), s->pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                ASSERT_FAIL("server child failed: status 0x%x", status);
        s->report = safe_close(s->report);
}

/* The number of this process's sockets connected to port (curl's connections), and the last of them. */
static unsigned sockets_to(int port, int *ret_fd) {
        unsigned n = 0;

        for (int fd = 3; fd < 4096; fd++) {
                struct sockaddr_in sa;
                socklen_t l = sizeof sa;

                if (getpeername(fd, (struct sockaddr *) &sa, &l) < 0 || sa.sin_family != AF_INET ||
                    ntohs(sa.sin_port) != port)
                        continue;
                n++;
                if (ret_fd)
                        *ret_fd = fd;
        }
        return n;
}

/* Whether fd is in an epoll set of this process, from /proc/self/fdinfo of each epoll descriptor. curl's
 * sockets can only be in the glue's set (sd-event watches the glue's set, not them). */
static bool in_epoll_set(int fd) {
        ASSERT_OK(access("/proc/self/fdinfo", R_OK));
        for (int e = 3; e < 4096; e++) {
                _cleanup_fclose_ FILE *f = NULL;
                char path[64], target[64], line[256];
                ssize_t n;
                int tfd;

                (void) snprintf(path, sizeof path, "/proc/self/fd/%d", e);
                n = readlink(path, target, sizeof target - 1);
                if (n < 0)
                        continue;
                target[n] = 0;
                if (!streq(target, "anon_inode:[eventpoll]"))
                        continue;
                (void) snprintf(path, sizeof path, "/proc/self/fdinfo/%d", e);
                f = fopen(path, "re");
                ASSERT_NOT_NULL(f);
                while (fgets(line, sizeof line, f))
                        if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd)
                                return true;
        }
        return false;
}

/* ── Transfers ───────────────────────────────────────────────────────────────────────────────────── */

typedef struct TestState {
        unsigned n_post;
        unsigned n_done;
        unsigned n_sockets_opened;
} TestState;

static TestState T;

typedef struct Fetch {
        CURL *curl;
        char *body;
        size_t size;
        bool pause_once;        /* the first write pauses the transfer */
        bool paused;
        bool done;
        CURLcode result;
        long status;
        long num_connects;
        unsigned n_post_at_done;
} Fetch;

#define RUN_UNTIL(e, cond)                                                                      \
        do {                                                                                    \
                usec_t _end = now(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC;                          \
                while (!(cond)) {                                                               \
                        if (now(CLOCK_MONOTONIC) > _end)                                        \
                                ASSERT_FAIL("timed out waiting for %s", #cond);                 \
                        ASSERT_OK(sd_event_run((e), 100 * USEC_PER_MSEC));                      \
                }                                                                               \
        } while (0)

static int on_elapsed(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

/* Runs the loop for usec; returns the number of loop iterations that took. */
static uint64_t run_for(sd_event *e, usec_t usec) {
        _cleanup_(sd_event_source_disable_unrefp) sd_event_source *t = NULL;
        uint64_t before, after;
        bool elapsed = false;

        ASSERT_OK(sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, usec, USEC_PER_MSEC,
                                             on_elapsed, &elapsed));
        ASSERT_OK(sd_event_get_iteration(e, &before));
        while (!elapsed)
                ASSERT_OK(sd_event_run(e, UINT64_MAX));
        ASSERT_OK(sd_event_get_iteration(e, &after));
        return after - before;
}

static void assert_quiet(sd_event *e, usec_t usec) {
        uint64_t n = run_for(e, usec);
        if (n >= 20)
                ASSERT_FAIL("%" PRIu64 " loop iterations in %" PRIu64 " ms with nothing to do", n,
                            usec / USEC_PER_MSEC);
}

static void on_post(void *userdata) {
        T.n_post++;
}

static size_t on_write(char *p, size_t size, size_t n, void *userdata) {
        Fetch *f = userdata;
        size_t k = size * n;
        char *b;

        if (f->pause_once && !f->paused) {
                f->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        b = realloc(f->body, f->size + k + 1);
        ASSERT_NOT_NULL(b);
        memcpy(b + f->size, p, k);
        f->body = b;
        f->size += k;
        f->body[f->size] = 0;
        return k;
}

static int on_sockopt(void *clientp, curl_socket_t fd, curlsocktype purpose) {
        T.n_sockets_opened++;
        return CURL_SOCKOPT_OK;
}

static void on_done(CurlGlue *g, CURL *c, CURLcode result, void *userdata) {
        Fetch *f = userdata;

        ASSERT_TRUE(c == f->curl);
        ASSERT_FALSE(f->done);
        f->done = true;
        f->result = result;
        f->n_post_at_done = T.n_post;
        ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->status), CURLE_OK);
        ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &f->num_connects), CURLE_OK);
        T.n_done++;
}

static void fetch_init_url(Fetch *f, const char *url, uint64_t timeout_usec) {
        f->curl = curl_easy_init();
        ASSERT_NOT_NULL(f->curl);
        ASSERT_OK(curl_glue_setup_easy(f->curl, url, NULL, timeout_usec));
        ASSERT_EQ(curl_easy_setopt(f->curl, CURLOPT_WRITEFUNCTION, on_write), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(f->curl, CURLOPT_WRITEDATA, f), CURLE_OK);
        ASSERT_EQ(curl_easy_setopt(f->curl, CURLOPT_SOCKOPTFUNCTION, on_sockopt), CURLE_OK);
}

static void fetch_init(Fetch *f, const Server *s, const char *path) {
        char url[128];

        (void) snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
        fetch_init_url(f, url, 5 * USEC_PER_SEC);
}

static void fetch_start(CurlGlue *g, Fetch *f, const Server *s, const char *path) {
        fetch_init(f, s, path);
        ASSERT_OK(curl_glue_add(g, f->curl, on_done, f));
}

static void fetch_assert_ok(const Fetch *f, const char *body) {
        ASSERT_TRUE(f->done);
        if (f->result != CURLE_OK)
                ASSERT_FAIL("transfer failed: %s", curl_easy_strerror(f->result));
        ASSERT_EQ(f->status, 200);
        ASSERT_STREQ(f->body, body);
}

static void fetch_done(Fetch *f) {
        curl_easy_cleanup(f->curl);
        free(f->body);
        *f = (Fetch) {};
}

/* One GET of path to completion, in a loop iteration of its own; returns NUM_CONNECTS. */
static long fetch_one(sd_event *e, CurlGlue *g, const Server *s, const char *path) {
        char expect[256];
        Fetch f = {};
        long n;

        fetch_start(g, &f, s, path);
        RUN_UNTIL(e, f.done);
        (void) snprintf(expect, sizeof expect, "GET %s", path);
        fetch_assert_ok(&f, expect);
        n = f.num_connects;
        fetch_done(&f);
        return n;
}

typedef struct Setup {
        Server server;
        sd_event *event;
        CurlGlue *glue;
} Setup;

static void setup(Setup *t) {
        T = (TestState) {};
        /* The server first, so that the child holds none of the loop's or curl's descriptors. */
        server_start(&t->server);
        ASSERT_OK(sd_event_new(&t->event));
        ASSERT_OK(curl_glue_new(t->event, &t->glue));
        curl_glue_set_post(t->glue, on_post, NULL);
}

static void teardown(Setup *t) {
        t->glue = curl_glue_free(t->glue);
        t->event = sd_event_unref(t->event);
        server_stop(&t->server);
}

/* ── Tests ───────────────────────────────────────────────────────────────────────────────────────── */

TEST(transfer_completes) {
        Setup t = {};
        Fetch f = {}, p = {};
        const char *url = NULL;
        char expect[128];

        setup(&t);
        fetch_start(t.glue, &f, &t.server, "/hello");
        RUN_UNTIL(t.event, f.done);
        fetch_assert_ok(&f, "GET /hello");
        ASSERT_EQ(f.num_connects, 1);
        /* curl_glue_setup_easy() set the URL. */
        ASSERT_EQ(curl_easy_getinfo(f.curl, CURLINFO_EFFECTIVE_URL, &url), CURLE_OK);
        (void) snprintf(expect, sizeof expect, "http://127.0.0.1:%d/hello", t.server.port);
        ASSERT_STREQ(url, expect);
        ASSERT_EQ(T.n_done, 1);

        /* A request body goes out (on the same connection). */
        fetch_init(&p, &t.server, "/echo");
        ASSERT_EQ(curl_easy_setopt(p.curl, CURLOPT_POSTFIELDS, "hello"), CURLE_OK);
        ASSERT_OK(curl_glue_add(t.glue, p.curl, on_done, &p));
        RUN_UNTIL(t.event, p.done);
        fetch_assert_ok(&p, "POST /echo hello");
        ASSERT_EQ(p.num_connects, 0);
        ASSERT_EQ(T.n_done, 2);
        ASSERT_EQ(server_accepted(&t.server), 1);

        fetch_done(&f);
        fetch_done(&p);
        teardown(&t);
}

TEST(done_gets_error_codes) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t l = sizeof sa;
        _cleanup_close_ int fd = -EBADF;
        Setup t = {};
        Fetch refused = {}, ftp = {}, file = {};
        char url[128];

        setup(&t);
        /* A bound port nobody listens on refuses connections. */
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &sa, &l));
        (void) snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
        fetch_init_url(&refused, url, 5 * USEC_PER_SEC);
        ASSERT_OK(curl_glue_add(t.glue, refused.curl, on_done, &refused));
        /* curl_glue_setup_easy() allows http and https only: these fail before any socket. */
        fetch_init_url(&ftp, "ftp://127.0.0.1/", 5 * USEC_PER_SEC);
        ASSERT_OK(curl_glue_add(t.glue, ftp.curl, on_done, &ftp));
        fetch_init_url(&file, "file:///etc/hostname", 5 * USEC_PER_SEC);
        ASSERT_OK(curl_glue_add(t.glue, file.curl, on_done, &file));

        RUN_UNTIL(t.event, T.n_done == 3);
        ASSERT_EQ(refused.result, CURLE_COULDNT_CONNECT);
        ASSERT_EQ(ftp.result, CURLE_UNSUPPORTED_PROTOCOL);
        ASSERT_EQ(file.result, CURLE_UNSUPPORTED_PROTOCOL);
        ASSERT_NULL(file.body);

        fetch_done(&refused);
        fetch_done(&ftp);
        fetch_done(&file);
        teardown(&t);
}

TEST(timeout_fires) {
        Setup t = {};
        Fetch f = {};
        usec_t start, took;
        char url[128];

        setup(&t);
        (void) snprintf(url, sizeof url, "http://127.0.0.1:%d/stall", t.server.port);
        fetch_init_url(&f, url, 200 * USEC_PER_MSEC);
        start = now(CLOCK_MONOTONIC);
        ASSERT_OK(curl_glue_add(t.glue, f.curl, on_done, &f));
        RUN_UNTIL(t.event, f.done);
        took = now(CLOCK_MONOTONIC) - start;
        ASSERT_EQ(f.result, CURLE_OPERATION_TIMEDOUT);
        /* Delivered by the glue's timer, whose dispatch ends in post too. */
        ASSERT_EQ(T.n_post, f.n_post_at_done + 1);
        if (took < 190 * USEC_PER_MSEC || took > 1500 * USEC_PER_MSEC)
                ASSERT_FAIL("a 200 ms timeout took %" PRIu64 " ms", took / USEC_PER_MSEC);
        /* curl gave the connection up. */
        server_wait_closed(&t.server, 1);
        ASSERT_EQ(sockets_to(t.server.port, NULL), 0);

        fetch_done(&f);
        teardown(&t);
}

TEST(sub_millisecond_timeout_still_times_out) {
        Setup t = {};
        Fetch f = {};
        char url[128];

        /* 500 µs must not become CURLOPT_TIMEOUT_MS 0, which curl reads as "no timeout". */
        setup(&t);
        (void) snprintf(url, sizeof url, "http://127.0.0.1:%d/stall", t.server.port);
        fetch_init_url(&f, url, 500);
        ASSERT_OK(curl_glue_add(t.glue, f.curl, on_done, &f));
        RUN_UNTIL(t.event, f.done);
        ASSERT_EQ(f.result, CURLE_OPERATION_TIMEDOUT);

        fetch_done(&f);
        teardown(&t);
}

TEST(reused_connection_keeps_working) {
        Setup t = {};
        char path[32];
        int fd = -EBADF;

        setup(&t);
        for (unsigned i = 0; i < 40; i++) {
                (void) snprintf(path, sizeof path, "/seq/%u", i);
                ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, path), i == 0 ? 1 : 0);
        }
        ASSERT_EQ(server_accepted(&t.server), 1);
        ASSERT_EQ(T.n_sockets_opened, 1);
        ASSERT_EQ(sockets_to(t.server.port, &fd), 1);
        /* Idle in curl's cache, the socket stays in the glue's set (no epoll_ctl() per request). */
        ASSERT_TRUE(in_epoll_set(fd));
        teardown(&t);
}

typedef struct Chain {
        Server *server;
        Fetch f;
        unsigned n, n_max;
        long connects;          /* sum of NUM_CONNECTS */
} Chain;

static void on_chain_done(CurlGlue *g, CURL *c, CURLcode result, void *userdata) {
        Chain *ch = userdata;
        char expect[32];
        long n = -1;

        ASSERT_EQ(result, CURLE_OK);
        (void) snprintf(expect, sizeof expect, "GET /chain/%u", ch->n);
        ASSERT_STREQ(ch->f.body, expect);
        ASSERT_EQ(curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &n), CURLE_OK);
        ch->connects += n;
        fetch_done(&ch->f);
        if (++ch->n == ch->n_max)
                return;
        /* The next one from within the glue's dispatch, as a daemon does. */
        (void) snprintf(expect, sizeof expect, "/chain/%u", ch->n);
        fetch_init(&ch->f, ch->server, expect);
        ASSERT_OK(curl_glue_add(g, ch->f.curl, on_chain_done, ch));
}

TEST(transfers_chained_from_done) {
        Setup t = {};
        Chain ch = { .server = &t.server, .n_max = 30 };

        setup(&t);
        fetch_init(&ch.f, &t.server, "/chain/0");
        ASSERT_OK(curl_glue_add(t.glue, ch.f.curl, on_chain_done, &ch));
        RUN_UNTIL(t.event, ch.n == ch.n_max);
        ASSERT_EQ(ch.connects, 1);
        ASSERT_EQ(server_accepted(&t.server), 1);
        teardown(&t);
}

TEST(idle_connection_closed_by_server) {
        Setup t = {};
        struct pollfd p = { .fd = -EBADF, .events = POLLIN };

        setup(&t);
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/first"), 1);
        ASSERT_EQ(sockets_to(t.server.port, &p.fd), 1);
        ASSERT_TRUE(in_epoll_set(p.fd));

        server_command(&t.server, 'K');
        server_wait_closed(&t.server, 1);
        /* What this test is about: curl still holds the connection in its cache, and its socket polls
         * readable (end of file) for good. */
        ASSERT_EQ(sockets_to(t.server.port, NULL), 1);
        ASSERT_EQ(poll(&p, 1, 1000), 1);
        ASSERT_TRUE(p.revents & POLLIN);

        /* The glue must not spin on it: it takes the socket out of its set. */
        assert_quiet(t.event, 300 * USEC_PER_MSEC);
        ASSERT_FALSE(in_epoll_set(p.fd));

        /* curl finds the connection dead, closes it and connects anew; the new socket (likely under the
         * same number) is watched from scratch, also when it is reused in turn. */
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/second"), 1);
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/third"), 0);
        ASSERT_EQ(server_accepted(&t.server), 2);
        ASSERT_EQ(sockets_to(t.server.port, &p.fd), 1);
        ASSERT_TRUE(in_epoll_set(p.fd));
        teardown(&t);
}

TEST(server_closes_after_each_answer) {
        Setup t = {};
        char path[32];

        setup(&t);
        for (unsigned i = 0; i < 20; i++) {
                (void) snprintf(path, sizeof path, "/close-after/%u", i);
                ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, path), 1);
        }
        server_wait_closed(&t.server, 20);
        assert_quiet(t.event, 100 * USEC_PER_MSEC);
        ASSERT_EQ(server_accepted(&t.server), 20);
        /* At most the last dead one is left in curl's cache. */
        ASSERT_TRUE(sockets_to(t.server.port, NULL) <= 1);
        teardown(&t);
}

#define N_CONCURRENT 100

TEST(many_concurrent_transfers) {
        Setup t = {};
        Fetch *f = calloc(N_CONCURRENT, sizeof(Fetch));
        char path[32], expect[64];

        ASSERT_NOT_NULL(f);
        setup(&t);
        /* More than the glue takes from its epoll set at once (64). */
        for (unsigned i = 0; i < N_CONCURRENT; i++) {
                (void) snprintf(path, sizeof path, "/c/%u", i);
                fetch_start(t.glue, &f[i], &t.server, path);
        }
        RUN_UNTIL(t.event, T.n_done == N_CONCURRENT);
        for (unsigned i = 0; i < N_CONCURRENT; i++) {
                (void) snprintf(expect, sizeof expect, "GET /c/%u", i);
                fetch_assert_ok(&f[i], expect);
                fetch_done(&f[i]);
        }
        ASSERT_EQ(server_accepted(&t.server), T.n_sockets_opened);
        ASSERT_TRUE(T.n_sockets_opened > 1);
        /* Idle cached connections do not wake the loop. */
        assert_quiet(t.event, 100 * USEC_PER_MSEC);
        teardown(&t);
        free(f);
}

TEST(flush_and_post) {
        Setup t = {};
        Fetch a = {}, b = {};

        setup(&t);
        ASSERT_FALSE(curl_glue_flush(t.glue));
        ASSERT_FALSE(curl_glue_flush(NULL));

        /* Adding a transfer makes curl ask to be run now; flush does that on the spot. */
        fetch_start(t.glue, &a, &t.server, "/a");
        ASSERT_EQ(T.n_sockets_opened, 0);
        ASSERT_TRUE(curl_glue_flush(t.glue));
        ASSERT_EQ(T.n_sockets_opened, 1);
        ASSERT_FALSE(a.done);
        ASSERT_FALSE(curl_glue_flush(t.glue));
        /* flush() runs no post callback: the caller is the one that would. */
        ASSERT_EQ(T.n_post, 0);

        /* Each new transfer asks again. */
        fetch_start(t.glue, &b, &t.server, "/b");
        ASSERT_TRUE(curl_glue_flush(t.glue));
        ASSERT_EQ(T.n_sockets_opened, 2);
        ASSERT_FALSE(curl_glue_flush(t.glue));

        RUN_UNTIL(t.event, a.done && b.done);
        fetch_assert_ok(&a, "GET /a");
        fetch_assert_ok(&b, "GET /b");
        ASSERT_TRUE(T.n_post > 0);
        /* post ran at the end of the dispatch that finished the last transfer, after done(). */
        ASSERT_EQ(T.n_post, MAX(a.n_post_at_done, b.n_post_at_done) + 1);

        fetch_done(&a);
        fetch_done(&b);
        teardown(&t);
}

TEST(post_after_each_dispatch) {
        Setup t = {};
        Fetch f = {};
        unsigned n_dispatched = 0;

        setup(&t);
        fetch_start(t.glue, &f, &t.server, "/p");
        /* Every source of this loop is the glue's (defer, io or timer), and each dispatch ends in post. */
        for (usec_t end = now(CLOCK_MONOTONIC) + 3 * USEC_PER_SEC; !f.done;) {
                int r;

                if (now(CLOCK_MONOTONIC) > end)
                        ASSERT_FAIL("timed out waiting for %s", "f.done");
                r = sd_event_run(t.event, 100 * USEC_PER_MSEC);
                ASSERT_OK(r);
                if (r > 0)
                        n_dispatched++;
        }
        fetch_assert_ok(&f, "GET /p");
        ASSERT_TRUE(n_dispatched >= 2);
        ASSERT_EQ(T.n_post, n_dispatched);
        fetch_done(&f);
        teardown(&t);
}

TEST(remove_without_done) {
        Setup t = {};
        Fetch f = {};

        setup(&t);
        fetch_start(t.glue, &f, &t.server, "/stall");
        RUN_UNTIL(t.event, server_accepted(&t.server) == 1);
        (void) run_for(t.event, 50 * USEC_PER_MSEC);
        ASSERT_EQ(sockets_to(t.server.port, NULL), 1);

        curl_glue_remove(t.glue, f.curl);
        curl_glue_remove(t.glue, NULL);
        /* The half-done connection is dropped, and done() never comes. */
        server_wait_closed(&t.server, 1);
        ASSERT_EQ(sockets_to(t.server.port, NULL), 0);
        assert_quiet(t.event, 100 * USEC_PER_MSEC);
        ASSERT_FALSE(f.done);
        ASSERT_EQ(T.n_done, 0);
        fetch_done(&f);

        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/after"), 1);
        teardown(&t);
}

#define BIG_SIZE ((size_t) 64 * 1024)

TEST(pause_and_resume) {
        Setup t = {};
        Fetch f = { .pause_once = true };
        char path[32];
        int fd = -EBADF;

        setup(&t);
        (void) snprintf(path, sizeof path, "/big/%zu", BIG_SIZE);
        fetch_init(&f, &t.server, path);
        /* Small reads, so that most of the body waits in the socket while the transfer is paused. */
        ASSERT_EQ(curl_easy_setopt(f.curl, CURLOPT_BUFFERSIZE, 1024L), CURLE_OK);
        ASSERT_OK(curl_glue_add(t.glue, f.curl, on_done, &f));
        RUN_UNTIL(t.event, f.paused);

        /* Paused with unread data in the socket, which stays readable: no spinning, no progress. The glue
         * took the socket out of its set, so resuming has to put it back. */
        assert_quiet(t.event, 200 * USEC_PER_MSEC);
        ASSERT_FALSE(f.done);
        ASSERT_EQ(f.size, 0);
        ASSERT_EQ(sockets_to(t.server.port, &fd), 1);
        ASSERT_FALSE(in_epoll_set(fd));

        ASSERT_OK(curl_glue_pause(t.glue, f.curl, false));
        RUN_UNTIL(t.event, f.done);
        ASSERT_EQ(f.result, CURLE_OK);
        ASSERT_EQ(f.size, BIG_SIZE);
        for (size_t i = 0; i < BIG_SIZE; i++)
                if (f.body[i] != pattern_byte(i))
                        ASSERT_FAIL("body byte %zu is '%c', expected '%c'", i, f.body[i], pattern_byte(i));
        ASSERT_EQ(f.num_connects, 1);

        fetch_done(&f);
        teardown(&t);
}

TEST(free_closes_cached_connections) {
        Setup t = {};
        Fetch f[3] = {};

        setup(&t);
        for (unsigned i = 0; i < ELEMENTSOF(f); i++)
                fetch_start(t.glue, &f[i], &t.server, "/x");
        RUN_UNTIL(t.event, T.n_done == ELEMENTSOF(f));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++) {
                fetch_assert_ok(&f[i], "GET /x");
                fetch_done(&f[i]);
        }
        ASSERT_EQ(server_accepted(&t.server), 3);
        ASSERT_EQ(sockets_to(t.server.port, NULL), 3);
        ASSERT_EQ(t.server.n_closed, 0);

        t.glue = curl_glue_free(t.glue);
        ASSERT_EQ(sockets_to(t.server.port, NULL), 0);
        server_wait_closed(&t.server, 3);
        teardown(&t);
}

TEST(idle_sweep_closes_connections) {
        Setup t = {};
        Fetch f[3] = {};
        CurlGlueLimits l = CURL_GLUE_LIMITS_DEFAULT;

        setup(&t);
        l.idle_timeout_usec = 300 * USEC_PER_MSEC;
        ASSERT_OK(curl_glue_set_limits(t.glue, &l));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++)
                fetch_start(t.glue, &f[i], &t.server, "/x");
        ASSERT_EQ(curl_glue_n_transfers(t.glue), 3u);
        RUN_UNTIL(t.event, T.n_done == ELEMENTSOF(f));
        ASSERT_EQ(curl_glue_n_transfers(t.glue), 0u);
        for (unsigned i = 0; i < ELEMENTSOF(f); i++) {
                fetch_assert_ok(&f[i], "GET /x");
                fetch_done(&f[i]);
        }
        ASSERT_EQ(sockets_to(t.server.port, NULL), 3);
        /* Kept alive for the idle timeout (the sweep is armed with 1 s accuracy), then closed. */
        RUN_UNTIL(t.event, sockets_to(t.server.port, NULL) == 0);
        server_wait_closed(&t.server, 3);
        ASSERT_EQ(curl_glue_n_connects(t.glue), 3u);
        /* The glue works on with its new multi handle. */
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/after"), 1);
        ASSERT_EQ(curl_glue_n_connects(t.glue), 4u);
        teardown(&t);
}

TEST(sweep_waits_for_transfers) {
        Setup t = {};
        Fetch f = {};
        char url[128];

        setup(&t);
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/a"), 1);
        (void) snprintf(url, sizeof url, "http://127.0.0.1:%d/stall", t.server.port);
        fetch_init_url(&f, url, USEC_INFINITY);
        ASSERT_OK(curl_glue_add(t.glue, f.curl, on_done, &f));
        /* A transfer in flight: nothing is closed. */
        ASSERT_FALSE(curl_glue_sweep(t.glue));
        curl_glue_remove(t.glue, f.curl);
        ASSERT_EQ(curl_glue_n_transfers(t.glue), 0u);
        ASSERT_TRUE(curl_glue_sweep(t.glue));
        ASSERT_EQ(sockets_to(t.server.port, NULL), 0);
        ASSERT_EQ(fetch_one(t.event, t.glue, &t.server, "/b"), 1);
        fetch_done(&f);
        teardown(&t);
}

TEST(max_connections_caps_open_connections) {
        Setup t = {};
        Fetch f[6] = {};
        CurlGlueLimits l = CURL_GLUE_LIMITS_DEFAULT;

        setup(&t);
        l.max_connections = 2;
        l.http_version = CURL_GLUE_HTTP_1_1;
        ASSERT_OK(curl_glue_set_limits(t.glue, &l));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++)
                fetch_start(t.glue, &f[i], &t.server, "/x");
        RUN_UNTIL(t.event, T.n_done == ELEMENTSOF(f));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++) {
                fetch_assert_ok(&f[i], "GET /x");
                fetch_done(&f[i]);
        }
        /* HTTP/1.1 forced: six transfers, two at a time on two connections. */
        ASSERT_EQ(server_accepted(&t.server), 2);
        ASSERT_EQ(curl_glue_n_connects(t.glue), 2u);
        teardown(&t);
}

TEST(auto_without_http2_is_not_capped) {
        Setup t = {};
        Fetch f[6] = {};
        CurlGlueLimits l = CURL_GLUE_LIMITS_DEFAULT;

        setup(&t);
        l.max_connections = 2;
        ASSERT_OK(curl_glue_set_limits(t.glue, &l));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++)
                fetch_start(t.glue, &f[i], &t.server, "/x");
        RUN_UNTIL(t.event, T.n_done == ELEMENTSOF(f));
        for (unsigned i = 0; i < ELEMENTSOF(f); i++) {
                fetch_assert_ok(&f[i], "GET /x");
                fetch_done(&f[i]);
        }
        /* AUTO on plain http:// is HTTP/1.1 and nothing multiplexes: every transfer gets a connection
         * (a cap would hold a stream back for as long as others stream). */
        ASSERT_EQ(server_accepted(&t.server), 6);
        teardown(&t);
}

TEST(http_version_from_string) {
        ASSERT_EQ(curl_glue_http_version_from_string("auto"), CURL_GLUE_HTTP_AUTO);
        ASSERT_EQ(curl_glue_http_version_from_string("1.1"), CURL_GLUE_HTTP_1_1);
        ASSERT_EQ(curl_glue_http_version_from_string("2"), CURL_GLUE_HTTP_2);
        ASSERT_EQ(curl_glue_http_version_from_string("2.0"), -EINVAL);
        ASSERT_EQ(curl_glue_http_version_from_string(""), -EINVAL);
        ASSERT_EQ(curl_glue_http_version_from_string(NULL), -EINVAL);

        CurlGlueHTTPVersion v = CURL_GLUE_HTTP_AUTO;
        ASSERT_OK(curl_glue_parse_http_version("1.1", &v));
        ASSERT_EQ(v, CURL_GLUE_HTTP_1_1);
        ASSERT_EQ(curl_glue_parse_http_version("h2", &v), -EINVAL);
        ASSERT_EQ(v, CURL_GLUE_HTTP_1_1);
}

TEST(url_check_scheme) {
        ASSERT_OK(url_check_scheme("https://q.us-east-1.amazonaws.com/x"));
        ASSERT_OK(url_check_scheme("http://127.0.0.1:8080/x"));
        ASSERT_OK(url_check_scheme("http://localhost"));
        ASSERT_OK(url_check_scheme("http://localhost:99/"));
        ASSERT_OK(url_check_scheme("http://localhost/a"));
        ASSERT_OK(url_check_scheme("http://[::1]:80/"));
        ASSERT_ERROR(url_check_scheme("http://example.com/"), EPERM);
        ASSERT_ERROR(url_check_scheme("http://localhost.example.com/"), EPERM);
        /* The host curl connects to decides, not a prefix of the URL. */
        ASSERT_ERROR(url_check_scheme("http://127.0.0.1@example.com/"), EPERM);
        ASSERT_ERROR(url_check_scheme("http://localhost:80@example.com/"), EPERM);
        ASSERT_ERROR(url_check_scheme("http://[::1]@example.com/"), EPERM);
        ASSERT_ERROR(url_check_scheme("http://127.example.com/"), EPERM);
        ASSERT_ERROR(url_check_scheme("http://127.0.0.1.example.com/"), EPERM);
        ASSERT_OK(url_check_scheme("http://127.1.2.3:9/"));
        ASSERT_OK(url_check_scheme("HTTP://LOCALHOST:9/"));
        ASSERT_OK(url_check_scheme("HTTPS://q.us-east-1.amazonaws.com/"));
        ASSERT_OK(url_check_scheme("https://q.{region}.amazonaws.com"));
        ASSERT_ERROR(url_check_scheme("ftp://127.0.0.1/"), EPROTONOSUPPORT);
        ASSERT_ERROR(url_check_scheme("file:///etc/passwd"), EPROTONOSUPPORT);
        ASSERT_ERROR(url_check_scheme(NULL), EINVAL);
}

TEST(proxy_check_and_mask) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        char *v = NULL;

        ASSERT_OK(curl_glue_proxy_check("http://127.0.0.1:3128"));
        ASSERT_OK(curl_glue_proxy_check("https://proxy.example:443"));
        ASSERT_OK(curl_glue_proxy_check("socks5h://u:p@127.0.0.1:1080"));
        ASSERT_OK(curl_glue_proxy_check("env"));
        /* socks5:// would resolve the names here; ftp and friends are no proxy schemes. */
        ASSERT_ERROR(curl_glue_proxy_check("socks5://127.0.0.1:1080"), EPROTONOSUPPORT);
        ASSERT_ERROR(curl_glue_proxy_check("ftp://127.0.0.1:21"), EPROTONOSUPPORT);
        ASSERT_ERROR(curl_glue_proxy_check("127.0.0.1:3128"), EPROTONOSUPPORT);
        ASSERT_ERROR(curl_glue_proxy_check("http://"), EINVAL);
        ASSERT_ERROR(curl_glue_proxy_check(NULL), EINVAL);

        ASSERT_OK(curl_glue_parse_proxy("http://127.0.0.1:3128", &v));
        ASSERT_STREQ(v, "http://127.0.0.1:3128");
        ASSERT_OK(curl_glue_parse_proxy("", &v));
        ASSERT_NULL(v);
        ASSERT_ERROR(curl_glue_parse_proxy("gopher://x", &v), EPROTONOSUPPORT);
        ASSERT_NULL(v);

        ASSERT_OK(curl_glue_proxy_mask("http://user:s3cret@127.0.0.1:3128", &a));
        ASSERT_STREQ(a, "http://user:***@127.0.0.1:3128/");
        ASSERT_TRUE(!strstr(a, "s3cret"));
        ASSERT_OK(curl_glue_proxy_mask("socks5h://127.0.0.1:1080", &b));
        ASSERT_STREQ(b, "socks5h://127.0.0.1:1080/");
        ASSERT_OK(curl_glue_proxy_mask(NULL, &c));
        ASSERT_STREQ(c, "none");
        ASSERT_OK(curl_glue_proxy_mask("env", &d));
        ASSERT_STREQ(d, "env");
        ASSERT_OK(curl_glue_proxy_mask("http://u:pw@[bad", &e));
        ASSERT_TRUE(!strstr(e, "pw"));
}

TEST(url_expand_region) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        ASSERT_OK(url_expand_region("https://q.{region}.x/{region}/y", "eu-west-1", &a));
        ASSERT_STREQ(a, "https://q.eu-west-1.x/eu-west-1/y");
        ASSERT_OK(url_expand_region("https://fixed/", "eu-west-1", &b));
        ASSERT_STREQ(b, "https://fixed/");
        ASSERT_ERROR(url_expand_region("{region}{region}", "", &c), EINVAL);
        ASSERT_ERROR(url_expand_region("https://q.{region}.x/", "evil.example#", &c), EINVAL);
        ASSERT_NULL(c);
}
