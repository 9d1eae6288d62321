/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl: the command line client of kiro-authd. */
#include <assert.h>
#include <fcntl.h>
#include <getopt.h>
#include <sys/ioctl.h>

#include "bus-names.h"
#include "conf.h"
#include "config.h"
#include "json-util.h"
#include "kiroctl-usage.h"
#include "kiroctl-bus.h"
#include "kiroctl-error.h"
#include "kiroctl-format.h"
#include "kiroctl-import.h"
#include "kiroctl-login.h"
#include "kiroctl-models.h"
#include "kiroctl-snapshot.h"
#include "kiroctl-top.h"
#include "kiroctl-util.h"
#include "log.h"
#include "time-util.h"

typedef enum ImportSource {
        IMPORT_NONE,
        IMPORT_KIRO_CLI,
        IMPORT_KIRO_IDE,
        IMPORT_REFRESH_TOKEN,
        IMPORT_API_KEY,
} ImportSource;

static bool arg_json = false;
static bool arg_user = false;
static ImportSource arg_import = IMPORT_NONE;
static const char *arg_import_option = NULL;    /* the option that chose arg_import, for messages */
static const char *arg_db = NULL;
static const char *arg_file = NULL;
static const char *arg_input = NULL;            /* --refresh-token-file / --api-key-file */
static const char *arg_id = NULL;
static const char *arg_region = NULL;
static const char *arg_egress_proxy = NULL;
static bool arg_replace = false;
static bool arg_link = false;
static const char *arg_start_url = NULL;
static bool arg_no_wait = false;
static bool login_cancelled = false;
static const char *arg_proxy = NULL;
static bool arg_legend = true;
static usec_t arg_interval = 2 * USEC_PER_SEC;  /* top */
static unsigned arg_iterations = 0;             /* top: 0 = until interrupted */
static bool arg_top_options = false;

/* The exit status of a run that did not fail: 0, or KIROCTL_EXIT_NOT_USABLE from status. */
static int exit_status = KIROCTL_EXIT_SUCCESS;

/* The one failure of this run, reported once by main(). */
static ErrorInfo error_info = { .bus_error = SD_BUS_ERROR_NULL };

#define usage_error(...) error_info_set_detail(&error_info, ERROR_CONTEXT_USAGE, EINVAL, __VA_ARGS__)

static void help(void) {
        printf("kiroctl [OPTIONS...] COMMAND ...\n"
               "\n"
               "Manage the Kiro credentials held by kiro-authd.\n"
               "\n"
               "Commands:\n"
               "  status [ID]                       Show credentials and their health (default)\n"
               "  list                              List credentials\n"
               "  import --from-kiro-cli [--db PATH]\n"
               "                                    Import kiro-cli's login from its SQLite database\n"
               "  import --from-kiro-ide [--file PATH]\n"
               "                                    Import the Kiro IDE's login (kiro-auth-token.json)\n"
               "  import --refresh-token-file FILE  Import a bare refresh token (FILE '-' is stdin)\n"
               "  import --api-key-file FILE        Import a Kiro API key (FILE '-' is stdin)\n"
               "  refresh ID                        Refresh the credential's access token now\n"
               "  remove ID                         Remove the credential\n"
               "  enable ID                         Let the credential be used\n"
               "  disable ID                        Stop using the credential\n"
               "  usage [ID]                        Show plan, credits used and left, and the reset date\n"
               "  login builder-id|google|github|kimi\n"
               "  login idc --start-url URL --region REGION\n"
               "                                    Log in with a device code, without another tool\n"
               "  top [--interval SEC] [--iterations N]\n"
               "                                    The status table redrawn every SEC seconds (default 2),\n"
               "                                    with the last hour's totals and the request rate\n"
               "  models [--proxy ADDR]             Show the model catalog kiro-proxyd serves (context\n"
               "                                    windows, thinking, aliases); the built-in table when\n"
               "                                    kiro-proxyd cannot be reached\n"
               "\n"
               "Options:\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --json             Print JSON (status, list, import, refresh, usage)\n"
               "     --system           Talk to kiro-authd on the system bus (default)\n"
               "     --user             Talk to kiro-authd on the user's session bus\n"
               "     --no-pager         Accepted for systemctl habits; kiroctl never pages\n"
               "     --no-legend        Print no column headers and no summary line\n"
               "     --proxy ADDR       kiro-proxyd for 'models': unix:/PATH or http(s)://HOST:PORT\n"
               "                        (default: unix:/run/kiro-proxyd/http.sock, then http://127.0.0.1:8399;\n"
               "                        an API key is taken from $KIRO_PROXY_API_KEY)\n"
               "\n"
               "Import options:\n"
               "     --id ID            Name the credential (default: derived by kiro-authd)\n"
               "     --region REGION    Override the region of the login\n"
               "     --egress-proxy URL Reach Kiro through this proxy for this credential (kiro-authd's\n"
               "                        refreshes and kiro-proxyd's calls): http://, https://, socks5h://\n"
               "                        (default: $KIROCTL_EGRESS_PROXY, which keeps a password out of ps)\n"
               "     --replace          Replace an existing credential with the same id\n"
               "     --link             --from-kiro-cli, --from-kiro-ide: follow kiro-cli's database or the\n"
               "                        IDE's file (read its new logins, write rotated tokens back)\n"
               "                        instead of taking a copy\n"
               "                        (--id and --replace also apply to login)\n"
               "\n"
               "Login options:\n"
               "     --start-url URL    The IAM Identity Center start URL (https://...)\n"
               "     --region REGION    The IAM Identity Center region\n"
               "     --no-wait          Print the login id and return; kiro-authd finishes the login\n"
               "\n"
               "Secrets are never taken from the command line: tokens and keys are read from files or\n"
               "standard input, and passed to kiro-authd as file descriptors.\n"
               "\n"
               "Exit status:\n"
               "  0  success\n"
               "  1  failure (the message on stderr says what to do)\n"
               "  2  usage error\n"
               "  3  status: a credential needs a new login, or none is usable\n"
               "  4  no such credential\n"
               "  130  login cancelled with Ctrl-C\n"
               "\n"
               "See the kiroctl(1) man page ('man kiroctl') for details.\n");
}

