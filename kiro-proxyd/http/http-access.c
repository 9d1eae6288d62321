/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Who may call kiro-proxyd: the Host/Origin/Content-Type policy against web pages, and client API keys. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <strings.h>
#include <sys/stat.h>

#include "escape.h"
#include "fileio.h"
#include "log.h"
#include "http/http-access.h"

#define DIGEST_SIZE 32  /* SHA-256 */

/* Only digests are kept: comparing fixed-size values hides the keys' lengths, and a memory dump does not
 * hand out the keys themselves. */
struct ApiKeys {
        uint8_t (*digests)[DIGEST_SIZE];
        size_t n;
};

ApiKeys *apikeys_free(ApiKeys *k) {
        if (!k)
                return NULL;
        erase_and_free_sized(k->digests, k->n * DIGEST_SIZE);
        free(k);
        return NULL;
}

size_t apikeys_count(const ApiKeys *k) {
        return k ? k->n : 0;
}

static int digest(const char *s, size_t n, uint8_t out[static DIGEST_SIZE]) {
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, s, n, out) < 0)
                return -EIO;
        return 0;
}

static bool is_space(char c) {
        return c == ' ' || c == '\t' || c == '\r';
}

int apikeys_parse(const char *text, size_t size, ApiKeys **ret) {
        _cleanup_(apikeys_freep) ApiKeys *k = NULL;
        const char *p = text, *end = text + size;
        int r;

        assert(text || size == 0);
        assert(ret);

        k = calloc(1, sizeof(ApiKeys));
        if (!k)
                return -ENOMEM;

        while (p < end) {
                const char *eol = memchr(p, '\n', end - p) ?: end;
                const char *a = p, *b = eol;
                void *nd;

                p = eol < end ? eol + 1 : end;

                while (a < b && is_space(*a))
                        a++;
                while (b > a && is_space(b[-1]))
                        b--;
                if (a == b || *a == '#')
                        continue;
                if ((size_t) (b - a) > APIKEYS_KEY_MAX)
                        return -EINVAL;
                for (const char *c = a; c < b; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                return -EINVAL;

                /* Grow by hand rather than realloc(), which would free the old block unwiped. */
                nd = calloc(k->n + 1, DIGEST_SIZE);
                if (!nd)
                        return -ENOMEM;
                if (k->n > 0)
                        memcpy(nd, k->digests, k->n * DIGEST_SIZE);
                erase_and_free_sized(k->digests, k->n * DIGEST_SIZE);
                k->digests = nd;
                r = digest(a, b - a, k->digests[k->n]);
                if (r < 0)
                        return r;
                k->n++;
        }

        *ret = TAKE_PTR(k);
        return 0;
}

int apikeys_load_file(const char *path, ApiKeys **ret) {
        _cleanup_close_ int fd = -EBADF;
        char *buf = NULL;
        size_t size = 0;
        struct stat st;
        int r;

        assert(path);
        assert(ret);

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_mode & 0004)
                log_warning("API keys file '%s' is readable by every user; chmod o-r it.", path);

        r = read_full_fd(fd, APIKEYS_FILE_MAX, &buf, &size);
        if (r < 0)
                return r;
        r = apikeys_parse(buf, size, ret);
        erase_and_free_sized(buf, size);
        return r;
}

