/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The model table and the name normalisation that maps client names onto it. */
#include <assert.h>
#include <ctype.h>
#include <strings.h>

#include "chat/chat-models.h"

/* Limits for a model Kiro lists without tokenLimits and the table does not know. */
#define MODEL_CONTEXT_WINDOW_UNKNOWN 200000U
#define MODEL_MAX_OUTPUT_UNKNOWN 32000U

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

/* ---- the live list ---------------------------------------------------------------------------------- */

/* Interned model strings: never freed while the process runs (a handful of ids). */
typedef struct LiveEntry {
        char *id;
        char *display_name;
        uint64_t context_window, max_output_tokens;
        bool thinking;
        bool listed;            /* in the current list */
} LiveEntry;

static LiveEntry *live = NULL;
static size_t n_live = 0;
static bool live_known = false;
static size_t *listed_idx = NULL;       /* indices into live, in Kiro's order */
static size_t n_listed = 0;

static LiveEntry *live_find(const char *id) {
        for (size_t i = 0; i < n_live; i++)
                if (strcasecmp(live[i].id, id) == 0)
                        return live + i;
        return NULL;
}

int models_live_set(ModelProvider p, const ModelLive *list, size_t n) {
        if (p != MODEL_PROVIDER_KIRO)
                return -EOPNOTSUPP;
        size_t *idx = calloc(n ?: 1, sizeof *idx), k = 0;
        if (!idx)
                return -ENOMEM;
        for (size_t i = 0; i < n_live; i++)
                live[i].listed = false;
        for (size_t i = 0; i < n; i++) {
                if (isempty(list[i].id))
                        continue;
                LiveEntry *e = live_find(list[i].id);
                if (!e) {
                        LiveEntry *a = realloc(live, (n_live + 1) * sizeof *live);
                        if (!a) {
                                free(idx);
                                return -ENOMEM;
                        }
                        live = a;
                        e = live + n_live;
                        *e = (LiveEntry) { .id = strdup(list[i].id) };
                        if (!e->id) {
                                free(idx);
                                return -ENOMEM;
                        }
                        n_live++;
                }
                if (list[i].display_name && !streq_ptr(e->display_name, list[i].display_name)) {
                        /* Interned too: the old name may still be referenced. Only the first name is kept. */
                        if (!e->display_name && !(e->display_name = strdup(list[i].display_name))) {
                                free(idx);
                                return -ENOMEM;
                        }
                }
                e->context_window = list[i].context_window;
                e->max_output_tokens = list[i].max_output_tokens;
                e->thinking = list[i].thinking;
                if (!e->listed)
                        idx[k++] = (size_t) (e - live);
                e->listed = true;
        }
        free(listed_idx);
        listed_idx = idx;
        n_listed = k;
        live_known = true;
        return 0;
}

bool models_live_known(void) {
        return live_known;
}

void models_live_clear(void) {
        for (size_t i = 0; i < n_live; i++) {
                free(live[i].id);
                free(live[i].display_name);
        }
        free(live);
        live = NULL;
        free(listed_idx);
        listed_idx = NULL;
        n_listed = 0;
        n_live = 0;
        live_known = false;
}

/* The listed entries in Kiro's order. */
static const LiveEntry *live_listed(size_t k) {
        return k < n_listed ? live + listed_idx[k] : NULL;
}

static size_t live_n_listed(void) {
        return n_listed;
}

size_t models_catalog_count(void) {
        return live_known && live_n_listed() > 0 ? live_n_listed() : ELEMENTSOF(models) - 1 /* not Kimi */;
}

static const ModelInfo *table_find(const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(models); i++)
                if (strcasecmp(models[i].id, id) == 0)
                        return models + i;
        return NULL;
}

bool models_table_get(ModelProvider p, size_t j, ModelCatalogEntry *ret) {
        for (size_t i = 0; i < ELEMENTSOF(models); i++)
                if (models[i].provider == p && j-- == 0) {
                        *ret = (ModelCatalogEntry) {
                                .id = models[i].id, .display_name = models[i].display_name, .provider = p,
                                .context_window = models[i].context_window,
                                .max_output_tokens = models[i].max_output_tokens,
                                .thinking = models[i].list_thinking_variant, .in_table = true,
                        };
                        return true;
                }
        return false;
}

bool models_catalog_get(size_t i, ModelCatalogEntry *ret) {
        if (!(live_known && live_n_listed() > 0)) {
                if (i >= ELEMENTSOF(models) || models[i].provider != MODEL_PROVIDER_KIRO)
                        return false;
                *ret = (ModelCatalogEntry) {
                        .id = models[i].id, .display_name = models[i].display_name, .provider = MODEL_PROVIDER_KIRO,
                        .context_window = models[i].context_window, .max_output_tokens = models[i].max_output_tokens,
                        .thinking = models[i].list_thinking_variant, .in_table = true,
                };
                return true;
        }
        const LiveEntry *e = live_listed(i);
        if (!e)
                return false;
        const ModelInfo *t = table_find(e->id);
        *ret = (ModelCatalogEntry) {
                .id = t ? t->id : e->id,
                .display_name = e->display_name ?: t ? t->display_name : e->id,
                .provider = MODEL_PROVIDER_KIRO,
                .context_window = e->context_window ?: t ? t->context_window : MODEL_CONTEXT_WINDOW_UNKNOWN,
                .max_output_tokens = e->max_output_tokens ?: t ? t->max_output_tokens : MODEL_MAX_OUTPUT_UNKNOWN,
                .thinking = e->thinking || (t && t->list_thinking_variant),
                .listed_upstream = true,
                .in_table = t,
        };
        return true;
}

size_t models_aliases(const char *id, const char **ret, size_t max) {
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(aliases) && n < max; i++)
                if (streq(aliases[i].id, id))
                        ret[n++] = aliases[i].alias;
        return n;
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
        if (!m) {
                /* A model Kiro lists that the table does not know: usable under its own id. */
                const LiveEntry *e = live_find(name);
                bool th = false;
                if (!e) {
                        char raw[MODEL_NAME_MAX + 1];
                        strcpy(raw, name);
                        th = strip_suffix(raw, "-thinking");
                        e = th ? live_find(raw) : NULL;
                }
                if (!e || !e->listed)
                        return -ENOENT;
                *ret = (ModelInfo) {
                        .id = e->id, .upstream_id = e->id, .display_name = e->display_name ?: e->id,
                        .provider = MODEL_PROVIDER_KIRO,
                        .context_window = e->context_window ?: MODEL_CONTEXT_WINDOW_UNKNOWN,
                        .max_output_tokens = e->max_output_tokens ?: MODEL_MAX_OUTPUT_UNKNOWN,
                        .list_thinking_variant = e->thinking,
                };
                if (ret_thinking)
                        *ret_thinking = th;
                return 0;
        }
        if (m->provider != MODEL_PROVIDER_KIRO)
                return -ENOENT;

        *ret = *m;
        /* Kiro's own limits win over the table's where it gives them. */
        const LiveEntry *e = live_find(m->upstream_id);
        if (e && e->listed && e->context_window > 0)
                ret->context_window = e->context_window;
        if (e && e->listed && e->max_output_tokens > 0)
                ret->max_output_tokens = e->max_output_tokens;
        if (ret_thinking)
                *ret_thinking = thinking;
        return 0;
}
