/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-proxyd: the local OpenAI- and Anthropic-compatible HTTP API over Kiro, tokens from kiro-authd. */
#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "bus-names.h"
#include "conf.h"
#include "json-util.h"
#include "log.h"
#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "http/http-access.h"
#include "http/http-listen.h"
#include "api/api-models.h"
#include "api/api-openai.h"
#include "api/api-responses.h"
#include "auth/auth-credinfo.h"
#include "auth/auth-credmetrics.h"
#include "auth/auth-tokencache.h"
#include "auth/auth-usage-report.h"
#include "chat/chat-metrics.h"
#include "kimi/kimi-upstream.h"
#include "kiro/kiro-models.h"
#include "kiro/kiro-upstream.h"

typedef struct Proxy {
        sd_event *event;
        sd_bus *bus;
        TokenCache *tokens;
        UsageReporter *usage_report;
        CredentialSelector *selector;
        Upstream *upstream;
        KimiUpstream *kimi_upstream;
        KiroModels *models;
        HttpServer *http;
        ApiKeys *keys;
        ChatContext chat;
        ResponsesStore *responses;
        sd_event_source *idle_timer;
        bool activated;
        bool in_after_dispatch;

        /* [Proxy] */
        ListenConfig listen;
        HttpAccessPolicy access;
        char *api_keys_file;
        char *tls_certificate_file;
        char *tls_key_file;
        HttpLimits limits;
        ApiLimits api;
        usec_t exit_on_idle;
        size_t responses_store_max;
        usec_t responses_store_sec;
        /* [Kiro] */
        UpstreamConfig kiro;
        /* [Kimi] */
        char *kimi_api_base;
        KimiConfig kimi;
        /* [Network] */
        char *egress_proxy;
        char *egress_noproxy;

        /* Upstream configurations replaced by reloads: calls in flight may still point into them. */
        UpstreamConfig *retired;
        size_t n_retired;
        char **retired_strings;
} Proxy;

/* What a listener serves (http_server_add_listener_tagged()): the API, or only /metrics, /healthz and /readyz
 * without API keys (MetricsListen=, or a socket passed as "metrics"). */
enum {
        LISTENER_API,
        LISTENER_METRICS,
};

static char *arg_config = NULL;
static char **arg_listen = NULL;
static int arg_log_level = -1;
static bool arg_user = false;

static void proxy_config_done(Proxy *p) {
        listen_config_done(&p->listen);
        http_access_policy_done(&p->access);
        upstream_config_done(&p->kiro);
        free(p->api_keys_file);
        free(p->tls_certificate_file);
        free(p->tls_key_file);
        free(p->kimi_api_base);
        free(p->egress_proxy);
        free(p->egress_noproxy);
}

static void proxy_done(Proxy *p) {
        p->idle_timer = sd_event_source_disable_unref(p->idle_timer);
        p->http = http_server_free(p->http);
        p->kimi_upstream = kimi_upstream_free(p->kimi_upstream);
        p->responses = responses_store_free(p->responses);
        p->models = kiro_models_free(p->models);
        p->upstream = upstream_free(p->upstream);
        models_live_clear();
        p->selector = credential_selector_free(p->selector);
        p->tokens = token_cache_free(p->tokens);
        /* Queues the last counts; the flush below delivers them. */
        chat_metrics_set_credential_hook(NULL, NULL);
        p->usage_report = usage_reporter_free(p->usage_report);
        p->bus = sd_bus_flush_close_unref(p->bus);
        p->keys = apikeys_free(p->keys);
        proxy_config_done(p);
        for (size_t i = 0; i < p->n_retired; i++)
                upstream_config_done(&p->retired[i]);
        free(p->retired);
        strv_free(p->retired_strings);
        p->event = sd_event_unref(p->event);
        chat_metrics_done();
}

/* /v1/responses uses OpenAI's error shape and statuses. */
/* GET /v1/models lists Kimi models only while kiro-authd holds a Kimi credential (issue 12). */
static bool provider_listed(ModelProvider provider, void *userdata) {
        Proxy *p = userdata;
        return provider != MODEL_PROVIDER_KIMI || credential_selector_has_provider(p->selector, "kimi");
}

static ApiShape shape_of_path(const char *path) {
        return startswith(strempty(path), "/v1/messages") ? API_SHAPE_ANTHROPIC : API_SHAPE_OPENAI;
}

