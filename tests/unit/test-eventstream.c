/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AWS event-stream decoder and encoder. */
#include <zlib.h>

#include "fileio.h"
#include "kiro/kiro-eventstream.h"
#include "tests.h"

/* ---- a recorder: keeps a copy of every decoded frame -------------------------------------------- */

typedef struct RecHeader {
        char *name;
        EventStreamHeaderType type;
        int64_t integer;
        bool boolean;
        uint8_t *data;
        size_t size;
        uint8_t uuid[16];
} RecHeader;

typedef struct RecFrame {
        char *message_type, *event_type, *exception_type, *error_code, *error_message, *content_type;
        RecHeader *headers;
        size_t n_headers;
        uint8_t *payload;
        size_t payload_size;
} RecFrame;

typedef struct Recorder {
        RecFrame frames[256];
        size_t n;
        int fail_at;            /* return -ECANCELED on this frame (1-based), 0 = never */
} Recorder;

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static int record(const EventStreamFrame *f, void *userdata) {
        Recorder *rec = userdata;
        RecFrame *r;

        if (rec->fail_at > 0 && (size_t) rec->fail_at == rec->n + 1)
                return -ECANCELED;
        ASSERT_TRUE(rec->n < ELEMENTSOF(rec->frames));
        r = rec->frames + rec->n++;
        *r = (RecFrame) {
                .message_type = dup_or_null(f->message_type),
                .event_type = dup_or_null(f->event_type),
                .exception_type = dup_or_null(f->exception_type),
                .error_code = dup_or_null(f->error_code),
                .error_message = dup_or_null(f->error_message),
                .content_type = dup_or_null(f->content_type),
                .n_headers = f->n_headers,
                .payload_size = f->payload_size,
        };
        r->payload = malloc(f->payload_size + 1);
        memcpy(r->payload, f->payload, f->payload_size);
        r->headers = calloc(f->n_headers + 1, sizeof(RecHeader));
        for (size_t i = 0; i < f->n_headers; i++) {
                const EventStreamHeader *h = f->headers + i;

                r->headers[i] = (RecHeader) {
                        .name = strdup(h->name),
                        .type = h->type,
                        .integer = h->integer,
                        .boolean = h->boolean,
                        .size = h->size,
                };
                if (h->data) {
                        r->headers[i].data = malloc(h->size + 1);
                        memcpy(r->headers[i].data, h->data, h->size);
                        /* string values come NUL-terminated */
                        if (h->type == EVENTSTREAM_HEADER_STRING)
                                ASSERT_EQ(((const char *) h->data)[h->size], 0);
                }
                memcpy(r->headers[i].uuid, h->uuid, 16);
        }
        return 0;
}

static void recorder_done(Recorder *rec) {
        for (size_t i = 0; i < rec->n; i++) {
                RecFrame *r = rec->frames + i;
                free(r->message_type);
                free(r->event_type);
                free(r->exception_type);
                free(r->error_code);
                free(r->error_message);
                free(r->content_type);
                free(r->payload);
                for (size_t j = 0; j < r->n_headers; j++) {
                        free(r->headers[j].name);
                        free(r->headers[j].data);
                }
                free(r->headers);
        }
        rec->n = 0;
}

static bool frames_equal(const RecFrame *a, const RecFrame *b) {
        if (!streq_ptr(a->event_type, b->event_type) || !streq_ptr(a->message_type, b->message_type) ||
            !streq_ptr(a->exception_type, b->exception_type) || a->payload_size != b->payload_size ||
            memcmp(a->payload, b->payload, a->payload_size) != 0 || a->n_headers != b->n_headers)
                return false;
        for (size_t i = 0; i < a->n_headers; i++)
                if (!streq(a->headers[i].name, b->headers[i].name) || a->headers[i].type != b->headers[i].type ||
                    a->headers[i].integer != b->headers[i].integer || a->headers[i].size != b->headers[i].size)
                        return false;
        return true;
}

