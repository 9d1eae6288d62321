/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What Kimi's own CLI sends (KIRO-PROTOCOL.md B §7): its OAuth client id, User-Agent and X-Msh-* headers. */
#pragma once

#include "authd-credential.h"

#define KIMI_CLIENT_ID "17e5f671-d194-4dfb-9706-5516cb48c098"
/* The kimi-cli version we present ourselves as; one place to change it. */
#define KIMI_CLI_VERSION "0.72.0"
#define KIMI_USER_AGENT "KimiCLI/" KIMI_CLI_VERSION

/* The device id of a Kimi credential: 32 hex digits, derived from its stored machine id, so stable for as
 * long as the credential exists. buf must hold 33 bytes. NULL when the credential has no machine id. */
const char *kimi_device_id(const CredentialRecord *c, char buf[static 33]);

/* The X-Msh-* headers as "Name: value" strings (device name and model from uname, values forced to
 * printable ASCII). device_id is the credential's (kimi_device_id()). */
int kimi_headers(const char *device_id, char ***ret);
