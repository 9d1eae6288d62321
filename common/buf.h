/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One growable byte buffer, always NUL-terminated after its size, for every writer in kirod. */
#pragma once

#include "macro.h"

typedef struct Buf {
        char *data;
        size_t size, allocated;
} Buf;

int buf_put(Buf *b, const void *data, size_t size);
#define buf_puts(b, s) buf_put((b), (s), strlen(s))
/* Appends each string up to the terminating NULL (no format parsing: for per-token paths). */
int buf_puts_many_internal(Buf *b, ...);
#define buf_puts_many(b, ...) buf_puts_many_internal((b), __VA_ARGS__, (const char *) NULL)
/* Appends an unsigned number in decimal. */
int buf_put_uint(Buf *b, uint64_t v);
int buf_putf(Buf *b, const char *fmt, ...) _printf_(2, 3);
/* Appends s as a JSON string literal (with quotes). */
int buf_put_json_string(Buf *b, const char *s, size_t size);
/* The same for text that may not be UTF-8 (a client's bytes echoed into a message): each byte that does
 * not start a valid UTF-8 sequence becomes U+FFFD, so the result is always valid JSON. */
int buf_put_json_string_utf8(Buf *b, const char *s, size_t size);
/* The length of the longest prefix of s that is valid UTF-8 (no overlongs, surrogates, > U+10FFFF). */
size_t utf8_valid_span(const char *s, size_t size);
/* Appends s, preceded by sep when the buffer is not empty. */
int buf_join(Buf *b, const char *sep, const char *s);
/* Hands out the contents (an empty string when nothing was written) and resets b. NULL on OOM. */
char *buf_steal(Buf *b);
void buf_done(Buf *b);
/* buf_done() for buffers that held a secret: the whole allocation is wiped first. */
void buf_erase(Buf *b);
