/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One chat request from a client, whatever its API: conversation in, upstream call, stream events through
 * the thinking splitter and stop sequences into a front end's renderer. */
#pragma once

#include "buf.h"
#include "http/http.h"
#include "chat/chat-backend.h"
#include "chat/chat-catalog.h"
#include "chat/chat-failure.h"
#include "chat/chat-models.h"
#include "chat/chat-thinking.h"
#include "chat/chat-tokens.h"

typedef enum ChatStop {
        CHAT_STOP_END_TURN,
        CHAT_STOP_TOOL_USE,
        CHAT_STOP_MAX_TOKENS,
        CHAT_STOP_STOP_SEQUENCE,
        _CHAT_STOP_MAX,
} ChatStop;

typedef struct ChatToolCall {
        char *id;
        char *name;
        Buf args;
} ChatToolCall;

typedef struct Chat Chat;

/* A front end. Every callback returns 0 or a negative errno (the client went away: the chat ends). For
 * streamed responses the front end starts the HTTP stream in its first callback. */
typedef struct ChatRenderer {
        /* Optional: called once before the upstream call starts (c->frontend_state is set). */
        int (*begin)(Chat *c);
        int (*text)(Chat *c, const char *s, size_t n);
        int (*thinking)(Chat *c, const char *s, size_t n);
        int (*signature)(Chat *c, const char *s, size_t n);
        int (*tool_start)(Chat *c, ChatToolCall *t, unsigned index);
        int (*tool_args)(Chat *c, ChatToolCall *t, unsigned index, const char *s, size_t n);
        int (*tool_end)(Chat *c, ChatToolCall *t, unsigned index);
        /* Normal end: stream → closing events; not streamed → the whole JSON body. Final. */
        int (*finish)(Chat *c, ChatStop stop);
        /* Failure: not started → an error response; started → an error event that ends the stream. Final. */
        int (*fail)(Chat *c, const Failure *e);
} ChatRenderer;

typedef struct ChatContext {
        ChatBackend backends[_MODEL_PROVIDER_MAX];      /* by the provider of the requested model */
        usec_t ping_interval;           /* PingIntervalSec=: Anthropic "ping" events; 0 = default, infinity = none */
        ChatCatalog catalog;            /* the live model list (ops NULL: the built-in table only) */
        /* Whether GET /v1/models lists a provider's models now (NULL: all); Kimi's only while kiro-authd
         * holds a Kimi credential. */
        bool (*provider_listed)(ModelProvider p, void *userdata);
        void *provider_listed_userdata;
} ChatContext;

struct Chat {
        HttpRequest *http;
        Conversation *conv;
        ModelInfo model;
        const ChatRenderer *renderer;
        void *frontend_state;           /* the front end's own state */
        void (*frontend_state_free)(void *state);
        const ChatBackend *backend;
        ChatCall *call;                 /* the back end's call, NULL once it finished */
        ThinkingSplitter splitter;

        bool started;                   /* the HTTP response began (streams) */
        bool finished;
        char *id;                       /* "chatcmpl-…" / "msg_…" */
        usec_t created;

        /* Accumulated answer; text only for non-streamed responses. */
        Buf text;
        Buf reasoning;
        Buf signature;
        ChatToolCall *tools;
        size_t n_tools;
        TokenCounter output_counter;
        uint64_t input_estimate;

        /* Stop sequences: text held back while it could still be the start of one. */
        Buf held;
        size_t stop_max;
        bool stopped;
        const char *stop_matched;       /* the stop sequence that matched (in conv->stop) */

        uint64_t input_tokens, output_tokens;   /* resolved at the end */
        uint64_t cached_tokens;                 /* of input_tokens, read from Kiro's prompt cache (when reported) */
};

/* Takes ownership of conv. On failure before the upstream starts, the chat renders the error itself. */
int chat_start(ChatContext *ctx, HttpRequest *http, Conversation *conv, const ModelInfo *model,
               const ChatRenderer *renderer, void *frontend_state, void (*frontend_state_free)(void *state),
               const char *id_prefix);

/* Helpers for renderers. */
int chat_stream_write(Chat *c, const char *data, size_t size);
const char *chat_stop_reason_openai(ChatStop s);
const char *chat_stop_reason_anthropic(ChatStop s);
/* Usage as KIRO-PROTOCOL A.6 resolves it; valid in finish(). */
void chat_usage(Chat *c, uint64_t *ret_input, uint64_t *ret_output);
/* Of the input tokens, those Kiro read from its prompt cache (0 when it reports none); valid in finish(). */
uint64_t chat_usage_cached(Chat *c);
