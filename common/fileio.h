/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bounded reads and atomic file replacement. */
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include "macro.h"

/* Reads all of fd (from its current offset, or from 0 when it is seekable) into a NUL-terminated buffer.
 * Fails with -EFBIG when more than max bytes are there. Safe for secrets: a regular file is read into a
 * buffer of its size, and a buffer that grows is copied and the old one wiped before it is freed (never
 * realloc()), as is the buffer on failure. The caller wipes the result. */
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_size);

/* Whether fd refers to a memfd (its /proc/self/fd link reads "/memfd:…"). */
bool fd_is_memfd(int fd);

/* Reads a whole file, bounded by max. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_size);

/* Replaces dirfd/name atomically: writes a temporary file in the same directory with 'mode', fsyncs it,
 * renames it over name and fsyncs the directory.
 *   0: name has the new content, durably.
 *   1: name has the new content (every reader sees it; the rename happened), but syncing the directory
 *      failed, so whether it survives a crash is unknown. Not an error: nothing may be undone or
 *      reported as unchanged. Callers that need durability write again later.
 *   < 0: failed before the rename; nothing is left behind and name is untouched. */
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t size, mode_t mode);

/* Creates a directory (and its parents) with mode if missing. */
int mkdir_p(const char *path, mode_t mode);

/* The names in directory d (read from its start) that end in suffix, with something before it and not
 * starting with '.', sorted. d stays open. */
int dir_list_suffix(DIR *d, const char *suffix, char ***ret);
