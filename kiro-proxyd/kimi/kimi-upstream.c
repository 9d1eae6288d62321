/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kimi back end: streamed chat completions over libcurl multi, a token refresh and retry on 401 before
 * the first content byte, nothing retried after it. */
#include <assert.h>
#include <curl/curl.h>
#include <strings.h>

#include "log.h"
#include "chat/chat-metrics.h"
#include "kimi/kimi-request.h"
#include "kimi/kimi-stream.h"
#include "kimi/kimi-upstream.h"


struct KimiUpstream {
        sd_event *event;
        CurlGlue *glue;
        TokenCache *tokens;
        CredentialSelector *selector;   /* may be NULL: kiro-authd picks the Kimi credential */
        const KimiConfig *config;
};

/* A request tries at most this many times (a refreshed token, then other credentials). */
#define KIMI_MAX_ATTEMPTS 3U

struct KimiCall {
        KimiUpstream *upstream;
        const Conversation *conv;
        ChatCallHandler handler;
        void *userdata;

        TokenRequest *token_request;
        Token *token;
        char *body;
        size_t body_size;
        KimiStream *stream;
        CURL *curl;
        struct curl_slist *headers;     /* holds the bearer token: wiped when the attempt ends */
        sd_event_source *timer;

        long status;
        char *error_body;
        size_t error_size;
        unsigned attempt;
        char *avoid_id;         /* the next attempt moves away from this credential */
        char *pinned_id;        /* the next attempt stays on this credential (after a forced refresh) */
        bool unauthorized_retried;
        ChatCommitGate gate;    /* committed once the first content event went to the handler */
        bool paused;
        bool in_curl;
        bool cancelled;
};

int kimi_upstream_new(sd_event *e, CurlGlue *glue, TokenCache *tokens, CredentialSelector *selector,
                      const KimiConfig *config, KimiUpstream **ret) {
        KimiUpstream *u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        *u = (KimiUpstream) { .event = sd_event_ref(e), .glue = glue, .tokens = tokens, .selector = selector,
                              .config = config };
        *ret = u;
        return 0;
}

KimiUpstream *kimi_upstream_free(KimiUpstream *u) {
        if (!u)
                return NULL;
        sd_event_unref(u->event);
        free(u);
        return NULL;
}

int kimi_chat_url(const char *base, char **ret) {
        _cleanup_free_ char *url = NULL;
        int r;

        if (isempty(base))
                return -EINVAL;
        r = url_check_scheme(base);
        if (r < 0)
                return r;
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
                n--;
        if (asprintf(&url, "%.*s/chat/completions", (int) n, base) < 0)
                return -ENOMEM;
        /* Parsed once by libcurl, so what goes out is a URL, not pasted text. */
        CURLU *h = curl_url();
        if (!h)
                return -ENOMEM;
        CURLUcode uc = curl_url_set(h, CURLUPART_URL, url, 0);
        curl_url_cleanup(h);
        if (uc != CURLUE_OK)
                return -EINVAL;
        *ret = TAKE_PTR(url);
        return 0;
}

static void wipe_headers(KimiCall *call) {
        for (struct curl_slist *l = call->headers; l; l = l->next)
                explicit_bzero(l->data, strlen(l->data));
        curl_slist_free_all(call->headers);
        call->headers = NULL;
}

static void call_reset_attempt(KimiCall *call) {
        token_request_cancel(call->token_request);
        call->token_request = NULL;
        if (call->curl) {
                curl_glue_remove(call->upstream->glue, call->curl);
                curl_easy_cleanup(call->curl);
                call->curl = NULL;
        }
        wipe_headers(call);
        call->timer = sd_event_source_disable_unref(call->timer);
        call->stream = kimi_stream_free(call->stream);
        call->body = erase_and_free_sized(call->body, call->body_size);
        call->body_size = 0;
        call->token = token_unref(call->token);
        call->error_body = erase_and_free_sized(call->error_body, call->error_size);
        call->error_size = 0;
        call->status = 0;
        chat_commit_gate_reset(&call->gate);
}

static void call_free(KimiCall *call) {
        call_reset_attempt(call);
        free(call->avoid_id);
        free(call->pinned_id);
        free(call);
}

