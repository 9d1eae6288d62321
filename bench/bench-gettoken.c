/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GetToken round trips to kiro-authd over the bus, synchronous, one after the other: p50/p90/p99. */

/* Prints two lines, one for org.kirod.Auth1.Manager.GetToken and one for org.freedesktop.DBus.Peer.Ping
 * to the same peer: Ping is answered inside sd-bus without running any kiro-authd code, so it is the
 * floor (two hops through dbus-daemon) that GetToken's number should be read against.
 *
 *   gettoken n=… p50_us=… p90_us=… p99_us=… max_us=… mean_us=…
 *   ping n=… p50_us=… …
 *
 * The session bus ($DBUS_SESSION_BUS_ADDRESS) by default, --system for the system bus. */

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <time.h>

#define BUS_NAME "org.kirod.Auth1"
#define MANAGER_PATH "/org/kirod/Auth1"
#define MANAGER_IFACE "org.kirod.Auth1.Manager"

static const char *strna_(const char *s) {
        return s ? s : "n/a";
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double p) {
        size_t rank = (size_t) (p / 100.0 * (double) n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}

static void report(const char *label, double *v, size_t n) {
        double sum = 0;
        for (size_t i = 0; i < n; i++)
                sum += v[i];
        qsort(v, n, sizeof *v, cmp_double);
        printf("%s n=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n", label, n,
               percentile(v, n, 50), percentile(v, n, 90), percentile(v, n, 99), v[n - 1], sum / (double) n);
}

static int call_get_token(sd_bus *bus, const char *provider, const char *credential) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        const char *id, *token;
        uint64_t expires;
        int r;

        r = sd_bus_call_method(bus, BUS_NAME, MANAGER_PATH, MANAGER_IFACE, "GetToken", &error, &reply, "sst",
                               provider, credential, (uint64_t) 0);
        if (r < 0) {
                fprintf(stderr, "bench-gettoken: GetToken failed: %s: %s\n", strna_(error.name), strna_(error.message));
                sd_bus_error_free(&error);
                return r;
        }
        /* Read the reply like a client would. */
        r = sd_bus_message_read(reply, "sst", &id, &token, &expires);
        if (r >= 0)
                r = sd_bus_message_skip(reply, "a{sv}");
        sd_bus_message_unref(reply);
        if (r < 0)
                fprintf(stderr, "bench-gettoken: bad GetToken reply: %s\n", strerror(-r));
        return r;
}

static int call_ping(sd_bus *bus) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sd_bus_call_method(bus, BUS_NAME, MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping", &error, NULL, "");
        if (r < 0) {
                fprintf(stderr, "bench-gettoken: Ping failed: %s\n", strna_(error.message));
                sd_bus_error_free(&error);
        }
        return r;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "count", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "provider", required_argument, NULL, 'p' },
                { "credential", required_argument, NULL, 'c' },
                { "system", no_argument, NULL, 's' },
                {}
        };
        const char *provider = "kiro", *credential = "";
        size_t count = 10000, warmup = 500;
        bool system_bus = false;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        printf("bench-gettoken [--count N] [--warmup N] [--provider P] [--credential ID] [--system]\n");
                        return EXIT_SUCCESS;
                case 'n':
                        count = strtoul(optarg, NULL, 10);
                        break;
                case 'w':
                        warmup = strtoul(optarg, NULL, 10);
                        break;
                case 'p':
                        provider = optarg;
                        break;
                case 'c':
                        credential = optarg;
                        break;
                case 's':
                        system_bus = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (count == 0)
                return EXIT_FAILURE;

        sd_bus *bus = NULL;
        r = system_bus ? sd_bus_open_system(&bus) : sd_bus_open_user(&bus);
        if (r < 0) {
                fprintf(stderr, "bench-gettoken: cannot connect to the bus: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        double *v = calloc(count, sizeof *v);
        if (!v)
                return EXIT_FAILURE;

        for (size_t i = 0; i < warmup; i++)
                if (call_get_token(bus, provider, credential) < 0 || call_ping(bus) < 0)
                        return EXIT_FAILURE;

        for (size_t i = 0; i < count; i++) {
                uint64_t t = now_ns();
                if (call_get_token(bus, provider, credential) < 0)
                        return EXIT_FAILURE;
                v[i] = (double) (now_ns() - t) / 1000.0;
        }
        report("gettoken", v, count);

        for (size_t i = 0; i < count; i++) {
                uint64_t t = now_ns();
                if (call_ping(bus) < 0)
                        return EXIT_FAILURE;
                v[i] = (double) (now_ns() - t) / 1000.0;
        }
        report("ping", v, count);

        free(v);
        sd_bus_flush_close_unref(bus);
        return EXIT_SUCCESS;
}
