/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* `kiroctl login`: a device login through kiro-authd (StartLogin, LoginFinished, CancelLogin). */
#include <assert.h>
#include <signal.h>
#include <unistd.h>

#include "bus-names.h"
#include "config.h"
#include "json-util.h"
#include "kiroctl-bus.h"
#include "kiroctl-login.h"
#include "time-util.h"

#if HAVE_QRENCODE
#include <qrencode.h>
#endif

/* Lines on a pipe are printed this often while waiting; a terminal gets one line updated every second. */
#define PLAIN_PROGRESS_USEC (30 * USEC_PER_SEC)
/* How long past the code's expiry we wait for kiro-authd's LoginFinished before giving up ourselves. */
#define EXPIRY_GRACE_USEC (30 * USEC_PER_SEC)

static const struct {
        const char *what, *provider, *method, *title;
} login_table[] = {
        { "builder-id", "kiro", "builder-id", "AWS Builder ID" },
        { "idc",        "kiro", "idc",        "IAM Identity Center" },
        { "google",     "kiro", "google",     "Google (Kiro)" },
        { "github",     "kiro", "github",     "GitHub (Kiro)" },
        { "kimi",       "kimi", "device",     "Kimi Code" },
};

int login_names(const char *what, const char **ret_provider, const char **ret_method) {
        for (size_t i = 0; i < ELEMENTSOF(login_table); i++)
                if (streq_ptr(what, login_table[i].what)) {
                        *ret_provider = login_table[i].provider;
                        *ret_method = login_table[i].method;
                        return 0;
                }
        return -EINVAL;
}

static const char *login_title(const char *what) {
        for (size_t i = 0; i < ELEMENTSOF(login_table); i++)
                if (streq(what, login_table[i].what))
                        return login_table[i].title;
        return what;
}

int login_print_qr(FILE *f, const char *text) {
#if HAVE_QRENCODE
        QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
        const int quiet = 2;

        if (!q)
                return errno > 0 ? -errno : -EINVAL;
        int w = q->width;
        /* Dark modules as the terminal's background, light ones as blocks: works on dark and light themes
         * because the quiet zone is drawn too. Two rows per character cell. */
        for (int y = -quiet; y < w + quiet; y += 2) {
                fputs("    ", f);
                for (int x = -quiet; x < w + quiet; x++) {
                        bool top = y >= 0 && y < w && x >= 0 && x < w && (q->data[y * w + x] & 1);
                        bool bottom = y + 1 >= 0 && y + 1 < w && x >= 0 && x < w && (q->data[(y + 1) * w + x] & 1);
                        fputs(top && bottom ? " " : top ? "\u2584" : bottom ? "\u2580" : "\u2588", f);
                }
                fputc('\n', f);
        }
        QRcode_free(q);
        return 0;
#else
        return -EOPNOTSUPP;
#endif
}

typedef struct LoginWait {
        sd_event *event;
        sd_bus *bus;
        const char *login_id;
        usec_t expires_at;              /* CLOCK_REALTIME */
        bool tty;
        usec_t last_plain;
        bool progress_shown;

        bool done;                      /* stop waiting (no sd_event_exit(): it would close the bus) */
        bool finished;
        bool cancelled;
        char *object_path;
        char *error;
} LoginWait;

static void clear_progress(LoginWait *w) {
        if (w->tty && w->progress_shown) {
                fputs("\r\033[K", stdout);
                fflush(stdout);
                w->progress_shown = false;
        }
}

static void show_progress(LoginWait *w) {
        usec_t n = now(CLOCK_REALTIME);
        usec_t left = w->expires_at > n ? w->expires_at - n : 0;
        unsigned s = (unsigned) ((left + USEC_PER_SEC - 1) / USEC_PER_SEC);

        if (w->tty) {
                printf("\r\033[KWaiting for the login to be confirmed... %u:%02u left (Ctrl-C cancels)", s / 60, s % 60);
                fflush(stdout);
                w->progress_shown = true;
        } else if (w->last_plain == 0 || n >= w->last_plain + PLAIN_PROGRESS_USEC) {
                printf("Waiting for the login to be confirmed... %u:%02u left\n", s / 60, s % 60);
                fflush(stdout);
                w->last_plain = n;
        }
}