enum {
        ARG_VERSION = 0x100,
        ARG_JSON,
        ARG_USER,
        ARG_SYSTEM,
        ARG_NO_PAGER,
        ARG_NO_LEGEND,
        ARG_FROM_KIRO_CLI,
        ARG_FROM_KIRO_IDE,
        ARG_REFRESH_TOKEN_FILE,
        ARG_API_KEY_FILE,
        ARG_DB,
        ARG_FILE,
        ARG_ID,
        ARG_REGION,
        ARG_EGRESS_PROXY,
        ARG_REPLACE,
        ARG_LINK,
        ARG_START_URL,
        ARG_NO_WAIT,
        ARG_PROXY,
        ARG_INTERVAL,
        ARG_ITERATIONS,
};

static const struct option options[] = {
        { "help",               no_argument,       NULL, 'h'                    },
        { "version",            no_argument,       NULL, ARG_VERSION            },
        { "json",               no_argument,       NULL, ARG_JSON               },
        { "user",               no_argument,       NULL, ARG_USER               },
        { "system",             no_argument,       NULL, ARG_SYSTEM             },
        { "no-pager",           no_argument,       NULL, ARG_NO_PAGER           },
        { "no-legend",          no_argument,       NULL, ARG_NO_LEGEND          },
        { "from-kiro-cli",      no_argument,       NULL, ARG_FROM_KIRO_CLI      },
        { "from-kiro-ide",      no_argument,       NULL, ARG_FROM_KIRO_IDE      },
        { "refresh-token-file", required_argument, NULL, ARG_REFRESH_TOKEN_FILE },
        { "api-key-file",       required_argument, NULL, ARG_API_KEY_FILE       },
        { "db",                 required_argument, NULL, ARG_DB                 },
        { "file",               required_argument, NULL, ARG_FILE               },
        { "id",                 required_argument, NULL, ARG_ID                 },
        { "region",             required_argument, NULL, ARG_REGION             },
        { "egress-proxy",       required_argument, NULL, ARG_EGRESS_PROXY       },
        { "replace",            no_argument,       NULL, ARG_REPLACE            },
        { "link",               no_argument,       NULL, ARG_LINK               },
        { "start-url",          required_argument, NULL, ARG_START_URL          },
        { "no-wait",            no_argument,       NULL, ARG_NO_WAIT            },
        { "proxy",              required_argument, NULL, ARG_PROXY              },
        { "interval",           required_argument, NULL, ARG_INTERVAL           },
        { "iterations",         required_argument, NULL, ARG_ITERATIONS         },
        {}
};

