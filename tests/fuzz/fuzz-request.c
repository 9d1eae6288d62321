/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the whole path from client bytes to upstream bytes: the OpenAI chat completions and Anthropic
 * Messages request parsers (kiro-proxyd/api/), the conversation form they normalise into, the token
 * estimate, and the Kiro request builder (kiro-proxyd/kiro/kiro-request.c). The first input byte:
 * bits 0-1 choose the parser (OpenAI, Anthropic, Anthropic count_tokens), bit 2 TrimHistory=, bits 3-4
 * the payload limit (default, 4 KiB, 64 KiB, 1 MiB), bit 5 a profile ARN; the rest is the body. A parse
 * failure names a failure kind and a message; a built request is one JSON object within the limit. */
#include <assert.h>
#include <string.h>

#include "api/api-anthropic.h"
#include "api/api-openai.h"
#include "fuzz.h"
#include "json-util.h"
#include "kiro/kiro-request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const size_t limits[] = { 0, 4096, 65536, 1024 * 1024 };
        _cleanup_(conversation_freep) Conversation *conv = NULL;
        _cleanup_(kiro_request_freep) KiroRequest *req = NULL;
        _cleanup_free_ char *error = NULL;
        const ApiLimits api_limits = API_LIMITS_DEFAULT;
        Failure err = {};
        OpenAIOptions opts = {};
        ModelInfo model = {};
        const char *body;
        int api, r;

        if (size < 1 || size > 1024 * 1024)
                return 0;
        api = data[0] & 3;
        body = (const char *) data + 1;
        size--;

        if (api == 0)
                r = openai_parse_chat(body, size, &api_limits, &conv, &opts, &err);
        else
                r = anthropic_parse_messages(body, size, &api_limits, api == 2, &conv, api == 1 ? &model : NULL, &err);
        if (r < 0) {
                assert(!conv);
                if (r != -ENOMEM) {
                        assert(err.message);
                        assert(err.kind >= 0 && err.kind < _FAILURE_KIND_MAX);
                }
                failure_done(&err);
                return 0;
        }
        failure_done(&err);
        assert(conv && conv->model && conv->model_id);
        (void) conversation_estimate_input_tokens(conv);
        if (api == 2)
                return 0;

        KiroRequestParams params = {
                .profile_arn = data[0] & 0x20 ? "arn:aws:codewhisperer:us-east-1:123456789012:profile/FUZZ" : NULL,
                .max_payload_bytes = limits[(data[0] >> 3) & 3],
                .trim_history = data[0] & 4,
        };
        r = kiro_request_build(conv, &params, &req, &error);
        if (r < 0) {
                assert(r == -EINVAL || r == -EMSGSIZE || r == -ENOMEM);
                assert(r == -ENOMEM || error);
                return 0;
        }
        assert(req->body && strlen(req->body) == req->body_size);
        if (params.max_payload_bytes > 0)
                assert(req->body_size <= params.max_payload_bytes);
        assert(req->conversation_id && strlen(req->conversation_id) == 36);

        /* What goes upstream is one JSON object. */
        _cleanup_json_ json_object *o = NULL;
        assert(json_parse_bounded(req->body, req->body_size, 1000, &o, NULL) == 0);
        assert(json_object_is_type(o, json_type_object));
        return 0;
}