/* Errors the HTTP layer raises itself (413, 500, …), in the shape of the API addressed. */
static int render_error(HttpRequest *r, unsigned status, const char *message, char **ret_body, size_t *ret_size,
                        const char **ret_content_type, void *userdata) {
        Failure f = { .kind = api_error_kind_from_status(status), .message = (char *) message };
        *ret_content_type = "application/json";
        return api_error_render(shape_of_path(http_request_path(r)), &f, ret_body, ret_size);
}

static int check_key(Proxy *p, HttpRequest *r) {
        if (apikeys_count(p->keys) == 0 || apikeys_check(p->keys, r))
                return 0;
        Failure e = { .kind = FAILURE_AUTHENTICATION,
                      .message = (char *) "Missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'x-api-key: KEY'.",
                      .code = (char *) "invalid_api_key" };
        return api_error_respond(r, shape_of_path(http_request_path(r)), &e);
}

static int on_headers(HttpRequest *r, void *userdata) {
        Proxy *p = userdata;
        /* Web pages first (a browser's preflight carries no key), on every path. */
        int k = http_access_check(&p->access, r);
        if (k != 0)
                return k < 0 ? k : 0;
        /* The metrics listener serves no API and needs no key: on_request() answers 404 to everything but the
         * three operator endpoints. */
        if (http_request_listener_tag(r) == LISTENER_METRICS)
                return 0;
        /* Refuse a wrong key before reading a large body; the health check needs none. */
        if (apikeys_count(p->keys) > 0 && !streq(http_request_path(r), "/healthz") &&
            !streq(http_request_path(r), "/readyz") && !apikeys_check(p->keys, r))
                return check_key(p, r);
        return 0;
}

typedef struct Probe {
        HttpRequest *r;
        bool metrics;
} Probe;

static void on_credinfo(int error, const char *message, const CredInfo *l, size_t n, void *userdata) {
        Probe *pr = userdata;
        _cleanup_(buf_done) Buf b = {};
        int r;

        if (pr->metrics) {
                credential_metrics_fill(error, l, n);
                r = metrics_render(chat_metrics.registry, &b);
                if (r >= 0)
                        (void) http_request_respond(pr->r, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.size, NULL);
                else
                        (void) http_request_respond_error(pr->r, 500, "Out of memory while rendering the metrics.");
        } else {
                size_t usable = 0;
                for (size_t i = 0; i < n; i++)
                        usable += credinfo_usable(&l[i]);
                if (error < 0)
                        r = buf_puts(&b, "{\"status\":\"not-ready\",\"reason\":\"authd-unreachable\",\"message\":");
                else if (usable == 0)
                        r = buf_putf(&b, "{\"status\":\"not-ready\",\"reason\":\"no-usable-credential\",\"credentials\":%zu,"
                                         "\"message\":", n);
                else
                        r = buf_putf(&b, "{\"status\":\"ready\",\"credentials\":%zu,\"usable_credentials\":%zu}", n, usable);
                if (r >= 0 && (error < 0 || usable == 0)) {
                        const char *msg = error < 0 ? strna(message)
                                          : n == 0 ? "kiro-authd holds no credential; import one with 'kiroctl import'."
                                                   : "No credential is enabled and active; see 'kiroctl status'.";
                        r = buf_put_json_string(&b, msg, strlen(msg));
                        if (r >= 0)
                                r = buf_puts(&b, "}");
                }
                if (r >= 0)
                        (void) http_request_respond(pr->r, error < 0 || usable == 0 ? 503 : 200, "application/json",
                                                    b.data, b.size, NULL);
                else
                        (void) http_request_respond_error(pr->r, 500, "Out of memory.");
        }
        http_request_unref(pr->r);
        free(pr);
}

static int handle_probe(Proxy *p, HttpRequest *r, bool metrics) {
        Probe *pr = calloc(1, sizeof *pr);
        if (!pr)
                return -ENOMEM;
        pr->r = http_request_ref(r);
        pr->metrics = metrics;
        int k = credinfo_fetch(p->bus, on_credinfo, pr);
        if (k < 0) {
                /* No bus call possible: answer now as if kiro-authd did not reply. */
                on_credinfo(k, "Cannot call kiro-authd on the bus", NULL, 0, pr);
        }
        return 0;
}

static int respond_not_found(HttpRequest *r, const char *method, const char *path) {
        Failure e = {};
        (void) failure_set(&e, FAILURE_NOT_FOUND, NULL, "Unknown route %s %s.", method, path);
        int ret = api_error_respond(r, shape_of_path(path), &e);
        failure_done(&e);
        return ret;
}

