#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The loopback fakes for the VM test, in one process: the fake Kiro social auth + OIDC token service
(tests/integration/fakeauth.py) and the fake Kiro chat service (tests/integration/fakes/kiro_chat.py),
on fixed ports so that configuration written before a reboot still points at them after it.

Every access token the auth fake issues is accepted by the chat fake. The newest refresh token of each
login and every access token are saved in STATE (atomically, on each change), and loaded on start, so
that a new process after the VM's reboot continues the same logins: the credential kiro-authd kept on
disk still refreshes, and the access token it kept still chats.

    kirod-fakes.py --state FILE --ready-file FILE --seed NAME=REFRESH_TOKEN [--seed ...]
"""

import argparse
import json
import os
import signal
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fakeauth  # noqa: E402
from fakes import kiro_chat  # noqa: E402

PORTS = {"kiro": 18101, "oidc": 18102, "chat": 18103}


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


def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--state", required=True)
        ap.add_argument("--ready-file", required=True)
        ap.add_argument("--seed", action="append", default=[], help="NAME=REFRESH_TOKEN, unless in --state")
        args = ap.parse_args()

        # FakeAuth starts "kiro" then "oidc"; FakeKiroChat serves chat only (no control endpoint).
        fakeauth._Server = fixed_port_server(fakeauth._Server, [PORTS["kiro"], PORTS["oidc"]])
        kiro_chat._Server = fixed_port_server(kiro_chat._Server, [PORTS["chat"]])

        state = {"logins": {}, "access_tokens": []}
        if os.path.exists(args.state):
                with open(args.state) as f:
                        state = json.load(f)
        for s in args.seed:
                name, token = s.split("=", 1)
                state["logins"].setdefault(name, token)

        auth = fakeauth.FakeAuth(expires_in=3600)
        for name, token in state["logins"].items():
                auth.seed(token, "social", lineage=name)
        chat = kiro_chat.FakeKiroChat(tokens=state["access_tokens"] or ["unused"]).start()
        save(args.state, state)

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
                                state["access_tokens"].append(at)
                                chat.accept_token(at)
                                changed = True
                if changed:
                        save(args.state, state)
        chat.stop()
        auth.close()
        return 0


if __name__ == "__main__":
        sys.exit(main())
