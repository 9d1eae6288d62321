/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the text import sources of kiro-authd/authd-import.c: the Kiro IDE token file with its client
 * registration file, a bare refresh token and an API key. The input is the token file, optionally
 * followed by a NUL byte and the registration file. Every result must be a usable credential and every
 * failure must come with a message. */
#include <assert.h>
#include <string.h>

#include "authd-import.h"
#include "fuzz.h"

static void check(int r, CredentialRecord *c, const char *message) {
        if (r > 0) {
                /* A verdict on the source: an ImportError, always explained. */
                assert(r < _IMPORT_E_MAX && message);
                assert(!c);
                return;
        }
        if (r < 0) {
                /* A system error (-ENOMEM), never a verdict on the source. */
                assert(!c);
                return;
        }
        assert(c);
        assert(c->access_token || c->refresh_token);
        assert(auth_method_to_string(c->method));
        assert(c->region && c->region[0]);
        assert(c->source_format);
        if (c->method == AUTH_METHOD_EXTERNAL_IDP)
                assert(c->token_endpoint && c->client_id);
        if (c->method == AUTH_METHOD_BUILDER_ID || c->method == AUTH_METHOD_IDC)
                assert(c->client_id && c->client_secret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data, *reg = NULL;
        size_t token_size = size, reg_size = 0;

        if (size > IMPORT_JSON_MAX)
                return 0;
        const char *nul = memchr(text, 0, size);
        if (nul) {
                token_size = nul - text;
                reg = nul + 1;
                reg_size = size - token_size - 1;
        }

        {
                _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
                _cleanup_free_ char *message = NULL;
                int r = import_kiro_ide_json(text, token_size, reg, reg_size, &c, &message);
                check(r, c, message);
                if (r == 0)
                        assert(streq(c->source_format, "kiro-ide-json"));
        }
        {
                _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
                _cleanup_free_ char *message = NULL;
                int r = import_refresh_token(text, size, &c, &message);
                check(r, c, message);
                if (r == 0)
                        assert(c->refresh_token[0] && !strpbrk(c->refresh_token, " \t\r\n"));
        }
        {
                _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
                _cleanup_free_ char *message = NULL;
                int r = import_api_key(text, size, &c, &message);
                check(r, c, message);
                if (r == 0)
                        assert(startswith(c->access_token, "ksk_") && c->expires_at == USEC_INFINITY);
        }
        return 0;
}
