/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /v1/models and the unknown-model second chance, over the live catalog. */
#include "buf.h"
#include "log.h"
#include "api/api-error.h"
#include "api/api-models.h"

#define ALIASES_MAX 16
/* OpenAI's "created" and Anthropic's "created_at": Kiro gives no dates; a fixed one. */
#define MODELS_CREATED 1735689600ULL
#define MODELS_CREATED_AT "2025-01-01T00:00:00Z"

/* Marks a request that already had its second chance (http_request_set_userdata()). */
static char retried_marker;

static int put_aliases(Buf *b, const ModelCatalogEntry *e) {
        const char *al[ALIASES_MAX];
        size_t n = models_aliases(e->id, al, ELEMENTSOF(al));
        int r = buf_puts(b, "[");
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = buf_puts(b, i ? "," : "");
                if (r >= 0)
                        r = buf_put_json_string_utf8(b, al[i], strlen(al[i]));
        }
        return r < 0 ? r : buf_puts(b, "]");
}

static int put_openai(Buf *b, const ModelCatalogEntry *e, bool thinking, bool *first) {
        _cleanup_free_ char *id = NULL, *name = NULL;
        if (asprintf(&id, "%s%s", e->id, thinking ? "-thinking" : "") < 0 ||
            asprintf(&name, "%s%s", e->display_name, thinking ? " (thinking)" : "") < 0)
                return -ENOMEM;
        int r = buf_puts(b, *first ? "{\"id\":" : ",{\"id\":");
        *first = false;
        if (r >= 0)
                r = buf_put_json_string_utf8(b, id, strlen(id));
        if (r >= 0)
                r = buf_putf(b, ",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"%s\",\"display_name\":", MODELS_CREATED,
                             model_provider_to_string(e->provider));
        if (r >= 0)
                r = buf_put_json_string_utf8(b, name, strlen(name));
        if (r >= 0)
                r = buf_putf(b, ",\"context_window\":%llu,\"max_output_tokens\":%llu,\"thinking\":%s,\"listed_by_kiro\":%s,"
                                "\"aliases\":",
                             (unsigned long long) e->context_window, (unsigned long long) e->max_output_tokens,
                             e->thinking ? "true" : "false", e->listed_upstream ? "true" : "false");
        if (r >= 0)
                r = thinking ? buf_puts(b, "[]") : put_aliases(b, e);
        return r < 0 ? r : buf_puts(b, "}");
}

static int put_anthropic(Buf *b, const ModelCatalogEntry *e, bool *first) {
        int r = buf_puts(b, *first ? "{\"type\":\"model\",\"id\":" : ",{\"type\":\"model\",\"id\":");
        *first = false;
        if (r >= 0)
                r = buf_put_json_string_utf8(b, e->id, strlen(e->id));
        if (r >= 0)
                r = buf_puts(b, ",\"display_name\":");
        if (r >= 0)
                r = buf_put_json_string_utf8(b, e->display_name, strlen(e->display_name));
        if (r >= 0)
                r = buf_puts(b, ",\"created_at\":\"" MODELS_CREATED_AT "\"}");
        return r;
}

