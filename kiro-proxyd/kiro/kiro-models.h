/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kiro's live model list (ListAvailableModels, KIRO-PROTOCOL B §5.2): fetched with the chat's token and curl
 * glue when first needed, then again at most every KIRO_MODELS_REFRESH_USEC, one list per (region, profile);
 * the ChatCatalog of chat/chat-catalog.h. */
#pragma once

#include "chat/chat-catalog.h"
#include "json-util.h"
#include "kiro/kiro-upstream.h"

#define KIRO_MODELS_REFRESH_USEC (3600 * USEC_PER_SEC)
/* After a failed fetch: the table (or the last list) stays, and the next try waits this long. */
#define KIRO_MODELS_RETRY_USEC (60 * USEC_PER_SEC)
#define KIRO_MODELS_PATH "/ListAvailableModels"

typedef struct KiroModels KiroModels;

int kiro_models_new(Upstream *u, KiroModels **ret);
KiroModels *kiro_models_free(KiroModels *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(KiroModels *, kiro_models_free);

/* The catalog ops; data is the KiroModels. */
extern const ChatCatalogOps kiro_catalog_ops;

/* Parses one ListAvailableModels answer into list (appending; strings point into *ret_doc, which the
 * caller frees with json_object_put()) and its nextToken (NULL at the end). */
int kiro_models_parse(const char *body, size_t size, json_object **ret_doc, ModelLive **list, size_t *n,
                      const char **ret_next_token);
