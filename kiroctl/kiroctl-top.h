/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl top: the status table redrawn every few seconds, with the totals and the request rate between
 * two frames. */
#pragma once

#include <stdio.h>

#include "kiroctl-format.h"

typedef struct TopState {
        bool have_previous;
        usec_t previous_at;             /* CLOCK_MONOTONIC of the previous frame */
        uint64_t previous_requests;     /* the sum of RequestsLastHour then */
} TopState;

/* One frame: a header line with the time, the credential counts, the last hour's totals and (from the
 * second frame on) the requests per minute since the previous frame, then the status table. clear puts
 * the frame at the top of a cleared terminal. mono is CLOCK_MONOTONIC now. */
int top_print_frame(FILE *f, const Credential *c, size_t n, const OutputFlags *flags, TopState *st, usec_t mono,
                    bool clear);
