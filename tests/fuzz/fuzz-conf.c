/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the configuration parser (common/conf.c: inih and the value parsers) with a table shaped like
 * the daemons' ones: every value parser, in two sections. The input is the file, read through a memfd.
 * The value parsers are also fed the whole input as one value. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"
#include "fuzz.h"

typedef struct Settings {
        char *string;
        char *string2;
        bool boolean;
        uint64_t u64;
        unsigned u;
        uint64_t sec;
        uint64_t sec2;
        char **strv;
} Settings;

static void warn(const char *file, unsigned line, const char *section, const char *key, int error,
                 void *userdata) {
        unsigned *n = userdata;

        assert(file && section && key);
        assert(error <= 0);
        (*n)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *value = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[64];
        Settings s = {};
        unsigned n_warnings = 0;
        uint64_t u64;
        bool b;
        int r;

        const ConfigItem table[] = {
                { "Proxy", "Listen", config_parse_strv, &s.strv },
                { "Proxy", "APIKeysFile", config_parse_string, &s.string },
                { "Proxy", "AllowNonLoopback", config_parse_bool, &s.boolean },
                { "Proxy", "MaxBodyBytes", config_parse_uint64, &s.u64 },
                { "Proxy", "MaxConnections", config_parse_unsigned, &s.u },
                { "Proxy", "IdleTimeoutSec", config_parse_sec, &s.sec },
                { "Kiro", "DefaultProfileArn", config_parse_string, &s.string2 },
                { "Kiro", "RetryBackoffSec", config_parse_sec, &s.sec2 },
                {}
        };

        if (size > 64 * 1024)
                return 0;
        fd = memfd_create("fuzz-conf", MFD_CLOEXEC);
        if (fd < 0 || write(fd, data, size) != (ssize_t) size)
                return 0;
        snprintf(path, sizeof path, "/proc/self/fd/%i", fd);
        r = config_parse_file(path, table, warn, &n_warnings);
        assert(r == 0 || r == -EBADMSG || r == -EIO || r == -ENOMEM);
        assert(!s.string || s.string[0]);
        assert(!s.string2 || s.string2[0]);
        STRV_FOREACH(i, s.strv)
                assert((*i)[0] && !strpbrk(*i, " \t\n"));
        free(s.string);
        free(s.string2);
        strv_free(s.strv);

        /* One value, as a parser would get it. */
        value = strndup((const char *) data, size);
        if (!value)
                return 0;
        (void) parse_boolean(value);
        if (config_parse_uint64(value, &u64) >= 0)
                assert(value[0] != '-');
        if (config_parse_bool(value, &b) >= 0)
                assert(b == (parse_boolean(value) == 1));
        (void) parse_sec(value, &u64);
        return 0;
}