int apikeys_load(const char *keys_file, ApiKeys **ret) {
        _cleanup_(apikeys_freep) ApiKeys *k = NULL;
        _cleanup_free_ char *cred = NULL;
        const char *path = keys_file, *dir;
        int r;

        assert(ret);

        if (isempty(path)) {
                dir = getenv("CREDENTIALS_DIRECTORY");
                if (isempty(dir)) {
                        *ret = NULL;
                        return 0;
                }
                if (asprintf(&cred, "%s/%s", dir, APIKEYS_CREDENTIAL) < 0)
                        return log_oom();
                if (access(cred, F_OK) < 0) {
                        if (errno != ENOENT)
                                return log_error_errno(errno, "Failed to access credential '%s': %m", cred);
                        *ret = NULL;
                        return 0;
                }
                path = cred;
        }

        r = apikeys_load_file(path, &k);
        if (r == -EINVAL)
                return log_error_errno(r, "API keys file '%s' has a key with control characters or longer "
                                       "than %u bytes.", path, APIKEYS_KEY_MAX);
        if (r == -EBADFD)
                return log_error_errno(r, "API keys file '%s' is not a regular file.", path);
        if (r == -EFBIG)
                return log_error_errno(r, "API keys file '%s' is larger than %u bytes.", path, APIKEYS_FILE_MAX);
        if (r < 0)
                return log_error_errno(r, "Failed to read API keys file '%s': %m", path);
        /* A configured but empty file is a mistake (a failed deployment?): failing open would serve
         * everyone. */
        if (k->n == 0)
                return log_error_errno(ENOKEY, "API keys file '%s' holds no key; refusing to run without "
                                       "client authentication when it was asked for.", path);

        log_info("Loaded %zu client API key(s) from '%s'.", k->n, path);
        *ret = TAKE_PTR(k);
        return 0;
}

bool apikeys_check_token(const ApiKeys *k, const char *token) {
        uint8_t d[DIGEST_SIZE];
        unsigned match = 0;

        if (!k)
                return true;
        if (!token)
                return false;
        if (digest(token, strlen(token), d) < 0)
                return false;

        /* Compare against every key; no early exit. */
        for (size_t i = 0; i < k->n; i++)
                match |= (unsigned) (gnutls_memcmp(d, k->digests[i], DIGEST_SIZE) == 0);

        explicit_bzero(d, sizeof(d));
        return match != 0;
}

/* "Bearer KEY" (scheme case-insensitive) → KEY; anything else → NULL. */
static const char *bearer_token(const char *authorization) {
        const char *p;

        if (!authorization)
                return NULL;
        p = authorization + strspn(authorization, " \t");
        if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
                return NULL;
        p += 6;
        p += strspn(p, " \t");
        return *p ? p : NULL;
}

bool apikeys_check_headers(const ApiKeys *k, const char *authorization, const char *x_api_key) {
        bool a, b;

        if (!k)
                return true;
        /* Evaluate both, so the time does not tell which header carried a valid key. */
        a = apikeys_check_token(k, bearer_token(authorization));
        b = apikeys_check_token(k, x_api_key);
        return a | b;
}

bool apikeys_check(const ApiKeys *k, HttpRequest *r) {
        assert(r);
        if (!k)
                return true;
        return apikeys_check_headers(k, http_request_header(r, "Authorization"),
                                     http_request_header(r, "x-api-key"));
}

/* ── Web pages ────────────────────────────────────────────────────────────────────────────────────── */

void http_access_policy_done(HttpAccessPolicy *p) {
        p->allowed_hosts = strv_free(p->allowed_hosts);
        p->allowed_origins = strv_free(p->allowed_origins);
}

