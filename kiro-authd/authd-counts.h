/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The last hour of a credential's traffic as kiro-proxyd reports it: 60 one-minute buckets, in memory only. */
#pragma once

#include <stdint.h>

#include "macro.h"
#include "time-util.h"

#define USAGE_COUNTS_BUCKETS 60
#define USAGE_COUNTS_BUCKET_USEC (60 * USEC_PER_SEC)

typedef struct UsageCountsBucket {
        uint64_t minute;                /* CLOCK_MONOTONIC minute + 1 this bucket holds, 0 = empty */
        uint32_t requests;
        uint32_t errors;
        uint32_t failovers;
} UsageCountsBucket;

typedef struct UsageCounts {
        UsageCountsBucket buckets[USAGE_COUNTS_BUCKETS];
} UsageCounts;

typedef struct UsageCountsSum {
        uint32_t requests;
        uint32_t errors;
        uint32_t failovers;
} UsageCountsSum;

/* Adds counts at time n (CLOCK_MONOTONIC µs) into the minute's bucket, reusing the bucket of the same slot an
 * hour ago. Counts saturate at UINT32_MAX. */
void usage_counts_add(UsageCounts *u, usec_t n, uint64_t requests, uint64_t errors, uint64_t failovers);

/* The sums of the buckets of the 60 minutes up to and including n's minute. */
UsageCountsSum usage_counts_sum(const UsageCounts *u, usec_t n);