static int on_request(HttpRequest *r, void *userdata) {
        Proxy *p = userdata;
        const char *method = http_request_method(r), *path = http_request_path(r);
        bool get = streq(method, "GET"), post = streq(method, "POST");

        if (streq(path, "/healthz")) {
                static const char ok[] = "{\"status\":\"ok\"}";
                return http_request_respond(r, 200, "application/json", ok, sizeof ok - 1, NULL);
        }
        if (streq(path, "/readyz") && get)
                return handle_probe(p, r, false);
        if (http_request_listener_tag(r) == LISTENER_METRICS) {
                if (streq(path, "/metrics") && get)
                        return handle_probe(p, r, true);
                return respond_not_found(r, method, path);
        }
        if (apikeys_count(p->keys) > 0 && !apikeys_check(p->keys, r))
                return check_key(p, r);

        if (streq(path, "/metrics") && get)
                return handle_probe(p, r, true);
        if (streq(path, "/v1/models") && get)
                return api_models_handle(&p->chat, r);
        if (streq(path, "/v1/chat/completions") && post)
                return openai_handle_chat(&p->chat, r, &p->api);
        if (streq(path, "/v1/messages") && post)
                return anthropic_handle_messages(&p->chat, r, &p->api);
        if (streq(path, "/v1/messages/count_tokens") && post)
                return anthropic_handle_count_tokens(r, &p->api);
        if (streq(path, "/v1/responses") && post)
                return responses_handle(&p->chat, r, &p->api, p->responses);

        bool known = streq(path, "/metrics") || streq(path, "/readyz") || streq(path, "/v1/models") ||
                     streq(path, "/v1/chat/completions") || streq(path, "/v1/messages") ||
                     streq(path, "/v1/messages/count_tokens") || streq(path, "/v1/responses");
        Failure e = {};
        if (known)
                (void) failure_set(&e, FAILURE_INVALID_REQUEST, NULL, "Method %s is not allowed on %s.", method, path);
        else
                (void) failure_set(&e, FAILURE_NOT_FOUND, NULL, "Unknown route %s %s.", method, path);
        int ret = api_error_respond(r, shape_of_path(path), &e);
        failure_done(&e);
        return ret;
}

static int parse_size(const char *v, void *data) {
        uint64_t n;
        int r = config_parse_uint64(v, &n);
        if (r < 0)
                return r;
        *(size_t *) data = (size_t) n;
        return 0;
}

static int parse_endpoints(const char *v, void *data) {
        _cleanup_strv_free_ char **l = NULL;
        int r = strv_split(v, &l);
        if (r < 0)
                return r;
        STRV_FOREACH(u, l) {
                r = url_check_scheme(*u);
                if (r < 0)
                        return r;
        }
        strv_free(*(char ***) data);
        *(char ***) data = TAKE_PTR(l);
        return 0;
}

static int parse_log_format(const char *v, void *data) {
        int f = log_format_from_string(v);
        if (f < 0)
                return f;
        log_set_format(f);
        return 0;
}

