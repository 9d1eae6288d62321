/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsing of import sources (kiro-cli SQLite snapshot, Kiro IDE token file, bare refresh token, API key)
 * into a CredentialRecord. Pure functions of their input: no bus, no store. */
#pragma once

#include <fcntl.h>

#include "authd-credential.h"

/* The seals a memfd passed to Import() must carry: kiroctl's memfd_new_sealed() adds these and
 * F_SEAL_SEAL. */
#define IMPORT_MEMFD_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK)

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

/* Domain errors of the parsers, returned as positive numbers beside negative errnos (dbus-broker's
 * error.h style): a negative return is always a real system error (-ENOMEM, a failed read), never a
 * verdict on the source, so no syscall's errno can read as "registration expired". */
typedef enum ImportError {
        _IMPORT_E_SUCCESS,
        IMPORT_E_INVALID,               /* not what the format says, corrupt, or a field fails validation */
        IMPORT_E_NO_TOKEN,              /* a valid source without a login in it */
        IMPORT_E_TOO_LARGE,             /* over the size cap of the format, or a value over its cap */
        IMPORT_E_REGISTRATION_EXPIRED,  /* the OIDC client registration expired: log in again */
        IMPORT_E_BAD_FD,                /* not a regular file or a sealed memfd (a FIFO, socket, device, …) */
        IMPORT_E_TOO_COSTLY,            /* the database takes more work to read than a kiro-cli one can */
        IMPORT_E_UNSUPPORTED_FORMAT,
        _IMPORT_E_MAX,
} ImportError;

const char *import_format_to_string(ImportFormat f);
ImportFormat import_format_from_string(const char *s);
/* The id a credential gets when the caller names none: authd-ids.h. */

/* Return 0, an ImportError > 0, or a negative errno. *ret_message gets a specific, secret-free explanation
 * for every ImportError (and for failed reads). Regions (the token's, the registration's, the profile
 * ARN's) must pass region_is_valid(), else IMPORT_E_INVALID.
 *
 * The SQLite image is untrusted (the bus can be called directly, not only by kiroctl): it is opened from
 * a private copy with views and triggers disabled, defensive mode, an untrusted schema, tight
 * sqlite3_limit()s, a step budget (IMPORT_SQLITE_STEP_BUDGET) in a progress handler, cell_size_check and
 * quick_check; 'auth_kv' and 'state' must be plain tables; an authorizer allows only reading them; a
 * value over IMPORT_JSON_MAX is refused. SQLite's memory is wiped on free. */
/* Measured: a 61 MB kiro-cli-like database (3000 rows of conversations) needs 550k steps; a recursive CTE
 * burns 50M steps in about 1.7 s (-O2), so a hostile database costs at most that. */
#define IMPORT_SQLITE_STEP_BUDGET (50 * 1000 * 1000)
int import_kiro_cli_sqlite(const void *data, size_t size, CredentialRecord **ret, char **ret_message);
/* The same with another step budget (SQLite VM instructions), for tests. */
int import_kiro_cli_sqlite_budget(const void *data, size_t size, uint64_t steps, CredentialRecord **ret,
                                  char **ret_message);
/* The same, and *ret_key gets the auth_kv key the login was read from (a static string). */
int import_kiro_cli_sqlite_full(const void *data, size_t size, uint64_t steps, CredentialRecord **ret,
                                const char **ret_key, char **ret_message);
int import_kiro_ide_json(const char *token, size_t token_size, const char *registration, size_t registration_size,
                         CredentialRecord **ret, char **ret_message);
int import_refresh_token(const char *data, size_t size, CredentialRecord **ret, char **ret_message);
int import_api_key(const char *data, size_t size, CredentialRecord **ret, char **ret_message);

/* For the other readers of kiro-cli databases (authd-kirocli.c): SQLite's wiping allocator, installed before
 * SQLite initializes; the untrusted-database settings and limits above; the check that 'auth_kv' is a
 * plain table (0, an ImportError or a negative errno). */
struct sqlite3;
void import_sqlite_init(void);
void import_sqlite_harden(struct sqlite3 *db);
int import_sqlite_check_auth_kv(struct sqlite3 *db, char **ret_message);

/* Reads an fd with the cap of the format and dispatches. registration_fd may be -1. Both must be regular
 * files, and a memfd must carry F_SEAL_WRITE, F_SEAL_GROW and F_SEAL_SHRINK (as kiroctl seals them):
 * anything else (a FIFO, socket or device could block the daemon; a writable memfd could change under
 * the parser) is IMPORT_E_BAD_FD. */
int import_from_fds(ImportFormat f, int fd, int registration_fd, CredentialRecord **ret, char **ret_message);
