/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device-authorization logins (RFC 8628) on kiro-authd's event loop. */
#include <assert.h>
#include <strings.h>
#include <systemd/sd-id128.h>

#include "authd-kimi.h"
#include "authd-login.h"
#include "authd-manager.h"
#include "bus-names.h"
#include "json-util.h"
#include "log.h"
#include "url-util.h"

/* B §2.2 and §2.1: the user agents of the SDK and of kiro-cli's social flow. */
#define OIDC_USER_AGENT "aws-sdk-js/3.980.0 ua/2.1 os/linux lang/js md/nodejs#20.18.0 api/sso-oidc#3.980.0 m/E KiroIDE"
#define KIRO_CLI_USER_AGENT "KiroCLI/2.14.2 md/appVersion-2.14.2 app/AmazonQ-For-CLI"
#define BUILDER_ID_START_URL "https://view.awsapps.com/start"
#define BUILDER_ID_REGION "us-east-1"
#define KIRO_SOCIAL_CLIENT_ID "kiro-cli"
#define DEVICE_GRANT "urn:ietf:params:oauth:grant-type:device_code"

#define LOGIN_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define LOGIN_RESPONSE_MAX (64 * 1024)
/* RFC 8628 §3.2 and §3.5: 5 s when the server names no interval, +5 s on every slow_down. */
#define DEFAULT_INTERVAL_USEC (5 * USEC_PER_SEC)
#define SLOW_DOWN_USEC (5 * USEC_PER_SEC)
#define MAX_INTERVAL_USEC (120 * USEC_PER_SEC)
#define DEFAULT_EXPIRES_USEC (600 * USEC_PER_SEC)
#define MAX_EXPIRES_USEC (3600 * USEC_PER_SEC)
/* Transient failures (network, 5xx, garbage) in a row a poll survives before the login fails. */
#define MAX_POLL_FAILURES 5

#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

