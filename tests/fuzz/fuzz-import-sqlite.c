/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the kiro-cli database importer (kiro-authd/authd-import.c) with whole SQLite database images,
 * as kiro-authd receives them over the bus, with the importer's untrusted-database settings. Seeds are
 * made by tests/fuzz/make-sqlite-seeds. */
#include <assert.h>

#include "authd-import.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
        _cleanup_free_ char *message = NULL;
        int r;

        /* Real databases are a few pages; big images only slow the fuzzer down. */
        if (size > 1024 * 1024)
                return 0;
        /* A smaller step budget than the daemon's, so that hostile schemas end quickly. */
        r = import_kiro_cli_sqlite_budget(data, size, 1000 * 1000, &c, &message);
        if (r > 0) {
                assert(r < _IMPORT_E_MAX && message);
                assert(!c);
                return 0;
        }
        if (r < 0) {
                /* A system error (-ENOMEM), never a verdict on the source. */
                assert(!c);
                return 0;
        }
        assert(c && c->refresh_token && c->region && c->source_format);
        assert(auth_method_to_string(c->method));
        if (c->method == AUTH_METHOD_BUILDER_ID || c->method == AUTH_METHOD_IDC)
                assert(c->client_id && c->client_secret);
        return 0;
}
