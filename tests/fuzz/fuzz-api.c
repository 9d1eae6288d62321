/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the front ends' request parsers (chat completions, messages, responses) and the error renderer: any body either becomes a conversation
 * within the limits or a failure whose rendered body is valid UTF-8 JSON. */
#include <assert.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "api/api-anthropic.h"
#include "api/api-error.h"
#include "api/api-openai.h"
#include "api/api-responses.h"

static void check_failure(const Failure *f) {
        for (ApiShape s = 0; s < _API_SHAPE_MAX; s++) {
                _cleanup_free_ char *body = NULL;
                _cleanup_json_ json_object *j = NULL;
                size_t n;

                if (api_error_render(s, f, &body, &n) < 0)
                        continue;
                assert(utf8_valid_span(body, n) == n);
                assert(json_parse_bounded(body, n, 8, &j, NULL) >= 0);
        }
}

static void check_conversation(const Conversation *c, const ApiLimits *l) {
        size_t parts = 0;

        /* System messages alone are a conversation; nothing at all is not. */
        assert((c->n_messages > 0 || !isempty(c->system)) && c->n_messages <= l->max_messages);
        assert(c->n_tools <= l->max_tools);
        for (size_t i = 0; i < c->n_messages; i++)
                parts += c->messages[i].n_parts;
        assert(parts <= l->max_content_parts);
        assert(c->model && strlen(c->model) > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* Small limits, so that the fuzzer reaches them. */
        const ApiLimits l = { .max_json_depth = 16, .max_messages = 8, .max_content_parts = 16, .max_tools = 4 };
        const char *body = (const char *) data;

        for (int i = 0; i < 4; i++) {
                Conversation *c = NULL;
                OpenAIOptions opts;
                Failure f = {};
                ResponsesOptions ro = {};
                int r = i == 0   ? openai_parse_chat(body, size, &l, &c, &opts, &f)
                        : i == 3 ? responses_parse(body, size, &l, NULL, &c, &ro, &f)
                                 : anthropic_parse_messages(body, size, &l, i == 2, &c, NULL, &f);
                responses_options_done(&ro);
                if (r >= 0)
                        check_conversation(c, &l);
                else if (r != -ENOMEM)
                        check_failure(&f);
                conversation_free(c);
                failure_done(&f);
        }
        return 0;
}
