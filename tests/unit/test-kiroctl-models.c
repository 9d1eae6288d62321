/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl models: printing a /v1/models body (thinking variants folded into aliases), the built-in table,
 * and an unreachable kiro-proxyd. */
#include <errno.h>

#include "json-util.h"
#include "kiroctl-models.h"
#include "tests.h"

static char *print(const char *body, bool json) {
        char *out = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&out, &n);
        ASSERT_NOT_NULL(f);
        ASSERT_OK(models_print(f, body, strlen(body), json, "test", false));
        ASSERT_TRUE(fclose(f) == 0);
        return out;
}

static const char body[] =
        "{\"object\":\"list\",\"data\":["
        "{\"id\":\"claude-opus-4.5\",\"display_name\":\"Claude Opus 4.5\",\"context_window\":200000,"
        "\"max_output_tokens\":64000,\"thinking\":true,\"listed_by_kiro\":true,\"aliases\":[\"claude-opus-4\"]},"
        "{\"id\":\"claude-opus-4.5-thinking\",\"context_window\":200000,\"thinking\":true,\"aliases\":[]},"
        "{\"id\":\"glm-5\",\"display_name\":\"GLM 5\",\"context_window\":200000,\"max_output_tokens\":32000,"
        "\"thinking\":false,\"listed_by_kiro\":false,\"aliases\":[]}]}";

TEST(table) {
        _cleanup_free_ char *out = print(body, false);
        ASSERT_NOT_NULL(strstr(out, "MODEL"));
        ASSERT_NOT_NULL(strstr(out, "claude-opus-4, claude-opus-4.5-thinking"));
        ASSERT_NOT_NULL(strstr(out, "200000"));
        ASSERT_NOT_NULL(strstr(out, "2 models (test)."));
        /* the variant is folded, not a line of its own */
        ASSERT_NULL(strstr(out, "\nclaude-opus-4.5-thinking"));
}

TEST(json) {
        _cleanup_free_ char *out = print(body, true);
        _cleanup_json_ json_object *j = NULL;
        json_object *models, *m, *al;
        ASSERT_OK(json_parse_bounded(out, strlen(out), 16, &j, NULL));
        ASSERT_STREQ(json_string_or_null(j, "source"), "test");
        ASSERT_OK(json_get_array(j, "models", &models));
        ASSERT_EQ(json_object_array_length(models), 2U);
        m = json_object_array_get_idx(models, 0);
        ASSERT_OK(json_get_array(m, "aliases", &al));
        ASSERT_EQ(json_object_array_length(al), 2U);
        ASSERT_STREQ(json_object_get_string(json_object_array_get_idx(al, 1)), "claude-opus-4.5-thinking");
}

TEST(builtin) {
        _cleanup_free_ char *b = NULL;
        size_t n;
        ASSERT_OK(models_builtin_body(&b, &n));
        _cleanup_free_ char *out = print(b, false);
        ASSERT_NOT_NULL(strstr(out, "claude-sonnet-4.5"));
        ASSERT_NOT_NULL(strstr(out, "auto-kiro"));
        ASSERT_NULL(strstr(out, "kimi"));
}

TEST(unreachable) {
        char *b = NULL;
        size_t n;
        ASSERT_ERROR(models_fetch("unix:/nonexistent/kiro-proxyd.sock", NULL, &b, &n), ECONNREFUSED);
        ASSERT_ERROR(models_fetch("http://127.0.0.1:1", NULL, &b, &n), ECONNREFUSED);
}
