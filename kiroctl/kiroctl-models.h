/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl models: the model catalog as kiro-proxyd serves it on GET /v1/models (the live list from Kiro
 * merged with the alias table), fetched over its unix socket or TCP with libcurl; when kiro-proxyd cannot be
 * reached, the built-in table (what kiro-proxyd serves before it has asked Kiro). */
#pragma once

#include <stdio.h>

#include "macro.h"

/* Where kiroctl looks for kiro-proxyd, in order, when --proxy is not given. */
#define KIROCTL_PROXY_DEFAULTS "unix:/run/kiro-proxyd/http.sock", "http://127.0.0.1:8399"

/* GET /v1/models from proxy ("unix:/path" or an http(s):// base URL), with api_key (may be NULL) as
 * a bearer token. Returns the body; -ECONNREFUSED and friends when it cannot be reached, -EPROTO on a
 * non-200 answer. Blocking (kiroctl is a command line tool). */
int models_fetch(const char *proxy, const char *api_key, char **ret_body, size_t *ret_size);

/* The built-in table as a /v1/models body (OpenAI's shape). */
int models_builtin_body(char **ret_body, size_t *ret_size);

/* Prints a /v1/models body: a table (one line per model, its "-thinking" variant folded into the aliases),
 * or with json the models as a JSON array of {id, display_name, context_window, max_output_tokens,
 * thinking, listed_by_kiro, aliases} plus the source. */
int models_print(FILE *f, const char *body, size_t size, bool json, const char *source, bool colors);
