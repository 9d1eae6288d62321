/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Interprets the frames of a Kiro generateAssistantResponse stream as internal events. */
#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <strings.h>

#include "json-util.h"
#include "kiro/kiro-eventstream.h"
#include "kiro/kiro-stream.h"

/* Bounds on what a response may make us hold. */
#define PAYLOAD_DEPTH_MAX 64
#define JSON_BODY_MAX (1024U * 1024U)
#define TOOL_CALLS_MAX 4096U
#define ERROR_MESSAGE_MAX 4096U

/* ---- error classification ------------------------------------------------------------------------- */

/* "com.amazon.aws.codewhisperer#ValidationException:http://…" → "ValidationException" */
static char *error_type_normalize(const char *type) {
        const char *h;

        if (isempty(type))
                return NULL;
        h = strrchr(type, '#');
        if (h)
                type = h + 1;
        return strndup(type, strcspn(type, ":"));
}

static bool type_is(const char *type, const char *name) {
        /* Some anchors spell them with a lower-case first letter ("internalServerException"). */
        return type && strcasecmp(type, name) == 0;
}

static bool contains(const char *haystack, const char *needle) {
        return haystack && strcasestr(haystack, needle);
}

ChatErrorKind kiro_error_classify(const char *type, const char *reason, const char *message, int http_status) {
        static const struct {
                const char *reason;
                ChatErrorKind kind;
        } reasons[] = {
                { "CONTENT_LENGTH_EXCEEDS_THRESHOLD", CHAT_ERROR_INPUT_TOO_LONG },
                { "MONTHLY_REQUEST_COUNT",            CHAT_ERROR_QUOTA },
                { "DAILY_REQUEST_COUNT",              CHAT_ERROR_QUOTA },
                { "OVERAGE_REQUEST_LIMIT_EXCEEDED",   CHAT_ERROR_QUOTA },
                { "CONVERSATION_LIMIT_EXCEEDED",      CHAT_ERROR_QUOTA },
                { "INSUFFICIENT_MODEL_CAPACITY",      CHAT_ERROR_OVERLOADED },
                { "MODEL_TEMPORARILY_UNAVAILABLE",    CHAT_ERROR_OVERLOADED },
                { "TEMPORARILY_SUSPENDED",            CHAT_ERROR_SUSPENDED },
                { "SUSPENDED",                        CHAT_ERROR_SUSPENDED },
                { "USER_REQUEST_RATE_EXCEEDED",       CHAT_ERROR_THROTTLED },
        };
        _cleanup_free_ char *t = error_type_normalize(type);

        if (reason)
                for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                        if (strcasecmp(reason, reasons[i].reason) == 0)
                                return reasons[i].kind;

        if (type_is(t, "ContentLengthExceededException"))
                return CHAT_ERROR_CONTENT_LENGTH_EXCEEDED;

        /* Message text only for the markers B §6 documents as coming without a reason or type of their own,
         * and only with the status they come with (0: inside a 200 stream, where there is no status).
         * Never for suspension: that comes as reason (TEMPORARILY_)SUSPENDED, and a message that merely
         * contains the word (a validation error quoting the prompt, say) must not take a credential out of
         * service until an admin acts. */
        if ((http_status == 0 || http_status == 400 || http_status == 413 || http_status == 429) && contains(message, "Input is too long"))
                return CHAT_ERROR_INPUT_TOO_LONG;
        if (http_status == 0 && contains(message, "reached the limit"))
                return CHAT_ERROR_QUOTA;
        if ((http_status == 0 || http_status >= 500) && contains(message, "unexpectedly high load"))
                return CHAT_ERROR_OVERLOADED;
        if ((http_status == 0 || http_status == 403) && contains(message, "bearer token") && contains(message, "invalid"))
                return CHAT_ERROR_UNAUTHORIZED;

        if (type_is(t, "ValidationException"))
                return CHAT_ERROR_VALIDATION;
        if (type_is(t, "ThrottlingException"))
                return CHAT_ERROR_THROTTLED;
        if (type_is(t, "ServiceQuotaExceededException"))
                return CHAT_ERROR_QUOTA;
        if (type_is(t, "AccessDeniedException"))
                return CHAT_ERROR_ACCESS_DENIED;
        if (type_is(t, "UnauthorizedException") || type_is(t, "ExpiredTokenException") ||
            type_is(t, "InvalidTokenException"))
                return CHAT_ERROR_UNAUTHORIZED;
        if (type_is(t, "ServiceUnavailableException"))
                return CHAT_ERROR_OVERLOADED;
        if (type_is(t, "InternalServerException") || type_is(t, "InternalServerError") ||
            type_is(t, "InternalFailure"))
                return CHAT_ERROR_SERVER;

        switch (http_status) {
        case 400:
                return CHAT_ERROR_VALIDATION;
        case 401:
                return CHAT_ERROR_UNAUTHORIZED;
        case 402:
                return CHAT_ERROR_QUOTA;
        case 403:
                return CHAT_ERROR_ACCESS_DENIED;
        case 413:
                return CHAT_ERROR_INPUT_TOO_LONG;
        case 429:
                return CHAT_ERROR_THROTTLED;
        case 503:
        case 529:
                return CHAT_ERROR_OVERLOADED;
        }
        if (http_status >= 500 && http_status < 600)
                return CHAT_ERROR_SERVER;
        return CHAT_ERROR_UNKNOWN;
}

