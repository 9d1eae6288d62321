/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The credential record: what is stored per credential, its JSON form and its enums. */
#include <assert.h>
#include <sys/random.h>

#include "authd-credential.h"
#include "json-util.h"
#include "url-util.h"

static const char *const provider_table[_PROVIDER_MAX] = {
        [PROVIDER_KIRO] = "kiro",
        [PROVIDER_KIMI] = "kimi",
};

static const char *const auth_method_table[_AUTH_METHOD_MAX] = {
        [AUTH_METHOD_SOCIAL] = "social",
        [AUTH_METHOD_BUILDER_ID] = "builder-id",
        [AUTH_METHOD_IDC] = "idc",
        [AUTH_METHOD_EXTERNAL_IDP] = "external-idp",
        [AUTH_METHOD_API_KEY] = "api-key",
        [AUTH_METHOD_KIMI_DEVICE] = "kimi-device",
};

static const char *const health_table[_HEALTH_MAX] = {
        [HEALTH_OK] = "ok",
        [HEALTH_NEEDS_LOGIN] = "needs-login",
};

static const char *const state_table[_CREDENTIAL_STATE_MAX] = {
        [CREDENTIAL_ACTIVE] = "active",
        [CREDENTIAL_REFRESHING] = "refreshing",
        [CREDENTIAL_COOLDOWN] = "cooldown",
        [CREDENTIAL_NEEDS_LOGIN] = "needs-login",
        [CREDENTIAL_DISABLED] = "disabled",
};

static int lookup(const char *const *table, size_t n, const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (table[i] && streq(table[i], s))
                        return (int) i;
        return -EINVAL;
}

#define DEFINE_STRING_TABLE(name, type, table, max)                             \
        const char *name##_to_string(type v) {                                  \
                return v >= 0 && v < max ? table[v] : NULL;                     \
        }

DEFINE_STRING_TABLE(provider, Provider, provider_table, _PROVIDER_MAX)
DEFINE_STRING_TABLE(auth_method, AuthMethod, auth_method_table, _AUTH_METHOD_MAX)
DEFINE_STRING_TABLE(health, Health, health_table, _HEALTH_MAX)
DEFINE_STRING_TABLE(credential_state, CredentialState, state_table, _CREDENTIAL_STATE_MAX)

Provider provider_from_string(const char *s) {
        return lookup(provider_table, _PROVIDER_MAX, s);
}
AuthMethod auth_method_from_string(const char *s) {
        return lookup(auth_method_table, _AUTH_METHOD_MAX, s);
}
Health health_from_string(const char *s) {
        return lookup(health_table, _HEALTH_MAX, s);
}

CredentialRecord *credential_record_new(void) {
        CredentialRecord *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->provider = PROVIDER_KIRO;
        c->method = AUTH_METHOD_SOCIAL;
        c->enabled = true;
        c->health = HEALTH_OK;
        return c;
}

CredentialRecord *credential_record_free(CredentialRecord *c) {
        if (!c)
                return NULL;
        free(c->id);
        erase_and_free(c->access_token);
        erase_and_free(c->refresh_token);
        erase_and_free(c->client_secret);
        free(c->region);
        free(c->profile_arn);
        free(c->client_id);
        free(c->start_url);
        free(c->token_endpoint);
        free(c->scopes);
        free(c->machine_id);
        erase_and_free(c->proxy);
        free(c->source_format);
        free(c->source_path);
        free(c->link_format);
        free(c->link_name);
        free(c->link_path);
        free(c->link_source_sha256);
        free(c->last_error);
        free(c->cooldown_reason);
        if (c->doc) {
                json_object_erase_strings(c->doc);
                json_object_put(c->doc);
        }
        free(c);
        return NULL;
}

bool credential_id_is_valid(const char *id) {
        size_t n = id ? strlen(id) : 0;
        if (n == 0 || n > 64 || id[0] == '.' || id[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = id[i];
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == '-'))
                        return false;
        }
        return true;
}

const char *credential_record_api_region(const CredentialRecord *c, char *buf, size_t n) {
        assert(c);
        assert(buf);
        assert(n > 0);

        /* arn:aws:codewhisperer:<region>:<account>:profile/<id>; only a valid region leaves (url-util.h). */
        if (c->profile_arn && arn_get_region(c->profile_arn, buf, n) >= 0)
                return buf;
        snprintf(buf, n, "us-east-1");
        return buf;
}

