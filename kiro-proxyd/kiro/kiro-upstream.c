/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kiro back end: generateAssistantResponse over libcurl multi, retries before the first content byte. */
#include <assert.h>
#include <strings.h>
#include <systemd/sd-id128.h>

#include "bus-names.h"
#include "escape.h"
#include "log.h"
#include "url-util.h"
#include "chat/chat-metrics.h"
#include "kiro/kiro-upstream.h"

#define KIRO_CHAT_PATH "/generateAssistantResponse"
/* Easy handles kept for reuse (curl_easy_reset, not init/cleanup per attempt): allocation and set-up of
 * a handle is a good part of the CPU per request. */
#define EASY_POOL_MAX 64
#define CALL_HEADERS_MAX 12

struct Upstream {
        sd_event *event;
        CurlGlue *glue;
        TokenCache *tokens;
        CredentialSelector *selector;
        UpstreamConfig *config;
        CURL *easy_pool[EASY_POOL_MAX];
        size_t n_easy_pool;
};

/* How an attempt failed. */
typedef enum AttemptFailure {
        ATTEMPT_KIRO,           /* classified Kiro error */
        ATTEMPT_TRANSPORT,      /* connection, TLS, reset */
        ATTEMPT_TIMEOUT,        /* no first token in time */
} AttemptFailure;

struct UpstreamCall {
        Upstream *upstream;
        const Conversation *conv;
        ChatCallHandler handler;
        void *userdata;

        TokenRequest *token_request;
        Token *token;
        KiroRequest *request;
        KiroStream *stream;
        CURL *curl;
        /* The request headers: curl only reads the list, so its nodes and strings are ours, in one
         * allocation per attempt (wiped when the attempt ends: it holds the bearer token). */
        struct curl_slist header_nodes[CALL_HEADERS_MAX];
        struct curl_slist *headers;
        char *header_buf;
        size_t header_buf_size;
        sd_event_source *timer;

        long status;
        char *error_body;
        size_t error_size;
        char *error_type;       /* x-amzn-errortype */
        usec_t retry_after;

        unsigned attempt;       /* 1-based, counts every try */
        char *credential;       /* of the last attempt that got a token, for logs and metrics */
        unsigned endpoint;      /* index into the endpoint list, advanced on server/transport errors */
        bool unauthorized_retried;
        char *avoid_id;         /* this request moves away from this credential (403 even after a refresh) */
        char *pinned_id;        /* the next attempt stays on this credential (retry after a forced refresh) */
        ChatCommitGate gate;    /* committed once the first content event went to the handler */
        bool paused;
        bool in_curl;           /* inside a curl callback: removing the handle must wait */
        bool cancelled;
};

void upstream_config_init(UpstreamConfig *c) {
        *c = (UpstreamConfig) {
                .max_payload_bytes = KIRO_MAX_UPSTREAM_PAYLOAD_DEFAULT,
                .max_frame_bytes = 16 * 1024 * 1024,
                .first_token_timeout = 30 * USEC_PER_SEC,
                .max_attempts = 4,
                .backoff_initial = 200 * USEC_PER_MSEC,
                .backoff_max = 2 * USEC_PER_SEC,
                .stall_timeout = 300 * USEC_PER_SEC,
                .glue_limits = CURL_GLUE_LIMITS_DEFAULT,
        };
        (void) strv_extend(&c->endpoints, "https://runtime.{region}.kiro.dev");
        (void) strv_extend(&c->endpoints, "https://q.{region}.amazonaws.com");
        (void) strv_extend(&c->endpoints, "https://codewhisperer.us-east-1.amazonaws.com");
}

void upstream_config_done(UpstreamConfig *c) {
        strv_free(c->endpoints);
        free(c->ca_file);
        free(c->default_profile_arn);
        *c = (UpstreamConfig) {};
}

