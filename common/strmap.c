/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Open addressing with linear probing; "deleting" is only clearing everything (a generation bump). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <systemd/sd-id128.h>

#include "strmap.h"

static uint64_t seed(void) {
        static uint64_t s;
        static bool done;

        if (!done) {
                sd_id128_t id = SD_ID128_NULL;
                (void) sd_id128_randomize(&id);
                s = id.qwords[0] ^ id.qwords[1];
                done = true;
        }
        return s;
}

static uint64_t hash(const char *key, bool ignore_case) {
        /* FNV-1a over the bytes, from a random offset, then a final mix (splitmix64). */
        uint64_t h = UINT64_C(0xcbf29ce484222325) ^ seed();
        for (const unsigned char *p = (const unsigned char *) key; *p; p++) {
                unsigned char c = *p;
                if (ignore_case && c >= 'A' && c <= 'Z')
                        c += 'a' - 'A';
                h = (h ^ c) * UINT64_C(0x100000001b3);
        }
        h ^= h >> 30;
        h *= UINT64_C(0xbf58476d1ce4e5b9);
        h ^= h >> 27;
        h *= UINT64_C(0x94d049bb133111eb);
        return h ^ (h >> 31);
}

static bool key_eq(const StrMap *m, const char *a, const char *b) {
        return m->ignore_case ? strcasecmp(a, b) == 0 : strcmp(a, b) == 0;
}

static StrMapEntry *find(const StrMap *m, const char *key, uint64_t h) {
        if (m->allocated == 0)
                return NULL;
        for (size_t i = h & (m->allocated - 1);; i = (i + 1) & (m->allocated - 1)) {
                StrMapEntry *e = m->entries + i;
                if (e->generation != m->generation)
                        return e;       /* the free slot where the key would go */
                if (e->hash == h && key_eq(m, e->key, key))
                        return e;
        }
}

static int grow(StrMap *m) {
        size_t n = m->allocated ? m->allocated * 2 : 16;
        StrMapEntry *old = m->entries;
        size_t old_n = m->allocated;
        unsigned old_generation = m->generation;

        if (n < m->allocated || n > SIZE_MAX / sizeof(StrMapEntry))
                return -ENOMEM;
        m->entries = calloc(n, sizeof(StrMapEntry));
        if (!m->entries) {
                m->entries = old;
                return -ENOMEM;
        }
        m->allocated = n;
        m->generation = 1;
        for (size_t i = 0; i < old_n; i++)
                if (old[i].generation == old_generation) {
                        StrMapEntry *e = find(m, old[i].key, old[i].hash);
                        *e = old[i];
                        e->generation = m->generation;
                }
        free(old);
        return 0;
}

int strmap_put(StrMap *m, const char *key, void *value) {
        uint64_t h = hash(key, m->ignore_case);
        StrMapEntry *e;

        if (m->generation == 0)
                m->generation = 1;
        e = find(m, key, h);
        if (e && e->generation == m->generation)
                return 1;
        /* At most half full: probes stay short. */
        if ((m->n + 1) * 2 > m->allocated) {
                int r = grow(m);
                if (r < 0)
                        return r;
                e = find(m, key, h);
        }
        *e = (StrMapEntry) { .key = key, .value = value, .hash = h, .generation = m->generation };
        m->n++;
        return 0;
}

void *strmap_get(const StrMap *m, const char *key) {
        StrMapEntry *e = find(m, key, hash(key, m->ignore_case));
        return e && e->generation == m->generation ? e->value : NULL;
}

bool strmap_contains(const StrMap *m, const char *key) {
        StrMapEntry *e = find(m, key, hash(key, m->ignore_case));
        return e && e->generation == m->generation;
}

void strmap_clear(StrMap *m) {
        m->n = 0;
        if (++m->generation == 0) {
                /* Wrapped: old entries could look occupied again. */
                if (m->entries)
                        memset(m->entries, 0, m->allocated * sizeof(StrMapEntry));
                m->generation = 1;
        }
}

void strmap_done(StrMap *m) {
        free(m->entries);
        *m = (StrMap) { .generation = 1, .ignore_case = m->ignore_case };
}