/* Decodes data in chunks of the given size (0 = all at once); returns feed's result. */
static int decode_chunked(const uint8_t *data, size_t size, size_t chunk, size_t max_frame, Recorder *rec,
                          EventStreamDecoder **ret) {
        EventStreamDecoder *d;
        int r = 0;

        ASSERT_OK(eventstream_decoder_new(max_frame, record, rec, &d));
        if (chunk == 0)
                r = eventstream_decoder_feed(d, data, size);
        else
                for (size_t off = 0; off < size && r >= 0; off += chunk)
                        r = eventstream_decoder_feed(d, data + off, MIN(chunk, size - off));
        if (ret)
                *ret = d;
        else
                eventstream_decoder_free(d);
        return r;
}

static void read_golden(const char *name, uint8_t **ret, size_t *ret_size) {
        _cleanup_free_ char *path = NULL;
        char *buf;
        int r;

        ASSERT_TRUE(asprintf(&path, "%s/eventstream/%s", GOLDEN_DIR, name) > 0);
        r = read_full_file(path, 1024 * 1024, &buf, ret_size);
        if (r < 0)
                ASSERT_FAIL("%s: %s", path, strerror(-r));
        *ret = (uint8_t *) buf;
}

static void append(uint8_t **buf, size_t *size, const uint8_t *data, size_t n) {
        *buf = realloc(*buf, *size + n);
        memcpy(*buf + *size, data, n);
        *size += n;
}

static void append_event(uint8_t **buf, size_t *size, const char *type, const char *json) {
        _cleanup_free_ uint8_t *f = NULL;
        size_t n;

        ASSERT_OK(eventstream_encode_event(type, json, strlen(json), &f, &n));
        append(buf, size, f, n);
}

/* The A.11 reference stream, built with the C encoder: the same sequence that
 * tests/integration/fakes/eventstream.py writes to golden/eventstream/a11-stream.bin. */
static void build_a11_stream(uint8_t **ret, size_t *ret_size) {
        static const char *const events[][2] = {
                { "assistantResponseEvent", "{\"content\":\"Let me check.\"}" },
                { "assistantResponseEvent", "{\"content\":\"\\n\"}" },
                { "assistantResponseEvent", "{\"content\":\"\\n\"}" },
                { "assistantResponseEvent", "{\"content\":\"Ünïcödé ✓ 日本\"}" },
                { "toolUseEvent", "{\"name\":\"Read\",\"toolUseId\":\"tooluse_Abc123\"}" },
                { "toolUseEvent", "{\"input\":\"\",\"name\":\"Read\",\"toolUseId\":\"tooluse_Abc123\"}" },
                { "toolUseEvent", "{\"input\":\"{\\\"file_path\\\":\\\"/s\",\"name\":\"Read\",\"toolUseId\":\"tooluse_Abc123\"}" },
                { "toolUseEvent", "{\"input\":\"rc/main.c\\\",\\\"limi\",\"name\":\"Read\",\"toolUseId\":\"tooluse_Abc123\"}" },
                { "toolUseEvent", "{\"input\":\"t\\\":100}\",\"name\":\"Read\",\"toolUseId\":\"tooluse_Abc123\"}" },
                { "toolUseEvent", "{\"name\":\"Read\",\"stop\":true,\"toolUseId\":\"tooluse_Abc123\"}" },
                { "meteringEvent", "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":0.0421}" },
                { "contextUsageEvent", "{\"contextUsagePercentage\":78.56}" },
        };
        uint8_t *buf = NULL;
        size_t size = 0;

        for (size_t i = 0; i < ELEMENTSOF(events); i++)
                append_event(&buf, &size, events[i][0], events[i][1]);
        *ret = buf;
        *ret_size = size;
}

/* ---- tests ------------------------------------------------------------------------------------ */

/* Published AWS event-stream test vectors (awslabs/aws-c-event-stream message_deserializer_test.c):
 * decoded independently of our own encoder. */
