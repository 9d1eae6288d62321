/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The <thinking> splitter: tags split at every byte, quoting, newline stripping, pass-through. */
#include "macro.h"
#include "chat/chat-thinking.h"
#include "tests.h"

typedef struct Out {
        char thinking[4096];
        char text[4096];
        size_t n_thinking, n_text;
        size_t n_pieces;
        bool text_before_thinking_done; /* a thinking piece came after a text piece */
        bool last_was_text;
        bool utf8_split;                /* a piece began with a continuation byte */
        int fail_at;
} Out;

static int collect(bool thinking, const char *p, size_t n, void *userdata) {
        Out *o = userdata;

        ASSERT_TRUE(n > 0);
        if (o->fail_at > 0 && (size_t) o->fail_at == o->n_pieces + 1)
                return -ECANCELED;
        o->n_pieces++;
        if (((unsigned char) p[0] & 0xC0) == 0x80)
                o->utf8_split = true;
        if (thinking) {
                if (o->last_was_text)
                        o->text_before_thinking_done = true;
                ASSERT_TRUE(o->n_thinking + n < sizeof o->thinking);
                memcpy(o->thinking + o->n_thinking, p, n);
                o->n_thinking += n;
                o->thinking[o->n_thinking] = 0;
        } else {
                o->last_was_text = true;
                ASSERT_TRUE(o->n_text + n < sizeof o->text);
                memcpy(o->text + o->n_text, p, n);
                o->n_text += n;
                o->text[o->n_text] = 0;
        }
        return 0;
}

static void split_with(const char *input, bool enabled, size_t chunk, Out *o) {
        ThinkingSplitter s;
        size_t l = strlen(input);

        *o = (Out) {};
        thinking_splitter_init(&s, enabled, collect, o);
        if (chunk == 0)
                ASSERT_OK(thinking_splitter_feed(&s, input, l));
        else
                for (size_t off = 0; off < l; off += chunk)
                        ASSERT_OK(thinking_splitter_feed(&s, input + off, MIN(chunk, l - off)));
        ASSERT_OK(thinking_splitter_finish(&s));
        ASSERT_FALSE(o->text_before_thinking_done);
}

/* Checks the result for whole input, one byte at a time, several chunk sizes, and every two-piece
 * cut. */
static void check(const char *input, bool enabled, const char *thinking, const char *text) {
        static const size_t chunks[] = { 0, 1, 2, 3, 5, 11 };
        size_t l = strlen(input);
        Out o;

        for (size_t i = 0; i < ELEMENTSOF(chunks); i++) {
                split_with(input, enabled, chunks[i], &o);
                if (!streq(o.thinking, thinking) || !streq(o.text, text))
                        ASSERT_FAIL("chunk %zu of '%s': thinking '%s' text '%s', expected '%s' / '%s'", chunks[i],
                                    input, o.thinking, o.text, thinking, text);
        }
        for (size_t cut = 0; cut <= l; cut++) {
                ThinkingSplitter s;

                o = (Out) {};
                thinking_splitter_init(&s, enabled, collect, &o);
                ASSERT_OK(thinking_splitter_feed(&s, input, cut));
                ASSERT_OK(thinking_splitter_feed(&s, input + cut, l - cut));
                ASSERT_OK(thinking_splitter_finish(&s));
                if (!streq(o.thinking, thinking) || !streq(o.text, text))
                        ASSERT_FAIL("cut at %zu of '%s': thinking '%s' text '%s'", cut, input, o.thinking, o.text);
        }
}

TEST(disabled_passes_through) {
        check("<thinking>secret</thinking>\n\nanswer", false, "", "<thinking>secret</thinking>\n\nanswer");
        check("", false, "", "");
}

TEST(basic_block) {
        check("<thinking>\nLet me see.\nOK.</thinking>\n\nThe answer is 4.", true, "Let me see.\nOK.",
              "The answer is 4.");
}

TEST(leading_white_space) {
        check("  \n\t<thinking>abc</thinking>\n\nxyz", true, "abc", "xyz");
}

