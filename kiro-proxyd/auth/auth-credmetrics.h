/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The per-credential families of /metrics (docs/monitoring.md), rebuilt from kiro-authd's credential objects
 * (auth-credinfo.h) before each scrape: state, expiry, cooldown, failures, refreshes by result, quota. */
#pragma once

#include "metrics.h"
#include "auth/auth-credinfo.h"

/* Registers the families in g (once, at start). -ENOMEM. */
int credential_metrics_init(MetricsRegistry *g);

/* Replaces every per-credential series with what l says; error < 0: kiro-authd did not answer (then
 * kirod_authd_up is 0 and no credential series is left). The quota gauges exist only for credentials whose
 * usage kiro-authd has fetched. */
void credential_metrics_fill(int error, const CredInfo *l, size_t n);