static int parse_config(Proxy *p) {
        uint64_t max_body = HTTP_MAX_BODY_BYTES_DEFAULT;
        const ConfigItem table[] = {
                { "Proxy", "Listen", config_parse_listen, &p->listen.listen },
                { "Proxy", "MetricsListen", config_parse_listen, &p->listen.metrics_listen },
                { "Proxy", "AllowNonLoopback", config_parse_bool, &p->listen.allow_non_loopback },
                { "Proxy", "SocketMode", config_parse_mode, &p->listen.socket_mode },
                { "Proxy", "APIKeysFile", config_parse_string, &p->api_keys_file },
                { "Proxy", "AllowedHosts", config_parse_strv, &p->access.allowed_hosts },
                { "Proxy", "AllowedOrigins", config_parse_strv, &p->access.allowed_origins },
                { "Proxy", "TLSCertificateFile", config_parse_string, &p->tls_certificate_file },
                { "Proxy", "TLSKeyFile", config_parse_string, &p->tls_key_file },
                { "Proxy", "MaxConnections", config_parse_unsigned, &p->limits.max_connections },
                { "Proxy", "MaxConnectionsPerClient", config_parse_unsigned, &p->limits.max_connections_per_client },
                { "Proxy", "MaxBodyBytes", config_parse_uint64, &max_body },
                { "Proxy", "IdleTimeoutSec", config_parse_sec, &p->limits.idle_timeout_usec },
                { "Proxy", "RequestTimeoutSec", config_parse_sec, &p->limits.request_timeout_usec },
                { "Proxy", "HeaderTimeoutSec", config_parse_sec, &p->limits.header_timeout_usec },
                { "Proxy", "MaxJSONDepth", config_parse_unsigned, &p->api.max_json_depth },
                { "Proxy", "MaxMessages", parse_size, &p->api.max_messages },
                { "Proxy", "MaxContentParts", parse_size, &p->api.max_content_parts },
                { "Proxy", "MaxTools", parse_size, &p->api.max_tools },
                { "Proxy", "FirstTokenTimeoutSec", config_parse_sec, &p->kiro.first_token_timeout },
                { "Proxy", "StallTimeoutSec", config_parse_sec, &p->kiro.stall_timeout },
                { "Proxy", "ExitOnIdleSec", config_parse_sec, &p->exit_on_idle },
                { "Proxy", "LogFormat", parse_log_format, NULL },
                { "Proxy", "PingIntervalSec", config_parse_sec, &p->chat.ping_interval },
                { "Proxy", "ResponsesStoreMax", parse_size, &p->responses_store_max },
                { "Proxy", "ResponsesStoreSec", config_parse_sec, &p->responses_store_sec },
                { "Kiro", "Endpoints", parse_endpoints, &p->kiro.endpoints },
                { "Kiro", "MaxUpstreamPayloadBytes", parse_size, &p->kiro.max_payload_bytes },
                { "Kiro", "TrimHistory", config_parse_bool, &p->kiro.trim_history },
                { "Kiro", "DefaultProfileArn", config_parse_string, &p->kiro.default_profile_arn },
                { "Kiro", "MaxFrameBytes", parse_size, &p->kiro.max_frame_bytes },
                { "Kiro", "CAFile", config_parse_string, &p->kiro.ca_file },
                { "Kiro", "HTTPVersion", curl_glue_parse_http_version, &p->kiro.glue_limits.http_version },
                { "Kiro", "MaxUpstreamConnections", config_parse_unsigned, &p->kiro.glue_limits.max_connections },
                { "Kiro", "UpstreamIdleTimeoutSec", config_parse_sec, &p->kiro.glue_limits.idle_timeout_usec },
                { "Kiro", "MaxAttempts", config_parse_unsigned, &p->kiro.max_attempts },
                { "Kiro", "RetryBackoffSec", config_parse_sec, &p->kiro.backoff_initial },
                { "Kimi", "APIBase", config_parse_string, &p->kimi_api_base },
                { "Network", "Proxy", curl_glue_parse_proxy, &p->egress_proxy },
                { "Network", "NoProxy", config_parse_string, &p->egress_noproxy },
                {}
        };
        int r = config_parse_files(arg_config, table, config_warn_log, p);
        if (r < 0)
                return log_error_errno(r, "Failed to parse configuration '%s': %m", arg_config);
        p->limits.max_body_bytes = max_body;
        r = http_access_policy_verify(&p->access);
        if (r < 0)
                return r;
        if (p->kiro.max_attempts == 0)
                p->kiro.max_attempts = 1;
        /* [Kimi] APIBase= wins over the credential's API base (kiro-authd's KimiAPIBase=); https only, or
         * http to a loopback host. */
        if (!isempty(p->kimi_api_base)) {
                _cleanup_free_ char *u = NULL;
                r = kimi_chat_url(p->kimi_api_base, &u);
                if (r < 0)
                        return log_error_errno(r, "Invalid [Kimi] APIBase= '%s' (https only, or http to a loopback host): %m",
                                               p->kimi_api_base);
        }
        p->kimi = (KimiConfig) {
                .api_base = isempty(p->kimi_api_base) ? NULL : p->kimi_api_base,
                .ca_file = p->kiro.ca_file,
                .first_token_timeout = p->kiro.first_token_timeout,
                .stall_timeout = p->kiro.stall_timeout,
                .max_line = p->kiro.max_frame_bytes,
        };
        if (p->api.max_json_depth == 0 || p->api.max_json_depth > 1000)
                p->api.max_json_depth = API_MAX_JSON_DEPTH_DEFAULT;
        if (p->api.max_messages == 0)
                p->api.max_messages = API_MAX_MESSAGES_DEFAULT;
        if (p->api.max_content_parts == 0)
                p->api.max_content_parts = API_MAX_CONTENT_PARTS_DEFAULT;
        if (p->api.max_tools == 0)
                p->api.max_tools = API_MAX_TOOLS_DEFAULT;
        /* Command-line --listen replaces the configured ones. */
        if (arg_listen) {
                strv_free(p->listen.listen);
                p->listen.listen = NULL;
                STRV_FOREACH(l, arg_listen)
                        if (strv_extend(&p->listen.listen, *l) < 0)
                                return log_oom();
        }
        return 0;
}