int credential_record_ensure_machine_id(CredentialRecord *c) {
        assert(c);

        uint8_t rnd[32];
        char hex[65];

        if (c->machine_id)
                return 0;
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
                return -EIO;
        for (size_t i = 0; i < sizeof rnd; i++)
                snprintf(hex + 2 * i, 3, "%02x", rnd[i]);
        c->machine_id = strdup(hex);
        return c->machine_id ? 0 : -ENOMEM;
}

/* Field table: one place that names every stored key. */
typedef enum FieldType { F_STRING, F_SECRET, F_TIME } FieldType;
typedef struct Field {
        const char *key;
        FieldType type;
        size_t offset;
} Field;

#define FIELD(k, t, m) { k, t, offsetof(CredentialRecord, m) }
static const Field fields[] = {
        FIELD("access_token", F_SECRET, access_token),
        FIELD("refresh_token", F_SECRET, refresh_token),
        FIELD("client_secret", F_SECRET, client_secret),
        FIELD("expires_at", F_TIME, expires_at),
        FIELD("region", F_STRING, region),
        FIELD("profile_arn", F_STRING, profile_arn),
        FIELD("client_id", F_STRING, client_id),
        FIELD("client_secret_expires_at", F_TIME, client_secret_expires_at),
        FIELD("start_url", F_STRING, start_url),
        FIELD("token_endpoint", F_STRING, token_endpoint),
        FIELD("scopes", F_STRING, scopes),
        FIELD("machine_id", F_STRING, machine_id),
        FIELD("proxy", F_SECRET, proxy),
};
#define FIELD_PTR(c, f, T) ((T *) ((uint8_t *) (c) + (f)->offset))

static int get_time(json_object *o, const char *key, usec_t *ret) {
        const char *s;
        int r = json_get_string(o, key, &s);
        if (r == -ENOENT) {
                *ret = 0;
                return 0;
        }
        if (r < 0)
                return r;
        if (streq(s, "never")) {
                *ret = USEC_INFINITY;
                return 0;
        }
        return parse_rfc3339(s, ret) < 0 ? -EMEDIUMTYPE : 0;
}

/* doc's object under key with a reference for the caller (the stored one, so that its unknown keys are
 * kept, or a new one when there is none or it is not an object); NULL when out of memory. */
static json_object *child_object(json_object *doc, const char *key) {
        json_object *o;
        if (json_object_object_get_ex(doc, key, &o) && json_object_is_type(o, json_type_object))
                return json_object_get(o);
        return json_object_new_object();
}

static int set_time(json_object *o, const char *key, usec_t t) {
        char buf[RFC3339_MAX];
        if (t == 0)
                return json_set_string(o, key, NULL);
        return json_set_string(o, key, t == USEC_INFINITY ? "never" : format_rfc3339(buf, sizeof buf, t));
}

