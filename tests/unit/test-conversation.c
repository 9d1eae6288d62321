/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Conversation form and the token estimator. */
#include "chat/chat-conversation.h"
#include "chat/chat-tokens.h"
#include "tests.h"

TEST(roles) {
        ASSERT_EQ(conv_role_from_string("user"), CONV_ROLE_USER);
        ASSERT_EQ(conv_role_from_string("assistant"), CONV_ROLE_ASSISTANT);
        ASSERT_EQ(conv_role_from_string("system"), CONV_ROLE_OTHER);
        ASSERT_EQ(conv_role_from_string("developer"), CONV_ROLE_OTHER);
        ASSERT_EQ(conv_role_from_string("User"), CONV_ROLE_OTHER);
        ASSERT_EQ(conv_role_from_string(NULL), CONV_ROLE_OTHER);
        ASSERT_STREQ(conv_role_to_string(CONV_ROLE_ASSISTANT), "assistant");
        ASSERT_NULL(conv_role_to_string(_CONV_ROLE_MAX));
        ASSERT_STREQ(conv_part_type_to_string(CONV_PART_TOOL_RESULT), "tool_result");
}

TEST(effort) {
        uint32_t b = 0;

        ASSERT_OK(conv_thinking_budget_from_effort("low", &b));
        ASSERT_EQ(b, 4000);
        ASSERT_OK(conv_thinking_budget_from_effort("medium", &b));
        ASSERT_EQ(b, 16000);
        ASSERT_OK(conv_thinking_budget_from_effort("HIGH", &b));
        ASSERT_EQ(b, 32000);
        ASSERT_OK(conv_thinking_budget_from_effort("minimal", &b));
        ASSERT_EQ(b, 4000);
        ASSERT_ERROR(conv_thinking_budget_from_effort("extreme", &b), EINVAL);
        ASSERT_ERROR(conv_thinking_budget_from_effort(NULL, &b), EINVAL);
}

TEST(build_and_free) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        json_object *schema = json_tokener_parse("{\"type\":\"object\"}");
        ConvMessage *m;

        ASSERT_OK(conversation_new(&c));
        ASSERT_EQ(c->tool_choice, CONV_TOOL_CHOICE_AUTO);
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));
        ASSERT_OK(conv_message_add_text(m, "hi"));
        ASSERT_OK(conv_message_add_image(m, "image/png", "AAAA"));
        ASSERT_OK(conv_message_add_tool_result(m, "t1", NULL, true));
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_ASSISTANT, &m));
        ASSERT_OK(conv_message_add_thinking(m, "hmm", NULL));
        ASSERT_OK(conv_message_add_tool_use(m, "t2", "Read", "{\"a\":1}"));
        ASSERT_OK(conversation_add_tool(c, "Read", NULL, schema));
        json_object_put(schema);        /* the conversation holds its own reference */
        ASSERT_OK(strv_extend(&c->stop, "STOP"));

        ASSERT_EQ(c->n_messages, 2);
        ASSERT_EQ(c->messages[0].n_parts, 3);
        ASSERT_EQ(c->messages[0].parts[1].type, CONV_PART_IMAGE);
        ASSERT_STREQ(c->messages[0].parts[1].media_type, "image/png");
        ASSERT_STREQ(c->messages[0].parts[2].text, "");
        ASSERT_TRUE(c->messages[0].parts[2].is_error);
        ASSERT_NULL(c->messages[1].parts[0].signature);
        ASSERT_STREQ(c->messages[1].parts[1].input, "{\"a\":1}");
        ASSERT_NULL(c->tools[0].description);
        ASSERT_STREQ(json_object_to_json_string_ext(c->tools[0].input_schema, JSON_C_TO_STRING_PLAIN),
                     "{\"type\":\"object\"}");
        ASSERT_NULL(conversation_free(NULL));
}

TEST(tokens_estimate) {
        ASSERT_EQ(tokens_estimate(NULL), 0);
        ASSERT_EQ(tokens_estimate(""), 0);
        ASSERT_EQ(tokens_estimate("a"), 1);
        ASSERT_EQ(tokens_estimate("abcd"), 1);
        ASSERT_EQ(tokens_estimate("abcde"), 2);
        ASSERT_EQ(tokens_estimate("Hello, world! 12345"), 5);     /* 19 bytes */
        ASSERT_EQ(tokens_estimate("\xc3\xa9\xc3\xa9"), 1);        /* two 2-byte characters */
        ASSERT_EQ(tokens_estimate("日本語"), 3);
        ASSERT_EQ(tokens_estimate("😀"), 1);
        ASSERT_EQ(tokens_estimate_n("abcdefgh", 4), 1);
}

TEST(token_counter_split_anywhere) {
        static const char s[] = "Ünïcödé text 日本語 😀 and more ASCII";
        uint64_t whole = tokens_estimate(s);

        for (size_t cut = 0; cut < sizeof s; cut++) {
                TokenCounter c = {};
                token_counter_add(&c, s, cut);
                token_counter_add(&c, s + cut, sizeof s - 1 - cut);
                ASSERT_EQ(token_counter_get(&c), whole);
        }
        {
                TokenCounter c = {};
                token_counter_add_tokens(&c, 10);
                ASSERT_EQ(token_counter_get(&c), 10);
        }
}

TEST(conversation_estimate) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        json_object *schema = json_tokener_parse("{\"type\":\"object\"}");     /* 17 bytes */
        ConvMessage *m;

        ASSERT_OK(conversation_new(&c));
        ASSERT_EQ(conversation_estimate_input_tokens(c), 0);
        c->system = strdup("abcdefgh");                                 /* 8 */
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_USER, &m));     /* +4 tokens */
        ASSERT_OK(conv_message_add_text(m, "abcd"));                    /* 4 */
        ASSERT_OK(conv_message_add_image(m, "image/png", "AAAA"));      /* +1600 tokens */
        ASSERT_OK(conversation_add_message(c, CONV_ROLE_ASSISTANT, &m)); /* +4 */
        ASSERT_OK(conv_message_add_tool_use(m, "id-not-counted", "Read", "{}")); /* 4 + 2 */
        ASSERT_OK(conversation_add_tool(c, "Read", "Reads", schema));   /* +8 tokens, 4 + 5 + 17 */
        json_object_put(schema);
        /* bytes: 8 + 4 + 6 + 26 = 44 → 11 tokens; fixed: 4 + 1600 + 4 + 8 = 1616 */
        ASSERT_EQ(conversation_estimate_input_tokens(c), 1627);
}
