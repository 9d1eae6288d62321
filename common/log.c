/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging to stderr with syslog priority prefixes that journald understands. */
#include <stdarg.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>

#include "buf.h"
#include "log.h"

static int max_level = LOG_INFO;
static int use_prefix = -1;
static int log_format = -1;

int log_format_from_string(const char *s) {
        if (streq_ptr(s, "text"))
                return LOG_FORMAT_TEXT;
        if (streq_ptr(s, "json"))
                return LOG_FORMAT_JSON;
        return -EINVAL;
}

void log_set_format(LogFormat f) {
        log_format = f;
}

static LogFormat get_format(void) {
        if (log_format < 0) {
                int f = log_format_from_string(getenv("KIROD_LOG_FORMAT"));
                log_format = f < 0 ? LOG_FORMAT_TEXT : f;
        }
        return log_format;
}

/* One JSON object on one line; written with a single write so that lines of concurrent writers do not
 * interleave. */
static void log_json(int level, const char *message_id, const char *const *fields, const char *message) {
        _cleanup_(buf_done) Buf b = {};
        int r = buf_putf(&b, "{\"PRIORITY\":\"%d\",\"MESSAGE\":", level);
        if (r >= 0)
                r = buf_put_json_string_utf8(&b, message, strlen(message));
        if (r >= 0 && message_id)
                r = buf_putf(&b, ",\"MESSAGE_ID\":\"%s\"", message_id);
        for (const char *const *f = fields; f && *f && r >= 0; f++) {
                const char *eq = strchr(*f, '=');
                if (!eq)
                        continue;
                r = buf_puts(&b, ",");
                if (r >= 0)
                        r = buf_put_json_string_utf8(&b, *f, eq - *f);
                if (r >= 0)
                        r = buf_puts(&b, ":");
                if (r >= 0)
                        r = buf_put_json_string_utf8(&b, eq + 1, strlen(eq + 1));
        }
        if (r >= 0)
                r = buf_puts(&b, "}\n");
        if (r < 0) {
                fprintf(stderr, "<%d>%s\n", level, message);
                return;
        }
        (void) fwrite(b.data, 1, b.size, stderr);
}

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

        if (get_format() == LOG_FORMAT_JSON)
                log_json(level, NULL, NULL, buf);
        else if (want_prefix())
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

        if (get_format() == LOG_FORMAT_JSON)
                return log_json(level, message_id, NULL, buf);
        /* Structured entry when journald is ours, else the same text on stderr. */
        if (want_prefix() &&
            sd_journal_send("MESSAGE=%s", buf, "MESSAGE_ID=%s", message_id, "PRIORITY=%d", level, NULL) >= 0)
                return;
        log_full(level, "%s", buf);
}

static void log_structv(int level, const char *message_id, const char *const *fields, const char *format,
                        va_list ap) _printf_(4, 0);
static void log_structv(int level, const char *message_id, const char *const *fields, const char *format,
                        va_list ap) {
        char buf[2048], prio[16], mid[64];

        if (level > max_level)
                return;
        (void) vsnprintf(buf, sizeof buf, format, ap);

        if (get_format() == LOG_FORMAT_JSON)
                return log_json(level, message_id, fields, buf);
        if (want_prefix()) {
                struct iovec iov[3 + 16];
                size_t n = 0;
                _cleanup_free_ char *msg = NULL;
                if (asprintf(&msg, "MESSAGE=%s", buf) >= 0) {
                        (void) snprintf(prio, sizeof prio, "PRIORITY=%d", level);
                        iov[n++] = (struct iovec) { msg, strlen(msg) };
                        iov[n++] = (struct iovec) { prio, strlen(prio) };
                        if (message_id) {
                                (void) snprintf(mid, sizeof mid, "MESSAGE_ID=%s", message_id);
                                iov[n++] = (struct iovec) { mid, strlen(mid) };
                        }
                        for (const char *const *f = fields; f && *f && n < ELEMENTSOF(iov); f++)
                                iov[n++] = (struct iovec) { (void *) *f, strlen(*f) };
                        if (sd_journal_sendv(iov, (int) n) >= 0)
                                return;
                }
        }
        log_full(level, "%s", buf);
}

void log_struct(int level, const char *message_id, const char *const *fields, const char *format, ...) {
        va_list ap;
        va_start(ap, format);
        log_structv(level, message_id, fields, format, ap);
        va_end(ap);
}

void log_credential_event(int level, const char *message_id, const char *credential, const char *reason,
                          const char *format, ...) {
        char f_cred[256], f_reason[128];
        const char *fields[3] = {};
        size_t n = 0;
        va_list ap;

        if (level > max_level)
                return;
        (void) snprintf(f_cred, sizeof f_cred, "KIROD_CREDENTIAL=%s", strempty(credential));
        fields[n++] = f_cred;
        if (reason) {
                (void) snprintf(f_reason, sizeof f_reason, "KIROD_REASON=%s", reason);
                fields[n++] = f_reason;
        }
        va_start(ap, format);
        log_structv(level, message_id, fields, format, ap);
        va_end(ap);
}
