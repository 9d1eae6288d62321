/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* getUsageLimits transfers per credential, the GetUsage method and the quota state they set. */
#include <assert.h>

#include "authd-usage-manager.h"
#include "bus-names.h"
#include "log.h"

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

#define USAGE_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define USAGE_RESPONSE_MAX (256U * 1024U)
#define USAGE_KIRO_IDE_VERSION "0.7.45"

static void wipe_headers(struct curl_slist *l) {
        for (struct curl_slist *i = l; i; i = i->next)
                if (i->data)
                        explicit_bzero(i->data, strlen(i->data));
        curl_slist_free_all(l);
}

static void usage_transfer_done(CredentialUsage *u) {
        wipe_headers(u->headers);
        u->headers = NULL;
        if (u->curl)
                curl_easy_cleanup(u->curl);
        u->curl = NULL;
        u->url = mfree(u->url);
        u->response = mfree(u->response);
        u->response_size = 0;
}

void credential_usage_free(Credential *cred) {
        CredentialUsage *u = cred->usage;
        if (!u)
                return;
        for (size_t i = 0; i < u->n_waiters; i++) {
                (void) sd_bus_reply_method_errorf(u->waiters[i], KIROD_ERROR_NO_SUCH_CREDENTIAL,
                                                  "The credential was removed.");
                sd_bus_message_unref(u->waiters[i]);
        }
        free(u->waiters);
        if (u->curl)
                curl_glue_remove(cred->manager->glue, u->curl);
        usage_transfer_done(u);
        usage_limits_done(&u->limits);
        free(u->error);
        free(u);
        cred->usage = NULL;
}

usec_t credential_quota_reset_at(Credential *cred) {
        assert(cred);
        CredentialUsage *u = cred->usage;
        if (!u || !u->have_limits || u->limits.next_reset <= now(CLOCK_REALTIME))
                return 0;
        return u->limits.next_reset;
}

usec_t credential_quota_spent_until(Credential *cred) {
        assert(cred);
        CredentialUsage *u = cred->usage;
        if (!u || !u->have_limits || !usage_limits_spent(&u->limits))
                return 0;
        return credential_quota_reset_at(cred);
}

