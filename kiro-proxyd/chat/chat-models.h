/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one model alias table (KIRO-PROTOCOL §5.1): client model names → provider and upstream id. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

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

/* Iteration over the listed models (Kiro first, then Kimi), for /v1/models and kiroctl models. */
size_t models_count(void) _pure_;
const ModelInfo *models_get(size_t i) _pure_;