int upstream_new(sd_event *e, TokenCache *tokens, CredentialSelector *selector, UpstreamConfig *config,
                 Upstream **ret) {
        Upstream *u = calloc(1, sizeof *u);
        if (!u)
                return -ENOMEM;
        u->event = sd_event_ref(e);
        u->tokens = tokens;
        u->selector = selector;
        u->config = config;
        int r = curl_glue_new(e, &u->glue);
        if (r >= 0)
                r = curl_glue_set_limits(u->glue, &config->glue_limits);
        if (r < 0) {
                upstream_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

void upstream_trim(Upstream *u) {
        /* Pooled easy handles keep their buffers; the connections they used stay in curl's cache. */
        while (u && u->n_easy_pool > 0)
                curl_easy_cleanup(u->easy_pool[--u->n_easy_pool]);
}

CurlGlue *upstream_glue(Upstream *u) {
        return u ? u->glue : NULL;
}

TokenCache *upstream_tokens(Upstream *u) {
        return u->tokens;
}

const UpstreamConfig *upstream_config(Upstream *u) {
        return u->config;
}

sd_event *upstream_event(Upstream *u) {
        return u->event;
}

Upstream *upstream_free(Upstream *u) {
        if (!u)
                return NULL;
        for (size_t i = 0; i < u->n_easy_pool; i++)
                curl_easy_cleanup(u->easy_pool[i]);
        curl_glue_free(u->glue);
        sd_event_unref(u->event);
        free(u);
        return NULL;
}

/* Drops everything of the current attempt. */
static CURL *easy_get(Upstream *u) {
        if (u->n_easy_pool > 0)
                return u->easy_pool[--u->n_easy_pool];
        return curl_easy_init();
}

/* Takes a handle that is not (or no longer) in the multi handle. */
static void easy_put(Upstream *u, CURL *c, bool reusable) {
        if (!c)
                return;
        if (!reusable || u->n_easy_pool >= EASY_POOL_MAX) {
                curl_easy_cleanup(c);
                return;
        }
        /* Drops every option, so no pointer to this call's headers, body or callbacks survives. */
        curl_easy_reset(c);
        u->easy_pool[u->n_easy_pool++] = c;
}

static void call_reset_attempt(UpstreamCall *call) {
        token_request_cancel(call->token_request);
        call->token_request = NULL;
        if (call->curl) {
                curl_glue_remove(call->upstream->glue, call->curl);
                /* A paused handle is not recycled: its pause state would outlive the reset. */
                easy_put(call->upstream, call->curl, !call->paused);
                call->curl = NULL;
        }
        call->header_buf = erase_and_free_sized(call->header_buf, call->header_buf_size);
        call->header_buf_size = 0;
        call->headers = NULL;
        call->timer = sd_event_source_disable_unref(call->timer);
        call->stream = kiro_stream_free(call->stream);
        call->request = kiro_request_free(call->request);
        call->token = token_unref(call->token);
        call->error_body = erase_and_free_sized(call->error_body, call->error_size);
        call->error_size = 0;
        call->error_type = (free(call->error_type), NULL);
        call->status = 0;
        call->retry_after = 0;
        chat_commit_gate_reset(&call->gate);
}

static void call_free(UpstreamCall *call) {
        call_reset_attempt(call);
        free(call->avoid_id);
        free(call->pinned_id);
        free(call->credential);
        free(call);
}

void upstream_call_cancel(UpstreamCall *call) {
        if (!call)
                return;
        if (call->in_curl) {
                /* Inside curl's own callback: let the transfer fail and free it when curl reports that. */
                call->cancelled = true;
                return;
        }
        call_free(call);
}

const ChatUsage *upstream_call_usage(UpstreamCall *call) {
        return call->stream ? kiro_stream_usage(call->stream) : NULL;
}

unsigned upstream_call_attempts(UpstreamCall *call) {
        return call->attempt;
}

void upstream_call_pause(UpstreamCall *call, bool pause) {
        if (!call || !call->curl || call->paused == pause)
                return;
        call->paused = pause;
        if (!pause)
                (void) curl_glue_pause(call->upstream->glue, call->curl, false);
}

static void call_fail(UpstreamCall *call, FailureKind kind, usec_t retry_after, const char *fmt, ...) _printf_(4, 5);
static void call_fail(UpstreamCall *call, FailureKind kind, usec_t retry_after, const char *fmt, ...) {
        Failure err = { .kind = kind, .retry_after = retry_after };
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&err.message, fmt, ap) < 0)
                err.message = NULL;
        va_end(ap);
        /* The handler must not cancel the call: it is freed right after. */
        call->handler.on_fail((ChatCall *) call, &err, call->userdata);
        call_free(call);
        failure_done(&err);
}

