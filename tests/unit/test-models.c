/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Model alias table. */
#include "chat/chat-models.h"
#include "tests.h"

static void check(const char *name, const char *id, bool thinking) {
        ModelInfo m = {};
        bool t = !thinking;
        int r;

        r = models_resolve(name, &m, &t);
        if (r < 0)
                ASSERT_FAIL("'%s' did not resolve: %s", name, strerror(-r));
        if (!streq(m.upstream_id, id))
                ASSERT_FAIL("'%s' → '%s', expected '%s'", name, m.upstream_id, id);
        if (t != thinking)
                ASSERT_FAIL("'%s': thinking %d, expected %d", name, t, thinking);
}

static void check_unknown(const char *name) {
        ModelInfo m = {};
        int r = models_resolve(name, &m, NULL);
        if (r != -ENOENT)
                ASSERT_FAIL("'%s' resolved (%d) to '%s'", name, r, strna(m.id));
}

TEST(exact_ids) {
        static const char *const ids[] = {
                "auto", "claude-sonnet-4", "claude-sonnet-4.5", "claude-sonnet-4.6", "claude-haiku-4.5",
                "claude-opus-4.5", "claude-opus-4.6", "claude-opus-4.7", "deepseek-3.2", "glm-5",
                "minimax-m2.1", "minimax-m2.5", "qwen3-coder-next",
        };
        for (size_t i = 0; i < ELEMENTSOF(ids); i++)
                check(ids[i], ids[i], false);
}

TEST(claude_code_and_sdk_names) {
        check("claude-sonnet-4-5-20250929", "claude-sonnet-4.5", false);
        check("claude-sonnet-4-5", "claude-sonnet-4.5", false);
        check("claude-sonnet-4-6", "claude-sonnet-4.6", false);
        check("claude-opus-4-5", "claude-opus-4.5", false);
        check("claude-opus-4-5-20251101", "claude-opus-4.5", false);
        check("claude-opus-4-6", "claude-opus-4.6", false);
        check("claude-opus-4-7", "claude-opus-4.7", false);
        check("claude-haiku-4-5", "claude-haiku-4.5", false);
        check("claude-haiku-4-5-20251001", "claude-haiku-4.5", false);
        check("claude-haiku-4-5-latest", "claude-haiku-4.5", false);
        check("claude-sonnet-4-20250514", "claude-sonnet-4", false);
        check("claude-sonnet-4-5-20250929[1m]", "claude-sonnet-4.5", false);
        check("claude-sonnet-4-6[1M]", "claude-sonnet-4.6", false);
        check("Claude-Sonnet-4.5", "claude-sonnet-4.5", false);
}

TEST(retired_models) {
        check("claude-opus-4-1-20250805", "claude-opus-4.5", false);
        check("claude-opus-4-1", "claude-opus-4.5", false);
        check("claude-opus-4-20250514", "claude-opus-4.5", false);
        check("claude-3-7-sonnet-20250219", "claude-sonnet-4", false);
        check("claude-3-7-sonnet-latest", "claude-sonnet-4", false);
        check("claude-3-5-sonnet-20241022", "claude-sonnet-4", false);
        check("claude-3-5-haiku-20241022", "claude-haiku-4.5", false);
        check("CLAUDE_SONNET_4_5_20250929_V1_0", "claude-sonnet-4.5", false);
        check("CLAUDE_SONNET_4_20250514_V1_0", "claude-sonnet-4", false);
        check("CLAUDE_3_7_SONNET_20250219_V1_0", "claude-sonnet-4", false);
        check("CLAUDE_3_5_HAIKU_20241022_V1_0", "claude-haiku-4.5", false);
}

TEST(prefixes_and_aliases) {
        check("kiro-claude-sonnet-4-5", "claude-sonnet-4.5", false);
        check("amazonq-claude-sonnet-4-20250514", "claude-sonnet-4", false);
        check("kiro-claude-sonnet-4-5-agentic", "claude-sonnet-4.5", false);
        check("auto-kiro", "auto", false);
        check("kiro-auto", "auto", false);
        check("kiro-deepseek-3.2", "deepseek-3.2", false);
}

