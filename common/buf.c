/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One growable byte buffer for every writer (JSON renderers, request builder, SSE). */
#include <stdarg.h>

#include "buf.h"
#include "json-util.h"

int buf_put(Buf *b, const void *data, size_t size) {
        if (b->size + size + 1 > b->allocated) {
                size_t n = MAX(b->allocated * 2, b->size + size + 1);
                n = MAX(n, (size_t) 256);
                char *p = realloc(b->data, n);
                if (!p)
                        return -ENOMEM;
                b->data = p;
                b->allocated = n;
        }
        if (size > 0)
                memcpy(b->data + b->size, data, size);
        b->size += size;
        b->data[b->size] = 0;
        return 0;
}

int buf_puts_many_internal(Buf *b, ...) {
        va_list ap;
        const char *s;
        int r = 0;

        va_start(ap, b);
        while (r >= 0 && (s = va_arg(ap, const char *)))
                r = buf_puts(b, s);
        va_end(ap);
        return r;
}

int buf_put_uint(Buf *b, uint64_t v) {
        char d[20], *p = d + sizeof d;

        do
                *--p = (char) ('0' + v % 10);
        while ((v /= 10) > 0);
        return buf_put(b, p, d + sizeof d - p);
}

int buf_putf(Buf *b, const char *fmt, ...) {
        va_list ap;
        char small[256];
        va_start(ap, fmt);
        int n = vsnprintf(small, sizeof small, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t) n < sizeof small)
                return buf_put(b, small, (size_t) n);
        _cleanup_free_ char *big = malloc((size_t) n + 1);
        if (!big)
                return -ENOMEM;
        va_start(ap, fmt);
        (void) vsnprintf(big, (size_t) n + 1, fmt, ap);
        va_end(ap);
        return buf_put(b, big, (size_t) n);
}

/* Bytes that need an escape in a JSON string: control characters, '"' and '\\'. */
static int put_json_escaped(Buf *b, const char *s, size_t size) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        int r = 0;

        size_t start = 0, i = 0;
        while (r >= 0) {
                i += json_plain_span(p + i, size - i);
                if (i >= size)
                        break;
                unsigned char ch = p[i];
                char u[6];
                const char *esc = u;
                size_t esc_len = 2;
                switch (ch) {
                case '"': esc = "\\\""; break;
                case '\\': esc = "\\\\"; break;
                case '\n': esc = "\\n"; break;
                case '\r': esc = "\\r"; break;
                case '\t': esc = "\\t"; break;
                default:
                        u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hex[ch >> 4], u[5] = hex[ch & 15];
                        esc_len = 6;
                }
                r = buf_put(b, s + start, i - start);
                if (r >= 0)
                        r = buf_put(b, esc, esc_len);
                start = ++i;
        }
        if (r >= 0)
                r = buf_put(b, s + start, size - start);
        return r;
}

int buf_put_json_string(Buf *b, const char *s, size_t size) {
        int r = buf_put(b, "\"", 1);
        if (r >= 0)
                r = put_json_escaped(b, s, size);
        if (r >= 0)
                r = buf_put(b, "\"", 1);
        return r;
}

size_t utf8_valid_span(const char *s, size_t size) {
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < size) {
                unsigned char c = p[i];
                size_t n;
                uint32_t cp, min;
                if (c < 0x80) {
                        i++;
                        continue;
                }
                if ((c & 0xE0) == 0xC0)
                        n = 2, cp = c & 0x1F, min = 0x80;
                else if ((c & 0xF0) == 0xE0)
                        n = 3, cp = c & 0x0F, min = 0x800;
                else if ((c & 0xF8) == 0xF0)
                        n = 4, cp = c & 0x07, min = 0x10000;
                else
                        break;
                if (n > size - i)
                        break;
                size_t k;
                for (k = 1; k < n && (p[i + k] & 0xC0) == 0x80; k++)
                        cp = (cp << 6) | (p[i + k] & 0x3F);
                /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8. */
                if (k < n || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                        break;
                i += n;
        }
        return i;
}

int buf_put_json_string_utf8(Buf *b, const char *s, size_t size) {
        int r = buf_put(b, "\"", 1);
        size_t i = 0;

        while (r >= 0 && i < size) {
                size_t n = utf8_valid_span(s + i, size - i);
                r = put_json_escaped(b, s + i, n);
                i += n;
                if (r >= 0 && i < size) {
                        r = buf_puts(b, "\\ufffd");
                        i++;
                }
        }
        if (r >= 0)
                r = buf_put(b, "\"", 1);
        return r;
}

void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf) {};
}

int buf_join(Buf *b, const char *sep, const char *s) {
        int r;

        if (b->size > 0) {
                r = buf_puts(b, sep);
                if (r < 0)
                        return r;
        }
        return buf_puts(b, s);
}

char *buf_steal(Buf *b) {
        char *s = b->data;

        if (!s)
                s = strdup("");
        *b = (Buf) {};
        return s;
}

void buf_erase(Buf *b) {
        if (b->data)
                explicit_bzero(b->data, b->allocated);
        buf_done(b);
}
