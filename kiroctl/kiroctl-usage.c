/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <assert.h>
#include <string.h>

#include "bus-names.h"
#include "json-util.h"
#include "kiroctl-bus.h"
#include "kiroctl-usage.h"
#include "time-util.h"

/* GetUsage's keys and the JSON names they get. */
static const struct {
        const char *bus;
        const char *json;
} usage_keys[] = {
        { "Plan", "plan" },
        { "PlanType", "plan_type" },
        { "Used", "used" },
        { "Limit", "limit" },
        { "BonusUsed", "bonus_used" },
        { "BonusLimit", "bonus_limit" },
        { "TrialStatus", "trial_status" },
        { "TrialUsed", "trial_used" },
        { "TrialLimit", "trial_limit" },
        { "TrialExpiresAt", "trial_expires_at_usec" },
        { "NextReset", "next_reset_usec" },
        { "Remaining", "remaining" },
        { "Percent", "percent" },
        { "FetchedAt", "fetched_at_usec" },
        { "SpentUntil", "spent_until_usec" },
        { "LastError", "last_error" },
};

static const char *json_name(const char *bus_key) {
        for (size_t i = 0; i < ELEMENTSOF(usage_keys); i++)
                if (streq(usage_keys[i].bus, bus_key))
                        return usage_keys[i].json;
        return NULL;
}

int bus_credential_get_usage(sd_bus *bus, const char *id, json_object **ret, sd_bus_error *error) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        assert(bus);
        assert(id);
        assert(ret);

        r = kirod_credential_path(id, &path);
        if (r < 0)
                return r;
        r = sd_bus_message_new_method_call(bus, &m, KIROD_BUS_NAME, path, KIROD_CREDENTIAL_INTERFACE, "GetUsage");
        if (r >= 0)
                r = sd_bus_message_append(m, "t", UINT64_C(0));
        if (r >= 0)
                r = sd_bus_call(bus, m, KIROCTL_SLOW_CALL_TIMEOUT_USEC, error, &reply);
        if (r < 0)
                return r;

        o = json_object_new_object();
        if (!o || json_add(o, "id", json_object_new_string(id)) < 0)
                return -ENOMEM;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0) {
                const char *key, *contents, *name;
                json_object *v = NULL;
                char type;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0)
                        r = sd_bus_message_peek_type(reply, &type, &contents);
                if (r < 0)
                        break;
                name = json_name(key);
                if (!name || !contents || strlen(contents) != 1) {
                        r = sd_bus_message_skip(reply, "v");
                } else if (contents[0] == 's') {
                        const char *s;
                        r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0 && !(v = json_object_new_string(s)))
                                r = -ENOMEM;
                } else if (contents[0] == 'd') {
                        double d;
                        r = sd_bus_message_read(reply, "v", "d", &d);
                        if (r >= 0 && !(v = json_object_new_double(d)))
                                r = -ENOMEM;
                } else if (contents[0] == 't') {
                        uint64_t t;
                        r = sd_bus_message_read(reply, "v", "t", &t);
                        if (r >= 0 && !(v = json_object_new_int64((int64_t) t)))
                                r = -ENOMEM;
                } else
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0 && v)
                        r = json_add(o, name, v);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(o);
        return 0;
}

static double num(json_object *u, const char *k) {
        double d = 0;
        (void) json_get_double(u, k, &d);
        return d;
}

static uint64_t usec(json_object *u, const char *k) {
        int64_t t = 0;
        (void) json_get_int64(u, k, &t);
        return t > 0 ? (uint64_t) t : 0;
}

static const char *str(json_object *u, const char *k) {
        const char *s = NULL;
        (void) json_get_string(u, k, &s);
        return s ?: "";
}

int usage_print(FILE *f, json_object *u) {
        char buf[64];

        assert(f);
        assert(u);

        fprintf(f, "%s:\n", str(u, "id"));
        if (usec(u, "fetched_at_usec") == 0)
                fprintf(f, "  no usage limits yet\n");
        else {
                fprintf(f, "  plan:     %s%s%s%s\n", isempty(str(u, "plan")) ? "unknown" : str(u, "plan"),
                        isempty(str(u, "plan_type")) ? "" : " (", str(u, "plan_type"),
                        isempty(str(u, "plan_type")) ? "" : ")");
                fprintf(f, "  credits:  %.2f of %.2f used\n", num(u, "used"), num(u, "limit"));
                if (num(u, "bonus_limit") > 0)
                        fprintf(f, "  bonuses:  %.2f of %.2f used\n", num(u, "bonus_used"), num(u, "bonus_limit"));
                if (!isempty(str(u, "trial_status")))
                        fprintf(f, "  trial:    %s, %.2f of %.2f used%s%s\n", str(u, "trial_status"),
                                num(u, "trial_used"), num(u, "trial_limit"),
                                usec(u, "trial_expires_at_usec") ? ", until " : "",
                                usec(u, "trial_expires_at_usec")
                                        ? format_rfc3339(buf, sizeof buf, usec(u, "trial_expires_at_usec"))
                                        : "");
                fprintf(f, "  left:     %.2f (%.0f%% used)\n", num(u, "remaining"), num(u, "percent"));
                fprintf(f, "  resets:   %s\n",
                        usec(u, "next_reset_usec") ? format_rfc3339(buf, sizeof buf, usec(u, "next_reset_usec"))
                                                   : "unknown");
                if (usec(u, "spent_until_usec"))
                        fprintf(f, "  spent:    skipped until %s\n",
                                format_rfc3339(buf, sizeof buf, usec(u, "spent_until_usec")));
                fprintf(f, "  fetched:  %s\n", format_rfc3339(buf, sizeof buf, usec(u, "fetched_at_usec")));
        }
        if (!isempty(str(u, "last_error")))
                fprintf(f, "  error:    %s\n", str(u, "last_error"));
        return 0;
}
