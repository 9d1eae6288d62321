/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One exchange (HTTP request → front end → chat → back end → renderer) with the client hanging up at every
 * step, for each front end, under ASan: a real HTTP server on this process's loop, the real front ends and
 * chat, and a scripted back end in place of Kiro. The back end's queued events are delivered from the
 * post-dispatch hook before the HTTP server is flushed, in the order kiro-proxyd.c uses (upstream work
 * first), which is the order in which a chat once freed a request the HTTP layer still pointed at. */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "api/api-openai.h"
#include "api/api-responses.h"
#include "chat/chat.h"
#include "http/http.h"
#include "log.h"
#include "tests.h"
#include "time-util.h"

#define ASSERT_ERRNO_OK(e) ASSERT_TRUE((e) >= 0)
#define FOREACH_FRONT_END(fe) for (const FrontEnd *fe = front_ends; fe < front_ends + ELEMENTSOF(front_ends); fe++)

/* ── The scripted back end ───────────────────────────────────────────────────────────────────────── */

typedef struct FakeCall {
        const ChatCallHandler *h;
        void *userdata;
} FakeCall;

typedef struct Pending {
        ChatEventType type;
        char *text;
} Pending;

static struct {
        FakeCall *call;
        unsigned n_started, n_cancelled, n_finished, n_paused;
        bool paused;
        Pending queue[64];
        size_t n_queue;
        ChatUsage usage;
} B;

static int fake_call_start(void *backend, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                           ChatCall **ret_call) {
        FakeCall *c = calloc(1, sizeof(FakeCall));
        ASSERT_NOT_NULL(c);
        ASSERT_NULL(B.call);
        c->h = h;
        c->userdata = userdata;
        B.call = c;
        B.n_started++;
        *ret_call = (ChatCall *) c;
        return 0;
}

static void fake_call_finish(void) {
        free(B.call);
        B.call = NULL;
}

static void fake_call_cancel(ChatCall *call) {
        if (!call)
                return;
        ASSERT_TRUE((FakeCall *) call == B.call);
        B.n_cancelled++;
        fake_call_finish();
}

static void fake_call_pause(ChatCall *call, bool pause) {
        ASSERT_TRUE((FakeCall *) call == B.call);
        if (pause && !B.paused)
                B.n_paused++;
        B.paused = pause;
}

static const ChatUsage *fake_call_usage(ChatCall *call) {
        return &B.usage;
}

static const ChatBackendOps fake_ops = {
        .name = "fake",
        .call_start = fake_call_start,
        .call_cancel = fake_call_cancel,
        .call_pause = fake_call_pause,
        .call_usage = fake_call_usage,
};

/* Queued events wait for the next post-dispatch hook: the one at the end of whatever the loop dispatches
 * next (for the hang-up cases: the dispatch that sees the hang-up). */
static void queue_event_quiet(ChatEventType type, const char *text) {
        ASSERT_TRUE(B.n_queue < ELEMENTSOF(B.queue));
        B.queue[B.n_queue++] = (Pending) { .type = type, .text = text ? strdup(text) : NULL };
}

static void on_post(void *userdata);
static int on_upstream_defer(sd_event_source *s, void *userdata) {
        on_post(NULL);
        return 0;
}

/* As an upstream socket turning readable: a dispatch of its own, with the post-dispatch hook after it. */
static void queue_event(ChatEventType type, const char *text);

/* Delivers the queued events while the call lives; what is left when it ends is dropped. */
static bool backend_flush(void) {
        bool any = false;
        size_t i;

        for (i = 0; i < B.n_queue && B.call; i++) {
                Pending *p = B.queue + i;
                ChatEvent ev = { .type = p->type, .text = p->text ?: "", .size = p->text ? strlen(p->text) : 0,
                                 .usage = &B.usage, .stop_reason = CHAT_STOP_REASON_END_TURN };
                FakeCall *c = B.call;
                any = true;
                int r = c->h->on_event((ChatCall *) c, &ev, c->userdata);
                /* A negative return ends the call, and so does END. */
                if (r < 0 || p->type == CHAT_EVENT_END) {
                        B.n_finished++;
                        fake_call_finish();
                }
        }
        for (size_t j = 0; j < B.n_queue; j++)
                free(B.queue[j].text);
        B.n_queue = 0;
        return any;
}

/* ── Server and client ──────────────────────────────────────────────────────────────────────────── */