static const char *option_name(int c) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == c)
                        return o->name;
        return "?";
}

static int set_import_source(ImportSource source, int c, const char *input) {
        if (arg_import != IMPORT_NONE && arg_import != source)
                return usage_error("import takes one source, got --%s and --%s",
                                   arg_import_option, option_name(c));
        arg_import = source;
        arg_import_option = option_name(c);
        if (input)
                arg_input = input;
        return 0;
}

static int set_nonempty(const char **p, int c, const char *value) {
        if (isempty(value))
                return usage_error("--%s needs a non-empty value", option_name(c));
        *p = value;
        return 0;
}

/* Returns 1 to go on, 0 to exit successfully (help, version), or a negative errno. */
static int parse_argv(int argc, char **argv) {
        int c, r;

        assert(argc >= 0);
        assert(argv);

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("kiroctl %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_USER:
                        arg_user = true;
                        break;
                case ARG_SYSTEM:
                        arg_user = false;
                        break;
                case ARG_NO_PAGER:
                        break;
                case ARG_NO_LEGEND:
                        arg_legend = false;
                        break;
                case ARG_FROM_KIRO_CLI:
                        r = set_import_source(IMPORT_KIRO_CLI, c, NULL);
                        if (r < 0)
                                return r;
                        break;
                case ARG_FROM_KIRO_IDE:
                        r = set_import_source(IMPORT_KIRO_IDE, c, NULL);
                        if (r < 0)
                                return r;
                        break;
                case ARG_REFRESH_TOKEN_FILE:
                case ARG_API_KEY_FILE:
                        if (isempty(optarg))
                                return usage_error("--%s needs a file name, or '-' for standard input",
                                                   option_name(c));
                        r = set_import_source(c == ARG_API_KEY_FILE ? IMPORT_API_KEY : IMPORT_REFRESH_TOKEN, c,
                                              optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_DB:
                        r = set_nonempty(&arg_db, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_FILE:
                        r = set_nonempty(&arg_file, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_ID:
                        r = set_nonempty(&arg_id, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_REGION:
                        r = set_nonempty(&arg_region, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_EGRESS_PROXY:
                        r = set_nonempty(&arg_egress_proxy, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_LINK:
                        arg_link = true;
                        break;
                case ARG_REPLACE:
                        arg_replace = true;
                        break;
                case ARG_START_URL:
                        r = set_nonempty(&arg_start_url, c, optarg);
                        if (r < 0)
                                return r;
                        break;
                case ARG_NO_WAIT:
                        arg_no_wait = true;
                        break;
                case ARG_INTERVAL: {
                        uint64_t u;
                        if (parse_sec(optarg, &u) < 0 || u < 100 * USEC_PER_MSEC || u > 3600 * USEC_PER_SEC)
                                return usage_error("--interval takes a time from 0.1s to 1h (e.g. 2, 500ms), not '%s'",
                                                   optarg);
                        arg_interval = u;
                        arg_top_options = true;
                        break;
                }
                case ARG_ITERATIONS: {
                        char *e;
                        errno = 0;
                        unsigned long v = strtoul(optarg, &e, 10);
                        if (errno != 0 || e == optarg || *e || optarg[0] == '-' || v < 1 || v > 1000000)
                                return usage_error("--iterations takes a whole number from 1 to 1000000, not '%s'",
                                                   optarg);
                        arg_iterations = (unsigned) v;
                        arg_top_options = true;
                        break;
                }
                case ARG_PROXY:
                        if (!startswith(optarg, "unix:/") && !startswith(optarg, "http://") &&
                            !startswith(optarg, "https://"))
                                return usage_error("--proxy takes unix:/PATH or http(s)://HOST:PORT");
                        arg_proxy = optarg;
                        break;
                /* For long options getopt sets optopt to their value (or 0), so name them from argv. */
                case ':':
                        if (optopt > 0 && optopt < 0x80)
                                return usage_error("option '-%c' needs an argument", optopt);
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                case '?':
                        if (optopt > 0 && optopt < 0x80)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                default:
                        assert_not_reached();
                }
        }
        return 1;
}

typedef struct Verb {
        const char *name;
        unsigned min_args, max_args;    /* not counting the verb */
        int (*dispatch)(sd_bus *bus, int argc, char **argv);
        const char *action;             /* for "permission denied: <action> needs …"; NULL for reads */
        bool import;                    /* takes the import options */
        bool login;                     /* takes the login options */
        bool no_bus;                    /* talks to kiro-proxyd, not kiro-authd (bus is NULL) */
} Verb;

static bool stdout_is_tty(void) {
        static int cached = -1;
        if (cached < 0)
                cached = isatty(STDOUT_FILENO) > 0;
        return cached;
}

static OutputFlags output_flags(void) {
        const char *term = getenv("TERM");
        struct winsize ws = {};
        unsigned width = 0;

        if (stdout_is_tty() && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) >= 0 && ws.ws_col > 0)
                width = ws.ws_col;

        return (OutputFlags) {
                .colors = stdout_is_tty() && !getenv("NO_COLOR") && !streq_ptr(term, "dumb"),
                .human_times = stdout_is_tty(),
                .legend = stdout_is_tty() && arg_legend,
                .width = width,
                .now = now(CLOCK_REALTIME),
        };
}

static int print_json(json_object *o) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                (stdout_is_tty() ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED : JSON_C_TO_STRING_PLAIN);
        const char *s = json_object_to_json_string_ext(o, flags);

        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

static int print_credentials_json(const Credential *c, size_t n, bool full) {
        _cleanup_json_ json_object *a = NULL;
        int r;

        r = credentials_json(c, n, full, &a);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);
        return print_json(a);
}

static int get_credential_by_id(sd_bus *bus, const char *id, Credential *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        (void) free_and_strdup(&error_info.id, id);

        r = kirod_credential_path(id, &path);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, NULL);
        r = bus_get_credential(bus, path, ret, &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, &e);
        return 0;
}

/* Looks up what brings credential id back, for the error message; best effort. */
static void find_fix(sd_bus *bus, const char *id) {
        _cleanup_(credential_done) Credential c = {};
        _cleanup_free_ char *path = NULL;

        if (kirod_credential_path(id, &path) < 0 || bus_get_credential(bus, path, &c, NULL) < 0)
                return;
        error_info.fix = mfree(error_info.fix);
        (void) credential_fix(&c, &error_info.fix);
}

static int verb_status(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(credential_list_done) CredentialList l = {};
        OutputFlags flags = output_flags();
        int r;

        if (argc > 1) {
                _cleanup_(credential_done) Credential c = {};

                r = get_credential_by_id(bus, argv[1], &c);
                if (r < 0)
                        return r;
                if (!credentials_usable(&c, 1))
                        exit_status = KIROCTL_EXIT_NOT_USABLE;
                if (arg_json)
                        return print_credentials_json(&c, 1, true);
                r = credential_print_status(stdout, &c, &flags);
                return r < 0 ? error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL) : 0;
        }

        r = bus_list_credentials(bus, &l, &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_MANAGER, r, &e);

        if (!credentials_usable(l.items, l.n))
                exit_status = KIROCTL_EXIT_NOT_USABLE;
        if (arg_json)
                return print_credentials_json(l.items, l.n, true);
        if (l.n == 0 && stdout_is_tty()) {
                printf("No credentials. Import one with 'kiroctl import --from-kiro-cli' "
                       "(see 'kiroctl --help').\n");
                return 0;
        }
        r = credentials_print_table(stdout, l.items, l.n, &flags);
        return r < 0 ? error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL) : 0;
}

