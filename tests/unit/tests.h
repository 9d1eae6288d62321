/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A tiny unit-test harness: TEST() cases registered at start-up, value-printing asserts, exit 77 = skip. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

void test_register(const char *name, void (*func)(void));

#define TEST(n)                                                                 \
        static void test_##n(void);                                             \
        __attribute__((constructor)) static void test_register_##n(void) {      \
                test_register(#n, test_##n);                                    \
        }                                                                       \
        static void test_##n(void)

#define ASSERT_FAIL(fmt, ...)                                                                   \
        do {                                                                                    \
                fprintf(stderr, "%s:%d: %s: " fmt "\n", __FILE__, __LINE__, __func__, __VA_ARGS__); \
                abort();                                                                        \
        } while (0)

#define ASSERT_TRUE(e)                                                          \
        do {                                                                    \
                if (!(e))                                                       \
                        ASSERT_FAIL("assertion failed: %s", #e);                \
        } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))

#define ASSERT_EQ(a, b)                                                                         \
        do {                                                                                    \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                              \
                if (_a != _b)                                                                   \
                        ASSERT_FAIL("%s == %s: %jd != %jd", #a, #b, _a, _b);                    \
        } while (0)
#define ASSERT_OK(e)                                                                            \
        do {                                                                                    \
                intmax_t _r = (intmax_t) (e);                                                   \
                if (_r < 0)                                                                     \
                        ASSERT_FAIL("%s failed: %jd (%s)", #e, _r, strerror((int) -_r));        \
        } while (0)
#define ASSERT_ERROR(e, err)                                                                    \
        do {                                                                                    \
                intmax_t _r = (intmax_t) (e);                                                   \
                if (_r != -(intmax_t) (err))                                                    \
                        ASSERT_FAIL("%s: expected -%s, got %jd (%s)", #e, #err, _r,             \
                                    _r < 0 ? strerror((int) -_r) : "success");                  \
        } while (0)
#define ASSERT_STREQ(a, b)                                                                      \
        do {                                                                                    \
                const char *_a = (a), *_b = (b);                                                \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                          \
                        ASSERT_FAIL("%s == %s: '%s' != '%s'", #a, #b, _a ?: "(null)", _b ?: "(null)"); \
        } while (0)
#define ASSERT_NULL(a) ASSERT_TRUE((a) == NULL)
#define ASSERT_NOT_NULL(a) ASSERT_TRUE((a) != NULL)