static struct {
        sd_event *event;
        HttpServer *server;
        ChatContext ctx;
        int port;
        int client;
} T;

static void queue_event(ChatEventType type, const char *text) {
        queue_event_quiet(type, text);
        ASSERT_OK(sd_event_add_defer(T.event, NULL, on_upstream_defer, NULL));
}

static int on_request(HttpRequest *r, void *userdata) {
        const char *path = http_request_path(r);
        static const ApiLimits limits = API_LIMITS_DEFAULT;
        if (streq(path, "/v1/chat/completions"))
                return openai_handle_chat(&T.ctx, r, &limits);
        if (streq(path, "/v1/messages"))
                return anthropic_handle_messages(&T.ctx, r, &limits);
        if (streq(path, "/v1/responses"))
                return responses_handle(&T.ctx, r, &limits, NULL);
        return http_request_respond_error(r, 404, "No such route.");
}

static int render_error(HttpRequest *r, unsigned status, const char *message, char **ret_body, size_t *ret_size,
                        const char **ret_content_type, void *userdata) {
        Failure f = { .kind = api_error_kind_from_status(status), .message = (char *) message };
        *ret_content_type = "application/json";
        return api_error_render(startswith(http_request_path(r), "/v1/messages") ? API_SHAPE_ANTHROPIC
                                                                                  : API_SHAPE_OPENAI,
                                &f, ret_body, ret_size);
}

/* As kiro-proxyd.c's on_post: the back end's pending work first, then the HTTP server's. */
static void on_post(void *userdata) {
        static bool in_post = false;
        if (in_post)
                return;
        in_post = true;
        for (unsigned i = 0; i < 4; i++) {
                bool a = backend_flush();
                bool b = http_server_flush(T.server);
                if (!a && !b)
                        break;
        }
        in_post = false;
}

static void server_start(void) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        int fd;

        memset(&B, 0, sizeof B);
        ASSERT_OK(sd_event_new(&T.event));
        ASSERT_OK(http_server_new(T.event, NULL, on_request, NULL, &T.server));
        http_server_set_error_renderer(T.server, render_error, NULL);
        http_server_set_post(T.server, on_post, NULL);
        T.ctx = (ChatContext) { .ping_interval = USEC_INFINITY };
        T.ctx.backends[MODEL_PROVIDER_KIRO] = (ChatBackend) { .ops = &fake_ops };

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        ASSERT_TRUE(fd >= 0);
        ASSERT_ERRNO_OK(bind(fd, (struct sockaddr *) &sa, sizeof sa));
        ASSERT_ERRNO_OK(listen(fd, 16));
        ASSERT_ERRNO_OK(getsockname(fd, (struct sockaddr *) &sa, &sl));
        T.port = ntohs(sa.sin_port);
        ASSERT_OK(http_server_add_listener(T.server, fd, "test", NULL));
}

static void run_once(void) {
        ASSERT_OK(sd_event_run(T.event, 10 * USEC_PER_MSEC));
}

#define RUN_UNTIL(cond)                                                                         \
        do {                                                                                    \
                usec_t _deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;                     \
                while (!(cond)) {                                                               \
                        ASSERT_TRUE(now(CLOCK_MONOTONIC) < _deadline);                          \
                        run_once();                                                             \
                }                                                                               \
        } while (0)

static void run_for(usec_t usec) {
        usec_t end = now(CLOCK_MONOTONIC) + usec;
        while (now(CLOCK_MONOTONIC) < end)
                run_once();
}

static void server_stop(void) {
        for (size_t j = 0; j < B.n_queue; j++)
                free(B.queue[j].text);
        B.n_queue = 0;
        T.server = http_server_free(T.server);
        T.event = sd_event_unref(T.event);
        /* Whatever the chat still held is gone with the server: no call may be left behind. */
        ASSERT_NULL(B.call);
}

static void client_send(const char *path, const char *body, int rcvbuf) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                  .sin_port = htons(T.port) };
        char head[512];

        T.client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(T.client >= 0);
        if (rcvbuf > 0)
                ASSERT_ERRNO_OK(setsockopt(T.client, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf));
        ASSERT_ERRNO_OK(connect(T.client, (struct sockaddr *) &sa, sizeof sa));
        int n = snprintf(head, sizeof head,
                         "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         "anthropic-version: 2023-06-01\r\nContent-Length: %zu\r\n\r\n",
                         path, strlen(body));
        ASSERT_TRUE(write(T.client, head, n) == n);
        ASSERT_TRUE(write(T.client, body, strlen(body)) == (ssize_t) strlen(body));
        /* The server parses the request and starts the call. */
        RUN_UNTIL(B.n_started == 1);
}

