/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Why a request failed, in neutral form. */
#include <stdarg.h>

#include "chat/chat-failure.h"

void failure_done(Failure *f) {
        free(f->message);
        free(f->param);
        free(f->code);
        *f = (Failure) {};
}

int failure_set(Failure *f, FailureKind kind, const char *param, const char *fmt, ...) {
        va_list ap;
        failure_done(f);
        f->kind = kind;
        va_start(ap, fmt);
        if (vasprintf(&f->message, fmt, ap) < 0)
                f->message = NULL;
        va_end(ap);
        f->param = param ? strdup(param) : NULL;
        return -EINVAL;
}