TEST(newline_handling) {
        /* only one newline after the opening tag is dropped */
        check("<thinking>\n\nabc</thinking>text", true, "\nabc", "text");
        /* up to two newlines after the closing tag */
        check("<thinking>a</thinking>\nb", true, "a", "b");
        check("<thinking>a</thinking>\n\n\nb", true, "a", "\nb");
        check("<thinking>a</thinking> b", true, "a", " b");
        check("<thinking>a</thinking>", true, "a", "");
}

TEST(no_block) {
        check("Hello <thinking>not at the start</thinking>", true, "", "Hello <thinking>not at the start</thinking>");
        check("<think>other tag</think>", true, "", "<think>other tag</think>");
        check("<thinkinG>x", true, "", "<thinkinG>x");
        check("<thin", true, "", "<thin");
        check("   ", true, "", "   ");
        check("", true, "", "");
        check("<", true, "", "<");
}

TEST(too_much_leading_space) {
        char input[200];

        memset(input, ' ', THINKING_LEADING_SPACE_MAX + 1);
        strcpy(input + THINKING_LEADING_SPACE_MAX + 1, "<thinking>x</thinking>y");
        check(input, true, "", input);

        memset(input, ' ', THINKING_LEADING_SPACE_MAX);
        strcpy(input + THINKING_LEADING_SPACE_MAX, "<thinking>x</thinking>y");
        check(input, true, "x", "y");
}

TEST(quoted_closing_tag_is_content) {
        check("<thinking>I must end with `</thinking>` later.</thinking>\n\nDone", true,
              "I must end with `</thinking>` later.", "Done");
        check("<thinking>say \"</thinking>\" then</thinking>\n\nok", true, "say \"</thinking>\" then", "ok");
        check("<thinking>a '</thinking>' b</thinking>c", true, "a '</thinking>' b", "c");
        /* quote after the tag only */
        check("<thinking>a </thinking>' b</thinking>c", true, "a </thinking>' b", "c");
}

TEST(partial_tags_inside) {
        check("<thinking>a < b and </thin and </thinkin</thinking>\n\nz", true,
              "a < b and </thin and </thinkin", "z");
        check("<thinking><<</</thinking>x", true, "<<</", "x");
}

TEST(unterminated_block_stays_reasoning) {
        check("<thinking>never closed", true, "never closed", "");
        check("<thinking>ends in a partial </think", true, "ends in a partial </think", "");
        check("<thinking>", true, "", "");
}

TEST(second_block_is_text) {
        check("<thinking>one</thinking>\n\n<thinking>two</thinking>", true, "one", "<thinking>two</thinking>");
}

TEST(utf8_not_split) {
        static const char *const deltas[] = { "<thin", "king>", "日本", "語</th", "inking>", "\n\n", "é", "✓ done" };
        ThinkingSplitter s;
        Out o = {};

        thinking_splitter_init(&s, true, collect, &o);
        for (size_t i = 0; i < ELEMENTSOF(deltas); i++)
                ASSERT_OK(thinking_splitter_feed(&s, deltas[i], strlen(deltas[i])));
        ASSERT_OK(thinking_splitter_finish(&s));
        ASSERT_STREQ(o.thinking, "日本語");
        ASSERT_STREQ(o.text, "é✓ done");
        ASSERT_FALSE(o.utf8_split);
        ASSERT_TRUE(s.saw_thinking);
}

TEST(output_error_is_sticky) {
        ThinkingSplitter s;
        Out o = { .fail_at = 2 };

        thinking_splitter_init(&s, true, collect, &o);
        ASSERT_OK(thinking_splitter_feed(&s, "<thinking>abc<", 14));
        ASSERT_ERROR(thinking_splitter_feed(&s, "x", 1), ECANCELED);
        ASSERT_ERROR(thinking_splitter_feed(&s, "y", 1), ECANCELED);
        ASSERT_ERROR(thinking_splitter_finish(&s), ECANCELED);
        ASSERT_EQ(o.n_pieces, 1);
}

TEST(pieces_are_batched) {
        Out o;

        /* a long run of reasoning fed at once arrives as one piece, not byte by byte */
        split_with("<thinking>0123456789012345678901234567890123456789</thinking>\n\nabc", true, 0, &o);
        ASSERT_EQ(o.n_pieces, 2);
}
