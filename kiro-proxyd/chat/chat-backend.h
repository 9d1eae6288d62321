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
