# SPDX-License-Identifier: LGPL-2.1-or-later
"""What one request may cost the others (issue 9 item 2): the default MaxBodyBytes= is in proportion to
Kiro's limit, and /healthz answers within 100 ms while a 200k-message request (under that limit) is being
parsed and normalized. The stack is proxyd_fixture.py."""

import http.client
import json
import os
import threading
import time

import pytest

from proxyd_fixture import CHAT_PATH, needs_proxyd, proxy_stack, stack  # noqa: F401

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"
MiB = 1024 * 1024
HEALTHZ_MAX_SECONDS = 0.100
# The figure; KIROD_HEALTHZ_MESSAGES= sets another for measuring how the cost grows.
N_MESSAGES = int(os.environ.get("KIROD_HEALTHZ_MESSAGES", "200000"))
# A request that runs longer than this is a failure in itself (the watchdog is 30 s).
REQUEST_TIMEOUT = 120


def many_messages(n):
        msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "x"} for i in range(n - 1)]
        msgs.append({"role": "user", "content": "and now?"})
        return json.dumps({"model": MODEL, "messages": msgs}, separators=(",", ":")).encode()


def test_default_max_body_bytes_is_8_mib(stack):
        """8 MiB, about 14 times MaxUpstreamPayloadBytes=600000: a 9 MB body is refused from its
        Content-Length, an 8 MB one is read and meets the upstream payload guard."""
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": "z" * 9_000_000}]})
        assert r.status == 413, r
        assert "8388608" in r.json()["error"]["message"], r
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": "z" * 8_000_000}]})
        assert r.status == 413, r
        assert "600000" in r.json()["error"]["message"], r
        assert stack.chat.count() == 0


def poll_healthz(port, stop, latencies):
        while not stop.is_set():
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
                t0 = time.monotonic()
                try:
                        c.request("GET", "/healthz")
                        r = c.getresponse()
                        r.read()
                        latencies.append((t0, time.monotonic() - t0, r.status))
                except OSError:
                        latencies.append((t0, time.monotonic() - t0, 0))
                        return
                finally:
                        c.close()
                time.sleep(0.01)


# Measured on branch 'access', 2 shared cores, 200k messages (6.5 MB, MaxMessages= raised), 413 from the
# payload guard in the end. Before merging main (quadratic normalizer): release build 1.2-2.4 s for the
# request, /healthz waited 1.1-1.5 s; ASan build unfinished after 600 s. After merging main at 5c69128
# (linear normalizer, bounded parsing): release build 3.4-3.6 s, /healthz waited 3.4-3.6 s (the machine was
# shared, but nothing suggests the split-up work yields to the loop); ASan build 5.2 s / 5.1 s. The whole
# request still runs in one callback. strict=False: it shows as XPASS once it holds; then drop the mark.
# Since the payload guard refuses from a lower bound of the converted size before normalizing (kiro-request.c
# body_size_lower_bound()), the 200k request costs 1.6 s under ASan (413) and /healthz waited 1.4 s: what is
# left is json-c parsing the 6.5 MB body and the front end filling the form, both in one callback.
@pytest.mark.xfail(strict=False, reason="ASan build at 41c9611+: /healthz waited 1.4 s behind a 200k-message "
                                        "request whose JSON parse and conversion to the form run in one "
                                        "event-loop callback")
def test_healthz_answers_while_a_200k_message_request_runs(proxy_stack):
        """MaxMessages= and MaxContentParts= are raised so that the request is parsed and normalized in
        full (with the defaults it is refused at the count, see test_proxyd_limits.py)."""
        stack = proxy_stack(Proxy={"MaxMessages": 2 * N_MESSAGES, "MaxContentParts": 2 * N_MESSAGES})
        body = many_messages(N_MESSAGES)
        assert len(body) < 8 * MiB, len(body)
        stop = threading.Event()
        latencies = []
        poller = threading.Thread(target=poll_healthz, args=(stack.port, stop, latencies), daemon=True)
        poller.start()
        time.sleep(0.2)
        try:
                t0 = time.monotonic()
                r = stack.request("POST", CHAT_PATH, body, {"Content-Type": "application/json"},
                                  timeout=REQUEST_TIMEOUT)
                t1 = time.monotonic()
        finally:
                time.sleep(0.2)
                stop.set()
                poller.join(timeout=REQUEST_TIMEOUT)
        # It finished, one way or the other (served, or refused by the payload guard), not 500 or a hang.
        assert r.status in (200, 413), r
        during = [(lat, st) for (t, lat, st) in latencies if t0 <= t <= t1]
        assert all(st == 200 for _, st in during), during
        worst = max((lat for lat, _ in during), default=0.0)
        print(f"{N_MESSAGES} messages, {len(body)} bytes: {t1 - t0:.3f} s, HTTP {r.status}; /healthz polled "
              f"{len(during)} times meanwhile, worst {worst * 1000:.1f} ms")
        assert during, "no /healthz poll happened while the request ran"
        assert worst < HEALTHZ_MAX_SECONDS, f"/healthz took {worst * 1000:.0f} ms while the request ran ({t1 - t0:.2f} s)"
