/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Kiro back end: one generateAssistantResponse call per client request, over libcurl multi on the
 * event loop, with the retry rules of KIRO-PROTOCOL A.10 before the first content byte and none after. */
#pragma once

#include <systemd/sd-event.h>

#include "curl-glue.h"
#include "chat/chat-backend.h"
#include "kiro/kiro-stream.h"
#include "auth/auth-select.h"
#include "auth/auth-tokencache.h"

/* Header values that make us look like the Kiro IDE (KIRO-PROTOCOL A.2, B §3.2): one place to change. */
#define KIRO_IDE_VERSION "0.11.63"
#define KIRO_SDK_UA "aws-sdk-js/1.0.34 ua/2.1 os/linux lang/js md/nodejs#20.18.0 api/codewhispererstreaming#1.0.34 m/E"
#define KIRO_SDK_XUA "aws-sdk-js/1.0.34"

typedef struct UpstreamConfig {
        char **endpoints;               /* Endpoints=: URL templates with {region}, tried in order */
        char *ca_file;                  /* CAFile= */
        char *default_profile_arn;      /* DefaultProfileArn= */
        size_t max_payload_bytes;       /* MaxUpstreamPayloadBytes= */
        bool trim_history;              /* TrimHistory= */
        size_t max_frame_bytes;         /* MaxFrameBytes= */
        usec_t first_token_timeout;     /* FirstTokenTimeoutSec= */
        unsigned max_attempts;          /* MaxAttempts= (all causes together) */
        usec_t backoff_initial;         /* RetryBackoffSec=: first backoff, doubled per attempt */
        usec_t backoff_max;
        usec_t stall_timeout;           /* no byte from upstream for this long → failure */
        /* HTTPVersion=, MaxUpstreamConnections=, UpstreamIdleTimeoutSec= */
        CurlGlueLimits glue_limits;
} UpstreamConfig;

void upstream_config_init(UpstreamConfig *c);
void upstream_config_done(UpstreamConfig *c);

typedef struct Upstream Upstream;
typedef struct UpstreamCall UpstreamCall;

/* selector (optional) picks the credential of each attempt; without it kiro-authd chooses. */
int upstream_new(sd_event *e, TokenCache *tokens, CredentialSelector *selector, UpstreamConfig *config,
                 Upstream **ret);
Upstream *upstream_free(Upstream *u);
CurlGlue *upstream_glue(Upstream *u);
/* What other calls to Kiro (kiro-models.c) share with the chat: tokens, configuration, loop. */
TokenCache *upstream_tokens(Upstream *u);
const UpstreamConfig *upstream_config(Upstream *u);
sd_event *upstream_event(Upstream *u);
/* Frees the easy handles kept for reuse (when idle). */
void upstream_trim(Upstream *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(Upstream *, upstream_free);

/* The Kiro back end for ChatContext: call_start() takes the Upstream. */
extern const ChatBackendOps kiro_backend_ops;

/* Starts a call for conv (see ChatBackendOps.call_start). */
int upstream_call_start(Upstream *u, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                        UpstreamCall **ret);
/* Ends a call early (client went away); no callback runs afterwards. */
void upstream_call_cancel(UpstreamCall *call);
/* Back pressure: stop/resume reading upstream. */
void upstream_call_pause(UpstreamCall *call, bool pause);
/* Usage so far. */
const ChatUsage *upstream_call_usage(UpstreamCall *call);
unsigned upstream_call_attempts(UpstreamCall *call);
