/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Responses API request parser (api/api-responses-parse.c): input items into the conversation form,
 * and every refusal a 400 naming its field. */
#include <unistd.h>

#include "json-util.h"
#include "api/api-error.h"
#include "api/api-responses.h"
#include "tests.h"

static const ApiLimits limits = API_LIMITS_DEFAULT;

static Conversation *parse_ok(const char *body, ResponsesOptions *opts) {
        Conversation *c = NULL;
        Failure f = {};
        int r = responses_parse(body, strlen(body), &limits, NULL, &c, opts, &f);
        if (r < 0)
                ASSERT_FAIL("refused (%d): %s [%s]", r, strna(f.message), strna(f.param));
        failure_done(&f);
        ASSERT_NOT_NULL(c);
        return c;
}

static void refused(const char *body, const char *param, const char *word) {
        Conversation *c = NULL;
        ResponsesOptions opts;
        Failure f = {};
        ASSERT_TRUE(responses_parse(body, strlen(body), &limits, NULL, &c, &opts, &f) < 0);
        responses_options_done(&opts);
        ASSERT_NULL(c);
        ASSERT_EQ(f.kind, FAILURE_INVALID_REQUEST);
        ASSERT_EQ(api_error_status(API_SHAPE_OPENAI, f.kind), 400);
        ASSERT_STREQ(f.param, param);
        if (word && !strstr(f.message, word))
                ASSERT_FAIL("'%s' not in '%s'", word, f.message);
        failure_done(&f);
}

#define REQ(input, extra) "{\"model\":\"claude-sonnet-4.5\",\"input\":" input extra "}"

TEST(string_input_and_instructions) {
        ResponsesOptions o;
        Conversation *c = parse_ok(REQ("\"hello\"", ",\"instructions\":\"Be brief.\",\"max_output_tokens\":77,"
                                                    "\"stream\":true,\"store\":false,\"user\":\"u\",\"metadata\":{\"a\":\"b\"}"),
                                   &o);
        ASSERT_STREQ(c->system, "Be brief.");
        ASSERT_EQ(c->n_messages, 1U);
        ASSERT_EQ(c->messages[0].role, CONV_ROLE_USER);
        ASSERT_STREQ(c->messages[0].parts[0].text, "hello");
        ASSERT_EQ(c->max_tokens, 77U);
        ASSERT_TRUE(c->stream);
        ASSERT_FALSE(c->thinking);
        ASSERT_FALSE(o.store);
        ASSERT_STREQ(o.user, "u");
        ASSERT_STREQ(o.metadata, "{\"a\":\"b\"}");
        ASSERT_STREQ(o.instructions, "Be brief.");
        ASSERT_STREQ(c->model_id, "claude-sonnet-4.5");
        responses_options_done(&o);
        conversation_free(c);
}