static void call_cancel(KimiCall *call) {
        if (!call)
                return;
        if (call->in_curl) {
                call->cancelled = true;
                return;
        }
        call_free(call);
}

static void call_fail(KimiCall *call, FailureKind kind, usec_t retry_after, const char *fmt, ...) _printf_(4, 5);
static void call_fail(KimiCall *call, FailureKind kind, usec_t retry_after, const char *fmt, ...) {
        Failure err = { .kind = kind, .retry_after = retry_after };
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&err.message, fmt, ap) < 0)
                err.message = NULL;
        va_end(ap);
        call->handler.on_fail((ChatCall *) call, &err, call->userdata);
        call_free(call);
        failure_done(&err);
}

static int attempt_begin(KimiCall *call);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        KimiCall *call = userdata;
        call->timer = sd_event_source_disable_unref(call->timer);
        (void) attempt_begin(call);
        return 0;
}

static void call_retry(KimiCall *call) {
        call_reset_attempt(call);
        int r = sd_event_add_time_relative(call->upstream->event, &call->timer, CLOCK_MONOTONIC, 0, USEC_PER_MSEC,
                                           on_retry_timer, call);
        if (r < 0)
                call_fail(call, FAILURE_INTERNAL, 0, "Cannot schedule a retry: %s.", strerror(-r));
}

static void report(KimiCall *call, const char *kind) {
        if (!call->token)
                return;
        /* Locally first, so that the retry of this very request already moves to another credential. */
        credential_selector_note(call->upstream->selector, call->token->credential_id, kind, 0);
        token_cache_report(call->upstream->tokens, call->token->credential_id, kind, 0);
}

/* Another usable Kimi credential can take this request at once: the next attempt avoids this one. */
static bool fail_over(KimiCall *call) {
        if (!call->token || call->attempt >= KIMI_MAX_ATTEMPTS ||
            !credential_selector_has_other(call->upstream->selector, "kimi", call->token->credential_id))
                return false;
        if (free_and_strdup(&call->avoid_id, call->token->credential_id) < 0)
                return false;
        chat_metrics_credential_counts(call->token->credential_id, 0, 0, 1);
        return true;
}

/* Before anything reached the client: a 401 is retried once with a fresh token; the rest fails with the
 * matching Failure kind. */
static void call_decide(KimiCall *call, ChatErrorKind kind, const char *message) {
        _cleanup_free_ char *msg = strdup(strna(message));

        log_debug("Kimi attempt %u failed: %s (%s).", call->attempt, chat_error_kind_to_string(kind), strna(msg));
        chat_metrics_upstream(chat_metrics.upstream_failures, "kimi", chat_error_kind_to_string(kind));
        chat_metrics_credential_counts(call->token ? call->token->credential_id : NULL, 0, 1, 0);
        switch (kind) {
        case CHAT_ERROR_UNAUTHORIZED:
                report(call, "unauthorized");
                if (!call->unauthorized_retried) {
                        /* Once on the same credential with the refreshed token. */
                        call->unauthorized_retried = true;
                        if (call->token && free_and_strdup(&call->pinned_id, call->token->credential_id) < 0)
                                return call_fail(call, FAILURE_INTERNAL, 0, "Out of memory.");
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kimi", chat_error_kind_to_string(kind));
                        return call_retry(call);
                }
                if (fail_over(call)) {
                        chat_metrics_upstream(chat_metrics.upstream_failovers, "kimi", chat_error_kind_to_string(kind));
                        return call_retry(call);
                }
                return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                 "Kimi refused the access token even after a refresh (%s); see 'kiroctl status' or run 'kiroctl login kimi'.",
                                 strna(msg));
        case CHAT_ERROR_QUOTA:
                report(call, "quota-exhausted");
                if (fail_over(call)) {
                        chat_metrics_upstream(chat_metrics.upstream_failovers, "kimi", chat_error_kind_to_string(kind));
                        return call_retry(call);
                }
                return call_fail(call, FAILURE_RATE_LIMIT, 0, "The Kimi quota is exhausted: %s", strna(msg));
        case CHAT_ERROR_THROTTLED:
                report(call, "throttled");
                if (fail_over(call)) {
                        chat_metrics_upstream(chat_metrics.upstream_failovers, "kimi", chat_error_kind_to_string(kind));
                        return call_retry(call);
                }
                return call_fail(call, FAILURE_RATE_LIMIT, USEC_PER_SEC, "Kimi is rate limiting: %s", strna(msg));
        case CHAT_ERROR_ACCESS_DENIED:
                return call_fail(call, FAILURE_PERMISSION, 0, "Kimi denied access: %s", strna(msg));
        case CHAT_ERROR_VALIDATION:
                return call_fail(call, FAILURE_INVALID_REQUEST, 0, "Kimi rejected the request: %s", strna(msg));
        case CHAT_ERROR_OVERLOADED:
                return call_fail(call, FAILURE_OVERLOADED, 0, "The Kimi model is overloaded: %s", strna(msg));
        default:
                if (kind == CHAT_ERROR_SERVER)
                        report(call, "server-error");
                return call_fail(call, FAILURE_BAD_GATEWAY, 0, "Kimi failed: %s", strna(msg));
        }
}

