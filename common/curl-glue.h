/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libcurl multi interface driven by an sd-event loop: sockets as io sources, curl's timer as a relative
 * one-shot time source; every finished transfer is drained on each wake-up. */
#pragma once

#include <curl/curl.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "url-util.h"

typedef struct CurlGlue CurlGlue;

/* Called once per transfer when it finished (or failed). The easy handle has already been removed from
 * the multi handle; the callee owns it again. */
typedef void (*CurlGlueDone)(CurlGlue *g, CURL *c, CURLcode result, void *userdata);

int curl_glue_new(sd_event *e, CurlGlue **ret);
CurlGlue *curl_glue_free(CurlGlue *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(CurlGlue *, curl_glue_free);

/* Starts c; done() is called from the event loop when it ends. The glue owns c's CURLOPT_PRIVATE and its
 * open/close socket callbacks while c is added (the caller must not set them). done() may add and remove
 * transfers, but must not free the glue. */
int curl_glue_add(CurlGlue *g, CURL *c, CurlGlueDone done, void *userdata);
/* The same through proxy (a URL curl_glue_proxy_check() accepts, "env", or NULL: the glue's own
 * Proxy=) instead of the glue's setting (a credential's own proxy); noproxy NULL: the glue's. */
int curl_glue_add_proxied(CurlGlue *g, CURL *c, const char *proxy, const char *noproxy, CurlGlueDone done,
                          void *userdata);
/* Stops c (added with curl_glue_add()) without calling done(). */
void curl_glue_remove(CurlGlue *g, CURL *c);

/* Pause/unpause receiving for c (for back pressure). */
int curl_glue_pause(CurlGlue *g, CURL *c, bool pause);

/* Each sd-event iteration dispatches one source, and costs an epoll_wait() of its own. To save
 * iterations, the glue calls @post at the end of each of its dispatch callbacks (where the caller may
 * run other components' pending work at once), and curl_glue_flush() runs curl's own "call me now" work
 * right away; it returns whether there was any. */
typedef void (*CurlGluePost)(void *userdata);
void curl_glue_set_post(CurlGlue *g, CurlGluePost post, void *userdata);
bool curl_glue_flush(CurlGlue *g);

/* Common easy-handle settings: protocols http/https only, no signals, timeouts (USEC_INFINITY: none;
 * anything else at least 1 ms), and the trust store: ca_file, or with NULL the system bundle
 * (CURL_GLUE_SYSTEM_CA_FILE when it exists). With a file, curl's default CA directory is switched off: with
 * the GnuTLS backend it would open and parse every file of /etc/ssl/certs for every new connection (on
 * top of the file). (libcurl-gnutls 7.88 still parses the file per new connection: it has no CA blob or
 * CA cache for GnuTLS, and no way to hand it parsed credentials.) */
int curl_glue_setup_easy(CURL *c, const char *url, const char *ca_file, uint64_t timeout_usec);
#define CURL_GLUE_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* Upstream connection policy, applied by curl_glue_add() to every transfer of the glue:
 * - TLS session tickets and DNS answers are shared by all the glue's easy handles (a CURLSH; one
 *   thread, so no lock callbacks), so a new connection to a known host resumes its TLS session;
 * - http_version: AUTO asks for HTTP/2 over TLS (ALPN h2, http/1.1 fallback; plain http:// stays
 *   HTTP/1.1), and a new https:// transfer waits for a connection being set up to the same host rather
 *   than open one of its own (CURLOPT_PIPEWAIT, set by curl_glue_setup_easy()), so a burst of requests
 *   shares one multiplexed connection; HTTP_1_1 never asks for h2; HTTP_2 asks for h2 with prior knowledge on http:// too
 *   (over TLS, curl 7.88 still offers http/1.1 in ALPN and uses it if that is all the server speaks);
 * - max_connections: a cap on open connections (CURLMOPT_MAX_TOTAL_CONNECTIONS, and on the connection
 *   cache); transfers beyond it wait for one. With AUTO it takes effect once a connection negotiated
 *   HTTP/2 (until then each transfer in flight needs a connection of its own, and a cap would hold
 *   streams back); with HTTP_1_1 it bounds concurrent transfers. 0: none;
 * - idle_timeout: an idle connection is not reused after this long, and once no transfer has run for
 *   this long every cached connection is closed (its memory, with the TLS state, goes back). */