int credential_record_from_json(const char *text, size_t size, CredentialRecord **ret, const char **ret_error) {
        assert(text || size == 0);
        assert(ret);

        _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
        json_object *doc = NULL, *o;
        const char *s;
        int r;

#define BAD(msg)                                \
        do {                                    \
                if (ret_error)                  \
                        *ret_error = msg;       \
                return -EBADMSG;                \
        } while (0)

        c = credential_record_new();
        if (!c)
                return -ENOMEM;
        r = json_parse_secret(text, size, 16, &doc, ret_error);
        if (r < 0)
                return r;
        c->doc = doc;
        if (!json_object_is_type(doc, json_type_object))
                BAD("not a JSON object");

        if (json_get_string(doc, "id", &s) < 0 || !credential_id_is_valid(s))
                BAD("missing or invalid 'id'");
        c->id = strdup(s);
        if (json_get_string(doc, "provider", &s) < 0 || (c->provider = provider_from_string(s)) < 0)
                BAD("missing or unknown 'provider'");
        if (json_get_string(doc, "auth_method", &s) < 0 || (c->method = auth_method_from_string(s)) < 0)
                BAD("missing or unknown 'auth_method'");

        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const Field *f = fields + i;
                if (f->type == F_TIME) {
                        if (get_time(doc, f->key, FIELD_PTR(c, f, usec_t)) < 0)
                                BAD("a timestamp field is not RFC 3339");
                        continue;
                }
                r = json_get_string(doc, f->key, &s);
                if (r == -EMEDIUMTYPE)
                        BAD("a string field has another type");
                if (r >= 0) {
                        *FIELD_PTR(c, f, char *) = strdup(s);
                        if (!*FIELD_PTR(c, f, char *))
                                return -ENOMEM;
                }
        }

        if (json_get_object(doc, "source", &o) >= 0) {
                if (json_get_string(o, "format", &s) >= 0)
                        c->source_format = strdup(s);
                if (json_get_string(o, "path", &s) >= 0)
                        c->source_path = strdup(s);
                (void) get_time(o, "imported_at", &c->imported_at);
        }
        /* Files written before links were stored have no "link": they load as owned credentials. */
        if (json_get_object(doc, "link", &o) >= 0) {
                const char *format = NULL, *name = NULL, *path = NULL, *sha = NULL;
                if (json_get_string(o, "format", &format) < 0 || json_get_string(o, "name", &name) < 0 ||
                    !(streq(format, "kiro-cli-sqlite") || streq(format, "kiro-ide-json")) || isempty(name) ||
                    strchr(name, '/') || strlen(name) > 250)
                        BAD("invalid 'link'");
                (void) json_get_string(o, "path", &path);
                (void) json_get_string(o, "source_sha256", &sha);
                if (credential_record_set_link(c, format, name, path) < 0)
                        return -ENOMEM;
                if (sha && strlen(sha) == 64 && !(c->link_source_sha256 = strdup(sha)))
                        return -ENOMEM;
        }
        (void) json_get_bool(doc, "enabled", &c->enabled);
        if (json_get_object(doc, "health", &o) >= 0) {
                int64_t n;
                if (json_get_string(o, "state", &s) >= 0) {
                        c->health = health_from_string(s);
                        if (c->health < 0)
                                BAD("unknown 'health.state'");
                }
                if (json_get_int64(o, "consecutive_failures", &n) >= 0 && n >= 0 && n < UINT32_MAX)
                        c->consecutive_failures = (unsigned) n;
                if (json_get_string(o, "last_error", &s) >= 0)
                        c->last_error = strdup(s);
                (void) get_time(o, "cooldown_until", &c->cooldown_until);
                if (json_get_string(o, "cooldown_reason", &s) >= 0 &&
                    (streq(s, "throttled") || streq(s, "quota-exhausted")))
                        c->cooldown_reason = strdup(s);
                if (json_get_int64(o, "throttle_count", &n) >= 0 && n >= 0 && n < 64)
                        c->throttle_count = (unsigned) n;
                (void) get_time(o, "last_refresh_at", &c->last_refresh_at);
        }
        if (!c->access_token && !c->refresh_token)
                BAD("neither 'access_token' nor 'refresh_token'");
        /* Regions end up in host names (url-util.h). */
        char region[REGION_MAX + 1];
        if (c->region && !region_is_valid(c->region))
                BAD("'region' is not a valid region");
        if (c->profile_arn && arn_get_region(c->profile_arn, region, sizeof region) < 0)
                BAD("'profile_arn' is not an ARN with a valid region");
#undef BAD
        *ret = TAKE_PTR(c);
        return 0;
}