static int verb_list(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(credential_list_done) CredentialList l = {};
        OutputFlags flags = output_flags();
        int r;

        r = bus_list_credentials(bus, &l, &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_MANAGER, r, &e);

        if (arg_json)
                return print_credentials_json(l.items, l.n, false);
        r = credentials_print_list(stdout, l.items, l.n, &flags);
        return r < 0 ? error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL) : 0;
}

/* "access token valid until 2026-01-01T10:00:00.000Z (in 59min)" */
static void print_expiry(const Credential *c) {
        char a[RFC3339_MAX], b[64];

        if (c->access_token_expires_at == 0) {
                printf("access token fetched on first use");
                return;
        }
        if (c->access_token_expires_at == USEC_INFINITY) {
                printf("does not expire");
                return;
        }
        printf("access token valid until %s", format_rfc3339(a, sizeof a, c->access_token_expires_at));
        if (stdout_is_tty())
                printf(" (%s)", format_relative(b, sizeof b, c->access_token_expires_at));
}

/* kiro-authd follows a linked source through its directory's fd, never by its path. */
static int open_link_dir(const char *path, int *ret_fd, char **ret_name) {
        _cleanup_free_ char *dir = NULL, *name = NULL;
        const char *slash = strrchr(path, '/');
        int fd, r;

        r = path_dirname(path, &dir);
        if (r < 0)
                return r;
        name = strdup(slash ? slash + 1 : path);
        if (!name)
                return -ENOMEM;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        *ret_name = TAKE_PTR(name);
        return 0;
}

