/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The resident-memory floor of a process linked like kiro-authd: context for its RSS target. */

/* Links the shared libraries kiro-authd links (libsystemd, libcurl, json-c, SQLite, inih), does nothing
 * of its own, and prints VmRSS/RssAnon/RssFile at main() and again after curl_global_init() +
 * curl_multi_init() (which kiro-authd does at start-up for its refresh client):
 *
 *   rss-floor main_kib=… main_anon_kib=… main_file_kib=… curl_kib=… curl_anon_kib=… curl_file_kib=…
 *
 * Whatever kiro-authd measures above these numbers is its own doing. */

#include <curl/curl.h>
#include <ini.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

static void status_kib(long *rss, long *anon, long *file) {
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");
        *rss = *anon = *file = -1;
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                if (strncmp(line, "VmRSS:", 6) == 0)
                        *rss = strtol(line + 6, NULL, 10);
                else if (strncmp(line, "RssAnon:", 8) == 0)
                        *anon = strtol(line + 8, NULL, 10);
                else if (strncmp(line, "RssFile:", 8) == 0)
                        *file = strtol(line + 8, NULL, 10);
        }
        fclose(f);
}

static int on_ini(void *user, const char *section, const char *name, const char *value) {
        return 1;
}

int main(int argc, char *argv[]) {
        long m_rss, m_anon, m_file, c_rss, c_anon, c_file;

        status_kib(&m_rss, &m_anon, &m_file);

        /* Touch each library once, so that none is dropped by --as-needed. */
        if (argc > 99) {
                sd_event *e = NULL;
                (void) sd_event_default(&e);
                (void) ini_parse_string("", on_ini, NULL);
                puts(json_c_version());
                puts(sqlite3_libversion());
        }

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return EXIT_FAILURE;
        CURLM *multi = curl_multi_init();
        if (!multi)
                return EXIT_FAILURE;
        status_kib(&c_rss, &c_anon, &c_file);

        printf("rss-floor main_kib=%ld main_anon_kib=%ld main_file_kib=%ld curl_kib=%ld curl_anon_kib=%ld "
               "curl_file_kib=%ld\n", m_rss, m_anon, m_file, c_rss, c_anon, c_file);
        curl_multi_cleanup(multi);
        curl_global_cleanup();
        return EXIT_SUCCESS;
}
