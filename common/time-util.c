/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Clocks, RFC 3339 timestamps and human-readable spans. */
#include <ctype.h>

#include "time-util.h"

usec_t now(clockid_t clock) {
        struct timespec ts;
        (void) clock_gettime(clock, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}

usec_t usec_map_clock(usec_t t, usec_t from_now, usec_t to_now) {
        usec_t ahead = t > from_now ? t - from_now : 0;
        return ahead > USEC_INFINITY - to_now ? USEC_INFINITY : to_now + ahead;
}

usec_t map_clock(usec_t t, clockid_t from, clockid_t to) {
        return usec_map_clock(t, now(from), now(to));
}

static int parse_digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char) (*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

int parse_rfc3339(const char *s, usec_t *ret) {
        struct tm tm = {};
        const char *p = s;
        int year, mon, day, hour, min, sec;
        usec_t frac = 0;

        if (!s)
                return -EINVAL;
        if (parse_digits(&p, 4, &year) < 0 || *p++ != '-' ||
            parse_digits(&p, 2, &mon) < 0 || *p++ != '-' ||
            parse_digits(&p, 2, &day) < 0 || (*p != 'T' && *p != 't' && *p != ' '))
                return -EINVAL;
        p++;
        if (parse_digits(&p, 2, &hour) < 0 || *p++ != ':' ||
            parse_digits(&p, 2, &min) < 0 || *p++ != ':' ||
            parse_digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
                return -EINVAL;
        if (*p == '.' || *p == ',') {
                /* Any number of digits; only the first six count (kiro-cli writes nine). */
                usec_t scale = 100000;
                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++) {
                        frac += (usec_t) (*p - '0') * scale;
                        scale /= 10;
                }
        }
        long offset = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (parse_digits(&p, 2, &oh) < 0)
                        return -EINVAL;
                if (*p == ':')
                        p++;
                if (parse_digits(&p, 2, &om) < 0)
                        return -EINVAL;
                offset = sign * (oh * 3600L + om * 60L);
        } else
                return -EINVAL;
        if (*p != 0)
                return -EINVAL;

        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        time_t t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        t -= offset;
        if (t < 0)
                return -ERANGE;
        *ret = (usec_t) t * USEC_PER_SEC + frac;
        return 0;
}

char *format_rfc3339(char *buf, size_t n, usec_t t) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        if (!gmtime_r(&sec, &tm)) {
                snprintf(buf, n, "n/a");
                return buf;
        }
        snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned) ((t % USEC_PER_SEC) / USEC_PER_MSEC));
        return buf;
}

char *format_relative(char *buf, size_t n, usec_t t) {
        usec_t nw = now(CLOCK_REALTIME);
        bool future = t >= nw;
        usec_t d = (future ? t - nw : nw - t) / USEC_PER_SEC;

        if (t == 0 || t == USEC_INFINITY) {
                snprintf(buf, n, "n/a");
                return buf;
        }
        char span[64];
        if (d >= 86400)
                snprintf(span, sizeof span, "%llud %lluh", (unsigned long long) (d / 86400),
                         (unsigned long long) (d % 86400 / 3600));
        else if (d >= 3600)
                snprintf(span, sizeof span, "%lluh %llumin", (unsigned long long) (d / 3600),
                         (unsigned long long) (d % 3600 / 60));
        else if (d >= 60)
                snprintf(span, sizeof span, "%llumin %llus", (unsigned long long) (d / 60),
                         (unsigned long long) (d % 60));
        else
                snprintf(span, sizeof span, "%llus", (unsigned long long) d);
        snprintf(buf, n, future ? "in %s" : "%s ago", span);
        return buf;
}