static int verb_import(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_free_ char *source_path = NULL, *object_path = NULL, *registration_path = NULL, *ide_path = NULL;
        _cleanup_close_ int fd = -EBADF, registration_fd = -EBADF, link_dir_fd = -EBADF;
        _cleanup_free_ char *link_name = NULL;
        _cleanup_(credential_done) Credential c = {};
        ImportOptions o = IMPORT_OPTIONS_NULL;
        const char *format;
        int r;

        switch (arg_import) {
        case IMPORT_KIRO_CLI:
                format = "kiro-cli-sqlite";
                r = import_kiro_cli(arg_db, &error_info, &fd, &source_path);
                if (r < 0)
                        return r;
                if (arg_link) {
                        r = open_link_dir(source_path, &link_dir_fd, &link_name);
                        if (r < 0)
                                return error_info_set(&error_info, ERROR_CONTEXT_KIRO_CLI_DB, r, NULL);
                }
                break;

        case IMPORT_KIRO_IDE:
                format = "kiro-ide-json";
                if (arg_file)
                        r = path_make_absolute_cwd(arg_file, &ide_path);
                else {
                        _cleanup_free_ char *home = NULL;
                        r = get_home_dir(&home);
                        if (r >= 0 && asprintf(&ide_path, "%s/" KIRO_IDE_TOKEN_RELATIVE, home) < 0)
                                r = -ENOMEM;
                }
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_KIRO_IDE, r, NULL);
                r = import_kiro_ide(ide_path, &error_info, &fd, &registration_fd, &registration_path);
                if (r < 0)
                        return r;
                if (arg_link) {
                        r = open_link_dir(ide_path, &link_dir_fd, &link_name);
                        if (r < 0)
                                return error_info_set(&error_info, ERROR_CONTEXT_KIRO_IDE, r, NULL);
                }
                source_path = TAKE_PTR(ide_path);
                break;

        case IMPORT_REFRESH_TOKEN:
        case IMPORT_API_KEY:
                format = arg_import == IMPORT_API_KEY ? "api-key" : "refresh-token";
                error_info.option = arg_import == IMPORT_API_KEY ? "--api-key-file" : "--refresh-token-file";
                r = import_read_file(arg_input, SECRET_FILE_MAX,
                                     arg_import == IMPORT_API_KEY ? "Kiro API key (not shown): "
                                                                  : "Refresh token (not shown): ",
                                     ERROR_CONTEXT_INPUT_FILE, &error_info, &fd);
                if (r < 0)
                        return r;
                /* No source_path: where a bare token was kept says nothing, and Source then names the
                 * format, which is what 'kiroctl status' needs to say how to fix the credential. */
                break;

        default:
                assert_not_reached();
        }

        o.id = arg_id;
        o.region = arg_region;
        /* From the environment a password stays out of the process list. */
        o.proxy = arg_egress_proxy ?: getenv("KIROCTL_EGRESS_PROXY");
        if (isempty(o.proxy))
                o.proxy = NULL;
        o.replace = arg_replace;
        o.source_path = source_path;
        o.registration_fd = registration_fd;
        o.link_dir_fd = link_dir_fd;
        o.link_name = link_name;

        (void) free_and_strdup(&error_info.id, arg_id);
        r = bus_import(bus, format, fd, &o, &object_path, &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_MANAGER, r, &e);

        /* Imported: what follows only describes the result, so failing to read it is no failure. */
        r = bus_get_credential(bus, object_path, &c, NULL);
        if (r < 0) {
                _cleanup_free_ char *id = NULL;
                if (kirod_credential_id_from_path(object_path, &id) < 0)
                        id = NULL;
                if (!arg_json)
                        printf("Imported credential '%s'.\n", id ?: object_path);
                return 0;
        }

        if (arg_json)
                return print_credentials_json(&c, 1, true);

        printf("Imported credential '%s' (%s", c.id, isempty(c.auth_method) ? "unknown method" : c.auth_method);
        if (!isempty(c.region))
                printf(", %s", c.region);
        printf("), ");
        print_expiry(&c);
        printf(".\n");

        if (streq_ptr(c.state, "needs-login")) {
                _cleanup_free_ char *fix = NULL;
                if (credential_fix(&c, &fix) >= 0 && fix)
                        printf("It needs a new login already. Fix: %s\n", fix);
        }
        return 0;
}

