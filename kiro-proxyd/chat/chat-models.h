/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one model alias table (KIRO-PROTOCOL §5.1): client model names → provider and upstream id. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "chat/chat-catalog.h"

typedef enum ModelProvider {
        MODEL_PROVIDER_KIRO,
        MODEL_PROVIDER_KIMI,
        _MODEL_PROVIDER_MAX,
        _MODEL_PROVIDER_INVALID = -EINVAL,
} ModelProvider;

const char *model_provider_to_string(ModelProvider p) _pure_;

typedef struct ModelInfo {
        const char *id;                 /* canonical name, as listed by /v1/models */
        const char *upstream_id;        /* modelId sent upstream */
        const char *display_name;
        ModelProvider provider;
        uint64_t context_window;        /* max input tokens */
        uint64_t max_output_tokens;
        bool list_thinking_variant;     /* /v1/models also lists "<id>-thinking" */
} ModelInfo;

/* Resolves a client model name. Matching is case-insensitive and, in order:
 *   1. "kimi-…" / "kimi" names belong to the Kimi provider: a known one resolves to its table entry,
 *      any other is passed through (id and upstream_id then point into 'name', so they are valid as long
 *      as it is). A "-thinking" suffix is part of Kimi names and never stripped.
 *   2. A trailing "[1m]" is dropped; a "kiro-" or "amazonq-" prefix is dropped.
 *   3. A "-thinking" suffix is dropped and sets *ret_thinking.
 *   4. Exact ids ("claude-sonnet-4.5") and the explicit aliases ("auto-kiro", legacy upper-case ids).
 *   5. A "-agentic" suffix, a "-YYYYMMDD" date or "-latest" suffix is dropped, and a '-' between two
 *      digits becomes '.', so "claude-sonnet-4-5-20250929" → "claude-sonnet-4.5"; then step 4 again.
 * Unknown names are -ENOENT (front ends answer 404 model_not_found): no guessing of a "closest" model,
 * except the explicit retired-model aliases in the table (claude-opus-4/4.1 → claude-opus-4.5,
 * claude-3.7/3.5-sonnet → claude-sonnet-4, claude-3.5-haiku → claude-haiku-4.5).
 * ret_thinking may be NULL; it is set to false when no "-thinking" suffix was present. */
int models_resolve(const char *name, ModelInfo *ret, bool *ret_thinking);

/* The live list: the models a back end lists (Kiro's ListAvailableModels), merged with the table by
 * models_resolve() and the catalog below. Strings handed out stay valid for the life of the process (ids are
 * interned: a ModelInfo resolved before an update keeps valid pointers). */
/* Replaces the live list of provider p (copies everything). */
int models_live_set(ModelProvider p, const ModelLive *list, size_t n);
/* Whether a live list was ever set. */
bool models_live_known(void);
/* Frees the live list (at exit, for leak checkers). */
void models_live_clear(void);

/* The catalog served on /v1/models and by kiroctl models: the live list (each entry completed from the
 * table: context window, output limit, thinking where Kiro gives none) when one is known, else the table. */
typedef struct ModelCatalogEntry {
        const char *id;
        const char *display_name;
        ModelProvider provider;
        uint64_t context_window;
        uint64_t max_output_tokens;
        bool thinking;                  /* reasoning can be asked for ("-thinking" variant, reasoning effort) */
        bool listed_upstream;           /* Kiro listed it */
        bool in_table;                  /* the built-in table knows it */
} ModelCatalogEntry;

size_t models_catalog_count(void);
bool models_catalog_get(size_t i, ModelCatalogEntry *ret);
/* The j-th entry of provider p in the built-in table (for Kimi, whose models the catalog above leaves
 * out: /v1/models adds them when a Kimi credential exists). false past the end. */
bool models_table_get(ModelProvider p, size_t j, ModelCatalogEntry *ret);
/* The aliases that reach id (table aliases and the "-thinking" variant), at most max, returns how many. */
size_t models_aliases(const char *id, const char **ret, size_t max);

/* Iteration over the listed models (Kiro first, then Kimi), for /v1/models and kiroctl models. */
size_t models_count(void) _pure_;
const ModelInfo *models_get(size_t i) _pure_;