/* The client goes away: a reset, so that the server sees it even with unread data pending. */
static void client_hang_up(void) {
        struct linger l = { .l_onoff = 1, .l_linger = 0 };
        (void) setsockopt(T.client, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        T.client = safe_close(T.client);
}

/* Reads the whole response of a connection that the server closes or finishes. */
static char *client_read_all(void) {
        size_t n = 0, a = 65536;
        char *buf = malloc(a);
        ASSERT_NOT_NULL(buf);
        ASSERT_ERRNO_OK(fcntl(T.client, F_SETFL, O_NONBLOCK));
        usec_t deadline = now(CLOCK_MONOTONIC) + 10 * USEC_PER_SEC;
        for (;;) {
                ASSERT_TRUE(now(CLOCK_MONOTONIC) < deadline);
                ssize_t k = read(T.client, buf + n, a - 1 - n);
                if (k == 0)
                        break;
                if (k < 0) {
                        ASSERT_TRUE(errno == EAGAIN);
                        run_once();
                        continue;
                }
                n += (size_t) k;
                /* A complete response ends a keep-alive exchange without EOF. */
                buf[n] = 0;
                if (strstr(buf, "0\r\n\r\n") || (strstr(buf, "\r\n\r\n{") && strrchr(buf, '}') == buf + n - 1))
                        break;
                if (n + 1 == a) {
                        a *= 2;
                        buf = realloc(buf, a);
                        ASSERT_NOT_NULL(buf);
                }
        }
        buf[n] = 0;
        T.client = safe_close(T.client);
        return buf;
}

/* After a hang-up: every object of the exchange is gone, and the call ended exactly once. */
static void expect_exchange_gone(void) {
        RUN_UNTIL(http_server_n_requests(T.server) == 0 && http_server_n_connections(T.server) == 0);
        ASSERT_NULL(B.call);
        ASSERT_EQ(B.n_started, 1U);
        ASSERT_EQ(B.n_cancelled + B.n_finished, 1U);
}

/* ── The front ends under test ──────────────────────────────────────────────────────────────────── */

typedef struct FrontEnd {
        const char *name;
        const char *path;
        const char *body;               /* plain */
        const char *body_stop;          /* with the stop sequence "STOP" */
        const char *body_thinking;      /* with reasoning asked for */
        bool stream;
} FrontEnd;

#define OPENAI_MSG "\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"
/* The Responses API has no stop sequences: its "stop" body is the plain one (nothing is held back). */
#define RESPONSES_MSG "\"model\":\"claude-sonnet-4.5\",\"input\":[{\"role\":\"user\",\"content\":\"Hi\"}]"
#define ANTHROPIC_MSG "\"model\":\"claude-sonnet-4.5\",\"max_tokens\":100,\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"

static const FrontEnd front_ends[] = {
        { "openai-stream", "/v1/chat/completions",
          "{" OPENAI_MSG ",\"stream\":true}",
          "{" OPENAI_MSG ",\"stream\":true,\"stop\":[\"STOP\"]}",
          "{" OPENAI_MSG ",\"stream\":true,\"reasoning_effort\":\"high\"}", true },
        { "openai", "/v1/chat/completions",
          "{" OPENAI_MSG "}",
          "{" OPENAI_MSG ",\"stop\":[\"STOP\"]}",
          "{" OPENAI_MSG ",\"reasoning_effort\":\"high\"}", false },
        { "anthropic-stream", "/v1/messages",
          "{" ANTHROPIC_MSG ",\"stream\":true}",
          "{" ANTHROPIC_MSG ",\"stream\":true,\"stop_sequences\":[\"STOP\"]}",
          "{" ANTHROPIC_MSG ",\"stream\":true,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}", true },
        { "anthropic", "/v1/messages",
          "{" ANTHROPIC_MSG "}",
          "{" ANTHROPIC_MSG ",\"stop_sequences\":[\"STOP\"]}",
          "{" ANTHROPIC_MSG ",\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}}", false },
        { "responses-stream", "/v1/responses",
          "{" RESPONSES_MSG ",\"stream\":true}",
          "{" RESPONSES_MSG ",\"stream\":true}",
          "{" RESPONSES_MSG ",\"stream\":true,\"reasoning\":{\"effort\":\"high\"}}", true },
        { "responses", "/v1/responses",
          "{" RESPONSES_MSG "}",
          "{" RESPONSES_MSG "}",
          "{" RESPONSES_MSG ",\"reasoning\":{\"effort\":\"high\"}}", false },
};

/* ── The matrix ─────────────────────────────────────────────────────────────────────────────────── */

/* The control: without a hang-up the client gets the whole answer, so the matrix below exercises real
 * exchanges rather than requests refused early. */
TEST(complete_answer_without_hang_up) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body, 0);
                queue_event(CHAT_EVENT_TEXT, "Hello ");
                queue_event(CHAT_EVENT_TEXT, "world");
                queue_event(CHAT_EVENT_END, NULL);
                _cleanup_free_ char *resp = client_read_all();
                ASSERT_TRUE(startswith(resp, "HTTP/1.1 200"));
                if (fe->stream)
                        ASSERT_NOT_NULL(strstr(resp, "world"));
                else
                        ASSERT_NOT_NULL(strstr(resp, "Hello world"));
                expect_exchange_gone();
                ASSERT_EQ(B.n_finished, 1U);
                server_stop();
        }
}

