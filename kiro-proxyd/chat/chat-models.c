/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The model table and the name normalisation that maps client names onto it. */
#include <assert.h>
#include <ctype.h>
#include <strings.h>

#include "chat/chat-models.h"

/* Longest client model name we look at; longer ones cannot be in the table. */
#define MODEL_NAME_MAX 128U

/* Limits from KIRO-PROTOCOL B §5.1 (LB config.rs). Where the sources give no output limit (the
 * non-Claude models), 32000 is our conservative guess. */
static const ModelInfo models[] = {
        { "auto",              "auto",              "Auto",              MODEL_PROVIDER_KIRO, 1000000, 64000,  true },
        { "claude-sonnet-4",   "claude-sonnet-4",   "Claude Sonnet 4",   MODEL_PROVIDER_KIRO, 200000,  64000,  true },
        { "claude-sonnet-4.5", "claude-sonnet-4.5", "Claude Sonnet 4.5", MODEL_PROVIDER_KIRO, 200000,  64000,  true },
        { "claude-sonnet-4.6", "claude-sonnet-4.6", "Claude Sonnet 4.6", MODEL_PROVIDER_KIRO, 1000000, 64000,  true },
        { "claude-haiku-4.5",  "claude-haiku-4.5",  "Claude Haiku 4.5",  MODEL_PROVIDER_KIRO, 200000,  64000,  true },
        { "claude-opus-4.5",   "claude-opus-4.5",   "Claude Opus 4.5",   MODEL_PROVIDER_KIRO, 200000,  64000,  true },
        { "claude-opus-4.6",   "claude-opus-4.6",   "Claude Opus 4.6",   MODEL_PROVIDER_KIRO, 1000000, 64000,  true },
        { "claude-opus-4.7",   "claude-opus-4.7",   "Claude Opus 4.7",   MODEL_PROVIDER_KIRO, 1000000, 128000, true },
        { "deepseek-3.2",      "deepseek-3.2",      "DeepSeek 3.2",      MODEL_PROVIDER_KIRO, 163840,  32000,  false },
        { "glm-5",             "glm-5",             "GLM 5",             MODEL_PROVIDER_KIRO, 200000,  32000,  false },
        { "minimax-m2.1",      "minimax-m2.1",      "MiniMax M2.1",      MODEL_PROVIDER_KIRO, 196608,  32000,  false },
        { "minimax-m2.5",      "minimax-m2.5",      "MiniMax M2.5",      MODEL_PROVIDER_KIRO, 196608,  32000,  false },
        { "qwen3-coder-next",  "qwen3-coder-next",  "Qwen3 Coder Next",  MODEL_PROVIDER_KIRO, 262144,  32000,  false },
        /* Kimi Code's default model (B §7). */
        { "kimi-for-coding",   "kimi-for-coding",   "Kimi for Coding",   MODEL_PROVIDER_KIMI, 262144,  32000,  false },
};

/* Defaults for Kimi names we do not know: passed through to the Kimi API unchanged. */
static const ModelInfo kimi_passthrough = {
        NULL, NULL, "Kimi", MODEL_PROVIDER_KIMI, 262144, 32000, false,
};

/* Explicit aliases, in normalised (lower-case, dotted) form. Retired models map to the nearest current
 * one of the same family, so that old clients keep working; everything else unknown is -ENOENT. */
static const struct {
        const char *alias;
        const char *id;
} aliases[] = {
        { "auto-kiro",                        "auto" },
        { "claude-opus-4",                    "claude-opus-4.5" },
        { "claude-opus-4.1",                  "claude-opus-4.5" },
        { "claude-3.7-sonnet",                "claude-sonnet-4" },
        { "claude-3.5-sonnet",                "claude-sonnet-4" },
        { "claude-3.5-haiku",                 "claude-haiku-4.5" },
        /* Legacy upper-case Kiro ids (B §5.1). */
        { "claude_sonnet_4_5_20250929_v1_0",  "claude-sonnet-4.5" },
        { "claude_sonnet_4_20250514_v1_0",    "claude-sonnet-4" },
        { "claude_3_7_sonnet_20250219_v1_0",  "claude-sonnet-4" },
        { "claude_3_5_haiku_20241022_v1_0",   "claude-haiku-4.5" },
};

