# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fault injection (issue 11 "Fault injection"), against the real daemons on loopback:

- the upstream cuts the connection at random points of an answer: each client gets a clean outcome (the
  whole answer, an error in its API's shape, or a stream that ends with an error event and a proper
  end of the chunked body) and the proxy keeps serving;
- the upstream answers slower than every timeout (no status line, headers but no frame, a stall after
  content, a socket that never accepts): a clean 504/error in bounded time;
- the OAuth server hangs during a refresh: kiro-authd keeps answering the bus meanwhile.

The wall clock: which clock each timer uses is in docs/ARCHITECTURE.md ("Clocks"); jumping the system
clock needs root-level changes to the machine's time and is not done here (see there).

KIROD_FAULT_SEED=N replays the random cut points."""

import json
import os
import random
import socket
import threading
import time

import pytest

import dbusmini
from fakes.kiro_chat import build_frames
from kirodtest import CREDENTIAL_IFACE, PROXY_USER, wait_until
from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, needs_proxyd, proxy_stack, stack  # noqa: F401
from test_authd import bus_import, cred_path

MODEL = "claude-sonnet-4.5"
TEXTS = ["alpha ", "beta ", "gamma ", "delta ", "epsilon "]
FULL = "".join(TEXTS)


def body(path, stream, content="tell me"):
        b = {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": content}]}
        if path == MESSAGES_PATH:
                b["max_tokens"] = 100
        return b


def outcome(s, path, stream, r):
        """Classifies what the client got: 'complete', 'error' (clean) or a description of what is wrong."""
        if not stream:
                if r.status == 200:
                        d = r.json()
                        text = d["choices"][0]["message"]["content"] if path == CHAT_PATH else \
                                "".join(b.get("text", "") for b in d["content"] if b.get("type") == "text")
                        return "complete" if text == FULL else f"200 with partial text {text!r}"
                e = r.json()
                if path == CHAT_PATH:
                        ok = set(e) == {"error"} and e["error"]["message"]
                else:
                        ok = e.get("type") == "error" and e["error"]["message"]
                return "error" if ok and r.status >= 500 else f"bad error {r.status} {e}"
        if r.status != 200:
                return outcome(s, path, False, r)
        if not r.complete:
                return f"stream not properly ended (chunked body truncated): {r.raw[-300:]!r}"
        if path == CHAT_PATH:
                if r.done:
                        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in r.data()
                                       if c.get("choices"))
                        return "complete" if text == FULL else f"[DONE] after partial text {text!r}"
                last = r.events[-1] if r.events else None
                return "error" if last and last.json and "error" in last.json else f"no end, no error: {r.raw[-300:]!r}"
        names = r.names()
        if "message_stop" in names:
                text = "".join(d["delta"].get("text", "") for d in r.data()
                               if d.get("type") == "content_block_delta")
                return "complete" if text == FULL else f"message_stop after partial text {text!r}"
        return "error" if names and names[-1] == "error" else f"no end, no error: {r.raw[-300:]!r}"


def call(s, path, stream, content="tell me", timeout=30):
        if stream:
                return s.stream(path, body(path, True, content), timeout=timeout)
        return s.post(path, body(path, False, content), timeout=timeout)


def still_serving(s):
        s.chat.enqueue({"text": TEXTS})
        r = s.post(CHAT_PATH, body(CHAT_PATH, False), timeout=15)
        assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == FULL, r
        assert s.get("/healthz").status == 200


# ---- the upstream cuts the connection ---------------------------------------------------------------

@needs_proxyd
def test_upstream_cut_at_random_points(proxy_stack, capsys):
        seed = int(os.environ.get("KIROD_FAULT_SEED") or random.randrange(1 << 30))
        rnd = random.Random(seed)
        s = proxy_stack(Kiro={"MaxAttempts": 1})
        total = sum(len(f) for f in build_frames({"text": TEXTS}))
        results = {}
        for i in range(12):
                for path in (CHAT_PATH, MESSAGES_PATH):
                        for stream in (True, False):
                                cut = rnd.randrange(0, total + 1)
                                s.chat.enqueue({"text": TEXTS, "cut_after_bytes": cut})
                                r = call(s, path, stream)
                                o = outcome(s, path, stream, r)
                                results[(path, stream, cut)] = o
                                assert o in ("complete", "error"), \
                                        f"seed {seed}: cut after {cut} of {total} bytes, {path} stream={stream}: {o}"
                still_serving(s)
        with capsys.disabled():
                n = {k: sum(1 for v in results.values() if v == k) for k in ("complete", "error")}
                print(f"\ncuts (seed {seed}): {len(results)} requests, {n['error']} clean errors, "
                      f"{n['complete']} complete answers (cut inside the closing events)")
        assert s.proxyd.running()


@needs_proxyd
def test_upstream_reset_mid_stream_under_concurrency(proxy_stack):
        """Twenty streams at once, each cut somewhere: every client gets a clean outcome."""
        s = proxy_stack(Kiro={"MaxAttempts": 1})
        total = sum(len(f) for f in build_frames({"text": TEXTS}))
        tags = [f"conc-{i}-{os.urandom(4).hex()}" for i in range(20)]
        for i, tag in enumerate(tags):
                s.chat.enqueue({"match": tag, "text": TEXTS, "chunk_delay": 0.05,
                                "cut_after_bytes": (i * 97) % (total + 1)})
        out = {}

        def one(i, tag):
                path = CHAT_PATH if i % 2 else MESSAGES_PATH
                try:
                        out[tag] = outcome(s, path, True, call(s, path, True, content=tag))
                except Exception as e:     # noqa: BLE001 — reported below
                        out[tag] = repr(e)

        threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(tags)]
        for t in threads:
                t.start()
        for t in threads:
                t.join(60)
        bad = {t: o for t, o in out.items() if o not in ("complete", "error")}
        assert len(out) == len(tags) and not bad, bad
        still_serving(s)


# ---- slower than every timeout -----------------------------------------------------------------------

# Ids without "/": the scratch directory is named after the test and ends up in an XML comment of the bus
# configuration, where "--" is not allowed.
PATHS = pytest.mark.parametrize("path", [CHAT_PATH, MESSAGES_PATH], ids=["openai", "anthropic"])
STREAM = pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])


@needs_proxyd
@PATHS
@STREAM
@pytest.mark.parametrize("delay", ["first_byte_delay", "first_frame_delay"])
def test_upstream_silent_past_first_token_timeout(proxy_stack, path, stream, delay):
        s = proxy_stack(Proxy={"FirstTokenTimeoutSec": 1, "PingIntervalSec": "infinity"}, Kiro={"MaxAttempts": 1})
        s.chat.enqueue({delay: 6, "text": TEXTS})
        t0 = time.monotonic()
        r = call(s, path, stream)
        took = time.monotonic() - t0
        assert outcome(s, path, stream, r) == "error", r
        assert r.status == 504, r
        assert 0.8 <= took < 4, took
        still_serving(s)


@needs_proxyd
@PATHS
@STREAM
def test_stall_after_content(proxy_stack, path, stream):
        """Content began, then nothing for longer than StallTimeoutSec=: the answer ends in an error. The
        stall is curl's low-speed check (below 1 byte/s for that long), whose speed is an average over
        about the last five seconds: a stall right after a burst is noticed up to ~6 s late."""
        s = proxy_stack(Proxy={"StallTimeoutSec": 2, "PingIntervalSec": "infinity"}, Kiro={"MaxAttempts": 1})
        s.chat.enqueue({"text": TEXTS, "chunk_delay": 30})
        t0 = time.monotonic()
        r = call(s, path, stream, timeout=40)
        took = time.monotonic() - t0
        assert outcome(s, path, stream, r) == "error", r
        assert 1.5 <= took < 2 + 9, f"the stall was noticed after {took:.1f}s (StallTimeoutSec=2)"
        still_serving(s)


@needs_proxyd
def test_upstream_that_never_accepts(proxy_stack):
        """An endpoint whose listen backlog takes the connection but nobody ever reads it."""
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead.listen(16)
        try:
                port = dead.getsockname()[1]
                s = proxy_stack(Proxy={"FirstTokenTimeoutSec": 1}, Kiro={"MaxAttempts": 1},
                                endpoints=[f"http://127.0.0.1:{port}"])
                for path in (CHAT_PATH, MESSAGES_PATH):
                        t0 = time.monotonic()
                        r = call(s, path, False)
                        assert outcome(s, path, False, r) == "error" and r.status == 504, r
                        assert time.monotonic() - t0 < 4
                assert s.get("/healthz").status == 200
        finally:
                dead.close()


# ---- the OAuth server hangs during a refresh ------------------------------------------------------------

def test_oauth_server_hanging_does_not_block_the_bus(users, authd, fake_auth, dbus, bus):
        fake_auth.seed("rt-hang-0", lineage="hang")
        a = authd()
        gate = fake_auth.hold_next(timeout=60)
        bus_import(dbus, "refresh-token", "rt-hang-0", cred_id="hang")
        try:
                assert gate.arrived.wait(10), "the refresh never reached the fake"
                # The refresh hangs at the OAuth server; every bus call is still answered at once.
                worst = 0.0
                for _ in range(20):
                        t0 = time.monotonic()
                        assert dbus("ListCredentials", "t", [0])[0]
                        dbus("Ping", path="/org/kirod/Auth1", interface="org.freedesktop.DBus.Peer")
                        dbus("GetAll", "s", [CREDENTIAL_IFACE], path=cred_path("hang"),
                             interface="org.freedesktop.DBus.Properties")
                        worst = max(worst, time.monotonic() - t0)
                        time.sleep(0.1)
                assert worst < 1.0, f"a bus call took {worst:.2f}s while the refresh hung"
                # A GetToken for the hanging credential waits (deferred), without blocking others.
                res = {}

                def get():
                        try:
                                res["ok"] = dbus("GetToken", "sst", ["kiro", "hang", 0], user=PROXY_USER)
                        except dbusmini.DBusError as e:
                                res["err"] = e

                t = threading.Thread(target=get)
                t.start()
                time.sleep(0.5)
                t0 = time.monotonic()
                assert dbus("ListCredentials", "t", [0])[0]
                assert time.monotonic() - t0 < 1.0
        finally:
                gate.release()
        t.join(30)
        assert not t.is_alive()
        # Once the server answers, the refresh completes and the waiting GetToken gets the new token.
        assert "ok" in res, res
        assert fake_auth.latest_access_token("hang") in res["ok"], res
        assert a.running()