static usec_t usec_add(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

typedef enum LoginStep {
        STEP_REGISTER,
        STEP_AUTHORIZE,
        STEP_POLL,
} LoginStep;

struct Login {
        Manager *manager;
        Login *next;

        char *id;
        LoginKind kind;
        char *key;                      /* what makes two logins "the same": kind, start URL, region, id */
        char *cred_id;
        bool replace;
        char *region;
        char *start_url;
        char *base_url;                 /* the configured OIDC, Kiro auth or Kimi auth URL template */

        /* OIDC client registration; client_secret is secret. */
        char *client_id;
        char *client_secret;
        usec_t client_secret_expires_at;

        char *device_code;
        char *user_code;
        char *verification_uri;
        char *verification_uri_complete;
        usec_t expires_at;              /* CLOCK_MONOTONIC */
        usec_t expires_realtime;
        usec_t interval;
        unsigned n_failures;
        unsigned n_polls;

        LoginStep step;
        CURL *curl;
        struct curl_slist *headers;
        char *body;                     /* secret */
        size_t body_size;
        char *response;                 /* secret */
        size_t response_size;
        sd_event_source *timer;

        sd_bus_message *call;           /* StartLogin until answered */
        CredentialRecord *record;       /* carries the machine id (Kimi's device id) from the start */
        char **kimi_headers;
};

static const char *const login_kind_table[_LOGIN_KIND_MAX] = {
        [LOGIN_BUILDER_ID] = "builder-id",
        [LOGIN_IDC] = "idc",
        [LOGIN_GOOGLE] = "google",
        [LOGIN_GITHUB] = "github",
        [LOGIN_KIMI] = "kimi",
};

const char *login_kind_to_string(LoginKind k) {
        return k >= 0 && k < _LOGIN_KIND_MAX ? login_kind_table[k] : NULL;
}

LoginKind login_kind_from_names(const char *provider, const char *method) {
        if (!provider || !method)
                return _LOGIN_KIND_INVALID;
        if (streq(provider, "kimi"))
                return isempty(method) || streq(method, "device") || streq(method, "kimi-device") ? LOGIN_KIMI
                                                                                                    : _LOGIN_KIND_INVALID;
        if (!streq(provider, "kiro"))
                return _LOGIN_KIND_INVALID;
        for (LoginKind k = 0; k < LOGIN_KIMI; k++)
                if (streq(method, login_kind_table[k]))
                        return k;
        return _LOGIN_KIND_INVALID;
}

static bool oidc(const Login *l) {
        return l->kind == LOGIN_BUILDER_ID || l->kind == LOGIN_IDC;
}

static void login_reset_transfer(Login *l) {
        if (l->curl) {
                curl_glue_remove(l->manager->glue, l->curl);
                curl_easy_cleanup(l->curl);
                l->curl = NULL;
        }
        curl_slist_free_all(l->headers);
        l->headers = NULL;
        l->body = erase_and_free_sized(l->body, l->body_size);
        l->body_size = 0;
        l->response = erase_and_free_sized(l->response, l->response_size);
        l->response_size = 0;
}

static Login *login_free(Login *l) {
        if (!l)
                return NULL;
        login_reset_transfer(l);
        sd_event_source_disable_unref(l->timer);
        sd_bus_message_unref(l->call);
        credential_record_free(l->record);
        strv_free(l->kimi_headers);
        free(l->id);
        free(l->key);
        free(l->cred_id);
        free(l->region);
        free(l->start_url);
        free(l->base_url);
        free(l->client_id);
        erase_and_free(l->client_secret);
        free(l->device_code);
        free(l->user_code);
        free(l->verification_uri);
        free(l->verification_uri_complete);
        free(l);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Login *, login_free);

static void login_unlink(Login *l) {
        for (Login **p = &l->manager->logins; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        break;
                }
        l->next = NULL;
}

void login_free_all(Manager *m) {
        while (m->logins) {
                Login *l = m->logins;
                m->logins = l->next;
                login_free(l);
        }
}

static Login *login_find(Manager *m, const char *id) {
        for (Login *l = m->logins; l; l = l->next)
                if (streq(l->id, id))
                        return l;
        return NULL;
}

/* Ends a login: answers StartLogin with the error if it is still waiting, else emits LoginFinished. */
static void login_finish(Login *l, const char *object_path, const char *error_name, const char *error) {
        Manager *m = l->manager;
        int r;

        if (l->call) {
                r = sd_bus_reply_method_errorf(l->call, error_name ?: KIROD_ERROR_LOGIN_FAILED, "%s", strna(error));
                if (r < 0)
                        log_debug_errno(r, "Failed to answer StartLogin: %m");
        } else {
                r = sd_bus_emit_signal(m->bus, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE, KIROD_SIGNAL_LOGIN_FINISHED,
                                       "sos", l->id, object_path ?: "/", strempty(error));
                if (r < 0)
                        log_warning_errno(r, "Failed to emit LoginFinished for login %s: %m", l->id);
        }
        if (error)
                log_info("Login %s (%s) ended: %s", l->id, login_kind_to_string(l->kind), error);
        login_unlink(l);
        login_free(l);
}

static void login_failf(Login *l, const char *error_name, const char *format, ...) _printf_(3, 4);
static void login_failf(Login *l, const char *error_name, const char *format, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;
        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        login_finish(l, NULL, error_name, s ?: "out of memory");
}

/* ---- wire ---------------------------------------------------------------------------------------------- */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Login *l = userdata;
        size_t n = size * nmemb;
        if (l->response_size + n > LOGIN_RESPONSE_MAX)
                return 0;
        char *p = malloc(l->response_size + n + 1);
        if (!p)
                return 0;
        if (l->response)
                memcpy(p, l->response, l->response_size);
        memcpy(p + l->response_size, ptr, n);
        p[l->response_size + n] = 0;
        erase_and_free_sized(l->response, l->response_size);
        l->response = p;
        l->response_size += n;
        return n;
}

static int header_add(struct curl_slist **h, const char *s) {
        struct curl_slist *n = curl_slist_append(*h, s);
        if (!n)
                return -ENOMEM;
        *h = n;
        return 0;
}

static void on_transfer_done(CurlGlue *g, CURL *c, CURLcode result, void *userdata);