int credential_record_to_json(CredentialRecord *c, char **ret) {
        assert(c);
        assert(c->id);
        assert(ret);

        json_object *doc, *o;
        int r;

        if (!c->doc) {
                c->doc = json_object_new_object();
                if (!c->doc)
                        return -ENOMEM;
        }
        doc = c->doc;
        r = json_set_string(doc, "id", c->id);
        if (r >= 0)
                r = json_set_string(doc, "provider", provider_to_string(c->provider));
        if (r >= 0)
                r = json_set_string(doc, "auth_method", auth_method_to_string(c->method));
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(fields); i++) {
                const Field *f = fields + i;
                if (f->type == F_TIME)
                        r = set_time(doc, f->key, *FIELD_PTR(c, f, usec_t));
                else {
                        /* Wipe the old copy of a secret before json-c frees it. */
                        json_object *old;
                        if (f->type == F_SECRET && json_object_object_get_ex(doc, f->key, &old))
                                json_object_erase_strings(old);
                        r = json_set_string(doc, f->key, *FIELD_PTR(c, f, char *));
                }
        }
        if (r < 0)
                return r;

        if (!(o = child_object(doc, "source")))
                return -ENOMEM;
        r = json_set_string(o, "format", c->source_format);
        if (r >= 0)
                r = json_set_string(o, "path", c->source_path);
        if (r >= 0)
                r = set_time(o, "imported_at", c->imported_at);
        json_object_object_add(doc, "source", o);
        if (r < 0)
                return r;

        if (c->link_format) {
                if (!(o = child_object(doc, "link")))
                        return -ENOMEM;
                r = json_set_string(o, "format", c->link_format);
                if (r >= 0)
                        r = json_set_string(o, "name", c->link_name);
                if (r >= 0)
                        r = json_set_string(o, "path", c->link_path);
                if (r >= 0)
                        r = json_set_string(o, "source_sha256", c->link_source_sha256);
                json_object_object_add(doc, "link", o);
                if (r < 0)
                        return r;
        } else
                json_object_object_del(doc, "link");

        json_object_object_add(doc, "enabled", json_object_new_boolean(c->enabled));

        if (!(o = child_object(doc, "health")))
                return -ENOMEM;
        r = json_set_string(o, "state", health_to_string(c->health));
        json_object_object_add(o, "consecutive_failures", json_object_new_int64(c->consecutive_failures));
        if (r >= 0)
                r = json_set_string(o, "last_error", c->last_error);
        if (r >= 0)
                r = set_time(o, "cooldown_until", c->cooldown_until);
        if (r >= 0)
                r = json_set_string(o, "cooldown_reason", c->cooldown_reason);
        json_object_object_add(o, "throttle_count", json_object_new_int64(c->throttle_count));
        if (r >= 0)
                r = set_time(o, "last_refresh_at", c->last_refresh_at);
        json_object_object_add(doc, "health", o);
        if (r < 0)
                return r;

        return json_to_string_secret(doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                  JSON_C_TO_STRING_NOSLASHESCAPE, ret, NULL);
}

int credential_record_take_login(CredentialRecord *dst, CredentialRecord *src) {
        assert(dst);
        assert(src);

        dst->provider = src->provider;
        dst->method = src->method;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const Field *f = fields + i;
                if (streq(f->key, "machine_id"))
                        continue;
                /* A new login without a proxy of its own keeps the credential's. */
                if (streq(f->key, "proxy") && !src->proxy)
                        continue;
                if (f->type == F_TIME) {
                        *FIELD_PTR(dst, f, usec_t) = *FIELD_PTR(src, f, usec_t);
                        continue;
                }
                char **d = FIELD_PTR(dst, f, char *), **s = FIELD_PTR(src, f, char *);
                if (f->type == F_SECRET)
                        erase_and_free(*d);
                else
                        free(*d);
                *d = TAKE_PTR(*s);
        }
        free(dst->source_format);
        dst->source_format = TAKE_PTR(src->source_format);
        free(dst->source_path);
        dst->source_path = TAKE_PTR(src->source_path);
        dst->imported_at = src->imported_at;
        dst->enabled = true;
        dst->health = HEALTH_OK;
        dst->consecutive_failures = 0;
        dst->cooldown_until = 0;
        dst->throttle_count = 0;
        free(dst->cooldown_reason);
        dst->cooldown_reason = NULL;
        free(dst->last_error);
        dst->last_error = NULL;
        return 0;
}

int credential_record_set_link(CredentialRecord *c, const char *format, const char *name, const char *path) {
        assert(c);
        assert(!format || name);

        _cleanup_free_ char *f = NULL, *n = NULL, *p = NULL;

        if (format && (!(f = strdup(format)) || !(n = strdup(name)) || (path && !(p = strdup(path)))))
                return -ENOMEM;
        free(c->link_format);
        c->link_format = TAKE_PTR(f);
        free(c->link_name);
        c->link_name = TAKE_PTR(n);
        free(c->link_path);
        c->link_path = TAKE_PTR(p);
        free(c->link_source_sha256);
        c->link_source_sha256 = NULL;
        return 0;
}
