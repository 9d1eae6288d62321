/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may call kiro-proxyd: the Host/Origin/Content-Type policy against web pages, and client API keys. */
#pragma once

#include "macro.h"
#include "http/http.h"

typedef struct ApiKeys ApiKeys;

/* Name of the systemd credential (LoadCredential=kiro-proxyd-api-keys:…) read from $CREDENTIALS_DIRECTORY. */
#define APIKEYS_CREDENTIAL "kiro-proxyd-api-keys"
#define APIKEYS_FILE_MAX (1024U * 1024U)
#define APIKEYS_KEY_MAX 4096U

/* Parses a keys file: one key per line, surrounding white space trimmed, lines starting with '#' and
 * blank lines ignored. Only SHA-256 digests of the keys are kept. -EINVAL for a key with control
 * characters or longer than APIKEYS_KEY_MAX. */
int apikeys_parse(const char *text, size_t size, ApiKeys **ret);

/* Reads a keys file (warns if others can read it). */
int apikeys_load_file(const char *path, ApiKeys **ret);

/* APIKeysFile= if set (it must exist and hold a key), else the systemd credential if present (same),
 * else *ret = NULL: no keys configured, every request is allowed. Logs its errors. */
int apikeys_load(const char *keys_file, ApiKeys **ret);

/* Wipes the digests. */
ApiKeys *apikeys_free(ApiKeys *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(ApiKeys *, apikeys_free);

size_t apikeys_count(const ApiKeys *k);

/* Whether token is one of the keys: every stored key is compared (fixed-size digests, constant-time
 * comparison, no early exit). NULL keys (none configured) allow everything; a NULL token is refused. */
bool apikeys_check_token(const ApiKeys *k, const char *token);

/* Checks "Authorization: Bearer KEY" and "x-api-key: KEY"; either may carry the key. */
bool apikeys_check_headers(const ApiKeys *k, const char *authorization, const char *x_api_key);
bool apikeys_check(const ApiKeys *k, HttpRequest *r);

/* ── Web pages ──────────────────────────────────────────────────────────────────────────────────────
 *
 * Loopback is no boundary against the user's browser: any page can POST to 127.0.0.1 (a "simple" CORS
 * request needs no preflight), and with DNS rebinding read the answer under its own name. So a request
 * is served only if
 *   - its Host names loopback (localhost, *.localhost, 127.0.0.0/8, [::1], any port) or an AllowedHosts=
 *     entry; a request without Host (HTTP/1.0) is accepted, browsers always send one; on the unix socket
 *     Host is not checked at all (no browser connects there; a reverse proxy in front of it may forward
 *     any name);
 *   - it carries no Origin, or an Origin equal to an AllowedOrigins= entry (none by default). CORS
 *     preflights (OPTIONS with Origin and Access-Control-Request-Method) are answered 204 for those
 *     origins and refused for others; responses to allowed origins carry Access-Control-Allow-Origin;
 *   - a POST says Content-Type: application/json (parameters such as charset allowed), which no page
 *     can send without a preflight.
 * The same rules hold on every path, /healthz included. */

typedef struct HttpAccessPolicy {
        char **allowed_hosts;   /* AllowedHosts=: host names or IP literals, optionally with ":port" */
        char **allowed_origins; /* AllowedOrigins=: "scheme://host[:port]", compared case-insensitively */
} HttpAccessPolicy;

void http_access_policy_done(HttpAccessPolicy *p);
/* Checks the configured entries; logs and returns -EINVAL for one that can never match. */
int http_access_policy_verify(const HttpAccessPolicy *p);

/* Splits a Host value into its host (brackets removed for IPv6) and port (0 if absent). -EINVAL for
 * anything that is not host[:port] with a 1..65535 port. ret_host is a malloc'ed lower-case copy without
 * a trailing dot. */
int http_host_split(const char *value, char **ret_host, unsigned *ret_port);
/* Whether a Host value names the loopback interface: localhost, *.localhost, 127.0.0.0/8, [::1] (and
 * ::ffff:127.0.0.0/104), with or without a port. */
bool http_host_is_loopback(const char *value);
bool http_access_host_allowed(const HttpAccessPolicy *p, const char *value);
bool http_access_origin_allowed(const HttpAccessPolicy *p, const char *origin);
/* "application/json", any case, with optional parameters ("; charset=utf-8"). */
bool http_content_type_is_json(const char *value);

/* Applies the policy to r from the headers handler. Returns 1 when it answered r (a refusal in the
 * API's error shape through http_request_respond_error(): 403 for Host or Origin, 415 for
 * Content-Type; or a preflight's 204), 0 when r may go on (with Access-Control-Allow-Origin added to
 * its response for an allowed origin), negative errno on failure. */
int http_access_check(const HttpAccessPolicy *p, HttpRequest *r);
