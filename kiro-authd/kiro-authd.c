/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd: owns Kiro credentials, refreshes them and publishes short-lived access tokens on D-Bus. */
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "authd-bus.h"
#include "authd-link.h"
#include "bus-names.h"
#include "conf.h"
#include "curl-glue.h"
#include "log.h"
#include "time-util.h"

static char *arg_config = NULL;
static char *arg_state_dir = NULL;
static bool arg_user = false;
static int arg_log_level = -1;

static void help(void) {
        printf("%s [OPTIONS...]\n\n"
               "Owns Kiro credentials, refreshes them and publishes access tokens on D-Bus.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show package version\n"
               "     --config=PATH       Configuration file (default " SYSCONFDIR "/kirod/kiro-authd.conf)\n"
               "     --state-dir=DIR     Where credentials are stored\n"
               "     --log-level=LEVEL   debug, info, notice, warning, err\n"
               "     --user              Run for the current user on the session bus\n",
               program_invocation_short_name);
}

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_CONFIG, ARG_STATE_DIR, ARG_LOG_LEVEL, ARG_USER };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
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
                case ARG_STATE_DIR:
                        if (free_and_strdup(&arg_state_dir, optarg) < 0)
                                return log_oom();
                        break;
                case ARG_LOG_LEVEL:
                        arg_log_level = log_level_from_string(optarg);
                        if (arg_log_level < 0)
                                return log_error_errno(EINVAL, "Invalid log level '%s'.", optarg);
                        break;
                case ARG_USER:
                        arg_user = true;
                        break;
                case '?':
                        return -EINVAL;
                default:
                        return -EINVAL;
                }
        if (optind < argc)
                return log_error_errno(EINVAL, "%s takes no arguments.", program_invocation_short_name);
        return 1;
}

static int default_paths(void) {
        if (!arg_config && config_default_path("kiro-authd", arg_user, &arg_config) < 0)
                return log_oom();
        if (!arg_state_dir) {
                const char *sd = getenv("STATE_DIRECTORY"), *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
                int r;
                if (sd)
                        /* systemd may pass several, colon separated: ours is the first. */
                        r = (arg_state_dir = strndup(sd, strcspn(sd, ":"))) ? 0 : -1;
                else if (arg_user && xdg)
                        r = asprintf(&arg_state_dir, "%s/kirod", xdg);
                else if (arg_user && home)
                        r = asprintf(&arg_state_dir, "%s/.local/state/kirod", home);
                else
                        r = asprintf(&arg_state_dir, "%s/lib/kiro-authd", LOCALSTATEDIR);
                if (r < 0)
                        return log_oom();
        }
        return 0;
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        sd_event *event = userdata;
        if (e) {
                log_error_errno(sd_bus_error_get_errno(e), "Failed to acquire bus name " KIROD_BUS_NAME ": %s",
                                e->message);
                return sd_event_exit(event, EXIT_FAILURE);
        }
        /* Ready only once callers can reach us by name. */
        (void) sd_notify(false, "READY=1\nSTATUS=Serving credentials.");
        log_debug("Acquired bus name " KIROD_BUS_NAME ".");
        return 1;
}

static int on_bus_disconnected(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        sd_event *event = userdata;
        /* Without the bus nobody can reach us, and sd-bus does not reconnect: exit with failure so that the
         * service manager (Restart=on-failure) starts a fresh instance that takes the name again. */
        log_error("Lost the connection to the bus (dbus-daemon stopped or restarted?); exiting.");
        return sd_event_exit(event, EXIT_FAILURE);
}

static int apply_network(Manager *m) {
        _cleanup_free_ char *shown = NULL;
        int r = curl_glue_set_proxy(m->glue, m->config.proxy, m->config.noproxy);
        if (r < 0)
                return log_error_errno(r, "Failed to set the egress proxy: %m");
        if (m->config.proxy && curl_glue_proxy_mask(m->config.proxy, &shown) >= 0)
                log_info("Egress proxy: %s%s%s.", shown, m->config.noproxy ? ", except " : "",
                         strempty(m->config.noproxy));
        return 0;
}

