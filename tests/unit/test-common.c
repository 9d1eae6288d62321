/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* common/: number conversions that must not be undefined behaviour, and write_file_atomic_at()'s result. */
#include <fcntl.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "fileio.h"
#include "json-util.h"
#include "tests.h"
#include "time-util.h"

TEST(parse_sec_values) {
        uint64_t u;
        ASSERT_OK(parse_sec("30", &u));
        ASSERT_EQ(u, 30 * USEC_PER_SEC);
        ASSERT_OK(parse_sec("1.5s", &u));
        ASSERT_EQ(u, 1500 * USEC_PER_MSEC);
        ASSERT_OK(parse_sec("5min", &u));
        ASSERT_EQ(u, 300 * USEC_PER_SEC);
        ASSERT_OK(parse_sec("1e3ms", &u));
        ASSERT_EQ(u, USEC_PER_SEC);
        ASSERT_OK(parse_sec("infinity", &u));
        ASSERT_EQ(u, USEC_INFINITY);
        ASSERT_OK(parse_sec("", &u));
        ASSERT_EQ(u, USEC_INFINITY);
        /* The largest that fits is not infinity. */
        ASSERT_OK(parse_sec("213503982d", &u));
        ASSERT_EQ(u, UINT64_C(213503982) * 86400 * USEC_PER_SEC);
}

TEST(parse_sec_out_of_range_is_refused) {
        /* Each of these used to be cast from double to uint64_t out of range (float-cast-overflow). */
        uint64_t u = 42;
        ASSERT_ERROR(parse_sec("1e30", &u), ERANGE);
        ASSERT_ERROR(parse_sec("1e30s", &u), ERANGE);
        ASSERT_ERROR(parse_sec("1e400", &u), ERANGE);
        ASSERT_ERROR(parse_sec("18446744073709552s", &u), ERANGE);
        ASSERT_ERROR(parse_sec("213503983d", &u), ERANGE);
        ASSERT_ERROR(parse_sec("inf", &u), EINVAL);
        ASSERT_ERROR(parse_sec("infs", &u), EINVAL);
        ASSERT_ERROR(parse_sec("nan", &u), EINVAL);
        ASSERT_ERROR(parse_sec("NaN", &u), EINVAL);
        ASSERT_ERROR(parse_sec("-1", &u), EINVAL);
        ASSERT_ERROR(parse_sec("+1", &u), EINVAL);
        ASSERT_ERROR(parse_sec("0x10", &u), EINVAL);
        ASSERT_ERROR(parse_sec("10x", &u), EINVAL);
        ASSERT_EQ(u, 42);
}

TEST(usec_map_clock_values) {
        /* 30 s ahead on one clock is 30 s ahead on the other, whatever their origins. */
        ASSERT_EQ(usec_map_clock(130 * USEC_PER_SEC, 100 * USEC_PER_SEC, 5000 * USEC_PER_SEC),
                  5030 * USEC_PER_SEC);
        /* Passed or now: now on the other clock. */
        ASSERT_EQ(usec_map_clock(90 * USEC_PER_SEC, 100 * USEC_PER_SEC, 5000 * USEC_PER_SEC), 5000 * USEC_PER_SEC);
        ASSERT_EQ(usec_map_clock(100 * USEC_PER_SEC, 100 * USEC_PER_SEC, 5000 * USEC_PER_SEC), 5000 * USEC_PER_SEC);
        /* No overflow past infinity. */
        ASSERT_EQ(usec_map_clock(USEC_INFINITY, 1, 5000 * USEC_PER_SEC), USEC_INFINITY);
        ASSERT_EQ(usec_map_clock(USEC_INFINITY - 1, 0, 2), USEC_INFINITY);
}

