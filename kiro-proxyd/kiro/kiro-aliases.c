/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tool-name aliasing for Kiro's name length limit. */
#include <assert.h>
#include <stdio.h>

#include "hash-util.h"
#include "kiro/kiro-aliases.h"

#define ALIAS_HASH_HEX 8U
#define ALIAS_PREFIX_MAX (KIRO_TOOL_NAME_MAX - 1 - ALIAS_HASH_HEX)

int kiro_tool_name_alias(const char *name, char **ret) {
        size_t l = strlen(name), prefix = ALIAS_PREFIX_MAX;
        uint8_t d[SHA256_DIGEST_SIZE];
        char h[2 * SHA256_DIGEST_SIZE + 1], *a;
        int r;

        assert(ret);

        if (l <= KIRO_TOOL_NAME_MAX)
                return -EINVAL;
        /* Do not cut a UTF-8 sequence in half. */
        while (prefix > 0 && ((unsigned char) name[prefix] & 0xC0) == 0x80)
                prefix--;
        r = sha256(name, l, d);
        if (r < 0)
                return r;
        (void) hex_encode(d, sizeof d, h);
        if (asprintf(&a, "%.*s_%.*s", (int) prefix, name, (int) ALIAS_HASH_HEX, h) < 0)
                return -ENOMEM;
        *ret = a;
        return 0;
}

void kiro_tool_aliases_done(KiroToolAliases *a) {
        if (!a)
                return;
        for (size_t i = 0; i < a->n; i++) {
                free(a->entries[i].alias);
                free(a->entries[i].name);
        }
        free(a->entries);
        strmap_done(&a->by_name);
        strmap_done(&a->by_alias);
        *a = (KiroToolAliases) {};
}

int kiro_tool_aliases_get(KiroToolAliases *a, const char *name, const char **ret) {
        _cleanup_free_ char *alias = NULL, *copy = NULL;
        uintptr_t idx;
        int r;

        assert(a);
        assert(name);
        assert(ret);

        if (strlen(name) <= KIRO_TOOL_NAME_MAX) {
                *ret = name;
                return 0;
        }
        idx = (uintptr_t) strmap_get(&a->by_name, name);
        if (idx > 0) {
                *ret = a->entries[idx - 1].alias;
                return 0;
        }

        r = kiro_tool_name_alias(name, &alias);
        if (r < 0)
                return r;
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        if (a->n == a->allocated) {
                size_t n = MAX(a->allocated * 2, (size_t) 4);
                KiroToolAlias *e = reallocarray(a->entries, n, sizeof(KiroToolAlias));
                if (!e)
                        return -ENOMEM;
                a->entries = e;
                a->allocated = n;
        }
        /* The maps borrow the strings of the entry, which live as long as a. */
        r = strmap_put(&a->by_name, copy, (void *) (uintptr_t) (a->n + 1));
        if (r >= 0)
                r = strmap_put(&a->by_alias, alias, (void *) (uintptr_t) (a->n + 1));
        if (r < 0) {
                /* Rebuilding is simpler than undoing one insertion: start the maps over. */
                strmap_done(&a->by_name);
                strmap_done(&a->by_alias);
                for (size_t i = 0; i < a->n; i++)
                        if (strmap_put(&a->by_name, a->entries[i].name, (void *) (uintptr_t) (i + 1)) < 0 ||
                            strmap_put(&a->by_alias, a->entries[i].alias, (void *) (uintptr_t) (i + 1)) < 0)
                                break;
                return -ENOMEM;
        }
        a->entries[a->n++] = (KiroToolAlias) { .alias = TAKE_PTR(alias), .name = TAKE_PTR(copy) };
        *ret = a->entries[a->n - 1].alias;
        return 0;
}

const char *kiro_tool_aliases_restore(const KiroToolAliases *a, const char *name) {
        uintptr_t idx;

        if (!a || !name || a->n == 0)
                return name;
        idx = (uintptr_t) strmap_get(&a->by_alias, name);
        return idx > 0 ? a->entries[idx - 1].name : name;
}
