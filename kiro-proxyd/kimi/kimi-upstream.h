/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kimi back end: one streamed chat completions call per client request at Kimi's OpenAI-compatible
 * API (KIRO-PROTOCOL B §7), over the daemon's libcurl multi on the event loop, with the token and headers
 * kiro-authd hands out for a Kimi credential. Retries only before the first content byte: a 401 reports
 * the token unauthorized, fetches a fresh one and retries once. */
#pragma once

#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "chat/chat-backend.h"
#include "auth/auth-select.h"
#include "auth/auth-tokencache.h"

#define KIMI_API_BASE_DEFAULT "https://api.kimi.com/coding/v1"
#define KIMI_USER_AGENT_DEFAULT "KimiCLI/1.0"

typedef struct KimiConfig {
        char *api_base;                 /* [Kimi] APIBase=; NULL: the credential's (kiro-authd's KimiAPIBase=) */
        char *ca_file;                  /* [Kiro] CAFile= (one trust store for both back ends) */
        usec_t first_token_timeout;     /* FirstTokenTimeoutSec= */
        usec_t stall_timeout;
        size_t max_line;                /* MaxFrameBytes=: one SSE line */
} KimiConfig;

typedef struct KimiUpstream KimiUpstream;
typedef struct KimiCall KimiCall;

/* Uses glue (the Kiro back end's, so both share connections limits and the trust store), not owned. */
/* selector (may be NULL) picks the Kimi credential per request, as for Kiro; without one kiro-authd does. */
int kimi_upstream_new(sd_event *e, CurlGlue *glue, TokenCache *tokens, CredentialSelector *selector,
                      const KimiConfig *config, KimiUpstream **ret);
KimiUpstream *kimi_upstream_free(KimiUpstream *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(KimiUpstream *, kimi_upstream_free);

/* The chat completions URL for a base: https, or http to a loopback host (tests). -EPERM/-EPROTONOSUPPORT
 * for another scheme or host, -EINVAL for a URL libcurl cannot parse. */
int kimi_chat_url(const char *base, char **ret);

/* The Kimi back end for ChatContext: call_start() takes the KimiUpstream. */
extern const ChatBackendOps kimi_backend_ops;
