/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The rolling hour of reported requests, errors and failovers: buckets, ageing, reuse and saturation. */
#include "authd-counts.h"
#include "tests.h"

#define MIN_USEC USAGE_COUNTS_BUCKET_USEC
/* An arbitrary monotonic start, not on a minute boundary. */
#define T0 (12345 * MIN_USEC + 7 * USEC_PER_SEC)

TEST(empty) {
        UsageCounts u = {};
        UsageCountsSum s = usage_counts_sum(&u, T0);
        ASSERT_EQ(s.requests, 0u);
        ASSERT_EQ(s.errors, 0u);
        ASSERT_EQ(s.failovers, 0u);
        /* Time zero is a real minute, not the empty marker. */
        usage_counts_add(&u, 0, 1, 0, 0);
        ASSERT_EQ(usage_counts_sum(&u, 0).requests, 1u);
}

TEST(sums_within_the_hour) {
        UsageCounts u = {};
        usage_counts_add(&u, T0, 3, 1, 0);
        usage_counts_add(&u, T0 + 10 * USEC_PER_SEC, 2, 0, 1);     /* same minute */
        usage_counts_add(&u, T0 + 30 * MIN_USEC, 5, 2, 2);
        UsageCountsSum s = usage_counts_sum(&u, T0 + 30 * MIN_USEC);
        ASSERT_EQ(s.requests, 10u);
        ASSERT_EQ(s.errors, 3u);
        ASSERT_EQ(s.failovers, 3u);
        /* 59 minutes after the first minute it still counts… */
        s = usage_counts_sum(&u, T0 + 59 * MIN_USEC);
        ASSERT_EQ(s.requests, 10u);
        /* …60 minutes after, only the later one. */
        s = usage_counts_sum(&u, T0 + 60 * MIN_USEC);
        ASSERT_EQ(s.requests, 5u);
        ASSERT_EQ(s.errors, 2u);
        ASSERT_EQ(s.failovers, 2u);
        s = usage_counts_sum(&u, T0 + 90 * MIN_USEC);
        ASSERT_EQ(s.requests, 0u);
        /* Asking about the past ignores buckets from after it. */
        s = usage_counts_sum(&u, T0);
        ASSERT_EQ(s.requests, 5u);
}

TEST(slot_reused_after_an_hour) {
        UsageCounts u = {};
        usage_counts_add(&u, T0, 7, 7, 7);
        /* The same slot an hour later starts from zero instead of adding to the old minute. */
        usage_counts_add(&u, T0 + 60 * MIN_USEC, 1, 0, 0);
        UsageCountsSum s = usage_counts_sum(&u, T0 + 60 * MIN_USEC);
        ASSERT_EQ(s.requests, 1u);
        ASSERT_EQ(s.errors, 0u);
        ASSERT_EQ(s.failovers, 0u);
}

TEST(every_minute_of_a_day) {
        UsageCounts u = {};
        for (unsigned i = 0; i < 24 * 60; i++) {
                usage_counts_add(&u, T0 + i * MIN_USEC, 1, i % 2, 0);
                UsageCountsSum s = usage_counts_sum(&u, T0 + i * MIN_USEC);
                ASSERT_EQ(s.requests, i < 60 ? i + 1 : 60u);
        }
        ASSERT_EQ(usage_counts_sum(&u, T0 + (24 * 60 - 1) * MIN_USEC).errors, 30u);
}

TEST(saturates) {
        UsageCounts u = {};
        usage_counts_add(&u, T0, UINT64_MAX, UINT32_MAX - 1, 1);
        usage_counts_add(&u, T0, 1, 1, UINT32_MAX);
        usage_counts_add(&u, T0 + MIN_USEC, UINT32_MAX, 5, 0);
        UsageCountsSum s = usage_counts_sum(&u, T0 + MIN_USEC);
        ASSERT_EQ(s.requests, UINT32_MAX);
        ASSERT_EQ(s.errors, UINT32_MAX);
        ASSERT_EQ(s.failovers, UINT32_MAX);
}