static int append_entry(sd_bus_message *reply, const char *key, const char *type, ...) {
        va_list ap;
        int r = sd_bus_message_open_container(reply, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", key);
        if (r >= 0)
                r = sd_bus_message_open_container(reply, 'v', type);
        if (r >= 0) {
                va_start(ap, type);
                r = sd_bus_message_appendv(reply, type, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        return r;
}

static int reply_usage(Credential *cred, sd_bus_message *call) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        CredentialUsage *u = cred->usage;
        const UsageLimits *l = &u->limits;
        int r;

        r = sd_bus_message_new_method_return(call, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "{sv}");
        if (r >= 0) r = append_entry(reply, "Plan", "s", strempty(l->plan));
        if (r >= 0) r = append_entry(reply, "PlanType", "s", strempty(l->plan_type));
        if (r >= 0) r = append_entry(reply, "Used", "d", l->used);
        if (r >= 0) r = append_entry(reply, "Limit", "d", l->limit);
        if (r >= 0) r = append_entry(reply, "BonusUsed", "d", l->bonus_used);
        if (r >= 0) r = append_entry(reply, "BonusLimit", "d", l->bonus_limit);
        if (r >= 0) r = append_entry(reply, "TrialStatus", "s", strempty(l->trial_status));
        if (r >= 0) r = append_entry(reply, "TrialUsed", "d", l->trial_used);
        if (r >= 0) r = append_entry(reply, "TrialLimit", "d", l->trial_limit);
        if (r >= 0) r = append_entry(reply, "TrialExpiresAt", "t", (uint64_t) l->trial_expiry);
        if (r >= 0) r = append_entry(reply, "NextReset", "t", (uint64_t) l->next_reset);
        if (r >= 0) r = append_entry(reply, "Remaining", "d", usage_limits_remaining(l));
        if (r >= 0) r = append_entry(reply, "Percent", "d", usage_limits_percent(l));
        if (r >= 0) r = append_entry(reply, "FetchedAt", "t", (uint64_t) u->fetched_at);
        if (r >= 0) r = append_entry(reply, "SpentUntil", "t", (uint64_t) credential_quota_spent_until(cred));
        if (r >= 0) r = append_entry(reply, "LastError", "s", strempty(u->error));
        if (r >= 0)
                r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

static void usage_reply_waiters(Credential *cred) {
        CredentialUsage *u = cred->usage;
        sd_bus_message **w = TAKE_PTR(u->waiters);
        size_t n = u->n_waiters;
        u->n_waiters = 0;
        for (size_t i = 0; i < n; i++) {
                int r = reply_usage(cred, w[i]);
                if (r < 0)
                        log_warning_errno(r, "Failed to answer GetUsage for '%s': %m", cred->record->id);
                sd_bus_message_unref(w[i]);
        }
        free(w);
}

static void usage_set_error(CredentialUsage *u, const char *fmt, ...) _printf_(2, 3);
static void usage_set_error(CredentialUsage *u, const char *fmt, ...) {
        va_list ap;
        u->error = mfree(u->error);
        va_start(ap, fmt);
        if (vasprintf(&u->error, fmt, ap) < 0)
                u->error = NULL;
        va_end(ap);
}

/* The quota consequences of a good answer: the warning once per period, and the cooldown when spent (the
 * caller emits PropertiesChanged). */
static void usage_apply(Credential *cred) {
        CredentialUsage *u = cred->usage;
        Manager *m = cred->manager;
        CredentialRecord *c = cred->record;
        double percent = usage_limits_percent(&u->limits);
        char buf[64];

        if (m->config.quota_warn_percent > 0 && percent >= m->config.quota_warn_percent &&
            u->warned_for != u->limits.next_reset + 1) {
                u->warned_for = u->limits.next_reset + 1;
                log_event(LOG_WARNING, KIROD_MESSAGE_QUOTA_WARNING,
                          "Credential '%s' has used %.0f%% of its credits (%.2f of %.2f); they reset %s.", c->id,
                          percent, u->limits.used + u->limits.bonus_used, u->limits.limit + u->limits.bonus_limit,
                          u->limits.next_reset ? format_rfc3339(buf, sizeof buf, u->limits.next_reset) : "at an unknown date");
        }

        usec_t until = credential_quota_spent_until(cred);
        if (until > c->cooldown_until) {
                c->cooldown_until = until;
                /* The reason the proxy's selection reads: a spent quota is not ended by a success. */
                (void) free_and_strdup(&c->cooldown_reason, "quota-exhausted");
                log_event(LOG_WARNING, KIROD_MESSAGE_QUOTA_SPENT,
                          "Credential '%s' has spent its credits; it is skipped until they reset %s.", c->id,
                          format_rfc3339(buf, sizeof buf, until));
                (void) credential_save(cred);
        }
}

static void on_usage_done(CurlGlue *g, CURL *curl, CURLcode result, void *userdata) {
        Credential *cred = userdata;
        CredentialUsage *u = cred->usage;
        long status = 0;

        assert(u && u->curl == curl);

        (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        u->attempted_at = now(CLOCK_MONOTONIC);
        if (result != CURLE_OK)
                usage_set_error(u, "%s", result == CURLE_WRITE_ERROR && u->response_size > USAGE_RESPONSE_MAX
                                                 ? "the answer is too large"
                                                 : curl_easy_strerror(result));
        else if (status != 200)
                usage_set_error(u, "the usage endpoint answered HTTP %ld", status);
        else {
                UsageLimits l = {};
                const char *why = NULL;
                if (usage_parse(u->response, u->response_size, &l, &why) < 0)
                        usage_set_error(u, "the usage endpoint's answer is not usage limits: %s", why);
                else {
                        usage_limits_done(&u->limits);
                        u->limits = l;
                        u->have_limits = true;
                        u->fetched_at = now(CLOCK_REALTIME);
                        u->error = mfree(u->error);
                }
        }
        if (u->error)
                log_warning("Usage limits of '%s' not fetched: %s.", cred->record->id, u->error);
        else
                log_debug("Fetched usage limits of '%s'.", cred->record->id);
        usage_transfer_done(u);
        if (!u->error) {
                usage_apply(cred);
                /* UsageUsed, UsageLimit, UsageResetAt, UsageFetchedAt, and a cooldown usage_apply() set. */
                credential_emit_changed(cred);
        }
        usage_reply_waiters(cred);
}

static size_t on_usage_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        CredentialUsage *u = userdata;
        size_t n = size * nmemb;
        if (u->response_size + n > USAGE_RESPONSE_MAX) {
                u->response_size = USAGE_RESPONSE_MAX + 1;
                return 0;
        }
        char *p = realloc(u->response, u->response_size + n + 1);
        if (!p)
                return 0;
        memcpy(p + u->response_size, ptr, n);
        u->response_size += n;
        p[u->response_size] = 0;
        u->response = p;
        return n;
}

/* 1: a transfer is running; 0: it could not start and u->error says why; < 0 only for -ENOMEM. */
static int usage_start(Credential *cred) {
        CredentialUsage *u = cred->usage;
        Manager *m = cred->manager;
        CredentialRecord *c = cred->record;
        _cleanup_free_ char *auth = NULL, *ua = NULL, *xua = NULL;
        int r;

        u->attempted_at = now(CLOCK_MONOTONIC);
        if (!credential_token_usable(cred, now(CLOCK_REALTIME))) {
                usage_set_error(u, "no valid access token right now (the credential is %s)",
                                credential_state_to_string(credential_state(cred)));
                return 0;
        }
        r = usage_build_url(c, m->config.usage_url, &u->url);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || url_check_scheme(u->url) < 0) {
                usage_set_error(u, "UsageURL= gives no usable URL for region of this credential");
                u->url = mfree(u->url);
                return 0;
        }
        if (asprintf(&auth, "Authorization: Bearer %s", c->access_token) < 0 ||
            asprintf(&ua, "aws-sdk-js/1.0.0 ua/2.1 os/linux lang/js md/nodejs api/codewhispererruntime#1.0.0 m/N,E "
                          "KiroIDE-%s-%s", USAGE_KIRO_IDE_VERSION, strempty(c->machine_id)) < 0 ||
            asprintf(&xua, "x-amz-user-agent: aws-sdk-js/1.0.0 KiroIDE-%s-%s", USAGE_KIRO_IDE_VERSION,
                     strempty(c->machine_id)) < 0) {
                erase_and_free(TAKE_PTR(auth));
                return -ENOMEM;
        }
        struct curl_slist *h = NULL, *t;
        const char *lines[] = { auth, xua, "amz-sdk-request: attempt=1; max=1", "Accept: application/json" };
        for (size_t i = 0; i < ELEMENTSOF(lines); i++) {
                t = curl_slist_append(h, lines[i]);
                if (!t) {
                        wipe_headers(h);
                        erase_and_free(TAKE_PTR(auth));
                        return -ENOMEM;
                }
                h = t;
        }
        erase_and_free(TAKE_PTR(auth));
        u->headers = h;

        u->curl = curl_easy_init();
        r = u->curl ? curl_glue_setup_easy(u->curl, u->url, m->config.ca_file, USAGE_TIMEOUT_USEC) : -ENOMEM;
        if (r >= 0 &&
            (curl_easy_setopt(u->curl, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
             curl_easy_setopt(u->curl, CURLOPT_HTTPHEADER, u->headers) != CURLE_OK ||
             curl_easy_setopt(u->curl, CURLOPT_USERAGENT, ua) != CURLE_OK ||
             curl_easy_setopt(u->curl, CURLOPT_WRITEFUNCTION, on_usage_data) != CURLE_OK ||
             curl_easy_setopt(u->curl, CURLOPT_WRITEDATA, u) != CURLE_OK))
                r = -EIO;
        if (r >= 0)
                r = curl_glue_add(m->glue, u->curl, on_usage_done, cred);
        if (r < 0) {
                usage_transfer_done(u);
                usage_set_error(u, "cannot start the transfer: %s", strerror(-r));
                return r == -ENOMEM ? r : 0;
        }
        log_debug("Fetching usage limits of '%s'.", c->id);
        return 1;
}

int method_get_usage(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Credential *cred = userdata;
        Manager *m = cred->manager;
        uint64_t flags;
        int r;

        r = sd_bus_message_read(msg, "t", &flags);
        if (r < 0)
                return r;
        if (flags != 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown flags.");

        if (!cred->usage) {
                cred->usage = calloc(1, sizeof *cred->usage);
                if (!cred->usage)
                        return -ENOMEM;
        }
        CredentialUsage *u = cred->usage;
        usec_t n = now(CLOCK_MONOTONIC);
        bool stale = u->attempted_at == 0 || n - u->attempted_at >= m->config.usage_refresh;

        if (!u->curl && stale) {
                r = usage_start(cred);
                if (r < 0)
                        return r;
        }
        if (!u->curl)
                return reply_usage(cred, msg);

        sd_bus_message **w = reallocarray(u->waiters, u->n_waiters + 1, sizeof *w);
        if (!w)
                return -ENOMEM;
        u->waiters = w;
        u->waiters[u->n_waiters++] = sd_bus_message_ref(msg);
        return 1;
}