static int attempt_begin(UpstreamCall *call);

static int on_retry_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        UpstreamCall *call = userdata;
        call->timer = sd_event_source_disable_unref(call->timer);
        (void) attempt_begin(call);
        return 0;
}

/* v scaled by a random factor in [0.75, 1.25]. */
static uint64_t jitter(uint64_t v) {
        sd_id128_t rnd = SD_ID128_NULL;
        (void) sd_id128_randomize(&rnd);
        return v * 3 / 4 + (v ? rnd.qwords[0] % (v / 2 + 1) : 0);
}

/* Schedules the next attempt after delay (0: on the next loop iteration, never recursively). */
static void call_retry(UpstreamCall *call, usec_t delay) {
        call_reset_attempt(call);
        /* Accuracy 1 ms: the default (250 ms) would add that much to every immediate retry or failover. */
        int r = sd_event_add_time_relative(call->upstream->event, &call->timer, CLOCK_MONOTONIC, delay, USEC_PER_MSEC,
                                           on_retry_timer, call);
        if (r < 0)
                call_fail(call, FAILURE_INTERNAL, 0, "Cannot schedule a retry: %s.", strerror(-r));
}

static usec_t backoff(UpstreamCall *call) {
        UpstreamConfig *cfg = call->upstream->config;
        usec_t b = cfg->backoff_initial;
        for (unsigned i = 1; i < call->attempt && b < cfg->backoff_max; i++)
                b *= 2;
        return jitter(MIN(b, cfg->backoff_max));
}

static void report(UpstreamCall *call, const char *kind, usec_t retry_after) {
        if (!call->token)
                return;
        /* Locally first, so that the retry of this very request already moves to another credential. */
        credential_selector_note(call->upstream->selector, call->token->credential_id, kind, retry_after);
        token_cache_report(call->upstream->tokens, call->token->credential_id, kind, retry_after);
}

/* A success on a credential that was throttled ends its cooldown in kiro-authd (and its escalation); the
 * others cost no bus message. */
static void report_success(UpstreamCall *call) {
        if (call->token && credential_selector_throttled(call->upstream->selector, call->token->credential_id))
                report(call, "ok", 0);
}

/* Whether the next attempt can go to another credential at once (a failover needs no backoff). */
static bool can_fail_over(UpstreamCall *call) {
        return call->token &&
                credential_selector_has_other(call->upstream->selector, "kiro", call->token->credential_id);
}