/* Sends body (taken, secret) to base_url + path. */
static int login_send(Login *l, const char *path, char *body, bool form) {
        _cleanup_free_ char *url = NULL;
        const char *ua = l->kind == LOGIN_KIMI ? KIMI_USER_AGENT : oidc(l) ? OIDC_USER_AGENT : KIRO_CLI_USER_AGENT;
        int r = 0;

        login_reset_transfer(l);
        l->body = body;
        l->body_size = strlen(body);
        /* The region was checked at the start; the host is built with CURLU, never pasted. */
        r = url_from_template(l->base_url, l->region ?: BUILDER_ID_REGION, path, &url);
        if (r < 0)
                return r;
        l->curl = curl_easy_init();
        if (!l->curl)
                return -ENOMEM;
        if (header_add(&l->headers, form ? "Content-Type: application/x-www-form-urlencoded"
                                         : "Content-Type: application/json") < 0 ||
            header_add(&l->headers, "Accept: application/json") < 0 || header_add(&l->headers, "Expect:") < 0)
                return -ENOMEM;
        STRV_FOREACH(h, l->kimi_headers)
                if (header_add(&l->headers, *h) < 0)
                        return -ENOMEM;
        r = curl_glue_setup_easy(l->curl, url, l->manager->config.ca_file, LOGIN_TIMEOUT_USEC);
        if (r < 0)
                return r;
        if (curl_easy_setopt(l->curl, CURLOPT_POSTFIELDS, l->body) != CURLE_OK ||
            curl_easy_setopt(l->curl, CURLOPT_POSTFIELDSIZE, (long) l->body_size) != CURLE_OK ||
            curl_easy_setopt(l->curl, CURLOPT_HTTPHEADER, l->headers) != CURLE_OK ||
            curl_easy_setopt(l->curl, CURLOPT_USERAGENT, ua) != CURLE_OK ||
            curl_easy_setopt(l->curl, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
            curl_easy_setopt(l->curl, CURLOPT_WRITEDATA, l) != CURLE_OK)
                return -EIO;
        r = curl_glue_add(l->manager->glue, l->curl, on_transfer_done, l);
        if (r < 0)
                return r;
        log_debug("Login %s: POST %s", l->id, url);
        return 0;
}

static char *json_body(json_object *o) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        char *b = s ? strdup(s) : NULL;
        json_object_erase_strings(o);
        json_object_put(o);
        return b;
}

static int send_register(Login *l) {
        json_object *o = json_object_new_object(), *scopes = json_object_new_array(),
                    *grants = json_object_new_array();
        static const char *const scope_names[] = {
                "codewhisperer:completions", "codewhisperer:analysis", "codewhisperer:conversations",
        };

        if (!o || !scopes || !grants) {
                json_object_put(o);
                json_object_put(scopes);
                json_object_put(grants);
                return -ENOMEM;
        }
        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++)
                json_object_array_add(scopes, json_object_new_string(scope_names[i]));
        json_object_array_add(grants, json_object_new_string(DEVICE_GRANT));
        json_object_array_add(grants, json_object_new_string("refresh_token"));
        if (json_set_string(o, "clientName", "kiro-cli") < 0 || json_set_string(o, "clientType", "public") < 0 ||
            json_add(o, "scopes", scopes) < 0 || json_add(o, "grantTypes", grants) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        if (l->kind == LOGIN_IDC && json_set_string(o, "issuerUrl", l->start_url) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        char *b = json_body(o);
        if (!b)
                return -ENOMEM;
        l->step = STEP_REGISTER;
        return login_send(l, "/client/register", b, false);
}

static int send_authorize(Login *l) {
        char *b = NULL;
        size_t n = 0;
        int r;

        l->step = STEP_AUTHORIZE;
        if (l->kind == LOGIN_KIMI) {
                r = form_append(&b, &n, "client_id", KIMI_CLIENT_ID);
                if (r < 0)
                        return r;
                return login_send(l, "/api/oauth/device_authorization", b, true);
        }

        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (oidc(l))
                r = json_set_string(o, "clientId", l->client_id) < 0 ||
                                    json_set_string(o, "clientSecret", l->client_secret) < 0 ||
                                    json_set_string(o, "startUrl", l->start_url) < 0
                            ? -ENOMEM
                            : 0;
        else
                r = json_set_string(o, "clientId", KIRO_SOCIAL_CLIENT_ID) < 0 ||
                                    json_set_string(o, "loginProvider", l->kind == LOGIN_GOOGLE ? "Google" : "Github") < 0
                            ? -ENOMEM
                            : 0;
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        b = json_body(o);
        if (!b)
                return -ENOMEM;
        return login_send(l, oidc(l) ? "/device_authorization" : "/oauth/device/authorization", b, false);
}

static int send_poll(Login *l) {
        char *b = NULL;
        size_t n = 0;
        int r;

        l->step = STEP_POLL;
        l->n_polls++;
        if (l->kind == LOGIN_KIMI) {
                r = form_append(&b, &n, "client_id", KIMI_CLIENT_ID);
                if (r >= 0)
                        r = form_append(&b, &n, "device_code", l->device_code);
                if (r >= 0)
                        r = form_append(&b, &n, "grant_type", DEVICE_GRANT);
                if (r < 0) {
                        erase_and_free(b);
                        return r;
                }
                return login_send(l, "/api/oauth/token", b, true);
        }

        json_object *o = json_object_new_object();
        if (!o)
                return -ENOMEM;
        if (oidc(l))
                r = json_set_string(o, "clientId", l->client_id) < 0 ||
                                    json_set_string(o, "clientSecret", l->client_secret) < 0 ||
                                    json_set_string(o, "deviceCode", l->device_code) < 0 ||
                                    json_set_string(o, "grantType", DEVICE_GRANT) < 0
                            ? -ENOMEM
                            : 0;
        else
                r = json_set_string(o, "clientId", KIRO_SOCIAL_CLIENT_ID) < 0 ||
                                    json_set_string(o, "deviceCode", l->device_code) < 0
                            ? -ENOMEM
                            : 0;
        if (r < 0) {
                json_object_put(o);
                return r;
        }
        b = json_body(o);
        if (!b)
                return -ENOMEM;
        return login_send(l, oidc(l) ? "/token" : "/oauth/device/poll", b, false);
}

/* ---- polling ------------------------------------------------------------------------------------------- */

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Login *l = userdata;
        int r;

        if (now(CLOCK_MONOTONIC) >= l->expires_at) {
                login_failf(l, NULL, "the code expired before the login was confirmed");
                return 0;
        }
        r = send_poll(l);
        if (r < 0)
                login_failf(l, NULL, "cannot poll for the token: %s", strerror(-r));
        return 0;
}

