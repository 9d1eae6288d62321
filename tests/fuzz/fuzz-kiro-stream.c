/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the Kiro stream layer (event-stream frames → internal events) with well-formed frames, so that
 * mutations reach the JSON and event logic rather than the CRC checks (fuzz-eventstream covers raw
 * bytes). The input is text: the first byte chooses the chunk size the encoded stream is fed in (0 = all
 * at once); then one frame per line:
 *   <event-type> <JSON payload>        an event frame ("assistantResponseEvent {"content":"hi"}")
 *   !exception <type> <JSON payload>   an exception frame
 *   !error <code> <message>            an error frame
 * The same text is also parsed as an HTTP error body (kiro_error_parse) with a status from the first
 * byte. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "kiro/kiro-eventstream.h"
#include "kiro/kiro-stream.h"

typedef struct State {
        bool ended;
        unsigned n_tools_open;
} State;

static int on_event(const ChatEvent *ev, void *userdata) {
        State *st = userdata;
        uint64_t in, out;

        assert(!st->ended);
        assert(ev->type >= 0 && ev->type < _CHAT_EVENT_TYPE_MAX);
        switch (ev->type) {
        case CHAT_EVENT_TEXT:
        case CHAT_EVENT_THINKING:
        case CHAT_EVENT_THINKING_SIGNATURE:
        case CHAT_EVENT_THINKING_REDACTED:
                assert(ev->text && ev->size > 0 && ev->text[ev->size] == 0);
                break;
        case CHAT_EVENT_TOOL_START:
                assert(ev->tool_id && ev->tool_name);
                st->n_tools_open++;
                break;
        case CHAT_EVENT_TOOL_ARGS:
                assert(ev->tool_id && ev->tool_name && ev->text);
                assert(st->n_tools_open > 0);
                break;
        case CHAT_EVENT_TOOL_END:
                assert(ev->tool_id && ev->tool_name);
                assert(st->n_tools_open > 0);
                st->n_tools_open--;
                break;
        case CHAT_EVENT_USAGE:
                assert(ev->usage);
                /* As the renderers count tokens, with a 200k context window. */
                chat_usage_resolve(ev->usage, 200000, 1000, &in, &out);
                break;
        case CHAT_EVENT_ERROR:
                assert(ev->error && ev->error->message);
                assert(chat_error_kind_to_string(ev->error->kind));
                break;
        case CHAT_EVENT_END:
                assert(ev->usage);
                chat_usage_resolve(ev->usage, 200000, 1000, &in, &out);
                if (ev->usage->has_context_usage && !ev->usage->has_tokens && ev->usage->context_usage_percent > 0)
                        assert(in <= 200000);
                assert(chat_stop_reason_to_string(ev->stop_reason));
                st->ended = true;
                break;
        default:
                break;
        }
        return 0;
}

/* Appends one encoded frame for a line; malformed lines (names too long for the encoder) are skipped. */
static int encode_line(const char *line, uint8_t **buf, size_t *size) {
        _cleanup_free_ uint8_t *f = NULL;
        _cleanup_free_ char *name = NULL;
        const char *sp, *rest;
        size_t fsize;
        int r;

        if (startswith(line, "!exception ")) {
                line += strlen("!exception ");
                sp = strchrnul(line, ' ');
                name = strndup(line, sp - line);
                rest = *sp ? sp + 1 : sp;
                if (!name)
                        return -ENOMEM;
                r = eventstream_encode_exception(name, rest, strlen(rest), &f, &fsize);
        } else if (startswith(line, "!error ")) {
                line += strlen("!error ");
                sp = strchrnul(line, ' ');
                name = strndup(line, sp - line);
                rest = *sp ? sp + 1 : sp;
                if (!name)
                        return -ENOMEM;
                r = eventstream_encode_error(name, rest, &f, &fsize);
        } else {
                sp = strchrnul(line, ' ');
                name = strndup(line, sp - line);
                rest = *sp ? sp + 1 : sp;
                if (!name)
                        return -ENOMEM;
                r = eventstream_encode_event(name, rest, strlen(rest), &f, &fsize);
        }
        if (r == -EINVAL)
                return 0;
        if (r < 0)
                return r;

        uint8_t *n = realloc(*buf, *size + fsize);
        if (!n)
                return -ENOMEM;
        memcpy(n + *size, f, fsize);
        *buf = n;
        *size += fsize;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *text = NULL;
        _cleanup_free_ uint8_t *stream = NULL;
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        ChatError e = {};
        State st = {};
        size_t chunk, stream_size = 0;
        int r;

        if (size < 1 || size > 256 * 1024)
                return 0;
        chunk = data[0] ?: SIZE_MAX;

        /* As an HTTP error body: a status from the first byte (0 = inside a 200 stream). */
        if (kiro_error_parse(data + 1, size - 1, NULL, data[0] < 0x80 ? 0 : 300 + data[0], &e) >= 0) {
                assert(e.message);
                assert(chat_error_kind_to_string(e.kind));
        }
        chat_error_done(&e);

        text = strndup((const char *) data + 1, size - 1);
        if (!text)
                return 0;
        for (char *line = text, *next; line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (encode_line(line, &stream, &stream_size) < 0)
                        return 0;
        }

        if (kiro_stream_new(0, NULL, on_event, &st, &s) < 0)
                return 0;
        r = 0;
        for (size_t off = 0; off < stream_size && r >= 0; off += chunk)
                r = kiro_stream_feed(s, stream + off, MIN(chunk, stream_size - off));
        if (r >= 0)
                r = kiro_stream_finish(s);
        /* Whatever the events said, one END came last (the handler never fails here). */
        assert(st.ended || r == -ENOMEM);
        return 0;
}