/* The retry decision of KIRO-PROTOCOL A.10, before anything reached the client. */
static void call_decide(UpstreamCall *call, AttemptFailure fk, ChatErrorKind kind, const char *message) {
        UpstreamConfig *cfg = call->upstream->config;
        bool more = call->attempt < cfg->max_attempts;
        size_t n_endpoints = MAX(strv_length(cfg->endpoints), (size_t) 1);
        usec_t ra = call->retry_after;
        _cleanup_free_ char *msg = strdup(strna(message));
        const char *reason = fk == ATTEMPT_TIMEOUT ? "first-token-timeout" : fk == ATTEMPT_TRANSPORT ? "network"
                                                                            : chat_error_kind_to_string(kind);

        log_debug("Upstream attempt %u failed: %s (%s).", call->attempt, reason, strna(msg));
        chat_metrics_upstream(chat_metrics.upstream_failures, "kiro", reason);
        chat_metrics_credential_counts(call->credential, 0, 1, 0);
        {
                /* For the operator: which credential failed how, for which request (Kiro's message is
                 * server text, escaped). */
                char f_cred[160], f_req[64], f_reason[64];
                (void) snprintf(f_cred, sizeof f_cred, "KIROD_CREDENTIAL=%s", strempty(call->credential));
                (void) snprintf(f_req, sizeof f_req, "KIROD_REQUEST_ID=%s", call->conv->request_id);
                (void) snprintf(f_reason, sizeof f_reason, "KIROD_REASON=%s", reason);
                const char *const fields[] = { f_cred, f_req, f_reason, NULL };
                bool limit = kind == CHAT_ERROR_THROTTLED || kind == CHAT_ERROR_QUOTA;
                log_struct(limit ? LOG_NOTICE : LOG_WARNING,
                           kind == CHAT_ERROR_THROTTLED ? KIROD_MESSAGE_UPSTREAM_THROTTLED
                           : kind == CHAT_ERROR_QUOTA   ? KIROD_MESSAGE_UPSTREAM_QUOTA
                                                        : KIROD_MESSAGE_UPSTREAM_FAILED,
                           fields, "Upstream attempt %u of request %s with credential '%s' failed: %s (%s).",
                           call->attempt, call->conv->request_id, strna(call->credential), reason, LOG_ESC(strna(msg)));
        }

        if (fk == ATTEMPT_TIMEOUT) {
                if (more) {
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kiro", reason);
                        return call_retry(call, 0);
                }
                return call_fail(call, FAILURE_TIMEOUT, 0, "Kiro sent no answer within %llus (%u attempts).",
                                 (unsigned long long) (cfg->first_token_timeout / USEC_PER_SEC), call->attempt);
        }
        if (fk == ATTEMPT_TRANSPORT)
                kind = CHAT_ERROR_SERVER;

        switch (kind) {
        case CHAT_ERROR_UNAUTHORIZED:
                report(call, "unauthorized", 0);
                if (more && !call->unauthorized_retried) {
                        call->unauthorized_retried = true;
                        /* Once on the same credential with the refreshed token. */
                        if (call->token && free_and_strdup(&call->pinned_id, call->token->credential_id) < 0)
                                return call_fail(call, FAILURE_INTERNAL, 0, "Out of memory.");
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kiro", reason);
                        return call_retry(call, 0);
                }
                /* Refused even after a refresh: another credential may serve this request. */
                if (more && can_fail_over(call)) {
                        if (free_and_strdup(&call->avoid_id, call->token->credential_id) < 0)
                                return call_fail(call, FAILURE_INTERNAL, 0, "Out of memory.");
                        chat_metrics_upstream(chat_metrics.upstream_failovers, "kiro", reason);
                        chat_metrics_credential_counts(call->credential, 0, 0, 1);
                        return call_retry(call, 0);
                }
                return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                 "Kiro refused the access token even after a refresh (%s); see 'kiroctl status'.", strna(msg));
        case CHAT_ERROR_QUOTA:
                report(call, "quota-exhausted", ra);
                if (more) {
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kiro", reason);
                        return call_retry(call, 0);
                }
                return call_fail(call, FAILURE_RATE_LIMIT, ra, "The Kiro quota is exhausted: %s", strna(msg));
        case CHAT_ERROR_SUSPENDED:
                report(call, "suspended", 0);
                if (more) {
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kiro", reason);
                        return call_retry(call, 0);
                }
                return call_fail(call, FAILURE_PERMISSION, 0, "The Kiro account is suspended: %s", strna(msg));
        case CHAT_ERROR_THROTTLED:
                report(call, "throttled", ra);
                if (more) {
                        bool over = can_fail_over(call);
                        chat_metrics_upstream(over ? chat_metrics.upstream_failovers : chat_metrics.upstream_retries,
                                              "kiro", reason);
                        chat_metrics_credential_counts(call->credential, 0, 0, over);
                        return call_retry(call, over ? 0 : MAX(backoff(call), MIN(ra, cfg->backoff_max)));
                }
                return call_fail(call, FAILURE_RATE_LIMIT, ra ?: USEC_PER_SEC, "Kiro is rate limiting: %s", strna(msg));
        case CHAT_ERROR_OVERLOADED:
                if (more) {
                        chat_metrics_upstream(chat_metrics.upstream_retries, "kiro", reason);
                        return call_retry(call, backoff(call));
                }
                return call_fail(call, FAILURE_OVERLOADED, ra, "The model is overloaded: %s", strna(msg));
        case CHAT_ERROR_VALIDATION:
                return call_fail(call, FAILURE_INVALID_REQUEST, 0, "Kiro rejected the request: %s", strna(msg));
        case CHAT_ERROR_INPUT_TOO_LONG:
                return call_fail(call, FAILURE_INVALID_REQUEST, 0,
                                 "The conversation is too long for the model's context: %s", strna(msg));
        case CHAT_ERROR_ACCESS_DENIED:
                return call_fail(call, FAILURE_PERMISSION, 0, "Kiro denied access: %s", strna(msg));
        default:
                /* Server errors, broken or truncated streams, transport failures: next endpoint, and back off
                 * once every endpoint was tried. */
                if (kind == CHAT_ERROR_SERVER && fk == ATTEMPT_KIRO)
                        report(call, "server-error", 0);
                call->endpoint++;
                if (more) {
                        chat_metrics_upstream(n_endpoints > 1 ? chat_metrics.upstream_failovers : chat_metrics.upstream_retries,
                                              "kiro", reason);
                        chat_metrics_credential_counts(call->credential, 0, 0, n_endpoints > 1);
                        char f_req[64], f_reason[64];
                        (void) snprintf(f_req, sizeof f_req, "KIROD_REQUEST_ID=%s", call->conv->request_id);
                        (void) snprintf(f_reason, sizeof f_reason, "KIROD_REASON=%s", reason);
                        if (n_endpoints > 1)
                                log_struct(LOG_NOTICE, KIROD_MESSAGE_UPSTREAM_FAILOVER, (const char *const[]) { f_req, f_reason, NULL },
                                           "Request %s moves to the next Kiro endpoint after %s.", call->conv->request_id, reason);
                        return call_retry(call, call->endpoint % n_endpoints == 0 ? backoff(call) : 0);
                }
                return call_fail(call, FAILURE_BAD_GATEWAY, 0, "Kiro failed after %u attempts: %s", call->attempt,
                                 strna(msg));
        }
}

