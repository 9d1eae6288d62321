/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runs every registered TEST() case, or the ones named on the command line. */
#include "tests.h"

static TestCase cases[512];
static size_t n_cases;

void test_register(const char *name, void (*func)(void)) {
        if (n_cases >= sizeof cases / sizeof cases[0])
                abort();
        cases[n_cases++] = (TestCase) { name, func };
}

int main(int argc, char **argv) {
        size_t ran = 0;
        for (size_t i = 0; i < n_cases; i++) {
                bool want = argc < 2;
                for (int j = 1; j < argc; j++)
                        if (strcmp(argv[j], cases[i].name) == 0)
                                want = true;
                if (!want)
                        continue;
                fprintf(stderr, "/* %s */\n", cases[i].name);
                cases[i].func();
                ran++;
        }
        if (ran == 0) {
                fprintf(stderr, "no test ran\n");
                return 77;
        }
        fprintf(stderr, "%zu tests passed\n", ran);
        return 0;
}