static int verb_refresh(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(credential_done) Credential c = {};
        const char *id = argv[1];
        int r;

        (void) free_and_strdup(&error_info.id, id);
        r = bus_credential_refresh(bus, id, &e);
        if (r < 0) {
                if (sd_bus_error_has_name(&e, KIROD_ERROR_NEEDS_LOGIN))
                        find_fix(bus, id);
                return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, &e);
        }

        r = get_credential_by_id(bus, id, &c);
        if (r < 0) {
                /* Refreshed, but gone already (removed meanwhile): report the refresh. */
                error_info_done(&error_info);
                error_info = ERROR_INFO_NULL;
                if (!arg_json)
                        printf("Refreshed credential '%s'.\n", id);
                return 0;
        }
        if (arg_json)
                return print_credentials_json(&c, 1, true);
        printf("Refreshed credential '%s', ", c.id);
        print_expiry(&c);
        printf(".\n");
        return 0;
}

static int verb_remove(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        (void) free_and_strdup(&error_info.id, argv[1]);
        r = bus_credential_remove(bus, argv[1], &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, &e);
        return 0;
}

static int verb_enable(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        (void) free_and_strdup(&error_info.id, argv[1]);
        r = bus_credential_set_enabled(bus, argv[1], streq(argv[0], "enable"), &e);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, &e);
        return 0;
}

static int verb_usage(sd_bus *bus, int argc, char **argv) {
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(credential_list_done) CredentialList l = {};
        _cleanup_json_ json_object *a = NULL;
        int r;

        if (argc <= 1) {
                r = bus_list_credentials(bus, &l, &e);
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_MANAGER, r, &e);
        }
        a = json_object_new_array();
        if (!a)
                return error_info_set(&error_info, ERROR_CONTEXT_ANY, -ENOMEM, NULL);
        for (size_t i = 0; i < (argc > 1 ? 1 : l.n); i++) {
                const char *id = argc > 1 ? argv[1] : l.items[i].id;
                json_object *u = NULL;

                (void) free_and_strdup(&error_info.id, id);
                r = bus_credential_get_usage(bus, id, &u, &e);
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_CREDENTIAL, r, &e);
                if (arg_json)
                        r = json_object_array_add(a, u) < 0 ? -ENOMEM : 0;
                else {
                        r = usage_print(stdout, u);
                        json_object_put(u);
                }
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);
        }
        if (arg_json)
                return print_json(a);
        return 0;
}

static int verb_login(sd_bus *bus, int argc, char **argv) {
        LoginOptions o = {
                .what = argv[1],
                .start_url = arg_start_url,
                .region = arg_region,
                .id = arg_id,
                .replace = arg_replace,
                .no_wait = arg_no_wait,
                .json = arg_json,
                .flags = output_flags(),
        };
        const char *p, *m;

        if (login_names(argv[1], &p, &m) < 0)
                return usage_error("unknown login '%s': use builder-id, idc, google, github or kimi", argv[1]);
        if (streq(argv[1], "idc") && (!arg_start_url || !arg_region))
                return usage_error("login idc needs --start-url URL and --region REGION");
        if (!streq(argv[1], "idc") && (arg_start_url || arg_region))
                return usage_error("--start-url and --region are only valid with 'login idc'");
        (void) free_and_strdup(&error_info.id, arg_id);
        int r = login_run(bus, &o, &error_info);
        if (r == -ECANCELED)
                login_cancelled = true;
        return r;
}

