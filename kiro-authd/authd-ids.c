/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Derived credential ids (docs/kiroctl.md "Credential ids"). */
#include <assert.h>
#include <stdio.h>

#include "authd-ids.h"
#include "hash-util.h"

/* Shared by every login of the kind (KIRO-PROTOCOL.md B §2.5, §8 item 7): they name no account. */
static const char *const shared_profile_arns[] = {
        "arn:aws:codewhisperer:us-east-1:638616132270:profile/AAAACCCCXXXX",
        "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
};

static bool profile_arn_names_account(const char *arn) {
        if (isempty(arn))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(shared_profile_arns); i++)
                if (streq(arn, shared_profile_arns[i]))
                        return false;
        return true;
}

int credential_record_account_hash(const CredentialRecord *c, char ret[static 65]) {
        assert(c);
        assert(ret);

        const char *arn = profile_arn_names_account(c->profile_arn) ? c->profile_arn : NULL;
        const char *fields[] = {
                provider_to_string(c->provider), auth_method_to_string(c->method),
                arn, c->start_url, c->client_id, c->token_endpoint,
        };
        if (!arn && isempty(c->start_url) && isempty(c->client_id) && isempty(c->token_endpoint))
                return 0;

        /* Each field NUL-terminated, absent ones empty: no two different keys give the same bytes. */
        size_t len = 0;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                len += strlen(fields[i] ?: "") + 1;
        _cleanup_free_ char *key = malloc(len);
        if (!key)
                return -ENOMEM;
        char *p = key;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                p = stpcpy(p, fields[i] ?: "") + 1;

        uint8_t digest[SHA256_DIGEST_SIZE];
        if (sha256(key, len, digest) < 0)
                return -EIO;
        hex_encode(digest, sizeof digest, ret);
        return 1;
}

static bool id_taken(const char *id, const CredentialRecord *const *existing, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq_ptr(existing[i]->id, id))
                        return true;
        return false;
}

int credential_pick_default_id(const CredentialRecord *c, const CredentialRecord *const *existing, size_t n,
                               char **ret_id, size_t *ret_same_index) {
        char hash[65], other[65], base[64];
        int r;

        assert(c);
        assert(existing || n == 0);
        assert(ret_id);
        assert(ret_same_index);

        r = credential_record_account_hash(c, hash);
        if (r < 0)
                return r;
        bool keyed = r > 0;

        if (keyed)
                for (size_t i = 0; i < n; i++) {
                        int k = credential_record_account_hash(existing[i], other);
                        if (k < 0)
                                return k;
                        if (k > 0 && streq(hash, other)) {
                                char *id = strdup(existing[i]->id);
                                if (!id)
                                        return -ENOMEM;
                                *ret_id = id;
                                *ret_same_index = i;
                                return 0;
                        }
                }

        if (keyed)
                snprintf(base, sizeof base, "%s-%s-%.*s", provider_to_string(c->provider),
                         auth_method_to_string(c->method), (int) ACCOUNT_HASH_ID_CHARS, hash);
        else
                snprintf(base, sizeof base, "%s-%s", provider_to_string(c->provider),
                         auth_method_to_string(c->method));

        for (unsigned k = 1; k <= n + 1; k++) {
                char *id;
                if (k == 1)
                        id = strdup(base);
                else if (asprintf(&id, "%s-%u", base, k) < 0)
                        id = NULL;
                if (!id)
                        return -ENOMEM;
                if (!id_taken(id, existing, n)) {
                        assert(credential_id_is_valid(id));
                        *ret_id = id;
                        *ret_same_index = (size_t) -1;
                        return 0;
                }
                free(id);
        }
        return -EEXIST;         /* not reached: n records take at most n of the n + 1 candidates */
}
