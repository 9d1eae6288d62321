#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The Kimi fakes of tests/integration as one process for tests/clients/run.sh: Kimi's OAuth device login
(fakelogin.FakeLogin, under <base>/kimi) and Kimi's chat API (fakes/kimi_chat.FakeKimiChat), plus a small
control endpoint (JSON) for run.sh and the node tests:

  POST /approve           the user approves the pending device login: the next poll answers the tokens
  POST /enqueue [sc, …]   queues chat scenarios (kimi_chat.py's keys); a scenario with "match" is used
                          only by a request whose raw body contains that string
  GET  /requests?match=S  the chat requests whose raw body contains S: [{path, headers, body, status}]
  GET  /tokens            the Kimi access tokens the fake login issued, oldest first

Once listening it writes {auth_url, api_base, control_url, pid} to --ready-file; SIGTERM stops it."""

import argparse
import json
import os
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

import fakelogin  # noqa: E402
from fakes.kimi_chat import FakeKimiChat  # noqa: E402


class MatchingKimiChat(FakeKimiChat):
        """Scenarios with "match" go only to the request whose body contains it (the node tests run one at a
        time, so the request just recorded is the one being answered)."""

        def _next(self):
                with self.lock:
                        raw = self.requests[-1].raw.decode("utf-8", "replace") if self.requests else ""
                        for i, sc in enumerate(self.queue):
                                if "match" not in sc or sc["match"] in raw:
                                        return self.queue.pop(i)
                return {"text": ["Hello ", "from Kimi."]}


class _Server(ThreadingHTTPServer):
        daemon_threads = True


def control_handler(login, chat):
        class H(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def log_message(self, *a):
                        pass

                def _send(self, status, obj):
                        data = json.dumps(obj).encode()
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(data)))
                        self.end_headers()
                        self.wfile.write(data)

                def do_POST(self):
                        n = int(self.headers.get("Content-Length") or 0)
                        raw = self.rfile.read(n)
                        if self.path == "/approve":
                                with login.lock:
                                        login.plan = ["ok"]
                                return self._send(200, {"ok": True})
                        if self.path == "/enqueue":
                                try:
                                        scenarios = json.loads(raw)
                                except ValueError:
                                        scenarios = None
                                if not isinstance(scenarios, list) or not all(isinstance(s, dict) for s in scenarios):
                                        return self._send(400, {"error": "a JSON array of scenario objects"})
                                chat.enqueue(*scenarios)
                                return self._send(200, {"queued": len(scenarios)})
                        return self._send(404, {"error": "no route"})

                def do_GET(self):
                        u = urllib.parse.urlsplit(self.path)
                        q = urllib.parse.parse_qs(u.query)
                        if u.path == "/requests":
                                match = q.get("match", [""])[0]
                                with chat.lock:
                                        reqs = [r for r in chat.requests if match in r.raw.decode("utf-8", "replace")]
                                        out = [{"path": r.path, "headers": r.headers, "body": r.body, "status": r.status}
                                               for r in reqs]
                                return self._send(200, out)
                        if u.path == "/tokens":
                                with login.lock:
                                        return self._send(200, [at for kind, at, _rt in login.issued if kind == "kimi"])
                        return self._send(404, {"error": "no route"})
        return H


def main(argv=None):
        ap = argparse.ArgumentParser(description="Fake Kimi OAuth and chat services (loopback, for tests).")
        ap.add_argument("--ready-file", required=True, help="write {auth_url, api_base, control_url} here")
        args = ap.parse_args(argv)

        login = fakelogin.FakeLogin()
        # Tokens from the fake's device login and refreshes all start with "at-".
        chat = MatchingKimiChat(accept=lambda t: bool(t) and t.startswith("at-")).start()
        control = _Server(("127.0.0.1", 0), control_handler(login, chat))
        threading.Thread(target=control.serve_forever, daemon=True).start()

        info = json.dumps({"auth_url": login.kimi_url, "api_base": chat.url,
                           "control_url": f"http://127.0.0.1:{control.server_address[1]}", "pid": os.getpid()})
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
                f.write(info + "\n")
        os.rename(tmp, args.ready_file)

        done = threading.Event()
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, lambda *_: done.set())
        while not done.wait(1):
                pass
        control.shutdown()
        control.server_close()
        chat.stop()
        login.close()
        return 0


if __name__ == "__main__":
        sys.exit(main())
