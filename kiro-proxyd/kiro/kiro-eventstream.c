/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AWS event-stream framing: incremental, CRC-checked, bounded decoder, and the matching encoder. */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <zlib.h>

#include "kiro/kiro-eventstream.h"

/* Buffers that grew beyond this for one big frame are given back once that frame is done. */
#define BUFFER_KEEP_MAX (256U * 1024U)

struct EventStreamDecoder {
        size_t max_frame_size;
        eventstream_frame_handler_t handler;
        void *userdata;

        /* The frame being assembled when it arrived in pieces. */
        uint8_t *buf;
        size_t buf_allocated;
        size_t fill;
        size_t frame_size;      /* total_length once the prelude is validated, else 0 */

        /* Scratch space for the decoded headers of the current frame. */
        EventStreamHeader *headers;
        size_t headers_allocated;
        char *arena;
        size_t arena_allocated;

        uint64_t n_frames;
        uint64_t n_bytes;

        int error;
        EventStreamError error_kind;
        char error_message[192];
};

static const char *const error_table[_EVENTSTREAM_ERROR_MAX] = {
        [EVENTSTREAM_OK]                = "ok",
        [EVENTSTREAM_ERROR_PRELUDE_CRC] = "prelude-crc",
        [EVENTSTREAM_ERROR_MESSAGE_CRC] = "message-crc",
        [EVENTSTREAM_ERROR_TOO_SMALL]   = "too-small",
        [EVENTSTREAM_ERROR_TOO_LARGE]   = "too-large",
        [EVENTSTREAM_ERROR_HEADERS]     = "headers",
        [EVENTSTREAM_ERROR_TRUNCATED]   = "truncated",
        [EVENTSTREAM_ERROR_CALLBACK]    = "callback",
};

const char *eventstream_error_to_string(EventStreamError e) {
        if (e < 0 || e >= _EVENTSTREAM_ERROR_MAX)
                return NULL;
        return error_table[e];
}

static const char *const header_type_table[_EVENTSTREAM_HEADER_TYPE_MAX] = {
        [EVENTSTREAM_HEADER_BOOL_TRUE]  = "bool-true",
        [EVENTSTREAM_HEADER_BOOL_FALSE] = "bool-false",
        [EVENTSTREAM_HEADER_BYTE]       = "byte",
        [EVENTSTREAM_HEADER_SHORT]      = "short",
        [EVENTSTREAM_HEADER_INTEGER]    = "integer",
        [EVENTSTREAM_HEADER_LONG]       = "long",
        [EVENTSTREAM_HEADER_BYTES]      = "bytes",
        [EVENTSTREAM_HEADER_STRING]     = "string",
        [EVENTSTREAM_HEADER_TIMESTAMP]  = "timestamp",
        [EVENTSTREAM_HEADER_UUID]       = "uuid",
};

const char *eventstream_header_type_to_string(EventStreamHeaderType t) {
        if (t < 0 || t >= _EVENTSTREAM_HEADER_TYPE_MAX)
                return NULL;
        return header_type_table[t];
}

static uint32_t be32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
}

static uint16_t be16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint64_t be64(const uint8_t *p) {
        return (uint64_t) be32(p) << 32 | be32(p + 4);
}

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = v >> 24;
        p[1] = v >> 16;
        p[2] = v >> 8;
        p[3] = v;
}

static void put_be16(uint8_t *p, uint16_t v) {
        p[0] = v >> 8;
        p[1] = v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, v >> 32);
        put_be32(p + 4, (uint32_t) v);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
        /* zlib's length is uInt; frames are bounded far below 4 GiB, but stay correct anyway. */
        uLong c = crc32(0L, Z_NULL, 0);
        while (n > 0) {
                uInt k = n > UINT32_MAX ? UINT32_MAX : (uInt) n;
                c = crc32(c, p, k);
                p += k;
                n -= k;
        }
        return (uint32_t) c;
}

