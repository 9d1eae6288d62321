/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What the chat needs of a back end (an upstream service: Kiro, later Kimi): start a call for a
 * conversation, get its events or its failure through a handler, cancel it, pause it for a slow client,
 * read its usage. A back end is a folder (kiro/, kimi/) that exports one ChatBackendOps; kiro-proxyd.c
 * puts it in ChatContext under the ModelProvider it serves. */
#pragma once

#include "chat/chat-conversation.h"
#include "chat/chat-event.h"
#include "chat/chat-failure.h"

/* A back end's call, opaque to the chat: each back end casts its own call type to and from it. */
typedef struct ChatCall ChatCall;

typedef struct ChatCallHandler {
        /* Answer events, in order, once content may flow (the first content event commits the call: a back
         * end retries nothing after it). ERROR and END arrive here only for committed calls, or for a call
         * that completed normally without content. A negative return cancels the call. */
        int (*on_event)(ChatCall *call, const ChatEvent *ev, void *userdata);
        /* The call failed before anything was committed, after all retries. The call is finished: do not
         * cancel it. */
        void (*on_fail)(ChatCall *call, const Failure *f, void *userdata);
} ChatCallHandler;

typedef struct ChatBackendOps {
        const char *name;
        /* Starts a call for conv (which must stay valid until the call finishes). *ret_call is set before
         * any callback runs; from then on every outcome, even an immediate failure, goes through h. */
        int (*call_start)(void *backend, const Conversation *conv, const ChatCallHandler *h, void *userdata,
                          ChatCall **ret_call);
        /* Ends a call early (the client went away); no callback runs afterwards. NULL is fine. */
        void (*call_cancel)(ChatCall *call);
        /* Back pressure: stop/resume reading upstream. NULL is fine. */
        void (*call_pause)(ChatCall *call, bool pause);
        /* Usage reported so far (NULL when none). */
        const ChatUsage *(*call_usage)(ChatCall *call);
        /* For the request's log line and metrics: the credential of the last attempt (NULL when none) and
         * the number of attempts so far. NULL is fine. */
        void (*call_info)(ChatCall *call, const char **ret_credential, unsigned *ret_attempts);
} ChatBackendOps;

typedef struct ChatBackend {
        const ChatBackendOps *ops;      /* NULL: no back end for this provider */
        void *data;                     /* the back end's own state, passed to call_start() */
} ChatBackend;

/* The commit rule of every back end, in one place. Before the first content event of an attempt an ERROR
 * or an END is held (the attempt may still be retried; an END is passed on when the transfer ended well),
 * and every other event is dropped; the first content event commits the call, and from then on every event
 * goes to the handler. The gate lives in the back end's call; chat_commit_gate_reset() between attempts. */
typedef struct ChatCommitGate {
        bool committed;
        bool have_error;        /* an ERROR before commit, kept for the retry decision */
        ChatError error;
        bool ended;             /* END before commit: a complete answer without content */
        ChatEvent end_event;
        ChatUsage end_usage;
} ChatCommitGate;

typedef enum ChatGateResult {
        CHAT_GATE_HOLD,         /* held or dropped: not for the handler */
        CHAT_GATE_COMMIT,       /* the first content event: the call is committed now; pass it on */
        CHAT_GATE_PASS,         /* the call was committed before: pass it on */
} ChatGateResult;

bool chat_event_is_content(ChatEventType t);
ChatGateResult chat_commit_gate(ChatCommitGate *g, const ChatEvent *ev);
/* After a transfer that ended well: when an END was held and nothing was committed, commits the call and
 * stores that END in *ret (valid as long as the gate) to pass on. */
bool chat_commit_gate_take_end(ChatCommitGate *g, ChatEvent *ret);
/* Forgets what the last attempt held (not whether the call is committed). */
void chat_commit_gate_reset(ChatCommitGate *g);

/* The body of an upstream error answer, kept up to CHAT_ERROR_BODY_MAX bytes (the rest is dropped) and
 * NUL-terminated. -ENOMEM, else 0. */
#define CHAT_ERROR_BODY_MAX (64U * 1024U)
int chat_error_body_append(char **body, size_t *size, const char *p, size_t n);
