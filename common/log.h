/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging to stderr with syslog priority prefixes that journald understands. */
#pragma once

#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* Parses "debug", "info", … or a number 0..7. */
int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

/* Logs at 'level'; with 'error' != 0 sets errno so that %m works. Returns -abs(error). */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *format, ...)
        _printf_(6, 7);

/* Logs a notable event with a journal MESSAGE_ID (a 32 hex id). */
void log_event(int level, const char *message_id, const char *format, ...) _printf_(3, 4);

/* Logs a message with journal fields: 'fields' is a NULL-terminated list of "NAME=value" strings (names
 * upper case, as journald wants them; values without newlines), message_id may be NULL. Under journald
 * (JOURNAL_STREAM set) the entry goes through sd_journal_send() with the fields; with LogFormat=json one
 * JSON object per line on stderr carries them as members; otherwise only the message is printed. */
void log_struct(int level, const char *message_id, const char *const *fields, const char *format, ...)
        _printf_(4, 5);

/* log_struct() with KIROD_CREDENTIAL= (an id, never a secret) and, when reason is set, KIROD_REASON=. */
void log_credential_event(int level, const char *message_id, const char *credential, const char *reason,
                          const char *format, ...) _printf_(5, 6);

typedef enum LogFormat {
        LOG_FORMAT_TEXT,
        LOG_FORMAT_JSON,        /* one object per line: {"PRIORITY":"6","MESSAGE":"…","MESSAGE_ID":"…",…} */
        _LOG_FORMAT_MAX,
        _LOG_FORMAT_INVALID = -EINVAL,
} LogFormat;
/* "text" or "json"; the environment variable KIROD_LOG_FORMAT sets the initial value. */
int log_format_from_string(const char *s);
void log_set_format(LogFormat f);

#define log_full_errno(level, error, ...)                                                  \
        ({                                                                                 \
                int _l = (level), _e = (error);                                            \
                (log_get_max_level() >= _l)                                                \
                        ? log_internal(_l, _e, __FILE__, __LINE__, __func__, __VA_ARGS__)  \
                        : -abs(_e);                                                        \
        })
#define log_full(level, ...) (void) log_full_errno(level, 0, __VA_ARGS__)

#define log_debug(...)   log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)    log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)   log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...)  log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* MESSAGE_IDs of notable events. */
#define KIROD_MESSAGE_CREDENTIAL_IMPORTED  "8f0d3e2b6c4a4f1e9b7a5d3c1e2f4a6b"
#define KIROD_MESSAGE_REFRESH_FAILED       "2c6e8a0b4d6f4e1a8c3b5d7f9a1c3e5d"
#define KIROD_MESSAGE_NEEDS_LOGIN          "5a7c9e1b3d5f4a2c8e0b2d4f6a8c0e2b"
/* kiro-proxyd (docs/log-messages.md). */
#define KIROD_MESSAGE_REQUEST_FINISHED     "b3e1c6a0d2f84b7c9e5a1d3f7b9c2e40"
#define KIROD_MESSAGE_UPSTREAM_FAILED      "c4f2d7b1e3a94c8d0f6b2e4a8c0d3f51"
#define KIROD_MESSAGE_UPSTREAM_THROTTLED   "d5a3e8c2f4b04d9e1a7c3f5b9d1e4a62"
#define KIROD_MESSAGE_UPSTREAM_QUOTA       "e6b4f9d3a5c14e0f2b8d4a6c0e2f5b73"
#define KIROD_MESSAGE_UPSTREAM_FAILOVER    "f7c5a0e4b6d24f1a3c9e5b7d1f3a6c84"
/* kiro-authd: credential state changes. */
#define KIROD_MESSAGE_CREDENTIAL_REFRESHED "0a8b6c4d2e0f4a1b9c7d5e3f1a2b4c6d"
#define KIROD_MESSAGE_CREDENTIAL_COOLDOWN  "1b9c7d5e3f1a4b2c0d8e6f4a2b3c5d7e"
#define KIROD_MESSAGE_CREDENTIAL_SUSPENDED "2c0d8e6f4a2b4c3d1e9f7a5b3c4d6e8f"