static int on_first_token_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        KimiCall *call = userdata;
        call->timer = sd_event_source_disable_unref(call->timer);
        call_fail(call, FAILURE_TIMEOUT, 0, "Kimi sent no answer within %llus.",
                  (unsigned long long) (call->upstream->config->first_token_timeout / USEC_PER_SEC));
        return 0;
}

/* A success on a credential that was throttled ends its cooldown (the others cost nothing). */
static void report_success(KimiCall *call) {
        if (call->token && credential_selector_throttled(call->upstream->selector, call->token->credential_id))
                report(call, "ok");
}

static int on_kimi_event(const ChatEvent *ev, void *userdata) {
        KimiCall *call = userdata;

        if (call->cancelled)
                return -ECANCELED;
        switch (chat_commit_gate(&call->gate, ev)) {
        case CHAT_GATE_HOLD:
                return 0;
        case CHAT_GATE_COMMIT:
                call->timer = sd_event_source_disable_unref(call->timer);
                report_success(call);
                break;
        case CHAT_GATE_PASS:
                break;
        }
        int r = call->handler.on_event((ChatCall *) call, ev, call->userdata);
        if (r < 0)
                call->cancelled = true;
        return r;
}

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
        KimiCall *call = userdata;
        size_t len = size * n;
        int r;

        if (call->cancelled)
                return 0;
        if (call->paused)
                return CURL_WRITEFUNC_PAUSE;
        if (call->status == 0)
                (void) curl_easy_getinfo(call->curl, CURLINFO_RESPONSE_CODE, &call->status);
        if (call->status != 200) {
                return chat_error_body_append(&call->error_body, &call->error_size, ptr, len) < 0 ? 0 : len;
        }
        call->in_curl = true;
        r = kimi_stream_feed(call->stream, ptr, len);
        call->in_curl = false;
        if (r < 0 || call->cancelled)
                return 0;
        return len;
}

static void on_done(CurlGlue *g, CURL *curl, CURLcode result, void *userdata) {
        KimiCall *call = userdata;

        call->timer = sd_event_source_disable_unref(call->timer);
        if (call->cancelled)
                return call_free(call);
        if (call->status == 0)
                (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &call->status);

        if (call->status == 200) {
                /* A broken transfer is a cut stream: kimi_stream_finish() reports it (ERROR, END error). */
                int r = kimi_stream_finish(call->stream);
                if (call->cancelled || call->gate.committed)
                        return call_free(call);
                if (call->gate.have_error) {
                        _cleanup_free_ char *m = strdup(strna(call->gate.error.message));
                        return call_decide(call, call->gate.error.kind, m);
                }
                if (result != CURLE_OK)
                        return call_decide(call, CHAT_ERROR_SERVER, curl_easy_strerror(result));
                ChatEvent end;
                if (r >= 0 && chat_commit_gate_take_end(&call->gate, &end)) {
                        /* A complete answer without content: pass END on. */
                        report_success(call);
                        (void) call->handler.on_event((ChatCall *) call, &end, call->userdata);
                        return call_free(call);
                }
                return call_decide(call, CHAT_ERROR_TRUNCATED, "the stream ended without an answer");
        }
        if (result != CURLE_OK && call->status == 0)
                return call_decide(call, CHAT_ERROR_SERVER, curl_easy_strerror(result));

        ChatError e = {};
        (void) kimi_error_parse(call->error_body, call->error_size, (int) call->status, &e);
        _cleanup_free_ char *m = NULL;
        if (asprintf(&m, "HTTP %ld: %s", call->status, strna(e.message)) < 0)
                m = NULL;
        ChatErrorKind kind = e.kind;
        chat_error_done(&e);
        call_decide(call, kind, m);
}

