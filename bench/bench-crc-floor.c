/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What checking a 1 MiB streamed answer costs before anything is relayed: context for the relay target. */

/* Builds the fake's large answer (--large-bytes of text in assistantResponseEvent frames of --chunk-bytes,
 * with kiro-proxyd's encoder) and times, best of --runs, in this process:
 *
 *   crc     zlib's crc32() over every frame (the message CRC the decoder checks; the prelude CRC is extra)
 *   decode  kiro-proxyd's event-stream decoder over the whole answer, frames handed to a no-op handler
 *   copy    memcpy() of the whole answer
 *
 *   crc-floor bytes=… frames=… crc_us=… decode_us=… copy_us=…
 *
 * A relay has to do at least "decode" (plus reading and writing the bytes) for every answer; the direct
 * baseline of the relay target is a socket copy of the precomputed answer. */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "kiro/kiro-eventstream.h"

static double now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

static int on_frame(const EventStreamFrame *frame, void *userdata) {
        (*(size_t *) userdata)++;
        return 0;
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "large-bytes", required_argument, NULL, 'l' },
                { "chunk-bytes", required_argument, NULL, 'c' },
                { "runs", required_argument, NULL, 'r' },
                {}
        };
        size_t large = 1024 * 1024, chunk = 1000, runs = 50, n_frames = 0, size = 0, alloc = 0;
        size_t *offsets = NULL;
        uint8_t *all = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'l': large = strtoul(optarg, NULL, 10); break;
                case 'c': chunk = strtoul(optarg, NULL, 10); break;
                case 'r': runs = strtoul(optarg, NULL, 10); break;
                default: return EXIT_FAILURE;
                }
        if (chunk == 0 || runs == 0)
                return EXIT_FAILURE;

        char *json = malloc(chunk + 32);
        offsets = calloc(large / chunk + 2, sizeof *offsets);
        if (!json || !offsets)
                return EXIT_FAILURE;
        for (size_t done = 0; done < large; done += chunk) {
                size_t n = large - done < chunk ? large - done : chunk;
                uint8_t *frame = NULL;
                size_t fsize = 0;

                memcpy(json, "{\"content\":\"", 12);
                for (size_t i = 0; i < n; i++)
                        json[12 + i] = (char) ('a' + (done + i) % 26);
                memcpy(json + 12 + n, "\"}", 3);
                if (eventstream_encode_event("assistantResponseEvent", json, 12 + n + 2, &frame, &fsize) < 0)
                        return EXIT_FAILURE;
                if (size + fsize > alloc) {
                        alloc = (size + fsize) * 2;
                        all = realloc(all, alloc);
                        if (!all)
                                return EXIT_FAILURE;
                }
                memcpy(all + size, frame, fsize);
                offsets[n_frames++] = size;
                size += fsize;
                free(frame);
        }
        offsets[n_frames] = size;

        uint8_t *copy = malloc(size);
        if (!copy)
                return EXIT_FAILURE;
        double best_crc = 1e18, best_decode = 1e18, best_copy = 1e18;
        unsigned long sink = 0;
        for (size_t r = 0; r < runs; r++) {
                double t = now_us();
                for (size_t i = 0; i < n_frames; i++) {
                        size_t len = offsets[i + 1] - offsets[i];
                        sink ^= crc32(0, all + offsets[i], (uInt) (len - 4));
                }
                t = now_us() - t;
                best_crc = t < best_crc ? t : best_crc;

                EventStreamDecoder *d = NULL;
                size_t seen = 0;
                if (eventstream_decoder_new(64 * 1024, on_frame, &seen, &d) < 0)
                        return EXIT_FAILURE;
                t = now_us();
                if (eventstream_decoder_feed(d, all, size) < 0 || eventstream_decoder_finish(d) < 0)
                        return EXIT_FAILURE;
                t = now_us() - t;
                eventstream_decoder_free(d);
                if (seen != n_frames)
                        return EXIT_FAILURE;
                best_decode = t < best_decode ? t : best_decode;

                t = now_us();
                memcpy(copy, all, size);
                sink ^= copy[r % size];
                t = now_us() - t;
                best_copy = t < best_copy ? t : best_copy;
        }
        printf("crc-floor bytes=%zu frames=%zu crc_us=%.1f decode_us=%.1f copy_us=%.1f sink=%lu\n", size, n_frames,
               best_crc, best_decode, best_copy, sink & 1);
        free(copy);
        free(all);
        free(offsets);
        free(json);
        return EXIT_SUCCESS;
}
