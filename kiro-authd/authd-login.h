/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Device-authorization logins (RFC 8628; KIRO-PROTOCOL.md A.9, B §2.4, §2.5, §7) run in the background on the
 * event loop: AWS Builder ID and IAM Identity Center at AWS SSO OIDC, Google and GitHub at the Kiro auth
 * service's device flow, and Kimi Code. A login ends in a stored credential and a LoginFinished signal. */
#pragma once

#include <systemd/sd-bus.h>

#include "authd-credential.h"

typedef struct Manager Manager;
typedef struct Login Login;

typedef enum LoginKind {
        LOGIN_BUILDER_ID,
        LOGIN_IDC,
        LOGIN_GOOGLE,
        LOGIN_GITHUB,
        LOGIN_KIMI,
        _LOGIN_KIND_MAX,
        _LOGIN_KIND_INVALID = -EINVAL,
} LoginKind;

/* "kiro" + "builder-id" | "idc" | "google" | "github", or "kimi" + "device" (or ""). */
LoginKind login_kind_from_names(const char *provider, const char *method);
/* The valid pairs, for error messages. */
#define LOGIN_VALID_NAMES "kiro/builder-id, kiro/idc, kiro/google, kiro/github, kimi/device"
/* The prefix of a derived credential id ("builder-id", "idc", "google", "github", "kimi"). */
const char *login_kind_to_string(LoginKind k);

typedef struct LoginParams {
        LoginKind kind;
        const char *start_url;          /* idc: required, https only */
        const char *region;             /* idc: required; builder-id: us-east-1 */
        const char *id;                 /* the credential id to create, NULL: derived */
        bool replace;                   /* replace an existing credential of that id */
} LoginParams;

/* Starts a login for the StartLogin call (kept, answered once the device authorization is known or has
 * failed). Returns 1 when the call is parked, or a negative errno with error set. */
int login_start(Manager *m, sd_bus_message *call, const LoginParams *p, sd_bus_error *error);
/* Ends a login with error "cancelled" (LoginFinished is emitted). -ESRCH when there is no such login. */
int login_cancel(Manager *m, const char *login_id);
/* Drops every login without signals (at exit). */
void login_free_all(Manager *m);