#define PROXY_CONFIG_INIT                                                                        \
        (Proxy) { .limits = HTTP_LIMITS_DEFAULT, .api = API_LIMITS_DEFAULT,                      \
                  .listen.socket_mode = LISTEN_SOCKET_MODE_DEFAULT,                              \
                  .responses_store_max = RESPONSES_STORE_MAX_DEFAULT,                            \
                  .responses_store_sec = RESPONSES_STORE_SEC_DEFAULT }

static int apply_network(Proxy *p) {
        _cleanup_free_ char *shown = NULL;
        int r = curl_glue_set_proxy(upstream_glue(p->upstream), p->egress_proxy, p->egress_noproxy);
        if (r < 0)
                return log_error_errno(r, "Failed to set the egress proxy: %m");
        if (p->egress_proxy && curl_glue_proxy_mask(p->egress_proxy, &shown) >= 0)
                log_info("Egress proxy: %s%s%s.", shown, p->egress_noproxy ? ", except " : "",
                         strempty(p->egress_noproxy));
        return 0;
}

static bool strv_equal(char **a, char **b) {
        size_t n = strv_length(a);
        if (n != strv_length(b))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return true;
}

#define SWAP_FIELD(a, b) do { typeof(a) _t = (a); (a) = (b); (b) = _t; } while (0)

/* Reload: n is freshly parsed; what can change at run time moves into p (the old values go back into n to
 * be freed), the rest is kept and named in the log. */
static int proxy_apply_reload(Proxy *p, Proxy *n) {
        _cleanup_(apikeys_freep) ApiKeys *keys = NULL;
        int r;

        r = apikeys_load(n->api_keys_file, &keys);
        if (r < 0)
                return r;

#define RESTART_ONLY(cond, key) if (cond) log_notice(key "= changed; takes effect after a restart.")
        RESTART_ONLY(!strv_equal(p->listen.listen, n->listen.listen), "Listen");
        RESTART_ONLY(!strv_equal(p->listen.metrics_listen, n->listen.metrics_listen), "MetricsListen");
        RESTART_ONLY(p->listen.allow_non_loopback != n->listen.allow_non_loopback, "AllowNonLoopback");
        RESTART_ONLY(p->listen.socket_mode != n->listen.socket_mode, "SocketMode");
        RESTART_ONLY(!streq_ptr(p->tls_certificate_file, n->tls_certificate_file), "TLSCertificateFile");
        RESTART_ONLY(!streq_ptr(p->tls_key_file, n->tls_key_file), "TLSKeyFile");
        RESTART_ONLY(p->limits.max_connections != n->limits.max_connections, "MaxConnections");
        RESTART_ONLY(p->limits.idle_timeout_usec != n->limits.idle_timeout_usec, "IdleTimeoutSec");
        RESTART_ONLY(p->exit_on_idle != n->exit_on_idle, "ExitOnIdleSec");
        RESTART_ONLY(p->responses_store_max != n->responses_store_max, "ResponsesStoreMax");
        RESTART_ONLY(p->responses_store_sec != n->responses_store_sec, "ResponsesStoreSec");
        RESTART_ONLY(p->kiro.glue_limits.http_version != n->kiro.glue_limits.http_version, "HTTPVersion");
        RESTART_ONLY(p->kiro.glue_limits.max_connections != n->kiro.glue_limits.max_connections,
                     "MaxUpstreamConnections");
        RESTART_ONLY(p->kiro.glue_limits.idle_timeout_usec != n->kiro.glue_limits.idle_timeout_usec,
                     "UpstreamIdleTimeoutSec");
#undef RESTART_ONLY
        /* The upstream connection cache is set up with them once. */
        n->kiro.glue_limits = p->kiro.glue_limits;

        /* Room to retire the old strings first: nothing fails once p starts to change. */
        UpstreamConfig *t = reallocarray(p->retired, p->n_retired + 1, sizeof *t);
        if (!t)
                return log_oom();
        p->retired = t;
        size_t n_strings = strv_length(p->retired_strings);
        char **rs = reallocarray(p->retired_strings, n_strings + 2, sizeof(char *));
        if (!rs)
                return log_oom();
        rs[n_strings] = NULL;
        p->retired_strings = rs;

        SWAP_FIELD(p->egress_proxy, n->egress_proxy);
        SWAP_FIELD(p->egress_noproxy, n->egress_noproxy);
        r = apply_network(p);
        if (r < 0) {
                SWAP_FIELD(p->egress_proxy, n->egress_proxy);
                SWAP_FIELD(p->egress_noproxy, n->egress_noproxy);
                return r;
        }
        /* Kiro and Kimi calls in flight may still point into the old strings: kept until exit. */
        p->retired[p->n_retired++] = p->kiro;
        p->kiro = n->kiro;
        n->kiro = (UpstreamConfig) {};
        if (p->kimi_api_base) {
                rs[n_strings] = p->kimi_api_base;
                rs[n_strings + 1] = NULL;
        }
        p->kimi_api_base = TAKE_PTR(n->kimi_api_base);
        p->kimi = n->kimi;      /* points into p->kiro and p->kimi_api_base now */

        SWAP_FIELD(p->keys, keys);
        SWAP_FIELD(p->access, n->access);
        SWAP_FIELD(p->api_keys_file, n->api_keys_file);
        p->api = n->api;
        p->chat.ping_interval = n->chat.ping_interval;
        p->limits.max_connections_per_client = n->limits.max_connections_per_client;
        p->limits.max_body_bytes = n->limits.max_body_bytes;
        p->limits.header_timeout_usec = n->limits.header_timeout_usec;
        p->limits.request_timeout_usec = n->limits.request_timeout_usec;
        http_server_set_request_limits(p->http, &p->limits);
        return 0;
}

