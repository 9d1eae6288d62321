/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd-style INI configuration: a main file plus <name>.d/ drop-ins, table driven, parsed by inih. */
#include <dirent.h>
#include <ini.h>
#include <math.h>
#include <strings.h>

#include "conf.h"
#include "fileio.h"
#include "log.h"

typedef struct ParseState {
        const char *file;
        const ConfigItem *table;
        ConfigWarn warn;
        void *userdata;
        unsigned line;
} ParseState;

static int handler(void *user, const char *section, const char *name, const char *value
#if INI_HANDLER_LINENO
                   , int lineno
#endif
) {
        ParseState *st = user;
        unsigned line = 0;
#if INI_HANDLER_LINENO
        line = (unsigned) lineno;
#endif
        for (const ConfigItem *i = st->table; i->key; i++) {
                if (strcasecmp(i->section, section) != 0 || strcmp(i->key, name) != 0)
                        continue;
                int r = i->parse(value, i->data);
                if (r < 0 && st->warn)
                        st->warn(st->file, line, section, name, r, st->userdata);
                return 1;
        }
        if (st->warn)
                st->warn(st->file, line, section, name, 0, st->userdata);
        return 1; /* keep going: unknown keys only warn */
}

int config_parse_file(const char *path, const ConfigItem *table, ConfigWarn warn, void *userdata) {
        ParseState st = { .file = path, .table = table, .warn = warn, .userdata = userdata };
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        int r = ini_parse_file(f, handler, &st);
        if (r < 0)
                return -EIO;
        if (r > 0)
                return -EBADMSG; /* line r has a syntax error */
        return 0;
}

/* The rule a refused value broke, where strerror() would not say it: the errors of url_check_scheme(). */
static const char *config_error_rule(int error) {
        switch (error < 0 ? -error : error) {
        case EPROTONOSUPPORT:
                return "a URL must start with https:// (or http:// to a loopback host)";
        case EPERM:
                return "http:// is allowed only to a loopback host (127.0.0.0/8, localhost, [::1]); use https://";
        default:
                return NULL;
        }
}

void config_warn_log(const char *file, unsigned line, const char *section, const char *key, int error,
                     void *userdata) {
        const char *rule = config_error_rule(error);

        if (error == 0)
                log_warning("%s: unknown key '%s' in section [%s], ignoring.", file, key, section);
        else if (rule)
                log_warning("%s: invalid value for %s= in [%s], ignoring: %s.", file, key, section, rule);
        else
                log_warning_errno(error, "%s: invalid value for %s= in [%s], ignoring: %m", file, key, section);
}

int config_parse_files(const char *path, const ConfigItem *table, ConfigWarn warn, void *userdata) {
        _cleanup_free_ char *dropin_dir = NULL;
        _cleanup_strv_free_ char **names = NULL;
        int r;

        r = config_parse_file(path, table, warn, userdata);
        if (r < 0 && r != -ENOENT)
                return r;

        if (asprintf(&dropin_dir, "%s.d", path) < 0)
                return -ENOMEM;
        DIR *d = opendir(dropin_dir);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        r = dir_list_suffix(d, ".conf", &names);
        closedir(d);
        if (r < 0)
                return r;
        STRV_FOREACH(n, names) {
                _cleanup_free_ char *p = NULL;
                if (asprintf(&p, "%s/%s", dropin_dir, *n) < 0)
                        return -ENOMEM;
                r = config_parse_file(p, table, warn, userdata);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_parse_string(const char *value, void *data) {
        return free_and_strdup(data, isempty(value) ? NULL : value);
}

int parse_boolean(const char *v) {
        static const char *const yes[] = { "1", "yes", "y", "true", "t", "on" };
        static const char *const no[] = { "0", "no", "n", "false", "f", "off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (strcasecmp(v, yes[i]) == 0)
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (strcasecmp(v, no[i]) == 0)
                        return 0;
        return -EINVAL;
}

int config_parse_bool(const char *value, void *data) {
        int r = parse_boolean(value);
        if (r < 0)
                return r;
        *(bool *) data = r;
        return 0;
}

int config_parse_uint64(const char *value, void *data) {
        char *e;
        if (isempty(value) || value[0] == '-')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(value, &e, 0);
        if (errno != 0 || *e != 0)
                return -EINVAL;
        *(uint64_t *) data = v;
        return 0;
}

int config_parse_unsigned(const char *value, void *data) {
        uint64_t v;
        int r = config_parse_uint64(value, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *(unsigned *) data = (unsigned) v;
        return 0;
}

int parse_sec(const char *v, uint64_t *ret_usec) {
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
                { "ms", USEC_PER_MSEC }, { "min", 60 * USEC_PER_SEC }, { "s", USEC_PER_SEC },
                { "h", 3600 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC }, { "", USEC_PER_SEC },
        };
        char *e;

        if (isempty(v) || streq(v, "infinity")) {
                *ret_usec = USEC_INFINITY;
                return 0;
        }
        /* A plain decimal number: strtod() would also take a sign, "inf", "nan" and hex. */
        if (!((v[0] >= '0' && v[0] <= '9') || v[0] == '.'))
                return -EINVAL;
        errno = 0;
        double d = strtod(v, &e);
        if (e == v || strspn(v, "0123456789.eE+-") < (size_t) (e - v))
                return -EINVAL;
        if (errno != 0 || !isfinite(d))
                return -ERANGE;
        while (*e == ' ')
                e++;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(e, units[i].suffix)) {
                        double usec = d * (double) units[i].usec;
                        /* Converting a double outside uint64_t is undefined behaviour: range first. 0x1p64
                         * is 2^64; USEC_INFINITY (2^64 - 1) is spelled "infinity". */
                        if (!(usec >= 0 && usec < 0x1p64))
                                return -ERANGE;
                        *ret_usec = MIN((uint64_t) usec, USEC_INFINITY - 1);
                        return 0;
                }
        return -EINVAL;
}

int config_parse_sec(const char *value, void *data) {
        return parse_sec(value, data);
}

int config_parse_strv(const char *value, void *data) {
        char ***l = data, **n;
        int r = strv_split(value, &n);
        if (r < 0)
                return r;
        strv_free(*l);
        *l = n;
        return 0;
}

int config_default_path(const char *name, bool user, char **ret) {
        const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
        int r;
        if (user && !isempty(xdg))
                r = asprintf(ret, "%s/kirod/%s.conf", xdg, name);
        else if (user && !isempty(home))
                r = asprintf(ret, "%s/.config/kirod/%s.conf", home, name);
        else
                r = asprintf(ret, "%s/kirod/%s.conf", SYSCONFDIR, name);
        return r < 0 ? -ENOMEM : 0;
}
