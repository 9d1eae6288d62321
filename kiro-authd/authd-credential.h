/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The credential record: what is stored per credential, its JSON form and its enums. */
#pragma once

#include <json-c/json.h>

#include "macro.h"
#include "time-util.h"

typedef enum Provider {
        PROVIDER_KIRO,
        PROVIDER_KIMI,
        _PROVIDER_MAX,
        _PROVIDER_INVALID = -EINVAL,
} Provider;

typedef enum AuthMethod {
        AUTH_METHOD_SOCIAL,
        AUTH_METHOD_BUILDER_ID,
        AUTH_METHOD_IDC,
        AUTH_METHOD_EXTERNAL_IDP,
        AUTH_METHOD_API_KEY,
        AUTH_METHOD_KIMI_DEVICE,
        _AUTH_METHOD_MAX,
        _AUTH_METHOD_INVALID = -EINVAL,
} AuthMethod;

/* Stored health, the part of the state that survives restarts. */
typedef enum Health {
        HEALTH_OK,
        HEALTH_NEEDS_LOGIN,
        _HEALTH_MAX,
        _HEALTH_INVALID = -EINVAL,
} Health;

/* Published state (derived from stored health, enabled flag, cooldown and in-flight refresh). */
typedef enum CredentialState {
        CREDENTIAL_ACTIVE,
        CREDENTIAL_REFRESHING,
        CREDENTIAL_COOLDOWN,
        CREDENTIAL_NEEDS_LOGIN,
        CREDENTIAL_DISABLED,
        _CREDENTIAL_STATE_MAX,
        _CREDENTIAL_STATE_INVALID = -EINVAL,
} CredentialState;

const char *provider_to_string(Provider p);
Provider provider_from_string(const char *s);
const char *auth_method_to_string(AuthMethod m);
AuthMethod auth_method_from_string(const char *s);
const char *health_to_string(Health h);
Health health_from_string(const char *s);
const char *credential_state_to_string(CredentialState s);

typedef struct CredentialRecord {
        char *id;
        Provider provider;
        AuthMethod method;

        /* Secrets: wiped on free. */
        char *access_token;
        char *refresh_token;
        char *client_secret;

        usec_t expires_at;              /* CLOCK_REALTIME µs; 0 unknown; USEC_INFINITY never */
        char *region;                   /* OIDC / auth region */
        char *profile_arn;
        char *client_id;
        usec_t client_secret_expires_at;
        char *start_url;
        char *token_endpoint;           /* external IdP */
        char *scopes;                   /* space separated, external IdP */
        char *machine_id;               /* 64 hex, stable per credential */
        char *proxy;                    /* egress proxy of this credential (Import option "proxy"), or NULL
                                         * for [Network] Proxy=; may carry a password: never logged as is */

        char *source_format;
        char *source_path;
        usec_t imported_at;

        /* A linked credential (authd-link.h): what it follows, stored so that the link outlives the
         * process (the directory fd itself is kept in the service manager's fd store). All NULL when the
         * credential is owned. link_source_sha256: the SHA-256 (hex) of the refresh token the source held
         * when last seen, when that is not our own (a rotated token not written back yet): a source that
         * still holds it is stale, and gets ours written rather than being taken. Not a secret. */
        char *link_format;              /* "kiro-cli-sqlite" or "kiro-ide-json" */
        char *link_name;                /* the file's name in the directory */
        char *link_path;                /* the path kiroctl showed (display only, never opened) */
        char *link_source_sha256;

        bool enabled;
        Health health;
        unsigned consecutive_failures;
        char *last_error;
        usec_t cooldown_until;
        char *cooldown_reason;          /* "throttled", "quota-exhausted" or NULL: why cooldown_until is set */
        unsigned throttle_count;        /* throttled reports since the last success: the cooldown escalates */
        usec_t last_refresh_at;

        /* The document as last read or written, so unknown fields survive a rewrite. */
        json_object *doc;
} CredentialRecord;

CredentialRecord *credential_record_new(void);
CredentialRecord *credential_record_free(CredentialRecord *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(CredentialRecord *, credential_record_free);

/* Parses a stored credential file. ret_error gets a static description on -EBADMSG. */
int credential_record_from_json(const char *text, size_t size, CredentialRecord **ret, const char **ret_error);
/* Serializes for storage (pretty, keeps unknown fields of c->doc). The result holds secrets. */
int credential_record_to_json(CredentialRecord *c, char **ret);

/* Checks an id: 1..64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool credential_id_is_valid(const char *id);

/* The API region: the region of the profile ARN (4th ':' field), else "us-east-1". */
const char *credential_record_api_region(const CredentialRecord *c, char *buf, size_t n);

/* Generates a fresh 64-hex machine id into c->machine_id when missing. */
int credential_record_ensure_machine_id(CredentialRecord *c);

/* Copies the login material (tokens, expiry, client registration, profile, method) of src into dst,
 * keeping dst's identity, machine id and unknown fields. Used by import --replace. */
int credential_record_take_login(CredentialRecord *dst, CredentialRecord *src);

/* Sets (format and name given) or clears (format NULL) the stored link of c. */
int credential_record_set_link(CredentialRecord *c, const char *format, const char *name, const char *path);
