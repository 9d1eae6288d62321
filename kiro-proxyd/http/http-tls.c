/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The certificate and key of a TLS listener, read once and handed to libmicrohttpd. */
#include <assert.h>

#include "fileio.h"
#include "log.h"
#include "http/http-internal.h"

#define TLS_FILE_MAX (1024U * 1024U)

/* ── TLS material ─────────────────────────────────────────────────────────────────────────────────── */

HttpTLS *http_tls_free(HttpTLS *t) {
        if (!t)
                return NULL;
        free(t->cert);
        erase_and_free_sized(t->key, t->key_size);
        free(t);
        return NULL;
}

int http_tls_load(const char *cert_file, const char *key_file, HttpTLS **ret) {
        _cleanup_(http_tls_freep) HttpTLS *t = NULL;
        size_t n;
        int r;

        assert(cert_file);
        assert(key_file);
        assert(ret);

        t = calloc(1, sizeof(HttpTLS));
        if (!t)
                return log_oom();
        r = read_full_file(cert_file, TLS_FILE_MAX, &t->cert, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to read TLS certificate '%s': %m", cert_file);
        r = read_full_file(key_file, TLS_FILE_MAX, &t->key, &t->key_size);
        if (r < 0)
                return log_error_errno(r, "Failed to read TLS key '%s': %m", key_file);
        if (strlen(t->cert) != n || strlen(t->key) != t->key_size)
                return log_error_errno(EINVAL, "TLS certificate or key file contains NUL bytes; PEM expected.");

        *ret = TAKE_PTR(t);
        return 0;
}