int api_models_render(ChatContext *ctx, bool anthropic, char **ret, size_t *ret_size) {
        _cleanup_(buf_done) Buf b = {};
        ModelCatalogEntry e;
        const char *first_id = NULL, *last_id = NULL;
        bool first = true;
        int r = buf_puts(&b, anthropic ? "{\"data\":[" : "{\"object\":\"list\",\"data\":[");
        size_t n = models_catalog_count();
        /* Kiro's catalog, then Kimi's table entries when ctx lists Kimi (a Kimi credential exists). */
        bool kimi = !ctx || !ctx->provider_listed || ctx->provider_listed(MODEL_PROVIDER_KIMI, ctx->provider_listed_userdata);
        for (size_t i = 0; r >= 0; i++) {
                if (i < n) {
                        if (!models_catalog_get(i, &e))
                                continue;
                } else if (!kimi || !models_table_get(MODEL_PROVIDER_KIMI, i - n, &e))
                        break;
                first_id = first_id ?: e.id;
                last_id = e.id;
                if (anthropic)
                        r = put_anthropic(&b, &e, &first);
                else {
                        r = put_openai(&b, &e, false, &first);
                        if (r >= 0 && e.thinking)
                                r = put_openai(&b, &e, true, &first);
                }
        }
        if (r >= 0 && anthropic) {
                r = buf_puts(&b, "],\"has_more\":false,\"first_id\":");
                if (r >= 0)
                        r = first_id ? buf_put_json_string_utf8(&b, first_id, strlen(first_id)) : buf_puts(&b, "null");
                if (r >= 0)
                        r = buf_puts(&b, ",\"last_id\":");
                if (r >= 0)
                        r = last_id ? buf_put_json_string_utf8(&b, last_id, strlen(last_id)) : buf_puts(&b, "null");
                if (r >= 0)
                        r = buf_puts(&b, "}");
        } else if (r >= 0)
                r = buf_puts(&b, "]}");
        if (r < 0)
                return r;
        *ret_size = b.size;
        *ret = buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static int respond_models(ChatContext *ctx, HttpRequest *http) {
        _cleanup_free_ char *body = NULL;
        size_t size;
        int r = api_models_render(ctx, !!http_request_header(http, "anthropic-version"), &body, &size);
        if (r < 0)
                return http_request_respond_error(http, 500, "Out of memory.");
        return http_request_respond(http, 200, "application/json", body, size, NULL);
}

/* What the back end lists becomes the live list. */
static void take_list(ChatContext *ctx) {
        const ModelLive *l;
        size_t n;
        if (!ctx->catalog.ops || ctx->catalog.ops->list(ctx->catalog.data, &l, &n) < 0)
                return;
        int r = models_live_set(MODEL_PROVIDER_KIRO, l, n);
        if (r < 0)
                log_warning_errno(r, "Cannot take the back end's model list: %m");
}

/* A request parked until the catalog refresh ends. */
typedef struct CatalogWaiter {
        ChatContext *ctx;
        HttpRequest *http;
        ChatCatalogWait *wait;
        const ApiLimits *limits;
        void *extra;
        ApiHandler handler;     /* NULL: answer /v1/models */
} CatalogWaiter;

static void waiter_free(CatalogWaiter *w) {
        if (!w)
                return;
        if (w->wait)
                w->ctx->catalog.ops->cancel(w->wait);
        http_request_unref(w->http);
        free(w);
}

static void on_abort(HttpRequest *r, void *userdata) {
        waiter_free(userdata);
}

static void on_catalog(void *userdata) {
        CatalogWaiter *w = userdata;
        w->wait = NULL;
        take_list(w->ctx);
        /* Before the handler, which may set its own (a chat's). */
        http_request_set_abort_handler(w->http, NULL, NULL);
        if (w->handler) {
                http_request_set_userdata(w->http, &retried_marker);
                (void) w->handler(w->ctx, w->http, w->limits, w->extra);
        } else
                (void) respond_models(w->ctx, w->http);
        waiter_free(w);
}

/* 1: parked until the refresh ends; 0: the catalog is current. */
static int wait_catalog(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, ApiHandler handler, void *extra) {
        if (!ctx->catalog.ops)
                return 0;
        CatalogWaiter *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (CatalogWaiter) { .ctx = ctx, .http = http_request_ref(http), .limits = limits, .extra = extra,
                               .handler = handler };
        int r = ctx->catalog.ops->refresh(ctx->catalog.data, on_catalog, w, &w->wait);
        if (r > 0)
                take_list(ctx);
        if (r != 0) {
                w->wait = NULL;
                waiter_free(w);
                return r < 0 ? r : 0;
        }
        http_request_set_abort_handler(http, on_abort, w);
        return 1;
}

int api_models_handle(ChatContext *ctx, HttpRequest *http) {
        int r = wait_catalog(ctx, http, NULL, NULL, NULL);
        if (r > 0)
                return 0;
        if (r < 0)
                log_debug_errno(r, "Cannot refresh the model catalog, serving what is known: %m");
        return respond_models(ctx, http);
}

int api_models_retry_unknown(ChatContext *ctx, HttpRequest *http, const ApiLimits *limits, ApiHandler handler,
                             void *extra) {
        if (http_request_get_userdata(http) == &retried_marker)
                return 0;
        int r = wait_catalog(ctx, http, limits, handler, extra);
        return r > 0 ? 1 : 0;
}
