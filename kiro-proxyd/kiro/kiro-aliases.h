/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tool-name aliasing (KIRO-PROTOCOL A.4 rule 10): names Kiro would refuse as too long are replaced by a
 * deterministic alias in the request, and mapped back to the client's name in the answer. */
#pragma once

#include <stddef.h>

#include "macro.h"
#include "strmap.h"

/* Tool names longer than this are replaced by an alias of exactly this length. */
#define KIRO_TOOL_NAME_MAX 64U

typedef struct KiroToolAlias {
        char *alias;            /* the name Kiro sees */
        char *name;             /* the client's name */
} KiroToolAlias;

typedef struct KiroToolAliases {
        KiroToolAlias *entries;
        size_t n, allocated;
        StrMap by_name;         /* client name → entry index + 1 */
        StrMap by_alias;        /* alias → entry index + 1 */
} KiroToolAliases;

void kiro_tool_aliases_done(KiroToolAliases *a);

/* The alias of a name longer than KIRO_TOOL_NAME_MAX bytes: its first 55 bytes (cut back to a UTF-8
 * boundary), '_', and the first 8 hex digits of the SHA-256 of the whole name. Deterministic, so the
 * same long name gets the same alias in every request of a conversation. -EINVAL for short names. */
int kiro_tool_name_alias(const char *name, char **ret);

/* The name Kiro sees for a client tool name: the name itself when it is short enough, else its alias,
 * recorded in a for the way back. *ret points into a or at name. */
int kiro_tool_aliases_get(KiroToolAliases *a, const char *name, const char **ret);

/* Maps a tool name from a Kiro response back to the client's name; returns 'name' itself when it is not
 * an alias (a NULL or empty map is fine). */
const char *kiro_tool_aliases_restore(const KiroToolAliases *a, const char *name);