static int on_first_token_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        UpstreamCall *call = userdata;
        call->timer = sd_event_source_disable_unref(call->timer);
        call_decide(call, ATTEMPT_TIMEOUT, CHAT_ERROR_UNKNOWN, "first-token timeout");
        return 0;
}

static int on_kiro_event(const ChatEvent *ev, void *userdata) {
        UpstreamCall *call = userdata;

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
                call->cancelled = true; /* the handler is done with this call: no more callbacks */
        return r;
}

static size_t on_header(char *buf, size_t size, size_t n, void *userdata) {
        UpstreamCall *call = userdata;
        size_t len = size * n;
        char line[512];
        if (len >= sizeof line)
                return len;
        memcpy(line, buf, len);
        line[len] = 0;
        line[strcspn(line, "\r\n")] = 0;
        const char *v;
        if ((v = strchr(line, ':'))) {
                size_t klen = (size_t) (v - line);
                v++;
                v += strspn(v, " \t");
                if (klen == 16 && strncasecmp(line, "x-amzn-errortype", 16) == 0)
                        (void) free_and_strdup(&call->error_type, v);
                else if (klen == 11 && strncasecmp(line, "retry-after", 11) == 0) {
                        char *e;
                        unsigned long s = strtoul(v, &e, 10);
                        if (e != v && s < 86400)
                                call->retry_after = (usec_t) s * USEC_PER_SEC;
                }
        }
        return len;
}

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
        UpstreamCall *call = userdata;
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
        r = kiro_stream_feed(call->stream, ptr, len);
        call->in_curl = false;
        if (r < 0 || call->cancelled)
                return 0; /* a broken stream or a cancel: curl ends the transfer, on_done decides */
        return len;
}

