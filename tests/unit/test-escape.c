/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tests of common/escape.c: what a client or server string looks like in a log line. */
#include "escape.h"
#include "tests.h"

TEST(plain_text_unchanged) {
        char b[64];
        ASSERT_STREQ(escape_for_log("/v1/chat/completions?x=1", b, sizeof b), "/v1/chat/completions?x=1");
        ASSERT_STREQ(escape_for_log("", b, sizeof b), "");
        ASSERT_STREQ(escape_for_log(NULL, b, sizeof b), "(null)");
        /* UTF-8 passes through. */
        ASSERT_STREQ(escape_for_log("caf\xc3\xa9 \xe2\x82\xac", b, sizeof b), "caf\xc3\xa9 \xe2\x82\xac");
}

TEST(newlines_and_controls_escaped) {
        char b[128];
        /* A forged second log line becomes part of the first. */
        ASSERT_STREQ(escape_for_log("/x\n<3>Fake error: pwned\r\n", b, sizeof b), "/x\\n<3>Fake error: pwned\\r\\n");
        ASSERT_STREQ(escape_for_log("a\tb\x1b[31mred\x7f", b, sizeof b), "a\\tb\\x1b[31mred\\x7f");
        ASSERT_STREQ(escape_for_log("back\\slash", b, sizeof b), "back\\\\slash");
        /* U+0085 NEL (a line break for some readers) and U+009B CSI in UTF-8. */
        ASSERT_STREQ(escape_for_log("a\xc2\x85" "b\xc2\x9b", b, sizeof b), "a\\xc2\\x85b\\xc2\\x9b");
        /* U+00A0 is not a control. */
        ASSERT_STREQ(escape_for_log("a\xc2\xa0" "b", b, sizeof b), "a\xc2\xa0" "b");
}

TEST(embedded_nul_with_length) {
        char b[64];
        ASSERT_STREQ(escape_mem_for_log("ab\0cd", 5, b, sizeof b), "ab\\x00cd");
        ASSERT_STREQ(escape_mem_for_log("abcdef", 3, b, sizeof b), "abc");
}

TEST(truncated_with_dots) {
        char b[8];
        /* Fits exactly: 7 characters and the NUL. */
        ASSERT_STREQ(escape_for_log("abcdefg", b, sizeof b), "abcdefg");
        ASSERT_STREQ(escape_for_log("abcdefgh", b, sizeof b), "abcd...");
        /* An escape is never cut in half. */
        ASSERT_STREQ(escape_for_log("abc\ndefgh", b, sizeof b), "abc...");
        ASSERT_STREQ(escape_for_log("ab\n", b, sizeof b), "ab\\n");
        /* Nor a UTF-8 character: "é" is two bytes. */
        ASSERT_STREQ(escape_for_log("abc\xc3\xa9xyz", b, sizeof b), "abc...");
        ASSERT_STREQ(escape_for_log("ab\xe2\x82\xacxyz", b, sizeof b), "ab...");

        char big[LOG_ESCAPE_MAX];
        char in[1000];
        memset(in, '\n', sizeof in - 1);
        in[sizeof in - 1] = 0;
        const char *o = escape_for_log(in, big, sizeof big);
        ASSERT_EQ(strlen(o), LOG_ESCAPE_MAX - 1);       /* 126 × "\\n" and "..." fill the buffer */
        ASSERT_TRUE(strncmp(o + strlen(o) - 3, "...", 3) == 0);
        ASSERT_TRUE(strchr(o, '\n') == NULL);
}

TEST(macro_in_a_format_call) {
        char out[600];
        snprintf(out, sizeof out, "'%s' '%s'", LOG_ESC("GET\n"), LOG_ESC_MEM("x\ry", 3));
        ASSERT_STREQ(out, "'GET\\n' 'x\\ry'");
}