static int verb_models(sd_bus *bus, int argc, char **argv) {
        static const char *const defaults[] = { KIROCTL_PROXY_DEFAULTS };
        _cleanup_free_ char *body = NULL;
        size_t size = 0;
        const char *source = NULL;
        int r = -ECONNREFUSED;

        for (size_t i = 0; i < (arg_proxy ? 1 : ELEMENTSOF(defaults)); i++) {
                const char *p = arg_proxy ?: defaults[i];
                r = models_fetch(p, getenv("KIRO_PROXY_API_KEY"), &body, &size);
                if (r >= 0) {
                        source = p;
                        break;
                }
                if (r == -EACCES)
                        return error_info_set_detail(&error_info, ERROR_CONTEXT_ANY, EACCES,
                                                     "kiro-proxyd at %s wants an API key: set $KIRO_PROXY_API_KEY", p);
                if (arg_proxy)
                        return error_info_set_detail(&error_info, ERROR_CONTEXT_ANY, -r,
                                                     "cannot get the models from kiro-proxyd at %s", p);
        }
        if (!source) {
                fprintf(stderr, "kiro-proxyd cannot be reached; showing the built-in table (Kiro's own list is "
                                "known only to a running kiro-proxyd).\n");
                r = models_builtin_body(&body, &size);
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);
                source = "built-in table";
        }
        r = models_print(stdout, body, size, arg_json, source, output_flags().colors);
        return r < 0 ? error_info_set_detail(&error_info, ERROR_CONTEXT_ANY, -r, "cannot read the model list") : 0;
}

/* kiroctl top: status frames until interrupted (Ctrl-C) or --iterations are done. Each frame is one
 * GetManagedObjects: kiro-authd's counts move at kiro-proxyd's report interval (at most every 2 s). */
static int verb_top(sd_bus *bus, int argc, char **argv) {
        TopState st = {};
        bool clear = stdout_is_tty();
        int r;

        for (unsigned i = 0; arg_iterations == 0 || i < arg_iterations; i++) {
                _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
                _cleanup_(credential_list_done) CredentialList l = {};
                OutputFlags flags = output_flags();

                if (i > 0) {
                        struct timespec ts = { .tv_sec = arg_interval / USEC_PER_SEC,
                                               .tv_nsec = (arg_interval % USEC_PER_SEC) * 1000 };
                        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                                ;
                }
                r = bus_list_credentials(bus, &l, &e);
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_MANAGER, r, &e);
                /* Frames after the first are set apart when they do not redraw a terminal. */
                if (i > 0 && !clear)
                        fputc('\n', stdout);
                r = top_print_frame(stdout, l.items, l.n, &flags, &st, now(CLOCK_MONOTONIC), clear);
                if (r < 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);
                if (fflush(stdout) != 0)
                        return error_info_set(&error_info, ERROR_CONTEXT_ANY, -errno, NULL);
        }
        return 0;
}

static const Verb verbs[] = {
        { "status",  0, 1, verb_status,  NULL,                    false },
        { "list",    0, 0, verb_list,    NULL,                    false },
        { "import",  0, 0, verb_import,  "importing credentials", true  },
        { "login",   1, 1, verb_login,   "logging in",            false, true },
        { "refresh", 1, 1, verb_refresh, "refreshing credentials", false },
        { "remove",  1, 1, verb_remove,  "removing credentials",  false },
        { "enable",  1, 1, verb_enable,  "enabling credentials",  false },
        { "disable", 1, 1, verb_enable,  "disabling credentials", false },
        { "usage",   0, 1, verb_usage,   NULL,                    false },
        { "models",  0, 0, verb_models,  NULL,                    false, false, true },
        { "top",     0, 0, verb_top,     NULL,                    false },
};