static const char *const provider_table[_MODEL_PROVIDER_MAX] = {
        [MODEL_PROVIDER_KIRO] = "kiro",
        [MODEL_PROVIDER_KIMI] = "kimi",
};

const char *model_provider_to_string(ModelProvider p) {
        if (p < 0 || p >= _MODEL_PROVIDER_MAX)
                return NULL;
        return provider_table[p];
}

size_t models_count(void) {
        return ELEMENTSOF(models);
}

const ModelInfo *models_get(size_t i) {
        return i < ELEMENTSOF(models) ? models + i : NULL;
}

static const ModelInfo *lookup(const char *n) {
        for (size_t i = 0; i < ELEMENTSOF(models); i++)
                if (streq(models[i].id, n))
                        return models + i;
        for (size_t i = 0; i < ELEMENTSOF(aliases); i++)
                if (streq(aliases[i].alias, n))
                        return lookup(aliases[i].id);
        return NULL;
}

static bool strip_suffix(char *s, const char *suffix) {
        size_t l = strlen(s), k = strlen(suffix);

        if (l <= k || !streq(s + l - k, suffix))
                return false;
        s[l - k] = 0;
        return true;
}

static bool strip_prefix(char *s, const char *prefix) {
        const char *p = startswith(s, prefix);

        if (!p || !*p)
                return false;
        memmove(s, p, strlen(p) + 1);
        return true;
}

/* Drops "-YYYYMMDD" at the end. */
static bool strip_date(char *s) {
        size_t l = strlen(s);

        if (l < 10 || s[l - 9] != '-')
                return false;
        for (size_t i = l - 8; i < l; i++)
                if (!isdigit((unsigned char) s[i]))
                        return false;
        s[l - 9] = 0;
        return true;
}

/* "4-5" → "4.5", "3-7" → "3.7": a dash between two digits separates version components. */
static void dots_for_dashes(char *s) {
        for (size_t i = 1; s[i] && s[i + 1]; i++)
                if (s[i] == '-' && isdigit((unsigned char) s[i - 1]) && isdigit((unsigned char) s[i + 1]))
                        s[i] = '.';
}

int models_resolve(const char *name, ModelInfo *ret, bool *ret_thinking) {
        char n[MODEL_NAME_MAX + 1];
        const ModelInfo *m;
        bool thinking;
        size_t l;

        assert(name);
        assert(ret);

        l = strlen(name);
        if (l == 0 || l > MODEL_NAME_MAX)
                return -ENOENT;
        for (size_t i = 0; i <= l; i++)
                n[i] = (char) tolower((unsigned char) name[i]);

        if (streq(n, "kimi") || startswith(n, "kimi-")) {
                m = lookup(n);
                if (m)
                        *ret = *m;
                else {
                        *ret = kimi_passthrough;
                        ret->id = ret->upstream_id = name;
                }
                if (ret_thinking)
                        *ret_thinking = false;
                return 0;
        }

        (void) strip_suffix(n, "[1m]");
        if (!strip_prefix(n, "kiro-"))
                (void) strip_prefix(n, "amazonq-");
        thinking = strip_suffix(n, "-thinking");

        m = lookup(n);
        if (!m) {
                (void) strip_suffix(n, "-agentic");
                if (!strip_date(n))
                        (void) strip_suffix(n, "-latest");
                dots_for_dashes(n);
                m = lookup(n);
        }
        if (!m || m->provider != MODEL_PROVIDER_KIRO)
                return -ENOENT;

        *ret = *m;
        if (ret_thinking)
                *ret_thinking = thinking;
        return 0;
}
