/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The front ends' request checks (api/api-request.c, through both parsers) and the client error shapes
 * (api/api-error.c). */
#include "buf.h"
#include "json-util.h"
#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "api/api-openai.h"
#include "api/api-responses.h"
#include "tests.h"

static const ApiLimits limits = API_LIMITS_DEFAULT;

/* Parses body with the OpenAI parser and expects a 400 naming param. Returns the message. */
static char *openai_refused(const char *body, size_t size, const char *param) {
        Conversation *c = NULL;
        OpenAIOptions opts;
        Failure f = {};

        ASSERT_ERROR(openai_parse_chat(body, size, &limits, &c, &opts, &f), EINVAL);
        ASSERT_TRUE(c == NULL);
        ASSERT_EQ(f.kind, FAILURE_INVALID_REQUEST);
        if (param)
                ASSERT_STREQ(f.param, param);
        else
                ASSERT_TRUE(!f.param);
        ASSERT_EQ(api_error_status(API_SHAPE_OPENAI, f.kind), 400);
        char *m = TAKE_PTR(f.message);
        failure_done(&f);
        return m;
}

static char *anthropic_refused_as(const char *body, size_t size, bool count_only, const char *param) {
        Conversation *c = NULL;
        Failure f = {};

        ASSERT_ERROR(anthropic_parse_messages(body, size, &limits, count_only, &c, NULL, &f), EINVAL);
        ASSERT_TRUE(c == NULL);
        ASSERT_EQ(f.kind, FAILURE_INVALID_REQUEST);
        if (param)
                ASSERT_STREQ(f.param, param);
        else
                ASSERT_TRUE(!f.param);
        char *m = TAKE_PTR(f.message);
        failure_done(&f);
        return m;
}

static char *anthropic_refused(const char *body, size_t size, const char *param) {
        return anthropic_refused_as(body, size, false, param);
}

#define OPENAI(extra) "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"
#define ANTHROPIC(extra) "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" extra "}"

TEST(openai_numbers_refused) {
        static const struct {
                const char *body, *param;
        } cases[] = {
                { OPENAI(",\"temperature\":NaN"), "temperature" },
                { OPENAI(",\"temperature\":Infinity"), "temperature" },
                { OPENAI(",\"top_p\":-Infinity"), "top_p" },
                { OPENAI(",\"temperature\":\"hot\""), "temperature" },
                { OPENAI(",\"max_tokens\":18446744073709551616"), "max_tokens" },
                { OPENAI(",\"max_tokens\":18446744073709551615"), "max_tokens" },
                { OPENAI(",\"max_tokens\":1e30"), "max_tokens" },
                { OPENAI(",\"max_tokens\":NaN"), "max_tokens" },
                { OPENAI(",\"max_tokens\":1.5"), "max_tokens" },
                { OPENAI(",\"max_tokens\":0"), "max_tokens" },
                { OPENAI(",\"max_tokens\":-1"), "max_tokens" },
                { OPENAI(",\"max_completion_tokens\":1e300"), "max_completion_tokens" },
                { OPENAI(",\"n\":1e30"), "n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *m = openai_refused(cases[i].body, strlen(cases[i].body), cases[i].param);
                ASSERT_NOT_NULL(strstr(m, cases[i].param));
        }
}

TEST(openai_numbers_accepted) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        static const char body[] = OPENAI(",\"max_tokens\":2147483647,\"temperature\":0.5,\"top_p\":1");
        OpenAIOptions opts;
        Failure f = {};

        ASSERT_OK(openai_parse_chat(body, sizeof body - 1, &limits, &c, &opts, &f));
        ASSERT_EQ(c->max_tokens, 2147483647);
        ASSERT_TRUE(c->has_temperature && c->temperature == 0.5);
        ASSERT_TRUE(c->has_top_p && c->top_p == 1.0);
        conversation_free(TAKE_PTR(c));
        static const char body2[] = OPENAI(",\"max_tokens\":4096.0");
        ASSERT_OK(openai_parse_chat(body2, sizeof body2 - 1, &limits, &c, &opts, &f));
        ASSERT_EQ(c->max_tokens, 4096);
        ASSERT_FALSE(c->has_temperature);
}

