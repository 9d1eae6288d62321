/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The id an import without --id gets, and telling whether two logins are of the same account. */
#pragma once

#include "authd-credential.h"

/* Hex digits of the account hash that go into a derived id. */
#define ACCOUNT_HASH_ID_CHARS 8U

/* The account key of a login is made of its non-secret fields that tell accounts apart: provider, method,
 * profile ARN (unless it is one of the shared default ARNs every social or Builder ID login carries),
 * start URL, OIDC client id and token endpoint. Never a token, client secret or API key.
 * Writes the 64 hex digits of its SHA-256 to ret and returns 1; returns 0 when the login has none of
 * these fields (a bare refresh token, an API key, a social login with the shared ARN), or -EIO. */
int credential_record_account_hash(const CredentialRecord *c, char ret[static 65]);

/* Picks the id for login c among the existing records:
 *   - with an account key: "<provider>-<method>-<first 8 hex of the account hash>", e.g.
 *     "kiro-builder-id-3fa29c01"; if one of existing has the same account key, *ret_same_index gets its
 *     index and *ret_id that record's id (the caller reports it or replaces it);
 *   - without one: "<provider>-<method>", then "-2", "-3", ... whichever is free.
 * An id taken by another account (an 8-digit collision) gets a "-2"... suffix the same way.
 * *ret_same_index is (size_t) -1 when no existing record is of the same account. */
int credential_pick_default_id(const CredentialRecord *c, const CredentialRecord *const *existing, size_t n,
                               char **ret_id, size_t *ret_same_index);

/* kiro-authd's wrapper (authd-ids-manager.c): picks among the manager's credentials; *ret_existing gets
 * the credential of the same account, or NULL. */
typedef struct Manager Manager;
typedef struct Credential Credential;
int manager_import_default_id(Manager *m, const CredentialRecord *c, char **ret_id, Credential **ret_existing);
