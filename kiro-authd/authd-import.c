/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parsing of import sources into a CredentialRecord (KIRO-PROTOCOL.md B §1). */
#include <assert.h>
#include <fcntl.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include "authd-import.h"
#include "fileio.h"
#include "json-util.h"
#include "url-util.h"

static const char *const format_table[_IMPORT_FORMAT_MAX] = {
        [IMPORT_KIRO_CLI_SQLITE] = "kiro-cli-sqlite",
        [IMPORT_KIRO_IDE_JSON] = "kiro-ide-json",
        [IMPORT_REFRESH_TOKEN] = "refresh-token",
        [IMPORT_API_KEY] = "api-key",
};

const char *import_format_to_string(ImportFormat f) {
        return f >= 0 && f < _IMPORT_FORMAT_MAX ? format_table[f] : NULL;
}

ImportFormat import_format_from_string(const char *s) {
        for (int i = 0; i < _IMPORT_FORMAT_MAX; i++)
                if (streq_ptr(s, format_table[i]))
                        return i;
        return _IMPORT_FORMAT_INVALID;
}

/* Sets *ret_message and returns error: an ImportError (> 0) or a negative errno. */
_printf_(3, 4) static int fail(char **ret_message, int error, const char *fmt, ...) {
        va_list ap;
        assert(error != 0);
        if (ret_message) {
                free(*ret_message);
                va_start(ap, fmt);
                if (vasprintf(ret_message, fmt, ap) < 0)
                        *ret_message = NULL;
                va_end(ap);
        }
        return error;
}

/* kiro-cli token keys in the order they are preferred (KIRO-PROTOCOL.md B §1.3). */
static const struct {
        const char *key;
        AuthMethod method;              /* builder-id here means "OIDC: builder-id or idc by start URL" */
        const char *const registration_keys[2];
} kiro_cli_keys[] = {
        { "kirocli:external-idp:token", AUTH_METHOD_EXTERNAL_IDP, { NULL, NULL } },
        { "kirocli:social:token", AUTH_METHOD_SOCIAL, { NULL, NULL } },
        { "kirocli:odic:token", AUTH_METHOD_BUILDER_ID,
          { "kirocli:odic:device-registration", "codewhisperer:odic:device-registration" } },
        { "codewhisperer:odic:token", AUTH_METHOD_BUILDER_ID,
          { "codewhisperer:odic:device-registration", "kirocli:odic:device-registration" } },
};

static bool is_builder_id_start_url(const char *url) {
        return !url || strstr(url, "://view.awsapps.com/start") || strstr(url, "://amzn.awsapps.com/start");
}

/* Copies an optional string field; wrong type is an error naming the field. */
static int take_string(json_object *o, const char *key, const char *where, bool required, char **dst,
                       char **ret_message) {
        const char *s;
        int r = json_get_string(o, key, &s);
        if (r == -ENOENT) {
                if (required)
                        return fail(ret_message, IMPORT_E_INVALID, "%s has no '%s'", where, key);
                return 0;
        }
        if (r < 0)
                return fail(ret_message, IMPORT_E_INVALID, "'%s' in %s is not a string", key, where);
        if (required && isempty(s))
                return fail(ret_message, IMPORT_E_INVALID, "'%s' in %s is empty", key, where);
        if (isempty(s))
                return 0;
        char *c = strdup(s);
        if (!c)
                return -ENOMEM;
        erase_and_free(*dst);
        *dst = c;
        return 0;
}

static int take_time(json_object *o, const char *key, const char *where, bool required, usec_t *dst,
                     char **ret_message) {
        const char *s;
        int r = json_get_string(o, key, &s);
        if (r == -ENOENT) {
                if (required)
                        return fail(ret_message, IMPORT_E_INVALID, "%s has no '%s'", where, key);
                return 0;
        }
        if (r < 0 || parse_rfc3339(s, dst) < 0)
                return fail(ret_message, IMPORT_E_INVALID, "'%s' in %s is not an RFC 3339 timestamp", key, where);
        return 0;
}

/* A region goes into host names (url-util.h): only a real one is taken. */
static int take_region(json_object *o, const char *key, const char *where, char **dst, char **ret_message) {
        _cleanup_free_ char *v = NULL;
        int r = take_string(o, key, where, false, &v, ret_message);
        if (r != 0 || !v)
                return r;
        if (!region_is_valid(v))
                return fail(ret_message, IMPORT_E_INVALID, "'%s' in %s is not a valid region (like 'us-east-1')",
                            key, where);
        free(*dst);
        *dst = TAKE_PTR(v);
        return 0;
}