int http_host_split(const char *value, char **ret_host, unsigned *ret_port) {
        const char *host, *host_end, *port = NULL;
        unsigned n = 0;
        char *h;

        assert(value);

        if (value[0] == '[') {
                host = value + 1;
                host_end = strchr(host, ']');
                if (!host_end || host_end == host)
                        return -EINVAL;
                if (host_end[1] == ':')
                        port = host_end + 2;
                else if (host_end[1] != 0)
                        return -EINVAL;
        } else {
                const char *colon = strchr(value, ':');
                host = value;
                host_end = colon ?: value + strlen(value);
                if (colon) {
                        if (strchr(colon + 1, ':'))
                                return -EINVAL;         /* an IPv6 literal without brackets */
                        port = colon + 1;
                }
        }
        if (port) {
                if (!*port || strlen(port) > 5)
                        return -EINVAL;
                for (const char *c = port; *c; c++) {
                        if (*c < '0' || *c > '9')
                                return -EINVAL;
                        n = n * 10 + (unsigned) (*c - '0');
                }
                if (n == 0 || n > 65535)
                        return -EINVAL;
        }
        /* A trailing dot names the same host ("localhost." is localhost). */
        if (host_end > host && host_end[-1] == '.' && value[0] != '[')
                host_end--;
        if (host_end == host)
                return -EINVAL;
        for (const char *c = host; c < host_end; c++)
                if ((unsigned char) *c <= ' ' || *c == 0x7f || strchr("/?#@\\[]", *c))
                        return -EINVAL;
        h = strndup(host, host_end - host);
        if (!h)
                return -ENOMEM;
        for (char *c = h; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        *ret_host = h;
        if (ret_port)
                *ret_port = n;
        return 0;
}

static bool host_is_loopback(const char *h) {
        struct in_addr a4;
        struct in6_addr a6;
        size_t l = strlen(h);

        if (streq(h, "localhost"))
                return true;
        /* RFC 6761: *.localhost is loopback, and browsers resolve it so without asking DNS. */
        if (l > strlen(".localhost") && streq(h + l - strlen(".localhost"), ".localhost"))
                return true;
        /* inet_pton() takes only the dotted quad, not "127.1" or octal forms. */
        if (inet_pton(AF_INET, h, &a4) == 1)
                return (ntohl(a4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, h, &a6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
        return false;
}

bool http_host_is_loopback(const char *value) {
        _cleanup_free_ char *h = NULL;

        if (!value || http_host_split(value, &h, NULL) < 0)
                return false;
        return host_is_loopback(h);
}

bool http_access_host_allowed(const HttpAccessPolicy *p, const char *value) {
        _cleanup_free_ char *h = NULL;
        unsigned port;

        if (!value || http_host_split(value, &h, &port) < 0)
                return false;
        if (host_is_loopback(h))
                return true;
        STRV_FOREACH(a, p ? p->allowed_hosts : NULL) {
                _cleanup_free_ char *ah = NULL;
                unsigned ap;

                if (http_host_split(*a, &ah, &ap) < 0)
                        continue;
                /* An entry without a port allows every port. */
                if (streq(ah, h) && (ap == 0 || ap == port))
                        return true;
        }
        return false;
}

static size_t origin_length(const char *o) {
        size_t l = strlen(o);
        /* "http://x/" as configured means "http://x", which is what browsers send. */
        return l > 0 && o[l - 1] == '/' ? l - 1 : l;
}

bool http_access_origin_allowed(const HttpAccessPolicy *p, const char *origin) {
        if (!origin)
                return false;
        STRV_FOREACH(a, p ? p->allowed_origins : NULL) {
                size_t l = origin_length(*a);
                if (strlen(origin) == l && strncasecmp(*a, origin, l) == 0)
                        return true;
        }
        return false;
}

bool http_content_type_is_json(const char *value) {
        static const char json[] = "application/json";
        const char *p;

        if (!value)
                return false;
        p = value + strspn(value, " \t");
        if (strncasecmp(p, json, sizeof json - 1) != 0)
                return false;
        p += sizeof json - 1;
        p += strspn(p, " \t");
        return *p == 0 || *p == ';';
}

int http_access_policy_verify(const HttpAccessPolicy *p) {
        STRV_FOREACH(a, p->allowed_hosts) {
                _cleanup_free_ char *h = NULL;
                int r = http_host_split(*a, &h, NULL);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        return log_error_errno(EINVAL, "AllowedHosts= entry '%s' is not a host name or IP literal "
                                               "with an optional :port.", LOG_ESC(*a));
        }
        STRV_FOREACH(a, p->allowed_origins) {
                const char *rest = startswith(*a, "http://") ?: startswith(*a, "https://");
                _cleanup_free_ char *h = NULL, *hostport = NULL;
                int r;

                if (rest) {
                        hostport = strndup(rest, origin_length(rest));
                        if (!hostport)
                                return log_oom();
                }
                r = hostport ? http_host_split(hostport, &h, NULL) : -EINVAL;
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0 || strchr(hostport, '/'))
                        return log_error_errno(EINVAL, "AllowedOrigins= entry '%s' is not an origin "
                                               "(http:// or https://, a host, an optional :port, no path).",
                                               LOG_ESC(*a));
        }
        return 0;
}

/* Access-Control-Request-Headers is echoed back to an allowed origin (the SDKs send many x-stainless-*
 * headers): only a bounded list of header names, nothing that could end the line. */
static bool header_list_ok(const char *v) {
        if (strlen(v) > 1024)
                return false;
        for (const char *c = v; *c; c++)
                if (!isalnum((unsigned char) *c) && !strchr("-_ ,", *c))
                        return false;
        return true;
}

static int answer_preflight(HttpRequest *r, const char *origin) {
        _cleanup_free_ char *allow_origin = NULL, *allow_headers = NULL;
        const char *req_headers = http_request_header(r, "Access-Control-Request-Headers");
        const char *headers[6] = {};
        size_t n = 0;

        if (asprintf(&allow_origin, "Access-Control-Allow-Origin: %s", origin) < 0)
                return -ENOMEM;
        headers[n++] = allow_origin;
        headers[n++] = "Access-Control-Allow-Methods: GET, POST";
        if (req_headers && header_list_ok(req_headers)) {
                if (asprintf(&allow_headers, "Access-Control-Allow-Headers: %s", req_headers) < 0)
                        return -ENOMEM;
                headers[n++] = allow_headers;
        }
        headers[n++] = "Access-Control-Max-Age: 600";
        headers[n++] = "Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
        return http_request_respond(r, 204, NULL, NULL, 0, headers);
}

static int refuse(HttpRequest *r, unsigned status, const char *message) {
        int k = http_request_respond_error(r, status, message);
        return k < 0 && k != -ECONNRESET ? k : 1;
}

int http_access_check(const HttpAccessPolicy *p, HttpRequest *r) {
        const char *host = http_request_header(r, "Host"), *origin = http_request_header(r, "Origin");
        const char *method = http_request_method(r);
        int k;

        assert(r);

        if (host && !http_request_is_unix(r) && !http_access_host_allowed(p, host)) {
                log_debug("Refusing %s '%s': Host '%s' is neither loopback nor in AllowedHosts=.",
                          LOG_ESC(method), LOG_ESC(http_request_path(r)), LOG_ESC(host));
                return refuse(r, 403, "The Host header names neither a loopback address nor a name in "
                              "AllowedHosts=: kiro-proxyd does not answer requests made through other names "
                              "(DNS rebinding).");
        }

        if (origin) {
                bool preflight = streq(method, "OPTIONS") &&
                                 http_request_header(r, "Access-Control-Request-Method");

                if (!http_access_origin_allowed(p, origin)) {
                        log_debug("Refusing %s '%s' from web origin '%s' (not in AllowedOrigins=).",
                                  LOG_ESC(method), LOG_ESC(http_request_path(r)), LOG_ESC(origin));
                        return refuse(r, 403, "Requests from web pages (with an Origin header) are refused "
                                      "unless the origin is listed in AllowedOrigins=.");
                }
                if (preflight) {
                        k = answer_preflight(r, origin);
                        return k < 0 && k != -ECONNRESET ? k : 1;
                }
                _cleanup_free_ char *line = NULL;
                if (asprintf(&line, "Access-Control-Allow-Origin: %s", origin) < 0)
                        return -ENOMEM;
                k = http_request_add_response_header(r, line);
                if (k >= 0)
                        k = http_request_add_response_header(r, "Vary: Origin");
                if (k < 0)
                        return k;
        }

        if (streq(method, "POST") && !http_content_type_is_json(http_request_header(r, "Content-Type"))) {
                log_debug("Refusing POST '%s': Content-Type '%s' is not application/json.",
                          LOG_ESC(http_request_path(r)), LOG_ESC(http_request_header(r, "Content-Type")));
                return refuse(r, 415, "Content-Type must be application/json.");
        }
        return 0;
}