static void on_done(CurlGlue *g, CURL *curl, CURLcode result, void *userdata) {
        UpstreamCall *call = userdata;
        int r;

        call->timer = sd_event_source_disable_unref(call->timer);
        if (call->cancelled) {
                call_free(call);
                return;
        }
        if (call->status == 0)
                (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &call->status);

        if (call->status == 200 || (result != CURLE_OK && call->gate.committed)) {
                /* The stream decides whether it ended properly; a broken transfer is a truncated stream. */
                r = kiro_stream_finish(call->stream);
                if (call->cancelled) {
                        call_free(call);
                        return;
                }
                if (call->gate.committed) {
                        /* END went to the handler: done. */
                        call_free(call);
                        return;
                }
                if (call->gate.have_error) {
                        _cleanup_free_ char *m = strdup(strna(call->gate.error.message));
                        return call_decide(call, ATTEMPT_KIRO, call->gate.error.kind, m);
                }
                if (result != CURLE_OK)
                        return call_decide(call, ATTEMPT_TRANSPORT, CHAT_ERROR_SERVER, curl_easy_strerror(result));
                ChatEvent end;
                if (r >= 0 && chat_commit_gate_take_end(&call->gate, &end)) {
                        /* A complete answer without content: pass END on. */
                        report_success(call);
                        (void) call->handler.on_event((ChatCall *) call, &end, call->userdata);
                        call_free(call);
                        return;
                }
                return call_decide(call, ATTEMPT_KIRO, CHAT_ERROR_TRUNCATED, "the stream ended without an answer");
        }

        if (result != CURLE_OK && call->status == 0)
                return call_decide(call, ATTEMPT_TRANSPORT, CHAT_ERROR_SERVER, curl_easy_strerror(result));

        ChatError e = {};
        (void) kiro_error_parse(call->error_body, call->error_size, call->error_type, (int) call->status, &e);
        _cleanup_free_ char *m = NULL;
        if (asprintf(&m, "HTTP %ld%s%s", call->status, e.message ? ": " : "", strempty(e.message)) < 0)
                m = NULL;
        ChatErrorKind kind = e.kind;
        chat_error_done(&e);
        call_decide(call, ATTEMPT_KIRO, kind, m);
}

/* Sets the attempt's request headers from (name, value) pairs ("Name: value" each). */
static int set_headers(UpstreamCall *call, const char *const (*pairs)[2], size_t n) {
        size_t total = 0;
        char *p;

        assert(n <= CALL_HEADERS_MAX);
        assert(!call->header_buf);
        for (size_t i = 0; i < n; i++)
                total += strlen(pairs[i][0]) + 2 + strlen(pairs[i][1]) + 1;
        call->header_buf = p = malloc(total);
        if (!p)
                return -ENOMEM;
        call->header_buf_size = total;
        for (size_t i = 0; i < n; i++) {
                call->header_nodes[i] = (struct curl_slist) { .data = p, .next = i + 1 < n ? &call->header_nodes[i + 1] : NULL };
                p = stpcpy(stpcpy(stpcpy(p, pairs[i][0]), ": "), pairs[i][1]) + 1;
        }
        call->headers = n > 0 ? &call->header_nodes[0] : NULL;
        return 0;
}

