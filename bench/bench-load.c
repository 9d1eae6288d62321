/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* HTTP load generator for the benchmarks: libcurl multi on epoll, fixed concurrency, per-request latency. */

/* Keeps --concurrency POST requests in flight (keep-alive connections, reused) until --requests have
 * completed after --warmup unrecorded ones, and prints one line:
 *
 *   LABEL n=… ok=… failed=… p50_us=… p90_us=… p99_us=… max_us=… mean_us=… bytes=… total_s=… rps=… complete=…
 *
 * Latency is measured from handing the request to curl to the end of the response body, so the same
 * program measures a direct upstream and the proxy in front of it. A request fails when the transfer
 * fails, the status is not --expect-status, or the body is shorter than --min-bytes; any failure makes
 * the exit status 1.
 *
 * --max-seconds S: a time budget. After S seconds no new request is started; those in flight finish, and
 * the line reports the n that completed with complete=0 (else complete=1), so that a pathologically slow
 * target still yields numbers in bounded time; the warm-up then ends after a quarter of S at the latest.
 * The exit status stays 0 if nothing failed.
 *
 * --dump-latencies F: every measured latency (µs), one a line, in completion order.
 *
 * --hold-file F: for the open-streams test. Once every request in flight has received body bytes, F is
 * created; the program then keeps reading until the responses end (the fake upstream releases them).
 *
 * The loop is curl_multi_socket_action() on an epoll set, so a wake-up costs the load generator work for
 * the sockets that are ready, not for all of them: with curl_multi_perform() + curl_multi_poll() each
 * wake-up walked every transfer, and a load generator that spends more CPU per request the slower its
 * target answers takes that CPU from the target on a small machine (it did: 3x more per request against
 * kiro-proxyd than against the fake). */

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

typedef struct Slot {
        CURL *easy;
        uint64_t start_ns;
        uint64_t first_ns;      /* first body byte */
        uint64_t bytes;
        uint64_t index;         /* 0-based request number; < warmup: not recorded */
        bool got_data;
} Slot;

static unsigned n_with_data;
static int epoll_fd = -1;
static uint64_t timer_due_ns;   /* curl's one-shot timeout, absolute; 0: none */

