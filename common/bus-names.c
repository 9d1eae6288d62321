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

static const char *const refresh_result_kind_table[_REFRESH_RESULT_MAX] = {
        [REFRESH_RESULT_OK] = "ok",
        [REFRESH_RESULT_TRANSIENT_ERROR] = "transient-error",
        [REFRESH_RESULT_REJECTED] = "rejected",
        [REFRESH_RESULT_NO_LOGIN] = "no-login",
        [REFRESH_RESULT_LOCAL_ERROR] = "local-error",
};

const char *refresh_result_kind_to_string(RefreshResultKind k) {
        return k >= 0 && k < _REFRESH_RESULT_MAX ? refresh_result_kind_table[k] : NULL;
}

RefreshResultKind refresh_result_kind_from_string(const char *s) {
        for (RefreshResultKind k = 0; s && k < _REFRESH_RESULT_MAX; k++)
                if (streq(refresh_result_kind_table[k], s))
                        return k;
        return _REFRESH_RESULT_INVALID;
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
