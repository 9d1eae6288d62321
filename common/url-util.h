/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Regions and URLs built from configured templates: the one place server- or file-supplied text meets a
 * host name. */
#pragma once

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(CURLU *, curl_url_cleanup);

/* An AWS region as the services spell it, ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ("us-east-1", "eu-central-1",
 * "us-gov-west-1"), at most 32 characters. Everything read from an import, a stored credential or a
 * server answer passes this before it can reach a host name. */
#define REGION_MAX 32
bool region_is_valid(const char *s);

/* The region field of an ARN ("arn:aws:codewhisperer:<region>:<account>:profile/<id>") copied to buf
 * (REGION_MAX + 1 bytes are enough). -EINVAL when arn is not of that shape or its region fails
 * region_is_valid(). */
int arn_get_region(const char *arn, char *buf, size_t n);

/* Builds a URL from a configured template with libcurl's URL API (CURLU).
 *
 * template: a trusted absolute http:// or https:// URL in which "{region}" may appear in the host name
 *           and nowhere else ("https://prod.{region}.auth.desktop.kiro.dev"); no "{region}" is fine.
 * region:   must pass region_is_valid(); checked before anything is built.
 * path:     NULL, or a trusted literal ("/refreshToken") appended to the template's path.
 *
 * The host is replaced as a whole with CURLUPART_HOST, never by pasting text into the URL, so nothing can
 * move from the region into the path, query, fragment, port or user info. Returns 0 and a malloc'ed URL,
 * -EINVAL for an invalid region, a template libcurl cannot parse, another scheme or "{region}" outside
 * the host, -ENOMEM. */
int url_from_template(const char *template, const char *region, const char *path, char **ret);

/* Replaces each "{region}" in template as text, after checking region with region_is_valid() (-EINVAL).
 * For callers that still append a path themselves; new code uses url_from_template(). */
int url_expand_region(const char *template, const char *region, char **ret);