TEST(anthropic_numbers_refused) {
        static const struct {
                const char *body, *param;
        } cases[] = {
                { ANTHROPIC(",\"max_tokens\":18446744073709551616"), "max_tokens" },
                { ANTHROPIC(",\"max_tokens\":1e30"), "max_tokens" },
                { ANTHROPIC(",\"max_tokens\":Infinity"), "max_tokens" },
                { ANTHROPIC(",\"max_tokens\":NaN"), "max_tokens" },
                { ANTHROPIC(",\"max_tokens\":1024,\"temperature\":NaN"), "temperature" },
                { ANTHROPIC(",\"max_tokens\":1024,\"top_p\":Infinity"), "top_p" },
                { ANTHROPIC(",\"max_tokens\":1024,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1e30}"),
                  "thinking.budget_tokens" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *m = anthropic_refused(cases[i].body, strlen(cases[i].body), cases[i].param);
                ASSERT_NOT_NULL(strstr(m, cases[i].param));
        }
}

TEST(model_with_nul_refused) {
        static const char o[] = "{\"model\":\"claude-sonnet-4.5\\u0000-evil\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
        static const char a[] = "{\"model\":\"claude-sonnet-4.5\\u0000\",\"max_tokens\":10,"
                                "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
        _cleanup_free_ char *m1 = openai_refused(o, sizeof o - 1, "model");
        _cleanup_free_ char *m2 = anthropic_refused(a, sizeof a - 1, "model");
        ASSERT_NOT_NULL(strstr(m1, "NUL"));
        ASSERT_NOT_NULL(strstr(m2, "NUL"));
}

/* Bytes that are not UTF-8, echoed in an error message, must still give a valid JSON body. (Requests with
 * them are refused before any message could echo them; the renderer does not rely on that.) */
TEST(invalid_utf8_echoed_as_valid_json) {
        Failure f = { .kind = FAILURE_NOT_FOUND, .message = (char *) "The model 'gpt-\xff\xfe\xc3(\xe2\x82-x' does not exist." };

        for (ApiShape shape = 0; shape < _API_SHAPE_MAX; shape++) {
                _cleanup_free_ char *out = NULL;
                _cleanup_json_ json_object *j = NULL;
                json_object *e;
                const char *msg;
                size_t size;

                ASSERT_OK(api_error_render(shape, &f, &out, &size));
                ASSERT_EQ(strlen(out), size);
                ASSERT_EQ(utf8_valid_span(out, size), size);
                ASSERT_OK(json_parse_bounded(out, size, 8, &j, NULL));
                ASSERT_OK(json_get_object(j, "error", &e));
                ASSERT_OK(json_get_string(e, "message", &msg));
                /* Each invalid byte became U+FFFD; the valid text around it stayed. */
                ASSERT_NOT_NULL(strstr(msg, "'gpt-\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd\xef\xbf\xbd-x'"));
        }
}

/* RFC 3629: what is not UTF-8, anywhere in a string or a key, is a 400 naming the place, on every front
 * end (count_tokens too). */
static const char *const not_utf8[] = {
        "\x80",                 /* lone continuation byte */
        "\xc0\xaf",             /* overlong '/' */
        "\xc0\x80",             /* overlong NUL */
        "\xc1\xbf",             /* overlong 2-byte */
        "\xe0\x80\xaf",         /* overlong 3-byte */
        "\xe0\x9f\xbf",         /* overlong U+07FF */
        "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
        "\xed\xa0\x80",         /* U+D800 as UTF-8 (CESU-8) */
        "\xed\xbf\xbf",         /* U+DFFF */
        "\xed\xa0\xbd\xed\xb8\x80", /* a whole surrogate pair as CESU-8 */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xe2\x82",             /* truncated */
        "\xf0\x9f\x98",         /* truncated 4-byte */
        "\xe2\x28\xa1",         /* bad continuation */
};

TEST(invalid_utf8_refused_naming_the_field) {
        for (size_t i = 0; i < ELEMENTSOF(not_utf8); i++) {
                _cleanup_free_ char *o = NULL, *a = NULL, *k = NULL, *t = NULL;

                ASSERT_TRUE(asprintf(&o, "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                                     "{\"role\":\"user\",\"content\":\"h%si\"}]}", not_utf8[i]) > 0);
                _cleanup_free_ char *m1 = openai_refused(o, strlen(o), "messages[1].content");
                ASSERT_NOT_NULL(strstr(m1, "UTF-8"));

                ASSERT_TRUE(asprintf(&a, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                     "\"content\":[{\"type\":\"text\",\"text\":\"ok\"},{\"type\":\"text\",\"text\":\"%s\"}]}]}",
                                     not_utf8[i]) > 0);
                _cleanup_free_ char *m2 = anthropic_refused(a, strlen(a), "messages.0.content.1.text");
                _cleanup_free_ char *m3 = anthropic_refused_as(a, strlen(a), true, "messages.0.content.1.text");
                ASSERT_NOT_NULL(strstr(m3, "UTF-8"));

                /* In a key, and deep in a tool's schema. */
                _cleanup_free_ char *key = NULL;
                ASSERT_TRUE(asprintf(&key, "x%s", not_utf8[i]) > 0);
                ASSERT_TRUE(asprintf(&k, OPENAI(",\"%s\":1"), key) > 0);
                _cleanup_free_ char *m5 = openai_refused(k, strlen(k), key);
                ASSERT_TRUE(asprintf(&t, OPENAI(",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
                                     "\"parameters\":{\"type\":\"object\",\"description\":\"%s\"}}}]"), not_utf8[i]) > 0);
                _cleanup_free_ char *m4 = openai_refused(t, strlen(t), "tools[0].function.parameters.description");
        }
}

/* The edges that are UTF-8: U+0080, U+07FF, U+0800, U+D7FF, U+E000, U+FFFF, U+10000, U+10FFFF, and
 * escaped surrogate pairs. */
TEST(valid_utf8_edges_accepted) {
        static const char body[] = ANTHROPIC(",\"max_tokens\":5,\"system\":\"\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf"
                                             "\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf \\ud83d\\ude00 \\uD83D\\uDE00\"");
        _cleanup_(conversation_freep) Conversation *c = NULL;
        Failure f = {};

        ASSERT_OK(anthropic_parse_messages(body, sizeof body - 1, &limits, true, &c, NULL, &f));
        ASSERT_STREQ(c->system, "\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\xf0\x90\x80\x80"
                                "\xf4\x8f\xbf\xbf \xf0\x9f\x98\x80 \xf0\x9f\x98\x80");
}

/* json-c turns an escaped surrogate without its other half into U+FFFD: refused as Anthropic does ("not
 * valid JSON"), before json-c sees it. */
TEST(lone_surrogate_escape_refused) {
        static const char *const lone[] = {
                "\\ud800", "\\uDBFF", "\\udc00", "\\uDFFF", "\\ud800x", "\\ud800\\u0041", "\\ud800\\ud800",
                "\\ude00\\ud83d", "a\\\\\\ud800",
        };
        for (size_t i = 0; i < ELEMENTSOF(lone); i++) {
                _cleanup_free_ char *o = NULL, *a = NULL;
                ASSERT_TRUE(asprintf(&o, OPENAI(",\"user\":\"%s\""), lone[i]) > 0);
                _cleanup_free_ char *m1 = openai_refused(o, strlen(o), NULL);
                ASSERT_NOT_NULL(strstr(m1, "surrogate"));
                ASSERT_NOT_NULL(strstr(m1, "not valid JSON"));
                ASSERT_TRUE(asprintf(&a, ANTHROPIC(",\"max_tokens\":5,\"system\":\"%s\""), lone[i]) > 0);
                _cleanup_free_ char *m2 = anthropic_refused_as(a, strlen(a), true, NULL);
                ASSERT_NOT_NULL(strstr(m2, "surrogate"));
        }
        /* Found after plain text of any length (the scan takes eight bytes at a time), and after an escaped
         * quote that does not end the string. */
        for (size_t n = 0; n < 24; n++) {
                _cleanup_free_ char *a = NULL, *b = NULL;
                ASSERT_TRUE(asprintf(&a, ANTHROPIC(",\"max_tokens\":5,\"system\":\"%.*s\\\"{[\\udfff\""), (int) n,
                                     "abcdefghijklmnopqrstuvwxyz") > 0);
                _cleanup_free_ char *m = anthropic_refused(a, strlen(a), NULL);
                ASSERT_NOT_NULL(strstr(m, "'\\udfff'"));
                ASSERT_TRUE(asprintf(&b, ANTHROPIC(",\"max_tokens\":5,\"system\":\"%.*s\\\"\xed\xa0\x80\""), (int) n,
                                     "abcdefghijklmnopqrstuvwxyz") > 0);
                _cleanup_free_ char *m2 = anthropic_refused(b, strlen(b), "system");
        }
        /* An escaped backslash before "ud800" is no escape. */
        _cleanup_(conversation_freep) Conversation *c = NULL;
        static const char ok[] = ANTHROPIC(",\"max_tokens\":5,\"system\":\"\\\\ud800\"");
        Failure f = {};
        ASSERT_OK(anthropic_parse_messages(ok, sizeof ok - 1, &limits, false, &c, NULL, &f));
        ASSERT_STREQ(c->system, "\\ud800");
}

/* count_tokens validates the conversation as /v1/messages does: images, tool_use input. */
TEST(anthropic_images_and_tool_input_refused_on_both_paths) {
        static const struct {
                const char *content, *param, *word;
        } cases[] = {
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"!!!\"}}]",
                  "messages.0.content.0.source", "base64" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"AA=A\"}}]",
                  "messages.0.content.0.source", "base64" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"A\"}}]",
                  "messages.0.content.0.source", "base64" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"\"}}]",
                  "messages.0.content.0.source", "no data" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"http://example.com/a.png\"}}]",
                  "messages.0.content.0.source", "URLs are not supported" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/svg+xml\",\"data\":\"AAAA\"}}]",
                  "messages.0.content.0.source", "'image/svg+xml' is not supported" },
                { "[{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/pngx\",\"data\":\"AAAA\"}}]",
                  "messages.0.content.0.source", "not supported" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *b = NULL;
                ASSERT_TRUE(asprintf(&b, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                     "\"content\":%s}]}", cases[i].content) > 0);
                for (int count = 0; count < 2; count++) {
                        _cleanup_free_ char *m = anthropic_refused_as(b, strlen(b), count, cases[i].param);
                        if (!strstr(m, cases[i].word))
                                ASSERT_FAIL("'%s' not in '%s'", cases[i].word, m);
                }
        }
        static const char *const inputs[] = { "\"x\"", "1", "[]", "true" };
        for (size_t i = 0; i < ELEMENTSOF(inputs); i++) {
                _cleanup_free_ char *b = NULL;
                ASSERT_TRUE(asprintf(&b, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                     "\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\","
                                     "\"name\":\"f\",\"input\":%s}]}]}", inputs[i]) > 0);
                for (int count = 0; count < 2; count++) {
                        _cleanup_free_ char *m = anthropic_refused_as(b, strlen(b), count, "messages.1.content.0");
                        ASSERT_NOT_NULL(strstr(m, "messages.1.content.0.input"));
                }
        }

        /* What the API takes: the four types (any case, image/jpg too), padded or not, data: URL sources. */
        static const char ok[] =
                "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":["
                "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}},"
                "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"IMAGE/JPEG\",\"data\":\"/9j/4A==\"}},"
                "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpg\",\"data\":\"/9j/4A\"}},"
                "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/gif\",\"data\":\"R0lGOD\"}},"
                "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"data:image/webp;base64,UklGRg==\"}}]},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"a\":1}},"
                "{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"g\"}]}]}";
        for (int count = 0; count < 2; count++) {
                _cleanup_(conversation_freep) Conversation *c = NULL;
                Failure f = {};
                if (anthropic_parse_messages(ok, sizeof ok - 1, &limits, count, &c, NULL, &f) < 0)
                        ASSERT_FAIL("refused: %s", f.message);
                ASSERT_EQ(c->messages[0].n_parts, 5U);
                ASSERT_STREQ(c->messages[1].parts[0].input, "{\"a\":1}");
                ASSERT_STREQ(c->messages[1].parts[1].input, "{}");
        }
}

TEST(openai_images_refused) {
        static const struct {
                const char *url, *word;
        } cases[] = {
                { "http://example.com/x.png", "URLs are not supported" },
                { "data:image/png;base64,%%%%", "base64" },
                { "data:image/x-evil;base64,AAAA", "'image/x-evil' is not supported" },
                { "data:image/png,AAAA", "must be base64-encoded" },
                { "data:image/png;base64", "not a data: URL" },
                { "data:;base64,AAAA", "no media type" },
                { "AAAA", "no media type" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *b = NULL;
                ASSERT_TRUE(asprintf(&b, "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"user\",\"content\":["
                                     "{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}}]}]}",
                                     cases[i].url) > 0);
                _cleanup_free_ char *m = openai_refused(b, strlen(b), "messages[0].content[1].image_url.url");
                if (!strstr(m, cases[i].word))
                        ASSERT_FAIL("'%s' not in '%s'", cases[i].word, m);
        }
}

/* Fields kiro-proxyd carries but does not send are still checked as the official APIs check them. */
TEST(openai_unsent_fields_checked) {
        static const struct {
                const char *body, *param;
        } refused[] = {
                { OPENAI(",\"temperature\":-1"), "temperature" },
                { OPENAI(",\"temperature\":2.01"), "temperature" },
                { OPENAI(",\"top_p\":5"), "top_p" },
                { OPENAI(",\"top_p\":-0.1"), "top_p" },
                { OPENAI(",\"stream_options\":\"x\""), "stream_options" },
                { OPENAI(",\"stream_options\":[]"), "stream_options" },
                { OPENAI(",\"stream_options\":{\"include_usage\":\"yes\"}"), "stream_options.include_usage" },
                { OPENAI(",\"stream_options\":{\"include_obfuscation\":1}"), "stream_options.include_obfuscation" },
                { OPENAI(",\"reasoning_effort\":1"), "reasoning_effort" },
                { OPENAI(",\"reasoning_effort\":\"extreme\""), "reasoning_effort" },
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                _cleanup_free_ char *m = openai_refused(refused[i].body, strlen(refused[i].body), refused[i].param);
                ASSERT_NOT_NULL(strstr(m, refused[i].param));
        }

        static const char ok[] = OPENAI(",\"temperature\":2,\"top_p\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true,"
                                        "\"include_obfuscation\":false},\"reasoning_effort\":\"none\"");
        _cleanup_(conversation_freep) Conversation *c = NULL;
        OpenAIOptions opts;
        Failure f = {};
        ASSERT_OK(openai_parse_chat(ok, sizeof ok - 1, &limits, &c, &opts, &f));
        ASSERT_TRUE(c->has_temperature && c->temperature == 2.0);
        ASSERT_TRUE(c->has_top_p && c->top_p == 0.0);
        ASSERT_TRUE(opts.include_usage);
        ASSERT_FALSE(c->thinking);
        conversation_free(TAKE_PTR(c));

        static const char nulls[] = OPENAI(",\"temperature\":null,\"top_p\":null,\"stream_options\":null,\"reasoning_effort\":"
                                           "\"minimal\"");
        ASSERT_OK(openai_parse_chat(nulls, sizeof nulls - 1, &limits, &c, &opts, &f));
        ASSERT_FALSE(c->has_temperature);
        ASSERT_FALSE(opts.include_usage);
        ASSERT_TRUE(c->thinking);
        ASSERT_EQ(c->thinking_budget, 4000U);
}

TEST(openai_unknown_role_refused) {
        static const char wizard[] = "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                                     "{\"role\":\"wizard\",\"content\":\"hi\"}]}";
        _cleanup_free_ char *m = openai_refused(wizard, sizeof wizard - 1, "messages[1].role");
        ASSERT_NOT_NULL(strstr(m, "'wizard'"));
        static const char upper[] = "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"User\",\"content\":\"hi\"}]}";
        _cleanup_free_ char *m2 = openai_refused(upper, sizeof upper - 1, "messages[0].role");

        /* Every role OpenAI has. */
        static const char all[] = "{\"model\":\"claude-sonnet-4.5\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                "{\"role\":\"developer\",\"content\":\"d\"},{\"role\":\"user\",\"content\":\"u\"},"
                "{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
                "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
                "{\"role\":\"function\",\"name\":\"f\",\"content\":\"r2\"},{\"role\":\"system\",\"content\":\"late\"}]}";
        _cleanup_(conversation_freep) Conversation *c = NULL;
        OpenAIOptions opts;
        Failure f = {};
        ASSERT_OK(openai_parse_chat(all, sizeof all - 1, &limits, &c, &opts, &f));
        ASSERT_STREQ(c->system, "s\n\nd");
        ASSERT_EQ(c->n_messages, 5U);
        ASSERT_EQ(c->messages[4].role, CONV_ROLE_OTHER);
}

TEST(anthropic_unsent_fields_checked) {
        static const struct {
                const char *body, *param;
        } refused[] = {
                { ANTHROPIC(",\"max_tokens\":5,\"stop_sequences\":\"stop\""), "stop_sequences" },
                { ANTHROPIC(",\"max_tokens\":5,\"stop_sequences\":{}"), "stop_sequences" },
                { ANTHROPIC(",\"max_tokens\":5,\"stop_sequences\":[1]"), "stop_sequences" },
                { ANTHROPIC(",\"max_tokens\":5,\"tool_choice\":\"auto\""), "tool_choice" },
                { ANTHROPIC(",\"max_tokens\":5,\"tool_choice\":{\"type\":\"magic\"}"), "tool_choice" },
                { ANTHROPIC(",\"max_tokens\":5,\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":\"y\"}"),
                  "tool_choice.disable_parallel_tool_use" },
                { ANTHROPIC(",\"max_tokens\":5,\"thinking\":\"on\""), "thinking" },
                { ANTHROPIC(",\"max_tokens\":5,\"thinking\":true"), "thinking" },
                { ANTHROPIC(",\"max_tokens\":5,\"thinking\":{\"type\":1}"), "thinking" },
                { ANTHROPIC(",\"max_tokens\":5,\"temperature\":1.5"), "temperature" },
                { ANTHROPIC(",\"max_tokens\":5,\"temperature\":-0.5"), "temperature" },
                { ANTHROPIC(",\"max_tokens\":5,\"top_p\":2"), "top_p" },
                { ANTHROPIC(",\"max_tokens\":5,\"top_k\":-1"), "top_k" },
                { ANTHROPIC(",\"max_tokens\":5,\"top_k\":\"5\""), "top_k" },
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                _cleanup_free_ char *m = anthropic_refused(refused[i].body, strlen(refused[i].body), refused[i].param);
                ASSERT_NOT_NULL(strstr(m, refused[i].param));
        }

        static const char ok[] = ANTHROPIC(",\"max_tokens\":5,\"temperature\":1,\"top_p\":0.9,\"top_k\":40,"
                                           "\"stop_sequences\":[\"END\"],\"tool_choice\":{\"type\":\"any\","
                                           "\"disable_parallel_tool_use\":true},\"thinking\":{\"type\":\"disabled\"}");
        _cleanup_(conversation_freep) Conversation *c = NULL;
        Failure f = {};
        ASSERT_OK(anthropic_parse_messages(ok, sizeof ok - 1, &limits, false, &c, NULL, &f));
        ASSERT_TRUE(c->has_temperature && c->temperature == 1.0);
        ASSERT_STREQ(c->stop[0], "END");
        ASSERT_EQ(c->tool_choice, CONV_TOOL_CHOICE_ANY);
        ASSERT_FALSE(c->thinking);
        conversation_free(TAKE_PTR(c));
        static const char nulls[] = ANTHROPIC(",\"max_tokens\":5,\"stop_sequences\":null,\"tool_choice\":null,\"thinking\":null,"
                                              "\"temperature\":null");
        ASSERT_OK(anthropic_parse_messages(nulls, sizeof nulls - 1, &limits, false, &c, NULL, &f));
        ASSERT_NULL(c->stop);
        ASSERT_FALSE(c->has_temperature);
}

static char *many_messages(size_t n, size_t parts_per_message) {
        _cleanup_(buf_done) Buf b = {};
        ASSERT_OK(buf_puts(&b, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":10,\"messages\":["));
        for (size_t i = 0; i < n; i++) {
                ASSERT_OK(buf_puts(&b, i ? ",{\"role\":\"user\",\"content\":[" : "{\"role\":\"user\",\"content\":["));
                for (size_t j = 0; j < parts_per_message; j++)
                        ASSERT_OK(buf_puts(&b, j ? ",{\"type\":\"text\",\"text\":\"x\"}" : "{\"type\":\"text\",\"text\":\"x\"}"));
                ASSERT_OK(buf_puts(&b, "]}"));
        }
        ASSERT_OK(buf_puts(&b, "]}"));
        return buf_steal(&b);
}

TEST(caps_named_in_400) {
        _cleanup_free_ char *msgs = many_messages(API_MAX_MESSAGES_DEFAULT + 1, 1);
        _cleanup_free_ char *m1 = anthropic_refused(msgs, strlen(msgs), "messages");
        ASSERT_NOT_NULL(strstr(m1, "MaxMessages="));
        ASSERT_NOT_NULL(strstr(m1, "4097"));
        _cleanup_free_ char *m2 = openai_refused(msgs, strlen(msgs), "messages");
        ASSERT_NOT_NULL(strstr(m2, "MaxMessages="));

        _cleanup_free_ char *parts = many_messages(4, API_MAX_CONTENT_PARTS_DEFAULT / 4 + 1);
        _cleanup_free_ char *m3 = anthropic_refused(parts, strlen(parts), "messages");
        ASSERT_NOT_NULL(strstr(m3, "MaxContentParts="));
        _cleanup_free_ char *m4 = openai_refused(parts, strlen(parts), "messages");
        ASSERT_NOT_NULL(strstr(m4, "MaxContentParts="));

        /* Exactly at the limit is fine. */
        _cleanup_free_ char *ok = many_messages(API_MAX_MESSAGES_DEFAULT, 1);
        _cleanup_(conversation_freep) Conversation *c = NULL;
        Failure f = {};
        ASSERT_OK(anthropic_parse_messages(ok, strlen(ok), &limits, false, &c, NULL, &f));
        ASSERT_EQ(c->n_messages, API_MAX_MESSAGES_DEFAULT);

        _cleanup_(buf_done) Buf t = {};
        ASSERT_OK(buf_puts(&t, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tools\":["));
        for (size_t i = 0; i <= API_MAX_TOOLS_DEFAULT; i++)
                ASSERT_OK(buf_putf(&t, "%s{\"name\":\"t%zu\",\"input_schema\":{\"type\":\"object\"}}", i ? "," : "", i));
        ASSERT_OK(buf_puts(&t, "]}"));
        _cleanup_free_ char *m5 = anthropic_refused(t.data, t.size, "tools");
        ASSERT_NOT_NULL(strstr(m5, "MaxTools="));
}

/* More objects and arrays than the caps can need: refused before json-c builds a tree of them. */
TEST(containers_refused_before_parsing) {
        size_t n = api_limits_max_containers(&limits) + 1;
        _cleanup_(buf_done) Buf b = {};
        ASSERT_OK(buf_puts(&b, "{\"model\":\"claude-sonnet-4.5\",\"max_tokens\":10,\"x\":["));
        for (size_t i = 0; i < n; i++)
                ASSERT_OK(buf_puts(&b, i ? ",{}" : "{}"));
        /* Braces inside strings do not count. */
        ASSERT_OK(buf_puts(&b, "],\"messages\":[{\"role\":\"user\",\"content\":\"{{{[[[\"}]}"));
        _cleanup_free_ char *m = anthropic_refused(b.data, b.size, NULL);
        ASSERT_NOT_NULL(strstr(m, "JSON objects and arrays"));

        _cleanup_(conversation_freep) Conversation *c = NULL;
        static const char braces[] = ANTHROPIC(",\"max_tokens\":5,\"system\":\"{{{{[[[[\\\"{{\"");
        Failure f = {};
        ASSERT_OK(anthropic_parse_messages(braces, sizeof braces - 1, &limits, false, &c, NULL, &f));
        ASSERT_STREQ(c->system, "{{{{[[[[\"{{");
}

/* The key that keeps a session on one credential: OpenAI `user`, the Responses `user`, the Anthropic
 * session; the x-kirod-session header (api_set_affinity_key() after parsing) wins over all of them. */
TEST(affinity_key_sources) {
        _cleanup_(conversation_freep) Conversation *c = NULL;
        OpenAIOptions opts;
        Failure f = {};

        static const char none[] = OPENAI("");
        ASSERT_OK(openai_parse_chat(none, sizeof none - 1, &limits, &c, &opts, &f));
        ASSERT_NULL(c->affinity_key);
        ASSERT_NULL(c->session_id);
        /* An empty or absent header leaves it as it is. */
        ASSERT_OK(api_set_affinity_key(c, NULL));
        ASSERT_OK(api_set_affinity_key(c, ""));
        ASSERT_NULL(c->affinity_key);
        ASSERT_OK(api_set_affinity_key(c, "hdr-1"));
        ASSERT_STREQ(c->affinity_key, "hdr-1");
        conversation_free(TAKE_PTR(c));

        static const char user[] = OPENAI(",\"user\":\"alice\"");
        ASSERT_OK(openai_parse_chat(user, sizeof user - 1, &limits, &c, &opts, &f));
        ASSERT_STREQ(c->affinity_key, "alice");
        /* `user` is for selection only: no Kiro conversationId is derived from it. */
        ASSERT_NULL(c->session_id);
        ASSERT_OK(api_set_affinity_key(c, "hdr-1"));
        ASSERT_STREQ(c->affinity_key, "hdr-1");
        conversation_free(TAKE_PTR(c));

        static const char null_user[] = OPENAI(",\"user\":null");
        ASSERT_OK(openai_parse_chat(null_user, sizeof null_user - 1, &limits, &c, &opts, &f));
        ASSERT_NULL(c->affinity_key);
        conversation_free(TAKE_PTR(c));

        free(openai_refused(OPENAI(",\"user\":7"), strlen(OPENAI(",\"user\":7")), "user"));

        static const char sess[] = ANTHROPIC(",\"max_tokens\":10,\"metadata\":{\"user_id\":\"user_ab_account_cd_session_0f1e2d3c-aaaa-4bbb-8ccc-123456789abc\"}");
        ASSERT_OK(anthropic_parse_messages(sess, sizeof sess - 1, &limits, false, &c, NULL, &f));
        ASSERT_STREQ(c->session_id, "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc");
        ASSERT_STREQ(c->affinity_key, "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc");
        /* The header changes the credential choice only, never the conversation Kiro sees. */
        ASSERT_OK(api_set_affinity_key(c, "hdr-2"));
        ASSERT_STREQ(c->affinity_key, "hdr-2");
        ASSERT_STREQ(c->session_id, "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc");
        conversation_free(TAKE_PTR(c));

        ResponsesOptions ro;
        static const char resp[] = "{\"model\":\"claude-sonnet-4.5\",\"input\":\"hi\",\"user\":\"bob\"}";
        ASSERT_OK(responses_parse(resp, sizeof resp - 1, &limits, NULL, &c, &ro, &f));
        ASSERT_STREQ(c->affinity_key, "bob");
        ASSERT_STREQ(ro.user, "bob");
        responses_options_done(&ro);
        conversation_free(TAKE_PTR(c));

        /* A long key is kept as its digest, so a client cannot make the selector hold megabytes. */
        ASSERT_OK(conversation_new(&c));
        _cleanup_free_ char *big = malloc(API_AFFINITY_KEY_MAX + 2);
        ASSERT_NOT_NULL(big);
        memset(big, 'k', API_AFFINITY_KEY_MAX);
        big[API_AFFINITY_KEY_MAX] = 0;
        ASSERT_OK(api_set_affinity_key(c, big));
        ASSERT_STREQ(c->affinity_key, big);
        big[API_AFFINITY_KEY_MAX] = 'k';
        big[API_AFFINITY_KEY_MAX + 1] = 0;
        ASSERT_OK(api_set_affinity_key(c, big));
        ASSERT_EQ(strlen(c->affinity_key), strlen("sha256:") + 64);
        ASSERT_TRUE(startswith(c->affinity_key, "sha256:"));
        _cleanup_free_ char *first = strdup(c->affinity_key);
        ASSERT_OK(api_set_affinity_key(c, big));
        ASSERT_STREQ(c->affinity_key, first);
        big[0] = 'j';
        ASSERT_OK(api_set_affinity_key(c, big));
        ASSERT_TRUE(!streq(c->affinity_key, first));
}

TEST(error_shapes_and_status_map) {
        Failure f = { .kind = FAILURE_OVERLOADED, .message = (char *) "busy \"now\"", .param = (char *) "model" };
        _cleanup_free_ char *o = NULL, *a = NULL;
        size_t n;

        ASSERT_OK(api_error_render(API_SHAPE_OPENAI, &f, &o, &n));
        ASSERT_STREQ(o, "{\"error\":{\"message\":\"busy \\\"now\\\"\",\"type\":\"api_error\",\"param\":\"model\",\"code\":null}}");
        ASSERT_OK(api_error_render(API_SHAPE_ANTHROPIC, &f, &a, &n));
        ASSERT_STREQ(a, "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy \\\"now\\\"\"}}");
        ASSERT_EQ(api_error_status(API_SHAPE_OPENAI, FAILURE_OVERLOADED), 503);
        ASSERT_EQ(api_error_status(API_SHAPE_ANTHROPIC, FAILURE_OVERLOADED), 529);
        ASSERT_EQ(api_error_kind_from_status(413), FAILURE_TOO_LARGE);
        ASSERT_EQ(api_error_kind_from_status(529), FAILURE_OVERLOADED);
        ASSERT_EQ(api_error_kind_from_status(500), FAILURE_INTERNAL);
        ASSERT_EQ(api_error_kind_from_status(431), FAILURE_INVALID_REQUEST);
        ASSERT_EQ(api_error_kind_from_status(501), FAILURE_INTERNAL);
        /* Every status a kind renders as maps back to a kind with that status. */
        for (FailureKind k = 0; k < _FAILURE_KIND_MAX; k++) {
                unsigned st = api_error_status(API_SHAPE_ANTHROPIC, k);
                ASSERT_EQ(api_error_status(API_SHAPE_ANTHROPIC, api_error_kind_from_status(st)), st);
        }
}
