/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AWS event-stream framing (application/vnd.amazon.eventstream): incremental decoder and encoder. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A frame is: total_length u32 BE, headers_length u32 BE, prelude_crc u32 BE (CRC-32 of bytes 0..7),
 * headers, payload, message_crc u32 BE (CRC-32 of everything before it). CRC-32 is the IEEE one
 * (zlib crc32). See KIRO-PROTOCOL.md A.7 and B §4.1. */
#define EVENTSTREAM_PRELUDE_SIZE 12U
#define EVENTSTREAM_MIN_FRAME_SIZE 16U
#define EVENTSTREAM_MAX_FRAME_SIZE_DEFAULT (16U * 1024U * 1024U)
/* Frames larger than this are never accepted, whatever the configuration says. */
#define EVENTSTREAM_MAX_FRAME_SIZE_LIMIT (1024U * 1024U * 1024U)

typedef enum EventStreamHeaderType {
        EVENTSTREAM_HEADER_BOOL_TRUE  = 0,
        EVENTSTREAM_HEADER_BOOL_FALSE = 1,
        EVENTSTREAM_HEADER_BYTE       = 2, /* int8 */
        EVENTSTREAM_HEADER_SHORT      = 3, /* int16 BE */
        EVENTSTREAM_HEADER_INTEGER    = 4, /* int32 BE */
        EVENTSTREAM_HEADER_LONG       = 5, /* int64 BE */
        EVENTSTREAM_HEADER_BYTES      = 6, /* u16 BE length + bytes */
        EVENTSTREAM_HEADER_STRING     = 7, /* u16 BE length + UTF-8 */
        EVENTSTREAM_HEADER_TIMESTAMP  = 8, /* int64 BE, milliseconds since the epoch */
        EVENTSTREAM_HEADER_UUID       = 9, /* 16 bytes */
        _EVENTSTREAM_HEADER_TYPE_MAX,
        _EVENTSTREAM_HEADER_TYPE_INVALID = -EINVAL,
} EventStreamHeaderType;

/* One header. When decoding, every pointer is valid only during the frame callback; 'name' and
 * string values are NUL-terminated copies ('size' excludes the NUL; a string may contain NULs).
 * When encoding, the caller fills name, type and the matching value field. */
typedef struct EventStreamHeader {
        const char *name;
        EventStreamHeaderType type;
        bool boolean;           /* BOOL_TRUE / BOOL_FALSE (decoder sets it; encoder ignores it) */
        int64_t integer;        /* BYTE, SHORT, INTEGER, LONG, TIMESTAMP */
        const void *data;       /* BYTES, STRING */
        size_t size;            /* BYTES, STRING */
        uint8_t uuid[16];       /* UUID */
} EventStreamHeader;

/* A decoded frame. The well-known headers are looked up for convenience (NULL when absent or not a
 * string); all headers, in wire order, are in headers[]. Valid only during the frame callback. */
typedef struct EventStreamFrame {
        const char *message_type;       /* ":message-type": "event", "exception", "error" */
        const char *event_type;         /* ":event-type" */
        const char *exception_type;     /* ":exception-type" */
        const char *error_code;         /* ":error-code" */
        const char *error_message;      /* ":error-message" */
        const char *content_type;       /* ":content-type" */
        const EventStreamHeader *headers;
        size_t n_headers;
        const uint8_t *payload;
        size_t payload_size;
        size_t frame_size;              /* total_length of this frame */
} EventStreamFrame;

/* What went wrong, for error messages and tests. The negative errno returned alongside is given in
 * brackets. */
