/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the stored credential file parser (kiro-authd/authd-credential.c): whatever parses must write
 * back and parse again to the same record (timestamps are stored to the millisecond), and the derived
 * values (API region, machine id) stay in their forms. An input may start with another document and a
 * NUL byte: that one is parsed (whatever comes of it) between two parses of the main document, which
 * must agree: a parse must not depend on what was parsed before (json-util.c reuses tokeners). */
#include <assert.h>
#include <string.h>

#include "authd-credential.h"
#include "fuzz.h"

static void assert_streq_ptr(const char *a, const char *b) {
        assert(streq_ptr(a, b));
}

static void assert_time_kept(usec_t before, usec_t after, bool exact) {
        if (before == USEC_INFINITY)
                assert(after == USEC_INFINITY);
        else
                assert(after == (exact ? before : before - before % USEC_PER_MSEC));
}

static void assert_same(const CredentialRecord *a, const CredentialRecord *b, bool exact_times) {
        assert_streq_ptr(a->id, b->id);
        assert(a->provider == b->provider && a->method == b->method);
        assert_streq_ptr(a->access_token, b->access_token);
        assert_streq_ptr(a->refresh_token, b->refresh_token);
        assert_streq_ptr(a->client_secret, b->client_secret);
        assert_streq_ptr(a->region, b->region);
        assert_streq_ptr(a->profile_arn, b->profile_arn);
        assert_streq_ptr(a->client_id, b->client_id);
        assert_streq_ptr(a->start_url, b->start_url);
        assert_streq_ptr(a->token_endpoint, b->token_endpoint);
        assert_streq_ptr(a->scopes, b->scopes);
        assert_streq_ptr(a->machine_id, b->machine_id);
        assert_streq_ptr(a->source_format, b->source_format);
        assert_streq_ptr(a->source_path, b->source_path);
        assert_streq_ptr(a->last_error, b->last_error);
        assert(a->enabled == b->enabled && a->health == b->health);
        assert(a->consecutive_failures == b->consecutive_failures);
        assert_time_kept(a->expires_at, b->expires_at, exact_times);
        assert_time_kept(a->client_secret_expires_at, b->client_secret_expires_at, exact_times);
        assert_time_kept(a->imported_at, b->imported_at, exact_times);
        assert_time_kept(a->cooldown_until, b->cooldown_until, exact_times);
        assert_time_kept(a->last_refresh_at, b->last_refresh_at, exact_times);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(credential_record_freep) CredentialRecord *c = NULL, *again = NULL;
        _cleanup_free_ char *text = NULL;
        const char *error = NULL, *doc = (const char *) data;
        size_t doc_size = size;
        char region[64];
        int r;

        if (size > 256 * 1024)
                return 0;
        const char *nul = memchr(data, 0, size);
        if (nul) {
                doc = nul + 1;
                doc_size = size - (nul - (const char *) data) - 1;
        }

        r = credential_record_from_json(doc, doc_size, &c, &error);
        if (nul) {
                _cleanup_(credential_record_freep) CredentialRecord *other = NULL, *second = NULL;
                int q;

                (void) credential_record_from_json((const char *) data, nul - (const char *) data, &other, NULL);
                q = credential_record_from_json(doc, doc_size, &second, NULL);
                assert(q == r);
                if (r >= 0)
                        assert_same(c, second, true);
        }
        if (r < 0) {
                assert(r == -EBADMSG || r == -ENOMEM || r == -EFBIG);
                assert(r != -EBADMSG || error);
                return 0;
        }
        assert(credential_id_is_valid(c->id));
        assert(provider_to_string(c->provider) && auth_method_to_string(c->method));
        assert(c->access_token || c->refresh_token);

        const char *reg = credential_record_api_region(c, region, sizeof region);
        assert(reg && reg[0]);

        r = credential_record_to_json(c, &text);
        if (r < 0)
                return 0;
        r = credential_record_from_json(text, strlen(text), &again, &error);
        assert(r >= 0);
        assert_same(c, again, false);

        if (!again->machine_id && credential_record_ensure_machine_id(again) >= 0)
                assert(strlen(again->machine_id) == 64);
        return 0;
}
