# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fake Kiro social auth service and AWS SSO OIDC token endpoint, on loopback, in threads.

Wire formats are KIRO-PROTOCOL.md B §2.1 (Kiro `POST /refreshToken`) and §2.2 (OIDC `POST /token`,
camelCase JSON), errors as §2.3 (`{"error": ..., "error_description": ...}`, HTTP 400).

Both servers ROTATE refresh tokens: a successful refresh consumes the presented token and issues a
new, unique refresh token and a new access token. Tokens belong to a *lineage* (one login), seeded
by the test with `seed()`.

Reuse grace (`reuse_grace`, on by default), the model real OAuth servers with rotation use: if a
client presents the token immediately before the newest one of its lineage, and the newest one has
not been presented yet, the server replays its last answer (same refresh and access token) instead
of failing. That is what lets a client that crashed after the server rotated but before it wrote
the new token to disk recover: it presents the old token again and gets the new one. Anything older,
or the previous token once the newest has been used, is `invalid_grant`. With the grace off
(`FakeAuth(reuse_grace=False)`, the strict single-use mode), every reuse is `invalid_grant`: a
rotated token the client never stored is a lost login.

The server rotates on receipt (as real ones do: the new token is committed before the answer is
written) and can be made to take its time between the two with `answer_delay` (seconds or a callable
returning seconds). Each Request records `arrived` (the request was read) and `answered` (the whole
answer was written to the socket, or the write failed), both `time.monotonic()` (CLOCK_MONOTONIC,
comparable with kiro-authd's debug timestamps); `answered` is None while the answer is pending.
`rewind(lineage, token)` makes an issued token the newest again (a test's way of starting over
after a lost login).

Tests script failures with `script([...])`: one action is consumed per request, in order, before
the normal handling:
    {"status": 500}                      -> HTTP 500 (body {"message": "internal error"})
    {"status": 429, "retry_after": 1}    -> HTTP 429 with Retry-After
    {"error": "invalid_grant"}           -> HTTP 400 {"error": "invalid_grant", ...}
    {"status": 400, "error": "slow_down"}-> HTTP 400 {"error": "slow_down", ...}
    {"delay": 0.3}                       -> sleep, then handle normally
    {"hang": 5}                          -> sleep, then close the connection without answering
    {"status": 500, "pad": 2 << 20}      -> the scripted answer with its message padded to that many bytes
    hold_next() queues a Gate: the request waits (gate.arrived is set) until gate.release(), then is
    handled normally, against the lineage state of that moment (a revoke() meanwhile applies).
A scripted error does not touch the lineage: the presented token stays valid.
"""

import dataclasses
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
        # The default listen backlog of 5 resets connections when tests fire dozens at once.
        request_queue_size = 1024
        daemon_threads = True

ERROR_TEXT = {
        "invalid_grant": "Invalid refresh token provided",
        "invalid_client": "Invalid client provided",
        "invalid_request": "Invalid request",
        "slow_down": "Slow down",
        "unsupported_grant_type": "Unsupported grant type",
}


@dataclasses.dataclass
class Request:
        time: float
        server: str              # "kiro" or "oidc"
        path: str
        token: str | None        # the refresh token presented, if any
        status: int
        lineage: str | None
        content_type: str
        body: dict | None
        outcome: str             # "rotated", "replayed", "scripted", or the OAuth error code
        arrived: float | None = None     # time.monotonic() when the request had been read
        answered: float | None = None    # time.monotonic() when the answer had been written (or failed)
        answer_ok: bool = False          # the whole answer was written without an error


@dataclasses.dataclass
class Lineage:
        name: str
        kind: str                # "social" or "oidc"
        tokens: list             # every refresh token issued, oldest first
        access_tokens: list      # every access token issued
        client_id: str | None
        client_secret: str | None
        profile_arn: str | None
        expires_in: int | None
        revoked: bool = False
        last_response: dict | None = None
        # indexes into tokens of the tokens that have been presented and rotated away
        used: set = dataclasses.field(default_factory=set)


class Gate:
        """A request held by hold_next(): `arrived` is set when it reaches the server, which answers only
        after release() (or after `timeout` seconds)."""

        def __init__(self, timeout):
                self.arrived = threading.Event()
                self.released = threading.Event()
                self.timeout = timeout

        def release(self):
                self.released.set()


class FakeAuth:
        """Both fake servers plus the shared token state. Thread-safe."""

        def __init__(self, expires_in=3600, reuse_grace=True):
                self.lock = threading.RLock()
                self.expires_in = expires_in
                self.reuse_grace = reuse_grace
                self.delay = 0.0           # seconds, or a callable returning seconds, per request
                self.answer_delay = 0.0    # the same, between rotating and writing the answer
                self.requests = []
                self._script = []
                self._lineages = {}
                self._token_index = {}     # refresh token -> (lineage name, index)
                self._clients = {}         # client id -> secret
                self._servers = []
                self._connections = 0      # client connections being served (both servers)
                self._threads = []
                self.kiro_url = self._start("kiro")
                self.oidc_url = self._start("oidc")

        # ---- test API -------------------------------------------------------------------------

        def seed(self, refresh_token, kind="social", *, lineage=None, client_id=None, client_secret=None,
                 profile_arn=None, expires_in=None, access_token=None):
                """Registers refresh_token as the newest token of a new lineage; returns its name
                (default: the token itself). OIDC lineages need client_id and client_secret."""
                assert kind in ("social", "oidc"), kind
                if kind == "oidc":
                        assert client_id and client_secret, "an oidc lineage needs a client"
                name = lineage or refresh_token
                with self.lock:
                        assert name not in self._lineages, f"lineage {name!r} seeded twice"
                        assert refresh_token not in self._token_index, "token already known"
                        lin = Lineage(name, kind, [refresh_token], [access_token] if access_token else [],
                                      client_id, client_secret, profile_arn, expires_in)
                        self._lineages[name] = lin
                        self._token_index[refresh_token] = (name, 0)
                        if client_id:
                                self._clients[client_id] = client_secret
                return name

        def script(self, actions):
                """Queues scripted actions (see the module docstring); one is consumed per request."""
                with self.lock:
                        self._script.extend(dict(a) for a in actions)

        def hold_next(self, timeout=30.0):
                """Holds the next request until the returned Gate is released (see the docstring)."""
                gate = Gate(timeout)
                self.script([{"hold": gate}])
                return gate

        def clear_script(self):
                with self.lock:
                        self._script.clear()

        def revoke(self, lineage):
                """Every token of the lineage answers invalid_grant from now on."""
                with self.lock:
                        self._lineages[lineage].revoked = True

        def rewind(self, lineage, token):
                """Makes token (issued in lineage) its newest again, forgetting the ones issued after it."""
                with self.lock:
                        lin = self._lineages[lineage]
                        idx = lin.tokens.index(token)
                        for t in lin.tokens[idx + 1:]:
                                del self._token_index[t]
                        del lin.tokens[idx + 1:]
                        del lin.access_tokens[idx + 1:]
                        lin.used = {i for i in lin.used if i < idx}

        def pending(self):
                """Requests whose answer is still being prepared or written."""
                with self.lock:
                        return [r for r in self.requests if r.arrived is not None and r.answered is None]

        def open_connections(self):
                """Client connections still being served: after a client dies, 0 once every request it
                sent has been read, handled and answered."""
                with self.lock:
                        return self._connections

        def latest_refresh_token(self, lineage):
                with self.lock:
                        return self._lineages[lineage].tokens[-1]

        def latest_access_token(self, lineage):
                with self.lock:
                        a = self._lineages[lineage].access_tokens
                        return a[-1] if a else None

        def issued_refresh_tokens(self, lineage):
                with self.lock:
                        return list(self._lineages[lineage].tokens)

        def rotations(self, lineage):
                """How many times the lineage rotated (fresh tokens issued, replays not counted)."""
                with self.lock:
                        return len(self._lineages[lineage].tokens) - 1

        def count(self, path=None, *, lineage=None, outcome=None):
                with self.lock:
                        return sum(1 for r in self.requests
                                   if (path is None or r.path == path)
                                   and (lineage is None or r.lineage == lineage)
                                   and (outcome is None or r.outcome == outcome))

        def requests_for(self, lineage=None, path=None):
                with self.lock:
                        return [r for r in self.requests
                                if (lineage is None or r.lineage == lineage) and (path is None or r.path == path)]

        def wait_for(self, predicate, timeout=10.0, interval=0.05):
                """Polls predicate() (called with no lock held) until true or timeout; returns its value."""
                deadline = time.monotonic() + timeout
                while True:
                        v = predicate()
                        if v or time.monotonic() >= deadline:
                                return v
                        time.sleep(interval)

        def close(self):
                for s in self._servers:
                        s.shutdown()
                        s.server_close()
                for t in self._threads:
                        t.join(timeout=5)

        # ---- servers --------------------------------------------------------------------------

        def _start(self, which):
                fake = self

                class Handler(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def log_message(self, *args):
                                pass

                        def setup(self):
                                with fake.lock:
                                        fake._connections += 1
                                super().setup()

                        def finish(self):
                                try:
                                        super().finish()
                                finally:
                                        with fake.lock:
                                                fake._connections -= 1

                        def do_POST(self):
                                fake._handle(which, self)

                        def do_GET(self):
                                self._plain(405)

                        def _plain(self, status):
                                self.send_response(status)
                                self.send_header("Content-Length", "0")
                                self.end_headers()

                srv = _Server(("127.0.0.1", 0), Handler)
                srv.daemon_threads = True
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name=f"fake-{which}",
                                     daemon=True)
                t.start()
                self._servers.append(srv)
                self._threads.append(t)
                return f"http://127.0.0.1:{srv.server_address[1]}"

        def _handle(self, which, h):
                length = int(h.headers.get("Content-Length") or 0)
                raw = h.rfile.read(length) if length > 0 else b""
                arrived = time.monotonic()
                ctype = h.headers.get("Content-Type", "")
                try:
                        body = json.loads(raw) if raw else None
                except ValueError:
                        body = None
                token = body.get("refreshToken") if isinstance(body, dict) else None
                if not isinstance(token, str):
                        token = None

                delay = self.delay() if callable(self.delay) else self.delay
                if delay:
                        time.sleep(delay)

                with self.lock:
                        action = self._script.pop(0) if self._script else None
                if action and "hold" in action:
                        action["hold"].arrived.set()
                        action["hold"].released.wait(action["hold"].timeout)
                        action = None
                if action and "delay" in action:
                        time.sleep(action["delay"])
                        action = None
                if action and "hang" in action:
                        time.sleep(action["hang"])
                        self._log(which, h.path, token, 0, None, ctype, body, "scripted")
                        h.close_connection = True
                        return
                if action:
                        status = action.get("status", 400)
                        headers = {}
                        if "retry_after" in action:
                                headers["Retry-After"] = str(action["retry_after"])
                        if "error" in action:
                                payload = {"error": action["error"],
                                           "error_description": ERROR_TEXT.get(action["error"], action["error"])}
                        else:
                                payload = {"message": "scripted failure"}
                        if "pad" in action:
                                payload["message"] = "x" * action["pad"]
                        self._log(which, h.path, token, status, None, ctype, body, "scripted")
                        return self._send(h, status, payload, headers)

                expected = "/refreshToken" if which == "kiro" else "/token"
                if h.path != expected:
                        self._log(which, h.path, token, 404, None, ctype, body, "not-found")
                        return self._send(h, 404, {"message": "not found"})
                if not ctype.split(";")[0].strip().lower() == "application/json" or not isinstance(body, dict):
                        return self._oauth_error(h, which, token, None, ctype, body, "invalid_request")
                if which == "oidc":
                        if body.get("grantType") != "refresh_token" or token is None:
                                return self._oauth_error(h, which, token, None, ctype, body, "invalid_request")
                        cid, secret = body.get("clientId"), body.get("clientSecret")
                        with self.lock:
                                known = cid in self._clients and self._clients[cid] == secret
                        if not known:
                                return self._oauth_error(h, which, token, None, ctype, body, "invalid_client")
                elif token is None:
                        return self._oauth_error(h, which, token, None, ctype, body, "invalid_request")

                with self.lock:
                        status, payload, lineage, outcome = self._rotate(which, token, body)
                req = self._log(which, h.path, token, status, lineage, ctype, body, outcome)
                req.arrived = arrived
                delay = self.answer_delay() if callable(self.answer_delay) else self.answer_delay
                if delay:
                        time.sleep(delay)
                ok = self._send(h, status, payload)
                with self.lock:
                        req.answered = time.monotonic()
                        req.answer_ok = ok

        def _rotate(self, which, token, body):
                """Called with the lock held. Returns (status, payload, lineage name, outcome)."""
                found = self._token_index.get(token)
                if not found:
                        return 400, self._error_payload("invalid_grant"), None, "invalid_grant"
                name, idx = found
                lin = self._lineages[name]
                if lin.revoked or lin.kind != ("social" if which == "kiro" else "oidc"):
                        return 400, self._error_payload("invalid_grant"), name, "invalid_grant"
                if which == "oidc" and body.get("clientId") != lin.client_id:
                        return 400, self._error_payload("invalid_grant"), name, "invalid_grant"
                newest = len(lin.tokens) - 1
                if idx == newest:
                        lin.used.add(idx)
                        n = len(lin.tokens)
                        new_rt = f"rt-{name}-{n}-{secrets.token_hex(8)}"
                        new_at = f"at-{name}-{n}-{secrets.token_hex(8)}"
                        lin.tokens.append(new_rt)
                        lin.access_tokens.append(new_at)
                        self._token_index[new_rt] = (name, n)
                        expires_in = lin.expires_in if lin.expires_in is not None else self.expires_in
                        if which == "kiro":
                                payload = {"accessToken": new_at, "refreshToken": new_rt, "expiresIn": expires_in}
                                if lin.profile_arn:
                                        payload["profileArn"] = lin.profile_arn
                        else:
                                payload = {"accessToken": new_at, "tokenType": "Bearer",
                                           "expiresIn": expires_in, "refreshToken": new_rt}
                        lin.last_response = payload
                        return 200, payload, name, "rotated"
                if self.reuse_grace and idx == newest - 1 and newest not in lin.used:
                        return 200, dict(lin.last_response), name, "replayed"
                return 400, self._error_payload("invalid_grant"), name, "invalid_grant"

        @staticmethod
        def _error_payload(code):
                return {"error": code, "error_description": ERROR_TEXT.get(code, code)}

        def _oauth_error(self, h, which, token, lineage, ctype, body, code):
                self._log(which, h.path, token, 400, lineage, ctype, body, code)
                self._send(h, 400, self._error_payload(code))

        def _log(self, which, path, token, status, lineage, ctype, body, outcome):
                req = Request(time.time(), which, path, token, status, lineage, ctype, body, outcome)
                with self.lock:
                        self.requests.append(req)
                return req

        @staticmethod
        def _send(h, status, payload, headers=None):
                data = json.dumps(payload).encode()
                try:
                        h.send_response(status)
                        h.send_header("Content-Type", "application/json")
                        h.send_header("Content-Length", str(len(data)))
                        for k, v in (headers or {}).items():
                                h.send_header(k, v)
                        # The whole answer in one segment: written in two, the body would wait in the
                        # kernel for the client's delayed ACK (Nagle), and "answered" would be ~40 ms early.
                        h.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        h._headers_buffer.append(b"\r\n" + data)
                        h.flush_headers()
                        return True
                except (BrokenPipeError, ConnectionResetError):
                        return False   # the client went away (e.g. kiro-authd was killed mid-request)
