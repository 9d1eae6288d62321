/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Kiro's ListAvailableModels (KIRO-PROTOCOL B §5.2, the REST form): GET {endpoint}/ListAvailableModels
 * ?origin=AI_EDITOR&profileArn=…[&nextToken=…] with the chat's bearer token, paged, cached per (region,
 * profile) for an hour, into chat-models' live list. */
#include <stdarg.h>
#include <strings.h>

#include "buf.h"

#include "json-util.h"
#include "log.h"
#include "kiro/kiro-models.h"

#define MODELS_BODY_MAX (1024 * 1024)
#define MODELS_PAGES_MAX 10
#define MODELS_TIMEOUT_USEC (30 * USEC_PER_SEC)

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(CURL *, curl_easy_cleanup);

struct ChatCatalogWait {
        KiroModels *owner;
        ChatCatalogDone done;
        void *userdata;
        ChatCatalogWait *next;
};

typedef struct CatalogCache {
        char *key;              /* "region profile-arn" */
        json_object **docs;     /* the pages the list points into */
        size_t n_docs;
        ModelLive *list;
        size_t n;
        usec_t fetched;         /* CLOCK_MONOTONIC of the last good fetch, 0 = none */
        usec_t failed;          /* of the last failed one, 0 = none */
} CatalogCache;

typedef struct Fetch {
        KiroModels *owner;
        TokenRequest *token_request;
        Token *token;
        CatalogCache *cache;
        CURL *curl;
        struct curl_slist *headers;
        Buf body;
        char *next_token;
        unsigned endpoint;
        unsigned page;
        json_object **docs;
        size_t n_docs;
        ModelLive *list;
        size_t n;
} Fetch;

struct KiroModels {
        Upstream *upstream;
        CatalogCache *caches;
        size_t n_caches;
        Fetch *fetch;           /* the one in flight */
        size_t current;         /* the cache of the last token seen, SIZE_MAX = none */
        ChatCatalogWait *waiters;
};

int kiro_models_parse(const char *body, size_t size, json_object **ret_doc, ModelLive **list, size_t *n,
                      const char **ret_next_token) {
        _cleanup_json_ json_object *doc = NULL;
        json_object *models;
        int r = json_parse_bounded(body, size, 32, &doc, NULL);
        if (r < 0)
                return r;
        if (!json_object_is_type(doc, json_type_object) || json_get_array(doc, "models", &models) < 0)
                return -EBADMSG;
        size_t k = json_object_array_length(models);
        ModelLive *l = realloc(*list, (*n + k + 1) * sizeof *l);
        if (!l)
                return -ENOMEM;
        *list = l;
        for (size_t i = 0; i < k; i++) {
                json_object *m = json_object_array_get_idx(models, i), *limits, *schema;
                const char *id;
                int64_t v;
                if (json_get_string(m, "modelId", &id) < 0 || isempty(id))
                        continue;
                ModelLive *e = l + (*n)++;
                *e = (ModelLive) { .id = id, .display_name = json_string_or_null(m, "modelName") };
                if (json_get_object(m, "tokenLimits", &limits) >= 0) {
                        if (json_get_int64(limits, "maxInputTokens", &v) >= 0 && v > 0)
                                e->context_window = (uint64_t) v;
                        if (json_get_int64(limits, "maxOutputTokens", &v) >= 0 && v > 0)
                                e->max_output_tokens = (uint64_t) v;
                }
                /* Native reasoning is declared in the request-field schema ("thinking"). */
                if (json_object_object_get_ex(m, "additionalModelRequestFieldsSchema", &schema) && schema) {
                        const char *s = json_object_is_type(schema, json_type_string)
                                                ? json_object_get_string(schema)
                                                : json_object_to_json_string_ext(schema, JSON_C_TO_STRING_PLAIN);
                        e->thinking = s && strstr(s, "\"thinking\"");
                }
        }
        if (ret_next_token) {
                const char *t = json_string_or_null(doc, "nextToken");
                *ret_next_token = isempty(t) ? NULL : t;
        }
        *ret_doc = TAKE_PTR(doc);
        return 0;
}

static void docs_free(json_object **docs, size_t n) {
        for (size_t i = 0; i < n; i++)
                json_object_put(docs[i]);
        free(docs);
}

