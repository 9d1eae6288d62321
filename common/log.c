/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging to stderr with syslog priority prefixes that journald understands. */
#include <stdarg.h>
#include <systemd/sd-journal.h>

#include "log.h"

static int max_level = LOG_INFO;
static int use_prefix = -1;

static const char *const level_names[] = {
        "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
};

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_level_from_string(const char *s) {
        for (size_t i = 0; i < ELEMENTSOF(level_names); i++)
                if (streq(s, level_names[i]))
                        return (int) i;
        if (streq(s, "error"))
                return LOG_ERR;
        if (streq(s, "warn"))
                return LOG_WARNING;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == 0)
                return s[0] - '0';
        return -EINVAL;
}

const char *log_level_to_string(int level) {
        if (level < 0 || level >= (int) ELEMENTSOF(level_names))
                return NULL;
        return level_names[level];
}

static bool want_prefix(void) {
        /* Under journald (JOURNAL_STREAM set) we emit <N> prefixes; on a terminal plain lines. */
        if (use_prefix < 0)
                use_prefix = !!getenv("JOURNAL_STREAM");
        return use_prefix;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        if (error != 0)
                errno = abs(error);
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);
        errno = saved;

        if (want_prefix())
                fprintf(stderr, "<%d>%s\n", level, buf);
        else if (max_level >= LOG_DEBUG)
                fprintf(stderr, "%s:%d %s: %s\n", file, line, func, buf);
        else
                fprintf(stderr, "%s\n", buf);
        return -abs(error);
}

void log_event(int level, const char *message_id, const char *format, ...) {
        char buf[2048];
        va_list ap;

        if (level > max_level)
                return;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        /* Structured entry when journald is ours, else the same text on stderr. */
        if (want_prefix() &&
            sd_journal_send("MESSAGE=%s", buf, "MESSAGE_ID=%s", message_id, "PRIORITY=%d", level, NULL) >= 0)
                return;
        log_full(level, "%s", buf);
}
