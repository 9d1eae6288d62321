/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-authd's credentials as its ObjectManager publishes them (ids and health, never a secret): one
 * async GetManagedObjects per /readyz or /metrics request. */
#pragma once

#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct CredInfo {
        char *id;
        char *provider;
        char *state;            /* active, refreshing, cooldown, needs-login, disabled */
        bool enabled;
        uint64_t expires_at;    /* CLOCK_REALTIME µs, 0 unknown */
        uint64_t cooldown_until;
        uint32_t failures;
} CredInfo;

/* error: 0, or a negative errno when kiro-authd did not answer (message then says why). */
typedef void (*CredInfoCallback)(int error, const char *message, const CredInfo *list, size_t n, void *userdata);

int credinfo_fetch(sd_bus *bus, CredInfoCallback cb, void *userdata);

/* Usable: enabled and active or refreshing. */
bool credinfo_usable(const CredInfo *c);
