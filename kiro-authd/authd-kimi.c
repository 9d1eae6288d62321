/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kimi's client identity (KIRO-PROTOCOL.md B §7). */
#include <stdio.h>
#include <sys/utsname.h>

#include "authd-kimi.h"

const char *kimi_device_id(const CredentialRecord *c, char buf[static 33]) {
        if (!c->machine_id || strlen(c->machine_id) < 32)
                return NULL;
        memcpy(buf, c->machine_id, 32);
        buf[32] = 0;
        return buf;
}

/* kimi-cli forces header values to ASCII; we also drop control characters. */
static void ascii(char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < ' ' || (unsigned char) *s >= 0x7f)
                        *s = '?';
}

static int add(char ***l, const char *name, const char *value) {
        _cleanup_free_ char *v = strndup(value, strnlen(value, 200)), *h = NULL;
        if (!v)
                return -ENOMEM;
        ascii(v);
        if (asprintf(&h, "%s: %s", name, v) < 0)
                return -ENOMEM;
        return strv_extend(l, h);
}

int kimi_headers(const char *device_id, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        struct utsname u;
        char model[3 * sizeof u.sysname];
        int r;

        if (uname(&u) < 0)
                return -errno;
        /* platform.system() platform.release() platform.machine(), as kimi-cli sends it. */
        snprintf(model, sizeof model, "%s %s %s", u.sysname, u.release, u.machine);

        r = add(&l, "X-Msh-Platform", "kimi_cli");
        if (r >= 0)
                r = add(&l, "X-Msh-Version", KIMI_CLI_VERSION);
        if (r >= 0)
                r = add(&l, "X-Msh-Device-Name", u.nodename);
        if (r >= 0)
                r = add(&l, "X-Msh-Device-Model", model);
        if (r >= 0)
                r = add(&l, "X-Msh-Os-Version", u.version);
        if (r >= 0 && device_id)
                r = add(&l, "X-Msh-Device-Id", device_id);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l);
        return 0;
}