TEST(items_into_turns) {
        ResponsesOptions o;
        Conversation *c = parse_ok(
                REQ("[{\"role\":\"developer\",\"content\":\"dev rules\"},"
                    "{\"type\":\"message\",\"role\":\"system\",\"content\":[{\"type\":\"input_text\",\"text\":\"sys\"}]},"
                    "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"look\"},"
                    "{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,AAAA\"}]},"
                    "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[{\"type\":\"summary_text\",\"text\":\"hmm\"}],"
                    "\"encrypted_content\":\"SIG\"},"
                    "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"calling\"}]},"
                    "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"},"
                    "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"g\",\"arguments\":\"{}\"},"
                    "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"one\"},"
                    "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":[{\"type\":\"input_text\",\"text\":\"two\"}]},"
                    "{\"role\":\"developer\",\"content\":\"late\"}]",
                    ",\"instructions\":\"inst\""),
                &o);
        ASSERT_STREQ(c->system, "inst\n\ndev rules\n\nsys");
        ASSERT_EQ(c->n_messages, 4U);
        ConvMessage *u = c->messages, *a = c->messages + 1, *t = c->messages + 2, *late = c->messages + 3;
        ASSERT_EQ(u->role, CONV_ROLE_USER);
        ASSERT_EQ(u->n_parts, 2U);
        ASSERT_EQ(u->parts[1].type, CONV_PART_IMAGE);
        ASSERT_STREQ(u->parts[1].data, "data:image/png;base64,AAAA");
        /* reasoning, text and both calls are one assistant turn */
        ASSERT_EQ(a->role, CONV_ROLE_ASSISTANT);
        ASSERT_EQ(a->n_parts, 4U);
        ASSERT_EQ(a->parts[0].type, CONV_PART_THINKING);
        ASSERT_STREQ(a->parts[0].text, "hmm");
        ASSERT_STREQ(a->parts[0].signature, "SIG");
        ASSERT_STREQ(a->parts[1].text, "calling");
        ASSERT_EQ(a->parts[2].type, CONV_PART_TOOL_USE);
        ASSERT_STREQ(a->parts[2].id, "c1");
        ASSERT_STREQ(a->parts[2].input, "{\"x\":1}");
        ASSERT_STREQ(a->parts[3].name, "g");
        /* both outputs answer in one user turn */
        ASSERT_EQ(t->role, CONV_ROLE_USER);
        ASSERT_EQ(t->n_parts, 2U);
        ASSERT_EQ(t->parts[0].type, CONV_PART_TOOL_RESULT);
        ASSERT_STREQ(t->parts[0].id, "c1");
        ASSERT_STREQ(t->parts[0].text, "one");
        ASSERT_STREQ(t->parts[1].text, "two");
        /* a developer message after the start is a turn of its own */
        ASSERT_EQ(late->role, CONV_ROLE_OTHER);
        responses_options_done(&o);
        conversation_free(c);
}

TEST(synthetic_signature_dropped) {
        ResponsesOptions o;
        Conversation *c = parse_ok(REQ("[{\"role\":\"user\",\"content\":\"q\"},{\"type\":\"reasoning\",\"summary\":[],"
                                       "\"content\":[{\"type\":\"reasoning_text\",\"text\":\"full\"}],"
                                       "\"encrypted_content\":\"kirod.abc\"}]", ""),
                                   &o);
        ASSERT_EQ(c->n_messages, 2U);
        ASSERT_STREQ(c->messages[1].parts[0].text, "full");
        ASSERT_NULL(c->messages[1].parts[0].signature);
        responses_options_done(&o);
        conversation_free(c);
}

TEST(options) {
        ResponsesOptions o;
        Conversation *c = parse_ok(
                REQ("\"q\"", ",\"reasoning\":{\"effort\":\"high\",\"summary\":\"auto\"},\"parallel_tool_calls\":false,"
                             "\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\"},"
                             "\"strict\":true}],\"tool_choice\":{\"type\":\"function\",\"name\":\"f\"},"
                             "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"out\",\"schema\":{\"type\":\"object\"}}},"
                             "\"include\":[\"reasoning.encrypted_content\"],\"prompt_cache_key\":\"k\""),
                &o);
        ASSERT_TRUE(c->thinking);
        ASSERT_EQ(c->thinking_budget, 32000U);
        ASSERT_FALSE(o.parallel_tool_calls);
        ASSERT_STREQ(o.reasoning_effort, "high");
        ASSERT_EQ(c->n_tools, 1U);
        ASSERT_STREQ(c->tools[0].name, "f");
        ASSERT_STREQ(c->tools[0].description, "d");
        ASSERT_EQ(c->tool_choice, CONV_TOOL_CHOICE_TOOL);
        ASSERT_STREQ(c->tool_choice_name, "f");
        ASSERT_NOT_NULL(strstr(c->system, "\"out\""));
        ASSERT_NOT_NULL(strstr(c->system, "{\"type\":\"object\"}"));
        ASSERT_STREQ(o.text_format, "{\"type\":\"json_schema\",\"name\":\"out\",\"schema\":{\"type\":\"object\"}}");
        responses_options_done(&o);
        conversation_free(c);

        c = parse_ok(REQ("\"q\"", ",\"reasoning\":{\"effort\":\"none\"},\"tool_choice\":\"required\","
                                  "\"text\":{\"format\":{\"type\":\"json_object\"}}"),
                     &o);
        ASSERT_FALSE(c->thinking);
        ASSERT_EQ(c->tool_choice, CONV_TOOL_CHOICE_ANY);
        ASSERT_NOT_NULL(strstr(c->system, "JSON object"));
        responses_options_done(&o);
        conversation_free(c);

        c = parse_ok("{\"model\":\"claude-sonnet-4.5-thinking\",\"input\":\"q\"}", &o);
        ASSERT_TRUE(c->thinking);
        responses_options_done(&o);
        conversation_free(c);
}

TEST(namespace_tools_flattened) {
        ResponsesOptions o;
        Conversation *c = parse_ok(REQ("\"q\"", ",\"tools\":[{\"type\":\"function\",\"name\":\"a\"},{\"type\":\"namespace\","
                                               "\"name\":\"ns\",\"tools\":[{\"type\":\"function\",\"name\":\"b\"},"
                                               "{\"type\":\"function\",\"name\":\"c\"}]}]"),
                                   &o);
        ASSERT_EQ(c->n_tools, 3U);
        ASSERT_STREQ(c->tools[2].name, "c");
        responses_options_done(&o);
        conversation_free(c);
        refused(REQ("\"q\"", ",\"tools\":[{\"type\":\"namespace\",\"tools\":[{\"type\":\"web_search\"}]}]"),
                "tools[0].tools[0]", "web_search");
}

TEST(refusals_name_the_field) {
        refused(REQ("[{\"type\":\"item_reference\",\"id\":\"x\"}]", ""), "input[0].type", "item_reference");
        refused(REQ("[{\"type\":\"local_shell_call\"}]", ""), "input[0].type", "local_shell_call");
        refused(REQ("[{\"role\":\"user\",\"content\":\"q\"},{\"type\":\"function_call_output\",\"call_id\":\"zz\",\"output\":\"o\"}]", ""),
                "input[1].call_id", "zz");
        refused(REQ("[{\"type\":\"function_call\",\"name\":\"f\"}]", ""), "input[0]", "call_id");
        refused(REQ("\"q\"", ",\"previous_response_id\":\"resp_1\""), "previous_response_id", "resp_1");
        refused(REQ("\"q\"", ",\"tools\":[{\"type\":\"web_search\"}]"), "tools[0]", "web_search");
        refused(REQ("\"q\"", ",\"tools\":[{\"type\":\"function\",\"name\":\"f\"},{\"type\":\"file_search\"}]"), "tools[1]",
                "file_search");
        refused(REQ("\"q\"", ",\"tools\":[{\"type\":\"computer_use_preview\"}]"), "tools[0]", "computer_use");
        refused(REQ("\"q\"", ",\"tools\":[{\"type\":\"function\"}]"), "tools[0]", "name");
        refused(REQ("\"q\"", ",\"n\":2"), "n", NULL);
        refused(REQ("\"q\"", ",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\"}}"), "text.format.schema", NULL);
        refused(REQ("\"q\"", ",\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"x\",\"schema\":{\"x\":1}}}"),
                "text.format.schema", NULL);
        refused(REQ("\"q\"", ",\"text\":{\"format\":{\"type\":\"json_schema\",\"schema\":{\"type\":\"object\"}}}"),
                "text.format.name", NULL);
        refused(REQ("\"q\"", ",\"text\":{\"format\":{\"type\":\"xml\"}}"), "text.format.type", NULL);
        refused(REQ("\"q\"", ",\"reasoning\":{\"effort\":\"huge\"}"), "reasoning.effort", NULL);
        refused(REQ("\"q\"", ",\"tool_choice\":\"sometimes\""), "tool_choice", NULL);
        refused(REQ("\"q\"", ",\"metadata\":{\"a\":1}"), "metadata", NULL);
        refused(REQ("\"q\"", ",\"max_output_tokens\":0"), "max_output_tokens", NULL);
        refused(REQ("\"q\"", ",\"stream\":\"yes\""), "stream", NULL);
        refused(REQ("[]", ""), "input", NULL);
        refused(REQ("42", ""), "input", NULL);
        refused("{\"model\":\"claude-sonnet-4.5\"}", "input", NULL);
        refused(REQ("[{\"role\":\"user\",\"content\":[{\"type\":\"input_file\",\"file_id\":\"f\"}]}]", ""),
                "input[0].content[0]", "input_file");
        refused(REQ("[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"https://x/y.png\"}]}]", ""),
                "input[0].content[0]", "data:");
        refused(REQ("[{\"role\":\"tool\",\"content\":\"x\"}]", ""), "input[0]", "tool");
        refused(REQ("[42]", ""), "input[0]", NULL);
}

/* Checked as OpenAI checks them, though Kiro gets none of them; and the body's text strictly UTF-8. */
TEST(unsent_fields_and_text_checked) {
        refused(REQ("\"q\"", ",\"temperature\":-1"), "temperature", "0 to 2");
        refused(REQ("\"q\"", ",\"temperature\":2.5"), "temperature", NULL);
        refused(REQ("\"q\"", ",\"top_p\":1.5"), "top_p", "0 to 1");
        refused(REQ("\"q\"", ",\"reasoning\":\"high\""), "reasoning", NULL);
        refused(REQ("\"q\"", ",\"reasoning\":{\"summary\":1}"), "reasoning.summary", NULL);
        refused(REQ("\"q\"", ",\"reasoning\":{\"effort\":2}"), "reasoning.effort", NULL);
        refused(REQ("\"q\"", ",\"text\":\"json\""), "text", NULL);
        refused(REQ("\"q\"", ",\"text\":{\"format\":1}"), "text.format", NULL);
        refused(REQ("\"h\xed\xa0\x80i\"", ""), "input", "UTF-8");
        refused(REQ("[{\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"\xc0\xaf\"}]}]", ""),
                "input[0].content[0].text", "UTF-8");
        refused(REQ("[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,%%\"}]}]", ""),
                "input[0].content[0]", "base64");
        refused(REQ("[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":"
                    "\"data:image/svg+xml;base64,AAAA\"}]}]", ""), "input[0].content[0]", "image/svg+xml");

        Conversation *c = NULL;
        ResponsesOptions o;
        Failure f = {};
        static const char lone[] = REQ("\"\\ud800\"", "");
        ASSERT_TRUE(responses_parse(lone, sizeof lone - 1, &limits, NULL, &c, &o, &f) < 0);
        responses_options_done(&o);
        ASSERT_NULL(f.param);
        ASSERT_NOT_NULL(strstr(f.message, "surrogate"));
        failure_done(&f);

        ResponsesOptions ok;
        c = parse_ok(REQ("\"q\"", ",\"temperature\":0,\"top_p\":1,\"reasoning\":{\"effort\":\"low\",\"summary\":\"auto\"},"
                         "\"text\":{\"verbosity\":\"low\"}"), &ok);
        ASSERT_TRUE(c->has_temperature && c->temperature == 0.0);
        ASSERT_TRUE(c->has_top_p && c->top_p == 1.0);
        ASSERT_TRUE(c->thinking);
        responses_options_done(&ok);
        conversation_free(c);
}

TEST(unknown_model_not_found) {
        Conversation *c = NULL;
        ResponsesOptions o;
        Failure f = {};
        static const char body[] = "{\"model\":\"gpt-99\",\"input\":\"q\"}";
        ASSERT_TRUE(responses_parse(body, sizeof body - 1, &limits, NULL, &c, &o, &f) < 0);
        responses_options_done(&o);
        ASSERT_EQ(f.kind, FAILURE_NOT_FOUND);
        ASSERT_STREQ(f.code, "model_not_found");
        failure_done(&f);
}

TEST(item_limit) {
        ApiLimits l = limits;
        l.max_messages = 2;
        Conversation *c = NULL;
        ResponsesOptions o;
        Failure f = {};
        static const char body[] = REQ("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"},"
                                       "{\"role\":\"user\",\"content\":\"c\"}]", "");
        ASSERT_TRUE(responses_parse(body, sizeof body - 1, &l, NULL, &c, &o, &f) < 0);
        responses_options_done(&o);
        ASSERT_STREQ(f.param, "input");
        ASSERT_NOT_NULL(strstr(f.message, "MaxMessages"));
        failure_done(&f);
}


TEST(store_bounds) {
        _cleanup_(responses_store_freep) ResponsesStore *s = NULL;
        const char *items;
        ASSERT_OK(responses_store_new(2, (3600 * USEC_PER_SEC), &s));
        ASSERT_OK(responses_store_put(s, "a", strdup("[1]")));
        ASSERT_OK(responses_store_put(s, "b", strdup("[2]")));
        ASSERT_OK(responses_store_put(s, "c", strdup("[3]")));
        ASSERT_EQ(responses_store_count(s), 2U);
        ASSERT_ERROR(responses_store_get(s, "a", &items), ENOENT);     /* the oldest went first */
        ASSERT_OK(responses_store_get(s, "c", &items));
        ASSERT_STREQ(items, "[3]");
        s = responses_store_free(s);

        ASSERT_OK(responses_store_new(4, 1, &s));                       /* 1 µs: expired at once */
        ASSERT_OK(responses_store_put(s, "x", strdup("[]")));
        usleep(10);
        ASSERT_ERROR(responses_store_get(s, "x", &items), ESTALE);
        ASSERT_ERROR(responses_store_get(s, "x", &items), ENOENT);     /* and forgotten */
        ASSERT_EQ(responses_store_count(s), 0U);
}

TEST(previous_response_chains_stored_items) {
        _cleanup_(responses_store_freep) ResponsesStore *s = NULL;
        ASSERT_OK(responses_store_new(8, (3600 * USEC_PER_SEC), &s));
        ASSERT_OK(responses_store_put(s, "resp_1",
                                      strdup("[{\"role\":\"user\",\"content\":\"first\"},"
                                             "{\"type\":\"function_call\",\"call_id\":\"c9\",\"name\":\"f\",\"arguments\":\"{}\"}]")));
        Conversation *c = NULL;
        ResponsesOptions o;
        Failure f = {};
        static const char body[] = REQ("[{\"type\":\"function_call_output\",\"call_id\":\"c9\",\"output\":\"done\"}]",
                                       ",\"previous_response_id\":\"resp_1\"");
        ASSERT_OK(responses_parse(body, sizeof body - 1, &limits, s, &c, &o, &f));
        ASSERT_EQ(c->n_messages, 3U);
        ASSERT_STREQ(c->messages[0].parts[0].text, "first");
        ASSERT_EQ(c->messages[1].parts[0].type, CONV_PART_TOOL_USE);
        ASSERT_EQ(c->messages[2].parts[0].type, CONV_PART_TOOL_RESULT);
        ASSERT_STREQ(o.previous_response_id, "resp_1");
        /* store defaults to true: the whole chain is what a next request continues */
        ASSERT_NOT_NULL(o.input_items);
        ASSERT_NOT_NULL(strstr(o.input_items, "\"first\""));
        ASSERT_NOT_NULL(strstr(o.input_items, "function_call_output"));
        responses_options_done(&o);
        conversation_free(c);

        static const char body2[] = REQ("\"next\"", ",\"previous_response_id\":\"resp_404\"");
        c = NULL;
        ASSERT_TRUE(responses_parse(body2, sizeof body2 - 1, &limits, s, &c, &o, &f) < 0);
        responses_options_done(&o);
        ASSERT_STREQ(f.param, "previous_response_id");
        ASSERT_NOT_NULL(strstr(f.message, "resp_404"));
        failure_done(&f);

        static const char body3[] = REQ("\"next\"", ",\"store\":false");
        ASSERT_OK(responses_parse(body3, sizeof body3 - 1, &limits, s, &c, &o, &f));
        ASSERT_NULL(o.input_items);
        responses_options_done(&o);
        conversation_free(c);
}
