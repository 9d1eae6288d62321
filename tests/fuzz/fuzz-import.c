/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes kiro-authd's import parsers (the first byte picks one): every outcome is 0 with a record, an
 * ImportError with a message, or a negative errno; a record always carries a valid region and, if any, a
 * profile ARN with a valid region. The SQLite step budget is small so hostile schemas end quickly. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "authd-import.h"
#include "fuzz.h"
#include "url-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        CredentialRecord *c = NULL;
        char *msg = NULL;
        const char *p, *nul;
        size_t n;
        int r;

        if (size < 1)
                return 0;
        p = (const char *) data + 1;
        n = size - 1;
        switch (data[0] % 4) {
        case 0:
                r = import_kiro_cli_sqlite_budget(p, n, 1000 * 1000, &c, &msg);
                break;
        case 1:
                r = import_kiro_ide_json(p, n, NULL, 0, &c, &msg);
                break;
        case 2:
                /* token NUL registration */
                nul = memchr(p, 0, n);
                if (!nul)
                        return 0;
                r = import_kiro_ide_json(p, (size_t) (nul - p), nul + 1, n - (size_t) (nul - p) - 1, &c, &msg);
                break;
        default:
                r = data[0] & 4 ? import_api_key(p, n, &c, &msg) : import_refresh_token(p, n, &c, &msg);
                break;
        }

        assert(r < _IMPORT_E_MAX);
        if (r == 0) {
                char region[REGION_MAX + 1];
                assert(c);
                assert(c->region && region_is_valid(c->region));
                assert(!c->profile_arn || arn_get_region(c->profile_arn, region, sizeof region) == 0);
                assert(c->refresh_token || c->access_token);
        } else {
                assert(!c);
                assert(r < 0 || msg);
        }
        credential_record_free(c);
        free(msg);
        return 0;
}