typedef enum CurlGlueHTTPVersion {
        CURL_GLUE_HTTP_AUTO,
        CURL_GLUE_HTTP_1_1,
        CURL_GLUE_HTTP_2,
        _CURL_GLUE_HTTP_MAX,
        _CURL_GLUE_HTTP_INVALID = -EINVAL,
} CurlGlueHTTPVersion;

typedef struct CurlGlueLimits {
        CurlGlueHTTPVersion http_version;
        unsigned max_connections;
        uint64_t idle_timeout_usec;
} CurlGlueLimits;

#define CURL_GLUE_IDLE_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)
#define CURL_GLUE_MAX_CONNECTIONS_DEFAULT 16U
#define CURL_GLUE_LIMITS_DEFAULT                                       \
        (CurlGlueLimits) {                                             \
                .http_version = CURL_GLUE_HTTP_AUTO,                   \
                .max_connections = CURL_GLUE_MAX_CONNECTIONS_DEFAULT,  \
                .idle_timeout_usec = CURL_GLUE_IDLE_TIMEOUT_DEFAULT,   \
        }

int curl_glue_set_limits(CurlGlue *g, const CurlGlueLimits *l);
/* "auto", "1.1", "2" → the enum; anything else -EINVAL. */
CurlGlueHTTPVersion curl_glue_http_version_from_string(const char *s);
/* A config parser (ConfigItem) for it: data is a CurlGlueHTTPVersion *. */
int curl_glue_parse_http_version(const char *value, void *data);
/* Transfers in flight, connections opened so far (for tests and the bench). */
unsigned curl_glue_n_transfers(CurlGlue *g);
uint64_t curl_glue_n_connects(CurlGlue *g);
/* With no transfer in flight, closes every cached connection now (what the idle sweep does) and returns
 * true; otherwise does nothing and returns false. */
bool curl_glue_sweep(CurlGlue *g);

/* Egress proxy (Proxy=, NoProxy=), applied by curl_glue_add() to every transfer of the glue: proxy NULL
 * means none, and the environment (http_proxy, https_proxy, all_proxy, no_proxy) is ignored;
 * CURL_GLUE_PROXY_ENV uses those variables as curl reads them; anything else is a proxy URL, http://,
 * https:// or socks5h:// (the proxy resolves the names), possibly with user:password@. noproxy: curl's
 * CURLOPT_NOPROXY list (comma separated hosts or domains, "*" for all), NULL for none. Changes apply to
 * transfers added afterwards. -EINVAL for a proxy curl_glue_proxy_check() refuses. */
#define CURL_GLUE_PROXY_ENV "env"
int curl_glue_set_proxy(CurlGlue *g, const char *proxy, const char *noproxy);
/* The same on one easy handle (what curl_glue_add() does with the glue's setting). */
int curl_glue_setup_proxy(CURL *c, const char *proxy, const char *noproxy);
/* 0 for "env" and http://, https://, socks5h:// URLs with a host; -EPROTONOSUPPORT for another scheme,
 * -EINVAL for the rest. */
int curl_glue_proxy_check(const char *proxy);
/* A config parser (ConfigItem) for Proxy=: data is a char **, "" sets NULL. */
int curl_glue_parse_proxy(const char *value, void *data);
/* The proxy URL fit for logs: a password replaced with "***" (NULL: "none"). */
int curl_glue_proxy_mask(const char *proxy, char **ret);

/* Checks that a URL is https://, or http:// to a loopback host (tests): 0 for https://, and for http:// to a loopback host (127.0.0.0/8, localhost, [::1]); -EPERM for other
 * http:// URLs, -EPROTONOSUPPORT for other schemes. */
int url_check_scheme(const char *url);
