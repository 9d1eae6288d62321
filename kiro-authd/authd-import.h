/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsing of import sources (kiro-cli SQLite snapshot, Kiro IDE token file, bare refresh token, API key)
 * into a CredentialRecord. Pure functions of their input: no bus, no store. */
#pragma once

#include "authd-credential.h"

#define IMPORT_SQLITE_MAX   (64 * 1024 * 1024)
#define IMPORT_JSON_MAX     (1024 * 1024)
#define IMPORT_SECRET_MAX   (16 * 1024)

typedef enum ImportFormat {
        IMPORT_KIRO_CLI_SQLITE,
        IMPORT_KIRO_IDE_JSON,
        IMPORT_REFRESH_TOKEN,
        IMPORT_API_KEY,
        _IMPORT_FORMAT_MAX,
        _IMPORT_FORMAT_INVALID = -EINVAL,
} ImportFormat;

const char *import_format_to_string(ImportFormat f);
ImportFormat import_format_from_string(const char *s);
/* The id a credential from this source gets when the caller names none. */
const char *import_format_default_id(ImportFormat f);

/* Errors: -EBADMSG (invalid source), -ENODATA (no token in it), -EFBIG (too large), -EKEYREJECTED (client
 * registration expired), -ENOMEM. *ret_message gets a specific, secret-free explanation on failure. */
int import_kiro_cli_sqlite(const void *data, size_t size, CredentialRecord **ret, char **ret_message);
int import_kiro_ide_json(const char *token, size_t token_size, const char *registration, size_t registration_size,
                         CredentialRecord **ret, char **ret_message);
int import_refresh_token(const char *data, size_t size, CredentialRecord **ret, char **ret_message);
int import_api_key(const char *data, size_t size, CredentialRecord **ret, char **ret_message);

/* Reads an fd with the cap of the format and dispatches. registration_fd may be -1. */
int import_from_fds(ImportFormat f, int fd, int registration_fd, CredentialRecord **ret, char **ret_message);