typedef enum EventStreamError {
        EVENTSTREAM_OK,
        EVENTSTREAM_ERROR_PRELUDE_CRC,  /* -EBADMSG */
        EVENTSTREAM_ERROR_MESSAGE_CRC,  /* -EBADMSG */
        EVENTSTREAM_ERROR_TOO_SMALL,    /* -EBADMSG: total_length < 16 */
        EVENTSTREAM_ERROR_TOO_LARGE,    /* -E2BIG: total_length > max frame size */
        EVENTSTREAM_ERROR_HEADERS,      /* -EBADMSG: headers_length or a header entry is malformed */
        EVENTSTREAM_ERROR_TRUNCATED,    /* -EPIPE: finish() with a partial frame buffered */
        EVENTSTREAM_ERROR_CALLBACK,     /* the frame callback's own negative return value */
        _EVENTSTREAM_ERROR_MAX,
        _EVENTSTREAM_ERROR_INVALID = -EINVAL,
} EventStreamError;

const char *eventstream_error_to_string(EventStreamError e) _pure_;
const char *eventstream_header_type_to_string(EventStreamHeaderType t) _pure_;

typedef struct EventStreamDecoder EventStreamDecoder;

/* Called once per complete, CRC-checked frame. A negative return stops decoding; it becomes the
 * decoder's sticky error and is returned by eventstream_decoder_feed(). */
typedef int (*eventstream_frame_handler_t)(const EventStreamFrame *frame, void *userdata);

/* max_frame_size 0 means EVENTSTREAM_MAX_FRAME_SIZE_DEFAULT; values below 16 or above
 * EVENTSTREAM_MAX_FRAME_SIZE_LIMIT are -EINVAL. */
int eventstream_decoder_new(size_t max_frame_size, eventstream_frame_handler_t handler, void *userdata,
                            EventStreamDecoder **ret);
EventStreamDecoder *eventstream_decoder_free(EventStreamDecoder *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(EventStreamDecoder *, eventstream_decoder_free);

/* Feeds bytes split at any boundary (one byte at a time works) and calls the handler for each frame
 * completed by them, in order. Returns 0, or the sticky error: once an error happened, every further
 * call returns it without looking at the data. An oversized frame is rejected as soon as its prelude
 * is complete, before its body is buffered. */
int eventstream_decoder_feed(EventStreamDecoder *d, const void *data, size_t size);

/* Declares the end of the input. Returns 0 when it ended on a frame boundary, -EPIPE
 * (EVENTSTREAM_ERROR_TRUNCATED) when a partial frame is left, or the sticky error. */
int eventstream_decoder_finish(EventStreamDecoder *d);

/* The sticky error (EVENTSTREAM_OK if none) and a human description of it, e.g. "message CRC
 * mismatch in frame 3: computed 0x1234abcd, frame says 0x00000000". The string stays valid until the
 * decoder is freed. */
EventStreamError eventstream_decoder_error(const EventStreamDecoder *d);
const char *eventstream_decoder_error_message(const EventStreamDecoder *d);

/* Number of complete frames delivered, and bytes consumed so far. */
uint64_t eventstream_decoder_n_frames(const EventStreamDecoder *d);
uint64_t eventstream_decoder_n_bytes(const EventStreamDecoder *d);

/* Encodes one frame into a malloc'ed buffer. Names must be 1..255 bytes, string/bytes values at most
 * 65535 bytes, the total at most EVENTSTREAM_MAX_FRAME_SIZE_LIMIT: -EINVAL otherwise. */
int eventstream_encode(const EventStreamHeader *headers, size_t n_headers, const void *payload,
                       size_t payload_size, uint8_t **ret, size_t *ret_size);

/* An event frame as Kiro sends it (KIRO-PROTOCOL A.11): headers ":event-type" = event_type,
 * ":content-type" = "application/json", ":message-type" = "event", then the payload. */
int eventstream_encode_event(const char *event_type, const char *payload, size_t payload_size,
                             uint8_t **ret, size_t *ret_size);

/* An exception frame: ":exception-type" first, then ":content-type" and ":message-type" =
 * "exception". */
int eventstream_encode_exception(const char *exception_type, const char *payload, size_t payload_size,
                                 uint8_t **ret, size_t *ret_size);

/* An error frame: ":message-type" = "error", ":error-code", ":error-message", empty payload. */
int eventstream_encode_error(const char *error_code, const char *error_message, uint8_t **ret,
                             size_t *ret_size);
