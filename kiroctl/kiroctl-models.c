/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* kiroctl models: fetch /v1/models from kiro-proxyd, or fall back to the built-in table; print it. */
#include <curl/curl.h>

#include "buf.h"
#include "json-util.h"
#include "kiroctl-models.h"
#include "kiroctl-table.h"
#include "chat/chat-models.h"

#define MODELS_BODY_MAX (4 * 1024 * 1024)

static size_t on_data(char *ptr, size_t size, size_t n, void *userdata) {
        Buf *b = userdata;
        size_t len = size * n;
        if (b->size + len > MODELS_BODY_MAX || buf_put(b, ptr, len) < 0)
                return 0;
        return len;
}

int models_fetch(const char *proxy, const char *api_key, char **ret_body, size_t *ret_size) {
        _cleanup_(buf_done) Buf body = {};
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct curl_slist *headers = NULL;
        const char *sock = startswith(proxy, "unix:");
        long status = 0;
        int r = 0;

        if (asprintf(&url, "%s/v1/models", sock ? "http://localhost" : proxy) < 0)
                return -ENOMEM;
        CURL *c = curl_easy_init();
        if (!c)
                return -ENOMEM;
        if (api_key) {
                if (asprintf(&auth, "Authorization: Bearer %s", api_key) < 0 || !(headers = curl_slist_append(NULL, auth)))
                        r = -ENOMEM;
                if (auth)
                        explicit_bzero(auth, strlen(auth));
        }
        if (r >= 0 &&
            (curl_easy_setopt(c, CURLOPT_URL, url) != CURLE_OK ||
             (sock && curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock) != CURLE_OK) ||
             curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
             curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L) != CURLE_OK ||
             curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 3L) != CURLE_OK ||
             curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers) != CURLE_OK ||
             curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK ||
             curl_easy_setopt(c, CURLOPT_WRITEDATA, &body) != CURLE_OK))
                r = -EIO;
        if (r >= 0) {
                CURLcode cc = curl_easy_perform(c);
                if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST)
                        r = -ECONNREFUSED;
                else if (cc == CURLE_OPERATION_TIMEDOUT)
                        r = -ETIMEDOUT;
                else if (cc != CURLE_OK)
                        r = -EIO;
                else if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200)
                        r = status == 401 ? -EACCES : -EPROTO;
        }
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        if (r < 0)
                return r;
        *ret_size = body.size;
        *ret_body = buf_steal(&body);
        return *ret_body ? 0 : -ENOMEM;
}

int models_builtin_body(char **ret_body, size_t *ret_size) {
        _cleanup_(buf_done) Buf b = {};
        ModelCatalogEntry e;
        int r = buf_puts(&b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; r >= 0 && i < models_catalog_count(); i++) {
                const char *al[16];
                if (!models_catalog_get(i, &e))
                        continue;
                size_t n = models_aliases(e.id, al, ELEMENTSOF(al));
                r = buf_puts(&b, i ? ",{\"id\":" : "{\"id\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, e.id, strlen(e.id));
                if (r >= 0)
                        r = buf_puts(&b, ",\"display_name\":");
                if (r >= 0)
                        r = buf_put_json_string(&b, e.display_name, strlen(e.display_name));
                if (r >= 0)
                        r = buf_putf(&b, ",\"context_window\":%llu,\"max_output_tokens\":%llu,\"thinking\":%s,"
                                         "\"listed_by_kiro\":false,\"aliases\":[",
                                     (unsigned long long) e.context_window, (unsigned long long) e.max_output_tokens,
                                     e.thinking ? "true" : "false");
                for (size_t k = 0; r >= 0 && k < n; k++) {
                        r = buf_puts(&b, k ? "," : "");
                        if (r >= 0)
                                r = buf_put_json_string(&b, al[k], strlen(al[k]));
                }
                if (r >= 0)
                        r = buf_puts(&b, "]}");
        }
        if (r >= 0)
                r = buf_puts(&b, "]}");
        if (r < 0)
                return r;
        *ret_size = b.size;
        *ret_body = buf_steal(&b);
        return *ret_body ? 0 : -ENOMEM;
}

/* The id of the model a "-thinking" entry varies, when that model is in the list too. */
static json_object *thinking_base(json_object *data, const char *id) {
        size_t l = strlen(id), k = strlen("-thinking");
        if (l <= k || !streq(id + l - k, "-thinking"))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(data); i++) {
                const char *o = json_string_or_null(json_object_array_get_idx(data, i), "id");
                if (o && strlen(o) == l - k && strncmp(o, id, l - k) == 0)
                        return json_object_array_get_idx(data, i);
        }
        return NULL;
}