/* "scopes" may be a string or a list of strings; stored space separated. */
static int take_scopes(json_object *o, const char *key, char **dst) {
        json_object *v;
        if (!json_object_object_get_ex(o, key, &v) || !v)
                return 0;
        if (json_object_is_type(v, json_type_string))
                return free_and_strdup(dst, json_object_get_string(v));
        if (!json_object_is_type(v, json_type_array))
                return 0;
        size_t n = json_object_array_length(v), len = 0;
        for (size_t i = 0; i < n; i++)
                len += strlen(json_object_get_string(json_object_array_get_idx(v, i)) ?: "") + 1;
        char *s = calloc(1, len + 1), *e = s;
        if (!s)
                return -ENOMEM;
        /* Appended at a cursor: strcat() would rescan the result for every scope. */
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        *e++ = ' ';
                e = stpcpy(e, json_object_get_string(json_object_array_get_idx(v, i)) ?: "");
        }
        free(*dst);
        *dst = s;
        return 0;
}

/* The token fields both login files carry, under the kiro-cli (snake_case) and the IDE (camelCase) name. */
typedef enum TokenNames { NAMES_SNAKE, NAMES_CAMEL } TokenNames;

static int take_token_fields(json_object *tok, TokenNames names, const char *where, CredentialRecord *c,
                             char **ret_message) {
        static const struct {
                const char *name[2];
                bool required;
                size_t offset;
        } strings[] = {
                { { "access_token", "accessToken" }, false, offsetof(CredentialRecord, access_token) },
                { { "refresh_token", "refreshToken" }, true, offsetof(CredentialRecord, refresh_token) },
                { { "start_url", "startUrl" }, false, offsetof(CredentialRecord, start_url) },
                { { "profile_arn", "profileArn" }, false, offsetof(CredentialRecord, profile_arn) },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                r = take_string(tok, strings[i].name[names], where, strings[i].required,
                                (char **) ((uint8_t *) c + strings[i].offset), ret_message);
                if (r != 0)
                        return r;
        }
        r = take_region(tok, "region", where, &c->region, ret_message);
        if (r != 0)
                return r;
        char region[REGION_MAX + 1];
        if (c->profile_arn && arn_get_region(c->profile_arn, region, sizeof region) < 0)
                return fail(ret_message, IMPORT_E_INVALID, "'%s' in %s is not an ARN with a valid region",
                            names == NAMES_SNAKE ? "profile_arn" : "profileArn", where);
        r = take_time(tok, names == NAMES_SNAKE ? "expires_at" : "expiresAt", where, false, &c->expires_at,
                      ret_message);
        if (r != 0)
                return r;
        r = take_scopes(tok, "scopes", &c->scopes);
        if (r < 0)
                return r;
        if (c->method != AUTH_METHOD_EXTERNAL_IDP)
                return 0;
        if ((r = take_string(tok, names == NAMES_SNAKE ? "token_endpoint" : "tokenEndpoint", where, true,
                             &c->token_endpoint, ret_message)) != 0 ||
            (r = take_string(tok, names == NAMES_SNAKE ? "client_id" : "clientId", where, true, &c->client_id,
                             ret_message)) != 0)
                return r;
        return 0;
}


static int parse_json_object(const char *text, size_t size, const char *where, json_object **ret,
                             char **ret_message) {
        const char *err = NULL;
        json_object *o = NULL;
        int r = json_parse_secret(text, size, 32, &o, &err);
        if (r == -EBADMSG)
                return fail(ret_message, IMPORT_E_INVALID, "%s is not valid JSON (%s)", where, err);
        if (r == -EFBIG)
                return fail(ret_message, IMPORT_E_TOO_LARGE, "%s is too large", where);
        if (r < 0)
                return r;
        if (!json_object_is_type(o, json_type_object)) {
                json_object_erase_strings(o);
                json_object_put(o);
                return fail(ret_message, IMPORT_E_INVALID, "%s is not a JSON object", where);
        }
        *ret = o;
        return 0;
}

static void json_erase_put(json_object *o) {
        if (o) {
                json_object_erase_strings(o);
                json_object_put(o);
        }
}
DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(json_object *, json_erase_put);
#define _cleanup_json_secret_ _cleanup_(json_erase_putp)

static int check_registration_expiry(CredentialRecord *c, char **ret_message) {
        if (c->client_secret_expires_at != 0 && c->client_secret_expires_at < now(CLOCK_REALTIME)) {
                char buf[RFC3339_MAX];
                return fail(ret_message, IMPORT_E_REGISTRATION_EXPIRED,
                            "the client registration expired at %s; log in again to renew it",
                            format_rfc3339(buf, sizeof buf, c->client_secret_expires_at));
        }
        return 0;
}

/* SQLite's memory, wiped before it is freed: the page cache and every value read hold token text. Installed
 * once, before SQLite initializes (kiro-authd uses SQLite for nothing else). */