TEST(thinking_variants) {
        check("claude-sonnet-4.5-thinking", "claude-sonnet-4.5", true);
        check("claude-sonnet-4-5-thinking", "claude-sonnet-4.5", true);
        check("claude-sonnet-4-5-20250929-thinking", "claude-sonnet-4.5", true);
        check("kiro-claude-opus-4-6-thinking[1m]", "claude-opus-4.6", true);
        check("auto-thinking", "auto", true);
        check("glm-5-thinking", "glm-5", true);
        check_unknown("-thinking");
        check_unknown("thinking");
}

TEST(unknown_names) {
        char longname[300];

        check_unknown("gpt-4o");
        check_unknown("claude-sonnet-5");
        check_unknown("claude-opus-3");
        check_unknown("sonnet");
        check_unknown("");
        check_unknown("kiro-");
        check_unknown("claude-sonnet-4.5-extra");
        memset(longname, 'a', sizeof longname - 1);
        longname[sizeof longname - 1] = 0;
        check_unknown(longname);
}

TEST(kimi) {
        static const char name[] = "kimi-k2-thinking";
        ModelInfo m;
        bool t = true;

        ASSERT_OK(models_resolve(name, &m, &t));
        ASSERT_EQ(m.provider, MODEL_PROVIDER_KIMI);
        ASSERT_TRUE(m.upstream_id == name);     /* passed through, pointing into the name */
        ASSERT_TRUE(m.id == name);
        ASSERT_FALSE(t);                        /* "-thinking" is part of Kimi names */

        ASSERT_OK(models_resolve("Kimi-For-Coding", &m, NULL));
        ASSERT_EQ(m.provider, MODEL_PROVIDER_KIMI);
        ASSERT_STREQ(m.upstream_id, "kimi-for-coding");
        ASSERT_EQ(m.context_window, 262144);

        ASSERT_OK(models_resolve("kimi", &m, NULL));
        ASSERT_EQ(m.provider, MODEL_PROVIDER_KIMI);
        check_unknown("kimiX");
        ASSERT_STREQ(model_provider_to_string(MODEL_PROVIDER_KIMI), "kimi");
}

TEST(limits) {
        ModelInfo m;

        ASSERT_OK(models_resolve("claude-sonnet-4-5", &m, NULL));
        ASSERT_EQ(m.context_window, 200000);
        ASSERT_EQ(m.max_output_tokens, 64000);
        ASSERT_STREQ(m.display_name, "Claude Sonnet 4.5");
        ASSERT_EQ(m.provider, MODEL_PROVIDER_KIRO);
        ASSERT_OK(models_resolve("claude-sonnet-4-6", &m, NULL));
        ASSERT_EQ(m.context_window, 1000000);
        ASSERT_OK(models_resolve("claude-opus-4.7", &m, NULL));
        ASSERT_EQ(m.context_window, 1000000);
        ASSERT_EQ(m.max_output_tokens, 128000);
        ASSERT_OK(models_resolve("auto", &m, NULL));
        ASSERT_EQ(m.context_window, 1000000);
        ASSERT_OK(models_resolve("qwen3-coder-next", &m, NULL));
        ASSERT_EQ(m.context_window, 262144);
        ASSERT_OK(models_resolve("deepseek-3.2", &m, NULL));
        ASSERT_EQ(m.context_window, 163840);
        ASSERT_OK(models_resolve("minimax-m2.5", &m, NULL));
        ASSERT_EQ(m.context_window, 196608);
}

TEST(iteration) {
        size_t kiro = 0, kimi = 0;

        ASSERT_EQ(models_count(), 14);
        ASSERT_NULL(models_get(models_count()));
        for (size_t i = 0; i < models_count(); i++) {
                const ModelInfo *m = models_get(i);
                ModelInfo r;
                bool t;

                ASSERT_NOT_NULL(m);
                /* every listed id resolves to itself, and so does its thinking variant */
                ASSERT_OK(models_resolve(m->id, &r, &t));
                ASSERT_STREQ(r.id, m->id);
                ASSERT_FALSE(t);
                ASSERT_TRUE(m->context_window > 0 && m->max_output_tokens > 0);
                ASSERT_NOT_NULL(m->display_name);
                if (m->list_thinking_variant) {
                        char n[128];
                        (void) snprintf(n, sizeof n, "%s-thinking", m->id);
                        ASSERT_OK(models_resolve(n, &r, &t));
                        ASSERT_STREQ(r.id, m->id);
                        ASSERT_TRUE(t);
                }
                if (m->provider == MODEL_PROVIDER_KIRO)
                        kiro++;
                else
                        kimi++;
        }
        ASSERT_EQ(kiro, 13);
        ASSERT_EQ(kimi, 1);
}

