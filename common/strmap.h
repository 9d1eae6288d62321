/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A small open-addressing hash map from borrowed strings to pointers, for sets and lookups that must stay
 * linear in hostile input (tool ids and names of a request). Keys are not copied: they must outlive their
 * entries. The hash is seeded per process, so colliding keys cannot be precomputed. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct StrMapEntry {
        const char *key;
        void *value;
        uint64_t hash;
        unsigned generation;    /* occupied when equal to the map's */
} StrMapEntry;

typedef struct StrMap {
        StrMapEntry *entries;
        size_t n, allocated;    /* allocated is 0 or a power of two */
        unsigned generation;
        bool ignore_case;       /* ASCII case-insensitive keys */
} StrMap;

#define STRMAP_INIT { .generation = 1 }
#define STRMAP_INIT_IGNORE_CASE { .generation = 1, .ignore_case = true }

/* Adds key → value. 0 when added, 1 when the key was there (its value is kept), -ENOMEM. */
int strmap_put(StrMap *m, const char *key, void *value);
/* The entry's value, or NULL when absent (store non-NULL values to tell the two apart). */
void *strmap_get(const StrMap *m, const char *key);
bool strmap_contains(const StrMap *m, const char *key);
/* Empties the map in O(1), keeping its memory for reuse. */
void strmap_clear(StrMap *m);
void strmap_done(StrMap *m);
