/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs a fuzz target over files (or every file in directories) without libFuzzer: the seed corpus as a
 * regression test, and a way to replay a crash with a normal build. */
#include <dirent.h>
#include <sys/stat.h>

#include "fileio.h"
#include "fuzz.h"

#define INPUT_MAX (64U * 1024U * 1024U)

static int run_file(const char *path) {
        _cleanup_free_ char *buf = NULL;
        size_t size;
        int r;

        r = read_full_file(path, INPUT_MAX, &buf, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        fprintf(stderr, "%s (%zu bytes)\n", path, size);
        (void) LLVMFuzzerTestOneInput((const uint8_t *) buf, size);
        return 0;
}

static int run_path(const char *path, size_t *n) {
        struct stat st;
        DIR *d;
        int r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %m\n", path);
                return -errno;
        }
        if (!S_ISDIR(st.st_mode)) {
                (*n)++;
                return run_file(path);
        }
        d = opendir(path);
        if (!d)
                return -errno;
        for (struct dirent *de; (de = readdir(d));) {
                _cleanup_free_ char *p = NULL;

                if (de->d_name[0] == '.')
                        continue;
                if (asprintf(&p, "%s/%s", path, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = run_path(p, n);
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

int main(int argc, char **argv) {
        size_t n = 0;

        for (int i = 1; i < argc; i++)
                if (run_path(argv[i], &n) < 0)
                        return EXIT_FAILURE;
        if (n == 0) {
                fprintf(stderr, "no input\n");
                return 77;
        }
        fprintf(stderr, "%zu inputs ran\n", n);
        return EXIT_SUCCESS;
}
