/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The front ends' request checks (api/api-request.c, through both parsers) and the client error shapes
 * (api/api-error.c). */
#include "buf.h"
#include "json-util.h"
#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "api/api-openai.h"
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
        ASSERT_STREQ(f.param, param);
        ASSERT_EQ(api_error_status(API_SHAPE_OPENAI, f.kind), 400);
        char *m = TAKE_PTR(f.message);
        failure_done(&f);
        return m;
}

static char *anthropic_refused(const char *body, size_t size, const char *param) {
        Conversation *c = NULL;
        Failure f = {};

        ASSERT_ERROR(anthropic_parse_messages(body, size, &limits, false, &c, NULL, &f), EINVAL);
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

/* A client's invalid UTF-8, echoed in the error message, must still give a valid JSON body. */
TEST(invalid_utf8_model_echoed_as_valid_json) {
        static const char body[] = "{\"model\":\"gpt-\xff\xfe\xc3(\xe2\x82-x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
        Conversation *c = NULL;
        OpenAIOptions opts;
        Failure f = {};

        ASSERT_ERROR(openai_parse_chat(body, sizeof body - 1, &limits, &c, &opts, &f), ENOENT);
        ASSERT_EQ(f.kind, FAILURE_NOT_FOUND);
        ASSERT_NOT_NULL(strstr(f.message, "\xff\xfe"));
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
        failure_done(&f);
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
