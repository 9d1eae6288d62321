/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Which providers kiro-authd holds a credential for (so /v1/models lists Kimi models only when a Kimi
 * credential exists): kiro-authd's ObjectManager asked once, then kept in step by InterfacesAdded /
 * InterfacesRemoved and a fresh look when its bus name changes owner. No bus round trip per request. */
#pragma once

#include <stdbool.h>
#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct ProviderWatch ProviderWatch;

int provider_watch_new(sd_bus *bus, ProviderWatch **ret);
ProviderWatch *provider_watch_free(ProviderWatch *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(ProviderWatch *, provider_watch_free);

/* Whether a credential of provider ("kiro", "kimi") is known to exist right now. */
bool provider_watch_has(ProviderWatch *w, const char *provider);