/* systemctl reload (ExecReload= sends SIGHUP): the configuration with its drop-ins and the API keys again.
 * Connections and streams in flight go on; new requests see the new settings. */
static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Proxy *p = userdata;
        _cleanup_(proxy_config_done) Proxy n = PROXY_CONFIG_INIT;
        char buf[64];
        int r;

        (void) snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu",
                        (unsigned long long) now(CLOCK_MONOTONIC));
        (void) sd_notify(false, buf);
        log_info("Reloading the configuration '%s'.", arg_config);
        upstream_config_init(&n.kiro);
        r = parse_config(&n);
        if (r >= 0)
                r = proxy_apply_reload(p, &n);
        if (r < 0) {
                log_error("Reloading failed; the previous configuration stays in effect.");
                (void) sd_notify(false, "READY=1\nSTATUS=Serving (reloading the configuration failed, see the log).");
                return 0;
        }
        log_info("Configuration reloaded (%zu API keys).", apikeys_count(p->keys));
        (void) sd_notify(false, "READY=1\nSTATUS=Serving.");
        return 0;
}

/* Every connection is an fd: raise the soft limit to the hard one (select() is never used, so large fd
 * numbers are fine), and warn when MaxConnections= cannot be reached. */
static void bump_nofile(unsigned max_connections) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t) max_connections + 64)
                log_warning("The open-files limit (%llu) is below MaxConnections=%u; raise LimitNOFILE=.",
                            (unsigned long long) rl.rlim_cur, max_connections);
}