int models_print(FILE *f, const char *body, size_t size, bool json, const char *source, bool colors) {
        _cleanup_json_ json_object *doc = NULL, *out = NULL;
        json_object *data;
        int r = json_parse_bounded(body, size, 16, &doc, NULL);
        if (r < 0)
                return r;
        if (json_get_array(doc, "data", &data) < 0)
                return -EBADMSG;

        out = json_object_new_array();
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(data); i++) {
                json_object *m = json_object_array_get_idx(data, i), *al = NULL, *o, *v;
                const char *id = json_string_or_null(m, "id");
                if (!id || thinking_base(data, id))
                        continue;
                o = json_object_new_object();
                if (!o || json_object_array_add(out, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
                static const char *const keys[] = { "id", "display_name", "context_window", "max_output_tokens",
                                                    "thinking", "listed_by_kiro" };
                for (size_t k = 0; k < ELEMENTSOF(keys); k++)
                        if (json_object_object_get_ex(m, keys[k], &v) &&
                            json_object_object_add(o, keys[k], json_object_get(v)) < 0)
                                return -ENOMEM;
                al = json_object_new_array();
                if (!al || json_object_object_add(o, "aliases", al) < 0) {
                        json_object_put(al);
                        return -ENOMEM;
                }
                if (json_object_object_get_ex(m, "aliases", &v) && json_object_is_type(v, json_type_array))
                        for (size_t k = 0; k < json_object_array_length(v); k++)
                                if (json_object_array_add(al, json_object_get(json_object_array_get_idx(v, k))) < 0)
                                        return -ENOMEM;
                bool th = false;
                if (json_get_bool(m, "thinking", &th) >= 0 && th) {
                        _cleanup_free_ char *t = NULL;
                        if (asprintf(&t, "%s-thinking", id) < 0 || json_object_array_add(al, json_object_new_string(t)) < 0)
                                return -ENOMEM;
                }
        }

        if (json) {
                _cleanup_json_ json_object *top = json_object_new_object();
                if (!top || json_add(top, "source", json_object_new_string(source)) < 0 ||
                    json_add(top, "models", json_object_get(out)) < 0)
                        return -ENOMEM;
                fprintf(f, "%s\n", json_object_to_json_string_ext(top, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                                              JSON_C_TO_STRING_NOSLASHESCAPE));
                return 0;
        }

        _cleanup_(table_freep) Table *t = table_new(6);
        if (!t)
                return -ENOMEM;
        static const char *const head[] = { "MODEL", "CONTEXT", "MAX OUTPUT", "THINKING", "KIRO", "ALIASES" };
        for (size_t k = 0; k < ELEMENTSOF(head); k++)
                if (table_add_cell(t, head[k], NULL) < 0)
                        return -ENOMEM;
        for (size_t i = 0; i < json_object_array_length(out); i++) {
                json_object *o = json_object_array_get_idx(out, i), *al;
                char ctx[32], mo[32];
                int64_t v;
                bool th = false, listed = false;
                snprintf(ctx, sizeof ctx, "%s", "-");
                snprintf(mo, sizeof mo, "%s", "-");
                if (json_get_int64(o, "context_window", &v) >= 0)
                        snprintf(ctx, sizeof ctx, "%lld", (long long) v);
                if (json_get_int64(o, "max_output_tokens", &v) >= 0)
                        snprintf(mo, sizeof mo, "%lld", (long long) v);
                (void) json_get_bool(o, "thinking", &th);
                (void) json_get_bool(o, "listed_by_kiro", &listed);
                _cleanup_(buf_done) Buf a = {};
                if (json_get_array(o, "aliases", &al) >= 0)
                        for (size_t k = 0; k < json_object_array_length(al); k++)
                                if ((k > 0 && buf_puts(&a, ", ") < 0) ||
                                    buf_puts(&a, strempty(json_object_get_string(json_object_array_get_idx(al, k)))) < 0)
                                        return -ENOMEM;
                if (buf_put(&a, "", 1) < 0)
                        return -ENOMEM;
                if (table_add_cell(t, json_string_or_null(o, "id"), NULL) < 0 || table_add_cell(t, ctx, NULL) < 0 ||
                    table_add_cell(t, mo, NULL) < 0 || table_add_cell(t, th ? "yes" : "no", NULL) < 0 ||
                    table_add_cell(t, listed ? "listed" : "-", listed ? ANSI_GREEN : NULL) < 0 ||
                    table_add_cell(t, a.data, NULL) < 0)
                        return -ENOMEM;
        }
        r = table_print(t, f, true, colors, 0);
        if (r < 0)
                return r;
        fprintf(f, "\n%zu models (%s).\n", json_object_array_length(out), source);
        return 0;
}