/* systemctl reload (ExecReload= sends SIGHUP): the configuration again, with its drop-ins. Refreshes in
 * flight finish with what they started with; timers are set again with the new margins. */
static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        SelectionPolicy policy = m->config.policy;
        char buf[64];
        int r;

        (void) snprintf(buf, sizeof buf, "RELOADING=1\nMONOTONIC_USEC=%llu",
                        (unsigned long long) now(CLOCK_MONOTONIC));
        (void) sd_notify(false, buf);
        log_info("Reloading the configuration '%s'.", arg_config);
        r = authd_config_reload(&m->config, arg_config);
        if (r >= 0)
                r = apply_network(m);
        if (r < 0) {
                log_error("Reloading failed; the previous configuration stays in effect.");
                (void) sd_notify(false, "READY=1\nSTATUS=Serving credentials (reloading the configuration failed, see the log).");
                return 0;
        }
        for (size_t i = 0; i < m->n_credentials; i++)
                credential_schedule(m->credentials[i]);
        /* kiro-proxyd follows the policy through this signal. */
        if (m->config.policy != policy)
                (void) sd_bus_emit_properties_changed(m->bus, KIROD_MANAGER_PATH, KIROD_MANAGER_INTERFACE,
                                                      "SelectionPolicy", NULL);
        log_info("Configuration reloaded.");
        (void) sd_notify(false, "READY=1\nSTATUS=Serving credentials.");
        return 0;
}

static int run(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t ss;
        int r;

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;
        if (arg_log_level >= 0)
                log_set_max_level(arg_log_level);
        r = default_paths();
        if (r < 0)
                return r;
        umask(0077);
        r = kirod_bus_errors_register();
        if (r < 0)
                return log_error_errno(r, "Failed to register bus errors: %m");

        r = sd_event_default(&event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m");
        sigemptyset(&ss);
        sigaddset(&ss, SIGTERM);
        sigaddset(&ss, SIGINT);
        sigaddset(&ss, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        (void) sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        (void) sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        (void) sd_event_set_watchdog(event, true);

        r = manager_new(event, &m);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate manager: %m");
        m->user_mode = arg_user;
        m->state_dir = TAKE_PTR(arg_state_dir);
        r = authd_config_parse(&m->config, arg_config);
        if (r < 0)
                return r;
        r = apply_network(m);
        if (r < 0)
                return r;
        r = sd_event_add_signal(event, NULL, SIGHUP, on_sighup, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch SIGHUP: %m");
        if (arg_log_level >= 0)
                log_set_max_level(arg_log_level);
        (void) manager_resolve_users(m);

        r = arg_user ? sd_bus_open_user(&m->bus) : sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m", arg_user ? "session" : "system");
        r = bus_register(m);
        if (r < 0)
                return r;
        r = manager_load(m);
        if (r < 0)
                return r;
        /* Linked credentials get back the directory fds the service manager kept (authd-link.h). */
        credential_links_restore(m);
        (void) manager_import_system_credentials(m);

        r = sd_bus_request_name_async(m->bus, NULL, KIROD_BUS_NAME, 0, on_name_acquired, event);
        if (r < 0)
                return log_error_errno(r, "Failed to request bus name: %m");
        r = sd_bus_match_signal_async(m->bus, NULL, "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local",
                                      "org.freedesktop.DBus.Local", "Disconnected", on_bus_disconnected, NULL,
                                      event);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the bus connection: %m");
        r = sd_bus_attach_event(m->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Failed to attach bus to event loop: %m");

        r = sd_event_loop(event);
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down.");
        /* Rotated tokens that could not be written yet get one last chance; a failure here loses a login. */
        int k = manager_flush_unsaved(m);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        if (r != 0)
                return -ECANCELED;
        return k;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        free(arg_config);
        free(arg_state_dir);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