static int on_idle_check(sd_event_source *s, uint64_t usec, void *userdata) {
        Proxy *p = userdata;
        /* Socket activated and nobody connected for a whole period: exit, the sockets stay with systemd, so
         * the next connection starts us again and waits in the backlog meanwhile. */
        if (http_server_n_connections(p->http) == 0 && http_server_n_requests(p->http) == 0) {
                log_info("Idle for %llus, exiting.", (unsigned long long) (p->exit_on_idle / USEC_PER_SEC));
                return sd_event_exit(p->event, 0);
        }
        (void) sd_event_source_set_time_relative(s, p->exit_on_idle);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int setup_listeners(Proxy *p) {
        _cleanup_(http_tls_freep) HttpTLS *tls = NULL;
        ListenFd *fds = NULL;
        size_t n = 0;
        int r;

        if (p->tls_certificate_file || p->tls_key_file) {
                if (!p->tls_certificate_file || !p->tls_key_file)
                        return log_error_errno(EINVAL, "TLSCertificateFile= and TLSKeyFile= go together.");
                r = http_tls_load(p->tls_certificate_file, p->tls_key_file, &tls);
                if (r < 0)
                        return log_error_errno(r, "Failed to load the TLS certificate '%s' or key '%s': %m",
                                               p->tls_certificate_file, p->tls_key_file);
        }
        r = listen_fds_open(&p->listen, &fds, &n);
        if (r < 0)
                return r;
        p->activated = n > 0 && fds[0].activated;
        for (size_t i = 0; i < n; i++)
                if (fds[i].tls && !tls) {
                        log_error("Listener '%s' is TLS, but TLSCertificateFile= and TLSKeyFile= are not set.",
                                  strna(fds[i].description));
                        listen_fds_free(fds, n);
                        return -EINVAL;
                }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *desc = fds[i].description;
                int fd = fds[i].fd;
                fds[i].description = NULL;
                r = http_server_add_listener_tagged(p->http, fd, desc, fds[i].tls ? tls : NULL,
                                                    fds[i].metrics ? LISTENER_METRICS : LISTENER_API);
                if (r < 0) {
                        for (size_t j = i + 1; j < n; j++) {
                                safe_close(fds[j].fd);
                                free(fds[j].description);
                        }
                        free(fds);
                        return log_error_errno(r, "Failed to serve on '%s': %m", strna(desc));
                }
                int port = fds[i].kind == LISTEN_TCP ? listen_fd_port(fd) : -1;
                log_info("Listening on %s%s%s.", strna(desc), fds[i].metrics ? " for /metrics, /healthz and /readyz only" : "",
                         fds[i].activated ? " (socket activation)" : "");
                if (port >= 0)
                        log_debug("Bound %sTCP port %d.", fds[i].metrics ? "metrics " : "", port);
        }
        free(fds);
        return 0;
}

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Serves the OpenAI and Anthropic APIs over Kiro; tokens come from kiro-authd.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show package version\n"
               "     --config=PATH       Configuration file (default " SYSCONFDIR "/kirod/kiro-proxyd.conf)\n"
               "     --listen=ADDR       127.0.0.1:8399, [::1]:8399, unix:/path (repeatable; replaces Listen=)\n"
               "     --log-level=LEVEL   debug, info, notice, warning, err\n"
               "     --user              Talk to kiro-authd on the session bus\n",
               program_invocation_short_name);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_LISTEN, ARG_LOG_LEVEL, ARG_USER };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "user", no_argument, NULL, ARG_USER },
                {}
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        puts(PACKAGE_VERSION);
                        return 0;
                case ARG_CONFIG:
                        /* The default file may be missing (built-in defaults); a file named on the
                         * command line must be there: a typo would silently run on the defaults. */
                        if (access(optarg, F_OK) < 0)
                                return log_error_errno(errno, "Configuration file '%s' given with --config: %m",
                                                       optarg);
                        if (free_and_strdup(&arg_config, optarg) < 0)
                                return log_oom();
                        break;
                case ARG_LISTEN: {
                        ListenSpec spec;
                        if (listen_spec_parse(optarg, &spec) < 0)
                                return log_error_errno(EINVAL, "Invalid --listen= address '%s'.", optarg);
                        listen_spec_done(&spec);
                        if (strv_extend(&arg_listen, optarg) < 0)
                                return log_oom();
                        break;
                }
                case ARG_LOG_LEVEL:
                        arg_log_level = log_level_from_string(optarg);
                        if (arg_log_level < 0)
                                return log_error_errno(EINVAL, "Invalid log level '%s'.", optarg);
                        break;
                case ARG_USER:
                        arg_user = true;
                        break;
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "%s takes no arguments.", program_invocation_short_name);
        if (!arg_config && config_default_path("kiro-proxyd", arg_user, &arg_config) < 0)
                return log_oom();
        return 1;
}

/* The end of every HTTP or upstream dispatch: what one side just made pending for the other (a transfer
 * to start, a resumed connection to answer) runs now instead of in loop iterations of its own, each of
 * which would cost an epoll_wait(). Bounded, so that the loop still gets to the other sources. */
static void on_after_dispatch(void *userdata) {
        Proxy *p = userdata;

        if (p->in_after_dispatch)
                return;
        p->in_after_dispatch = true;
        for (unsigned i = 0; i < 4; i++) {
                bool a = curl_glue_flush(upstream_glue(p->upstream));
                bool b = http_server_flush(p->http);
                if (!a && !b)
                        break;
        }
        p->in_after_dispatch = false;
}

static void on_credential_counts(const char *credential, unsigned requests, unsigned errors, unsigned failovers,
                                 void *userdata) {
        int r = usage_reporter_add(userdata, credential, requests, errors, failovers);
        if (r < 0)
                log_debug_errno(r, "Failed to count usage of credential '%s': %m", credential);
}

/* The bus is gone (dbus-daemon restarted or died): no token can be renewed, and kiro-authd's signals would
 * no longer reach us. Reconnecting would need every match and call set up again and the token cache dropped
 * anyway (the new bus may have another kiro-authd); a restart does that, and Restart=on-failure (or
 * whatever runs us) starts one. So exit non-zero, at once, and say why. */
static int on_bus_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *error) {
        Proxy *p = userdata;

        log_error("Lost the connection to the %s bus; exiting so that the service manager restarts kiro-proxyd.",
                  arg_user ? "session" : "system");
        (void) sd_event_exit(p->event, -ENOTCONN);
        return 0;
}

/* No connection for a second: drop what only helps under load, before the heap is trimmed. */
static void on_http_idle(void *userdata) {
        Proxy *p = userdata;

        upstream_trim(p->upstream);
        json_parse_cache_clear();
}