static void *wipe_malloc(int n) {
        return malloc((size_t) MAX(n, 1));
}

static void wipe_free(void *p) {
        if (p)
                erase_and_free_sized(p, malloc_usable_size(p));
}

static void *wipe_realloc(void *p, int n) {
        if (!p)
                return wipe_malloc(n);
        size_t old = malloc_usable_size(p);
        void *q = malloc((size_t) MAX(n, 1));
        if (!q)
                return NULL;
        memcpy(q, p, MIN(old, (size_t) MAX(n, 1)));
        wipe_free(p);
        return q;
}

static int wipe_size(void *p) {
        return (int) MIN(malloc_usable_size(p), (size_t) INT_MAX);
}

static int wipe_roundup(int n) {
        return (n + 15) & ~15;
}

static int wipe_init(void *userdata) {
        (void) userdata;
        return SQLITE_OK;
}

static void wipe_shutdown(void *userdata) {
        (void) userdata;
}

static void sqlite_setup_wiping_malloc(void) {
        static bool done;
        static const sqlite3_mem_methods methods = {
                wipe_malloc, wipe_free, wipe_realloc, wipe_size, wipe_roundup, wipe_init, wipe_shutdown, NULL,
        };
        if (done)
                return;
        done = true;
        /* SQLITE_MISUSE when SQLite is already initialized (another user in this process): keep its own. */
        (void) sqlite3_config(SQLITE_CONFIG_MALLOC, &methods);
}

void import_sqlite_init(void) {
        sqlite_setup_wiping_malloc();
}

typedef struct SqliteBudget {
        uint64_t left;          /* progress handler calls still allowed */
        bool exhausted;
} SqliteBudget;

#define SQLITE_PROGRESS_OPS 1000

static int sqlite_progress(void *userdata) {
        SqliteBudget *b = userdata;
        if (b->left == 0) {
                b->exhausted = true;
                return 1; /* interrupt */
        }
        b->left--;
        return 0;
}

/* Only reading the two tables a kiro-cli login lives in (the schema checks run before this is set). */
static int sqlite_authorize(void *userdata, int action, const char *a, const char *b, const char *db,
                            const char *trigger) {
        (void) userdata, (void) b, (void) db;
        if (trigger)
                return SQLITE_DENY;
        if (action == SQLITE_SELECT)
                return SQLITE_OK;
        if (action == SQLITE_READ && (streq_ptr(a, "auth_kv") || streq_ptr(a, "state")))
                return SQLITE_OK;
        return SQLITE_DENY;
}

static const char *sqlite_error(sqlite3 *db, const SqliteBudget *budget) {
        if (budget->exhausted)
                return "reading it takes more work than any kiro-cli database needs (a view or crafted schema?)";
        return sqlite3_errmsg(db);
}

static int sqlite_fail(sqlite3 *db, const SqliteBudget *budget, int sqlite_r, char **ret_message, const char *what) {
        if (budget->exhausted)
                return fail(ret_message, IMPORT_E_TOO_COSTLY, "the database was refused while %s: %s", what,
                            sqlite_error(db, budget));
        if (sqlite_r == SQLITE_TOOBIG)
                return fail(ret_message, IMPORT_E_TOO_LARGE, "the database has a value over %d KiB while %s",
                            IMPORT_JSON_MAX >> 10, what);
        if (sqlite_r == SQLITE_NOMEM)
                return -ENOMEM;
        return fail(ret_message, IMPORT_E_INVALID, "the database cannot be read while %s: %s", what,
                    sqlite_error(db, budget));
}

/* Whether the import's table name exists in the schema, and then only as a plain table. */
static int sqlite_check_table(sqlite3 *db, const SqliteBudget *budget, const char *name, bool required,
                              bool *ret_found, char **ret_message) {
        sqlite3_stmt *st = NULL;
        unsigned found = 0;
        int r;

        r = sqlite3_prepare_v2(db, "SELECT type, sql FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE", -1, &st,
                               NULL);
        if (r != SQLITE_OK)
                return sqlite_fail(db, budget, r, ret_message, "reading its schema");
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *type = (const char *) sqlite3_column_text(st, 0);
                const char *sql = (const char *) sqlite3_column_text(st, 1);
                found++;
                /* A view runs arbitrary SELECTs (a recursive CTE never ends); a virtual table runs a module. */
                if (!streq_ptr(type, "table") || !sql || strncasecmp(sql, "CREATE TABLE", 12) != 0) {
                        r = fail(ret_message, IMPORT_E_INVALID,
                                 "'%s' in the database is a %.16s, not a plain table: not a kiro-cli database", name,
                                 streq_ptr(type, "table") ? "virtual table" : strna(type));
                        sqlite3_finalize(st);
                        return r;
                }
        }
        sqlite3_finalize(st);
        if (r != SQLITE_DONE)
                return sqlite_fail(db, budget, r, ret_message, "reading its schema");
        if (found > 1)
                return fail(ret_message, IMPORT_E_INVALID, "the database's schema names '%s' twice", name);
        if (found == 0 && required)
                return fail(ret_message, IMPORT_E_INVALID, "the database has no '%s' table: not a kiro-cli database",
                            name);
        if (ret_found)
                *ret_found = found == 1;
        return 0;
}

