/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fast fake Kiro upstream for the benchmarks: precomputed AWS event streams over plain sockets + epoll. */

/* One thread, one epoll loop, HTTP/1.1 keep-alive, no parsing beyond what a benchmark needs. Every answer
 * is encoded once at start-up with the proxy's own encoder (eventstream_encode_event), so serving a
 * request costs a header parse and a writev(). The answer is chosen by a marker in the request body (the
 * prompt travels into the Kiro request unchanged):
 *
 *   (no marker)          short answer: three assistantResponseEvent frames + meteringEvent +
 *                        contextUsageEvent, with Content-Length
 *   "bench-mode:large"   --large-bytes of text (default 1 MiB) in frames of --chunk-bytes of text
 *                        (default 1000), then the closing events, with Content-Length
 *   "bench-mode:hold"    chunked: the first text frame at once, then nothing until POST /release, then
 *                        more text, the closing events and the last chunk
 *
 * Control routes (same port): POST /release (every held stream goes on; answers {"released":N}),
 * GET /stats ({"requests":N,"held":N,"open":N}). Any other route is 404.
 *
 * --ready-file F gets "PORT\n" once listening (write to F.tmp, rename). --dump-dir D saves the bodies of
 * the first 16 chat requests as D/request-N.json (N from 1), so a load generator can send the fake the
 * very requests that kiro-proxyd sends it. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "kiro/kiro-eventstream.h"

#define CHAT_PATH "/generateAssistantResponse"
#define MAX_HEADER_BYTES (64U * 1024U)
#define MAX_BODY_BYTES (64U * 1024U * 1024U)
#define MAX_DUMPS 16U
#define MAX_SEGMENTS 4

typedef struct Buffer {
        uint8_t *data;
        size_t size;
        size_t allocated;
} Buffer;

typedef enum ConnState {
        CONN_READING,   /* waiting for (the rest of) a request */
        CONN_WRITING,   /* a response is queued */
        CONN_HELD,      /* a hold-mode stream sent its first frame and waits for /release */
} ConnState;

typedef struct Conn {
        int fd;
        ConnState state;
        Buffer in;
        char head[512];                 /* status line and headers of the current response */
        struct iovec seg[MAX_SEGMENTS]; /* what is left to write: head, then static buffers */
        unsigned n_seg;
        bool close_after;               /* Connection: close, or an error */
        bool continued;                 /* "100 Continue" sent for the current request */
        bool epollout;
        struct Conn *held_prev, *held_next;
} Conn;

/* The precomputed answers. */
static Buffer short_answer, large_answer, hold_first, hold_rest;

static int epfd = -1;
static Conn *held_head;
static unsigned n_held, n_open;
static uint64_t n_requests;
static unsigned n_dumped;
static const char *arg_dump_dir;
static bool arg_quit;

static void die(const char *what) {
        fprintf(stderr, "bench-fake-kiro: %s: %s\n", what, strerror(errno));
        exit(EXIT_FAILURE);
}

static void buffer_append(Buffer *b, const void *p, size_t n) {
        if (b->size + n > b->allocated) {
                size_t a = b->allocated ? b->allocated : 4096;
                while (a < b->size + n)
                        a *= 2;
                uint8_t *d = realloc(b->data, a);
                if (!d)
                        die("realloc");
                b->data = d;
                b->allocated = a;
        }
        memcpy(b->data + b->size, p, n);
        b->size += n;
}

static void buffer_append_str(Buffer *b, const char *s) {
        buffer_append(b, s, strlen(s));
}

static void buffer_consume(Buffer *b, size_t n) {
        memmove(b->data, b->data + n, b->size - n);
        b->size -= n;
}

static void append_event(Buffer *b, const char *type, const char *json) {
        uint8_t *frame = NULL;
        size_t size = 0;
        int r = eventstream_encode_event(type, json, strlen(json), &frame, &size);
        if (r < 0) {
                errno = -r;
                die("eventstream_encode_event");
        }
        buffer_append(b, frame, size);
        free(frame);
}