TEST(map_clock_boottime_to_realtime) {
        /* A CLOCK_BOOTTIME deadline 20 s ahead shows as a CLOCK_REALTIME time 20 s ahead (the retry after
         * a failed refresh, kiro-authd's NextRefreshAt), within the time the calls take. */
        usec_t r0 = now(CLOCK_REALTIME);
        usec_t t = map_clock(now(CLOCK_BOOTTIME) + 20 * USEC_PER_SEC, CLOCK_BOOTTIME, CLOCK_REALTIME);
        usec_t r1 = now(CLOCK_REALTIME);
        ASSERT_TRUE(t >= r0 + 20 * USEC_PER_SEC - USEC_PER_MSEC);
        ASSERT_TRUE(t <= r1 + 20 * USEC_PER_SEC + USEC_PER_MSEC);
        /* A passed deadline is now. */
        t = map_clock(1, CLOCK_BOOTTIME, CLOCK_REALTIME);
        ASSERT_TRUE(t >= r0 && t <= now(CLOCK_REALTIME));
}

TEST(json_get_int64_range) {
        static const char *const bad[] = { "1e30", "-1e30", "9223372036854775808.0", "1e19", "1.5" };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                char doc[64];
                _cleanup_json_ json_object *o = NULL;
                int64_t v = 7;
                snprintf(doc, sizeof doc, "{\"n\":%s}", bad[i]);
                ASSERT_OK(json_parse_bounded(doc, strlen(doc), 4, &o, NULL));
                if (json_get_int64(o, "n", &v) != -EMEDIUMTYPE)
                        ASSERT_FAIL("'%s' should be refused", bad[i]);
                ASSERT_EQ(v, 7);
        }
        /* NaN and infinity cannot be written in JSON; set them directly. */
        _cleanup_json_ json_object *o = json_object_new_object();
        int64_t v = 7;
        json_object_object_add(o, "nan", json_object_new_double(NAN));
        json_object_object_add(o, "inf", json_object_new_double(INFINITY));
        ASSERT_ERROR(json_get_int64(o, "nan", &v), EMEDIUMTYPE);
        ASSERT_ERROR(json_get_int64(o, "inf", &v), EMEDIUMTYPE);
        json_object_object_add(o, "ok", json_object_new_double(-9223372036854775808.0));
        ASSERT_OK(json_get_int64(o, "ok", &v));
        ASSERT_EQ(v, INT64_MIN);
        json_object_object_add(o, "two", json_object_new_double(2.0));
        ASSERT_OK(json_get_int64(o, "two", &v));
        ASSERT_EQ(v, 2);
}

static char *read_at(int dirfd, const char *name) {
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        char *s = NULL;
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(read_full_fd(fd, 4096, &s, NULL));
        close(fd);
        return s;
}

static unsigned count_entries(const char *path) {
        DIR *d = opendir(path);
        unsigned n = 0;
        struct dirent *de;
        ASSERT_NOT_NULL(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

TEST(write_file_atomic_at_results) {
        char dir[] = "/tmp/test-common-XXXXXX";
        ASSERT_NOT_NULL(mkdtemp(dir));
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(dfd >= 0);
        ASSERT_EQ(write_file_atomic_at(dfd, "f", "one", 3, 0600), 0);
        char *s = read_at(dfd, "f");
        ASSERT_STREQ(s, "one");
        free(s);

        /* The directory cannot be synced (an O_PATH fd refuses fsync()): the rename happened, and the
         * result says so (1) instead of a failure that would read as "unchanged". */
        int pfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_TRUE(pfd >= 0);
        ASSERT_EQ(write_file_atomic_at(pfd, "f", "two", 3, 0600), 1);
        s = read_at(dfd, "f");
        ASSERT_STREQ(s, "two");
        free(s);
        ASSERT_EQ(count_entries(dir), 1); /* no temporary file left */

        /* Failing before the rename: untouched, nothing left behind. */
        ASSERT_TRUE(mkdirat(dfd, "d", 0700) == 0);
        ASSERT_TRUE(write_file_atomic_at(dfd, "d", "three", 5, 0600) < 0);
        s = read_at(dfd, "f");
        ASSERT_STREQ(s, "two");
        free(s);
        ASSERT_EQ(count_entries(dir), 2);

        ASSERT_TRUE(unlinkat(dfd, "f", 0) == 0);
        ASSERT_TRUE(unlinkat(dfd, "d", AT_REMOVEDIR) == 0);
        close(pfd);
        close(dfd);
        ASSERT_TRUE(rmdir(dir) == 0);
}