static int start_transfer(UpstreamCall *call) {
        Upstream *u = call->upstream;
        UpstreamConfig *cfg = u->config;
        _cleanup_free_ char *url = NULL, *ua = NULL, *xua = NULL, *auth = NULL;
        _cleanup_free_ char *err = NULL;
        char uuid[SD_ID128_UUID_STRING_MAX], attempt[48];
        int r;

        KiroRequestParams params = {
                .profile_arn = call->token->profile_arn ?: cfg->default_profile_arn,
                .max_payload_bytes = cfg->max_payload_bytes,
                .trim_history = cfg->trim_history,
        };
        r = kiro_request_build(call->conv, &params, &call->request, &err);
        if (r == -EMSGSIZE) {
                call_fail(call, FAILURE_TOO_LARGE, 0, "%s", strna(err));
                return 0;
        }
        if (r < 0) {
                call_fail(call, r == -ENOMEM ? FAILURE_INTERNAL : FAILURE_INVALID_REQUEST, 0, "%s",
                          err ?: "Cannot build the upstream request.");
                return 0;
        }
        if (call->request->n_trimmed > 0)
                log_info("Dropped the %zu oldest history messages to fit MaxUpstreamPayloadBytes=%zu.",
                         call->request->n_trimmed, cfg->max_payload_bytes);
        r = kiro_stream_new(cfg->max_frame_bytes, &call->request->tool_aliases, on_kiro_event, call, &call->stream);
        if (r < 0)
                return r;

        size_t n = strv_length(cfg->endpoints);
        if (n == 0) {
                call_fail(call, FAILURE_INTERNAL, 0, "No upstream endpoint is configured (Endpoints=).");
                return 0;
        }
        /* The host is set through libcurl's URL API: a region is never pasted into the URL as text. */
        r = url_from_template(cfg->endpoints[call->endpoint % n], call->token->region ?: "us-east-1",
                              KIRO_CHAT_PATH, &url);
        if (r == -EINVAL) {
                call_fail(call, FAILURE_INTERNAL, 0,
                          "Credential '%s' has an invalid region, or Endpoints= an invalid URL template.",
                          strna(call->token->credential_id));
                return 0;
        }
        if (r < 0)
                return r;
        if (asprintf(&ua, "%s KiroIDE-%s-%s", KIRO_SDK_UA, KIRO_IDE_VERSION, strempty(call->token->machine_id)) < 0 ||
            asprintf(&xua, "%s KiroIDE-%s-%s", KIRO_SDK_XUA, KIRO_IDE_VERSION, strempty(call->token->machine_id)) < 0 ||
            asprintf(&auth, "Bearer %s", call->token->access_token) < 0)
                return -ENOMEM;
        /* A v4 UUID per attempt (KIRO-PROTOCOL A.2): the first attempt's is the request id, so that Kiro's
         * logs and ours name the request alike; a retry gets a fresh one. */
        if (call->conv->request_id[0] && call->attempt == 1)
                (void) snprintf(uuid, sizeof uuid, "%s", call->conv->request_id);
        else {
                r = kiro_uuid4(uuid);
                if (r < 0)
                        return r;
        }
        snprintf(attempt, sizeof attempt, "attempt=%u; max=%u", call->attempt, cfg->max_attempts);

        const char *headers[CALL_HEADERS_MAX][2] = {
                { "Authorization", auth },
                { "Content-Type", "application/json" },
                { "Accept", "*/*" },
                { "amz-sdk-invocation-id", uuid },
                { "amz-sdk-request", attempt },
                { "x-amzn-kiro-agent-mode", "vibe" },
                { "x-amzn-codewhisperer-optout", "true" },
                { "x-amz-user-agent", xua },
        };
        size_t n_headers = 8;
        if (streq_ptr(call->token->auth_method, "api-key")) {
                headers[n_headers][0] = "tokentype";
                headers[n_headers++][1] = "API_KEY";
        } else if (streq_ptr(call->token->auth_method, "external-idp")) {
                headers[n_headers][0] = "TokenType";
                headers[n_headers++][1] = "EXTERNAL_IDP";
        }
        /* No "Expect: 100-continue" round trip for large bodies. */
        headers[n_headers][0] = "Expect";
        headers[n_headers++][1] = "";
        r = set_headers(call, (const char *const (*)[2]) headers, n_headers);
        explicit_bzero(auth, strlen(auth));
        if (r < 0)
                return r;

        call->curl = easy_get(u);
        if (!call->curl)
                return -ENOMEM;
        r = curl_glue_setup_easy(call->curl, url, cfg->ca_file, USEC_INFINITY);
        if (r < 0)
                return r;
        if (curl_easy_setopt(call->curl, CURLOPT_POSTFIELDS, call->request->body) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->request->body_size) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_HTTPHEADER, call->headers) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_USERAGENT, ua) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_WRITEDATA, call) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
            curl_easy_setopt(call->curl, CURLOPT_HEADERDATA, call) != CURLE_OK ||
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
        log_debug("Upstream attempt %u to '%s' with credential '%s'.", call->attempt, url, call->token->credential_id);
        return 0;
}

