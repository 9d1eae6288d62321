/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The rolling hour of reported requests, errors and failovers per credential (authd-counts.h). */
#include <assert.h>

#include "authd-counts.h"

static uint32_t add_sat(uint32_t a, uint64_t b) {
        return b >= (uint64_t) (UINT32_MAX - a) ? UINT32_MAX : (uint32_t) (a + b);
}

void usage_counts_add(UsageCounts *u, usec_t n, uint64_t requests, uint64_t errors, uint64_t failovers) {
        uint64_t minute = n / USAGE_COUNTS_BUCKET_USEC + 1;
        UsageCountsBucket *b = &u->buckets[minute % USAGE_COUNTS_BUCKETS];

        assert(u);
        if (b->minute != minute)
                *b = (UsageCountsBucket) { .minute = minute };
        b->requests = add_sat(b->requests, requests);
        b->errors = add_sat(b->errors, errors);
        b->failovers = add_sat(b->failovers, failovers);
}

UsageCountsSum usage_counts_sum(const UsageCounts *u, usec_t n) {
        uint64_t minute = n / USAGE_COUNTS_BUCKET_USEC + 1;
        UsageCountsSum s = {};

        assert(u);
        for (size_t i = 0; i < USAGE_COUNTS_BUCKETS; i++) {
                const UsageCountsBucket *b = &u->buckets[i];
                /* Empty, older than an hour, or (after a clock oddity) ahead of n: not counted. */
                if (b->minute == 0 || b->minute > minute || b->minute + USAGE_COUNTS_BUCKETS <= minute)
                        continue;
                s.requests = add_sat(s.requests, b->requests);
                s.errors = add_sat(s.errors, b->errors);
                s.failovers = add_sat(s.failovers, b->failovers);
        }
        return s;
}
