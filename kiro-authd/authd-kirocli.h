/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiro-cli's database on disk (KIRO-PROTOCOL.md B §1.3), reached only through a directory fd that the user
 * passed: reading its login and writing rotated tokens back into it, for linked credentials (authd-link.h).
 *
 * SQLite opens files by name and resolves every symlink in a name itself (3.40 lstat()s and readlink()s
 * each component), so neither a path in the user's home nor /proc/self/fd/N/NAME (which SQLite would
 * resolve to the user's real path, needing search rights on every directory above it) is used. Instead
 * SQLite's unix VFS gets its path system calls (open, stat, lstat, access, unlink, readlink) wrapped: the
 * name "/.kirod-link-fd/N/NAME" means NAME in the directory fd N, opened with openat(N, NAME, O_NOFOLLOW)
 * (and NAME-wal, NAME-shm, NAME-journal beside it); every other name goes to the real call unchanged. A
 * symlink anywhere is refused, never followed. */
#pragma once

#include "authd-credential.h"
#include "hash-util.h"

/* How long a write-back waits for kiro-cli's lock before it gives up for now (the event loop waits that
 * long at most); then it is retried from a timer. */
#define KIROCLI_BUSY_TIMEOUT_MSEC 200

/* Reads the login in NAME (a kiro-cli database) of directory dir_fd with the same defences as an import
 * (authd-import.h): a consistent snapshot (including the -wal file) is taken through SQLite and parsed by
 * import_kiro_cli_sqlite_full(). Returns 0, an ImportError > 0 (*ret_message says what is wrong), or a
 * negative errno: -ENOENT (no such file), -ELOOP (a symlink), -EBADFD (not a regular file), -EACCES,
 * -EBUSY (locked by a writer for longer than KIROCLI_BUSY_TIMEOUT_MSEC), -EFBIG. *ret_key gets the
 * auth_kv key the login came from (a static string). */
int kirocli_db_read(int dir_fd, const char *name, CredentialRecord **ret, const char **ret_key,
                    char **ret_message);

/* A digest of what a login in the database is made of (the token and registration rows of auth_kv, the
 * profile in state), read with the same settings as kirocli_db_read() but without copying the database: a
 * change elsewhere (kiro-cli writes its conversations there on every turn) leaves it the same, so the
 * whole database is read only when a login may have changed. 0 or a negative errno. */
int kirocli_db_login_digest(int dir_fd, const char *name, uint8_t ret[static SHA256_DIGEST_SIZE]);

/* Writes c's access token, refresh token and expiry into the JSON value of key in auth_kv, keeping every
 * other field of that value and every other row: one transaction (BEGIN IMMEDIATE), and only if the row
 * still holds expect_refresh_token. Returns 0 when written; -EBUSY when the database stayed locked (retry
 * later); -ESTALE when the row is gone or holds another refresh token (kiro-cli wrote a login meanwhile:
 * read it again); an ImportError > 0 when it is not a kiro-cli database any more; another negative errno
 * (-ENOENT, -ELOOP, -EACCES, -EROFS, ...) otherwise. */
int kirocli_db_write_back(int dir_fd, const char *name, const char *key, const char *expect_refresh_token,
                          const CredentialRecord *c, char **ret_message);
