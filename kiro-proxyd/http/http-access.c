/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Client API keys for kiro-proxyd: loading, and constant-time checking of a request's key. */
#include <assert.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <strings.h>
#include <sys/stat.h>

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
