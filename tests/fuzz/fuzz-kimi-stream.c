/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes Kimi's SSE parser: any bytes, fed in any chunking, end with exactly one END (after an ERROR when
 * the stream was broken or cut), tool events are well nested, and nothing comes after END. */
#include <assert.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "kimi/kimi-stream.h"

typedef struct Out {
        unsigned ends, errors;
        bool tool_open;
        unsigned tools;
} Out;

static int collect(const ChatEvent *ev, void *userdata) {
        Out *o = userdata;

        assert(o->ends == 0);
        switch (ev->type) {
        case CHAT_EVENT_TOOL_START:
                assert(!o->tool_open);
                assert(ev->tool_index == o->tools);
                o->tool_open = true;
                o->tools++;
                break;
        case CHAT_EVENT_TOOL_ARGS:
        case CHAT_EVENT_TOOL_END:
                assert(o->tool_open);
                assert(ev->tool_index + 1 == o->tools);
                if (ev->type == CHAT_EVENT_TOOL_END)
                        o->tool_open = false;
                break;
        case CHAT_EVENT_ERROR:
                assert(ev->error && ev->error->message);
                o->errors++;
                break;
        case CHAT_EVENT_END:
                assert(!o->tool_open || ev->stop_reason == CHAT_STOP_REASON_ERROR);
                assert((o->errors > 0) == (ev->stop_reason == CHAT_STOP_REASON_ERROR));
                o->ends++;
                break;
        default:
                break;
        }
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KimiStream *s = NULL;
        Out o = {};
        size_t chunk;

        if (size < 1)
                return 0;
        chunk = data[0] ?: SIZE_MAX;
        data++;
        size--;
        assert(kimi_stream_new(4096, collect, &o, &s) >= 0);
        for (size_t i = 0; i < size; i += chunk)
                if (kimi_stream_feed(s, data + i, MIN(chunk, size - i)) < 0)
                        break;
        (void) kimi_stream_finish(s);
        assert(o.ends == 1);
        kimi_stream_free(s);
        return 0;
}
