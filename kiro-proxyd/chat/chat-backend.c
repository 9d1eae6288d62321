/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every back end shares (chat-backend.h): the commit gate and the kept error body. */
#include <assert.h>

#include "chat/chat-backend.h"

bool chat_event_is_content(ChatEventType t) {
        return t == CHAT_EVENT_TEXT || t == CHAT_EVENT_THINKING || t == CHAT_EVENT_THINKING_SIGNATURE ||
               t == CHAT_EVENT_THINKING_REDACTED || t == CHAT_EVENT_TOOL_START || t == CHAT_EVENT_TOOL_ARGS ||
               t == CHAT_EVENT_TOOL_END;
}

ChatGateResult chat_commit_gate(ChatCommitGate *g, const ChatEvent *ev) {
        assert(g);
        assert(ev);

        if (g->committed)
                return CHAT_GATE_PASS;
        switch (ev->type) {
        case CHAT_EVENT_ERROR:
                /* Kept: whether it is retried is decided when the transfer ends. Out of memory for the
                 * message leaves the kind, which is what the decision needs. */
                chat_error_done(&g->error);
                g->error.kind = ev->error ? ev->error->kind : CHAT_ERROR_UNKNOWN;
                g->error.message = ev->error && ev->error->message ? strdup(ev->error->message) : NULL;
                g->have_error = true;
                return CHAT_GATE_HOLD;
        case CHAT_EVENT_END:
                g->ended = true;
                g->end_event = *ev;
                g->end_usage = ev->usage ? *ev->usage : (ChatUsage) {};
                g->end_event.usage = &g->end_usage;
                return CHAT_GATE_HOLD;
        default:
                if (!chat_event_is_content(ev->type))
                        return CHAT_GATE_HOLD;
                g->committed = true;
                return CHAT_GATE_COMMIT;
        }
}

bool chat_commit_gate_take_end(ChatCommitGate *g, ChatEvent *ret) {
        assert(g);
        assert(ret);

        if (g->committed || !g->ended)
                return false;
        g->committed = true;
        *ret = g->end_event;
        return true;
}

void chat_commit_gate_reset(ChatCommitGate *g) {
        assert(g);
        chat_error_done(&g->error);
        g->have_error = false;
        g->ended = false;
        g->end_event = (ChatEvent) {};
        g->end_usage = (ChatUsage) {};
}

int chat_error_body_append(char **body, size_t *size, const char *p, size_t n) {
        assert(body);
        assert(size);
        assert(p || n == 0);

        size_t take = MIN(n, CHAT_ERROR_BODY_MAX - MIN(*size, (size_t) CHAT_ERROR_BODY_MAX));
        if (take == 0)
                return 0;
        char *b = realloc(*body, *size + take + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + *size, p, take);
        *size += take;
        b[*size] = 0;
        *body = b;
        return 0;
}
