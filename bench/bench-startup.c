/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Start-up time to READY=1 (sd_notify) and resident memory of a daemon, over repeated starts. */

/* bench-startup [--runs N] [--settle-ms MS] [--expect-credentials N] [--log FILE] [--system] -- CMD ARGS...
 *
 * For each run: wait until org.kirod.Auth1 has no owner on the bus, bind a datagram socket, start CMD
 * with NOTIFY_SOCKET pointing at it, and take the time from just before fork() to the arrival of the
 * datagram carrying READY=1. Then, --settle-ms later (default 100), read VmRSS and VmHWM from
 * /proc/PID/status; with --expect-credentials, check the CredentialCount property (after reading the
 * memory figures, so the call does not count); then SIGTERM and expect exit status 0. Prints:
 *
 *   startup n=… p50_ms=… min_ms=… max_ms=…
 *   rss n=… p50_kib=… max_kib=… hwm_max_kib=… anon_p50_kib=…
 *
 * (anon: RssAnon, the process's own memory without the pages of mapped files and libraries.)
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <time.h>
#include <unistd.h>

#define BUS_NAME "org.kirod.Auth1"

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* The median (mean of the middle two for an even count). */
static double median(double *v, size_t n) {
        qsort(v, n, sizeof *v, cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* "VmRSS:" or "VmHWM:" of a process in KiB, or -1. */
static long proc_status_kib(pid_t pid, const char *key) {
        char path[64], line[256];
        long v = -1;
        snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t kl = strlen(key);
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, kl) == 0) {
                        v = strtol(line + kl, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static int name_has_owner(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        int b = 0;
        int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "NameHasOwner", &error, &reply, "s", BUS_NAME);
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "b", &b);
        sd_bus_message_unref(reply);
        return r < 0 ? r : b;
}

static bool wait_name_free(sd_bus *bus, unsigned timeout_ms) {
        for (unsigned waited = 0; waited <= timeout_ms; waited += 10) {
                if (name_has_owner(bus) == 0)
                        return true;
                sleep_ms(10);
        }
        return false;
}

static int stop_child(pid_t pid) {
        int status = 0;
        (void) kill(pid, SIGTERM);
        for (unsigned i = 0; i < 1000; i++) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                sleep_ms(10);
        }
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, &status, 0);
        return -1;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "runs", required_argument, NULL, 'n' },
                { "settle-ms", required_argument, NULL, 's' },
                { "expect-credentials", required_argument, NULL, 'e' },
                { "log", required_argument, NULL, 'l' },
                { "system", no_argument, NULL, 'S' },
                {}
        };
        unsigned runs = 20, settle_ms = 100;
        long expect = -1;
        const char *log_path = "/dev/null";
        bool system_bus = false;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        printf("bench-startup [--runs N] [--settle-ms MS] [--expect-credentials N] [--log FILE] "
                               "[--system] -- CMD ARGS...\n");
                        return EXIT_SUCCESS;
                case 'n':
                        runs = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        settle_ms = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'e':
                        expect = strtol(optarg, NULL, 10);
                        break;
                case 'l':
                        log_path = optarg;
                        break;
                case 'S':
                        system_bus = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind >= argc || runs == 0) {
                fprintf(stderr, "bench-startup: no command given\n");
                return EXIT_FAILURE;
        }
        char **cmd = argv + optind;

        sd_bus *bus = NULL;
        r = system_bus ? sd_bus_open_system(&bus) : sd_bus_open_user(&bus);
        if (r < 0) {
                fprintf(stderr, "bench-startup: cannot connect to the bus: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }

        char dir[] = "/tmp/bench-startup.XXXXXX";
        if (!mkdtemp(dir)) {
                perror("bench-startup: mkdtemp");
                return EXIT_FAILURE;
        }
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", dir);
        int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (nfd < 0 || bind(nfd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                perror("bench-startup: notify socket");
                return EXIT_FAILURE;
        }

        double *ms = calloc(runs, sizeof *ms), *rss = calloc(runs, sizeof *rss), *anon = calloc(runs, sizeof *anon);
        long hwm_max = 0;
        int ret = EXIT_SUCCESS;
        if (!ms || !rss || !anon)
                return EXIT_FAILURE;

        for (unsigned i = 0; i < runs; i++) {
                if (!wait_name_free(bus, 5000)) {
                        fprintf(stderr, "bench-startup: %s still has an owner\n", BUS_NAME);
                        ret = EXIT_FAILURE;
                        break;
                }
                int logfd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (logfd < 0) {
                        perror("bench-startup: log");
                        return EXIT_FAILURE;
                }

                uint64_t t0 = now_ns();
                pid_t pid = fork();
                if (pid < 0) {
                        perror("bench-startup: fork");
                        return EXIT_FAILURE;
                }
                if (pid == 0) {
                        (void) dup2(logfd, STDOUT_FILENO);
                        (void) dup2(logfd, STDERR_FILENO);
                        (void) setenv("NOTIFY_SOCKET", sa.sun_path, 1);
                        execvp(cmd[0], cmd);
                        _exit(127);
                }
                close(logfd);

                bool ready = false;
                uint64_t t1 = 0;
                while (!ready) {
                        struct pollfd p = { .fd = nfd, .events = POLLIN };
                        int k = poll(&p, 1, 100);
                        if (k > 0) {
                                char buf[4096];
                                ssize_t n = recv(nfd, buf, sizeof buf - 1, 0);
                                if (n > 0) {
                                        buf[n] = 0;
                                        /* READY=1 as a whole line of the message. */
                                        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
                                                if (strcmp(line, "READY=1") == 0) {
                                                        t1 = now_ns();
                                                        ready = true;
                                                }
                                }
                        }
                        if (!ready && (waitpid(pid, NULL, WNOHANG) == pid || now_ns() - t0 > 10000000000ULL)) {
                                fprintf(stderr, "bench-startup: run %u: no READY=1 (see %s)\n", i + 1, log_path);
                                (void) stop_child(pid);
                                return EXIT_FAILURE;
                        }
                }
                ms[i] = (double) (t1 - t0) / 1e6;
                sleep_ms(settle_ms);
                rss[i] = (double) proc_status_kib(pid, "VmRSS:");
                anon[i] = (double) proc_status_kib(pid, "RssAnon:");
                long hwm = proc_status_kib(pid, "VmHWM:");
                if (hwm > hwm_max)
                        hwm_max = hwm;

                if (expect >= 0) {
                        sd_bus_error error = SD_BUS_ERROR_NULL;
                        uint32_t n = 0;
                        r = sd_bus_get_property_trivial(bus, BUS_NAME, "/org/kirod/Auth1", "org.kirod.Auth1.Manager",
                                                        "CredentialCount", &error, 'u', &n);
                        sd_bus_error_free(&error);
                        if (r < 0 || n != (uint32_t) expect) {
                                fprintf(stderr, "bench-startup: run %u: CredentialCount is %u, expected %ld (%s)\n",
                                        i + 1, n, expect, r < 0 ? strerror(-r) : "ok");
                                ret = EXIT_FAILURE;
                        }
                }
                int st = stop_child(pid);
                if (st != 0) {
                        fprintf(stderr, "bench-startup: run %u: exit status %d after SIGTERM\n", i + 1, st);
                        ret = EXIT_FAILURE;
                }
                if (ret != EXIT_SUCCESS)
                        break;
        }

        if (ret == EXIT_SUCCESS) {
                double lo = ms[0], hi = ms[0], rmax = 0;
                for (unsigned i = 0; i < runs; i++) {
                        lo = ms[i] < lo ? ms[i] : lo;
                        hi = ms[i] > hi ? ms[i] : hi;
                        rmax = rss[i] > rmax ? rss[i] : rmax;
                }
                printf("startup n=%u p50_ms=%.2f min_ms=%.2f max_ms=%.2f\n", runs, median(ms, runs), lo, hi);
                printf("rss n=%u p50_kib=%.0f max_kib=%.0f hwm_max_kib=%ld anon_p50_kib=%.0f\n", runs, median(rss, runs),
                       rmax, hwm_max, median(anon, runs));
        }
        (void) unlink(sa.sun_path);
        (void) rmdir(dir);
        free(ms);
        free(rss);
        free(anon);
        sd_bus_flush_close_unref(bus);
        return ret;
}