_printf_(3, 4)
static int decoder_fail(EventStreamDecoder *d, EventStreamError kind, const char *fmt, ...) {
        static const int errnos[_EVENTSTREAM_ERROR_MAX] = {
                [EVENTSTREAM_ERROR_PRELUDE_CRC] = EBADMSG,
                [EVENTSTREAM_ERROR_MESSAGE_CRC] = EBADMSG,
                [EVENTSTREAM_ERROR_TOO_SMALL]   = EBADMSG,
                [EVENTSTREAM_ERROR_TOO_LARGE]   = E2BIG,
                [EVENTSTREAM_ERROR_HEADERS]     = EBADMSG,
                [EVENTSTREAM_ERROR_TRUNCATED]   = EPIPE,
        };
        va_list ap;

        assert(kind > EVENTSTREAM_OK && kind < EVENTSTREAM_ERROR_CALLBACK);
        va_start(ap, fmt);
        (void) vsnprintf(d->error_message, sizeof d->error_message, fmt, ap);
        va_end(ap);
        d->error_kind = kind;
        d->error = -errnos[kind];
        return d->error;
}

int eventstream_decoder_new(size_t max_frame_size, eventstream_frame_handler_t handler, void *userdata,
                            EventStreamDecoder **ret) {
        EventStreamDecoder *d;

        assert(handler);
        assert(ret);

        if (max_frame_size == 0)
                max_frame_size = EVENTSTREAM_MAX_FRAME_SIZE_DEFAULT;
        if (max_frame_size < EVENTSTREAM_MIN_FRAME_SIZE || max_frame_size > EVENTSTREAM_MAX_FRAME_SIZE_LIMIT)
                return -EINVAL;

        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        d->max_frame_size = max_frame_size;
        d->handler = handler;
        d->userdata = userdata;
        *ret = d;
        return 0;
}

EventStreamDecoder *eventstream_decoder_free(EventStreamDecoder *d) {
        if (!d)
                return NULL;
        free(d->buf);
        free(d->headers);
        free(d->arena);
        free(d);
        return NULL;
}

static int grow(void **p, size_t *allocated, size_t need, size_t elem) {
        void *n;

        if (*allocated >= need)
                return 0;
        n = reallocarray(*p, need, elem);
        if (!n)
                return -ENOMEM;
        *p = n;
        *allocated = need;
        return 0;
}

/* Validates a 12-byte prelude; returns the frame size. */
static int prelude_check(EventStreamDecoder *d, const uint8_t *p, size_t *ret_frame_size) {
        uint32_t total = be32(p), hlen = be32(p + 4), crc = be32(p + 8), computed = crc32_of(p, 8);

        if (crc != computed)
                return decoder_fail(d, EVENTSTREAM_ERROR_PRELUDE_CRC,
                                    "prelude CRC mismatch in frame %" PRIu64 " at byte %" PRIu64
                                    ": computed 0x%08x, frame says 0x%08x",
                                    d->n_frames, d->n_bytes - d->fill, computed, crc);
        if (total < EVENTSTREAM_MIN_FRAME_SIZE)
                return decoder_fail(d, EVENTSTREAM_ERROR_TOO_SMALL,
                                    "frame %" PRIu64 " claims %" PRIu32 " bytes, the minimum is %u",
                                    d->n_frames, total, EVENTSTREAM_MIN_FRAME_SIZE);
        if (total > d->max_frame_size)
                return decoder_fail(d, EVENTSTREAM_ERROR_TOO_LARGE,
                                    "frame %" PRIu64 " is %" PRIu32 " bytes, over the limit of %zu",
                                    d->n_frames, total, d->max_frame_size);
        if (hlen > total - EVENTSTREAM_MIN_FRAME_SIZE)
                return decoder_fail(d, EVENTSTREAM_ERROR_HEADERS,
                                    "frame %" PRIu64 " has %" PRIu32 " bytes of headers in a %" PRIu32
                                    "-byte frame", d->n_frames, hlen, total);
        *ret_frame_size = total;
        return 0;
}