static int on_login_finished(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        LoginWait *w = userdata;
        const char *id, *path, *error;

        if (sd_bus_message_read(m, "sos", &id, &path, &error) < 0 || !streq(id, w->login_id))
                return 0;
        w->finished = true;
        if (!isempty(error))
                (void) free_and_strdup(&w->error, error);
        else
                (void) free_and_strdup(&w->object_path, path);
        w->done = true;
        return 0;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        LoginWait *w = userdata;

        if (now(CLOCK_REALTIME) > w->expires_at + EXPIRY_GRACE_USEC) {
                (void) free_and_strdup(&w->error, "the code expired (kiro-authd did not report the end of the login)");
                w->finished = true;
                w->done = true;
        return 0;
        }
        show_progress(w);
        (void) sd_event_source_set_time_relative(s, USEC_PER_SEC);
        return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        LoginWait *w = userdata;
        w->cancelled = true;
        w->done = true;
        return 0;
}

static int on_disconnect(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        LoginWait *w = userdata;
        (void) free_and_strdup(&w->error, "lost the connection to kiro-authd");
        w->finished = true;
        w->done = true;
        return 0;
}

static int print_start_json(const char *login_id, const char *uri, const char *complete, const char *code,
                            uint64_t expires) {
        _cleanup_json_ json_object *o = json_object_new_object();
        if (!o || json_set_string(o, "login_id", login_id) < 0 || json_set_string(o, "verification_uri", uri) < 0 ||
            json_set_string(o, "verification_uri_complete", complete) < 0 || json_set_string(o, "user_code", code) < 0 ||
            json_add(o, "expires_at_usec", json_object_new_int64((int64_t) expires)) < 0)
                return -ENOMEM;
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        return 0;
}

