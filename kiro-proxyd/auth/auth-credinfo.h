/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd's credentials as its ObjectManager publishes them (ids and health, never a secret): one
 * async GetManagedObjects per /readyz or /metrics request. */
#pragma once

#include <systemd/sd-bus.h>

#include "bus-names.h"
#include "macro.h"

typedef struct CredInfo {
        char *id;
        char *provider;
        char *state;            /* active, refreshing, cooldown, needs-login, disabled */
        bool enabled;
        uint64_t expires_at;    /* CLOCK_REALTIME µs, 0 unknown */
        uint64_t cooldown_until;
        uint32_t failures;
        uint64_t refreshes[_REFRESH_RESULT_MAX]; /* Refreshes, by result; names kiro-proxyd does not know are
                                                  * skipped, so the label set stays the documented one */
        bool have_refreshes;    /* the Refreshes property was there (an older kiro-authd has none) */
        double quota_used;      /* UsageUsed, UsageLimit: meaningful only when quota_fetched_at > 0 */
        double quota_limit;
        uint64_t quota_reset_at;        /* UsageResetAt, CLOCK_REALTIME µs, 0 unknown */
        uint64_t quota_fetched_at;      /* UsageFetchedAt, 0: no usage answer yet, the quota is unknown */
} CredInfo;

/* error: 0, or a negative errno when kiro-authd did not answer (message then says why). */
typedef void (*CredInfoCallback)(int error, const char *message, const CredInfo *list, size_t n, void *userdata);

int credinfo_fetch(sd_bus *bus, CredInfoCallback cb, void *userdata);

/* Usable: enabled and active or refreshing. */
bool credinfo_usable(const CredInfo *c);