static void cache_done(CatalogCache *c) {
        free(c->key);
        docs_free(c->docs, c->n_docs);
        free(c->list);
}

static Fetch *fetch_free(Fetch *f) {
        if (!f)
                return NULL;
        if (f->token_request)
                token_request_cancel(f->token_request);
        if (f->curl) {
                curl_glue_remove(upstream_glue(f->owner->upstream), f->curl);
                curl_easy_cleanup(f->curl);
        }
        curl_slist_free_all(f->headers); /* holds the bearer token: freed with the transfer */
        token_unref(f->token);
        buf_done(&f->body);
        free(f->next_token);
        docs_free(f->docs, f->n_docs);
        free(f->list);
        free(f);
        return NULL;
}

int kiro_models_new(Upstream *u, KiroModels **ret) {
        KiroModels *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->upstream = u;
        m->current = SIZE_MAX;
        *ret = m;
        return 0;
}

KiroModels *kiro_models_free(KiroModels *m) {
        if (!m)
                return NULL;
        m->fetch = fetch_free(m->fetch);
        while (m->waiters) {
                ChatCatalogWait *w = m->waiters;
                m->waiters = w->next;
                free(w);
        }
        for (size_t i = 0; i < m->n_caches; i++)
                cache_done(m->caches + i);
        free(m->caches);
        free(m);
        return NULL;
}

/* Ends the fetch in flight and tells every waiter. */
static void finish(KiroModels *m) {
        m->fetch = fetch_free(m->fetch);
        ChatCatalogWait *w = m->waiters;
        m->waiters = NULL;
        while (w) {
                ChatCatalogWait *next = w->next;
                ChatCatalogDone done = w->done;
                void *userdata = w->userdata;
                free(w);
                done(userdata);
                w = next;
        }
}

static CatalogCache *cache_for(KiroModels *m, const Token *t) {
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s %s", strempty(t->region), strempty(t->profile_arn)) < 0)
                return NULL;
        for (size_t i = 0; i < m->n_caches; i++)
                if (streq(m->caches[i].key, key))
                        return m->caches + i;
        CatalogCache *a = realloc(m->caches, (m->n_caches + 1) * sizeof *a);
        if (!a)
                return NULL;
        m->caches = a;
        a[m->n_caches] = (CatalogCache) { .key = TAKE_PTR(key) };
        return a + m->n_caches++;
}

/* c is the list to serve from now on. */
static void apply(KiroModels *m, const CatalogCache *c) {
        m->current = (size_t) (c - m->caches);
}

static int start_page(Fetch *f);

static void fetch_failed(Fetch *f, const char *fmt, ...) _printf_(2, 3);
static void fetch_failed(Fetch *f, const char *fmt, ...) {
        KiroModels *m = f->owner;
        const UpstreamConfig *cfg = upstream_config(m->upstream);
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);

        /* The next endpoint, from the first page. */
        if (f->token && f->endpoint + 1 < strv_length(cfg->endpoints)) {
                log_debug("ListAvailableModels failed on endpoint %u (%s), trying the next.", f->endpoint, strna(msg));
                f->endpoint++;
                f->page = 0;
                docs_free(f->docs, f->n_docs);
                f->docs = NULL;
                f->n_docs = 0;
                f->n = 0;
                free(f->next_token);
                f->next_token = NULL;
                if (start_page(f) >= 0)
                        return;
        }
        log_warning("Cannot list Kiro's models (%s); serving the %s until a retry in %llus.", strna(msg),
                    f->cache && f->cache->fetched ? "last list" : "built-in table",
                    (unsigned long long) (KIRO_MODELS_RETRY_USEC / USEC_PER_SEC));
        if (f->cache)
                f->cache->failed = now(CLOCK_MONOTONIC);
        finish(m);
}