/* Runs a pragma that answers "ok" (quick_check). */
static int sqlite_pragma_ok(sqlite3 *db, const SqliteBudget *budget, const char *sql, char **ret_message) {
        sqlite3_stmt *st = NULL;
        int r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (r != SQLITE_OK)
                return sqlite_fail(db, budget, r, ret_message, "checking its integrity");
        r = sqlite3_step(st);
        if (r != SQLITE_ROW) {
                sqlite3_finalize(st);
                return sqlite_fail(db, budget, r, ret_message, "checking its integrity");
        }
        bool ok = streq_ptr((const char *) sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
        if (!ok)
                return fail(ret_message, IMPORT_E_INVALID, "the database is corrupt (quick_check failed)");
        return 0;
}

/* *ret: the value of key in table, NULL when there is none. */
static int sqlite_get_value(sqlite3 *db, const SqliteBudget *budget, const char *table, const char *key, char **ret,
                            char **ret_message) {
        _cleanup_free_ char *sql = NULL;
        sqlite3_stmt *st = NULL;
        int r;

        *ret = NULL;
        if (asprintf(&sql, "SELECT value FROM \"%s\" WHERE key = ?1", table) < 0)
                return -ENOMEM;
        r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (r != SQLITE_OK)
                return sqlite_fail(db, budget, r, ret_message, "reading a value");
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        r = sqlite3_step(st);
        if (r == SQLITE_DONE) {
                sqlite3_finalize(st);
                return 0;
        }
        if (r != SQLITE_ROW) {
                sqlite3_finalize(st);
                return sqlite_fail(db, budget, r, ret_message, "reading a value");
        }
        const void *blob = sqlite3_column_blob(st, 0);
        int n = sqlite3_column_bytes(st, 0);
        if (n > IMPORT_JSON_MAX) {
                sqlite3_finalize(st);
                return fail(ret_message, IMPORT_E_TOO_LARGE, "the value of '%s' in '%s' is larger than %d KiB", key,
                            table, IMPORT_JSON_MAX >> 10);
        }
        char *v = malloc((size_t) n + 1);
        if (!v) {
                sqlite3_finalize(st);
                return -ENOMEM;
        }
        if (n > 0)
                memcpy(v, blob, (size_t) n);
        v[n] = 0;
        sqlite3_finalize(st);
        *ret = v;
        return 0;
}

static void sqlite_limits(sqlite3 *db) {
        static const struct {
                int id, value;
        } limits[] = {
                /* A value the import reads is JSON of at most IMPORT_JSON_MAX; the rest is generous for a
                 * key-value schema and tight for anything built to be expensive. */
                { SQLITE_LIMIT_LENGTH, IMPORT_JSON_MAX + 1 },
                { SQLITE_LIMIT_SQL_LENGTH, 100 * 1000 },
                { SQLITE_LIMIT_COLUMN, 100 },
                { SQLITE_LIMIT_EXPR_DEPTH, 20 },
                { SQLITE_LIMIT_COMPOUND_SELECT, 3 },
                { SQLITE_LIMIT_VDBE_OP, 25000 },
                { SQLITE_LIMIT_FUNCTION_ARG, 8 },
                { SQLITE_LIMIT_ATTACHED, 0 },
                { SQLITE_LIMIT_LIKE_PATTERN_LENGTH, 50 },
                { SQLITE_LIMIT_VARIABLE_NUMBER, 10 },
                { SQLITE_LIMIT_TRIGGER_DEPTH, 1 },
                { SQLITE_LIMIT_WORKER_THREADS, 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(limits); i++)
                (void) sqlite3_limit(db, limits[i].id, limits[i].value);
}

void import_sqlite_harden(sqlite3 *db) {
        /* https://sqlite.org/security.html, "untrusted SQLite database files". */
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, NULL);
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
        (void) sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, NULL);
        sqlite_limits(db);
}

int import_sqlite_check_auth_kv(sqlite3 *db, char **ret_message) {
        SqliteBudget budget = { .left = IMPORT_SQLITE_STEP_BUDGET / SQLITE_PROGRESS_OPS };
        int r;

        sqlite3_progress_handler(db, SQLITE_PROGRESS_OPS, sqlite_progress, &budget);
        r = sqlite_check_table(db, &budget, "auth_kv", true, NULL, ret_message);
        sqlite3_progress_handler(db, 0, NULL, NULL);
        return r;
}

