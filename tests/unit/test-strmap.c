/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/strmap: the hash map behind the linear normalization rules; common/buf's UTF-8-safe JSON strings. */
#include "buf.h"
#include "macro.h"
#include "strmap.h"
#include "tests.h"

TEST(put_get_clear) {
        _cleanup_(strmap_done) StrMap m = STRMAP_INIT;
        static char keys[20000][16];

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                snprintf(keys[i], sizeof keys[i], "id%zu", i);
                ASSERT_EQ(strmap_put(&m, keys[i], keys[i]), 0);
        }
        ASSERT_EQ(m.n, ELEMENTSOF(keys));
        ASSERT_TRUE(m.allocated >= 2 * m.n);
        ASSERT_EQ(strmap_put(&m, "id7", (void *) "other"), 1);
        ASSERT_TRUE(strmap_get(&m, "id7") == keys[7]);
        ASSERT_TRUE(strmap_get(&m, "id19999") == keys[19999]);
        ASSERT_NULL(strmap_get(&m, "id20000"));
        ASSERT_FALSE(strmap_contains(&m, "ID7"));

        size_t allocated = m.allocated;
        strmap_clear(&m);
        ASSERT_EQ(m.n, 0);
        ASSERT_EQ(m.allocated, allocated);
        ASSERT_FALSE(strmap_contains(&m, "id7"));
        ASSERT_EQ(strmap_put(&m, "id7", (void *) "again"), 0);
        ASSERT_STREQ(strmap_get(&m, "id7"), "again");
        ASSERT_FALSE(strmap_contains(&m, "id8"));
}

TEST(ignore_case) {
        _cleanup_(strmap_done) StrMap m = STRMAP_INIT_IGNORE_CASE;

        ASSERT_EQ(strmap_put(&m, "Read_File", (void *) "a"), 0);
        ASSERT_TRUE(strmap_contains(&m, "read_file"));
        ASSERT_TRUE(strmap_contains(&m, "READ_FILE"));
        ASSERT_EQ(strmap_put(&m, "read_FILE", (void *) "b"), 1);
        ASSERT_STREQ(strmap_get(&m, "READ_file"), "a");
        ASSERT_FALSE(strmap_contains(&m, "read_files"));
}

TEST(zeroed_map_works) {
        StrMap m = {};

        ASSERT_FALSE(strmap_contains(&m, "x"));
        ASSERT_EQ(strmap_put(&m, "x", (void *) "1"), 0);
        ASSERT_TRUE(strmap_contains(&m, "x"));
        ASSERT_FALSE(strmap_contains(&m, "y"));
        strmap_done(&m);
}

static void json_utf8(const char *in, size_t n, const char *expected) {
        _cleanup_(buf_done) Buf b = {};
        ASSERT_OK(buf_put_json_string_utf8(&b, in, n));
        ASSERT_STREQ(b.data, expected);
}

TEST(json_string_utf8) {
        json_utf8("plain \"q\"\n", 10, "\"plain \\\"q\\\"\\n\"");
        json_utf8("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15, "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
        json_utf8("a\xff" "b", 3, "\"a\\ufffdb\"");
        json_utf8("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");                  /* overlong '/' */
        json_utf8("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");        /* a UTF-16 surrogate */
        json_utf8("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* past U+10FFFF */
        json_utf8("end\xe2\x82", 5, "\"end\\ufffd\\ufffd\"");             /* cut short */
        json_utf8("\x01\x7f", 2, "\"\\u0001\x7f\"");
        ASSERT_EQ(utf8_valid_span("ok\xe2\x82\xac\xff", 6), 5);
}
