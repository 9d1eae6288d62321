/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Token estimation without a tokenizer: weights by UTF-8 sequence length. */
#include <assert.h>
#include <string.h>

#include "chat/chat-tokens.h"

void token_counter_add(TokenCounter *c, const char *text, size_t size) {
        const unsigned char *p = (const unsigned char *) text;
        uint64_t q = 0;

        assert(c);
        assert(text || size == 0);

        /* Only lead bytes count, continuation bytes (10xxxxxx) add nothing: that makes the sum independent
         * of where the text was split. */
        size_t i = 0;
        /* ASCII fast path: eight bytes at a time while none has the high bit set. */
        while (i + 8 <= size) {
                uint64_t w;
                memcpy(&w, p + i, sizeof w);
                if (w & UINT64_C(0x8080808080808080))
                        break;
                q += 8;
                i += 8;
        }
        for (; i < size; i++) {
                unsigned char b = p[i];
                if (b < 0x80)
                        q += 1;
                else if (b < 0xC0)
                        continue;
                else if (b < 0xE0)
                        q += 2;
                else
                        q += 4;
        }
        c->quarters += q;
}

void token_counter_add_tokens(TokenCounter *c, uint64_t tokens) {
        assert(c);
        c->quarters += tokens * 4;
}

uint64_t token_counter_get(const TokenCounter *c) {
        assert(c);
        return (c->quarters + 3) / 4;
}

uint64_t tokens_estimate_n(const char *text, size_t size) {
        TokenCounter c = {};
        token_counter_add(&c, text, size);
        return token_counter_get(&c);
}

uint64_t tokens_estimate(const char *text) {
        return text ? tokens_estimate_n(text, strlen(text)) : 0;
}