/* Copies at most max bytes of text for an error message: valid UTF-8 is kept, control characters and
 * invalid bytes become '?' / ' ', white space at the ends is trimmed. */
static char *text_sanitize(const void *data, size_t size, size_t max) {
        const unsigned char *p = data;
        char *out, *o;

        while (size > 0 && isspace(p[0])) {
                p++;
                size--;
        }
        while (size > 0 && isspace(p[size - 1]))
                size--;
        size = MIN(size, max);

        out = o = malloc(size + 1);
        if (!out)
                return NULL;
        for (size_t i = 0; i < size;) {
                unsigned char c = p[i];
                size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
                bool ok = n > 0 && i + n <= size && !(n == 2 && c < 0xC2);

                for (size_t k = 1; ok && k < n; k++)
                        ok = (p[i + k] & 0xC0) == 0x80;
                if (!ok) {
                        *o++ = '?';
                        i++;
                } else if (n == 1) {
                        *o++ = c < 0x20 || c == 0x7F ? ' ' : (char) c;
                        i++;
                } else {
                        memcpy(o, p + i, n);
                        o += n;
                        i += n;
                }
        }
        *o = 0;
        return out;
}

static const char *json_string_either(json_object *o, const char *a, const char *b) {
        return json_string_or_null(o, a) ?: json_string_or_null(o, b);
}

int kiro_error_parse(const void *body, size_t size, const char *type_hint, int http_status, ChatError *ret) {
        _cleanup_(json_object_putp) json_object *j = NULL;
        _cleanup_(chat_error_done) ChatError e = {};
        const char *type = NULL, *reason = NULL, *message = NULL;

        assert(body || size == 0);
        assert(ret);

        if (size > 0 && json_parse_bounded(body, size, PAYLOAD_DEPTH_MAX, &j, NULL) >= 0 &&
            json_object_is_type(j, json_type_object)) {
                json_object *inner = NULL;

                message = json_string_either(j, "message", "Message");
                reason = json_string_or_null(j, "reason");
                type = json_string_either(j, "__type", "_type");
                /* 402 bodies may nest it: {"error": {"message", "reason"}}. */
                if (json_get_object(j, "error", &inner) >= 0) {
                        message = message ?: json_string_either(inner, "message", "Message");
                        reason = reason ?: json_string_or_null(inner, "reason");
                        type = type ?: json_string_either(inner, "__type", "type");
                }
                e.message = message ? text_sanitize(message, strlen(message), ERROR_MESSAGE_MAX) : NULL;
                if (message && !e.message)
                        return -ENOMEM;
        } else if (size > 0) {
                e.message = text_sanitize(body, size, ERROR_MESSAGE_MAX);
                if (!e.message)
                        return -ENOMEM;
        }

        type = type_hint ?: type;
        if (type) {
                e.type = error_type_normalize(type);
                if (!e.type)
                        return -ENOMEM;
        }
        if (reason) {
                e.reason = strdup(reason);
                if (!e.reason)
                        return -ENOMEM;
        }
        if (isempty(e.message)) {
                free(e.message);
                if (e.type)
                        e.message = strdup(e.type);
                else if (http_status > 0) {
                        if (asprintf(&e.message, "HTTP status %d", http_status) < 0)
                                e.message = NULL;
                } else
                        e.message = strdup("unknown upstream error");
                if (!e.message)
                        return -ENOMEM;
        }
        e.kind = kiro_error_classify(e.type, e.reason, e.message, http_status);

        *ret = e;
        e = (ChatError) {};
        return 0;
}