/* Text is plain ASCII without quotes or backslashes, so it goes into JSON as is. */
static void append_text_event(Buffer *b, const char *text) {
        Buffer j = {};
        buffer_append_str(&j, "{\"content\":\"");
        buffer_append_str(&j, text);
        buffer_append(&j, "\"}", 3); /* with the NUL */
        append_event(b, "assistantResponseEvent", (const char *) j.data);
        free(j.data);
}

static void append_closing_events(Buffer *b) {
        append_event(b, "meteringEvent", "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":0.1}");
        append_event(b, "contextUsageEvent", "{\"contextUsagePercentage\":2.5}");
}

/* Deterministic filler text, words and spaces, exactly n bytes. */
static void filler_text(char *buf, size_t n, unsigned seed) {
        static const char *const words[] = { "lorem", "ipsum", "dolor", "sit", "amet", "consectetur",
                                             "adipiscing", "elit", "sed", "do", "eiusmod", "tempor" };
        size_t i = 0;
        unsigned w = seed;
        while (i < n) {
                const char *s = words[w++ % (sizeof words / sizeof words[0])];
                for (; *s && i < n; s++)
                        buf[i++] = *s;
                if (i < n)
                        buf[i++] = ' ';
        }
        buf[n] = 0;
}

static void append_chunk(Buffer *b, const Buffer *payload) {
        char h[32];
        snprintf(h, sizeof h, "%zx\r\n", payload->size);
        buffer_append_str(b, h);
        buffer_append(b, payload->data, payload->size);
        buffer_append_str(b, "\r\n");
}

static void build_answers(size_t large_bytes, size_t chunk_bytes) {
        append_text_event(&short_answer, "Hello! ");
        append_text_event(&short_answer, "This is a short answer ");
        append_text_event(&short_answer, "from the benchmark fake.");
        append_closing_events(&short_answer);

        char *text = malloc(chunk_bytes + 1);
        if (!text)
                die("malloc");
        for (size_t done = 0, i = 0; done < large_bytes; i++) {
                size_t n = large_bytes - done < chunk_bytes ? large_bytes - done : chunk_bytes;
                filler_text(text, n, (unsigned) i);
                append_text_event(&large_answer, text);
                done += n;
        }
        append_closing_events(&large_answer);

        Buffer first = {}, rest = {};
        append_text_event(&first, "Held stream, first frame. ");
        append_chunk(&hold_first, &first);
        for (unsigned i = 0; i < 4; i++) {
                filler_text(text, 64, i);
                append_text_event(&rest, text);
        }
        append_closing_events(&rest);
        append_chunk(&hold_rest, &rest);
        buffer_append_str(&hold_rest, "0\r\n\r\n");
        free(first.data);
        free(rest.data);
        free(text);
}

static void conn_update_events(Conn *c) {
        bool want = c->n_seg > 0;
        if (want == c->epollout)
                return;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c };
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                die("epoll_ctl");
        c->epollout = want;
}

static void held_unlink(Conn *c) {
        if (c->held_prev)
                c->held_prev->held_next = c->held_next;
        else if (held_head == c)
                held_head = c->held_next;
        if (c->held_next)
                c->held_next->held_prev = c->held_prev;
        c->held_prev = c->held_next = NULL;
        n_held--;
}

static void conn_free(Conn *c) {
        if (c->state == CONN_HELD)
                held_unlink(c);
        (void) epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        free(c->in.data);
        free(c);
        n_open--;
}

static void queue(Conn *c, const void *p, size_t n) {
        if (n == 0)
                return;
        if (c->n_seg >= MAX_SEGMENTS) {
                fprintf(stderr, "bench-fake-kiro: too many segments\n");
                exit(EXIT_FAILURE);
        }
        c->seg[c->n_seg++] = (struct iovec) { .iov_base = (void *) p, .iov_len = n };
}

static void respond_static(Conn *c, unsigned status, const char *content_type, const Buffer *body) {
        int n = snprintf(c->head, sizeof c->head,
                         "HTTP/1.1 %u %s\r\n"
                         "Content-Type: %s\r\n"
                         "Content-Length: %zu\r\n"
                         "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
                         "%s"
                         "\r\n",
                         status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request", content_type,
                         body ? body->size : 0, c->close_after ? "Connection: close\r\n" : "");
        queue(c, c->head, (size_t) n);
        if (body)
                queue(c, body->data, body->size);
        c->state = CONN_WRITING;
}