/* The next poll after the interval, or the expiry if that comes first (RFC 8628 §3.5). */
static int schedule_poll(Login *l) {
        usec_t t = usec_add(now(CLOCK_MONOTONIC), l->interval);
        if (t > l->expires_at)
                t = l->expires_at;
        if (l->timer) {
                int r = sd_event_source_set_time(l->timer, t);
                if (r < 0)
                        return r;
                return sd_event_source_set_enabled(l->timer, SD_EVENT_ONESHOT);
        }
        return sd_event_add_time(l->manager->event, &l->timer, CLOCK_MONOTONIC, t, 0, on_timer, l);
}

static void poll_again(Login *l);

/* A poll that did not work out for a reason that may pass (network, 5xx, 429, garbage): poll again at the
 * interval, unless this happened too often in a row. */
static void poll_transient(Login *l, const char *what) {
        if (++l->n_failures > MAX_POLL_FAILURES) {
                login_failf(l, NULL, "the token endpoint failed %u times in a row (last: %s)", l->n_failures, what);
                return;
        }
        log_info("Login %s: poll failed (%s), trying again.", l->id, what);
        poll_again(l);
}

static void poll_again(Login *l) {
        int r = schedule_poll(l);
        if (r < 0)
                login_failf(l, NULL, "cannot schedule the next poll: %s", strerror(-r));
}

static bool printable_text(const char *s, size_t max) {
        size_t n = 0;
        if (isempty(s))
                return false;
        for (; *s; s++, n++)
                if ((unsigned char) *s <= ' ' || (unsigned char) *s >= 0x7f || n >= max)
                        return false;
        return true;
}

static const char *jstr(json_object *o, const char *camel, const char *snake, bool kimi) {
        const char *s = NULL;
        if (json_get_string(o, kimi ? snake : camel, &s) < 0)
                return NULL;
        return s;
}

static int64_t jint(json_object *o, const char *key, int64_t def) {
        int64_t v;
        double d;
        if (json_get_int64(o, key, &v) >= 0)
                return v;
        if (json_get_double(o, key, &d) >= 0 && d >= 0 && d < 1e12)
                return (int64_t) d;
        return def;
}

/* Describes an error answer, without any secret: "HTTP 400: invalid_client (…)". */
static char *describe_error(long status, const char *code, const char *desc) {
        char *s = NULL;
        int r;
        if (status == 0)
                r = asprintf(&s, "network error: %s", strna(desc));
        else
                r = asprintf(&s, "HTTP %ld%s%s%s%s%s", status, code ? ": " : "", strempty(code), desc ? " (" : "",
                             strempty(desc), desc ? ")" : "");
        return r < 0 ? NULL : s;
}

