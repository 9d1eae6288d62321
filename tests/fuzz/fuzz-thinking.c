/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the <thinking> splitter: whatever goes in comes out, in order, minus only the tags and the
 * white space and newlines the rules drop; pieces never split a UTF-8 sequence. */
#include <assert.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "chat/chat-thinking.h"

typedef struct Out {
        size_t bytes;
        bool text_seen;
} Out;

static int collect(bool thinking, const char *p, size_t n, void *userdata) {
        Out *o = userdata;

        assert(n > 0);
        /* reasoning never follows answer text */
        assert(!(thinking && o->text_seen));
        if (!thinking)
                o->text_seen = true;
        o->bytes += n;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ThinkingSplitter s;
        Out o = {};
        size_t chunk;
        bool enabled;

        if (size < 1)
                return 0;
        enabled = data[0] & 1;
        chunk = (data[0] >> 1) ?: SIZE_MAX;
        data++;
        size--;

        thinking_splitter_init(&s, enabled, collect, &o);
        for (size_t off = 0; off < size; off += chunk)
                assert(thinking_splitter_feed(&s, (const char *) data + off, MIN(chunk, size - off)) == 0);
        assert(thinking_splitter_finish(&s) == 0);

        if (!enabled)
                assert(o.bytes == size);
        else
                /* at most the two tags, 64 leading blanks, one and two newlines are dropped */
                assert(o.bytes <= size && o.bytes + 10 + 11 + THINKING_LEADING_SPACE_MAX + 3 >= size);
        return 0;
}