TEST(aws_vector_empty_message) {
        static const uint8_t v[] = { 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00,
                                     0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff };
        Recorder rec = {};

        ASSERT_OK(decode_chunked(v, sizeof v, 0, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        ASSERT_EQ(rec.frames[0].n_headers, 0);
        ASSERT_EQ(rec.frames[0].payload_size, 0);
        ASSERT_NULL(rec.frames[0].message_type);
        recorder_done(&rec);
}

TEST(aws_vector_payload_no_headers) {
        static const uint8_t v[] = { 0x00, 0x00, 0x00, 0x1D, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a,
                                     0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27,
                                     0x7d, 0xc3, 0x65, 0x39, 0x36 };
        Recorder rec = {};

        ASSERT_OK(decode_chunked(v, sizeof v, 1, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        ASSERT_EQ(rec.frames[0].payload_size, 13);
        ASSERT_TRUE(memcmp(rec.frames[0].payload, "{'foo':'bar'}", 13) == 0);
        recorder_done(&rec);
}

static const uint8_t aws_vector_one_header[] = {
        0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96,
        0x0C, 'c', 'o', 'n', 't', 'e', 'n', 't', '-', 't', 'y', 'p', 'e',
        0x07, 0x00, 0x10, 'a', 'p', 'p', 'l', 'i', 'c', 'a', 't', 'i', 'o', 'n', '/', 'j', 's', 'o', 'n',
        0x7b, 0x27, 0x66, 0x6f, 0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d,
        0x8D, 0x9C, 0x08, 0xB1,
};

TEST(aws_vector_one_header) {
        Recorder rec = {};

        ASSERT_OK(decode_chunked(aws_vector_one_header, sizeof aws_vector_one_header, 0, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        ASSERT_EQ(rec.frames[0].n_headers, 1);
        ASSERT_STREQ(rec.frames[0].headers[0].name, "content-type");
        ASSERT_EQ(rec.frames[0].headers[0].type, EVENTSTREAM_HEADER_STRING);
        ASSERT_EQ(rec.frames[0].headers[0].size, 16);
        ASSERT_TRUE(memcmp(rec.frames[0].headers[0].data, "application/json", 16) == 0);
        /* "content-type" without the colon is not the well-known ":content-type" */
        ASSERT_NULL(rec.frames[0].content_type);
        ASSERT_TRUE(memcmp(rec.frames[0].payload, "{'foo':'bar'}", 13) == 0);
        recorder_done(&rec);
}

TEST(encoder_reproduces_aws_vector) {
        _cleanup_free_ uint8_t *f = NULL;
        size_t n;
        const EventStreamHeader h = { .name = "content-type", .type = EVENTSTREAM_HEADER_STRING,
                                      .data = "application/json", .size = 16 };

        ASSERT_OK(eventstream_encode(&h, 1, "{'foo':'bar'}", 13, &f, &n));
        ASSERT_EQ(n, sizeof aws_vector_one_header);
        ASSERT_TRUE(memcmp(f, aws_vector_one_header, n) == 0);
}

TEST(crc_is_ieee) {
        /* The check value of CRC-32/ISO-HDLC. */
        ASSERT_EQ(crc32(0, (const Bytef *) "123456789", 9), 0xCBF43926U);
}

TEST(every_header_type) {
        static const uint8_t uuid[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };
        EventStreamHeader h[] = {
                { .name = "bool-true",  .type = EVENTSTREAM_HEADER_BOOL_TRUE },
                { .name = "bool-false", .type = EVENTSTREAM_HEADER_BOOL_FALSE },
                { .name = "byte",       .type = EVENTSTREAM_HEADER_BYTE,      .integer = -7 },
                { .name = "short",      .type = EVENTSTREAM_HEADER_SHORT,     .integer = -300 },
                { .name = "integer",    .type = EVENTSTREAM_HEADER_INTEGER,   .integer = 0x12345678 },
                { .name = "long",       .type = EVENTSTREAM_HEADER_LONG,      .integer = -0x123456789AL },
                { .name = "bytes",      .type = EVENTSTREAM_HEADER_BYTES,     .data = "\x00\x01\xfe\xff", .size = 4 },
                { .name = "string",     .type = EVENTSTREAM_HEADER_STRING,    .data = "h\xc3\xa9llo", .size = 6 },
                { .name = "timestamp",  .type = EVENTSTREAM_HEADER_TIMESTAMP, .integer = 1767225600000 },
                { .name = "uuid",       .type = EVENTSTREAM_HEADER_UUID },
        };
        _cleanup_free_ uint8_t *f = NULL, *golden = NULL;
        size_t n, golden_size;
        Recorder rec = {};

        memcpy(h[9].uuid, uuid, 16);
        ASSERT_OK(eventstream_encode(h, ELEMENTSOF(h), "payload", 7, &f, &n));

        /* Byte for byte what the Python encoder of the fake Kiro server produces. */
        read_golden("all-header-types.bin", &golden, &golden_size);
        ASSERT_EQ(n, golden_size);
        ASSERT_TRUE(memcmp(f, golden, n) == 0);

        ASSERT_OK(decode_chunked(f, n, 0, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        ASSERT_EQ(rec.frames[0].n_headers, ELEMENTSOF(h));
        for (size_t i = 0; i < ELEMENTSOF(h); i++) {
                ASSERT_STREQ(rec.frames[0].headers[i].name, h[i].name);
                ASSERT_EQ(rec.frames[0].headers[i].type, (EventStreamHeaderType) i);
        }
        ASSERT_TRUE(rec.frames[0].headers[0].boolean);
        ASSERT_FALSE(rec.frames[0].headers[1].boolean);
        ASSERT_EQ(rec.frames[0].headers[2].integer, -7);
        ASSERT_EQ(rec.frames[0].headers[3].integer, -300);
        ASSERT_EQ(rec.frames[0].headers[4].integer, 0x12345678);
        ASSERT_EQ(rec.frames[0].headers[5].integer, -0x123456789AL);
        ASSERT_EQ(rec.frames[0].headers[6].size, 4);
        ASSERT_TRUE(memcmp(rec.frames[0].headers[6].data, "\x00\x01\xfe\xff", 4) == 0);
        ASSERT_EQ(rec.frames[0].headers[7].size, 6);
        ASSERT_TRUE(memcmp(rec.frames[0].headers[7].data, "h\xc3\xa9llo", 6) == 0);
        ASSERT_EQ(rec.frames[0].headers[8].integer, 1767225600000);
        ASSERT_TRUE(memcmp(rec.frames[0].headers[9].uuid, uuid, 16) == 0);
        ASSERT_EQ(rec.frames[0].payload_size, 7);
        recorder_done(&rec);
}

TEST(well_known_headers) {
        _cleanup_free_ uint8_t *e = NULL, *x = NULL, *r = NULL, *all = NULL;
        size_t en, xn, rn, alln = 0;
        Recorder rec = {};

        ASSERT_OK(eventstream_encode_event("assistantResponseEvent", "{}", 2, &e, &en));
        ASSERT_OK(eventstream_encode_exception("ThrottlingException", "{\"message\":\"slow\"}", 18, &x, &xn));
        ASSERT_OK(eventstream_encode_error("InternalFailure", "boom", &r, &rn));
        append(&all, &alln, e, en);
        append(&all, &alln, x, xn);
        append(&all, &alln, r, rn);

        ASSERT_OK(decode_chunked(all, alln, 5, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 3);
        ASSERT_STREQ(rec.frames[0].message_type, "event");
        ASSERT_STREQ(rec.frames[0].event_type, "assistantResponseEvent");
        ASSERT_STREQ(rec.frames[0].content_type, "application/json");
        ASSERT_STREQ(rec.frames[0].headers[0].name, ":event-type");     /* A.11 order */
        ASSERT_STREQ(rec.frames[0].headers[2].name, ":message-type");
        ASSERT_STREQ(rec.frames[1].message_type, "exception");
        ASSERT_STREQ(rec.frames[1].exception_type, "ThrottlingException");
        ASSERT_STREQ(rec.frames[1].headers[0].name, ":exception-type");
        ASSERT_NULL(rec.frames[1].event_type);
        ASSERT_STREQ(rec.frames[2].message_type, "error");
        ASSERT_STREQ(rec.frames[2].error_code, "InternalFailure");
        ASSERT_STREQ(rec.frames[2].error_message, "boom");
        ASSERT_EQ(rec.frames[2].payload_size, 0);
        recorder_done(&rec);
}

TEST(c_encoder_matches_python_encoder) {
        _cleanup_free_ uint8_t *mine = NULL, *golden = NULL;
        size_t n, golden_size;

        build_a11_stream(&mine, &n);
        read_golden("a11-stream.bin", &golden, &golden_size);
        ASSERT_EQ(n, golden_size);
        ASSERT_TRUE(memcmp(mine, golden, n) == 0);
}

TEST(split_anywhere_equals_whole) {
        static const size_t chunks[] = { 1, 2, 3, 5, 7, 11, 12, 13, 16, 64, 100, 1000 };
        _cleanup_free_ uint8_t *data = NULL;
        Recorder whole = {}, split = {};
        size_t n;

        build_a11_stream(&data, &n);
        ASSERT_OK(decode_chunked(data, n, 0, 0, &whole, NULL));
        ASSERT_EQ(whole.n, 12);
        ASSERT_STREQ(whole.frames[3].event_type, "assistantResponseEvent");
        ASSERT_EQ(whole.frames[3].payload_size, strlen("{\"content\":\"Ünïcödé ✓ 日本\"}"));

        for (size_t c = 0; c < ELEMENTSOF(chunks); c++) {
                EventStreamDecoder *d;

                ASSERT_OK(decode_chunked(data, n, chunks[c], 0, &split, &d));
                ASSERT_OK(eventstream_decoder_finish(d));
                ASSERT_EQ(eventstream_decoder_n_frames(d), 12);
                ASSERT_EQ(eventstream_decoder_n_bytes(d), n);
                eventstream_decoder_free(d);
                ASSERT_EQ(split.n, whole.n);
                for (size_t i = 0; i < whole.n; i++)
                        if (!frames_equal(whole.frames + i, split.frames + i))
                                ASSERT_FAIL("chunk size %zu: frame %zu differs", chunks[c], i);
                recorder_done(&split);
        }

        /* Irregular splits: every cut point for two pieces. */
        for (size_t cut = 0; cut <= n; cut++) {
                EventStreamDecoder *d;

                ASSERT_OK(eventstream_decoder_new(0, record, &split, &d));
                ASSERT_OK(eventstream_decoder_feed(d, data, cut));
                ASSERT_OK(eventstream_decoder_feed(d, data + cut, n - cut));
                ASSERT_OK(eventstream_decoder_finish(d));
                eventstream_decoder_free(d);
                ASSERT_EQ(split.n, whole.n);
                for (size_t i = 0; i < whole.n; i++)
                        ASSERT_TRUE(frames_equal(whole.frames + i, split.frames + i));
                recorder_done(&split);
        }
        recorder_done(&whole);
}

static void flip_and_expect(size_t flip_at, int error, EventStreamError kind, const char *fragment,
                            size_t frames_before) {
        _cleanup_free_ uint8_t *data = NULL;
        EventStreamDecoder *d;
        Recorder rec = {};
        size_t n;

        build_a11_stream(&data, &n);
        data[flip_at] ^= 0x01;
        ASSERT_ERROR(decode_chunked(data, n, 3, 0, &rec, &d), error);
        ASSERT_EQ(eventstream_decoder_error(d), kind);
        if (!strstr(eventstream_decoder_error_message(d), fragment))
                ASSERT_FAIL("'%s' lacks '%s'", eventstream_decoder_error_message(d), fragment);
        ASSERT_EQ(rec.n, frames_before);
        /* Sticky: more data and finish() give the same error, and no more frames. */
        ASSERT_ERROR(eventstream_decoder_feed(d, data, n), error);
        ASSERT_ERROR(eventstream_decoder_finish(d), error);
        ASSERT_EQ(rec.n, frames_before);
        eventstream_decoder_free(d);
        recorder_done(&rec);
}

TEST(bad_prelude_crc) {
        flip_and_expect(9, EBADMSG, EVENTSTREAM_ERROR_PRELUDE_CRC, "prelude CRC mismatch in frame 0", 0);
}

TEST(bad_message_crc) {
        _cleanup_free_ uint8_t *data = NULL;
        size_t n, first;

        build_a11_stream(&data, &n);
        first = (size_t) data[2] << 8 | data[3];
        ASSERT_EQ(data[first + 7], 92); /* headers_length of the second frame */
        /* a payload byte of the second frame (12 prelude bytes, 92 bytes of headers) */
        flip_and_expect(first + 12 + 92 + 3, EBADMSG, EVENTSTREAM_ERROR_MESSAGE_CRC, "message CRC mismatch in frame 1", 1);
        /* the message CRC itself */
        flip_and_expect(first - 1, EBADMSG, EVENTSTREAM_ERROR_MESSAGE_CRC, "message CRC mismatch in frame 0", 0);
}

TEST(truncated) {
        _cleanup_free_ uint8_t *data = NULL;
        EventStreamDecoder *d;
        Recorder rec = {};
        size_t n;

        build_a11_stream(&data, &n);

        ASSERT_OK(decode_chunked(data, n - 1, 0, 0, &rec, &d));
        ASSERT_EQ(rec.n, 11);
        ASSERT_ERROR(eventstream_decoder_finish(d), EPIPE);
        ASSERT_EQ(eventstream_decoder_error(d), EVENTSTREAM_ERROR_TRUNCATED);
        ASSERT_TRUE(strstr(eventstream_decoder_error_message(d), "stream ended inside frame 11") != NULL);
        eventstream_decoder_free(d);
        recorder_done(&rec);

        /* inside a prelude */
        ASSERT_OK(decode_chunked(data, 5, 1, 0, &rec, &d));
        ASSERT_ERROR(eventstream_decoder_finish(d), EPIPE);
        ASSERT_TRUE(strstr(eventstream_decoder_error_message(d), "inside the prelude") != NULL);
        eventstream_decoder_free(d);

        /* empty input is a clean end at this layer */
        ASSERT_OK(decode_chunked(data, 0, 0, 0, &rec, &d));
        ASSERT_OK(eventstream_decoder_finish(d));
        ASSERT_EQ(eventstream_decoder_error(d), EVENTSTREAM_OK);
        ASSERT_STREQ(eventstream_decoder_error_message(d), "no error");
        eventstream_decoder_free(d);
}

TEST(oversize_rejected_at_prelude) {
        _cleanup_free_ uint8_t *f = NULL, *payload = NULL;
        EventStreamDecoder *d;
        Recorder rec = {};
        size_t n;

        payload = calloc(1, 100);
        ASSERT_OK(eventstream_encode_event("assistantResponseEvent", (char *) payload, 100, &f, &n));

        /* Frame is larger than the limit: refused as soon as the 12 prelude bytes are in. */
        ASSERT_OK(eventstream_decoder_new(64, record, &rec, &d));
        ASSERT_OK(eventstream_decoder_feed(d, f, 11));
        ASSERT_ERROR(eventstream_decoder_feed(d, f + 11, 1), E2BIG);
        ASSERT_EQ(eventstream_decoder_error(d), EVENTSTREAM_ERROR_TOO_LARGE);
        ASSERT_TRUE(strstr(eventstream_decoder_error_message(d), "over the limit of 64") != NULL);
        eventstream_decoder_free(d);

        /* Fast path (whole frame in one feed) too; and exactly at the limit is fine. */
        ASSERT_ERROR(decode_chunked(f, n, 0, n - 1, &rec, NULL), E2BIG);
        ASSERT_OK(decode_chunked(f, n, 0, n, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        recorder_done(&rec);
}

TEST(decoder_limits) {
        EventStreamDecoder *d = NULL;
        Recorder rec = {};

        ASSERT_ERROR(eventstream_decoder_new(15, record, &rec, &d), EINVAL);
        ASSERT_ERROR(eventstream_decoder_new(EVENTSTREAM_MAX_FRAME_SIZE_LIMIT + 1, record, &rec, &d), EINVAL);
        ASSERT_OK(eventstream_decoder_new(16, record, &rec, &d));
        eventstream_decoder_free(d);
        ASSERT_NULL(eventstream_decoder_free(NULL));
}

/* Frames with valid CRCs around malformed contents. */
static void make_frame(uint32_t total, uint32_t hlen, const uint8_t *body, size_t body_size, uint8_t **ret,
                       size_t *ret_size) {
        size_t n = 12 + body_size + 4;
        uint8_t *f = malloc(n);
        uint32_t c;

        f[0] = total >> 24; f[1] = total >> 16; f[2] = total >> 8; f[3] = total;
        f[4] = hlen >> 24; f[5] = hlen >> 16; f[6] = hlen >> 8; f[7] = hlen;
        c = crc32(0, f, 8);
        f[8] = c >> 24; f[9] = c >> 16; f[10] = c >> 8; f[11] = c;
        memcpy(f + 12, body, body_size);
        c = crc32(0, f, 12 + body_size);
        f[n - 4] = c >> 24; f[n - 3] = c >> 16; f[n - 2] = c >> 8; f[n - 1] = c;
        *ret = f;
        *ret_size = n;
}

static void expect_malformed(uint32_t total, uint32_t hlen, const uint8_t *body, size_t body_size,
                             EventStreamError kind, const char *fragment) {
        _cleanup_free_ uint8_t *f = NULL;
        EventStreamDecoder *d;
        Recorder rec = {};
        size_t n;

        make_frame(total ?: 16 + body_size, hlen, body, body_size, &f, &n);
        ASSERT_ERROR(decode_chunked(f, n, 0, 0, &rec, &d), EBADMSG);
        ASSERT_EQ(eventstream_decoder_error(d), kind);
        if (!strstr(eventstream_decoder_error_message(d), fragment))
                ASSERT_FAIL("'%s' lacks '%s'", eventstream_decoder_error_message(d), fragment);
        ASSERT_EQ(rec.n, 0);
        eventstream_decoder_free(d);
}

#define BODY(...) (const uint8_t[]) { __VA_ARGS__ }, sizeof((const uint8_t[]) { __VA_ARGS__ })

TEST(malformed_frames) {
        expect_malformed(8, 0, (const uint8_t *) "", 0, EVENTSTREAM_ERROR_TOO_SMALL, "the minimum is 16");
        expect_malformed(0, 10, BODY('a', 'b', 'c', 'd'), EVENTSTREAM_ERROR_HEADERS, "10 bytes of headers in a 20-byte frame");
        expect_malformed(0, 3, BODY(0, 'a', 0), EVENTSTREAM_ERROR_HEADERS, "header 0 has an empty name");
        expect_malformed(0, 3, BODY(1, 'a', 10), EVENTSTREAM_ERROR_HEADERS, "header 'a' has unknown type 10");
        expect_malformed(0, 2, BODY(5, 'a'), EVENTSTREAM_ERROR_HEADERS, "header 0 runs past the header block");
        expect_malformed(0, 6, BODY(1, 'a', 7, 0, 9, 'x'), EVENTSTREAM_ERROR_HEADERS, "header 'a' runs past");
        expect_malformed(0, 4, BODY(1, 'a', 7, 0), EVENTSTREAM_ERROR_HEADERS, "header 'a' runs past");
        expect_malformed(0, 5, BODY(1, 'a', 4, 0, 0), EVENTSTREAM_ERROR_HEADERS, "header 'a' runs past");
        expect_malformed(0, 4, BODY(2, 'a', 0, 0), EVENTSTREAM_ERROR_HEADERS, "NUL byte in its name");
        /* the second header is the bad one: the first was fine */
        expect_malformed(0, 6, BODY(1, 'a', 0, 1, 'b', 42), EVENTSTREAM_ERROR_HEADERS, "header 'b' has unknown type 42");
}

TEST(headers_length_zero_with_payload) {
        _cleanup_free_ uint8_t *f = NULL;
        Recorder rec = {};
        size_t n;

        make_frame(16 + 3, 0, (const uint8_t *) "abc", 3, &f, &n);
        ASSERT_OK(decode_chunked(f, n, 0, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 1);
        ASSERT_EQ(rec.frames[0].n_headers, 0);
        ASSERT_EQ(rec.frames[0].payload_size, 3);
        recorder_done(&rec);
}

TEST(handler_error_is_sticky) {
        _cleanup_free_ uint8_t *data = NULL;
        EventStreamDecoder *d;
        Recorder rec = { .fail_at = 3 };
        size_t n;

        build_a11_stream(&data, &n);
        ASSERT_ERROR(decode_chunked(data, n, 0, 0, &rec, &d), ECANCELED);
        ASSERT_EQ(rec.n, 2);
        ASSERT_EQ(eventstream_decoder_error(d), EVENTSTREAM_ERROR_CALLBACK);
        ASSERT_ERROR(eventstream_decoder_feed(d, data, n), ECANCELED);
        ASSERT_EQ(rec.n, 2);
        eventstream_decoder_free(d);
        recorder_done(&rec);
}

TEST(large_frame_then_small) {
        /* A frame bigger than the kept buffer, fed in pieces, then a small one: the buffer is given
         * back and allocated again. */
        size_t big = 300 * 1024, n1, n2, total = 0;
        _cleanup_free_ char *payload = malloc(big);
        _cleanup_free_ uint8_t *f1 = NULL, *f2 = NULL, *all = NULL;
        Recorder rec = {};

        memset(payload, 'p', big);
        ASSERT_OK(eventstream_encode_event("assistantResponseEvent", payload, big, &f1, &n1));
        ASSERT_OK(eventstream_encode_event("assistantResponseEvent", "{}", 2, &f2, &n2));
        append(&all, &total, f1, n1);
        append(&all, &total, f2, n2);
        append(&all, &total, f1, n1);
        ASSERT_OK(decode_chunked(all, total, 4093, 0, &rec, NULL));
        ASSERT_EQ(rec.n, 3);
        ASSERT_EQ(rec.frames[0].payload_size, big);
        ASSERT_EQ(rec.frames[1].payload_size, 2);
        ASSERT_EQ(rec.frames[2].payload_size, big);
        recorder_done(&rec);
}

TEST(encoder_rejects_bad_input) {
        _cleanup_free_ uint8_t *f = NULL;
        char longname[300];
        size_t n;

        memset(longname, 'n', 256);
        longname[256] = 0;
        ASSERT_ERROR(eventstream_encode(&(EventStreamHeader) { .name = "", .type = EVENTSTREAM_HEADER_BOOL_TRUE },
                                        1, NULL, 0, &f, &n), EINVAL);
        ASSERT_ERROR(eventstream_encode(&(EventStreamHeader) { .name = longname, .type = EVENTSTREAM_HEADER_BOOL_TRUE },
                                        1, NULL, 0, &f, &n), EINVAL);
        ASSERT_ERROR(eventstream_encode(&(EventStreamHeader) { .name = "x", .type = EVENTSTREAM_HEADER_BYTE,
                                                               .integer = 128 }, 1, NULL, 0, &f, &n), EINVAL);
        ASSERT_ERROR(eventstream_encode(&(EventStreamHeader) { .name = "x", .type = EVENTSTREAM_HEADER_STRING,
                                                               .data = "x", .size = 65536 }, 1, NULL, 0, &f, &n), EINVAL);
        ASSERT_ERROR(eventstream_encode(&(EventStreamHeader) { .name = "x", .type = 10 }, 1, NULL, 0, &f, &n), EINVAL);
        longname[255] = 0;
        ASSERT_OK(eventstream_encode(&(EventStreamHeader) { .name = longname, .type = EVENTSTREAM_HEADER_BOOL_TRUE },
                                     1, NULL, 0, &f, &n));
        ASSERT_EQ(n, 16 + 1 + 255 + 1);
}

TEST(names) {
        ASSERT_STREQ(eventstream_error_to_string(EVENTSTREAM_ERROR_MESSAGE_CRC), "message-crc");
        ASSERT_NULL(eventstream_error_to_string(_EVENTSTREAM_ERROR_MAX));
        ASSERT_STREQ(eventstream_header_type_to_string(EVENTSTREAM_HEADER_UUID), "uuid");
        ASSERT_NULL(eventstream_header_type_to_string(-1));
}
