/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* SHA-256 and lower-case hex. */
#include <errno.h>
#include <gnutls/crypto.h>

#include "hash-util.h"

int sha256(const void *data, size_t size, uint8_t ret[static SHA256_DIGEST_SIZE]) {
        return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, size, ret) < 0 ? -EIO : 0;
}

char *hex_encode(const void *p, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[b[i] >> 4];
                out[2 * i + 1] = digits[b[i] & 15];
        }
        out[2 * n] = 0;
        return out;
}
