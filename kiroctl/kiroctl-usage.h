/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl usage: a credential's usage limits (org.kirod.Auth1.Credential.GetUsage) as JSON and as text. */
#pragma once

#include <json-c/json.h>
#include <stdio.h>
#include <systemd/sd-bus.h>

/* Calls GetUsage on credential id and converts the a{sv} into a JSON object with the keys of
 * docs/kiroctl.md ("id", "plan", "used", "limit", ..., "next_reset_usec", "last_error"). */
int bus_credential_get_usage(sd_bus *bus, const char *id, json_object **ret, sd_bus_error *error);

/* One credential's usage as text lines. */
int usage_print(FILE *f, json_object *u);
