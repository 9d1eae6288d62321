/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Turning the user's credential sources into the sealed memfds that Import() receives. */
#pragma once

#include "kiroctl-error.h"

/* Token, key and JSON files are small; anything bigger is not what the user meant. */
#define SECRET_FILE_MAX ((size_t) 1024 * 1024)

#define KIRO_IDE_TOKEN_RELATIVE ".aws/sso/cache/kiro-auth-token.json"

/* Reads path ("-" is standard input; on a terminal, one line with echo off after printing prompt to
 * stderr) up to max bytes and returns a sealed memfd with the bytes. What is read is what kiro-authd gets:
 * a later change of the file, a pipe that never closes or a terminal cannot reach or stall the daemon.
 * The buffer is wiped. On failure e is filled with 'context' and the path. */
int import_read_file(const char *path, size_t max, const char *prompt, ErrorContext context, ErrorInfo *e,
                     int *ret_fd);

/* Reads the Kiro IDE token file at token_path, and when it names a clientIdHash the registration
 * <same directory>/<clientIdHash>.json beside it. Neither is validated beyond finding clientIdHash;
 * kiro-authd does that. *ret_registration_fd is -EBADF when the token names no registration. */
int import_kiro_ide(const char *token_path, ErrorInfo *e, int *ret_token_fd, int *ret_registration_fd,
                    char **ret_registration_path);

/* A snapshot of kiro-cli's database at db_path, or at the default location when NULL. Returns the memfd
 * and the absolute path that was used. */
int import_kiro_cli(const char *db_path, ErrorInfo *e, int *ret_fd, char **ret_path);
