/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Every D-Bus name, path, interface and error name kirod uses, in one place. */
#pragma once

#include <errno.h>
#include <systemd/sd-bus.h>

#define KIROD_BUS_NAME            "org.kirod.Auth1"
#define KIROD_MANAGER_PATH        "/org/kirod/Auth1"
#define KIROD_CREDENTIAL_PREFIX   "/org/kirod/Auth1/credential"
#define KIROD_MANAGER_INTERFACE   "org.kirod.Auth1.Manager"
#define KIROD_CREDENTIAL_INTERFACE "org.kirod.Auth1.Credential"
#define KIROD_LOG_CONTROL_PATH    "/org/freedesktop/LogControl1"

#define KIROD_ERROR_PREFIX "org.kirod.Auth1.Error."
#define KIROD_ERROR_NO_SUCH_CREDENTIAL    KIROD_ERROR_PREFIX "NoSuchCredential"
#define KIROD_ERROR_NO_USABLE_CREDENTIAL  KIROD_ERROR_PREFIX "NoUsableCredential"
#define KIROD_ERROR_NEEDS_LOGIN           KIROD_ERROR_PREFIX "NeedsLogin"
#define KIROD_ERROR_INVALID_SOURCE        KIROD_ERROR_PREFIX "InvalidSource"
#define KIROD_ERROR_NO_TOKEN_IN_SOURCE    KIROD_ERROR_PREFIX "NoTokenInSource"
#define KIROD_ERROR_SOURCE_TOO_LARGE      KIROD_ERROR_PREFIX "SourceTooLarge"
#define KIROD_ERROR_REGISTRATION_EXPIRED  KIROD_ERROR_PREFIX "RegistrationExpired"
#define KIROD_ERROR_REFRESH_FAILED        KIROD_ERROR_PREFIX "RefreshFailed"
#define KIROD_ERROR_CREDENTIAL_EXISTS     KIROD_ERROR_PREFIX "CredentialExists"
#define KIROD_ERROR_CREDENTIAL_DISABLED   KIROD_ERROR_PREFIX "CredentialDisabled"
#define KIROD_ERROR_UNSUPPORTED_FORMAT    KIROD_ERROR_PREFIX "UnsupportedFormat"
#define KIROD_ERROR_STORAGE_FAILED        KIROD_ERROR_PREFIX "StorageFailed"
#define KIROD_ERROR_LOGIN_IN_PROGRESS     KIROD_ERROR_PREFIX "LoginInProgress"
#define KIROD_ERROR_NO_SUCH_LOGIN         KIROD_ERROR_PREFIX "NoSuchLogin"
#define KIROD_ERROR_LOGIN_FAILED          KIROD_ERROR_PREFIX "LoginFailed"
#define KIROD_ERROR_SOURCE_NOT_ACCESSIBLE KIROD_ERROR_PREFIX "SourceNotAccessible"

/* The results a credential's refresh attempts are counted by (the Credential property Refreshes, a{st},
 * and kirod_credential_refreshes_total): a fixed set, documented in docs/org.kirod.Auth1.md. */
typedef enum RefreshResultKind {
        REFRESH_RESULT_OK,              /* new tokens, stored */
        REFRESH_RESULT_TRANSIENT_ERROR, /* network, timeout, 5xx, 429, slow_down, other 4xx: retried */
        REFRESH_RESULT_REJECTED,        /* the server refused the login (invalid_grant & co): needs-login */
        REFRESH_RESULT_NO_LOGIN,        /* not sent: no refresh token, or the client registration expired */
        REFRESH_RESULT_LOCAL_ERROR,     /* answered but not stored, or the request could not be built/started */
        _REFRESH_RESULT_MAX,
        _REFRESH_RESULT_INVALID = -EINVAL,
} RefreshResultKind;

const char *refresh_result_kind_to_string(RefreshResultKind k);
RefreshResultKind refresh_result_kind_from_string(const char *s);

/* The signal that ends a login (StartLogin). */
#define KIROD_SIGNAL_LOGIN_FINISHED       "LoginFinished"

/* The one errno <-> error name table, used by all three programs (sd_bus_error_add_map()). Each name has an
 * errno of its own so that the mapping works both ways. */
extern const sd_bus_error_map kirod_bus_errors[];

/* Registers the table with sd-bus. Idempotent. */
int kirod_bus_errors_register(void);

/* The bus object path of a credential id ("/org/kirod/Auth1/credential/<escaped id>"). */
int kirod_credential_path(const char *id, char **ret);
/* And back. */
int kirod_credential_id_from_path(const char *path, char **ret);
