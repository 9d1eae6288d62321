/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Credential selection in kiro-proxyd: a mirror of kiro-authd's credentials (GetManagedObjects once per
 * kiro-authd instance, then InterfacesAdded/Removed and PropertiesChanged) and the per-request pick by
 * kiro-authd's SelectionPolicy, with session affinity. Shared by every back end. */
#pragma once

#include <systemd/sd-bus.h>

#include "macro.h"
#include "time-util.h"
#include "auth/auth-tokencache.h"

typedef struct CredentialSelector CredentialSelector;

/* tokens (optional, borrowed) loses the cached token of a credential that is disabled or removed. */
int credential_selector_new(sd_bus *bus, TokenCache *tokens, CredentialSelector **ret);
CredentialSelector *credential_selector_free(CredentialSelector *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(CredentialSelector *, credential_selector_free);

/* Picks the credential for one request of provider ("kiro", "kimi"). session (optional) keeps a client
 * session on one credential while it is usable; avoid (optional) is a credential this request moves away
 * from. Returns 1 and *ret_id (borrowed until the next event-loop
 * iteration) when one is picked: a usable one, or when every enabled one is cooling down after throttling,
 * the one whose cooldown ends first. Returns 0 when the mirror has not been read yet (kiro-authd away or
 * still answering): the caller lets kiro-authd choose (credential ""). Returns -ENOKEY when none can serve;
 * *ret_retry_at is then the CLOCK_REALTIME µs when the soonest comes back (quota), or 0 when none will
 * without an operator. Counts the pick for least-used. */
int credential_selector_pick(CredentialSelector *s, const char *provider, const char *session, const char *avoid,
                             const char **ret_id, usec_t *ret_retry_at);

/* Records an upstream outcome locally at once (the signal from kiro-authd follows), so that the retry of
 * the same request already moves on: "throttled" and "quota-exhausted" cool the credential down for
 * retry_after (at least 1 s), "suspended" disables it, "ok" ends a throttling cooldown. */
void credential_selector_note(CredentialSelector *s, const char *id, const char *kind, usec_t retry_after);

/* Whether id is marked as having been throttled (so that a success is worth reporting). */
bool credential_selector_throttled(CredentialSelector *s, const char *id);

/* Whether some credential of provider other than id is usable now (a failover can go there at once). */
bool credential_selector_has_other(CredentialSelector *s, const char *provider, const char *id);

/* Whether kiro-authd holds any credential of provider ("kiro", "kimi"), usable or not: /v1/models lists a
 * provider's models only then. */
bool credential_selector_has_provider(CredentialSelector *s, const char *provider);

/* Number of known credentials and of GetManagedObjects calls (tests, metrics). */
size_t credential_selector_count(CredentialSelector *s);
