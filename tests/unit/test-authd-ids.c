/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Derived credential ids: distinct per account, stable, readable, never from a secret. */
#include "authd-ids.h"
#include "tests.h"

static CredentialRecord *login(AuthMethod method, const char *id, const char *arn, const char *client_id,
                               const char *refresh_token) {
        CredentialRecord *c = credential_record_new();
        ASSERT_NOT_NULL(c);
        c->provider = PROVIDER_KIRO;
        c->method = method;
        c->id = id ? strdup(id) : NULL;
        c->profile_arn = arn ? strdup(arn) : NULL;
        c->client_id = client_id ? strdup(client_id) : NULL;
        c->refresh_token = strdup(refresh_token);
        return c;
}

#define ARN_A "arn:aws:codewhisperer:eu-central-1:111122223333:profile/AAAA"
#define ARN_B "arn:aws:codewhisperer:eu-central-1:111122223333:profile/BBBB"
#define ARN_SOCIAL "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK"

TEST(keyed_ids_differ_per_account_and_ignore_secrets) {
        _cleanup_(credential_record_freep) CredentialRecord *a = login(AUTH_METHOD_IDC, NULL, ARN_A, "cid-a", "rt-1");
        _cleanup_(credential_record_freep) CredentialRecord *a2 = login(AUTH_METHOD_IDC, NULL, ARN_A, "cid-a", "rt-2");
        _cleanup_(credential_record_freep) CredentialRecord *b = login(AUTH_METHOD_IDC, NULL, ARN_B, "cid-a", "rt-1");
        char ha[65], ha2[65], hb[65];

        ASSERT_EQ(credential_record_account_hash(a, ha), 1);
        ASSERT_EQ(credential_record_account_hash(a2, ha2), 1);
        ASSERT_EQ(credential_record_account_hash(b, hb), 1);
        ASSERT_STREQ(ha, ha2);                  /* a rotated refresh token is the same account */
        ASSERT_TRUE(!streq(ha, hb));

        _cleanup_free_ char *ida = NULL, *idb = NULL;
        size_t same;
        ASSERT_OK(credential_pick_default_id(a, NULL, 0, &ida, &same));
        ASSERT_EQ(same, (size_t) -1);
        ASSERT_EQ(strlen(ida), strlen("kiro-idc-") + ACCOUNT_HASH_ID_CHARS);
        ASSERT_TRUE(startswith(ida, "kiro-idc-"));
        ASSERT_TRUE(strneq(ida + strlen("kiro-idc-"), ha, ACCOUNT_HASH_ID_CHARS));
        ASSERT_TRUE(credential_id_is_valid(ida));

        /* The same account again is found, whatever id it was stored under. */
        free(a->id);
        a->id = strdup("work");
        const CredentialRecord *existing[] = { a };
        _cleanup_free_ char *again = NULL;
        ASSERT_OK(credential_pick_default_id(a2, existing, 1, &again, &same));
        ASSERT_EQ(same, 0U);
        ASSERT_STREQ(again, "work");

        ASSERT_OK(credential_pick_default_id(b, existing, 1, &idb, &same));
        ASSERT_EQ(same, (size_t) -1);
        ASSERT_TRUE(!streq(idb, ida) && startswith(idb, "kiro-idc-"));
}

TEST(unkeyed_logins_are_numbered) {
        /* A bare refresh token and a social login with the shared ARN name no account. */
        _cleanup_(credential_record_freep) CredentialRecord *x = login(AUTH_METHOD_SOCIAL, "kiro-social", NULL, NULL, "rt-x");
        _cleanup_(credential_record_freep) CredentialRecord *y = login(AUTH_METHOD_SOCIAL, "kiro-social-2", ARN_SOCIAL, NULL, "rt-y");
        _cleanup_(credential_record_freep) CredentialRecord *z = login(AUTH_METHOD_SOCIAL, NULL, ARN_SOCIAL, NULL, "rt-x");
        char h[65];
        size_t same;

        ASSERT_EQ(credential_record_account_hash(y, h), 0);
        ASSERT_EQ(credential_record_account_hash(z, h), 0);

        _cleanup_free_ char *first = NULL, *third = NULL, *after_gap = NULL;
        ASSERT_OK(credential_pick_default_id(z, NULL, 0, &first, &same));
        ASSERT_STREQ(first, "kiro-social");
        const CredentialRecord *both[] = { x, y };
        ASSERT_OK(credential_pick_default_id(z, both, 2, &third, &same));
        ASSERT_STREQ(third, "kiro-social-3");
        ASSERT_EQ(same, (size_t) -1);           /* same refresh token, but a secret never identifies */
        const CredentialRecord *second_only[] = { y };
        ASSERT_OK(credential_pick_default_id(z, second_only, 1, &after_gap, &same));
        ASSERT_STREQ(after_gap, "kiro-social");
}

TEST(collision_gets_a_suffix) {
        _cleanup_(credential_record_freep) CredentialRecord *a = login(AUTH_METHOD_IDC, NULL, ARN_A, "cid-a", "rt-1");
        _cleanup_(credential_record_freep) CredentialRecord *squatter = login(AUTH_METHOD_API_KEY, NULL, NULL, NULL, "k");
        _cleanup_free_ char *id = NULL, *next = NULL;
        size_t same;

        ASSERT_OK(credential_pick_default_id(a, NULL, 0, &id, &same));
        squatter->id = strdup(id);              /* e.g. chosen by hand with --id */
        const CredentialRecord *existing[] = { squatter };
        ASSERT_OK(credential_pick_default_id(a, existing, 1, &next, &same));
        ASSERT_EQ(same, (size_t) -1);
        ASSERT_TRUE(startswith(next, id) && streq(next + strlen(id), "-2"));
}