typedef struct SqliteSource {
        sqlite3 *db;
        unsigned char *image;   /* ours, not SQLite's: wiped and freed after the database is closed */
        size_t size;
        SqliteBudget budget;
        bool has_state;
} SqliteSource;

static void sqlite_source_done(SqliteSource *s) {
        if (s->db)
                sqlite3_close(s->db);
        erase_and_free_sized(s->image, s->size);
        *s = (SqliteSource) {};
}

static int sqlite_source_open(SqliteSource *s, const void *data, size_t size, uint64_t steps, char **ret_message) {
        int r;

        sqlite_setup_wiping_malloc();

        /* A private copy that SQLite may read: the in-memory VFS cannot do WAL, and the snapshot already
         * contains every committed page, so the header's WAL flag is set back to rollback mode. */
        s->image = malloc(size);
        if (!s->image)
                return -ENOMEM;
        s->size = size;
        memcpy(s->image, data, size);
        if (s->image[18] == 2)
                s->image[18] = 1;
        if (s->image[19] == 2)
                s->image[19] = 1;

        r = sqlite3_open_v2(":memory:", &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_MEMORY, NULL);
        if (r != SQLITE_OK)
                return -ENOMEM;
        import_sqlite_harden(s->db);
        s->budget.left = steps / SQLITE_PROGRESS_OPS;
        sqlite3_progress_handler(s->db, SQLITE_PROGRESS_OPS, sqlite_progress, &s->budget);

        r = sqlite3_deserialize(s->db, "main", s->image, (sqlite3_int64) size, (sqlite3_int64) size,
                                SQLITE_DESERIALIZE_READONLY);
        if (r != SQLITE_OK)
                return fail(ret_message, IMPORT_E_INVALID, "not a readable SQLite database");

        r = sqlite3_exec(s->db, "PRAGMA cell_size_check = ON", NULL, NULL, NULL);
        if (r != SQLITE_OK)
                return sqlite_fail(s->db, &s->budget, r, ret_message, "configuring it");
        r = sqlite_pragma_ok(s->db, &s->budget, "PRAGMA quick_check(1)", ret_message);
        if (r != 0)
                return r;

        /* Is it a kiro-cli database at all? Older ones have no state table. */
        r = sqlite_check_table(s->db, &s->budget, "auth_kv", true, NULL, ret_message);
        if (r != 0)
                return r;
        r = sqlite_check_table(s->db, &s->budget, "state", false, &s->has_state, ret_message);
        if (r != 0)
                return r;

        if (sqlite3_set_authorizer(s->db, sqlite_authorize, NULL) != SQLITE_OK)
                return -EIO;
        return 0;
}

int import_kiro_cli_sqlite(const void *data, size_t size, CredentialRecord **ret, char **ret_message) {
        return import_kiro_cli_sqlite_full(data, size, IMPORT_SQLITE_STEP_BUDGET, ret, NULL, ret_message);
}

int import_kiro_cli_sqlite_budget(const void *data, size_t size, uint64_t steps, CredentialRecord **ret,
                                  char **ret_message) {
        return import_kiro_cli_sqlite_full(data, size, steps, ret, NULL, ret_message);
}

