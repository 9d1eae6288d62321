/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one token estimator, used for usage reports and count_tokens alike (KIRO-PROTOCOL A.6). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Incremental counter: text may be added in pieces split anywhere, even inside a UTF-8 sequence, and
 * the result is the same as for the whole text. Zero-initialise it. */
typedef struct TokenCounter {
        uint64_t quarters;      /* estimated tokens × 4 */
} TokenCounter;

/* Heuristic: an ASCII byte is a quarter token (~4 characters per token), a 2-byte UTF-8 character half
 * a token, a 3- or 4-byte one (CJK, emoji) a whole token. */
void token_counter_add(TokenCounter *c, const char *text, size_t size);
/* Adds a fixed number of tokens (per-message overhead, images). */
void token_counter_add_tokens(TokenCounter *c, uint64_t tokens);
/* The estimate so far, rounded up. */
uint64_t token_counter_get(const TokenCounter *c);

/* Estimate for one NUL-terminated text (NULL counts as empty). */
uint64_t tokens_estimate(const char *text);
uint64_t tokens_estimate_n(const char *text, size_t size);
