/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The commit gate and the kept error body that every back end uses (chat/chat-backend.h). */
#include <string.h>

#include "chat/chat-backend.h"
#include "tests.h"

TEST(gate_holds_error_and_end_until_content) {
        ChatCommitGate g = {};
        ChatError err = { .kind = CHAT_ERROR_THROTTLED, .message = (char *) "slow down" };
        ChatUsage usage = { .input_tokens = 7, .output_tokens = 3 };

        /* Before content: USAGE and other non-content events are dropped, ERROR and END are held. */
        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_USAGE, .usage = &usage }), CHAT_GATE_HOLD);
        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_ERROR, .error = &err }), CHAT_GATE_HOLD);
        ASSERT_TRUE(g.have_error);
        ASSERT_EQ(g.error.kind, CHAT_ERROR_THROTTLED);
        ASSERT_STREQ(g.error.message, "slow down");
        ASSERT_TRUE(g.error.message != err.message);    /* a copy: the event's text is gone after the call */
        ASSERT_FALSE(g.committed);

        /* The next attempt starts clean. */
        chat_commit_gate_reset(&g);
        ASSERT_FALSE(g.have_error);
        ASSERT_NULL(g.error.message);

        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_TEXT, .text = "hi", .size = 2 }),
                  CHAT_GATE_COMMIT);
        ASSERT_TRUE(g.committed);
        /* Once committed everything passes, ERROR and END included. */
        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_USAGE, .usage = &usage }), CHAT_GATE_PASS);
        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_ERROR, .error = &err }), CHAT_GATE_PASS);
        ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_END }), CHAT_GATE_PASS);
        ASSERT_FALSE(g.have_error);
        /* A reset between attempts never un-commits. */
        chat_commit_gate_reset(&g);
        ASSERT_TRUE(g.committed);
        chat_commit_gate_reset(&g);
}

TEST(gate_every_content_type_commits) {
        static const ChatEventType content[] = {
                CHAT_EVENT_TEXT, CHAT_EVENT_THINKING, CHAT_EVENT_THINKING_SIGNATURE, CHAT_EVENT_THINKING_REDACTED,
                CHAT_EVENT_TOOL_START, CHAT_EVENT_TOOL_ARGS, CHAT_EVENT_TOOL_END,
        };
        for (size_t i = 0; i < sizeof content / sizeof content[0]; i++) {
                ChatCommitGate g = {};
                ASSERT_TRUE(chat_event_is_content(content[i]));
                ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = content[i] }), CHAT_GATE_COMMIT);
        }
        ASSERT_FALSE(chat_event_is_content(CHAT_EVENT_USAGE));
        ASSERT_FALSE(chat_event_is_content(CHAT_EVENT_END));
        ASSERT_FALSE(chat_event_is_content(CHAT_EVENT_ERROR));
}

TEST(gate_end_without_content_is_taken_once) {
        ChatCommitGate g = {};
        ChatUsage usage = { .input_tokens = 11, .output_tokens = 0 };
        ChatEvent end;

        ASSERT_FALSE(chat_commit_gate_take_end(&g, &end));      /* nothing held */
        {
                /* The END's usage lives in the back end's stream, which may go before the END is passed on. */
                ChatUsage transient = usage;
                ASSERT_EQ(chat_commit_gate(&g, &(ChatEvent) { .type = CHAT_EVENT_END, .usage = &transient,
                                                              .stop_reason = CHAT_STOP_REASON_MAX_TOKENS }),
                          CHAT_GATE_HOLD);
                transient.input_tokens = 999;
        }
        ASSERT_TRUE(chat_commit_gate_take_end(&g, &end));
        ASSERT_TRUE(g.committed);
        ASSERT_EQ(end.type, CHAT_EVENT_END);
        ASSERT_EQ(end.stop_reason, CHAT_STOP_REASON_MAX_TOKENS);
        ASSERT_EQ(end.usage->input_tokens, 11);
        ASSERT_FALSE(chat_commit_gate_take_end(&g, &end));      /* only once */

        /* After content an END was passed on already: nothing to take. */
        ChatCommitGate h = {};
        ASSERT_EQ(chat_commit_gate(&h, &(ChatEvent) { .type = CHAT_EVENT_TEXT }), CHAT_GATE_COMMIT);
        ASSERT_EQ(chat_commit_gate(&h, &(ChatEvent) { .type = CHAT_EVENT_END }), CHAT_GATE_PASS);
        ASSERT_FALSE(chat_commit_gate_take_end(&h, &end));
}

TEST(error_body_is_capped_and_terminated) {
        char *body = NULL;
        size_t size = 0;
        static char chunk[40000];

        memset(chunk, 'x', sizeof chunk);
        ASSERT_OK(chat_error_body_append(&body, &size, "{\"a\":", 5));
        ASSERT_EQ(size, 5);
        ASSERT_STREQ(body, "{\"a\":");
        ASSERT_OK(chat_error_body_append(&body, &size, chunk, sizeof chunk));
        ASSERT_OK(chat_error_body_append(&body, &size, chunk, sizeof chunk));
        ASSERT_EQ(size, CHAT_ERROR_BODY_MAX);
        ASSERT_EQ(body[size], 0);
        ASSERT_EQ(strlen(body), CHAT_ERROR_BODY_MAX);
        ASSERT_OK(chat_error_body_append(&body, &size, "more", 4));     /* full: dropped, no error */
        ASSERT_EQ(size, CHAT_ERROR_BODY_MAX);
        ASSERT_OK(chat_error_body_append(&body, &size, NULL, 0));
        free(body);
}