static int headers_parse(EventStreamDecoder *d, const uint8_t *p, size_t n, EventStreamFrame *f) {
        size_t n_headers = 0, arena_used = 0;
        const uint8_t *end = p + n;
        int r;

        /* The smallest entry is 3 bytes (name length, a 1-byte name, type), and each NUL-terminated copy
         * in the arena takes no more room than its length prefix plus bytes on the wire. */
        r = grow((void **) &d->headers, &d->headers_allocated, n / 3 + 1, sizeof(EventStreamHeader));
        if (r < 0)
                return r;
        r = grow((void **) &d->arena, &d->arena_allocated, n + 1, 1);
        if (r < 0)
                return r;

#define BAD(...) decoder_fail(d, EVENTSTREAM_ERROR_HEADERS, __VA_ARGS__)
        while (p < end) {
                EventStreamHeader *h = d->headers + n_headers;
                size_t name_len = *p++, vlen;
                uint8_t type;

                *h = (EventStreamHeader) {};
                if (name_len == 0)
                        return BAD("frame %" PRIu64 ": header %zu has an empty name", d->n_frames, n_headers);
                if ((size_t) (end - p) < name_len + 1)
                        return BAD("frame %" PRIu64 ": header %zu runs past the header block",
                                   d->n_frames, n_headers);
                if (memchr(p, 0, name_len))
                        return BAD("frame %" PRIu64 ": header %zu has a NUL byte in its name",
                                   d->n_frames, n_headers);
                memcpy(d->arena + arena_used, p, name_len);
                d->arena[arena_used + name_len] = 0;
                h->name = d->arena + arena_used;
                arena_used += name_len + 1;
                p += name_len;

                type = *p++;
                h->type = type;
                switch (type) {
                case EVENTSTREAM_HEADER_BOOL_TRUE:
                case EVENTSTREAM_HEADER_BOOL_FALSE:
                        h->boolean = type == EVENTSTREAM_HEADER_BOOL_TRUE;
                        vlen = 0;
                        break;
                case EVENTSTREAM_HEADER_BYTE:
                        vlen = 1;
                        break;
                case EVENTSTREAM_HEADER_SHORT:
                        vlen = 2;
                        break;
                case EVENTSTREAM_HEADER_INTEGER:
                        vlen = 4;
                        break;
                case EVENTSTREAM_HEADER_LONG:
                case EVENTSTREAM_HEADER_TIMESTAMP:
                        vlen = 8;
                        break;
                case EVENTSTREAM_HEADER_UUID:
                        vlen = 16;
                        break;
                case EVENTSTREAM_HEADER_BYTES:
                case EVENTSTREAM_HEADER_STRING:
                        if (end - p < 2)
                                return BAD("frame %" PRIu64 ": header '%s' runs past the header block",
                                           d->n_frames, h->name);
                        vlen = be16(p);
                        p += 2;
                        break;
                default:
                        return BAD("frame %" PRIu64 ": header '%s' has unknown type %u", d->n_frames, h->name,
                                   type);
                }
                if ((size_t) (end - p) < vlen)
                        return BAD("frame %" PRIu64 ": header '%s' runs past the header block", d->n_frames,
                                   h->name);

                switch (type) {
                case EVENTSTREAM_HEADER_BYTE:
                        h->integer = (int8_t) p[0];
                        break;
                case EVENTSTREAM_HEADER_SHORT:
                        h->integer = (int16_t) be16(p);
                        break;
                case EVENTSTREAM_HEADER_INTEGER:
                        h->integer = (int32_t) be32(p);
                        break;
                case EVENTSTREAM_HEADER_LONG:
                case EVENTSTREAM_HEADER_TIMESTAMP:
                        h->integer = (int64_t) be64(p);
                        break;
                case EVENTSTREAM_HEADER_UUID:
                        memcpy(h->uuid, p, 16);
                        break;
                case EVENTSTREAM_HEADER_BYTES:
                        h->data = p;
                        h->size = vlen;
                        break;
                case EVENTSTREAM_HEADER_STRING:
                        memcpy(d->arena + arena_used, p, vlen);
                        d->arena[arena_used + vlen] = 0;
                        h->data = d->arena + arena_used;
                        h->size = vlen;
                        arena_used += vlen + 1;
                        break;
                }
                p += vlen;
                n_headers++;
        }
#undef BAD
        assert(arena_used <= n + 1);

        f->headers = d->headers;
        f->n_headers = n_headers;
        for (size_t i = 0; i < n_headers; i++) {
                const EventStreamHeader *h = d->headers + i;
                const char **slot;

                if (h->type != EVENTSTREAM_HEADER_STRING)
                        continue;
                if (streq(h->name, ":message-type"))
                        slot = &f->message_type;
                else if (streq(h->name, ":event-type"))
                        slot = &f->event_type;
                else if (streq(h->name, ":exception-type"))
                        slot = &f->exception_type;
                else if (streq(h->name, ":error-code"))
                        slot = &f->error_code;
                else if (streq(h->name, ":error-message"))
                        slot = &f->error_message;
                else if (streq(h->name, ":content-type"))
                        slot = &f->content_type;
                else
                        continue;
                if (!*slot) /* the first occurrence wins */
                        *slot = h->data;
        }
        return 0;
}

