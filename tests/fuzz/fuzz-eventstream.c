/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the event-stream decoder and the Kiro stream layer on top of it (with the <thinking> splitter
 * behind the text events, as a renderer would chain them). The first input byte: bits 0-6 choose the
 * chunk size (0 = all at once), so that incremental decoding at odd boundaries is exercised too; bit 7
 * asks for the CRCs of the input's frames to be fixed up first, so that mutations reach the header,
 * JSON and event logic instead of dying at the CRC checks. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "kiro/kiro-eventstream.h"
#include "kiro/kiro-stream.h"
#include "chat/chat-thinking.h"

typedef struct State {
        ThinkingSplitter splitter;
        size_t bytes_out;
        bool ended;
} State;

static int on_split(bool thinking, const char *text, size_t size, void *userdata) {
        State *st = userdata;

        assert(size > 0);
        st->bytes_out += size;
        (void) thinking;
        (void) text;
        return 0;
}

static int on_event(const ChatEvent *ev, void *userdata) {
        State *st = userdata;

        assert(!st->ended);
        switch (ev->type) {
        case CHAT_EVENT_TEXT:
                assert(ev->text && ev->size > 0);
                return thinking_splitter_feed(&st->splitter, ev->text, ev->size);
        case CHAT_EVENT_TOOL_START:
        case CHAT_EVENT_TOOL_END:
                assert(ev->tool_id && ev->tool_name);
                break;
        case CHAT_EVENT_ERROR:
                assert(ev->error && ev->error->message);
                break;
        case CHAT_EVENT_END:
                assert(ev->usage);
                st->ended = true;
                break;
        default:
                break;
        }
        return 0;
}

static int on_frame(const EventStreamFrame *f, void *userdata) {
        size_t *n = userdata;

        assert(f->frame_size >= EVENTSTREAM_MIN_FRAME_SIZE);
        assert(f->payload_size <= f->frame_size - EVENTSTREAM_MIN_FRAME_SIZE);
        for (size_t i = 0; i < f->n_headers; i++)
                assert(f->headers[i].name && f->headers[i].name[0]);
        (*n)++;
        return 0;
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

/* Walks the frames as their length fields say and rewrites both CRCs of each complete one. */
static void fix_crcs(uint8_t *p, size_t size) {
        size_t off = 0;

        while (size - off >= EVENTSTREAM_MIN_FRAME_SIZE) {
                uint8_t *f = p + off;
                size_t total = (size_t) f[0] << 24 | (size_t) f[1] << 16 | (size_t) f[2] << 8 | f[3];

                if (total < EVENTSTREAM_MIN_FRAME_SIZE || total > size - off)
                        return;
                put_be32(f + 8, (uint32_t) crc32(0, f, 8));
                put_be32(f + total - 4, (uint32_t) crc32(0, f, (uInt) (total - 4)));
                off += total;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ uint8_t *copy = NULL;
        KiroStream *s = NULL;
        EventStreamDecoder *d = NULL;
        State st = {};
        size_t chunk, frames = 0;
        int r = 0;

        if (size < 1)
                return 0;
        chunk = (data[0] & 0x7F) ?: SIZE_MAX;
        if (data[0] & 0x80) {
                copy = malloc(size);
                if (!copy)
                        return 0;
                memcpy(copy, data, size);
                fix_crcs(copy + 1, size - 1);
                data = copy;
        }
        data++;
        size--;

        /* The bare decoder, with a small frame limit so that the size check is reachable. */
        if (eventstream_decoder_new(4096, on_frame, &frames, &d) < 0)
                return 0;
        for (size_t off = 0; off < size && r >= 0; off += chunk)
                r = eventstream_decoder_feed(d, data + off, MIN(chunk, size - off));
        if (r >= 0)
                (void) eventstream_decoder_finish(d);
        assert(eventstream_decoder_error_message(d));
        eventstream_decoder_free(d);

        thinking_splitter_init(&st.splitter, true, on_split, &st);
        if (kiro_stream_new(0, NULL, on_event, &st, &s) < 0)
                return 0;
        r = 0;
        for (size_t off = 0; off < size && r >= 0; off += chunk)
                r = kiro_stream_feed(s, data + off, MIN(chunk, size - off));
        if (r >= 0)
                r = kiro_stream_finish(s);
        /* Whatever happened, an END came (the handler never fails here). */
        assert(st.ended || r == -ENOMEM);
        assert(kiro_stream_truncated(s) == (r == -EPIPE || r == -EBADMSG || r == -E2BIG));
        (void) thinking_splitter_finish(&st.splitter);
        kiro_stream_free(s);
        return 0;
}