static uint64_t now_ns(void);

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp) {
        CURLM *multi = userp;
        struct epoll_event ev = { .data.fd = fd };

        if (what == CURL_POLL_REMOVE) {
                (void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
                (void) curl_multi_assign(multi, fd, NULL);
                return 0;
        }
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
        if (epoll_ctl(epoll_fd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
                fprintf(stderr, "bench-load: epoll_ctl: %s\n", strerror(errno));
                return -1;
        }
        (void) curl_multi_assign(multi, fd, (void *) 1);
        return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
        timer_due_ns = timeout_ms < 0 ? 0 : now_ns() + (uint64_t) timeout_ms * 1000000ULL;
        return 0;
}

/* curl's timeout, if it is due: one-shot, curl sets the next one through on_timer(). */
static void run_timer_if_due(CURLM *multi, int *running) {
        if (timer_due_ns == 0 || now_ns() < timer_due_ns)
                return;
        timer_due_ns = 0;
        (void) curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, running);
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
        Slot *s = userdata;
        s->bytes += size * n;
        if (!s->got_data && size * n > 0) {
                s->got_data = true;
                s->first_ns = now_ns();
                n_with_data++;
        }
        return size * n;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array. */
static double percentile(const double *v, size_t n, double p) {
        if (n == 0)
                return 0;
        size_t rank = (size_t) (p / 100.0 * (double) n + 0.999999);
        if (rank < 1)
                rank = 1;
        if (rank > n)
                rank = n;
        return v[rank - 1];
}

static char *read_file(const char *path, size_t *ret_size) {
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        size_t a = 4096, n = 0;
        char *buf = malloc(a);
        while (buf) {
                size_t k = fread(buf + n, 1, a - n, f);
                n += k;
                if (k == 0)
                        break;
                if (n == a) {
                        char *b = realloc(buf, a *= 2);
                        if (!b) {
                                free(buf);
                                buf = NULL;
                        } else
                                buf = b;
                }
        }
        fclose(f);
        *ret_size = n;
        return buf;
}

static void help(void) {
        printf("bench-load --url URL [--body-file F] [--header 'H: v']... [--concurrency C] [--requests N]\n"
               "           [--warmup W] [--expect-status S] [--min-bytes B] [--hold-file F] [--timeout SEC]\n"
               "           [--label L] [--max-seconds S] [--dump-latencies F] [--ca-file F]\n");
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "url", required_argument, NULL, 'u' },
                { "body-file", required_argument, NULL, 'b' },
                { "header", required_argument, NULL, 'H' },
                { "concurrency", required_argument, NULL, 'c' },
                { "requests", required_argument, NULL, 'n' },
                { "warmup", required_argument, NULL, 'w' },
                { "expect-status", required_argument, NULL, 's' },
                { "min-bytes", required_argument, NULL, 'm' },
                { "hold-file", required_argument, NULL, 'f' },
                { "timeout", required_argument, NULL, 't' },
                { "label", required_argument, NULL, 'l' },
                { "max-seconds", required_argument, NULL, 'M' },
                { "dump-latencies", required_argument, NULL, 'D' },
                { "ca-file", required_argument, NULL, 'C' },
                {}
        };
        const char *ca_file = NULL;
        const char *url = NULL, *body_file = NULL, *hold_file = NULL, *label = "load", *dump_file = NULL;
        struct curl_slist *headers = NULL;
        unsigned concurrency = 32;
        uint64_t requests = 1000, warmup = 0, min_bytes = 0;
        long expect_status = 200;
        double timeout_sec = 120, max_seconds = 0;
        int opt;

        while ((opt = getopt_long(argc, argv, "hH:c:n:w:", options, NULL)) >= 0)
                switch (opt) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'u':
                        url = optarg;
                        break;
                case 'b':
                        body_file = optarg;
                        break;
                case 'H':
                        headers = curl_slist_append(headers, optarg);
                        break;
                case 'c':
                        concurrency = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'n':
                        requests = strtoull(optarg, NULL, 10);
                        break;
                case 'w':
                        warmup = strtoull(optarg, NULL, 10);
                        break;
                case 's':
                        expect_status = strtol(optarg, NULL, 10);
                        break;
                case 'm':
                        min_bytes = strtoull(optarg, NULL, 10);
                        break;
                case 'f':
                        hold_file = optarg;
                        break;
                case 't':
                        timeout_sec = strtod(optarg, NULL);
                        break;
                case 'l':
                        label = optarg;
                        break;
                case 'M':
                        max_seconds = strtod(optarg, NULL);
                        break;
                case 'C':
                        ca_file = optarg;
                        break;
                case 'D':
                        dump_file = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (!url || concurrency == 0 || requests == 0) {
                help();
                return EXIT_FAILURE;
        }

        size_t body_size = 0;
        char *body = NULL;
        if (body_file) {
                body = read_file(body_file, &body_size);
                if (!body) {
                        fprintf(stderr, "bench-load: cannot read '%s': %s\n", body_file, strerror(errno));
                        return EXIT_FAILURE;
                }
        }
        /* No "Expect: 100-continue" round trip, like kiro-proxyd's own upstream requests. */
        headers = curl_slist_append(headers, "Expect:");

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return EXIT_FAILURE;
        CURLM *multi = curl_multi_init();
        (void) curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) concurrency + 16);
        epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd < 0)
                return EXIT_FAILURE;
        (void) curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        (void) curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, multi);
        (void) curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);

        uint64_t total = warmup + requests;
        if (concurrency > total)
                concurrency = (unsigned) total;
        Slot *slots = calloc(concurrency, sizeof *slots);
        double *lat = calloc(requests, sizeof *lat), *ttfb = calloc(requests, sizeof *ttfb);
        if (!slots || !lat || !ttfb)
                return EXIT_FAILURE;
        uint64_t started = 0, done = 0, recorded = 0, failed = 0, bytes_recorded = 0;
        uint64_t t_first_recorded = 0;
        bool hold_signalled = false, out_of_time = false;

        for (unsigned i = 0; i < concurrency; i++) {
                Slot *s = slots + i;
                s->easy = curl_easy_init();
                if (!s->easy)
                        return EXIT_FAILURE;
                curl_easy_setopt(s->easy, CURLOPT_URL, url);
                curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(s->easy, CURLOPT_TCP_NODELAY, 1L);
                curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(s->easy, CURLOPT_POST, 1L);
                curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, body ? body : "");
                curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_size);
                curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_data);
                curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
                curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
                if (ca_file) {
                        /* The trust store is this file only: no CA directory scan per connection. */
                        curl_easy_setopt(s->easy, CURLOPT_CAINFO, ca_file);
                        curl_easy_setopt(s->easy, CURLOPT_CAPATH, NULL);
                        /* Like any HTTP/2 client that means to multiplex: wait for the connection being
                         * set up rather than open one per request. */
                        curl_easy_setopt(s->easy, CURLOPT_PIPEWAIT, 1L);
                }
                s->index = started++;
                s->start_ns = now_ns();
                curl_multi_add_handle(multi, s->easy);
        }

        uint64_t t0 = now_ns(), deadline = t0 + (uint64_t) (timeout_sec * 1e9);
        uint64_t budget_end = max_seconds > 0 ? t0 + (uint64_t) (max_seconds * 1e9) : UINT64_MAX;
        int running = 1;
        struct epoll_event events[64];
        int n_events = 0;
        (void) curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
        while (done < started) {
                for (int i = 0; i < n_events; i++) {
                        int flags = (events[i].events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                                    (events[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                                    (events[i].events & EPOLLERR ? CURL_CSELECT_ERR : 0);
                        if (curl_multi_socket_action(multi, events[i].data.fd, flags, &running) != CURLM_OK) {
                                fprintf(stderr, "bench-load: curl_multi_socket_action failed\n");
                                return EXIT_FAILURE;
                        }
                }
                run_timer_if_due(multi, &running);
                CURLMsg *m;
                int left;
                while ((m = curl_multi_info_read(multi, &left))) {
                        if (m->msg != CURLMSG_DONE)
                                continue;
                        Slot *s = NULL;
                        CURL *e = m->easy_handle;
                        CURLcode result = m->data.result;
                        uint64_t end = now_ns();
                        long status = 0;
                        curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **) &s);
                        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
                        curl_multi_remove_handle(multi, e);
                        done++;

                        bool ok = result == CURLE_OK && status == expect_status && s->bytes >= min_bytes;
                        if (!ok) {
                                if (failed < 5)
                                        fprintf(stderr, "bench-load: %s: request %llu failed: %s, HTTP %ld, %llu bytes\n",
                                                label, (unsigned long long) s->index, curl_easy_strerror(result),
                                                status, (unsigned long long) s->bytes);
                                failed++;
                        }
                        if (s->index >= warmup) {
                                if (recorded == 0)
                                        t_first_recorded = s->start_ns;
                                ttfb[recorded] = s->got_data ? (double) (s->first_ns - s->start_ns) / 1000.0 : 0;
                                lat[recorded++] = (double) (end - s->start_ns) / 1000.0;
                                bytes_recorded += s->bytes;
                        }
                        if (s->got_data)
                                n_with_data--;
                        if (!out_of_time && now_ns() > budget_end)
                                out_of_time = true;
                        /* The warm-up gets at most a quarter of the time budget. */
                        if (started < warmup && max_seconds > 0 && now_ns() > t0 + (uint64_t) (max_seconds * 0.25e9)) {
                                warmup = started;
                                total = warmup + requests;
                        }
                        if (started < total && !out_of_time) {
                                s->index = started++;
                                s->bytes = 0;
                                s->got_data = false;
                                s->start_ns = now_ns();
                                curl_multi_add_handle(multi, e);
                        }
                }
                if (hold_file && !hold_signalled && n_with_data == concurrency && done == 0) {
                        int fd = open(hold_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                        if (fd < 0) {
                                fprintf(stderr, "bench-load: cannot create '%s': %s\n", hold_file, strerror(errno));
                                return EXIT_FAILURE;
                        }
                        close(fd);
                        hold_signalled = true;
                }
                if (now_ns() > deadline) {
                        fprintf(stderr, "bench-load: %s: timed out after %.0fs with %llu of %llu requests done "
                                "(%u of %u in flight have data)\n", label, timeout_sec, (unsigned long long) done,
                                (unsigned long long) total, n_with_data, concurrency);
                        return EXIT_FAILURE;
                }
                if (done < started) {
                        /* Wait for sockets or curl's timeout (at most 100 ms, for the checks above). */
                        uint64_t t = now_ns();
                        int wait_ms = timer_due_ns == 0 ? 100 :
                                      timer_due_ns <= t ? 0 :
                                      (int) ((timer_due_ns - t + 999999) / 1000000 > 100 ? 100 :
                                             (timer_due_ns - t + 999999) / 1000000);
                        n_events = epoll_wait(epoll_fd, events, 64, wait_ms);
                        if (n_events < 0) {
                                if (errno != EINTR) {
                                        fprintf(stderr, "bench-load: epoll_wait: %s\n", strerror(errno));
                                        return EXIT_FAILURE;
                                }
                                n_events = 0;
                        }
                }
        }
        uint64_t t1 = now_ns();

        double sum = 0;
        for (uint64_t i = 0; i < recorded; i++)
                sum += lat[i];
        if (dump_file) {
                /* In completion order, one per line, in µs. */
                FILE *f = fopen(dump_file, "we");
                if (!f) {
                        fprintf(stderr, "bench-load: cannot write '%s': %s\n", dump_file, strerror(errno));
                        return EXIT_FAILURE;
                }
                for (uint64_t i = 0; i < recorded; i++)
                        fprintf(f, "%.1f\n", lat[i]);
                fclose(f);
        }
        qsort(lat, recorded, sizeof *lat, cmp_double);
        qsort(ttfb, recorded, sizeof *ttfb, cmp_double);
        double secs = (double) (t1 - (recorded ? t_first_recorded : t0)) / 1e9;
        printf("%s n=%llu ok=%llu failed=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f "
               "bytes=%llu total_s=%.3f rps=%.0f complete=%d ttfb_p50_us=%.1f ttfb_p90_us=%.1f ttfb_max_us=%.1f\n",
               label, (unsigned long long) recorded, (unsigned long long) (done - failed),
               (unsigned long long) failed, percentile(lat, recorded, 50), percentile(lat, recorded, 90),
               percentile(lat, recorded, 99), recorded ? lat[recorded - 1] : 0, recorded ? sum / (double) recorded : 0,
               (unsigned long long) (recorded ? bytes_recorded / recorded : 0), secs,
               secs > 0 ? (double) recorded / secs : 0, done == total, percentile(ttfb, recorded, 50),
               percentile(ttfb, recorded, 90), recorded ? ttfb[recorded - 1] : 0);

        for (unsigned i = 0; i < concurrency; i++)
                curl_easy_cleanup(slots[i].easy);
        curl_multi_cleanup(multi);
        close(epoll_fd);
        curl_slist_free_all(headers);
        curl_global_cleanup();
        free(slots);
        free(lat);
        free(ttfb);
        free(body);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
