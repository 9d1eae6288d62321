#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The loopback fakes for the VM test, in one process: the fake Kiro social auth + OIDC token service
(tests/integration/fakeauth.py) and the fake Kiro chat service (tests/integration/fakes/kiro_chat.py),
on fixed ports so that configuration written before a reboot still points at them after it.

Every access token the auth fake issues is accepted by the chat fake until it expires by this
process's wall clock (issued + EXPIRES_IN seconds of time.time()), as the real service checks expiry by
its own clock: when the VM's clock jumps, the fake's clock jumps with it. The newest refresh token of
each login, every access token and when it was issued are saved in STATE (atomically, on each change),
and loaded on start, so that a new process after the VM's reboot continues the same logins: the
credential kiro-authd kept on disk still refreshes, and the access token it kept still chats.

What the clock step of vm-check.sh asserts on is written to STATUS (--status-file, atomically, on each
change; no token in it): per login the number of refreshes (rotations), the wall-clock time of the last
one (time.time() when the request was handled) and whether a newest access token exists; per chat request, in order, the login and index of its bearer token, whether that token was the
login's newest and whether it had expired by this clock (both when the request was answered), the
HTTP status and the first "cj-..." tag of the prompt.

A prompt containing "clockjump-slow" is answered slowly (CLOCKJUMP_SLOW: the first frame after 4 s, then
8 text frames 1 s apart, "clock-01 " .. "clock-08 "), for streams that are in flight while the clock
jumps. Python's waits (threading.Event.wait) run on CLOCK_MONOTONIC, so a jump does not move them.

A JSON list written to SCRIPT (--script-file) is queued as the auth fake's scripted actions
(fakeauth.py: e.g. [{"status": 500}] fails the next refresh) and the file removed.

    kirod-fakes.py --state FILE --ready-file FILE [--status-file FILE] [--script-file FILE]
                   --seed NAME=REFRESH_TOKEN [--seed ...]