/* Small dynamic bodies (control answers) go into head too. */
static void respond_json(Conn *c, const char *json) {
        int n = snprintf(c->head, sizeof c->head,
                         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                         strlen(json), c->close_after ? "Connection: close\r\n" : "", json);
        queue(c, c->head, (size_t) n);
        c->state = CONN_WRITING;
}

static void respond_hold(Conn *c) {
        int n = snprintf(c->head, sizeof c->head,
                         "HTTP/1.1 200 OK\r\n"
                         "Content-Type: application/vnd.amazon.eventstream\r\n"
                         "Transfer-Encoding: chunked\r\n"
                         "x-amzn-RequestId: 00000000-0000-4000-8000-000000000000\r\n"
                         "\r\n");
        queue(c, c->head, (size_t) n);
        queue(c, hold_first.data, hold_first.size);
        c->state = CONN_HELD;
        c->held_next = held_head;
        if (held_head)
                held_head->held_prev = c;
        held_head = c;
        n_held++;
}

static void dump_body(const uint8_t *body, size_t size) {
        if (!arg_dump_dir || n_dumped >= MAX_DUMPS)
                return;
        char path[4096];
        snprintf(path, sizeof path, "%s/request-%u.json", arg_dump_dir, ++n_dumped);
        FILE *f = fopen(path, "we");
        if (!f)
                die("fopen dump");
        if (fwrite(body, 1, size, f) != size || fclose(f) != 0)
                die("write dump");
}

static unsigned release_all(void) {
        unsigned n = 0;
        while (held_head) {
                Conn *c = held_head;
                held_unlink(c);
                c->state = CONN_WRITING;
                queue(c, hold_rest.data, hold_rest.size);
                conn_update_events(c);
                n++;
        }
        return n;
}

static void handle_request(Conn *c, const char *method, const char *path, const uint8_t *body, size_t size) {
        n_requests++;
        if (strcmp(method, "POST") == 0 && strcmp(path, CHAT_PATH) == 0) {
                dump_body(body, size);
                if (memmem(body, size, "bench-mode:large", 16))
                        respond_static(c, 200, "application/vnd.amazon.eventstream", &large_answer);
                else if (memmem(body, size, "bench-mode:hold", 15))
                        respond_hold(c);
                else
                        respond_static(c, 200, "application/vnd.amazon.eventstream", &short_answer);
        } else if (strcmp(method, "POST") == 0 && strcmp(path, "/release") == 0) {
                char json[64];
                unsigned n = release_all();
                snprintf(json, sizeof json, "{\"released\":%u}", n);
                respond_json(c, json);
        } else if (strcmp(method, "GET") == 0 && strcmp(path, "/stats") == 0) {
                char json[128];
                snprintf(json, sizeof json, "{\"requests\":%llu,\"held\":%u,\"open\":%u}",
                         (unsigned long long) n_requests, n_held, n_open);
                respond_json(c, json);
        } else if (strcmp(method, "POST") == 0 && strcmp(path, "/quit") == 0) {
                arg_quit = true;
                respond_json(c, "{}");
        } else {
                static const Buffer nf = { .data = (uint8_t *) "not found\n", .size = 10 };
                respond_static(c, 404, "text/plain", &nf);
        }
}

/* Finds a header's value in the header block (which starts after the request line). */
static const char *header_value(const char *headers, const char *name, size_t *ret_len) {
        size_t nl = strlen(name);
        for (const char *p = headers; p && *p;) {
                const char *eol = strstr(p, "\r\n");
                if (!eol || eol == p)
                        break;
                if ((size_t) (eol - p) > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        while (*v == ' ' || *v == '\t')
                                v++;
                        *ret_len = (size_t) (eol - v);
                        return v;
                }
                p = eol + 2;
        }
        return NULL;
}

/* Parses as many complete requests as the buffer holds; stops at the first that gets a response queued
 * (responses go out in order, one at a time). Returns -1 to close the connection. */
