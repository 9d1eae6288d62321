/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The conversation form → the message list Kiro accepts: the normalization rules of KIRO-PROTOCOL A.4
 * (1–9, and 10–12 for the tools), in order, each one linear in the size of the request. */
#pragma once

#include "buf.h"
#include "chat/chat-conversation.h"
#include "kiro/kiro-aliases.h"

#define KIRO_PLACEHOLDER_EMPTY "(empty)"
/* Tool descriptions longer than this (in characters) move into the system text. */
#define KIRO_TOOL_DESCRIPTION_MAX 10000U

/* A part of a message in Kiro's shape. Strings are borrowed from the Conversation or from
 * KiroConversation.pool. */
typedef struct KiroPart {
        ConvPartType type;
        const char *text;       /* TEXT, THINKING, TOOL_RESULT content */
        const char *id;         /* TOOL_USE, TOOL_RESULT */
        const char *name;       /* TOOL_USE (the client's name) */
        const char *input;      /* TOOL_USE */
        const char *format;     /* IMAGE: "jpeg", "png", "gif", "webp" */
        const char *bytes;      /* IMAGE: base64 */
        bool is_error;
        bool placeholder;       /* an "(empty)" added by rule 6 */
        bool dropped;
} KiroPart;

typedef struct KiroMessage {
        ConvRole role;          /* USER or ASSISTANT once normalized */
        KiroPart *parts;
        size_t n_parts, n_allocated;
} KiroMessage;

typedef struct KiroTool {
        const char *name;       /* as sent: the alias for long names */
        const char *client_name;
        const char *description;
        json_object *schema;    /* owned, stripped (rule 12) */
} KiroTool;

/* The normalized conversation: alternating user/assistant messages starting and ending with user, and
 * the tools to declare. */
typedef struct KiroConversation {
        const Conversation *conv;
        KiroMessage *messages;
        size_t n_messages, n_allocated;
        KiroTool *tools;
        size_t n_tools, n_tools_allocated;
        StrMap tool_names;      /* client names of tools, case-insensitive (Kiro compares so) */
        char **pool;            /* strings made here */
        size_t n_pool, n_pool_allocated;
        Buf tool_docs;          /* rule 11: "## Tool: NAME" sections for the system text */
        KiroToolAliases aliases;
        char *error;            /* why normalization failed, for the client */
} KiroConversation;

void kiro_conversation_done(KiroConversation *k);

/* Applies the rules to c into *ret (which must be zeroed). -EINVAL for a request Kiro cannot take, with
 * *ret_error a message naming the field ("messages[2].content[0]: …"); -ENOMEM without one. On failure
 * *ret is still to be passed to kiro_conversation_done(). */
int kiro_conversation_normalize(const Conversation *c, KiroConversation *ret, char **ret_error);

/* Whether a part counts as content text of its message (text; thinking of an assistant while the
 * request asks for reasoning). */
bool kiro_part_is_content(const KiroConversation *k, const KiroMessage *m, const KiroPart *p);
/* NULL or only white space. */
bool kiro_text_is_blank(const char *s);