int import_kiro_cli_sqlite_full(const void *data, size_t size, uint64_t steps, CredentialRecord **ret,
                                const char **ret_key, char **ret_message) {
        _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
        _cleanup_(sqlite_source_done) SqliteSource src = {};
        int r;

        if (size == 0)
                return fail(ret_message, IMPORT_E_INVALID, "the database is empty (0 bytes)");
        if (size < 100 || memcmp(data, "SQLite format 3", 16) != 0)
                return fail(ret_message, IMPORT_E_INVALID, "not an SQLite database");
        if (size > IMPORT_SQLITE_MAX)
                return fail(ret_message, IMPORT_E_TOO_LARGE, "the database is larger than %d MiB", IMPORT_SQLITE_MAX >> 20);

        r = sqlite_source_open(&src, data, size, steps, ret_message);
        if (r != 0)
                return r;
        sqlite3 *db = src.db;

        const char *key = NULL;
        _cleanup_erase_free_ char *token_text = NULL;
        size_t k;
        for (k = 0; k < ELEMENTSOF(kiro_cli_keys); k++) {
                r = sqlite_get_value(db, &src.budget, "auth_kv", kiro_cli_keys[k].key, &token_text, ret_message);
                if (r != 0)
                        return r;
                if (token_text) {
                        key = kiro_cli_keys[k].key;
                        break;
                }
        }
        if (!key)
                return fail(ret_message, IMPORT_E_NO_TOKEN,
                            "the database holds no kiro-cli login (no token key in auth_kv); run 'kiro-cli login' first");

        _cleanup_erase_free_ char *reg_text = NULL;
        const char *reg_key = NULL;
        for (size_t j = 0; j < 2 && kiro_cli_keys[k].registration_keys[j]; j++) {
                r = sqlite_get_value(db, &src.budget, "auth_kv", kiro_cli_keys[k].registration_keys[j], &reg_text,
                                     ret_message);
                if (r != 0)
                        return r;
                if (reg_text) {
                        reg_key = kiro_cli_keys[k].registration_keys[j];
                        break;
                }
        }

        _cleanup_free_ char *profile_text = NULL;
        if (src.has_state) {
                r = sqlite_get_value(db, &src.budget, "state", "api.codewhisperer.profile", &profile_text,
                                     ret_message);
                if (r != 0)
                        return r;
        }
        sqlite_source_done(&src);

        char where[128];
        snprintf(where, sizeof where, "key '%s'", key);
        _cleanup_json_secret_ json_object *tok = NULL;
        r = parse_json_object(token_text, strlen(token_text), where, &tok, ret_message);
        if (r != 0)
                return r;

        c = credential_record_new();
        if (!c)
                return -ENOMEM;
        c->method = kiro_cli_keys[k].method;
        r = take_token_fields(tok, NAMES_SNAKE, where, c, ret_message);
        if (r != 0)
                return r;

        if (c->method == AUTH_METHOD_BUILDER_ID) {
                if (!is_builder_id_start_url(c->start_url))
                        c->method = AUTH_METHOD_IDC;
                if (!reg_key)
                        return fail(ret_message, IMPORT_E_INVALID,
                                    "the database has '%s' but no device registration; run 'kiro-cli login' again", key);
                char rwhere[128];
                snprintf(rwhere, sizeof rwhere, "key '%s'", reg_key);
                _cleanup_json_secret_ json_object *reg = NULL;
                r = parse_json_object(reg_text, strlen(reg_text), rwhere, &reg, ret_message);
                if (r != 0)
                        return r;
                const char *ck = json_object_object_get_ex(reg, "client_id", NULL) ? "client_id" : "clientId";
                const char *sk = json_object_object_get_ex(reg, "client_secret", NULL) ? "client_secret" : "clientSecret";
                if ((r = take_string(reg, ck, rwhere, true, &c->client_id, ret_message)) != 0 ||
                    (r = take_string(reg, sk, rwhere, true, &c->client_secret, ret_message)) != 0 ||
                    (r = take_time(reg, "client_secret_expires_at", rwhere, false, &c->client_secret_expires_at,
                                   ret_message)) != 0)
                        return r;
                if (!c->region && (r = take_region(reg, "region", rwhere, &c->region, ret_message)) != 0)
                        return r;
                r = check_registration_expiry(c, ret_message);
                if (r != 0)
                        return r;
        }

        if (!c->profile_arn && profile_text) {
                _cleanup_json_ json_object *prof = NULL;
                const char *arn;
                char region[REGION_MAX + 1];
                if (parse_json_object(profile_text, strlen(profile_text), "state 'api.codewhisperer.profile'",
                                      &prof, NULL) == 0 &&
                    json_get_string(prof, "arn", &arn) >= 0) {
                        if (arn_get_region(arn, region, sizeof region) < 0)
                                return fail(ret_message, IMPORT_E_INVALID,
                                            "the profile ARN in state 'api.codewhisperer.profile' has no valid region");
                        c->profile_arn = strdup(arn);
                        if (!c->profile_arn)
                                return -ENOMEM;
                }
        }
        if (!c->region && (c->region = strdup("us-east-1")) == NULL)
                return -ENOMEM;
        c->source_format = strdup("kiro-cli-sqlite");
        if (ret_key)
                *ret_key = kiro_cli_keys[k].key;
        *ret = TAKE_PTR(c);
        return 0;
}

