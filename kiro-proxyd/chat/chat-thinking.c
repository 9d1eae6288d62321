/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Incremental "<thinking>" splitter: a small state machine that holds back at most one partial tag. */
#include <assert.h>
#include <ctype.h>
#include <string.h>

#include "chat/chat-thinking.h"

enum {
        STATE_START,            /* leading white space and a partial "<thinking>" are in pending */
        STATE_AFTER_OPEN,       /* just after "<thinking>": drop one newline */
        STATE_THINKING,         /* reasoning; a partial "</thinking>" may be in pending */
        STATE_CLOSE_PENDING,    /* "</thinking>" complete in pending, waiting for the next byte */
        STATE_AFTER_CLOSE,      /* dropping up to two newlines */
        STATE_TEXT,             /* answer text, passed through */
};

static const char open_tag[] = "<thinking>";
static const char close_tag[] = "</thinking>";
#define OPEN_LEN (sizeof open_tag - 1)
#define CLOSE_LEN (sizeof close_tag - 1)

static bool is_quote(char c) {
        return c == '"' || c == '\'' || c == '`';
}

void thinking_splitter_init(ThinkingSplitter *s, bool enabled, thinking_output_t output, void *userdata) {
        assert(s);
        assert(output);

        *s = (ThinkingSplitter) {
                .enabled = enabled,
                .state = enabled ? STATE_START : STATE_TEXT,
                .output = output,
                .userdata = userdata,
        };
}

static int emit(ThinkingSplitter *s, bool thinking, const char *p, size_t n) {
        int r;

        if (n == 0)
                return 0;
        if (thinking)
                s->prev = p[n - 1];
        r = s->output(thinking, p, n, s->userdata);
        if (r < 0)
                s->error = r;
        return r;
}

static int emit_pending(ThinkingSplitter *s, bool thinking) {
        int r = emit(s, thinking, s->pending, s->n_pending);
        s->n_pending = s->n_matched = 0;
        return r;
}

int thinking_splitter_feed(ThinkingSplitter *s, const char *text, size_t size) {
        size_t i = 0, run = 0;
        int r;

        assert(s);
        assert(text || size == 0);

        if (s->error < 0)
                return s->error;

        while (i < size) {
                char c = text[i];

                switch (s->state) {

                case STATE_START:
                        if (s->n_matched == 0 && isspace((unsigned char) c) &&
                            s->n_pending < THINKING_LEADING_SPACE_MAX) {
                                s->pending[s->n_pending++] = c;
                                i++;
                                break;
                        }
                        if (c == open_tag[s->n_matched]) {
                                s->pending[s->n_pending++] = c;
                                i++;
                                if (++s->n_matched == OPEN_LEN) {
                                        s->n_pending = s->n_matched = 0;
                                        s->saw_thinking = true;
                                        s->state = STATE_AFTER_OPEN;
                                }
                                break;
                        }
                        /* Not a thinking block: what was held back and all the rest is answer text. */
                        s->state = STATE_TEXT;
                        r = emit_pending(s, false);
                        if (r < 0)
                                return r;
                        return emit(s, false, text + i, size - i);

                case STATE_AFTER_OPEN:
                        s->state = STATE_THINKING;
                        if (c == '\n')
                                i++;
                        run = i;
                        break;

                case STATE_THINKING:
                        if (s->n_matched == 0) {
                                if (c == '<') {
                                        r = emit(s, true, text + run, i - run);
                                        if (r < 0)
                                                return r;
                                        s->pending[s->n_pending++] = c;
                                        s->n_matched = 1;
                                }
                                i++;
                                break;
                        }
                        if (c == close_tag[s->n_matched]) {
                                s->pending[s->n_pending++] = c;
                                i++;
                                if (++s->n_matched < CLOSE_LEN)
                                        break;
                                if (is_quote(s->prev)) {
                                        /* `</thinking>` quoted in the reasoning: it is content. */
                                        r = emit_pending(s, true);
                                        if (r < 0)
                                                return r;
                                        run = i;
                                } else
                                        s->state = STATE_CLOSE_PENDING;
                                break;
                        }
                        /* Not the closing tag after all: the held bytes are reasoning, and c is looked at
                         * again from scratch (it may start a tag itself). */
                        r = emit_pending(s, true);
                        if (r < 0)
                                return r;
                        run = i;
                        break;

                case STATE_CLOSE_PENDING:
                        if (is_quote(c)) {
                                r = emit_pending(s, true);
                                if (r < 0)
                                        return r;
                                s->state = STATE_THINKING;
                                run = i;
                                break;
                        }
                        s->n_pending = s->n_matched = 0;
                        s->state = STATE_AFTER_CLOSE;
                        break;

                case STATE_AFTER_CLOSE:
                        if (c == '\n' && s->n_matched < 2) {
                                s->n_matched++;
                                i++;
                                break;
                        }
                        s->n_matched = 0;
                        s->state = STATE_TEXT;
                        __attribute__((fallthrough));

                case STATE_TEXT:
                        return emit(s, false, text + i, size - i);

                default:
                        assert(false);
                }
        }

        if (s->state == STATE_THINKING && s->n_matched == 0)
                return emit(s, true, text + run, size - run);
        return 0;
}

int thinking_splitter_finish(ThinkingSplitter *s) {
        int r = 0;

        assert(s);

        if (s->error < 0)
                return s->error;

        switch (s->state) {
        case STATE_START:
                r = emit_pending(s, false);
                break;
        case STATE_THINKING:
                r = emit_pending(s, true);
                break;
        default:
                s->n_pending = s->n_matched = 0;
        }
        s->state = STATE_TEXT;
        return r;
}