static void on_token(Token *t, const sd_bus_error *error, void *userdata) {
        UpstreamCall *call = userdata;
        int r;

        call->token_request = NULL;
        if (!t) {
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                           SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED))
                        return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                         "kiro-authd is not running, so no Kiro token is available.");
                if (sd_bus_error_has_name(error, SD_BUS_ERROR_ACCESS_DENIED))
                        return call_fail(call, FAILURE_UNAVAILABLE, 0,
                                         "kiro-authd refused to hand out a token to this proxy (check ProxyUser=).");
                return call_fail(call, FAILURE_UNAVAILABLE, 0, "No usable Kiro credential: %s",
                                 strna(error ? error->message : NULL));
        }
        call->token = token_ref(t);
        if (!streq_ptr(call->credential, t->credential_id)) {
                free(call->credential);
                call->credential = t->credential_id ? strdup(t->credential_id) : NULL;
        }
        r = start_transfer(call);
        if (r < 0)
                call_fail(call, FAILURE_INTERNAL, 0, "Cannot start the upstream request: %s.", strerror(-r));
}

static int attempt_begin(UpstreamCall *call) {
        Token *t = NULL;
        int r;

        call->attempt++;
        const char *id = NULL;
        if (call->pinned_id)
                id = call->pinned_id;
        else if (call->upstream->selector) {
                usec_t back_at = 0;
                r = credential_selector_pick(call->upstream->selector, "kiro", call->conv->affinity_key,
                                             call->avoid_id, &id, &back_at);
                if (r == -ENOKEY) {
                        usec_t n = now(CLOCK_REALTIME);
                        if (back_at > n)
                                call_fail(call, FAILURE_RATE_LIMIT, back_at - n,
                                          "Every Kiro credential has spent its quota or is cooling down; see 'kiroctl status'.");
                        else
                                call_fail(call, FAILURE_UNAVAILABLE, 0,
                                          "No usable Kiro credential (all disabled or needing a login); see 'kiroctl status'.");
                        return r;
                }
        }
        chat_metrics_upstream(chat_metrics.upstream_attempts, "kiro", NULL);
        r = token_cache_get(call->upstream->tokens, "kiro", id, on_token, call, &t, &call->token_request);
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

int upstream_call_start(Upstream *u, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                        UpstreamCall **ret) {
        UpstreamCall *call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        call->upstream = u;
        call->conv = conv;
        call->handler = *h;
        call->userdata = userdata;
        *ret = call;
        /* From here on every outcome, even an immediate failure, goes through the handler. */
        (void) attempt_begin(call);
        return 0;
}

static int backend_call_start(void *backend, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                              ChatCall **ret_call) {
        return upstream_call_start(backend, conv, h, userdata, (UpstreamCall **) ret_call);
}

static void backend_call_cancel(ChatCall *call) {
        upstream_call_cancel((UpstreamCall *) call);
}

static void backend_call_pause(ChatCall *call, bool pause) {
        upstream_call_pause((UpstreamCall *) call, pause);
}

static const ChatUsage *backend_call_usage(ChatCall *call) {
        return call ? upstream_call_usage((UpstreamCall *) call) : NULL;
}

static void backend_call_info(ChatCall *call, const char **ret_credential, unsigned *ret_attempts) {
        UpstreamCall *c = (UpstreamCall *) call;
        *ret_credential = c->credential;
        *ret_attempts = c->attempt;
}

const ChatBackendOps kiro_backend_ops = {
        .name = "kiro",
        .call_start = backend_call_start,
        .call_cancel = backend_call_cancel,
        .call_pause = backend_call_pause,
        .call_usage = backend_call_usage,
        .call_info = backend_call_info,
};