static int add_header(struct curl_slist **l, const char *name, const char *value) {
        _cleanup_free_ char *h = NULL;
        if (asprintf(&h, "%s: %s", name, value) < 0)
                return -ENOMEM;
        struct curl_slist *n = curl_slist_append(*l, h);
        explicit_bzero(h, strlen(h));
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int start_transfer(KimiCall *call) {
        KimiUpstream *u = call->upstream;
        const KimiConfig *cfg = u->config;
        _cleanup_free_ char *url = NULL, *err = NULL;
        int r;

        r = kimi_request_build(call->conv, &call->body, &call->body_size, &err);
        if (r < 0) {
                call_fail(call, r == -ENOMEM ? FAILURE_INTERNAL : FAILURE_INVALID_REQUEST, 0, "%s",
                          err ?: "Cannot build the Kimi request.");
                return 0;
        }
        r = kimi_stream_new(cfg->max_line, on_kimi_event, call, &call->stream);
        if (r < 0)
                return r;

        const char *base = cfg->api_base ?: call->token->api_base ?: KIMI_API_BASE_DEFAULT;
        r = kimi_chat_url(base, &url);
        if (r < 0) {
                call_fail(call, FAILURE_INTERNAL, 0,
                          "The Kimi API base '%s' is not usable (https only, or http to a loopback host).", base);
                return 0;
        }

        /* The list's copy of the bearer token is wiped with the list (wipe_headers()). */
        _cleanup_free_ char *auth = NULL;
        if (asprintf(&auth, "Bearer %s", call->token->access_token) < 0)
                return -ENOMEM;
        r = add_header(&call->headers, "Authorization", auth);
        explicit_bzero(auth, strlen(auth));
        if (r < 0)
                return r;
        if ((r = add_header(&call->headers, "Content-Type", "application/json")) < 0 ||
            (r = add_header(&call->headers, "Accept", "text/event-stream")) < 0 ||
            (r = add_header(&call->headers, "Expect", "")) < 0)
                return r;
        STRV_FOREACH(h, call->token->headers) {
                /* kiro-authd's "Name: value" lines (X-Msh-*); anything else, or a line break, is not sent. */
                if (strncasecmp(*h, "X-Msh-", 6) != 0 || strpbrk(*h, "\r\n"))
                        continue;
                struct curl_slist *n = curl_slist_append(call->headers, *h);
                if (!n)
                        return -ENOMEM;
                call->headers = n;
        }

        /* kimi-cli's User-Agent from kiro-authd; a line break would start another header. */
        const char *ua = call->token->user_agent;
        if (isempty(ua) || strpbrk(ua, "\r\n"))
                ua = KIMI_USER_AGENT_DEFAULT;

        call->curl = curl_easy_init();
        if (!call->curl)
                return -ENOMEM;
        r = curl_glue_setup_easy(call->curl, url, cfg->ca_file, USEC_INFINITY);
        if (r < 0)
                return r;
        if (curl_easy_setopt(call->curl, CURLOPT_POSTFIELDS, call->body) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->body_size) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_HTTPHEADER, call->headers) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_USERAGENT, ua) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_WRITEDATA, call) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_LOW_SPEED_LIMIT, 1L) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_LOW_SPEED_TIME, (long) (cfg->stall_timeout / USEC_PER_SEC)) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK)
                return -EIO;
        r = curl_glue_add_proxied(u->glue, call->curl, call->token->proxy, NULL, on_done, call);
        if (r < 0)
                return r;
        if (cfg->first_token_timeout != USEC_INFINITY && cfg->first_token_timeout > 0) {
                r = sd_event_add_time_relative(u->event, &call->timer, CLOCK_MONOTONIC, cfg->first_token_timeout, 0,
                                               on_first_token_timeout, call);
                if (r < 0)
                        return r;
        }
        log_debug("Kimi attempt %u to '%s' with credential '%s'.", call->attempt, url, call->token->credential_id);
        return 0;
}

