/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Bounded reads and atomic file replacement. */
#pragma once

#include <dirent.h>
#include <sys/types.h>

#include "macro.h"

/* Reads all of fd (from its current offset, or from 0 when it is seekable) into a NUL-terminated buffer.
 * Fails with -EFBIG when more than max bytes are there. */
int read_full_fd(int fd, size_t max, char **ret, size_t *ret_size);

/* Whether fd refers to a memfd (its /proc/self/fd link reads "/memfd:…"). */
bool fd_is_memfd(int fd);

/* Reads a whole file, bounded by max. */
int read_full_file(const char *path, size_t max, char **ret, size_t *ret_size);

/* Replaces dirfd/name atomically: writes a temporary file in the same directory with 'mode', fsyncs it,
 * renames it over name and fsyncs the directory. On failure nothing is left behind and name is
 * untouched. */
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t size, mode_t mode);

/* Creates a directory (and its parents) with mode if missing. */
int mkdir_p(const char *path, mode_t mode);

/* The names in directory d (read from its start) that end in suffix, with something before it and not
 * starting with '.', sorted. d stays open. */
int dir_list_suffix(DIR *d, const char *suffix, char ***ret);
