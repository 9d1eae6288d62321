/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The manager: the credentials in memory, their refresh timers, single-flight refreshes and selection. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>

#include "authd-import.h"
#include "authd-login.h"
#include "authd-manager.h"
#include "authd-link.h"
#include "authd-usage-manager.h"
#include "bus-names.h"
#include "fileio.h"
#include "log.h"

#define REFRESH_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define REFRESH_RESPONSE_MAX (1024 * 1024)

/* For jitter only: without entropy (getrandom() fails only before the pool is ready or on a bad
 * argument) the clock spreads timers well enough. */
static uint64_t random_u64(void) {
        uint64_t v;
        if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t) sizeof v)
                v = now(CLOCK_MONOTONIC);
        return v;
}

int manager_new(sd_event *e, Manager **ret) {
        assert(e);
        assert(ret);

        _cleanup_(manager_freep) Manager *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(e);
        m->store.dir_fd = -EBADF;
        m->proxy_uid = UID_INVALID;
        m->admin_gid = GID_INVALID;
        r = authd_config_init(&m->config);
        if (r < 0)
                return r;
        r = curl_glue_new(e, &m->glue);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

static void credential_fail_waiters(Credential *cred, const char *name, const char *message);
static void credential_answer_waiters(Credential *cred);
static void manager_kick_queue(Manager *m);
static void credential_refresh_finished(Credential *cred);

static Credential *credential_free(Credential *cred) {
        if (!cred)
                return NULL;
        credential_fail_waiters(cred, SD_BUS_ERROR_NO_SERVER, "kiro-authd is shutting down.");
        credential_usage_free(cred);
        credential_link_free(cred);
        if (cred->curl) {
                curl_glue_remove(cred->manager->glue, cred->curl);
                curl_easy_cleanup(cred->curl);
        }
        curl_slist_free_all(cred->headers);
        refresh_request_done(&cred->request);
        erase_and_free_sized(cred->response, cred->response_size);
        sd_event_source_disable_unref(cred->timer);
        sd_event_source_disable_unref(cred->retry_timer);
        free(cred->token_waiters);
        free(cred->refresh_waiters);
        free(cred->object_path);
        credential_record_free(cred->record);
        free(cred);
        return NULL;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        login_free_all(m);
        for (size_t i = 0; i < m->n_credentials; i++)
                credential_free(m->credentials[i]);
        free(m->credentials);
        free(m->sticky_id);
        store_close(&m->store);
        curl_glue_free(m->glue);
        if (m->hooks && m->hooks->done)
                m->hooks->done(m);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        free(m->state_dir);
        authd_config_done(&m->config);
        free(m);
        return NULL;
}

int manager_resolve_users(Manager *m) {
        assert(m);

        if (m->user_mode) {
                /* Per-user instance: the user itself is both the proxy and the admin. */
                m->proxy_uid = getuid();
                return 0;
        }
        struct passwd *pw = m->config.proxy_user ? getpwnam(m->config.proxy_user) : NULL;
        if (pw)
                m->proxy_uid = pw->pw_uid;
        else
                log_warning("Proxy user '%s' does not exist; only root may call GetToken.", strna(m->config.proxy_user));
        struct group *gr = m->config.admin_group ? getgrnam(m->config.admin_group) : NULL;
        if (gr)
                m->admin_gid = gr->gr_gid;
        else
                log_notice("Admin group '%s' does not exist; only root may change credentials.", strna(m->config.admin_group));
        return 0;
}

Credential *manager_find(Manager *m, const char *id) {
        assert(m);
        assert(id);

        for (size_t i = 0; i < m->n_credentials; i++)
                if (streq(m->credentials[i]->record->id, id))
                        return m->credentials[i];
        return NULL;
}

static int credential_new(Manager *m, CredentialRecord *c, Credential **ret) {
        Credential *cred = calloc(1, sizeof *cred);
        if (!cred)
                return -ENOMEM;
        cred->manager = m;
        int r = kirod_credential_path(c->id, &cred->object_path);
        if (r < 0) {
                free(cred);
                return r;
        }
        cred->record = c;
        *ret = cred;
        return 0;
}

static int insert_sorted(Manager *m, Credential *cred) {
        Credential **n = realloc(m->credentials, sizeof(Credential *) * (m->n_credentials + 1));
        if (!n)
                return -ENOMEM;
        m->credentials = n;
        size_t i = 0;
        while (i < m->n_credentials && strcmp(m->credentials[i]->record->id, cred->record->id) < 0)
                i++;
        memmove(m->credentials + i + 1, m->credentials + i, sizeof(Credential *) * (m->n_credentials - i));
        m->credentials[i] = cred;
        m->n_credentials++;
        return 0;
}

static int on_loaded(CredentialRecord *c, void *userdata) {
        Manager *m = userdata;
        Credential *cred;
        int r;

        if (manager_find(m, c->id)) {
                log_warning("Duplicate credential id '%s', ignoring the second file.", c->id);
                credential_record_free(c);
                return 0;
        }
        r = credential_new(m, c, &cred);
        if (r < 0) {
                credential_record_free(c);
                return r;
        }
        r = insert_sorted(m, cred);
        if (r < 0) {
                credential_free(cred);
                return r;
        }
        return 0;
}

static void on_bad_file(const char *file, int error, const char *reason, void *userdata) {
        /* Reported, not fatal: the other credentials still work, and the file is left as it is. */
        log_error_errno(error, "Ignoring credential file '%s': %s.", file, reason);
}

int manager_load(Manager *m) {
        assert(m);
        assert(m->state_dir);

        int r = store_open(m->state_dir, &m->store);
        if (r < 0)
                return log_error_errno(r, "Failed to open state directory '%s': %m", m->state_dir);
        r = store_load_all(&m->store, on_loaded, on_bad_file, m);
        if (r < 0)
                return log_error_errno(r, "Failed to load credentials: %m");
        for (size_t i = 0; i < m->n_credentials; i++) {
                Credential *cred = m->credentials[i];
                if (!cred->record->machine_id && credential_record_ensure_machine_id(cred->record) >= 0)
                        (void) credential_save(cred);
                credential_schedule(cred);
        }
        log_info("Loaded %zu credential(s) from '%s'.", m->n_credentials, m->store.path);
        return 0;
}

int manager_add(Manager *m, CredentialRecord *c, Credential **ret) {
        assert(m);
        assert(c);
        assert(c->id);

        Credential *cred;
        int r;

        r = credential_record_ensure_machine_id(c);
        if (r < 0) {
                credential_record_free(c);
                return r;
        }
        r = store_save(&m->store, c);
        if (r < 0) {
                credential_record_free(c);
                return r;
        }
        r = credential_new(m, c, &cred);
        if (r < 0) {
                (void) store_remove(&m->store, c->id);
                credential_record_free(c);
                return r;
        }
        r = insert_sorted(m, cred);
        if (r < 0) {
                (void) store_remove(&m->store, c->id);
                credential_free(cred);
                return r;
        }
        if (m->hooks && m->hooks->credential_added)
                m->hooks->credential_added(cred);
        credential_schedule(cred);
        if (ret)
                *ret = cred;
        return 0;
}

int manager_remove(Manager *m, Credential *cred) {
        assert(m);
        assert(cred);
        assert(cred->manager == m);

        int r = store_remove(&m->store, cred->record->id);
        if (r < 0)
                return r;
        /* An explicit unlink: the directory fd leaves the service manager's fd store too. */
        (void) credential_link_unlink(cred, false);
        for (size_t i = 0; i < m->n_credentials; i++)
                if (m->credentials[i] == cred) {
                        memmove(m->credentials + i, m->credentials + i + 1,
                                sizeof(Credential *) * (m->n_credentials - i - 1));
                        m->n_credentials--;
                        break;
                }
        if (cred->refreshing)
                m->n_refreshing--;
        if (m->hooks && m->hooks->credential_removed)
                m->hooks->credential_removed(cred);
        credential_fail_waiters(cred, KIROD_ERROR_NO_SUCH_CREDENTIAL, "The credential was removed.");
        credential_free(cred);
        /* Its refresh slot (MaxParallelRefresh=) is free now: the next queued refresh may start. */
        manager_kick_queue(m);
        return 0;
}

/* Stops the refresh in flight, if any, without applying its answer. */
static void credential_cancel_refresh(Credential *cred) {
        if (!cred->refreshing)
                return;
        if (cred->curl)
                curl_glue_remove(cred->manager->glue, cred->curl);
        credential_refresh_finished(cred);
        log_debug("Cancelled the refresh in flight of credential '%s'.", cred->record->id);
}

int manager_replace_login(Manager *m, Credential *cred, CredentialRecord *login) {
        assert(m);
        assert(cred);
        assert(login);
        assert(cred->manager == m);

        _cleanup_(credential_record_freep) CredentialRecord *copy = NULL;
        _cleanup_free_ char *text = NULL;
        const char *perr;
        int r;

        /* Replace the login material on a copy first and write it: nothing changes unless it is stored. */
        r = credential_record_to_json(cred->record, &text);
        if (r >= 0)
                r = credential_record_from_json(text, strlen(text), &copy, &perr);
        if (text)
                explicit_bzero(text, strlen(text));
        if (r < 0) {
                credential_record_free(login);
                return r;
        }
        credential_record_take_login(copy, login);
        credential_record_free(login);
        r = store_save(&m->store, copy);
        if (r < 0)
                return r;

        /* The old login's refresh must not land on the new one: on success it would write the old lineage's
         * tokens over the new ones, on invalid_grant it would mark the fresh login needs-login. */
        credential_cancel_refresh(cred);
        credential_record_free(cred->record);
        cred->record = TAKE_PTR(copy);
        cred->retry_at = 0;
        cred->save_pending = false;     /* the old lineage's unsaved tokens are moot now */
        cred->token_rejected = false;
        cred->queued = false;
        credential_schedule(cred);

        /* Callers parked on the old refresh are served by the new login: at once when its token is
         * usable, else by a refresh of the new login. */
        if (cred->n_token_waiters > 0 || cred->n_refresh_waiters > 0) {
                if (credential_token_usable(cred, now(CLOCK_REALTIME)))
                        credential_answer_waiters(cred);
                else if (credential_start_refresh(cred, true) < 0)
                        credential_fail_waiters(cred, KIROD_ERROR_REFRESH_FAILED,
                                          "The credential was replaced and its new login cannot be refreshed.");
        }
        credential_emit_changed(cred);
        manager_kick_queue(m);
        return 0;
}

CredentialState credential_state(Credential *cred) {
        assert(cred);

        if (!cred->record->enabled)
                return CREDENTIAL_DISABLED;
        if (cred->record->health == HEALTH_NEEDS_LOGIN)
                return CREDENTIAL_NEEDS_LOGIN;
        if (cred->refreshing)
                return CREDENTIAL_REFRESHING;
        if (cred->record->cooldown_until > now(CLOCK_REALTIME))
                return CREDENTIAL_COOLDOWN;
        return CREDENTIAL_ACTIVE;
}

bool credential_token_usable(Credential *cred, usec_t n) {
        assert(cred);

        CredentialRecord *c = cred->record;
        if (!c->access_token || cred->token_rejected || cred->save_pending)
                return false;
        if (c->expires_at == USEC_INFINITY)
                return true;
        return c->expires_at > n + TOKEN_MIN_VALIDITY_USEC;
}

int credential_save(Credential *cred) {
        assert(cred);

        int r = store_save(&cred->manager->store, cred->record);
        if (r < 0)
                return log_error_errno(r, "Failed to write credential '%s': %m", cred->record->id);
        if (r > 0)
                log_warning("Credential '%s' was written, but its directory could not be synced: it may not survive a crash.",
                            cred->record->id);
        if (cred->save_pending) {
                cred->save_pending = false;
                if (streq_ptr(cred->record->last_error, "cannot write the credential file"))
                        cred->record->last_error = (free(cred->record->last_error), NULL);
                log_notice("Credential '%s': the rotated refresh token is stored now.", cred->record->id);
                /* Unsaved and LastError changed, whichever path wrote it (timer, GetToken, Refresh). */
                credential_emit_changed(cred);
        }
        return 0;
}

void credential_emit_changed(Credential *cred) {
        assert(cred);

        Manager *m = cred->manager;
        if (m->hooks && m->hooks->credential_changed)
                m->hooks->credential_changed(cred);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Credential *cred = userdata;
        cred->next_refresh_at = 0;
        if (cred->save_pending) {
                /* The last refresh could not be written: write it now rather than refresh again. */
                cred->retry_at = 0;
                if (credential_save(cred) < 0)
                        cred->retry_at = now(CLOCK_BOOTTIME) + cred->manager->config.retry_initial;
                credential_schedule(cred);
                credential_emit_changed(cred);
                return 0;
        }
        (void) credential_start_refresh(cred, true);
        return 0;
}

static bool credential_refreshable(Credential *cred) {
        CredentialRecord *c = cred->record;
        return c->enabled && c->health == HEALTH_OK && c->refresh_token && c->method != AUTH_METHOD_API_KEY;
}

/* Arms *source (created on first use, on clock) at the absolute time when. */
static int arm_timer(Credential *cred, sd_event_source **source, clockid_t clock, usec_t when, const char *what) {
        int r;

        if (*source) {
                r = sd_event_source_set_time(*source, when);
                if (r >= 0)
                        r = sd_event_source_set_enabled(*source, SD_EVENT_ONESHOT);
                return r;
        }
        r = sd_event_add_time(cred->manager->event, source, clock, when, 10 * USEC_PER_MSEC, on_timer, cred);
        if (r >= 0)
                (void) sd_event_source_set_description(*source, what);
        return r;
}

static void disarm_timer(sd_event_source *source) {
        if (source)
                (void) sd_event_source_set_enabled(source, SD_EVENT_OFF);
}

/* One clock per kind of deadline (docs/ARCHITECTURE.md "Clocks"): the refresh before expiry is a
 * wall-clock instant, so its timer is CLOCK_REALTIME and follows the wall clock when it jumps; the retry
 * after a failure ends a duration (the backoff), so its timer is CLOCK_BOOTTIME, which no jump of the
 * wall clock stretches or cuts, and which counts a suspend (a retry due meanwhile runs at resume). */
void credential_schedule(Credential *cred) {
        assert(cred);

        Manager *m = cred->manager;
        usec_t when;
        int r;

        if (cred->refreshing || !credential_refreshable(cred)) {
                cred->next_refresh_at = 0;
                disarm_timer(cred->timer);
                disarm_timer(cred->retry_timer);
                return;
        }
        if (cred->retry_at) {
                disarm_timer(cred->timer);
                cred->next_refresh_at = map_clock(cred->retry_at, CLOCK_BOOTTIME, CLOCK_REALTIME);
                r = arm_timer(cred, &cred->retry_timer, CLOCK_BOOTTIME, cred->retry_at, "retry-timer");
                if (r < 0)
                        log_error_errno(r, "Failed to arm the retry timer for '%s': %m", cred->record->id);
                return;
        }
        disarm_timer(cred->retry_timer);
        if (cred->record->expires_at == 0 || !cred->record->access_token)
                when = now(CLOCK_REALTIME);
        else {
                usec_t lead = m->config.refresh_margin + (m->config.refresh_jitter ? random_u64() % (m->config.refresh_jitter + 1) : 0);
                when = cred->record->expires_at > lead ? cred->record->expires_at - lead : 0;
        }
        if (when == 0)
                when = 1;
        cred->next_refresh_at = when;
        r = arm_timer(cred, &cred->timer, CLOCK_REALTIME, when, "refresh-timer");
        if (r < 0)
                log_error_errno(r, "Failed to arm refresh timer for '%s': %m", cred->record->id);
}

static void credential_fail_waiters(Credential *cred, const char *name, const char *message) {
        for (size_t i = 0; i < cred->n_token_waiters; i++) {
                (void) sd_bus_reply_method_errorf(cred->token_waiters[i], name, "%s", message);
                sd_bus_message_unref(cred->token_waiters[i]);
        }
        cred->n_token_waiters = 0;
        for (size_t i = 0; i < cred->n_refresh_waiters; i++) {
                (void) sd_bus_reply_method_errorf(cred->refresh_waiters[i], name, "%s", message);
                sd_bus_message_unref(cred->refresh_waiters[i]);
        }
        cred->n_refresh_waiters = 0;
}

static void credential_answer_waiters(Credential *cred) {
        usec_t n = now(CLOCK_REALTIME);
        for (size_t i = 0; i < cred->n_token_waiters; i++) {
                if (credential_token_usable(cred, n) && cred->manager->hooks && cred->manager->hooks->reply_token)
                        (void) cred->manager->hooks->reply_token(cred, cred->token_waiters[i]);
                else
                        (void) sd_bus_reply_method_errorf(cred->token_waiters[i], KIROD_ERROR_REFRESH_FAILED,
                                                          "Refreshing credential '%s' failed: %s", cred->record->id,
                                                          strna(cred->record->last_error));
                sd_bus_message_unref(cred->token_waiters[i]);
        }
        cred->n_token_waiters = 0;
        for (size_t i = 0; i < cred->n_refresh_waiters; i++) {
                (void) sd_bus_reply_method_return(cred->refresh_waiters[i], NULL);
                sd_bus_message_unref(cred->refresh_waiters[i]);
        }
        cred->n_refresh_waiters = 0;
}

static void manager_kick_queue(Manager *m) {
        for (size_t i = 0; i < m->n_credentials && m->n_refreshing < m->config.max_parallel_refresh; i++)
                if (m->credentials[i]->queued) {
                        m->credentials[i]->queued = false;
                        (void) credential_start_refresh(m->credentials[i], true);
                }
}

static void credential_refresh_finished(Credential *cred) {
        Manager *m = cred->manager;
        cred->refreshing = false;
        m->n_refreshing--;
        if (cred->curl) {
                curl_easy_cleanup(cred->curl);
                cred->curl = NULL;
        }
        curl_slist_free_all(cred->headers);
        cred->headers = NULL;
        refresh_request_done(&cred->request);
        cred->response = erase_and_free_sized(cred->response, cred->response_size);
        cred->response_size = 0;
}

static void credential_mark_needs_login(Credential *cred, const char *error) {
        CredentialRecord *c = cred->record;
        static const char *const fix[_AUTH_METHOD_MAX] = {
                [AUTH_METHOD_SOCIAL] = "log in again (kiro-cli login or the Kiro IDE), then 'kiroctl import --replace --id",
                [AUTH_METHOD_BUILDER_ID] = "run 'kiro-cli login', then 'kiroctl import --from-kiro-cli --replace --id",
                [AUTH_METHOD_IDC] = "run 'kiro-cli login', then 'kiroctl import --from-kiro-cli --replace --id",
                [AUTH_METHOD_EXTERNAL_IDP] = "log in again in the Kiro IDE, then 'kiroctl import --from-kiro-ide --replace --id",
                [AUTH_METHOD_API_KEY] = "import a new key with 'kiroctl import --api-key-file FILE --replace --id",
                [AUTH_METHOD_KIMI_DEVICE] = "log in again with 'kiroctl login kimi --replace --id",
        };
        char hint[256];

        c->health = HEALTH_NEEDS_LOGIN;
        (void) free_and_strdup(&c->last_error, error);
        cred->retry_at = 0;
        (void) credential_save(cred);
        /* A device login is brought back by logging in again, whatever the method. */
        snprintf(hint, sizeof hint, "%s %s'",
                 streq_ptr(c->source_format, "login") && c->method != AUTH_METHOD_KIMI_DEVICE
                         ? "log in again with 'kiroctl login builder-id|idc|google|github --replace --id"
                         : fix[c->method],
                 c->id);
        log_credential_event(LOG_WARNING, KIROD_MESSAGE_NEEDS_LOGIN, c->id, "needs-login",
                             "Credential '%s' needs a new login (%s): %s.", c->id, strna(error), hint);
}

/* Counts one refresh attempt of cred (the Refreshes property); saturates. */
static void credential_count_refresh(Credential *cred, RefreshResultKind k) {
        assert(k >= 0 && k < _REFRESH_RESULT_MAX);
        if (cred->refreshes[k] < UINT64_MAX)
                cred->refreshes[k]++;
}

static void on_refresh_done(CurlGlue *g, CURL *curl, CURLcode result, void *userdata) {
        Credential *cred = userdata;
        CredentialRecord *c = cred->record;
        Manager *m = cred->manager;
        RefreshResult res = {};
        RefreshOutcome o;
        long status = 0;
        int r;
        /* When curl handed over the whole answer: the start of the crash window of docs/SECURITY.md. */
        usec_t answered = now(CLOCK_MONOTONIC);

        if (result == CURLE_OK)
                (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (result == CURLE_WRITE_ERROR && cred->response_size > REFRESH_RESPONSE_MAX)
                o = refresh_parse_response(c->method, 0, "answer too large", 16, &res);
        else if (result != CURLE_OK)
                o = refresh_parse_response(c->method, 0, curl_easy_strerror(result),
                                           strlen(curl_easy_strerror(result)), &res);
        else
                o = refresh_parse_response(c->method, status, cred->response, cred->response_size, &res);
        credential_refresh_finished(cred);

        usec_t n = now(CLOCK_REALTIME);
        switch (o) {
        case REFRESH_OK:
                /* The rotated refresh token must be on disk before the new access token leaves, and
                 * nothing else (no log line, no bus message) happens between the answer and that write:
                 * a crash in between loses a login the server has already rotated. */
                erase_and_free(c->access_token);
                c->access_token = TAKE_PTR(res.access_token);
                if (res.refresh_token) {
                        erase_and_free(c->refresh_token);
                        c->refresh_token = TAKE_PTR(res.refresh_token);
                }
                if (res.profile_arn && !streq_ptr(res.profile_arn, c->profile_arn)) {
                        free(c->profile_arn);
                        c->profile_arn = TAKE_PTR(res.profile_arn);
                }
                c->expires_at = n + res.expires_in;
                cred->token_rejected = false;
                c->last_refresh_at = n;
                c->consecutive_failures = 0;
                c->health = HEALTH_OK;
                c->last_error = (free(c->last_error), NULL);
                cred->retry_at = 0;
                r = credential_save(cred);
                if (r >= 0) {
                        usec_t stored = now(CLOCK_MONOTONIC);
                        log_debug("Credential '%s': the refresh answer was on disk %llu us after it arrived "
                                  "(CLOCK_MONOTONIC %llu to %llu us).", c->id,
                                  (unsigned long long) (stored - answered), (unsigned long long) answered,
                                  (unsigned long long) stored);
                }
                if (res.profile_arn_rejected)
                        log_warning("Ignoring the profile ARN of the refresh answer for '%s': its region is not a valid region.",
                                    c->id);
                credential_count_refresh(cred, refresh_result_kind_of(o, r >= 0));
                if (r < 0) {
                        /* Keep the new tokens in memory and try to write them again soon; hand out nothing
                         * the disk does not have. The server has already replaced the stored refresh token,
                         * so until the write succeeds this login exists only in this process: say so. */
                        cred->save_pending = true;
                        (void) free_and_strdup(&c->last_error, "cannot write the credential file");
                        cred->retry_at = now(CLOCK_BOOTTIME) + m->config.retry_initial;
                        log_event(LOG_WARNING, KIROD_MESSAGE_CREDENTIAL_UNSAVED,
                                  "Credential '%s' was refreshed, but its rotated refresh token could not be "
                                  "written to '%s' (%s): the login exists only in memory until the write "
                                  "succeeds (retried every %llus and at stop). Make the state directory "
                                  "writable.", c->id, m->store.path, strerror(-r),
                                  (unsigned long long) (m->config.retry_initial / USEC_PER_SEC));
                        credential_fail_waiters(cred, KIROD_ERROR_STORAGE_FAILED,
                                          "The credential was refreshed but could not be stored.");
                } else {
                        log_credential_event(LOG_INFO, KIROD_MESSAGE_CREDENTIAL_REFRESHED, c->id, "ok",
                                             "Refreshed credential '%s', valid for %llus.", c->id,
                                             (unsigned long long) (res.expires_in / USEC_PER_SEC));
                        credential_link_write_back(cred);
                        credential_answer_waiters(cred);
                }
                break;

        case REFRESH_PERMANENT:
                credential_count_refresh(cred, refresh_result_kind_of(o, false));
                c->consecutive_failures++;
                credential_mark_needs_login(cred, res.error);
                credential_fail_waiters(cred, KIROD_ERROR_NEEDS_LOGIN, "The credential needs a new login; see 'kiroctl status'.");
                break;

        case REFRESH_TRANSIENT: {
                credential_count_refresh(cred, refresh_result_kind_of(o, false));
                c->consecutive_failures++;
                (void) free_and_strdup(&c->last_error, res.error);
                /* Exponential backoff with ±20 % jitter, capped. */
                usec_t backoff = m->config.retry_initial;
                for (unsigned i = 1; i < c->consecutive_failures && backoff < m->config.retry_max; i++)
                        backoff *= 2;
                backoff = MIN(backoff, m->config.retry_max);
                backoff = backoff * 8 / 10 + (backoff ? random_u64() % (backoff * 4 / 10 + 1) : 0);
                cred->retry_at = now(CLOCK_BOOTTIME) + backoff;
                (void) credential_save(cred);
                log_credential_event(LOG_WARNING, KIROD_MESSAGE_REFRESH_FAILED, c->id, "transient",
                                     "Refreshing credential '%s' failed (%s), attempt %u; retrying in %llus.", c->id,
                                     strna(res.error), c->consecutive_failures,
                                     (unsigned long long) (backoff / USEC_PER_SEC));
                /* Waiters still get the current token while it is valid. */
                credential_answer_waiters(cred);
                break;
        }
        }
        refresh_result_done(&res);
        credential_schedule(cred);
        credential_emit_changed(cred);
        manager_kick_queue(m);
}

static size_t on_refresh_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        Credential *cred = userdata;
        size_t n = size * nmemb;
        if (cred->response_size + n > REFRESH_RESPONSE_MAX) {
                /* Marks "too large" for on_refresh_done(); the size must not outgrow the buffer it wipes. */
                cred->response = erase_and_free_sized(cred->response, cred->response_size);
                cred->response_size = REFRESH_RESPONSE_MAX + 1;
                return 0;
        }
        char *p = malloc(cred->response_size + n + 1);
        if (!p)
                return 0;
        if (cred->response)
                memcpy(p, cred->response, cred->response_size);
        memcpy(p + cred->response_size, ptr, n);
        p[cred->response_size + n] = 0;
        erase_and_free_sized(cred->response, cred->response_size);
        cred->response = p;
        cred->response_size += n;
        return n;
}

static int append_header(struct curl_slist **l, const char *name, const char *v) {
        char buf[512];
        /* "Name:" with an empty value removes a header curl would add by itself. */
        snprintf(buf, sizeof buf, "%s:%s%s", name, isempty(v) ? "" : " ", strempty(v));
        struct curl_slist *n = curl_slist_append(*l, buf);
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

int credential_start_refresh(Credential *cred, bool force) {
        assert(cred);

        Manager *m = cred->manager;
        CredentialRecord *c = cred->record;
        _cleanup_free_ char *message = NULL;
        char uuid[37];
        sd_id128_t id;
        int r;

        if (cred->refreshing)
                return 0; /* single flight: the running refresh serves everyone */
        if (!force && cred->retry_at > now(CLOCK_BOOTTIME))
                return 0;
        if (m->n_refreshing >= m->config.max_parallel_refresh) {
                cred->queued = true;
                return 0;
        }
        if (c->method == AUTH_METHOD_API_KEY)
                return -EOPNOTSUPP;

        /* An AWS refresh token belongs to the client registration that obtained it: once the registration
         * has lapsed no refresh can work, and registering a new client would not make the old refresh
         * token valid. Say so instead of sending a request that can only fail. */
        if ((c->method == AUTH_METHOD_BUILDER_ID || c->method == AUTH_METHOD_IDC) && c->client_secret_expires_at != 0 &&
            c->client_secret_expires_at != USEC_INFINITY && c->client_secret_expires_at <= now(CLOCK_REALTIME)) {
                char buf[RFC3339_MAX], e[96];
                snprintf(e, sizeof e, "the client registration expired on %s",
                         format_rfc3339(buf, sizeof buf, c->client_secret_expires_at));
                credential_count_refresh(cred, REFRESH_RESULT_NO_LOGIN);
                credential_mark_needs_login(cred, e);
                credential_fail_waiters(cred, KIROD_ERROR_NEEDS_LOGIN, "The credential needs a new login; see 'kiroctl status'.");
                credential_schedule(cred);
                credential_emit_changed(cred);
                return -ENOKEY;
        }

        r = refresh_build_request(c, m->config.kiro_auth_url, m->config.oidc_url, m->config.kimi_auth_url, &cred->request,
                                  &message);
        if (r == REFRESH_E_NO_LOGIN) {
                credential_count_refresh(cred, REFRESH_RESULT_NO_LOGIN);
                credential_mark_needs_login(cred, "the credential has no refresh token or client registration");
                credential_fail_waiters(cred, KIROD_ERROR_NEEDS_LOGIN, "The credential needs a new login; see 'kiroctl status'.");
                credential_schedule(cred);
                credential_emit_changed(cred);
                return -ENOKEY;
        }
        if (r != 0) {
                credential_count_refresh(cred, REFRESH_RESULT_LOCAL_ERROR);
                credential_emit_changed(cred);
        }
        if (r > 0) {
                log_error("Cannot refresh credential '%s': %s", c->id, message ?: refresh_error_to_string(r));
                return -EINVAL;
        }
        if (r < 0)
                return log_error_errno(r, "Cannot refresh credential '%s': %m", c->id);

        cred->curl = curl_easy_init();
        if (!cred->curl) {
                refresh_request_done(&cred->request);
                credential_count_refresh(cred, REFRESH_RESULT_LOCAL_ERROR);
                credential_emit_changed(cred);
                return -ENOMEM;
        }
        (void) sd_id128_randomize(&id);
        snprintf(uuid, sizeof uuid, SD_ID128_UUID_FORMAT_STR, SD_ID128_FORMAT_VAL(id));
        if (append_header(&cred->headers, "Content-Type", cred->request.content_type) < 0 ||
            append_header(&cred->headers, "Accept", "application/json") < 0 ||
            append_header(&cred->headers, "amz-sdk-invocation-id", uuid) < 0 ||
            append_header(&cred->headers, "amz-sdk-request", "attempt=1; max=1") < 0 ||
            append_header(&cred->headers, "Expect", "") < 0)
                r = -ENOMEM;
        STRV_FOREACH(h, cred->request.headers) {
                struct curl_slist *n = r >= 0 ? curl_slist_append(cred->headers, *h) : NULL;
                if (!n)
                        r = -ENOMEM;
                else
                        cred->headers = n;
        }
        if (r >= 0)
                r = curl_glue_setup_easy(cred->curl, cred->request.url, m->config.ca_file, REFRESH_TIMEOUT_USEC);
        if (r >= 0 &&
            (curl_easy_setopt(cred->curl, CURLOPT_POSTFIELDS, cred->request.body) != CURLE_OK ||
             curl_easy_setopt(cred->curl, CURLOPT_POSTFIELDSIZE, (long) cred->request.body_size) != CURLE_OK ||
             curl_easy_setopt(cred->curl, CURLOPT_HTTPHEADER, cred->headers) != CURLE_OK ||
             curl_easy_setopt(cred->curl, CURLOPT_USERAGENT, cred->request.user_agent) != CURLE_OK ||
             curl_easy_setopt(cred->curl, CURLOPT_WRITEFUNCTION, on_refresh_data) != CURLE_OK ||
             curl_easy_setopt(cred->curl, CURLOPT_WRITEDATA, cred) != CURLE_OK))
                r = -EIO;
        if (r >= 0)
                r = curl_glue_add_proxied(m->glue, cred->curl, cred->record->proxy, m->config.noproxy,
                                          on_refresh_done, cred);
        if (r < 0) {
                curl_easy_cleanup(cred->curl);
                cred->curl = NULL;
                curl_slist_free_all(cred->headers);
                cred->headers = NULL;
                refresh_request_done(&cred->request);
                credential_count_refresh(cred, REFRESH_RESULT_LOCAL_ERROR);
                credential_emit_changed(cred);
                return log_error_errno(r, "Failed to start refresh of '%s': %m", c->id);
        }
        cred->refreshing = true;
        m->n_refreshing++;
        cred->next_refresh_at = 0;
        disarm_timer(cred->timer);
        disarm_timer(cred->retry_timer);
        log_debug("Refreshing credential '%s' at '%s'.", c->id, cred->request.url);
        credential_emit_changed(cred);
        return 1;
}

static bool credential_usable_for(Credential *cred, Provider p, usec_t n) {
        CredentialRecord *c = cred->record;
        return c->provider == p && c->enabled && c->health == HEALTH_OK && c->cooldown_until <= n;
}

Credential *manager_select(Manager *m, Provider p, sd_bus_error *error) {
        assert(m);
        assert(p >= 0 && p < _PROVIDER_MAX);

        usec_t n = now(CLOCK_REALTIME);
        size_t total = 0, needs_login = 0, disabled = 0, cooling = 0;

        if (m->config.policy == SELECTION_STICKY && m->sticky_id) {
                Credential *cred = manager_find(m, m->sticky_id);
                if (cred && credential_usable_for(cred, p, n))
                        return cred;
        }
        for (size_t k = 0; k < m->n_credentials; k++) {
                size_t i = m->config.policy != SELECTION_STICKY ? (m->rr_next + k) % m->n_credentials : k;
                Credential *cred = m->credentials[i];
                if (cred->record->provider != p)
                        continue;
                total++;
                if (!cred->record->enabled)
                        disabled++;
                else if (cred->record->health != HEALTH_OK)
                        needs_login++;
                else if (cred->record->cooldown_until > n)
                        cooling++;
                if (!credential_usable_for(cred, p, n))
                        continue;
                if (m->config.policy != SELECTION_STICKY)
                        m->rr_next = (i + 1) % m->n_credentials;
                else
                        (void) free_and_strdup(&m->sticky_id, cred->record->id);
                return cred;
        }
        if (total == 0)
                sd_bus_error_setf(error, KIROD_ERROR_NO_USABLE_CREDENTIAL,
                                  "No '%s' credential is imported; import one with 'kiroctl import'.",
                                  provider_to_string(p));
        else
                sd_bus_error_setf(error, KIROD_ERROR_NO_USABLE_CREDENTIAL,
                                  "None of the %zu '%s' credential(s) is usable (%zu need a new login, %zu disabled, "
                                  "%zu cooling down); see 'kiroctl status'.",
                                  total, provider_to_string(p), needs_login, disabled, cooling);
        return NULL;
}

/* systemd credentials (LoadCredential=) imported once at start-up; an existing credential of the same id
 * is kept, because its refresh token may have rotated since. */
int manager_import_system_credentials(Manager *m) {
        assert(m);

        static const struct {
                const char *name;
                ImportFormat format;
                const char *id;
        } table[] = {
                { "kiro-refresh-token", IMPORT_REFRESH_TOKEN, "systemd-refresh-token" },
                { "kiro-api-key", IMPORT_API_KEY, "systemd-api-key" },
        };
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                _cleanup_free_ char *path = NULL, *message = NULL;
                _cleanup_close_ int fd = -EBADF;
                CredentialRecord *c = NULL;
                int r;

                if (manager_find(m, table[i].id))
                        continue;
                if (asprintf(&path, "%s/%s", dir, table[i].name) < 0)
                        return log_oom();
                fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        if (errno != ENOENT)
                                log_warning_errno(errno, "Cannot open systemd credential '%s': %m", table[i].name);
                        continue;
                }
                r = import_from_fds(table[i].format, fd, -EBADF, &c, &message);
                if (r != 0) {
                        log_error("Ignoring systemd credential '%s': %s", table[i].name, strna(message));
                        continue;
                }
                c->id = strdup(table[i].id);
                c->source_path = strdup(table[i].name);
                c->source_format = (free(c->source_format), strdup("systemd-credential"));
                c->imported_at = now(CLOCK_REALTIME);
                r = manager_add(m, c, NULL);
                if (r < 0)
                        log_error_errno(r, "Failed to store systemd credential '%s': %m", table[i].name);
                else
                        log_event(LOG_INFO, KIROD_MESSAGE_CREDENTIAL_IMPORTED,
                                  "Imported credential '%s' from systemd credential '%s'.", table[i].id, table[i].name);
        }
        return 0;
}

int manager_flush_unsaved(Manager *m) {
        assert(m);

        int ret = 0;

        for (size_t i = 0; i < m->n_credentials; i++) {
                Credential *cred = m->credentials[i];
                int r;

                if (!cred->save_pending)
                        continue;
                r = store_save(&m->store, cred->record);
                if (r >= 0) {
                        cred->save_pending = false;
                        log_notice("Credential '%s': the rotated refresh token was stored at stop.", cred->record->id);
                        continue;
                }
                /* The server has already rotated the refresh token: the one on disk is spent, and the new one
                 * dies with this process. Nothing can bring it back but a new login. */
                log_event(LOG_ERR, KIROD_MESSAGE_CREDENTIAL_LOST,
                          "Credential '%s' is LOST: its rotated refresh token could not be written to '%s' (%s) "
                          "and kiro-authd is stopping; the stored file holds a refresh token the server has "
                          "already replaced. Log in again and import the new login with "
                          "'kiroctl import --replace --id %s'.",
                          cred->record->id, m->store.path, strerror(-r), cred->record->id);
                if (ret == 0)
                        ret = r;
        }
        return ret;
}