/* p points to a complete frame whose prelude was already validated. */
static int frame_process(EventStreamDecoder *d, const uint8_t *p, size_t size) {
        EventStreamFrame f = { .frame_size = size };
        uint32_t hlen = be32(p + 4), crc = be32(p + size - 4), computed = crc32_of(p, size - 4);
        int r;

        if (crc != computed)
                return decoder_fail(d, EVENTSTREAM_ERROR_MESSAGE_CRC,
                                    "message CRC mismatch in frame %" PRIu64 ": computed 0x%08x, frame says 0x%08x",
                                    d->n_frames, computed, crc);

        r = headers_parse(d, p + EVENTSTREAM_PRELUDE_SIZE, hlen, &f);
        if (r < 0)
                return r;
        f.payload = p + EVENTSTREAM_PRELUDE_SIZE + hlen;
        f.payload_size = size - EVENTSTREAM_MIN_FRAME_SIZE - hlen;

        d->n_frames++;
        r = d->handler(&f, d->userdata);
        if (r < 0) {
                d->error = r;
                d->error_kind = EVENTSTREAM_ERROR_CALLBACK;
                (void) snprintf(d->error_message, sizeof d->error_message,
                                "frame handler failed on frame %" PRIu64 ": %s", d->n_frames - 1, strerror(-r));
                return r;
        }
        return 0;
}

int eventstream_decoder_feed(EventStreamDecoder *d, const void *data, size_t size) {
        const uint8_t *p = data;
        int r;

        assert(d);
        assert(p || size == 0);

        if (d->error < 0)
                return d->error;

        while (size > 0) {
                size_t n;

                /* Fast path: a whole frame at the front of the input is decoded in place. */
                if (d->fill == 0 && size >= EVENTSTREAM_PRELUDE_SIZE) {
                        size_t fs;

                        r = prelude_check(d, p, &fs);
                        if (r < 0)
                                return r;
                        if (size >= fs) {
                                d->n_bytes += fs;
                                r = frame_process(d, p, fs);
                                if (r < 0)
                                        return r;
                                p += fs;
                                size -= fs;
                                continue;
                        }
                }

                if (d->fill < EVENTSTREAM_PRELUDE_SIZE) {
                        r = grow((void **) &d->buf, &d->buf_allocated, 4096, 1);
                        if (r < 0)
                                return r;
                        n = MIN(EVENTSTREAM_PRELUDE_SIZE - d->fill, size);
                        memcpy(d->buf + d->fill, p, n);
                        d->fill += n;
                        d->n_bytes += n;
                        p += n;
                        size -= n;
                        if (d->fill < EVENTSTREAM_PRELUDE_SIZE)
                                break;

                        r = prelude_check(d, d->buf, &d->frame_size);
                        if (r < 0)
                                return r;
                        r = grow((void **) &d->buf, &d->buf_allocated, d->frame_size, 1);
                        if (r < 0)
                                return r;
                }

                n = MIN(d->frame_size - d->fill, size);
                memcpy(d->buf + d->fill, p, n);
                d->fill += n;
                d->n_bytes += n;
                p += n;
                size -= n;
                if (d->fill < d->frame_size)
                        break;

                r = frame_process(d, d->buf, d->frame_size);
                if (r < 0)
                        return r;
                d->fill = d->frame_size = 0;
                if (d->buf_allocated > BUFFER_KEEP_MAX) {
                        free(d->buf);
                        d->buf = NULL;
                        d->buf_allocated = 0;
                }
        }
        return 0;
}

