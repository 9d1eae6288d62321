/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Small helpers for kiroctl: sealed memfds and paths. */
#pragma once

#include <stdlib.h>

#include "macro.h"

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

#define assert_not_reached() abort()

/* Creates a memfd named 'name' holding data[0..size), positioned at offset 0 and sealed against any
 * change (F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE|F_SEAL_SEAL), so that whoever receives it may trust that
 * what they read is what we wrote. */
int memfd_new_sealed(const char *name, const void *data, size_t size, int *ret_fd);

/* Makes path absolute by prefixing the working directory when it is relative. Does not resolve links. */
int path_make_absolute_cwd(const char *path, char **ret);

/* Returns the directory part of path ("." when there is none). */
int path_dirname(const char *path, char **ret);

/* The user's home directory: $HOME when absolute, else the passwd entry. */
int get_home_dir(char **ret);

/* $XDG_DATA_HOME when absolute, else ~/.local/share. */
int get_user_data_dir(char **ret);

/* Quotes s for a POSIX shell when it needs quoting ('it'\''s'), else copies it. */
int shell_quote(const char *s, char **ret);