int import_kiro_ide_json(const char *token, size_t token_size, const char *registration, size_t registration_size,
                         CredentialRecord **ret, char **ret_message) {
        _cleanup_(credential_record_freep) CredentialRecord *c = NULL;
        _cleanup_json_secret_ json_object *tok = NULL;
        const char *where = "the Kiro IDE token file";
        const char *method, *provider = NULL;
        int r;

        if (token_size == 0)
                return fail(ret_message, IMPORT_E_INVALID, "the Kiro IDE token file is empty");
        r = parse_json_object(token, token_size, where, &tok, ret_message);
        if (r != 0)
                return r;

        c = credential_record_new();
        if (!c)
                return -ENOMEM;
        if (json_get_string(tok, "authMethod", &method) == -EMEDIUMTYPE ||
            json_get_string(tok, "provider", &provider) == -EMEDIUMTYPE)
                return fail(ret_message, IMPORT_E_INVALID, "'authMethod' or 'provider' in %s is not a string", where);
        if (json_get_string(tok, "authMethod", &method) < 0)
                method = NULL;
        (void) json_get_string(tok, "provider", &provider);

        if ((method && (strcasecmp(method, "external_idp") == 0 || strcasecmp(method, "external-idp") == 0)) ||
            (provider && strcasecmp(provider, "ExternalIdp") == 0))
                c->method = AUTH_METHOD_EXTERNAL_IDP;
        else if (!method || strcasecmp(method, "social") == 0)
                c->method = AUTH_METHOD_SOCIAL;
        else if (strcasecmp(method, "idc") == 0 || strcasecmp(method, "builder-id") == 0 ||
                 strcasecmp(method, "iam") == 0)
                c->method = provider && strcasecmp(provider, "Enterprise") == 0 ? AUTH_METHOD_IDC
                                                                               : AUTH_METHOD_BUILDER_ID;
        else
                return fail(ret_message, IMPORT_E_INVALID, "unknown 'authMethod' '%s' in %s", method, where);

        r = take_token_fields(tok, NAMES_CAMEL, where, c, ret_message);
        if (r != 0)
                return r;

        if (c->method != AUTH_METHOD_EXTERNAL_IDP && c->method != AUTH_METHOD_SOCIAL) {
                _cleanup_json_secret_ json_object *reg = NULL;
                const char *rwhere = "the client registration file";
                if (!registration)
                        return fail(ret_message, IMPORT_E_INVALID,
                                    "%s names a client registration ('clientIdHash') but none was passed", where);
                if (registration_size == 0)
                        return fail(ret_message, IMPORT_E_INVALID, "the client registration file is empty");
                r = parse_json_object(registration, registration_size, rwhere, &reg, ret_message);
                if (r != 0)
                        return r;
                if ((r = take_string(reg, "clientId", rwhere, true, &c->client_id, ret_message)) != 0 ||
                    (r = take_string(reg, "clientSecret", rwhere, true, &c->client_secret, ret_message)) != 0 ||
                    (r = take_time(reg, "expiresAt", rwhere, false, &c->client_secret_expires_at, ret_message)) != 0)
                        return r;
                if (!c->region && (r = take_region(reg, "region", rwhere, &c->region, ret_message)) != 0)
                        return r;
                r = check_registration_expiry(c, ret_message);
                if (r != 0)
                        return r;
        }
        if (!c->region && !(c->region = strdup("us-east-1")))
                return -ENOMEM;
        c->source_format = strdup("kiro-ide-json");
        *ret = TAKE_PTR(c);
        return 0;
}