int eventstream_decoder_finish(EventStreamDecoder *d) {
        assert(d);

        if (d->error < 0)
                return d->error;
        if (d->fill > 0) {
                if (d->fill < EVENTSTREAM_PRELUDE_SIZE)
                        return decoder_fail(d, EVENTSTREAM_ERROR_TRUNCATED,
                                            "stream ended inside the prelude of frame %" PRIu64 " (%zu of %u bytes)",
                                            d->n_frames, d->fill, EVENTSTREAM_PRELUDE_SIZE);
                return decoder_fail(d, EVENTSTREAM_ERROR_TRUNCATED,
                                    "stream ended inside frame %" PRIu64 " (%zu of %zu bytes)",
                                    d->n_frames, d->fill, d->frame_size);
        }
        return 0;
}

EventStreamError eventstream_decoder_error(const EventStreamDecoder *d) {
        assert(d);
        return d->error_kind;
}

const char *eventstream_decoder_error_message(const EventStreamDecoder *d) {
        assert(d);
        return d->error < 0 ? d->error_message : "no error";
}

uint64_t eventstream_decoder_n_frames(const EventStreamDecoder *d) {
        assert(d);
        return d->n_frames;
}

uint64_t eventstream_decoder_n_bytes(const EventStreamDecoder *d) {
        assert(d);
        return d->n_bytes;
}

static int header_wire_size(const EventStreamHeader *h, size_t *ret) {
        size_t name_len, v;

        if (!h->name)
                return -EINVAL;
        name_len = strlen(h->name);
        if (name_len == 0 || name_len > UINT8_MAX)
                return -EINVAL;

        switch (h->type) {
        case EVENTSTREAM_HEADER_BOOL_TRUE:
        case EVENTSTREAM_HEADER_BOOL_FALSE:
                v = 0;
                break;
        case EVENTSTREAM_HEADER_BYTE:
                if (h->integer < INT8_MIN || h->integer > INT8_MAX)
                        return -EINVAL;
                v = 1;
                break;
        case EVENTSTREAM_HEADER_SHORT:
                if (h->integer < INT16_MIN || h->integer > INT16_MAX)
                        return -EINVAL;
                v = 2;
                break;
        case EVENTSTREAM_HEADER_INTEGER:
                if (h->integer < INT32_MIN || h->integer > INT32_MAX)
                        return -EINVAL;
                v = 4;
                break;
        case EVENTSTREAM_HEADER_LONG:
        case EVENTSTREAM_HEADER_TIMESTAMP:
                v = 8;
                break;
        case EVENTSTREAM_HEADER_UUID:
                v = 16;
                break;
        case EVENTSTREAM_HEADER_BYTES:
        case EVENTSTREAM_HEADER_STRING:
                if (h->size > UINT16_MAX || (!h->data && h->size > 0))
                        return -EINVAL;
                v = 2 + h->size;
                break;
        default:
                return -EINVAL;
        }
        *ret = 1 + name_len + 1 + v;
        return 0;
}

