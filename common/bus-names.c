/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The D-Bus error table and object path helpers. */
#include "bus-names.h"
#include "macro.h"

const sd_bus_error_map kirod_bus_errors[] = {
        SD_BUS_ERROR_MAP(KIROD_ERROR_NO_SUCH_CREDENTIAL,   ENXIO),
        SD_BUS_ERROR_MAP(KIROD_ERROR_NO_USABLE_CREDENTIAL, ENOKEY),
        SD_BUS_ERROR_MAP(KIROD_ERROR_NEEDS_LOGIN,          EKEYEXPIRED),
        SD_BUS_ERROR_MAP(KIROD_ERROR_INVALID_SOURCE,       EBADMSG),
        SD_BUS_ERROR_MAP(KIROD_ERROR_NO_TOKEN_IN_SOURCE,   ENODATA),
        SD_BUS_ERROR_MAP(KIROD_ERROR_SOURCE_TOO_LARGE,     EFBIG),
        SD_BUS_ERROR_MAP(KIROD_ERROR_REGISTRATION_EXPIRED, EKEYREJECTED),
        SD_BUS_ERROR_MAP(KIROD_ERROR_REFRESH_FAILED,       EREMOTEIO),
        SD_BUS_ERROR_MAP(KIROD_ERROR_CREDENTIAL_EXISTS,    EEXIST),
        SD_BUS_ERROR_MAP(KIROD_ERROR_CREDENTIAL_DISABLED,  ESHUTDOWN),
        SD_BUS_ERROR_MAP(KIROD_ERROR_UNSUPPORTED_FORMAT,   EPROTONOSUPPORT),
        SD_BUS_ERROR_MAP(KIROD_ERROR_STORAGE_FAILED,       EIO),
        SD_BUS_ERROR_MAP(KIROD_ERROR_LOGIN_IN_PROGRESS,    EALREADY),
        SD_BUS_ERROR_MAP(KIROD_ERROR_NO_SUCH_LOGIN,        ESRCH),
        SD_BUS_ERROR_MAP(KIROD_ERROR_LOGIN_FAILED,         ECONNREFUSED),
        SD_BUS_ERROR_MAP_END
};

int kirod_bus_errors_register(void) {
        static bool done = false;
        if (done)
                return 0;
        int r = sd_bus_error_add_map(kirod_bus_errors);
        if (r < 0)
                return r;
        done = true;
        return 0;
}

int kirod_credential_path(const char *id, char **ret) {
        return sd_bus_path_encode(KIROD_CREDENTIAL_PREFIX, id, ret);
}

int kirod_credential_id_from_path(const char *path, char **ret) {
        _cleanup_free_ char *id = NULL;
        int r = sd_bus_path_decode(path, KIROD_CREDENTIAL_PREFIX, &id);
        if (r < 0)
                return r;
        if (r == 0 || isempty(id))
                return -ENXIO;
        *ret = TAKE_PTR(id);
        return 0;
}
