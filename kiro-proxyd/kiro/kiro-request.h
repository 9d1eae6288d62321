/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Conversation form → Kiro generateAssistantResponse JSON body (KIRO-PROTOCOL A.3–A.5, B §3.3–3.4):
 * kiro-normalize applies the A.4 rules, this file serializes, trims the history and picks the id. */
#pragma once

#include <stddef.h>
#include <systemd/sd-id128.h>

#include "macro.h"
#include "chat/chat-conversation.h"
#include "kiro/kiro-aliases.h"

#define KIRO_MAX_UPSTREAM_PAYLOAD_DEFAULT 600000U
#define KIRO_ORIGIN "AI_EDITOR"

/* A fresh random (version 4) UUID in its 36-character text form, from sd_id128_randomize(). */
int kiro_uuid4(char ret[static SD_ID128_UUID_STRING_MAX]);

/* The conversationId for a session id: the id itself when it is a UUID (lower-cased), else a UUID
 * derived from its SHA-256, so that one client session always maps to one valid conversationId. */
int kiro_conversation_id_from_session(const char *session_id, char ret[static SD_ID128_UUID_STRING_MAX]);

typedef struct KiroRequestParams {
        const char *profile_arn;        /* NULL: no "profileArn" member */
        size_t max_payload_bytes;       /* 0: KIRO_MAX_UPSTREAM_PAYLOAD_DEFAULT */
        const char *conversation_id;    /* a UUID; NULL: derived from the session id, else a fresh uuid4 */
        bool trim_history;              /* TrimHistory=: drop the oldest turns to fit the payload limit */
} KiroRequestParams;

typedef struct KiroRequest {
        char *body;                     /* compact JSON, NUL-terminated */
        size_t body_size;
        char *conversation_id;
        KiroToolAliases tool_aliases;   /* for kiro_tool_aliases_restore() on the response */
        size_t n_trimmed;               /* history messages dropped by trim_history */
} KiroRequest;

KiroRequest *kiro_request_free(KiroRequest *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(KiroRequest *, kiro_request_free);

/* Builds the request body. c->model_id must be set (the resolved upstream model id). The normalization
 * rules of KIRO-PROTOCOL A.4 are applied in their order (kiro-normalize.c says where an implementation
 * detail differs from a literal reading), then A.5 thinking. c is not modified.
 *
 * Errors: -EINVAL for a request Kiro cannot take (unsupported or malformed image, image URL, empty
 * message list, missing model id, empty tool name) and -EMSGSIZE when the body is over the payload limit;
 * both with *ret_error set to a malloc'ed message naming the field (e.g. "messages[2].content[0]: …") or
 * the size and the limit, meant for the client (front ends answer 400, or 413 for -EMSGSIZE as they
 * choose). -ENOMEM without a message. ret_error may be NULL. */
int kiro_request_build(const Conversation *c, const KiroRequestParams *params, KiroRequest **ret,
                       char **ret_error);