TEST(hang_up_while_waiting_upstream) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body, 0);
                run_for(20 * USEC_PER_MSEC);
                client_hang_up();
                expect_exchange_gone();
                ASSERT_EQ(B.n_cancelled, 1U);
                server_stop();
        }
}

TEST(hang_up_between_events) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body, 0);
                queue_event(CHAT_EVENT_TEXT, "Hello ");
                run_for(20 * USEC_PER_MSEC);
                client_hang_up();
                /* Upstream goes on: these arrive in the same dispatch that sees the hang-up. */
                queue_event_quiet(CHAT_EVENT_TEXT, "world");
                expect_exchange_gone();
                server_stop();
        }
}

/* Held-back text (a possible stop-sequence start) cannot be written because the client has just gone, and
 * the answer ends in the same dispatch. */
TEST(hang_up_during_held_back_text) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body_stop, 0);
                queue_event(CHAT_EVENT_TEXT, "Hello ST");
                run_for(20 * USEC_PER_MSEC);
                client_hang_up();
                queue_event_quiet(CHAT_EVENT_END, NULL);
                expect_exchange_gone();
                server_stop();
        }
}

/* The same with a partial "<thinking>" tag held back by the splitter. */
TEST(hang_up_during_partial_thinking_tag) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body_thinking, 0);
                queue_event(CHAT_EVENT_TEXT, "<thin");
                run_for(20 * USEC_PER_MSEC);
                client_hang_up();
                queue_event_quiet(CHAT_EVENT_END, NULL);
                expect_exchange_gone();
                server_stop();
        }
}

TEST(hang_up_at_end) {
        FOREACH_FRONT_END(fe) {
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body, 0);
                client_hang_up();
                queue_event_quiet(CHAT_EVENT_TEXT, "Hello");
                queue_event_quiet(CHAT_EVENT_END, NULL);
                expect_exchange_gone();
                server_stop();
        }
}

/* A client that reads nothing: the queue fills, the back end is paused, then the client goes. */
TEST(hang_up_during_drain_pause) {
        static char chunk[64 * 1024 + 1];
        memset(chunk, 'x', sizeof chunk - 1);

        FOREACH_FRONT_END(fe) {
                if (!fe->stream)
                        continue;
                log_info("front end %s", fe->name);
                server_start();
                client_send(fe->path, fe->body, 4096);
                for (unsigned i = 0; i < 200 && !B.paused; i++) {
                        queue_event(CHAT_EVENT_TEXT, chunk);
                        run_for(2 * USEC_PER_MSEC);
                }
                ASSERT_TRUE(B.paused);
                client_hang_up();
                expect_exchange_gone();
                ASSERT_EQ(B.n_cancelled, 1U);
                server_stop();
        }
}

static void __attribute__((constructor)) init(void) {
        log_set_max_level(getenv("TEST_DEBUG") ? LOG_DEBUG : LOG_INFO);
        (void) signal(SIGPIPE, SIG_IGN);
}
