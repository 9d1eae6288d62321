/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the stored credential file parser (kiro-authd/authd-credential.c): whatever parses must write
 * back and parse again to the same record (timestamps are stored to the millisecond), and the derived
 * values (API region, machine id) stay in their forms. */
#include <assert.h>
#include <string.h>

#include "authd-credential.h"
#include "fuzz.h"

static void assert_streq_ptr(const char *a, const char *b) {
        assert(streq_ptr(a, b));
}

static void assert_time_kept(usec_t before, usec_t after) {
        if (before == USEC_INFINITY)
                assert(after == USEC_INFINITY);
        else
                assert(after == before - before % USEC_PER_MSEC);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(credential_freep) Credential *c = NULL, *again = NULL;
        _cleanup_free_ char *text = NULL;
        const char *error = NULL;
        char region[64];
        int r;

        if (size > 256 * 1024)
                return 0;
        r = credential_from_json((const char *) data, size, &c, &error);
        if (r < 0) {
                assert(r == -EBADMSG || r == -ENOMEM || r == -E2BIG);
                assert(r != -EBADMSG || error);
                return 0;
        }
        assert(credential_id_is_valid(c->id));
        assert(provider_to_string(c->provider) && auth_method_to_string(c->method));
        assert(c->access_token || c->refresh_token);

        const char *reg = credential_api_region(c, region, sizeof region);
        assert(reg && reg[0]);

        r = credential_to_json(c, &text);
        if (r < 0)
                return 0;
        r = credential_from_json(text, strlen(text), &again, &error);
        assert(r >= 0);

        assert_streq_ptr(c->id, again->id);
        assert(c->provider == again->provider && c->method == again->method);
        assert_streq_ptr(c->access_token, again->access_token);
        assert_streq_ptr(c->refresh_token, again->refresh_token);
        assert_streq_ptr(c->client_secret, again->client_secret);
        assert_streq_ptr(c->region, again->region);
        assert_streq_ptr(c->profile_arn, again->profile_arn);
        assert_streq_ptr(c->client_id, again->client_id);
        assert_streq_ptr(c->start_url, again->start_url);
        assert_streq_ptr(c->token_endpoint, again->token_endpoint);
        assert_streq_ptr(c->scopes, again->scopes);
        assert_streq_ptr(c->machine_id, again->machine_id);
        assert_streq_ptr(c->source_format, again->source_format);
        assert_streq_ptr(c->source_path, again->source_path);
        assert_streq_ptr(c->last_error, again->last_error);
        assert(c->enabled == again->enabled && c->health == again->health);
        assert(c->consecutive_failures == again->consecutive_failures);
        assert_time_kept(c->expires_at, again->expires_at);
        assert_time_kept(c->client_secret_expires_at, again->client_secret_expires_at);
        assert_time_kept(c->imported_at, again->imported_at);
        assert_time_kept(c->cooldown_until, again->cooldown_until);
        assert_time_kept(c->last_refresh_at, again->last_refresh_at);

        if (!again->machine_id && credential_ensure_machine_id(again) >= 0)
                assert(strlen(again->machine_id) == 64);
        return 0;
}
