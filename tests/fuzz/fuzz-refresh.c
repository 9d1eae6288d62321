/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the token refresh answer parsers (kiro-authd/authd-refresh.c). The first byte chooses the
 * login method (low 3 bits) and the HTTP status (high bits: 200, 400, 401, 403, 429, 500, 0 = transport
 * failure, 302); the rest is the answer body. A success carries an access token and a sane lifetime, a
 * failure a message; error codes are trimmed to their short form. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "authd-refresh.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const long statuses[] = { 200, 400, 401, 403, 429, 500, 0, 302 };
        _cleanup_free_ char *body = NULL, *code = NULL, *desc = NULL;
        RefreshResult res;
        RefreshOutcome o;
        AuthMethod m;
        long status;

        if (size < 1 || size > 256 * 1024)
                return 0;
        m = (data[0] & 7) % _AUTH_METHOD_MAX;
        status = statuses[data[0] >> 5];
        /* The manager hands over the body with its size and a NUL after it (NULs inside may occur). */
        body = malloc(size);
        if (!body)
                return 0;
        memcpy(body, data + 1, size - 1);
        body[size - 1] = 0;

        o = refresh_parse_response(m, status, body, size - 1, &res);
        switch (o) {
        case REFRESH_OK:
                assert(status == 200);
                assert(res.access_token && res.access_token[0]);
                assert(res.expires_in > 0 && res.expires_in <= 366ULL * 86400 * USEC_PER_SEC);
                assert(!res.error);
                assert(!res.refresh_token || res.refresh_token[0]);
                break;
        case REFRESH_PERMANENT:
                assert(status == 400 || status == 401 || status == 403);
                __attribute__((fallthrough));
        case REFRESH_TRANSIENT:
                assert(res.error);
                assert(!res.access_token);
                break;
        default:
                assert(false);
        }
        refresh_result_done(&res);

        if (refresh_error_code(body, size - 1, &code, &desc) > 0) {
                assert(code);
                assert(!strchr(code, ':') && !strchr(code, '#'));
        }
        if (desc) {
                assert(strlen(desc) <= 200);
                for (const char *p = desc; *p; p++)
                        assert((unsigned char) *p >= ' ');
        }
        return 0;
}
