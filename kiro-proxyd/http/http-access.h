/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Client API keys for kiro-proxyd: loading, and constant-time checking of a request's key. */
#pragma once

#include "macro.h"
#include "http/http.h"

typedef struct ApiKeys ApiKeys;

/* Name of the systemd credential (LoadCredential=kiro-proxyd-api-keys:…) read from $CREDENTIALS_DIRECTORY. */
#define APIKEYS_CREDENTIAL "kiro-proxyd-api-keys"
#define APIKEYS_FILE_MAX (1024U * 1024U)
#define APIKEYS_KEY_MAX 4096U

/* Parses a keys file: one key per line, surrounding white space trimmed, lines starting with '#' and
 * blank lines ignored. Only SHA-256 digests of the keys are kept. -EINVAL for a key with control
 * characters or longer than APIKEYS_KEY_MAX. */
int apikeys_parse(const char *text, size_t size, ApiKeys **ret);

/* Reads a keys file (warns if others can read it). */
int apikeys_load_file(const char *path, ApiKeys **ret);

/* APIKeysFile= if set (it must exist and hold a key), else the systemd credential if present (same),
 * else *ret = NULL: no keys configured, every request is allowed. Logs its errors. */
int apikeys_load(const char *keys_file, ApiKeys **ret);

/* Wipes the digests. */
ApiKeys *apikeys_free(ApiKeys *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(ApiKeys *, apikeys_free);

size_t apikeys_count(const ApiKeys *k);

/* Whether token is one of the keys: every stored key is compared (fixed-size digests, constant-time
 * comparison, no early exit). NULL keys (none configured) allow everything; a NULL token is refused. */
bool apikeys_check_token(const ApiKeys *k, const char *token);

/* Checks "Authorization: Bearer KEY" and "x-api-key: KEY"; either may carry the key. */
bool apikeys_check_headers(const ApiKeys *k, const char *authorization, const char *x_api_key);
bool apikeys_check(const ApiKeys *k, HttpRequest *r);
