/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* systemd-style INI configuration: a main file plus <name>.d/ drop-ins, table driven, parsed by inih. */
#pragma once

#include "macro.h"

typedef int (*ConfigParser)(const char *value, void *data);

typedef struct ConfigItem {
        const char *section;
        const char *key;
        ConfigParser parse;
        void *data;
} ConfigItem;

/* Called for unknown keys and for values a parser refused; the caller decides how loud to be. */
typedef void (*ConfigWarn)(const char *file, unsigned line, const char *section, const char *key, int error,
                           void *userdata);

/* Parses path (a missing file is fine) and then path.d/ *.conf in lexical order (path "foo.conf" → drop-in
 * directory "foo.conf.d"). Later assignments win. Returns -errno only for unreadable files or syntax
 * errors the parser cannot continue past. */
int config_parse_files(const char *path, const ConfigItem *table, ConfigWarn warn, void *userdata);
/* The daemons' ConfigWarn: a warning naming the file, key and section, and what was wrong: a parser's
 * -EPROTONOSUPPORT and -EPERM are url_check_scheme()'s (not https://; http:// to a non-loopback host) and
 * are explained as such. */
void config_warn_log(const char *file, unsigned line, const char *section, const char *key, int error,
                     void *userdata);

/* Parses one file, which must exist. */
int config_parse_file(const char *path, const ConfigItem *table, ConfigWarn warn, void *userdata);

/* Value parsers; data points to the destination noted. */
int config_parse_string(const char *value, void *data);   /* char ** (empty → NULL) */
int config_parse_bool(const char *value, void *data);     /* bool * */
int config_parse_uint64(const char *value, void *data);   /* uint64_t * */
int config_parse_unsigned(const char *value, void *data); /* unsigned * */
int config_parse_sec(const char *value, void *data);      /* uint64_t * µs; "30", "30s", "5min", "2h", "" = infinity */
int config_parse_strv(const char *value, void *data);     /* char *** (white-space separated, replaces) */

/* The default path of a daemon's configuration file "<name>.conf": SYSCONFDIR/kirod/, or for a per-user
 * instance $XDG_CONFIG_HOME/kirod/ (~/.config/kirod/). */
int config_default_path(const char *name, bool user, char **ret);

int parse_boolean(const char *v);
/* A decimal number with an optional unit (ms, s, min, h, d; none = s), "" or "infinity". -EINVAL for
 * anything else (signs, "inf", "nan", hex), -ERANGE when it does not fit in µs. */
int parse_sec(const char *v, uint64_t *ret_usec);
