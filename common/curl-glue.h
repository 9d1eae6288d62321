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
 * anything else at least 1 ms), optional CA file. */
int curl_glue_setup_easy(CURL *c, const char *url, const char *ca_file, uint64_t timeout_usec);

/* Checks that a URL is https://, or http:// to a loopback host (tests): 0 for https://, and for http:// to a loopback host (127.0.0.0/8, localhost, [::1]); -EPERM for other
 * http:// URLs, -EPROTONOSUPPORT for other schemes. */
int url_check_scheme(const char *url);