int eventstream_encode(const EventStreamHeader *headers, size_t n_headers, const void *payload,
                       size_t payload_size, uint8_t **ret, size_t *ret_size) {
        size_t hlen = 0, total;
        uint8_t *buf, *p;
        int r;

        assert(headers || n_headers == 0);
        assert(payload || payload_size == 0);
        assert(ret);
        assert(ret_size);

        for (size_t i = 0; i < n_headers; i++) {
                size_t s;

                r = header_wire_size(headers + i, &s);
                if (r < 0)
                        return r;
                hlen += s;
                if (hlen > EVENTSTREAM_MAX_FRAME_SIZE_LIMIT)
                        return -EINVAL;
        }
        if (payload_size > EVENTSTREAM_MAX_FRAME_SIZE_LIMIT - EVENTSTREAM_MIN_FRAME_SIZE - hlen)
                return -EINVAL;
        total = EVENTSTREAM_MIN_FRAME_SIZE + hlen + payload_size;

        buf = malloc(total);
        if (!buf)
                return -ENOMEM;
        put_be32(buf, (uint32_t) total);
        put_be32(buf + 4, (uint32_t) hlen);
        put_be32(buf + 8, crc32_of(buf, 8));
        p = buf + EVENTSTREAM_PRELUDE_SIZE;

        for (size_t i = 0; i < n_headers; i++) {
                const EventStreamHeader *h = headers + i;
                size_t name_len = strlen(h->name);

                *p++ = (uint8_t) name_len;
                memcpy(p, h->name, name_len);
                p += name_len;
                *p++ = (uint8_t) h->type;
                switch (h->type) {
                case EVENTSTREAM_HEADER_BOOL_TRUE:
                case EVENTSTREAM_HEADER_BOOL_FALSE:
                        break;
                case EVENTSTREAM_HEADER_BYTE:
                        *p++ = (uint8_t) h->integer;
                        break;
                case EVENTSTREAM_HEADER_SHORT:
                        put_be16(p, (uint16_t) h->integer);
                        p += 2;
                        break;
                case EVENTSTREAM_HEADER_INTEGER:
                        put_be32(p, (uint32_t) h->integer);
                        p += 4;
                        break;
                case EVENTSTREAM_HEADER_LONG:
                case EVENTSTREAM_HEADER_TIMESTAMP:
                        put_be64(p, (uint64_t) h->integer);
                        p += 8;
                        break;
                case EVENTSTREAM_HEADER_UUID:
                        memcpy(p, h->uuid, 16);
                        p += 16;
                        break;
                case EVENTSTREAM_HEADER_BYTES:
                case EVENTSTREAM_HEADER_STRING:
                        put_be16(p, (uint16_t) h->size);
                        p += 2;
                        if (h->size > 0)
                                memcpy(p, h->data, h->size);
                        p += h->size;
                        break;
                default:
                        assert(false);
                }
        }
        if (payload_size > 0)
                memcpy(p, payload, payload_size);
        p += payload_size;
        put_be32(p, crc32_of(buf, total - 4));

        *ret = buf;
        *ret_size = total;
        return 0;
}

#define STRING_HEADER(n, v) \
        { .name = (n), .type = EVENTSTREAM_HEADER_STRING, .data = (v), .size = strlen(v) }

int eventstream_encode_event(const char *event_type, const char *payload, size_t payload_size,
                             uint8_t **ret, size_t *ret_size) {
        assert(event_type);

        const EventStreamHeader h[] = {
                STRING_HEADER(":event-type", event_type),
                STRING_HEADER(":content-type", "application/json"),
                STRING_HEADER(":message-type", "event"),
        };
        return eventstream_encode(h, ELEMENTSOF(h), payload, payload_size, ret, ret_size);
}

int eventstream_encode_exception(const char *exception_type, const char *payload, size_t payload_size,
                                 uint8_t **ret, size_t *ret_size) {
        assert(exception_type);

        const EventStreamHeader h[] = {
                STRING_HEADER(":exception-type", exception_type),
                STRING_HEADER(":content-type", "application/json"),
                STRING_HEADER(":message-type", "exception"),
        };
        return eventstream_encode(h, ELEMENTSOF(h), payload, payload_size, ret, ret_size);
}

int eventstream_encode_error(const char *error_code, const char *error_message, uint8_t **ret,
                             size_t *ret_size) {
        assert(error_code);
        assert(error_message);

        const EventStreamHeader h[] = {
                STRING_HEADER(":message-type", "error"),
                STRING_HEADER(":error-code", error_code),
                STRING_HEADER(":error-message", error_message),
        };
        return eventstream_encode(h, ELEMENTSOF(h), NULL, 0, ret, ret_size);
}