static void handle_register(Login *l, long status, json_object *j) {
        const char *id = j ? jstr(j, "clientId", NULL, false) : NULL, *secret = j ? jstr(j, "clientSecret", NULL, false) : NULL;
        int r;

        if (status != 200 || !printable_text(id, 1024) || !printable_text(secret, 8192)) {
                _cleanup_free_ char *code = NULL, *desc = NULL, *d = NULL;
                (void) refresh_error_code(l->response, l->response_size, &code, &desc);
                d = describe_error(status, code, status == 200 ? "answer has no client registration" : desc);
                login_failf(l, NULL, "cannot register a client at AWS SSO OIDC: %s", strna(d));
                return;
        }
        int64_t exp = jint(j, "clientSecretExpiresAt", 0);
        if (free_and_strdup(&l->client_id, id) < 0 || erase_and_strdup(&l->client_secret, secret) < 0) {
                login_failf(l, NULL, "out of memory");
                return;
        }
        l->client_secret_expires_at = exp > 0 && exp < INT64_MAX / (int64_t) USEC_PER_SEC ? (usec_t) exp * USEC_PER_SEC : 0;
        r = send_authorize(l);
        if (r < 0)
                login_failf(l, NULL, "cannot start the device authorization: %s", strerror(-r));
}

static void handle_authorize(Login *l, long status, json_object *j) {
        bool kimi = l->kind == LOGIN_KIMI, social = l->kind == LOGIN_GOOGLE || l->kind == LOGIN_GITHUB;
        const char *dc = NULL, *uc = NULL, *uri = NULL, *complete = NULL;
        int64_t expires_usec, interval_usec;
        int r;

        if (j) {
                dc = jstr(j, "deviceCode", "device_code", kimi);
                uc = jstr(j, "userCode", "user_code", kimi);
                uri = jstr(j, "verificationUri", "verification_uri", kimi);
                complete = jstr(j, "verificationUriComplete", "verification_uri_complete", kimi);
        }
        if (status != 200 || !printable_text(dc, 4096) || !printable_text(uc, 64) || !printable_text(uri, 2048) ||
            url_check_scheme(uri) < 0) {
                _cleanup_free_ char *code = NULL, *desc = NULL, *d = NULL;
                (void) refresh_error_code(l->response, l->response_size, &code, &desc);
                d = describe_error(status, code,
                                   status != 200 ? desc
                                   : !j          ? "answer is not JSON"
                                                 : "answer has no usable device code, user code or https verification URL");
                login_failf(l, NULL, "the device authorization failed: %s", strna(d));
                return;
        }
        if (complete && (!printable_text(complete, 2048) || url_check_scheme(complete) < 0))
                complete = NULL;

        if (social) {
                expires_usec = jint(j, "expiresInMilliseconds", 300000) * (int64_t) USEC_PER_MSEC;
                interval_usec = jint(j, "intervalInMilliseconds", 5000) * (int64_t) USEC_PER_MSEC;
        } else {
                expires_usec = jint(j, kimi ? "expires_in" : "expiresIn", 600) * (int64_t) USEC_PER_SEC;
                interval_usec = jint(j, "interval", 5) * (int64_t) USEC_PER_SEC;
        }
        if (expires_usec <= 0 || expires_usec > (int64_t) MAX_EXPIRES_USEC)
                expires_usec = expires_usec <= 0 ? DEFAULT_EXPIRES_USEC : MAX_EXPIRES_USEC;
        if (interval_usec <= 0)
                interval_usec = DEFAULT_INTERVAL_USEC;
        l->interval = CLAMP((usec_t) interval_usec, l->manager->config.login_min_poll_interval, MAX_INTERVAL_USEC);

        if (free_and_strdup(&l->device_code, dc) < 0 || free_and_strdup(&l->user_code, uc) < 0 ||
            free_and_strdup(&l->verification_uri, uri) < 0 ||
            free_and_strdup(&l->verification_uri_complete, complete ?: uri) < 0) {
                login_failf(l, NULL, "out of memory");
                return;
        }
        l->expires_at = usec_add(now(CLOCK_MONOTONIC), expires_usec);
        l->expires_realtime = usec_add(now(CLOCK_REALTIME), expires_usec);

        r = schedule_poll(l);
        if (r < 0) {
                login_failf(l, NULL, "cannot schedule polling: %s", strerror(-r));
                return;
        }
        r = sd_bus_reply_method_return(l->call, "sssst", l->id, l->verification_uri, l->verification_uri_complete,
                                       l->user_code, l->expires_realtime);
        l->call = sd_bus_message_unref(l->call);
        if (r < 0) {
                log_debug_errno(r, "Failed to answer StartLogin: %m");
                login_failf(l, NULL, "the caller went away");
                return;
        }
        log_info("Login %s (%s) waits for code %s at '%s' (poll interval %.1f s).", l->id,
                 login_kind_to_string(l->kind), l->user_code, l->verification_uri, (double) l->interval / USEC_PER_SEC);
}

