/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Access tokens from kiro-authd: an in-memory cache per credential, filled by asynchronous GetToken calls,
 * renewed shortly before expiry, kept while kiro-authd is away (its name has no owner) and dropped when a new
 * kiro-authd takes the name. Holds no secret at rest. */
#pragma once

#include <systemd/sd-bus.h>

#include "macro.h"
#include "time-util.h"

typedef struct Token {
        unsigned n_ref;
        char *credential_id;
        char *access_token;     /* secret, wiped on free */
        usec_t expires_at;      /* CLOCK_REALTIME µs; UINT64_MAX never */
        char *region;           /* API region */
        char *profile_arn;
        char *auth_method;
        char *machine_id;
        char *proxy;            /* the credential's egress proxy (may carry a password), NULL: Proxy= */
        /* Kimi (B §7): API base, User-Agent and the X-Msh-* headers ("Name: value") of kimi-cli. */
        char *api_base;
        char *user_agent;
        char **headers;
} Token;

Token *token_ref(Token *t);
Token *token_unref(Token *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(Token *, token_unref);

typedef struct TokenCache TokenCache;
typedef struct TokenRequest TokenRequest;

/* On success t is set (borrowed: token_ref() to keep it) and error is NULL; on failure t is NULL and error
 * is kiro-authd's error (name + secret-free message). The request is finished when this runs. */
typedef void (*TokenCallback)(Token *t, const sd_bus_error *error, void *userdata);

int token_cache_new(sd_bus *bus, TokenCache **ret);
TokenCache *token_cache_free(TokenCache *tc);
DEFINE_TRIVIAL_CLEANUP_FUNC(TokenCache *, token_cache_free);

/* Gets a token for provider ("kiro", "kimi"), optionally for one credential id. Returns 1 and *ret_token
 * (borrowed) when a cached token is good; 0 when a GetToken call is under way — cb runs later and
 * *ret_request may be cancelled until then; negative errno on failure. Never blocks. */
int token_cache_get(TokenCache *tc, const char *provider, const char *credential_id, TokenCallback cb,
                    void *userdata, Token **ret_token, TokenRequest **ret_request);

/* Stops a pending request; cb will not run. */
void token_request_cancel(TokenRequest *r);

/* Forgets the cached token of a credential (after upstream refused it). */
void token_cache_invalidate(TokenCache *tc, const char *credential_id);

/* Tells kiro-authd about an upstream outcome ("unauthorized", "throttled", "quota-exhausted", "suspended",
 * "server-error"). Fire and forget; "unauthorized" also invalidates the cached token. */
void token_cache_report(TokenCache *tc, const char *credential_id, const char *kind, usec_t retry_after);

/* Number of GetToken calls sent so far (for tests and metrics). */
uint64_t token_cache_n_calls(TokenCache *tc);