static void on_token(Token *t, const sd_bus_error *error, void *userdata) {
        KimiCall *call = userdata;

        call->token_request = NULL;
        if (!t) {
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                           SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED))
                        return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                         "kiro-authd is not running, so no Kimi token is available.");
                return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                 "No usable Kimi credential (log in with 'kiroctl login kimi'): %s",
                                 strna(error ? error->message : NULL));
        }
        call->token = token_ref(t);
        int r = start_transfer(call);
        if (r < 0)
                call_fail(call, FAILURE_INTERNAL, 0, "Cannot start the Kimi request: %s.", strerror(-r));
}

static int attempt_begin(KimiCall *call) {
        Token *t = NULL;
        int r;

        call->attempt++;
        const char *id = NULL;
        if (call->pinned_id)
                id = call->pinned_id;
        else if (call->upstream->selector && credential_selector_has_provider(call->upstream->selector, "kimi")) {
                usec_t back_at = 0;
                r = credential_selector_pick(call->upstream->selector, "kimi", call->conv->affinity_key,
                                             call->avoid_id, &id, &back_at);
                if (r == -ENOKEY) {
                        usec_t n = now(CLOCK_REALTIME);
                        if (back_at > n)
                                call_fail(call, FAILURE_RATE_LIMIT, back_at - n,
                                          "Every Kimi credential has spent its quota or is cooling down; see 'kiroctl status'.");
                        else
                                call_fail(call, FAILURE_UNAVAILABLE, 0,
                                          "No usable Kimi credential (all disabled or needing a login); see 'kiroctl status'.");
                        return r;
                }
        }
        chat_metrics_upstream(chat_metrics.upstream_attempts, "kimi", NULL);
        r = token_cache_get(call->upstream->tokens, "kimi", id, on_token, call, &t, &call->token_request);
        free(call->pinned_id);
        call->pinned_id = NULL;
        if (r < 0) {
                call_fail(call, FAILURE_INTERNAL, 0, "Cannot ask kiro-authd for a token: %s.", strerror(-r));
                return r;
        }
        if (r > 0)
                on_token(t, NULL, call);
        return 0;
}

static int backend_call_start(void *backend, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                              ChatCall **ret_call) {
        KimiCall *call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        call->upstream = backend;
        call->conv = conv;
        call->handler = *h;
        call->userdata = userdata;
        *ret_call = (ChatCall *) call;
        (void) attempt_begin(call);
        return 0;
}

static void backend_call_cancel(ChatCall *call) {
        call_cancel((KimiCall *) call);
}

static void backend_call_pause(ChatCall *c, bool pause) {
        KimiCall *call = (KimiCall *) c;
        if (!call || !call->curl || call->paused == pause)
                return;
        call->paused = pause;
        if (!pause)
                (void) curl_glue_pause(call->upstream->glue, call->curl, false);
}

static const ChatUsage *backend_call_usage(ChatCall *c) {
        KimiCall *call = (KimiCall *) c;
        return call && call->stream ? kimi_stream_usage(call->stream) : NULL;
}

static void backend_call_info(ChatCall *c, const char **ret_credential, unsigned *ret_attempts) {
        KimiCall *call = (KimiCall *) c;
        *ret_credential = call->token ? call->token->credential_id : NULL;
        *ret_attempts = call->attempt;
}

const ChatBackendOps kimi_backend_ops = {
        .name = "kimi",
        .call_start = backend_call_start,
        .call_cancel = backend_call_cancel,
        .call_pause = backend_call_pause,
        .call_usage = backend_call_usage,
        .call_info = backend_call_info,
};
