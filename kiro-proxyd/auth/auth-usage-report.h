/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-credential traffic counts for kiro-authd's rolling hour: requests, failed upstream attempts and
 * failovers are summed in memory and sent as one ReportUsageCounts call at most every
 * USAGE_REPORT_INTERVAL_USEC, never one bus call per request. */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "time-util.h"

#define USAGE_REPORT_INTERVAL_USEC (2 * USEC_PER_SEC)

typedef struct UsageReporter UsageReporter;

int usage_reporter_new(sd_event *e, sd_bus *bus, UsageReporter **ret);
/* Sends what is pending (queued on the bus: flush the bus afterwards to deliver it) and frees. */
UsageReporter *usage_reporter_free(UsageReporter *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(UsageReporter *, usage_reporter_free);

/* Adds to the pending counts of credential and arms the report timer. */
int usage_reporter_add(UsageReporter *u, const char *credential, unsigned requests, unsigned errors,
                       unsigned failovers);
/* Sends the pending counts now (no-op when none). A failed report is dropped: the counts are for the
 * operator's eyes, not billing, and kiro-authd keeps them in memory only anyway. */
int usage_reporter_flush(UsageReporter *u);
/* Pending counts of credential (for tests); false when none. */
bool usage_reporter_pending(UsageReporter *u, const char *credential, uint64_t *ret_requests,
                            uint64_t *ret_errors, uint64_t *ret_failovers);
