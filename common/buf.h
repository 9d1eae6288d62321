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
/* Appends s, preceded by sep when the buffer is not empty. */
int buf_join(Buf *b, const char *sep, const char *s);
/* Hands out the contents (an empty string when nothing was written) and resets b. NULL on OOM. */
char *buf_steal(Buf *b);
void buf_done(Buf *b);
/* buf_done() for buffers that held a secret: the whole allocation is wiped first. */
void buf_erase(Buf *b);