static int conn_process(Conn *c) {
        while (c->state == CONN_READING && c->in.size > 0) {
                uint8_t *end = memmem(c->in.data, c->in.size, "\r\n\r\n", 4);
                if (!end)
                        return c->in.size > MAX_HEADER_BYTES ? -1 : 0;
                size_t head_len = (size_t) (end - c->in.data) + 4;
                char *head = malloc(head_len + 1);
                if (!head)
                        die("malloc");
                memcpy(head, c->in.data, head_len);
                head[head_len] = 0;

                char method[16], path[256];
                if (sscanf(head, "%15s %255s", method, path) != 2) {
                        free(head);
                        return -1;
                }
                const char *headers = strstr(head, "\r\n") + 2;
                size_t len = 0, body_len = 0;
                const char *v = header_value(headers, "Content-Length", &len);
                if (v)
                        body_len = strtoull(v, NULL, 10);
                if (header_value(headers, "Transfer-Encoding", &len)) {
                        free(head); /* not needed by any client of ours */
                        return -1;
                }
                if (body_len > MAX_BODY_BYTES) {
                        free(head);
                        return -1;
                }
                v = header_value(headers, "Connection", &len);
                bool close_req = v && len == 5 && strncasecmp(v, "close", 5) == 0;
                v = header_value(headers, "Expect", &len);
                bool expect = v && len == 12 && strncasecmp(v, "100-continue", 12) == 0;
                free(head);

                if (c->in.size < head_len + body_len) {
                        if (expect && !c->continued) {
                                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                                (void) !write(c->fd, cont, sizeof cont - 1);
                                c->continued = true;
                        }
                        return 0;
                }
                c->close_after = close_req;
                c->continued = false;
                handle_request(c, method, path, c->in.data + head_len, body_len);
                buffer_consume(&c->in, head_len + body_len);
        }
        return 0;
}

/* Writes what is queued. Returns -1 on a fatal error, else 0. */
static int conn_flush(Conn *c) {
        while (c->n_seg > 0) {
                ssize_t n = writev(c->fd, c->seg, (int) c->n_seg);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -1;
                }
                size_t left = (size_t) n;
                unsigned i = 0;
                while (i < c->n_seg && left >= c->seg[i].iov_len)
                        left -= c->seg[i++].iov_len;
                if (i < c->n_seg) {
                        c->seg[i].iov_base = (uint8_t *) c->seg[i].iov_base + left;
                        c->seg[i].iov_len -= left;
                }
                memmove(c->seg, c->seg + i, (c->n_seg - i) * sizeof c->seg[0]);
                c->n_seg -= i;
        }
        if (c->n_seg == 0 && c->state == CONN_WRITING) {
                if (c->close_after)
                        return -1;
                c->state = CONN_READING;
        }
        return 0;
}

/* Writes, and parses the next request whenever the previous response is out, until it needs more input
 * or the socket is full. */
static int conn_serve(Conn *c) {
        for (;;) {
                if (conn_flush(c) < 0)
                        return -1;
                if (c->state != CONN_READING || c->in.size == 0)
                        return 0;
                if (conn_process(c) < 0)
                        return -1;
                if (c->state == CONN_READING)
                        return 0; /* an incomplete request: wait for more */
        }
}

static int conn_on_readable(Conn *c) {
        for (;;) {
                uint8_t buf[65536];
                ssize_t n = read(c->fd, buf, sizeof buf);
                if (n == 0)
                        return -1;
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                break;
                        return -1;
                }
                buffer_append(&c->in, buf, (size_t) n);
                if ((size_t) n < sizeof buf)
                        break;
        }
        return 0;
}

static void accept_all(int lfd) {
        for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                fprintf(stderr, "bench-fake-kiro: accept: %s\n", strerror(errno));
                        return;
                }
                int one = 1;
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                Conn *c = calloc(1, sizeof *c);
                if (!c)
                        die("calloc");
                c->fd = fd;
                struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };
                if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                        die("epoll_ctl add");
                n_open++;
        }
}

