/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SHA-256 and lower-case hex, for derived identifiers (tool-name aliases, conversation ids, signatures). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_SIZE 32U

/* The SHA-256 of size bytes at data. 0, or -EIO when the crypto library refuses. */
int sha256(const void *data, size_t size, uint8_t ret[static SHA256_DIGEST_SIZE]);
/* Writes the 2n lower-case hex digits of n bytes and a NUL to out (2n + 1 bytes); returns out. */
char *hex_encode(const void *p, size_t n, char *out);
