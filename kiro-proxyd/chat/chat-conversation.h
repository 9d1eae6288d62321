/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The internal request form that both front ends (OpenAI chat completions, Anthropic messages) fill and
 * the Kiro request builder consumes. Plain structs; everything is owned by the Conversation. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "json-util.h"
#include "macro.h"

/* Roles. A front end maps its role strings with conv_role_from_string(): "user" and "assistant" map to
 * themselves, every other string (OpenAI "system"/"developer" messages inside the list; the front ends
 * refuse roles their API does not have) to CONV_ROLE_OTHER, which the Kiro request builder turns into a user turn at step 2 of
 * KIRO-PROTOCOL A.4. The top-level system prompt goes to Conversation.system instead. Tool results
 * (OpenAI role "tool", Anthropic tool_result blocks) are CONV_PART_TOOL_RESULT parts of a user
 * message. */
typedef enum ConvRole {
        CONV_ROLE_USER,
        CONV_ROLE_ASSISTANT,
        CONV_ROLE_OTHER,
        _CONV_ROLE_MAX,
        _CONV_ROLE_INVALID = -EINVAL,
} ConvRole;

ConvRole conv_role_from_string(const char *s) _pure_;
const char *conv_role_to_string(ConvRole r) _pure_;

typedef enum ConvPartType {
        CONV_PART_TEXT,
        CONV_PART_IMAGE,
        CONV_PART_TOOL_USE,
        CONV_PART_TOOL_RESULT,
        CONV_PART_THINKING,
        _CONV_PART_TYPE_MAX,
        _CONV_PART_TYPE_INVALID = -EINVAL,
} ConvPartType;

const char *conv_part_type_to_string(ConvPartType t) _pure_;

/* The image media types every client API and Kiro take: the Kiro format name ("jpeg", "png", "gif",
 * "webp") of the media type mt[0..len), any case ("image/jpg" too), or NULL. */
const char *conv_image_format(const char *mt, size_t len) _pure_;

/* One content part. Which fields are used depends on the type; unused ones stay NULL.
 *   TEXT:        text
 *   IMAGE:       data = base64 or a "data:<media type>;base64,…" URL (the front ends refuse anything else,
 *                api_check_image(); the builder checks again); media_type = "image/png" etc., may be NULL
 *                for data URLs
 *   TOOL_USE:    id, name, input = JSON text of the arguments (NULL or "" = {})
 *   TOOL_RESULT: id = the tool_use id answered, text = result content, is_error
 *   THINKING:    text, signature (may be NULL) */
typedef struct ConvPart {
        ConvPartType type;
        char *text;
        char *media_type;
        char *data;
        char *id;
        char *name;
        char *input;
        char *signature;
        bool is_error;
} ConvPart;

typedef struct ConvMessage {
        ConvRole role;
        ConvPart *parts;
        size_t n_parts;
} ConvMessage;

typedef struct ConvTool {
        char *name;
        char *description;      /* may be NULL */
        json_object *input_schema; /* owned reference; may be NULL */
} ConvTool;

typedef enum ConvToolChoice {
        CONV_TOOL_CHOICE_AUTO,          /* default */
        CONV_TOOL_CHOICE_NONE,
        CONV_TOOL_CHOICE_ANY,           /* OpenAI "required", Anthropic "any" */
        CONV_TOOL_CHOICE_TOOL,          /* a named tool: tool_choice_name */
        _CONV_TOOL_CHOICE_MAX,
        _CONV_TOOL_CHOICE_INVALID = -EINVAL,
} ConvToolChoice;

/* Default thinking budget when reasoning is asked for without one (e.g. a "-thinking" model alias), and
 * the OpenAI reasoning_effort mapping of KIRO-PROTOCOL A.5. */
#define CONV_THINKING_BUDGET_DEFAULT 16000U
/* "low" → 4000, "medium" → 16000, "high" → 32000 ("minimal" → 4000, "xhigh"/"max" → 32000);
 * anything else -EINVAL. */
int conv_thinking_budget_from_effort(const char *effort, uint32_t *ret);

typedef struct Conversation {
        char *model;            /* the name the client asked for */
        char *model_id;         /* resolved upstream id (e.g. "claude-sonnet-4.5") */
        char *system;           /* top-level system prompt, may be NULL */

        ConvMessage *messages;
        size_t n_messages;

        ConvTool *tools;
        size_t n_tools;
        ConvToolChoice tool_choice;
        char *tool_choice_name;

        /* Sampling, as the client sent it. Kiro has no fields for these; they are kept for the front ends
         * (stop sequences and max_tokens are applied while rendering). */
        uint64_t max_tokens;    /* 0 = not given */
        bool has_temperature;
        double temperature;
        bool has_top_p;
        double top_p;
        char **stop;            /* NULL-terminated, may be NULL */

        bool thinking;          /* the client asked for reasoning */
        uint32_t thinking_budget; /* 0 = CONV_THINKING_BUDGET_DEFAULT */

        bool stream;
        char *session_id;       /* becomes the Kiro conversationId when set */
        /* Keeps the client session on one credential (credential_selector_pick()), nothing else: the
         * x-kirod-session header, else the OpenAI `user` field, else the Anthropic session. NULL: none. */
        char *affinity_key;
        char request_id[37];    /* the client request's id (a UUID, x-request-id), "" when none */
} Conversation;

int conversation_new(Conversation **ret);
Conversation *conversation_free(Conversation *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Conversation *, conversation_free);

/* Appends an empty message and returns a pointer to it, valid until the next append. */
int conversation_add_message(Conversation *c, ConvRole role, ConvMessage **ret);
/* Appends an empty part of the given type; the pointer is valid until the next append to m. */
int conv_message_add_part(ConvMessage *m, ConvPartType type, ConvPart **ret);

/* Convenience appenders: copy their strings; NULL for an optional string stays NULL. */
int conv_message_add_text(ConvMessage *m, const char *text);
int conv_message_add_image(ConvMessage *m, const char *media_type, const char *data);
int conv_message_add_tool_use(ConvMessage *m, const char *id, const char *name, const char *input);
int conv_message_add_tool_result(ConvMessage *m, const char *tool_use_id, const char *content, bool is_error);
int conv_message_add_thinking(ConvMessage *m, const char *text, const char *signature);

/* Appends a tool; takes a new reference on schema (NULL allowed). */
int conversation_add_tool(Conversation *c, const char *name, const char *description, json_object *schema);

/* The input-token estimate for count_tokens and for usage when Kiro reports none: the same estimator
 * (proxyd-tokens.h) over system text, every part, tool names, descriptions and schemas, plus a small
 * per-message overhead and a fixed cost per image. */
uint64_t conversation_estimate_input_tokens(const Conversation *c);