static void on_done(CurlGlue *g, CURL *curl, CURLcode result, void *userdata) {
        Fetch *f = userdata;
        long status = 0;
        json_object *doc = NULL;
        const char *next = NULL;
        int r;

        f->curl = NULL;
        (void) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(curl);
        curl_slist_free_all(f->headers);
        f->headers = NULL;
        if (result != CURLE_OK)
                return fetch_failed(f, "%s", curl_easy_strerror(result));
        if (status == 401 || status == 403)
                /* Kiro refused the token: the next try gets a fresh one. */
                token_cache_invalidate(upstream_tokens(f->owner->upstream), f->token->credential_id);
        if (status != 200)
                return fetch_failed(f, "HTTP %ld", status);
        r = kiro_models_parse(f->body.data ?: "", f->body.size, &doc, &f->list, &f->n, &next);
        if (r < 0)
                return fetch_failed(f, "bad answer: %s", strerror(-r));
        json_object **d = realloc(f->docs, (f->n_docs + 1) * sizeof *d);
        if (!d) {
                json_object_put(doc);
                return fetch_failed(f, "out of memory");
        }
        f->docs = d;
        f->docs[f->n_docs++] = doc;
        if (next && f->page + 1 < MODELS_PAGES_MAX) {
                char *t = strdup(next);
                if (!t)
                        return fetch_failed(f, "out of memory");
                free(f->next_token);
                f->next_token = t;
                f->page++;
                r = start_page(f);
                if (r < 0)
                        return fetch_failed(f, "%s", strerror(-r));
                return;
        }

        CatalogCache *c = f->cache;
        docs_free(c->docs, c->n_docs);
        free(c->list);
        c->docs = TAKE_PTR(f->docs);
        c->n_docs = f->n_docs;
        f->n_docs = 0;
        c->list = TAKE_PTR(f->list);
        c->n = f->n;
        c->fetched = now(CLOCK_MONOTONIC);
        c->failed = 0;
        log_info("Kiro lists %zu model(s) for region %s.", c->n, strna(f->token->region));
        apply(f->owner, c);
        finish(f->owner);
}

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
        Fetch *f = userdata;
        size_t len = size * n;
        if (f->body.size + len > MODELS_BODY_MAX || buf_put(&f->body, ptr, len) < 0)
                return 0;
        return len;
}

static int add_header(struct curl_slist **l, const char *name, const char *value) {
        _cleanup_free_ char *s = NULL;
        if (asprintf(&s, "%s: %s", name, value) < 0)
                return -ENOMEM;
        struct curl_slist *n = curl_slist_append(*l, s);
        explicit_bzero(s, strlen(s));
        if (!n)
                return -ENOMEM;
        *l = n;
        return 0;
}

static int start_page(Fetch *f) {
        KiroModels *m = f->owner;
        const UpstreamConfig *cfg = upstream_config(m->upstream);
        const char *profile = f->token->profile_arn ?: cfg->default_profile_arn;
        _cleanup_free_ char *base = NULL, *auth = NULL, *xua = NULL, *ua = NULL;
        _cleanup_(buf_done) Buf url = {};
        int r;

        if (strv_length(cfg->endpoints) == 0)
                return -ENOENT;
        r = url_expand_region(cfg->endpoints[f->endpoint], f->token->region ?: "us-east-1", &base);
        if (r < 0)
                return r;
        _cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        r = buf_puts_many(&url, base, KIRO_MODELS_PATH, "?origin=AI_EDITOR");
        if (r >= 0 && profile) {
                char *e = curl_easy_escape(c, profile, 0);
                r = e ? buf_puts_many(&url, "&profileArn=", e) : -ENOMEM;
                curl_free(e);
        }
        if (r >= 0 && f->next_token) {
                char *e = curl_easy_escape(c, f->next_token, 0);
                r = e ? buf_puts_many(&url, "&nextToken=", e) : -ENOMEM;
                curl_free(e);
        }
        if (r >= 0)
                r = buf_put(&url, "", 1);
        if (r < 0)
                return r;
        if (asprintf(&auth, "Bearer %s", f->token->access_token) < 0 ||
            asprintf(&ua, "%s KiroIDE-%s-%s", KIRO_SDK_UA, KIRO_IDE_VERSION, strempty(f->token->machine_id)) < 0 ||
            asprintf(&xua, "%s KiroIDE-%s-%s", KIRO_SDK_XUA, KIRO_IDE_VERSION, strempty(f->token->machine_id)) < 0)
                return -ENOMEM;
        r = add_header(&f->headers, "Authorization", auth);
        explicit_bzero(auth, strlen(auth));
        if (r >= 0)
                r = add_header(&f->headers, "Accept", "application/json");
        if (r >= 0)
                r = add_header(&f->headers, "x-amz-user-agent", xua);
        if (r >= 0 && streq_ptr(f->token->auth_method, "api-key"))
                r = add_header(&f->headers, "tokentype", "API_KEY");
        else if (r >= 0 && streq_ptr(f->token->auth_method, "external-idp"))
                r = add_header(&f->headers, "TokenType", "EXTERNAL_IDP");
        if (r < 0)
                return r;
        f->body.size = 0;
        r = curl_glue_setup_easy(c, url.data, cfg->ca_file, MODELS_TIMEOUT_USEC);
        if (r < 0)
                return r;
        if (curl_easy_setopt(c, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, f->headers) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_USERAGENT, ua) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
            curl_easy_setopt(c, CURLOPT_WRITEDATA, f) != CURLE_OK)
                return -EIO;
        r = curl_glue_add_proxied(upstream_glue(m->upstream), c, f->token->proxy, NULL, on_done, f);
        if (r < 0)
                return r;
        f->curl = TAKE_PTR(c);
        log_debug("Asking Kiro for its models (page %u).", f->page + 1);
        return 0;
}