TEST(live_list) {
        ModelInfo m;
        ModelCatalogEntry e;
        bool t;

        /* Before any list: the table, without Kimi. */
        ASSERT_FALSE(models_live_known());
        ASSERT_EQ(models_catalog_count(), 13U);
        ASSERT_TRUE(models_catalog_get(0, &e));
        ASSERT_STREQ(e.id, "auto");
        ASSERT_TRUE(e.in_table && !e.listed_upstream);
        ASSERT_ERROR(models_resolve("claude-nova-9", &m, NULL), ENOENT);

        const ModelLive l[] = {
                { "claude-nova-9", "Claude Nova 9", 512000, 96000, true },
                { "claude-sonnet-4.5", NULL, 400000, 0, false },
                { "glm-5", "GLM 5", 0, 0, false },
        };
        ASSERT_OK(models_live_set(MODEL_PROVIDER_KIRO, l, ELEMENTSOF(l)));
        ASSERT_TRUE(models_live_known());
        ASSERT_EQ(models_catalog_count(), 3U);

        /* Kiro's order; the table completes what Kiro leaves out. */
        ASSERT_TRUE(models_catalog_get(0, &e));
        ASSERT_STREQ(e.id, "claude-nova-9");
        ASSERT_TRUE(e.listed_upstream && !e.in_table && e.thinking);
        ASSERT_EQ(e.context_window, 512000U);
        ASSERT_TRUE(models_catalog_get(1, &e));
        ASSERT_STREQ(e.display_name, "Claude Sonnet 4.5");
        ASSERT_EQ(e.context_window, 400000U);           /* Kiro's figure wins */
        ASSERT_EQ(e.max_output_tokens, 64000U);         /* the table's where Kiro gives none */
        ASSERT_TRUE(e.thinking);
        ASSERT_TRUE(models_catalog_get(2, &e));
        ASSERT_EQ(e.context_window, 200000U);
        ASSERT_FALSE(models_catalog_get(3, &e));

        /* Usable under its own id, case-insensitively, with -thinking. */
        ASSERT_OK(models_resolve("claude-nova-9", &m, &t));
        ASSERT_STREQ(m.upstream_id, "claude-nova-9");
        ASSERT_EQ(m.context_window, 512000U);
        ASSERT_FALSE(t);
        ASSERT_OK(models_resolve("Claude-Nova-9-thinking", &m, &t));
        ASSERT_STREQ(m.upstream_id, "claude-nova-9");
        ASSERT_TRUE(t);
        ASSERT_OK(models_resolve("claude-sonnet-4-5-20250929", &m, NULL));
        ASSERT_EQ(m.context_window, 400000U);

        /* Aliases that reach a model. */
        const char *al[8];
        size_t n = models_aliases("claude-opus-4.5", al, ELEMENTSOF(al));
        ASSERT_EQ(n, 2U);
        ASSERT_STREQ(al[0], "claude-opus-4");

        /* A later list without it: no longer usable, but a ModelInfo resolved before keeps valid strings. */
        const char *kept = m.upstream_id;
        ASSERT_OK(models_resolve("claude-nova-9", &m, NULL));
        kept = m.upstream_id;
        ASSERT_OK(models_live_set(MODEL_PROVIDER_KIRO, l + 1, 2));
        ASSERT_ERROR(models_resolve("claude-nova-9", &m, NULL), ENOENT);
        ASSERT_STREQ(kept, "claude-nova-9");
        ASSERT_EQ(models_catalog_count(), 2U);
        models_live_clear();
        ASSERT_FALSE(models_live_known());
}
