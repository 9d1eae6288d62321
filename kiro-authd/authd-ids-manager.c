/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Derived ids among the manager's credentials (authd-ids.h). */
#include <assert.h>

#include "authd-ids.h"
#include "authd-manager.h"

int manager_import_default_id(Manager *m, const CredentialRecord *c, char **ret_id, Credential **ret_existing) {
        _cleanup_free_ const CredentialRecord **records = NULL;
        size_t same;
        int r;

        assert(m);
        assert(c);
        assert(ret_id);
        assert(ret_existing);

        records = calloc(m->n_credentials ?: 1, sizeof *records);
        if (!records)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_credentials; i++)
                records[i] = m->credentials[i]->record;

        r = credential_pick_default_id(c, records, m->n_credentials, ret_id, &same);
        if (r < 0)
                return r;
        *ret_existing = same != (size_t) -1 ? m->credentials[same] : NULL;
        return 0;
}