/* With a token: 1 when the cached list is current (applied), 0 when a fetch started. */
static int decide(Fetch *f, Token *t) {
        usec_t n = now(CLOCK_MONOTONIC);
        f->token = token_ref(t);
        f->cache = cache_for(f->owner, t);
        if (!f->cache)
                return -ENOMEM;
        if (f->cache->fetched > 0 && n < f->cache->fetched + KIRO_MODELS_REFRESH_USEC) {
                apply(f->owner, f->cache);
                return 1;
        }
        if (f->cache->failed > 0 && n < f->cache->failed + KIRO_MODELS_RETRY_USEC) {
                apply(f->owner, f->cache);
                return 1;
        }
        return start_page(f);
}

static void on_token(Token *t, const sd_bus_error *error, void *userdata) {
        Fetch *f = userdata;
        f->token_request = NULL;
        if (!t) {
                log_debug("No token to list Kiro's models: %s", strna(error ? error->message : NULL));
                return finish(f->owner);
        }
        int r = decide(f, t);
        if (r != 0) {
                if (r < 0)
                        log_warning_errno(r, "Cannot list Kiro's models: %m");
                finish(f->owner);
        }
}

static int catalog_refresh(void *data, ChatCatalogDone done, void *userdata, ChatCatalogWait **ret) {
        KiroModels *m = data;
        Token *t = NULL;
        int r;

        if (!m->fetch) {
                Fetch *f = calloc(1, sizeof *f);
                if (!f)
                        return -ENOMEM;
                f->owner = m;
                m->fetch = f;
                r = token_cache_get(upstream_tokens(m->upstream), "kiro", NULL, on_token, f, &t, &f->token_request);
                if (r > 0)
                        r = decide(f, t);
                if (r != 0) {
                        /* Current already, or failed: nobody waits. */
                        m->fetch = fetch_free(f);
                        if (r < 0)
                                log_debug_errno(r, "Cannot list Kiro's models: %m");
                        return 1;
                }
        }
        ChatCatalogWait *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        *w = (ChatCatalogWait) { .owner = m, .done = done, .userdata = userdata, .next = m->waiters };
        m->waiters = w;
        *ret = w;
        return 0;
}

static void catalog_cancel(ChatCatalogWait *w) {
        if (!w)
                return;
        for (ChatCatalogWait **p = &w->owner->waiters; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        free(w);
                        return;
                }
}

static int catalog_list(void *data, const ModelLive **ret, size_t *ret_n) {
        KiroModels *m = data;
        if (m->current >= m->n_caches || m->caches[m->current].fetched == 0)
                return -ENODATA;
        *ret = m->caches[m->current].list;
        *ret_n = m->caches[m->current].n;
        return 0;
}

const ChatCatalogOps kiro_catalog_ops = {
        .refresh = catalog_refresh,
        .cancel = catalog_cancel,
        .list = catalog_list,
};