"""

import argparse
import json
import os
import re
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fakeauth  # noqa: E402
from fakes import kiro_chat  # noqa: E402

PORTS = {"kiro": 18101, "oidc": 18102, "chat": 18103}
# Lifetime of every access token the auth fake issues (its expiresIn), and the chat fake's expiry check.
EXPIRES_IN = 3600
CLOCKJUMP_SLOW = {"name": "clockjump-slow", "match": "clockjump-slow", "repeat": 1000, "first_frame_delay": 4,
                  "chunk_delay": 1, "text": [f"clock-{i:02d} " for i in range(1, 9)]}


class ExpiringTokens:
        """The chat fake's set of accepted bearer tokens: a token issued at a known wall-clock time is
        accepted only until issued + EXPIRES_IN by time.time() (tokens from before the issue times were
        recorded carry none and do not expire)."""

        def __init__(self, tokens, issued):
                self.tokens = set(tokens)
                self.issued = issued            # token -> time.time() when it was issued

        def expired(self, token):
                t = self.issued.get(token)
                return t is not None and time.time() >= t + EXPIRES_IN

        def __contains__(self, token):
                return token in self.tokens and not self.expired(token)

        def add(self, token):
                self.tokens.add(token)

        def discard(self, token):
                self.tokens.discard(token)


def fixed_port_server(base, ports):
        """A subclass of base that binds the next port of ports instead of port 0."""
        it = iter(ports)

        class Fixed(base):
                allow_reuse_address = True

                def __init__(self, address, handler, *args, **kwargs):
                        host, port = address
                        super().__init__((host, next(it) if port == 0 else port), handler, *args, **kwargs)

        return Fixed


def save(path, data):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
                json.dump(data, f)
        os.replace(tmp, path)


def status_of(auth, chat, state, token_owner, chats):
        """The status file's content. chats is the list of chat entries so far, extended here: an entry is
        made once, when its request has its status, with the token facts of that moment."""
        newest = {name: auth.latest_access_token(name) for name in state["logins"]}
        with chat.lock:
                reqs = [r for r in chat.requests if r.path.split("?")[0] == kiro_chat.CHAT_PATH]
        for r in reqs[len(chats):]:
                if not r.status:
                        break
                owner = token_owner.get(r.token)
                content = (r.current or {}).get("content", "") if isinstance(r.current, dict) else ""
                tag = re.search(r"cj-[a-z0-9-]+", content) if isinstance(content, str) else None
                chats.append({"lineage": owner[0] if owner else None, "index": owner[1] if owner else None,
                              "latest": r.token is not None and r.token in newest.values(),
                              "expired": chat.tokens.expired(r.token), "status": r.status,
                              "tag": tag.group(0) if tag else None})
        rotated_at = {}
        for name in state["logins"]:
                t = [r.time for r in auth.requests_for(lineage=name) if r.outcome == "rotated"]
                rotated_at[name] = t[-1] if t else None
        return {"rotations": {name: auth.rotations(name) for name in state["logins"]},
                "rotated_at": rotated_at,
                "has_access_token": {name: bool(newest[name]) for name in newest},
                "chats": list(chats)}


def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--state", required=True)
        ap.add_argument("--ready-file", required=True)
        ap.add_argument("--status-file")
        ap.add_argument("--script-file", help="a JSON list of fakeauth script actions, consumed when it appears")
        ap.add_argument("--seed", action="append", default=[], help="NAME=REFRESH_TOKEN, unless in --state")
        args = ap.parse_args()

        # FakeAuth starts "kiro" then "oidc"; FakeKiroChat serves chat only (no control endpoint).
        fakeauth._Server = fixed_port_server(fakeauth._Server, [PORTS["kiro"], PORTS["oidc"]])
        kiro_chat._Server = fixed_port_server(kiro_chat._Server, [PORTS["chat"]])

        state = {"logins": {}, "access_tokens": [], "issued": {}}
        if os.path.exists(args.state):
                with open(args.state) as f:
                        state = json.load(f)
        state.setdefault("issued", {})
        for s in args.seed:
                name, token = s.split("=", 1)
                state["logins"].setdefault(name, token)

        auth = fakeauth.FakeAuth(expires_in=EXPIRES_IN)
        for name, token in state["logins"].items():
                auth.seed(token, "social", lineage=name)
        chat = kiro_chat.FakeKiroChat(tokens=state["access_tokens"] or ["unused"])
        chat.tokens = ExpiringTokens(chat.tokens, state["issued"])
        chat.enqueue(CLOCKJUMP_SLOW)
        chat.start()
        save(args.state, state)
        # Which login and index each access token belongs to, for the status file. Tokens from an
        # earlier process (after the reboot) are known by the order they were saved in only.
        token_owner = {}
        last_status = None
        chats = []

        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: done.set())

        save(args.ready_file, {"kiro_auth_url": auth.kiro_url, "oidc_url": auth.oidc_url, "chat_url": chat.url,
                               "pid": os.getpid()})
        print(f"kirod-fakes: auth {auth.kiro_url}, oidc {auth.oidc_url}, chat {chat.url}", flush=True)

        while not done.wait(0.1):
                changed = False
                for name in list(state["logins"]):
                        rt = auth.latest_refresh_token(name)
                        if rt != state["logins"][name]:
                                state["logins"][name] = rt
                                changed = True
                        at = auth.latest_access_token(name)
                        if at and at not in state["access_tokens"]:
                                # Seen within 0.1 s of its issue: close enough to its server-side
                                # issue time for an expiry that is an hour away.
                                state["issued"][at] = time.time()
                                state["access_tokens"].append(at)
                                chat.accept_token(at)
                                changed = True
                        if at:
                                token_owner.setdefault(at, (name, auth.rotations(name)))
                if changed:
                        save(args.state, state)
                if args.script_file and os.path.exists(args.script_file):
                        with open(args.script_file) as f:
                                auth.script(json.load(f))
                        os.remove(args.script_file)
                if args.status_file:
                        status = status_of(auth, chat, state, token_owner, chats)
                        if status != last_status:
                                save(args.status_file, status)
                                last_status = status
        chat.stop()
        auth.close()
        return 0


if __name__ == "__main__":
        sys.exit(main())
