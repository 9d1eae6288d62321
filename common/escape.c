/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Client- and server-supplied text made safe for one log line: control characters escaped, length bounded. */
#include <assert.h>

#include "escape.h"

static const char hex[] = "0123456789abcdef";

/* Writes the escape of the character at s to out and returns its length (8 for a two-byte C1 control,
 * which consumes two input bytes), or 0 for a byte that is copied as it is. */
static size_t escape_one(const unsigned char *s, size_t left, char out[static 9]) {
        unsigned char c = s[0];

        switch (c) {
        case '\\':
                memcpy(out, "\\\\", 2);
                return 2;
        case '\n':
                memcpy(out, "\\n", 2);
                return 2;
        case '\r':
                memcpy(out, "\\r", 2);
                return 2;
        case '\t':
                memcpy(out, "\\t", 2);
                return 2;
        }
        if (c < 0x20 || c == 0x7f) {
                out[0] = '\\';
                out[1] = 'x';
                out[2] = hex[c >> 4];
                out[3] = hex[c & 0xf];
                return 4;
        }
        /* U+0080..U+009F (C1 controls, NEL among them) are 0xc2 0x80..0x9f in UTF-8. */
        if (c == 0xc2 && left >= 2 && s[1] >= 0x80 && s[1] <= 0x9f) {
                memcpy(out, "\\xc2\\x", 6);
                out[6] = hex[s[1] >> 4];
                out[7] = hex[s[1] & 0xf];
                return 8;
        }
        return 0;
}

const char *escape_mem_for_log(const void *p, size_t size, char *buf, size_t n) {
        const unsigned char *s = p;
        size_t o = 0, total = 0, reserve;

        assert(buf);
        assert(n >= 8);

        if (!p) {
                snprintf(buf, n, "(null)");
                return buf;
        }
        /* Dots are needed only when the whole escaped text does not fit. */
        for (size_t i = 0; i < size && total < n;) {
                char e[9];
                size_t k = escape_one(s + i, size - i, e);
                total += k > 0 ? k : 1;
                i += k == 8 ? 2 : 1;
        }
        reserve = total < n ? 0 : 3;

        for (size_t i = 0; i < size;) {
                char e[9];
                size_t k = escape_one(s + i, size - i, e), need = k > 0 ? k : 1;

                if (o + need + reserve + 1 > n) {
                        /* Do not leave half a UTF-8 character before the dots. */
                        size_t back = o;
                        while (back > 0 && ((unsigned char) buf[back - 1] & 0xc0) == 0x80)
                                back--;
                        if (back > 0 && (unsigned char) buf[back - 1] >= 0xc0) {
                                unsigned char lead = (unsigned char) buf[back - 1];
                                size_t len = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
                                if (o - (back - 1) < len)
                                        o = back - 1;
                        }
                        break;
                }
                if (k > 0)
                        memcpy(buf + o, e, k);
                else
                        buf[o] = (char) s[i];
                o += need;
                i += k == 8 ? 2 : 1;
        }
        if (reserve > 0) {
                memcpy(buf + o, "...", 3);
                o += 3;
        }
        buf[o] = 0;
        return buf;
}

const char *escape_for_log(const char *s, char *buf, size_t n) {
        return escape_mem_for_log(s, s ? strlen(s) : 0, buf, n);
}