static int check_verb_options(const Verb *v) {
        if (arg_top_options && !streq(v->name, "top"))
                return usage_error("--%s is only valid with 'top'", arg_iterations > 0 ? "iterations" : "interval");
        if (streq(v->name, "top") && arg_json)
                return usage_error("--json is not valid with 'top' (use 'status --json')");
        if (!v->login) {
                if (arg_start_url)
                        return usage_error("--start-url is only valid with 'login idc'");
                if (arg_no_wait)
                        return usage_error("--no-wait is only valid with 'login'");
        } else {
                if (arg_import != IMPORT_NONE)
                        return usage_error("--%s is only valid with 'import'", arg_import_option);
                if (arg_db || arg_file)
                        return usage_error("--%s is only valid with 'import'", arg_db ? "db" : "file");
                return 0;
        }
        if (!v->import) {
                if (arg_import != IMPORT_NONE)
                        return usage_error("--%s is only valid with 'import'", arg_import_option);
                if (arg_db)
                        return usage_error("--db is only valid with 'import --from-kiro-cli'");
                if (arg_file)
                        return usage_error("--file is only valid with 'import --from-kiro-ide'");
                if (arg_id)
                        return usage_error("--id is only valid with 'import'; give the ID as an argument");
                if (arg_region)
                        return usage_error("--region is only valid with 'import'");
                if (arg_egress_proxy)
                        return usage_error("--egress-proxy is only valid with 'import'");
                if (arg_replace)
                        return usage_error("--replace is only valid with 'import'");
                if (arg_link)
                        return usage_error("--link is only valid with 'import --from-kiro-cli' or 'import --from-kiro-ide'");
                return 0;
        }

        if (arg_import == IMPORT_NONE)
                return usage_error("import needs a source: --from-kiro-cli, --from-kiro-ide, "
                                   "--refresh-token-file FILE or --api-key-file FILE");
        if (arg_db && arg_import != IMPORT_KIRO_CLI)
                return usage_error("--db is only valid with --from-kiro-cli");
        if (arg_file && arg_import != IMPORT_KIRO_IDE)
                return usage_error("--file is only valid with --from-kiro-ide");
        if (arg_link && arg_import != IMPORT_KIRO_IDE && arg_import != IMPORT_KIRO_CLI)
                return usage_error("--link is only valid with --from-kiro-cli or --from-kiro-ide (a bare token file "
                                   "has no login to follow)");
        return 0;
}

static int dispatch_verb(int argc, char **argv) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        const char *name = argc > 0 ? argv[0] : "status";
        char *status_argv[] = { (char *) "status", NULL };
        const Verb *v = NULL;
        int r;

        if (argc == 0) {
                argc = 1;
                argv = status_argv;
        }

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        v = verbs + i;
        if (!v)
                return usage_error("unknown command '%s'", name);
        if ((unsigned) argc - 1 < v->min_args)
                return v->login ? usage_error("'login' needs what to log in with: builder-id, idc, google, github or kimi")
                                : usage_error("'%s' needs a credential ID", v->name);
        if ((unsigned) argc - 1 > v->max_args)
                return usage_error("too many arguments for '%s'", v->name);
        for (int i = 1; i < argc; i++)
                if (isempty(argv[i]))
                        return usage_error("a credential ID cannot be empty");
        r = check_verb_options(v);
        if (r < 0)
                return r;

        if (arg_proxy && !v->no_bus)
                return usage_error("--proxy is only valid with 'models'");
        if (v->no_bus)
                return v->dispatch(NULL, argc, argv);

        error_info.action = v->action;
        error_info.user_bus = arg_user;

        r = arg_user ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_BUS_CONNECT, r, NULL);

        return v->dispatch(bus, argc, argv);
}

static int run(int argc, char **argv) {
        int r;

        log_set_max_level(LOG_WARNING);

        r = kirod_bus_errors_register();
        if (r < 0)
                return error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);

        r = parse_argv(argc, argv);
        if (r <= 0)
                return r;

        r = dispatch_verb(argc - optind, argv + optind);
        if (r < 0)
                return r;

        if (fflush(stdout) != 0 || ferror(stdout))
                return error_info_set_detail(&error_info, ERROR_CONTEXT_ANY, errno > 0 ? errno : EIO,
                                             "cannot write to standard output");
        return 0;
}

int main(int argc, char **argv) {
        int r, status;

        r = run(argc, argv);
        if (r >= 0)
                return exit_status;
        if (r == -ECANCELED && login_cancelled) {
                error_info_done(&error_info);
                return KIROCTL_EXIT_CANCELLED;
        }

        if (error_info.error == 0)
                (void) error_info_set(&error_info, ERROR_CONTEXT_ANY, r, NULL);
        status = error_info_report(&error_info, stderr);
        error_info_done(&error_info);
        return status;
}
