/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Client- and server-supplied text made safe for one log line: control characters escaped, length bounded. */
#pragma once

#include "macro.h"

/* Room for one escaped string in a log line, NUL included. */
#define LOG_ESCAPE_MAX 256U

/* Writes p[0..size) into buf (n ≥ 8 bytes) as one line: backslash, control characters (C0 and DEL) and
 * C1 controls in their UTF-8 form become \\, \n, \r, \t or \xNN, other bytes are copied. When the result
 * does not fit, it is cut at a character boundary and ends in "...". NULL p → "(null)". Returns buf.
 * A journal or terminal reader then sees one line per message, whatever a client sent as a path or a
 * server as an error string. */
const char *escape_mem_for_log(const void *p, size_t size, char *buf, size_t n);
const char *escape_for_log(const char *s, char *buf, size_t n);

/* For a log call's argument list: the escaped copy lives in a compound literal until the end of the
 * enclosing block. log_debug("Refusing '%s'.", LOG_ESC(path)); */
#define LOG_ESC(s) escape_for_log((s), (char[LOG_ESCAPE_MAX]) {}, LOG_ESCAPE_MAX)
#define LOG_ESC_MEM(p, size) escape_mem_for_log((p), (size), (char[LOG_ESCAPE_MAX]) {}, LOG_ESCAPE_MAX)