/* A bare secret: trimmed, printable ASCII without white space inside. */
static int take_bare_secret(const char *data, size_t size, const char *what, char **ret, char **ret_message) {
        while (size > 0 && strchr(" \t\r\n", data[0])) {
                data++;
                size--;
        }
        while (size > 0 && strchr(" \t\r\n", data[size - 1]))
                size--;
        if (size == 0)
                return fail(ret_message, IMPORT_E_INVALID, "the %s file is empty", what);
        if (size > IMPORT_SECRET_MAX)
                return fail(ret_message, IMPORT_E_TOO_LARGE, "the %s is longer than %d bytes", what, IMPORT_SECRET_MAX);
        for (size_t i = 0; i < size; i++)
                if ((unsigned char) data[i] <= ' ' || (unsigned char) data[i] >= 0x7f)
                        return fail(ret_message, IMPORT_E_INVALID,
                                    "the %s contains white space or non-ASCII characters (one token expected)", what);
        char *s = strndup(data, size);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int import_refresh_token(const char *data, size_t size, CredentialRecord **ret, char **ret_message) {
        _cleanup_(credential_record_freep) CredentialRecord *c = credential_record_new();
        if (!c)
                return -ENOMEM;
        int r = take_bare_secret(data, size, "refresh token", &c->refresh_token, ret_message);
        if (r != 0)
                return r;
        c->method = AUTH_METHOD_SOCIAL;
        c->region = strdup("us-east-1");
        c->source_format = strdup("refresh-token");
        *ret = TAKE_PTR(c);
        return 0;
}

int import_api_key(const char *data, size_t size, CredentialRecord **ret, char **ret_message) {
        _cleanup_(credential_record_freep) CredentialRecord *c = credential_record_new();
        if (!c)
                return -ENOMEM;
        int r = take_bare_secret(data, size, "API key", &c->access_token, ret_message);
        if (r != 0)
                return r;
        if (!startswith(c->access_token, "ksk_"))
                return fail(ret_message, IMPORT_E_INVALID, "the API key does not start with 'ksk_' (a Kiro API key expected)");
        c->method = AUTH_METHOD_API_KEY;
        c->expires_at = USEC_INFINITY;
        c->region = strdup("us-east-1");
        c->source_format = strdup("api-key");
        *ret = TAKE_PTR(c);
        return 0;
}

/* Only a regular file, or a memfd sealed against every change, is read: a FIFO, socket or device could
 * block the daemon for ever, and a memfd the sender can still write could change while it is parsed. */
static int import_check_fd(int fd, const char *what, char **ret_message) {
        struct stat st;
        int seals;

        if (fstat(fd, &st) < 0)
                return fail(ret_message, -errno, "cannot inspect the %s: %m", what);
        if (!S_ISREG(st.st_mode))
                return fail(ret_message, IMPORT_E_BAD_FD, "the %s is a %s, not a regular file or sealed memfd", what,
                            S_ISFIFO(st.st_mode)  ? "FIFO"
                            : S_ISSOCK(st.st_mode) ? "socket"
                            : S_ISCHR(st.st_mode)  ? "character device"
                            : S_ISBLK(st.st_mode)  ? "block device"
                            : S_ISDIR(st.st_mode)  ? "directory"
                                                   : "special file");
        /* A memfd (or any file on shmem) tells its seals; other files say EINVAL. An unsealable one reports
         * F_SEAL_SEAL alone, and is not sealed. */
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0)
                return errno == EINVAL ? 0 : fail(ret_message, -errno, "cannot inspect the %s: %m", what);
        if (fd_is_memfd(fd) && (seals & IMPORT_MEMFD_SEALS) != IMPORT_MEMFD_SEALS)
                return fail(ret_message, IMPORT_E_BAD_FD,
                            "the %s is a memfd not sealed against writes (F_SEAL_WRITE, F_SEAL_GROW, F_SEAL_SHRINK)",
                            what);
        return 0;
}

int import_from_fds(ImportFormat f, int fd, int registration_fd, CredentialRecord **ret, char **ret_message) {
        static const size_t caps[_IMPORT_FORMAT_MAX] = {
                [IMPORT_KIRO_CLI_SQLITE] = IMPORT_SQLITE_MAX,
                [IMPORT_KIRO_IDE_JSON] = IMPORT_JSON_MAX,
                [IMPORT_REFRESH_TOKEN] = IMPORT_SECRET_MAX,
                [IMPORT_API_KEY] = IMPORT_SECRET_MAX,
        };
        char *data = NULL, *reg = NULL;
        size_t size = 0, reg_size = 0;
        int r;

        if (f < 0 || f >= _IMPORT_FORMAT_MAX)
                return fail(ret_message, IMPORT_E_UNSUPPORTED_FORMAT, "unknown import format");
        r = import_check_fd(fd, "source", ret_message);
        if (r != 0)
                return r;
        if (registration_fd >= 0) {
                r = import_check_fd(registration_fd, "client registration file", ret_message);
                if (r != 0)
                        return r;
        }
        r = read_full_fd(fd, caps[f], &data, &size);
        if (r == -EFBIG)
                return fail(ret_message, IMPORT_E_TOO_LARGE, "the source is larger than the limit of %zu bytes for '%s'", caps[f],
                            import_format_to_string(f));
        if (r < 0)
                return fail(ret_message, r, "cannot read the source: %s", strerror(-r));
        if (registration_fd >= 0) {
                r = read_full_fd(registration_fd, IMPORT_JSON_MAX, &reg, &reg_size);
                if (r == -EFBIG) {
                        erase_and_free_sized(data, size);
                        return fail(ret_message, IMPORT_E_TOO_LARGE, "the client registration file is too large");
                }
                if (r < 0) {
                        erase_and_free_sized(data, size);
                        return fail(ret_message, r, "cannot read the client registration file: %s", strerror(-r));
                }
        }

        switch (f) {
        case IMPORT_KIRO_CLI_SQLITE:
                r = import_kiro_cli_sqlite(data, size, ret, ret_message);
                break;
        case IMPORT_KIRO_IDE_JSON:
                r = import_kiro_ide_json(data, size, reg, reg_size, ret, ret_message);
                break;
        case IMPORT_REFRESH_TOKEN:
                r = import_refresh_token(data, size, ret, ret_message);
                break;
        case IMPORT_API_KEY:
                r = import_api_key(data, size, ret, ret_message);
                break;
        default:
                assert(false);
                r = -EINVAL;
        }
        erase_and_free_sized(data, size);
        erase_and_free_sized(reg, reg_size);
        return r;
}
