/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl top (kiroctl-top.h). */
#include <assert.h>
#include <inttypes.h>

#include "kiroctl-top.h"
#include "time-util.h"

int top_print_frame(FILE *f, const Credential *c, size_t n, const OutputFlags *flags, TopState *st, usec_t mono,
                    bool clear) {
        uint64_t requests = 0, errors = 0, failovers = 0;
        size_t usable = 0;
        char at[64];

        assert(f);
        assert(c || n == 0);
        assert(flags);
        assert(st);

        for (size_t i = 0; i < n; i++) {
                requests += c[i].requests_last_hour;
                errors += c[i].errors_last_hour;
                failovers += c[i].failovers_last_hour;
                if (credentials_usable(c + i, 1))
                        usable++;
        }

        if (clear)
                fputs("\033[H\033[2J", f);
        fprintf(f, "kiroctl top: %s; %zu credential%s, %zu usable; last hour %" PRIu64 " request%s, %" PRIu64
                " error%s, %" PRIu64 " failover%s",
                format_rfc3339(at, sizeof at, flags->now) ?: "-", n, n == 1 ? "" : "s", usable,
                requests, requests == 1 ? "" : "s", errors, errors == 1 ? "" : "s", failovers,
                failovers == 1 ? "" : "s");
        /* The one-hour window also drops old minutes: a rate only while the sum did not shrink. */
        if (st->have_previous && mono > st->previous_at && requests >= st->previous_requests)
                fprintf(f, "; now %.1f requests/min",
                        (double) (requests - st->previous_requests) * 60.0 * (double) USEC_PER_SEC /
                                (double) (mono - st->previous_at));
        fputs("\n\n", f);
        st->have_previous = true;
        st->previous_at = mono;
        st->previous_requests = requests;

        if (n == 0) {
                fputs("No credentials.\n", f);
                return 0;
        }
        return credentials_print_table(f, c, n, flags);
}
