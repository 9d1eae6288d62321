/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A consistent, read-only copy of an SQLite database (WAL included) in a sealed memfd. */
#pragma once

#include <stdint.h>

#include "macro.h"

#define KIRO_CLI_DB_MAX ((uint64_t) 64 * 1024 * 1024)
#define SQLITE_BUSY_TIMEOUT_MSEC 2000U

/* Opens path read-only (never creating or changing it), takes a snapshot inside one read transaction so
 * that frames still in the -wal file are included, checks it with PRAGMA quick_check and returns it as a
 * sealed memfd. Errors:
 *   -ENOENT        the file does not exist
 *   -EISDIR        path is a directory (other non-regular files: -EBADFD)
 *   -EACCES/-EPERM the file cannot be read
 *   -ENODATA       the file is empty (no database pages)
 *   -EFBIG         the file or the snapshot is larger than max_size
 *   -EMEDIUMTYPE   not an SQLite database
 *   -EBADMSG       an SQLite database, but corrupt
 *   -EBUSY         still locked by a writer after busy_timeout_msec
 *   -EIO, -ENOMEM  and other errnos from the system
 * ret_sqlite_message, if given, receives SQLite's own description of the failure (or NULL). */
int sqlite_snapshot_to_memfd(
                const char *path,
                uint64_t max_size,
                unsigned busy_timeout_msec,
                int *ret_fd,
                uint64_t *ret_size,
                char **ret_sqlite_message);

/* Percent-encodes path into a "file:" URI with ?mode=ro (relative paths are made absolute). */
int sqlite_readonly_uri(const char *path, char **ret);

/* Where kiro-cli keeps its database: the first existing of $XDG_DATA_HOME/kiro-cli/data.sqlite3 (on macOS
 * ~/Library/Application Support/kiro-cli/data.sqlite3) and the legacy Amazon Q CLI
 * <data dir>/amazon-q/data.sqlite3. Returns 1 and the path when one exists, 0 and the preferred path
 * when none does. */
int kiro_cli_find_database(char **ret);