int login_run(sd_bus *bus, const LoginOptions *o, ErrorInfo *e) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_slot_unrefp) sd_bus_slot *match = NULL, *disconnect = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(credential_done) Credential c = {};
        const char *provider, *method, *login_id, *uri, *complete, *code;
        uint64_t expires;
        LoginWait w = {};
        sigset_t mask;
        int r;

        assert(bus);
        assert(o);

        r = login_names(o->what, &provider, &method);
        if (r < 0)
                return error_info_set_detail(e, ERROR_CONTEXT_USAGE, EINVAL,
                                             "unknown login '%s': use builder-id, idc, google, github or kimi",
                                             strna(o->what));

        /* Ctrl-C while kiro-authd answers must still cancel the login: block it now, take it from the loop. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (!o->no_wait && sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return error_info_set(e, ERROR_CONTEXT_ANY, errno, NULL);

        /* Listen before asking, so that a login ending at once is not missed. */
        if (!o->no_wait) {
                r = sd_bus_match_signal(bus, &match, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                        KIROD_SIGNAL_LOGIN_FINISHED, on_login_finished, &w);
                if (r < 0)
                        return error_info_set(e, ERROR_CONTEXT_MANAGER, -r, NULL);
        }

        r = sd_bus_message_new_method_call(bus, &call, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                           "StartLogin");
        if (r >= 0)
                r = sd_bus_message_append(call, "ss", provider, method);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{sv}");
        if (r >= 0 && o->start_url)
                r = sd_bus_message_append(call, "{sv}", "start_url", "s", o->start_url);
        if (r >= 0 && o->region)
                r = sd_bus_message_append(call, "{sv}", "region", "s", o->region);
        if (r >= 0 && o->id)
                r = sd_bus_message_append(call, "{sv}", "id", "s", o->id);
        if (r >= 0 && o->replace)
                r = sd_bus_message_append(call, "{sv}", "replace", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r >= 0)
                r = sd_bus_message_append(call, "t", (uint64_t) 0);
        if (r < 0)
                return error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL);
        r = sd_bus_call(bus, call, KIROCTL_SLOW_CALL_TIMEOUT_USEC, &error, &reply);
        if (r < 0)
                return error_info_set(e, ERROR_CONTEXT_MANAGER, -r, &error);
        r = sd_bus_message_read(reply, "sssst", &login_id, &uri, &complete, &code, &expires);
        if (r < 0)
                return error_info_set(e, ERROR_CONTEXT_MANAGER, -r, NULL);

        if (o->no_wait && o->json)
                return print_start_json(login_id, uri, complete, code, expires) < 0 ? -ENOMEM : 0;

        /* With --no-wait the id is the output (for scripts); what a person needs goes to stderr. */
        FILE *out = o->no_wait ? stderr : stdout;
        bool tty = isatty(fileno(out)) > 0;
        fprintf(out, "To log in with %s, open this URL in a browser:\n\n    %s\n\n", login_title(o->what),
                isempty(complete) ? uri : complete);
        fprintf(out, "and check that it shows the code:  %s\n", code);
        if (!streq(uri, complete) && !isempty(complete))
                fprintf(out, "(or open %s and enter the code there)\n", uri);
        if (tty) {
                fputc('\n', out);
                (void) login_print_qr(out, isempty(complete) ? uri : complete);
        }
        fputc('\n', out);
        fflush(out);
        if (o->no_wait) {
                puts(login_id);
                return 0;
        }

        r = sd_event_default(&event);
        if (r < 0)
                return error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL);
        w = (LoginWait) {
                .event = event,
                .bus = bus,
                .login_id = login_id,
                .expires_at = expires,
                .tty = o->flags.human_times || isatty(STDOUT_FILENO) > 0,
        };
        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &disconnect, "org.freedesktop.DBus.Local", NULL, "org.freedesktop.DBus.Local",
                                        "Disconnected", on_disconnect, &w);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_signal, &w);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_signal, &w);
        if (r >= 0)
                r = sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC, 0, 0, on_tick, &w);
        if (r < 0)
                return error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL);

        /* sd_event_loop() would end in sd_event_exit(), whose exit handlers close an attached bus; we
         * still need the bus afterwards, to cancel the login or read the new credential. */
        r = 0;
        while (!w.done && r >= 0)
                r = sd_event_run(event, UINT64_MAX);
        clear_progress(&w);
        (void) sd_bus_detach_event(bus);
        if (r < 0) {
                free(w.error);
                free(w.object_path);
                return error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL);
        }

        if (w.cancelled && !w.finished) {
                _cleanup_(sd_bus_error_free) sd_bus_error ce = SD_BUS_ERROR_NULL;
                r = sd_bus_call_method(bus, KIROD_BUS_NAME, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE, "CancelLogin",
                                       &ce, NULL, "st", login_id, (uint64_t) 0);
                if (r < 0 && !sd_bus_error_has_name(&ce, KIROD_ERROR_NO_SUCH_LOGIN))
                        fprintf(stderr, "Could not cancel login %s in kiro-authd: %s\n", login_id,
                                ce.message ?: strerror(-r));
                else
                        fprintf(stderr, "Login cancelled.\n");
                return -ECANCELED;
        }
        if (w.error) {
                r = error_info_set_detail(e, ERROR_CONTEXT_ANY, ECONNREFUSED, "login failed: %s", w.error);
                free(w.error);
                free(w.object_path);
                return r;
        }

        _cleanup_free_ char *path = w.object_path;
        r = bus_get_credential(bus, path, &c, &error);
        if (r < 0) {
                printf("Logged in (%s).\n", path);
                return 0;
        }
        if (o->json) {
                _cleanup_json_ json_object *j = NULL;
                r = credential_status_json(&c, &j);
                if (r < 0)
                        return error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL);
                puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                return 0;
        }
        printf("Logged in: credential '%s' added.\n\n", c.id);
        r = credential_print_status(stdout, &c, &o->flags);
        return r < 0 ? error_info_set(e, ERROR_CONTEXT_ANY, -r, NULL) : 0;
}
