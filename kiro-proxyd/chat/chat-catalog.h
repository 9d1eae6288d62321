/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The live model catalog, as front ends see it: a back end that can list its models (Kiro's
 * ListAvailableModels, KIRO-PROTOCOL B §5.2) implements these ops; front ends ask it to refresh before
 * /v1/models and before refusing an unknown model, and put what it lists into chat-models' live list
 * (models_live_set()). Like chat-backend.h, part of the form a back end may include. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* One model a back end lists. */
typedef struct ModelLive {
        const char *id;                 /* Kiro's modelId */
        const char *display_name;       /* modelName, may be NULL */
        uint64_t context_window;        /* tokenLimits.maxInputTokens, 0 = not given */
        uint64_t max_output_tokens;     /* tokenLimits.maxOutputTokens, 0 = not given */
        bool thinking;                  /* its request-field schema allows thinking */
} ModelLive;


typedef struct ChatCatalogWait ChatCatalogWait;

/* Runs once when a refresh ended, whatever its outcome (the list is then in models_live_*()). */
typedef void (*ChatCatalogDone)(void *userdata);

typedef struct ChatCatalogOps {
        /* Makes the live list current: 1 when it is (fetched within the refresh interval, or a failed fetch
         * was retried too recently to try again) and done will not run; 0 when a fetch is under way: done
         * runs later and *ret may be cancelled until then; negative errno on failure. */
        int (*refresh)(void *data, ChatCatalogDone done, void *userdata, ChatCatalogWait **ret);
        /* Stops waiting; done will not run. */
        void (*cancel)(ChatCatalogWait *w);
        /* The list the last refresh settled on (for the credential in use), valid until the next refresh;
         * -ENODATA when none was ever fetched. */
        int (*list)(void *data, const ModelLive **ret, size_t *ret_n);
} ChatCatalogOps;

typedef struct ChatCatalog {
        const ChatCatalogOps *ops;      /* NULL: the built-in table only */
        void *data;
} ChatCatalog;
