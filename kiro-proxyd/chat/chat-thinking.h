/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Splits a leading "<thinking>…</thinking>" block off streamed answer text (KIRO-PROTOCOL A.5, B §4.4). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Receives output in order: thinking=true for reasoning text, false for answer text. Pieces are never
 * empty and never split a UTF-8 sequence that was whole in the input (the splitter only cuts at ASCII
 * tag boundaries). A negative return stops the splitter and is returned by feed/finish. */
typedef int (*thinking_output_t)(bool thinking, const char *text, size_t size, void *userdata);

/* Leading white space tolerated before "<thinking>"; more and the answer is plain text. */
#define THINKING_LEADING_SPACE_MAX 64U

typedef struct ThinkingSplitter {
        bool enabled;
        int state;
        char pending[THINKING_LEADING_SPACE_MAX + 16];
        size_t n_pending;
        size_t n_matched;       /* bytes of the tag being matched */
        char prev;              /* last byte of reasoning text emitted, for the quote rule */
        bool saw_thinking;
        int error;
        thinking_output_t output;
        void *userdata;
} ThinkingSplitter;

/* When !enabled (the client did not ask for reasoning), all text passes through untouched as answer
 * text. When enabled:
 *   - "<thinking>" is recognised only at the start, after optional white space (which is dropped); one
 *     newline right after it is dropped;
 *   - the block ends at the first "</thinking>" that is not quoted, i.e. neither preceded nor followed
 *     by one of " ' ` (so a tag the model merely mentions in its reasoning does not end it); up to two
 *     newlines after it are dropped;
 *   - tags may be split across feeds at any byte;
 *   - everything after the block is answer text, passed through (no second block is recognised).
 * No allocation: the state is this struct. */
void thinking_splitter_init(ThinkingSplitter *s, bool enabled, thinking_output_t output, void *userdata);
int thinking_splitter_feed(ThinkingSplitter *s, const char *text, size_t size);
/* Flushes what was held back at the end of the answer (a partial tag is text of whichever kind it was
 * in). An unterminated block stays reasoning. */
int thinking_splitter_finish(ThinkingSplitter *s);