static char *derive_id(Login *l) {
        for (unsigned i = 0; i < 16; i++) {
                sd_id128_t r;
                char *id = NULL;
                if (sd_id128_randomize(&r) < 0)
                        return NULL;
                if (asprintf(&id, "%s-%08" PRIx32, login_kind_to_string(l->kind), (uint32_t) r.qwords[0]) < 0)
                        return NULL;
                if (!manager_find(l->manager, id))
                        return id;
                free(id);
        }
        return NULL;
}

static void login_store(Login *l, json_object *j) {
        bool kimi = l->kind == LOGIN_KIMI;
        const char *at = jstr(j, "accessToken", "access_token", kimi), *rt = jstr(j, "refreshToken", "refresh_token", kimi),
                   *arn = kimi ? NULL : jstr(j, "profileArn", NULL, false);
        CredentialRecord *c = l->record;
        _cleanup_free_ char *id = NULL;
        Credential *cred = NULL;
        int r;

        int64_t expires = jint(j, kimi ? "expires_in" : "expiresIn", 3600);
        if (expires <= 0 || expires > 366 * 86400)
                expires = 3600;
        if (isempty(at)) {
                poll_transient(l, "answer has no access token");
                return;
        }

        c->provider = kimi ? PROVIDER_KIMI : PROVIDER_KIRO;
        c->method = kimi                 ? AUTH_METHOD_KIMI_DEVICE
                    : oidc(l)            ? (l->kind == LOGIN_IDC ? AUTH_METHOD_IDC : AUTH_METHOD_BUILDER_ID)
                                         : AUTH_METHOD_SOCIAL;
        c->expires_at = usec_add(now(CLOCK_REALTIME), (usec_t) expires * USEC_PER_SEC);
        c->imported_at = now(CLOCK_REALTIME);
        c->enabled = true;
        c->health = HEALTH_OK;
        if (erase_and_strdup(&c->access_token, at) < 0 || (!isempty(rt) && erase_and_strdup(&c->refresh_token, rt) < 0) ||
            (l->region && free_and_strdup(&c->region, l->region) < 0) ||
            (!isempty(arn) && printable_text(arn, 512) && free_and_strdup(&c->profile_arn, arn) < 0) ||
            (oidc(l) && free_and_strdup(&c->start_url, l->start_url) < 0) ||
            free_and_strdup(&c->source_format, "login") < 0) {
                login_failf(l, NULL, "out of memory");
                return;
        }
        if (oidc(l)) {
                if (free_and_strdup(&c->client_id, l->client_id) < 0 ||
                    erase_and_strdup(&c->client_secret, l->client_secret) < 0) {
                        login_failf(l, NULL, "out of memory");
                        return;
                }
                c->client_secret_expires_at = l->client_secret_expires_at;
        } else if (kimi && free_and_strdup(&c->client_id, KIMI_CLIENT_ID) < 0) {
                login_failf(l, NULL, "out of memory");
                return;
        }

        Credential *existing = l->cred_id ? manager_find(l->manager, l->cred_id) : NULL;
        if (existing && !l->replace) {
                login_failf(l, NULL, "credential '%s' was added meanwhile; log in again with --replace", l->cred_id);
                return;
        }
        if (existing) {
                r = manager_replace_login(l->manager, existing, TAKE_PTR(l->record));
                cred = existing;
        } else {
                id = l->cred_id ? strdup(l->cred_id) : derive_id(l);
                if (!id) {
                        login_failf(l, NULL, "cannot choose a credential id");
                        return;
                }
                free(c->id);
                c->id = TAKE_PTR(id);
                l->record = NULL;
                r = manager_add(l->manager, c, &cred);
        }
        if (r < 0) {
                login_failf(l, NULL, "cannot store the new credential: %s", strerror(-r));
                return;
        }
        log_event(LOG_INFO, KIROD_MESSAGE_CREDENTIAL_IMPORTED, "%s credential '%s' (%s) by login %s.",
                  existing ? "Replaced" : "Added", cred->record->id, auth_method_to_string(cred->record->method), l->id);
        login_finish(l, cred->object_path, NULL, NULL);
}