/* ---- the stream ----------------------------------------------------------------------------------- */

typedef struct ToolCall {
        char *id;
        char *name;             /* the client's name */
        unsigned index;
        bool stopped;
} ToolCall;

struct KiroStream {
        EventStreamDecoder *decoder;
        const KiroToolAliases *aliases;
        kiro_event_handler_t handler;
        void *userdata;

        ToolCall *tools;
        size_t n_tools;

        ChatUsage usage;
        TokenCounter output;
        uint64_t n_content_events;

        ChatError error;
        bool has_error;                 /* an upstream error was reported (ERROR emitted) */
        bool content_length_exceeded;
        bool max_tokens;                /* metadataEvent said MAX_TOKENS */
        bool saw_closing;               /* a closing event came after the last content */
        bool truncated;
        bool ended;                     /* END emitted */

        bool started;
        bool json_body;                 /* the body is a JSON error object, not an event stream */
        char *json_buf;
        size_t json_size;

        char *protocol_message;         /* why our frame handler refused a frame */
        int failure;                    /* sticky */

        char *text_buf;                 /* the fast path's copy of a text event's content, NUL-terminated */
        size_t text_alloc;
};

static int on_frame(const EventStreamFrame *f, void *userdata);

int kiro_stream_new(size_t max_frame_size, const KiroToolAliases *aliases, kiro_event_handler_t handler,
                    void *userdata, KiroStream **ret) {
        _cleanup_(kiro_stream_freep) KiroStream *s = NULL;
        int r;

        assert(handler);
        assert(ret);

        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->aliases = aliases;
        s->handler = handler;
        s->userdata = userdata;
        r = eventstream_decoder_new(max_frame_size, on_frame, s, &s->decoder);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

KiroStream *kiro_stream_free(KiroStream *s) {
        if (!s)
                return NULL;
        eventstream_decoder_free(s->decoder);
        for (size_t i = 0; i < s->n_tools; i++) {
                free(s->tools[i].id);
                free(s->tools[i].name);
        }
        free(s->tools);
        chat_error_done(&s->error);
        free(s->json_buf);
        free(s->protocol_message);
        free(s->text_buf);
        free(s);
        return NULL;
}

bool kiro_stream_truncated(const KiroStream *s) {
        assert(s);
        return s->truncated;
}

const ChatUsage *kiro_stream_usage(const KiroStream *s) {
        assert(s);
        return &s->usage;
}

const ChatError *kiro_stream_error(const KiroStream *s) {
        assert(s);
        return s->has_error ? &s->error : NULL;
}

uint64_t kiro_stream_n_content_events(const KiroStream *s) {
        assert(s);
        return s->n_content_events;
}

static int emit(KiroStream *s, ChatEvent *ev) {
        int r;

        if (s->failure < 0)
                return s->failure;
        s->usage.output_tokens_estimate = token_counter_get(&s->output);
        if (ev->type == CHAT_EVENT_USAGE || ev->type == CHAT_EVENT_END)
                ev->usage = &s->usage;
        r = s->handler(ev, s->userdata);
        if (r < 0)
                s->failure = r;
        return r;
}

/* Content: counted for the output estimate, and it re-opens the stream (closing events must come
 * after the last content). */
static int emit_content(KiroStream *s, ChatEvent *ev) {
        if (ev->text)
                token_counter_add(&s->output, ev->text, ev->size);
        s->saw_closing = false;
        s->n_content_events++;
        return emit(s, ev);
}

_printf_(2, 3)
static int protocol_fail(KiroStream *s, const char *fmt, ...) {
        va_list ap;

        free(s->protocol_message);
        va_start(ap, fmt);
        if (vasprintf(&s->protocol_message, fmt, ap) < 0)
                s->protocol_message = NULL;
        va_end(ap);
        return -EBADMSG;
}

static int emit_error(KiroStream *s, ChatErrorKind kind, const char *message) {
        ChatError e = { .kind = kind, .message = (char *) message };
        return emit(s, &(ChatEvent) { .type = CHAT_EVENT_ERROR, .error = &e, .text = message,
                                      .size = strlen(message) });
}

static int emit_end(KiroStream *s, ChatStopReason stop) {
        s->ended = true;
        return emit(s, &(ChatEvent) { .type = CHAT_EVENT_END, .stop_reason = stop, .truncated = s->truncated });
}

static int report_upstream_error(KiroStream *s, ChatError *e) {
        if (e->kind == CHAT_ERROR_CONTENT_LENGTH_EXCEEDED) {
                /* The output reached its limit: a normal end with max_tokens. */
                s->content_length_exceeded = true;
                chat_error_done(e);
                return 0;
        }
        s->error = *e;
        *e = (ChatError) {};
        s->has_error = true;
        return emit(s, &(ChatEvent) { .type = CHAT_EVENT_ERROR, .error = &s->error, .text = s->error.message,
                                      .size = strlen(s->error.message) });
}

static ToolCall *tool_find(KiroStream *s, const char *id) {
        for (size_t i = 0; i < s->n_tools; i++)
                if (streq(s->tools[i].id, id))
                        return s->tools + i;
        return NULL;
}

static int tool_event(KiroStream *s, ChatEventType type, const ToolCall *t, const char *text, size_t size) {
        ChatEvent ev = {
                .type = type,
                .tool_id = t->id,
                .tool_name = t->name,
                .tool_index = t->index,
                .text = text,
                .size = size,
        };
        return emit_content(s, &ev);
}

static int on_tool_use(KiroStream *s, json_object *j) {
        const char *id = json_string_or_null(j, "toolUseId"), *name = json_string_or_null(j, "name");
        json_object *input = NULL;
        bool stop = false;
        ToolCall *t;
        size_t idx;
        int r;

        (void) json_get_bool(j, "stop", &stop);
        (void) json_object_object_get_ex(j, "input", &input);

        if (isempty(id))
                return 0;       /* nothing to attach it to */
        t = tool_find(s, id);
        if (t && t->stopped)
                return 0;       /* a replay after its stop */
        if (!t) {
                ToolCall *n;
                _cleanup_free_ char *i = NULL, *nm = NULL;

                /* A call without a name cannot be rendered, and the client's next turn would be refused. */
                if (isempty(name))
                        return 0;
                if (s->n_tools >= TOOL_CALLS_MAX)
                        return protocol_fail(s, "more than %u tool calls in one response", TOOL_CALLS_MAX);
                i = strdup(id);
                nm = strdup(kiro_tool_aliases_restore(s->aliases, name));
                if (!i || !nm)
                        return -ENOMEM;
                n = reallocarray(s->tools, s->n_tools + 1, sizeof(ToolCall));
                if (!n)
                        return -ENOMEM;
                s->tools = n;
                n[s->n_tools] = (ToolCall) { .id = TAKE_PTR(i), .name = TAKE_PTR(nm), .index = (unsigned) s->n_tools };
                t = n + s->n_tools++;
                r = tool_event(s, CHAT_EVENT_TOOL_START, t, NULL, 0);
                if (r < 0)
                        return r;
        }
        idx = t - s->tools;

        if (input && json_object_is_type(input, json_type_string)) {
                if (json_object_get_string_len(input) > 0) {
                        r = tool_event(s, CHAT_EVENT_TOOL_ARGS, s->tools + idx, json_object_get_string(input),
                                       json_object_get_string_len(input));
                        if (r < 0)
                                return r;
                }
        } else if (input) {
                /* Some senders give the arguments as an object: pass its serialisation. */
                size_t l;
                const char *a = json_object_to_json_string_length(input, JSON_C_TO_STRING_PLAIN |
                                                                  JSON_C_TO_STRING_NOSLASHESCAPE, &l);
                if (!a)
                        return -ENOMEM;
                r = tool_event(s, CHAT_EVENT_TOOL_ARGS, s->tools + idx, a, l);
                if (r < 0)
                        return r;
        }

        if (stop) {
                s->tools[idx].stopped = true;
                r = tool_event(s, CHAT_EVENT_TOOL_END, s->tools + idx, NULL, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

static uint64_t get_u64(json_object *o, const char *key) {
        int64_t v;
        return json_get_int64(o, key, &v) >= 0 && v > 0 ? (uint64_t) v : 0;
}

static int on_context_usage(KiroStream *s, double percent) {
        s->usage.has_context_usage = true;
        s->usage.context_usage_percent = percent;
        s->saw_closing = true;
        return emit(s, &(ChatEvent) { .type = CHAT_EVENT_USAGE });
}

static int on_metering(KiroStream *s, double credits) {
        s->usage.has_credits = true;
        s->usage.credits += credits;
        s->saw_closing = true;
        return emit(s, &(ChatEvent) { .type = CHAT_EVENT_USAGE });
}

static int on_event(KiroStream *s, const char *type, json_object *j) {
        const char *t;
        json_object *o;
        double d;
        int r;

        if (streq(type, "assistantResponseEvent")) {
                if (json_object_object_get_ex(j, "content", &o) && json_object_is_type(o, json_type_string) &&
                    json_object_get_string_len(o) > 0)
                        return emit_content(s, &(ChatEvent) { .type = CHAT_EVENT_TEXT,
                                                              .text = json_object_get_string(o),
                                                              .size = json_object_get_string_len(o) });
                return 0;
        }

        if (streq(type, "reasoningContentEvent")) {
                static const struct {
                        const char *key;
                        ChatEventType type;
                } fields[] = {
                        { "text",            CHAT_EVENT_THINKING },
                        { "signature",       CHAT_EVENT_THINKING_SIGNATURE },
                        { "redactedContent", CHAT_EVENT_THINKING_REDACTED },
                };
                for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                        if (json_object_object_get_ex(j, fields[i].key, &o) &&
                            json_object_is_type(o, json_type_string) && json_object_get_string_len(o) > 0) {
                                r = emit_content(s, &(ChatEvent) { .type = fields[i].type,
                                                                   .text = json_object_get_string(o),
                                                                   .size = json_object_get_string_len(o) });
                                if (r < 0)
                                        return r;
                        }
                return 0;
        }

        if (streq(type, "toolUseEvent"))
                return on_tool_use(s, j);

        if (streq(type, "metadataEvent")) {
                if (json_get_object(j, "tokenUsage", &o) < 0)
                        return 0;
                s->usage.has_tokens = true;
                s->usage.input_tokens = get_u64(o, "uncachedInputTokens");
                s->usage.output_tokens = get_u64(o, "outputTokens");
                s->usage.total_tokens = get_u64(o, "totalTokens");
                s->usage.cache_read_input_tokens = get_u64(o, "cacheReadInputTokens");
                s->usage.cache_write_input_tokens = get_u64(o, "cacheWriteInputTokens");
                t = json_string_or_null(j, "stopReason");
                if (t && strcasecmp(t, "MAX_TOKENS") == 0)
                        s->max_tokens = true;
                s->saw_closing = true;
                return emit(s, &(ChatEvent) { .type = CHAT_EVENT_USAGE });
        }

        if (streq(type, "contextUsageEvent"))
                return json_get_double(j, "contextUsagePercentage", &d) < 0 ? 0 : on_context_usage(s, d);

        if (streq(type, "meteringEvent"))
                return json_get_double(j, "usage", &d) < 0 ? 0 : on_metering(s, d);

        /* messageMetadataEvent, codeReferenceEvent, followupPromptEvent, supplementaryWebLinksEvent,
         * citationEvent, codeEvent, intentsEvent, interactionComponentsEvent, toolResultEvent,
         * dryRunSucceedEvent, invalidStateEvent and anything new: nothing a client can use. */
        return 0;
}

static bool event_wanted(const char *type) {
        static const char *const wanted[] = {
                "assistantResponseEvent", "reasoningContentEvent", "toolUseEvent",
                "metadataEvent", "contextUsageEvent", "meteringEvent",
        };
        for (size_t i = 0; i < ELEMENTSOF(wanted); i++)
                if (streq(type, wanted[i]))
                        return true;
        return false;
}

/* The common text event, {"content":"…"} without escapes, without going through json-c: what json-c
 * would make of it is exactly the bytes between the quotes. Returns > 0 when it handled the frame, 0 when
 * the payload has any other form (the caller then parses it as usual). */
static int text_event_fast(KiroStream *s, const EventStreamFrame *f) {
        static const char prefix[] = "{\"content\":\"", suffix[] = "\"}";
        const uint8_t *p = f->payload;
        size_t n = f->payload_size;

        if (n < strlen(prefix) + strlen(suffix) || memcmp(p, prefix, strlen(prefix)) != 0 ||
            memcmp(p + n - strlen(suffix), suffix, strlen(suffix)) != 0)
                return 0;
        p += strlen(prefix);
        n -= strlen(prefix) + strlen(suffix);
        if (json_plain_span(p, n) != n)
                return 0;
        if (n == 0)
                return 1; /* an empty text event: nothing to emit, as on the json-c path */
        if (n + 1 > s->text_alloc) {
                size_t a = MAX(n + 1, (size_t) 1024);
                char *b = realloc(s->text_buf, a);
                if (!b)
                        return -ENOMEM;
                s->text_buf = b;
                s->text_alloc = a;
        }
        memcpy(s->text_buf, p, n);
        s->text_buf[n] = 0;
        int r = emit_content(s, &(ChatEvent) { .type = CHAT_EVENT_TEXT, .text = s->text_buf, .size = n });
        return r < 0 ? r : 1;
}

/* The length of the JSON number at the start of p[0..n), 0 if there is none (RFC 8259 grammar). */
static size_t json_number_span(const char *p, size_t n) {
        size_t i = 0;

        if (i < n && p[i] == '-')
                i++;
        if (i < n && p[i] == '0')
                i++;
        else if (i < n && p[i] >= '1' && p[i] <= '9')
                while (i < n && p[i] >= '0' && p[i] <= '9')
                        i++;
        else
                return 0;
        if (i < n && p[i] == '.') {
                size_t d = ++i;
                while (i < n && p[i] >= '0' && p[i] <= '9')
                        i++;
                if (i == d)
                        return 0;
        }
        if (i < n && (p[i] == 'e' || p[i] == 'E')) {
                i++;
                if (i < n && (p[i] == '+' || p[i] == '-'))
                        i++;
                size_t d = i;
                while (i < n && p[i] >= '0' && p[i] <= '9')
                        i++;
                if (i == d)
                        return 0;
        }
        return i;
}

/* The two closing events in the exact form Kiro sends them, {"contextUsagePercentage":N} and
 * {"unit":"credit","unitPlural":"credits","usage":N}, without going through json-c (every answer ends
 * with them). Returns > 0 when it handled the frame, 0 for any other form (parsed as usual). */
static int number_event_fast(KiroStream *s, const EventStreamFrame *f) {
        static const char context[] = "{\"contextUsagePercentage\":",
                          metering[] = "{\"unit\":\"credit\",\"unitPlural\":\"credits\",\"usage\":";
        const char *p = (const char *) f->payload, *prefix;
        size_t n = f->payload_size, len;
        char number[64];
        bool is_context;

        if (streq(f->event_type, "contextUsageEvent"))
                prefix = context, is_context = true;
        else if (streq(f->event_type, "meteringEvent"))
                prefix = metering, is_context = false;
        else
                return 0;
        if (n < strlen(prefix) + 2 || memcmp(p, prefix, strlen(prefix)) != 0 || p[n - 1] != '}')
                return 0;
        p += strlen(prefix);
        n -= strlen(prefix) + 1;
        len = json_number_span(p, n);
        if (len == 0 || len != n || len >= sizeof number)
                return 0;
        memcpy(number, p, len);
        number[len] = 0;
        /* The daemon runs in the C locale: '.' is the decimal point, as in JSON. */
        double d = strtod(number, NULL);
        int r = is_context ? on_context_usage(s, d) : on_metering(s, d);
        return r < 0 ? r : 1;
}

static int on_frame(const EventStreamFrame *f, void *userdata) {
        KiroStream *s = userdata;
        _cleanup_(json_object_putp) json_object *j = NULL;
        _cleanup_(chat_error_done) ChatError e = {};
        const char *mt = f->message_type ?: "event", *why = NULL;
        int r;

        /* After an exception the rest of the stream means nothing. */
        if (s->has_error || s->content_length_exceeded)
                return 0;

        if (streq(mt, "exception")) {
                r = kiro_error_parse(f->payload, f->payload_size, f->exception_type, 0, &e);
                if (r < 0)
                        return r;
                return report_upstream_error(s, &e);
        }
        if (streq(mt, "error")) {
                const char *msg = f->error_message;
                r = kiro_error_parse(msg ?: (const char *) f->payload, msg ? strlen(msg) : f->payload_size,
                                     f->error_code, 0, &e);
                if (r < 0)
                        return r;
                return report_upstream_error(s, &e);
        }
        if (!streq(mt, "event") || !f->event_type || !event_wanted(f->event_type))
                return 0;

        if (streq(f->event_type, "assistantResponseEvent")) {
                r = text_event_fast(s, f);
                if (r != 0)
                        return r < 0 ? r : 0;
        } else {
                r = number_event_fast(s, f);
                if (r != 0)
                        return r < 0 ? r : 0;
        }

        r = json_parse_bounded((const char *) f->payload, f->payload_size, PAYLOAD_DEPTH_MAX, &j, &why);
        if (r < 0)
                return protocol_fail(s, "the payload of %s frame %" PRIu64 " is not JSON: %s", f->event_type,
                                     eventstream_decoder_n_frames(s->decoder) - 1, strna(why));
        if (!json_object_is_type(j, json_type_object))
                return protocol_fail(s, "the payload of %s frame %" PRIu64 " is not a JSON object", f->event_type,
                                     eventstream_decoder_n_frames(s->decoder) - 1);
        return on_event(s, f->event_type, j);
}

/* The stream is broken: ERROR and END, once; the error is sticky. */
static int stream_broken(KiroStream *s, int error, const char *message) {
        int r;

        s->truncated = true;
        r = emit_error(s, error == -EPIPE ? CHAT_ERROR_TRUNCATED : CHAT_ERROR_PROTOCOL, message);
        if (r >= 0)
                r = emit_end(s, CHAT_STOP_REASON_ERROR);
        if (s->failure >= 0)
                s->failure = error;
        return r < 0 ? r : error;
}

int kiro_stream_feed(KiroStream *s, const void *data, size_t size) {
        int r;

        assert(s);
        assert(data || size == 0);

        if (s->failure < 0)
                return s->failure;
        if (s->ended)
                return -ESTALE;
        if (size == 0)
                return 0;

        /* A frame starting with '{' would claim about 2 GB: this is a JSON error document. */
        if (!s->started) {
                s->started = true;
                s->json_body = ((const char *) data)[0] == '{';
        }
        if (s->json_body) {
                char *n;

                if (s->json_size + size > JSON_BODY_MAX)
                        return stream_broken(s, -E2BIG, "the upstream error document is too large");
                n = realloc(s->json_buf, s->json_size + size + 1);
                if (!n)
                        return -ENOMEM;
                s->json_buf = n;
                memcpy(n + s->json_size, data, size);
                s->json_size += size;
                n[s->json_size] = 0;
                return 0;
        }

        r = eventstream_decoder_feed(s->decoder, data, size);
        if (r < 0) {
                if (s->failure < 0)     /* our handler asked to stop */
                        return s->failure;
                if (r == -ENOMEM && !s->protocol_message)
                        return r;
                return stream_broken(s, r, s->protocol_message ?: eventstream_decoder_error_message(s->decoder));
        }
        return 0;
}

int kiro_stream_finish(KiroStream *s) {
        ChatStopReason stop;
        int r;

        assert(s);

        if (s->failure < 0)
                return s->failure;
        if (s->ended)
                return -ESTALE;

        if (s->json_body) {
                _cleanup_(chat_error_done) ChatError e = {};

                r = kiro_error_parse(s->json_buf, s->json_size, NULL, 0, &e);
                if (r < 0)
                        return r;
                if (e.kind == CHAT_ERROR_UNKNOWN)
                        e.kind = CHAT_ERROR_PROTOCOL;
                r = report_upstream_error(s, &e);
                if (r < 0)
                        return r;
        } else {
                r = eventstream_decoder_finish(s->decoder);
                if (r < 0)
                        return stream_broken(s, r, eventstream_decoder_error_message(s->decoder));
        }

        if (!s->saw_closing && !s->has_error && !s->content_length_exceeded)
                return stream_broken(s, -EPIPE,
                                     "the upstream response ended before its closing events; the answer is incomplete");

        for (size_t i = 0; i < s->n_tools; i++)
                if (!s->tools[i].stopped) {
                        s->tools[i].stopped = true;
                        r = tool_event(s, CHAT_EVENT_TOOL_END, s->tools + i, NULL, 0);
                        if (r < 0)
                                return r;
                }

        if (s->has_error)
                stop = CHAT_STOP_REASON_ERROR;
        else if (s->content_length_exceeded || s->max_tokens)
                stop = CHAT_STOP_REASON_MAX_TOKENS;
        else if (s->n_tools > 0)
                stop = CHAT_STOP_REASON_TOOL_USE;
        else if (s->usage.has_context_usage && s->usage.context_usage_percent >= 100.0)
                stop = CHAT_STOP_REASON_CONTEXT_WINDOW_EXCEEDED;
        else
                stop = CHAT_STOP_REASON_END_TURN;
        r = emit_end(s, stop);
        return r < 0 ? r : 0;
}