static int run(int argc, char *argv[]) {
        _cleanup_(proxy_done) Proxy p = PROXY_CONFIG_INIT;
        sigset_t ss;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        if (arg_log_level >= 0)
                log_set_max_level(arg_log_level);
        upstream_config_init(&p.kiro);
        r = parse_config(&p);
        if (r < 0)
                return r;
        (void) kirod_bus_errors_register();
        r = chat_metrics_init();
        if (r >= 0)
                r = credential_metrics_init(chat_metrics.registry);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the metrics: %m");

        r = sd_event_default(&p.event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void) sd_event_add_signal(p.event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(p.event, NULL, SIGINT, NULL, NULL);
        (void) signal(SIGPIPE, SIG_IGN);
        (void) sd_event_set_watchdog(p.event, true);

        r = apikeys_load(p.api_keys_file, &p.keys);
        if (r < 0)
                return log_error_errno(r, "Failed to load API keys: %m");

        r = arg_user ? sd_bus_open_user(&p.bus) : sd_bus_open_system(&p.bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m", arg_user ? "session" : "system");
        r = sd_bus_attach_event(p.bus, p.event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach bus: %m");
        /* sd-bus's own exit-on-disconnect would end the loop with status 0 (no Restart=on-failure). */
        r = sd_bus_match_signal_async(p.bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", on_bus_disconnected, NULL, &p);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus connection: %m");
        r = token_cache_new(p.bus, &p.tokens);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the token cache: %m");
        r = usage_reporter_new(p.event, p.bus, &p.usage_report);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the usage reports: %m");
        chat_metrics_set_credential_hook(on_credential_counts, p.usage_report);
        r = credential_selector_new(p.bus, p.tokens, &p.selector);
        if (r < 0)
                return log_error_errno(r, "Failed to follow kiro-authd's credentials: %m");
        r = upstream_new(p.event, p.tokens, p.selector, &p.kiro, &p.upstream);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the upstream client: %m");
        p.chat.backends[MODEL_PROVIDER_KIRO] = (ChatBackend) { .ops = &kiro_backend_ops, .data = p.upstream };
        /* Kimi shares the Kiro back end's curl multi: one event-loop glue, one connection cap, one trust store. */
        r = kimi_upstream_new(p.event, upstream_glue(p.upstream), p.tokens, p.selector, &p.kimi, &p.kimi_upstream);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the Kimi back end: %m");
        p.chat.backends[MODEL_PROVIDER_KIMI] = (ChatBackend) { .ops = &kimi_backend_ops, .data = p.kimi_upstream };
        p.chat.provider_listed = provider_listed;
        p.chat.provider_listed_userdata = &p;
        r = kiro_models_new(p.upstream, &p.models);
        if (r < 0)
                return log_oom();
        p.chat.catalog = (ChatCatalog) { .ops = &kiro_catalog_ops, .data = p.models };

        r = responses_store_new(p.responses_store_max, p.responses_store_sec, &p.responses);
        if (r < 0)
                return log_oom();

        bump_nofile(p.limits.max_connections);
        r = http_server_new(p.event, &p.limits, on_request, &p, &p.http);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the HTTP server: %m");
        http_server_set_headers_handler(p.http, on_headers);
        http_server_set_error_renderer(p.http, render_error, &p);
        http_server_set_post(p.http, on_after_dispatch, &p);
        http_server_set_idle_handler(p.http, on_http_idle, &p);
        curl_glue_set_post(upstream_glue(p.upstream), on_after_dispatch, &p);
        r = apply_network(&p);
        if (r < 0)
                return r;
        r = setup_listeners(&p);
        if (r < 0)
                return r;

        if (p.activated && p.exit_on_idle != USEC_INFINITY && p.exit_on_idle > 0) {
                r = sd_event_add_time_relative(p.event, &p.idle_timer, CLOCK_MONOTONIC, p.exit_on_idle, USEC_PER_SEC,
                                               on_idle_check, &p);
                if (r < 0)
                        return log_error_errno(r, "Failed to arm idle timer: %m");
        }

        r = sd_event_add_signal(p.event, NULL, SIGHUP, on_sighup, &p);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGHUP: %m");
        (void) sd_notify(false, "READY=1\nSTATUS=Serving.");
        r = sd_event_loop(p.event);
        (void) sd_notify(false, "STOPPING=1");
        if (r == -ENOTCONN)
                return r;       /* logged by on_bus_disconnected() */
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        free(arg_config);
        strv_free(arg_listen);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