static void handle_poll(Login *l, long status, json_object *j) {
        bool social = l->kind == LOGIN_GOOGLE || l->kind == LOGIN_GITHUB;
        _cleanup_free_ char *code = NULL, *desc = NULL, *d = NULL;
        const char *pending = NULL;

        if (status == 200 && j) {
                /* The Kiro auth service answers 200 with a status while the user has not confirmed (B §2.5). */
                if (social && json_get_string(j, "status", &pending) >= 0 && !jstr(j, "accessToken", NULL, false)) {
                        if (free_and_strdup(&code, pending) < 0)
                                code = NULL;
                } else {
                        l->n_failures = 0;
                        login_store(l, j);
                        return;
                }
        } else if (status == 200) {
                poll_transient(l, "HTTP 200 with an answer that is not JSON");
                return;
        } else
                (void) refresh_error_code(l->response, l->response_size, &code, &desc);

        if (code && (!strcasecmp(code, "authorization_pending") || streq(code, "AuthorizationPendingException"))) {
                l->n_failures = 0;
                poll_again(l);
                return;
        }
        if (code && (!strcasecmp(code, "slow_down") || streq(code, "SlowDownException"))) {
                /* RFC 8628 §3.5: the interval grows by 5 s for this and all later requests. */
                l->n_failures = 0;
                l->interval = MIN(l->interval + SLOW_DOWN_USEC, MAX_INTERVAL_USEC);
                log_info("Login %s: the server asked to slow down; polling every %.1f s now.", l->id,
                         (double) l->interval / USEC_PER_SEC);
                poll_again(l);
                return;
        }
        if (code && (!strcasecmp(code, "expired_token") || streq(code, "ExpiredTokenException"))) {
                login_failf(l, NULL, "the code expired before the login was confirmed");
                return;
        }
        if (code && (!strcasecmp(code, "access_denied") || streq(code, "AccessDeniedException"))) {
                login_failf(l, NULL, "the login was denied");
                return;
        }
        d = describe_error(status, code, status == 200 ? "unexpected status" : desc);
        /* 5xx, 429, 408, network errors and garbage may pass; a 4xx with an OAuth code will not. */
        if (status == 0 || status >= 500 || status == 429 || status == 408 || (!code && status != 401 && status != 403))
                poll_transient(l, strna(d));
        else
                login_failf(l, NULL, "the token endpoint refused the login: %s", strna(d));
}

static void on_transfer_done(CurlGlue *g, CURL *c, CURLcode result, void *userdata) {
        Login *l = userdata;
        _cleanup_json_ json_object *j = NULL;
        long status = 0;

        if (result == CURLE_OK)
                (void) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        l->curl = NULL;
        if (result != CURLE_OK) {
                /* A network error: the description goes where a body would, for describe_error(). */
                const char *e = result == CURLE_WRITE_ERROR ? "answer too large" : curl_easy_strerror(result);
                if (l->step == STEP_POLL) {
                        _cleanup_free_ char *d = describe_error(0, NULL, e);
                        poll_transient(l, strna(d));
                } else
                        login_failf(l, NULL, "cannot reach the %s login service: %s", login_kind_to_string(l->kind), e);
                return;
        }
        if (l->response && (json_parse_bounded(l->response, l->response_size, 8, &j, NULL) < 0 ||
                            !json_object_is_type(j, json_type_object))) {
                json_object_put(j);
                j = NULL;
        }

        switch (l->step) {
        case STEP_REGISTER:
                handle_register(l, status, j);
                break;
        case STEP_AUTHORIZE:
                handle_authorize(l, status, j);
                break;
        case STEP_POLL:
                handle_poll(l, status, j);
                break;
        }
        if (j)
                json_object_erase_strings(j);
}

/* ---- start and cancel ---------------------------------------------------------------------------------- */

