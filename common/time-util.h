/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Clocks, RFC 3339 timestamps and human-readable spans. */
#pragma once

#include <time.h>

#include "macro.h"

typedef uint64_t usec_t;

usec_t now(clockid_t clock);

/* The instant on clock `to` that is as far ahead as t is on clock `from` (now on `to` when t has passed):
 * shows a CLOCK_BOOTTIME deadline as a CLOCK_REALTIME time. The pure arithmetic, with both clocks' "now"
 * given, is usec_map_clock(). */
usec_t usec_map_clock(usec_t t, usec_t from_now, usec_t to_now);
usec_t map_clock(usec_t t, clockid_t from, clockid_t to);

/* Parses RFC 3339 / ISO 8601 UTC or with offset ("2025-12-31T02:32:45.144Z", any number of fractional
 * digits, "+01:00") to CLOCK_REALTIME µs. */
int parse_rfc3339(const char *s, usec_t *ret);

/* Formats CLOCK_REALTIME µs as "2025-12-31T02:32:45.144Z" into buf (at least 32 bytes). */
char *format_rfc3339(char *buf, size_t n, usec_t t);

/* "in 5min 3s" / "2h ago" style span relative to now, for humans. */
char *format_relative(char *buf, size_t n, usec_t t);

#define RFC3339_MAX 32