static void help(void) {
        printf("bench-fake-kiro [--listen ADDR:PORT] [--ready-file F] [--dump-dir D]\n"
               "                [--large-bytes N] [--chunk-bytes N]\n\n"
               "A fake Kiro upstream for the benchmarks (see the comment at the top of the source).\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "listen", required_argument, NULL, 'l' },
                { "ready-file", required_argument, NULL, 'r' },
                { "dump-dir", required_argument, NULL, 'd' },
                { "large-bytes", required_argument, NULL, 'L' },
                { "chunk-bytes", required_argument, NULL, 'c' },
                {}
        };
        const char *listen_addr = "127.0.0.1", *ready_file = NULL;
        unsigned port = 0;
        size_t large_bytes = 1024 * 1024, chunk_bytes = 1000;
        int opt;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'l': {
                        static char addr[64];
                        const char *colon = strrchr(optarg, ':');
                        if (!colon || (size_t) (colon - optarg) >= sizeof addr) {
                                fprintf(stderr, "bench-fake-kiro: --listen wants ADDR:PORT\n");
                                return EXIT_FAILURE;
                        }
                        memcpy(addr, optarg, (size_t) (colon - optarg));
                        addr[colon - optarg] = 0;
                        listen_addr = addr;
                        port = (unsigned) strtoul(colon + 1, NULL, 10);
                        break;
                }
                case 'r':
                        ready_file = optarg;
                        break;
                case 'd':
                        arg_dump_dir = optarg;
                        break;
                case 'L':
                        large_bytes = strtoull(optarg, NULL, 10);
                        break;
                case 'c':
                        chunk_bytes = strtoull(optarg, NULL, 10);
                        if (chunk_bytes == 0 || chunk_bytes > 60000) {
                                fprintf(stderr, "bench-fake-kiro: --chunk-bytes must be 1..60000\n");
                                return EXIT_FAILURE;
                        }
                        break;
                default:
                        return EXIT_FAILURE;
                }

        (void) signal(SIGPIPE, SIG_IGN);
        build_answers(large_bytes, chunk_bytes);

        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                die("socket");
        int one = 1;
        (void) setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t) port) };
        if (inet_pton(AF_INET, listen_addr, &sa.sin_addr) != 1) {
                fprintf(stderr, "bench-fake-kiro: bad address '%s'\n", listen_addr);
                return EXIT_FAILURE;
        }
        if (bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0)
                die("bind");
        if (listen(lfd, 4096) < 0)
                die("listen");
        socklen_t sl = sizeof sa;
        if (getsockname(lfd, (struct sockaddr *) &sa, &sl) < 0)
                die("getsockname");

        epfd = epoll_create1(EPOLL_CLOEXEC);
        if (epfd < 0)
                die("epoll_create1");
        struct epoll_event lev = { .events = EPOLLIN, .data.ptr = NULL };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0)
                die("epoll_ctl");

        if (ready_file) {
                char tmp[4096];
                snprintf(tmp, sizeof tmp, "%s.tmp", ready_file);
                FILE *f = fopen(tmp, "we");
                if (!f || fprintf(f, "%u\n", ntohs(sa.sin_port)) < 0 || fclose(f) != 0 || rename(tmp, ready_file) < 0)
                        die("ready file");
        }
        fprintf(stderr, "bench-fake-kiro: listening on %s:%u; short answer %zu bytes, large answer %zu bytes "
                "(%zu text bytes in frames of %zu)\n", listen_addr, ntohs(sa.sin_port), short_answer.size,
                large_answer.size, large_bytes, chunk_bytes);

        while (!arg_quit) {
                struct epoll_event evs[256];
                int n = epoll_wait(epfd, evs, 256, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die("epoll_wait");
                }
                for (int i = 0; i < n; i++) {
                        Conn *c = evs[i].data.ptr;
                        if (!c) {
                                accept_all(lfd);
                                continue;
                        }
                        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                                if (conn_on_readable(c) < 0 || (evs[i].events & (EPOLLHUP | EPOLLERR))) {
                                        conn_free(c);
                                        continue;
                                }
                        }
                        if (conn_serve(c) < 0) {
                                conn_free(c);
                                continue;
                        }
                        conn_update_events(c);
                }
        }
        return EXIT_SUCCESS;
}