int login_start(Manager *m, sd_bus_message *call, const LoginParams *p, sd_bus_error *error) {
        _cleanup_(login_freep) Login *l = NULL;
        sd_id128_t rid;
        int r;

        assert(m);
        assert(call);
        assert(p);

        l = calloc(1, sizeof(Login));
        if (!l)
                return -ENOMEM;
        l->manager = m;
        l->kind = p->kind;
        l->replace = p->replace;

        switch (p->kind) {
        case LOGIN_BUILDER_ID:
                if (p->start_url || (p->region && !streq(p->region, BUILDER_ID_REGION)))
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "AWS Builder ID takes no start URL and lives in us-east-1.");
                l->start_url = strdup(BUILDER_ID_START_URL);
                l->region = strdup(BUILDER_ID_REGION);
                break;
        case LOGIN_IDC:
                if (!p->start_url || !p->region)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "IAM Identity Center needs the options 'start_url' and 'region'.");
                if (strncasecmp(p->start_url, "https://", 8) != 0 || strlen(p->start_url) > 1024 ||
                    !printable_text(p->start_url, 1024) || url_check_scheme(p->start_url) < 0)
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "The start URL must be an https:// URL (like https://my-org.awsapps.com/start).");
                if (!region_is_valid(p->region))
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                                "Invalid region: expected a name like 'us-east-1' or 'eu-central-1'.");
                l->start_url = strdup(p->start_url);
                l->region = strdup(p->region);
                break;
        default:
                if (p->start_url || p->region)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "A %s login takes no start URL or region.", login_kind_to_string(p->kind));
                if (p->kind != LOGIN_KIMI)
                        l->region = strdup(BUILDER_ID_REGION);
                break;
        }
        if ((p->kind != LOGIN_KIMI && !l->region) || (p->start_url && !l->start_url))
                return -ENOMEM;

        if (p->id) {
                if (!credential_id_is_valid(p->id))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Invalid credential id '%s': use 1-64 letters, digits, '.', '_' or '-'.", p->id);
                if (manager_find(m, p->id) && !p->replace)
                        return sd_bus_error_setf(error, KIROD_ERROR_CREDENTIAL_EXISTS,
                                                 "Credential '%s' exists already; pass --replace to log it in again.", p->id);
                l->cred_id = strdup(p->id);
                if (!l->cred_id)
                        return -ENOMEM;
        }

        /* Two logins for the same account would race for the same stored credential: refuse the second. */
        if (asprintf(&l->key, "%s\n%s\n%s\n%s", login_kind_to_string(p->kind), strempty(l->start_url),
                     strempty(l->region), strempty(p->id)) < 0)
                return -ENOMEM;
        for (Login *o = m->logins; o; o = o->next)
                if (streq(o->key, l->key))
                        return sd_bus_error_setf(error, KIROD_ERROR_LOGIN_IN_PROGRESS,
                                                 "A %s login for this account is already running (login %s); "
                                                 "finish or cancel it first.",
                                                 login_kind_to_string(p->kind), o->id);

        r = sd_id128_randomize(&rid);
        if (r < 0)
                return r;
        if (asprintf(&l->id, "%s-%016" PRIx64, login_kind_to_string(p->kind), rid.qwords[0]) < 0)
                return -ENOMEM;

        l->record = credential_record_new();
        if (!l->record)
                return -ENOMEM;
        r = credential_record_ensure_machine_id(l->record);
        if (r < 0)
                return r;

        if (p->kind == LOGIN_KIMI) {
                char device_id[33];
                l->base_url = strdup(m->config.kimi_auth_url);
                r = kimi_headers(kimi_device_id(l->record, device_id), &l->kimi_headers);
                if (r < 0)
                        return r;
        } else
                l->base_url = strdup(oidc(l) ? m->config.oidc_url : m->config.kiro_auth_url);
        if (!l->base_url)
                return -ENOMEM;

        r = oidc(l) ? send_register(l) : send_authorize(l);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot start the login: %m");

        l->call = sd_bus_message_ref(call);
        l->next = m->logins;
        m->logins = TAKE_PTR(l);
        log_info("Login %s (%s) started.", m->logins->id, login_kind_to_string(p->kind));
        return 1;
}

int login_cancel(Manager *m, const char *login_id) {
        Login *l = login_find(m, login_id);
        if (!l || l->call)
                return -ESRCH;
        login_finish(l, NULL, NULL, "cancelled");
        return 0;
}
