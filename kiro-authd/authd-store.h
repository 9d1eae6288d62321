/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The credential store: one 0600 JSON file per credential under <state>/credentials/. */
#pragma once

#include "authd-credential.h"

typedef struct Store {
        int dir_fd;             /* <state>/credentials */
        char *path;
} Store;

/* Opens (creating with mode 0700) state_dir/credentials and removes stale temporary files. */
int store_open(const char *state_dir, Store *ret);
void store_close(Store *s);

/* Called for each credential file found; bad files are reported through on_bad and skipped. */
typedef int (*StoreLoadFunc)(CredentialRecord *c, void *userdata);   /* takes ownership of c */
typedef void (*StoreBadFunc)(const char *file, int error, const char *reason, void *userdata);
int store_load_all(Store *s, StoreLoadFunc on_credential, StoreBadFunc on_bad, void *userdata);

/* Writes c atomically (temp file, fsync, rename, fsync of the directory), mode 0600. Returns 0, 1 (written,
 * but the directory could not be synced) or < 0 (nothing changed), as write_file_atomic_at(). */
int store_save(Store *s, CredentialRecord *c);
int store_remove(Store *s, const char *id);
