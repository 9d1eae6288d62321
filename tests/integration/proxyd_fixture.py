# SPDX-License-Identifier: LGPL-2.1-or-later
"""The kiro-proxyd test stack: the real kiro-authd (as kiro-auth) on the private system bus with the real
policy, one Kiro credential imported into it, the fake Kiro chat service (fakes/kiro_chat.py) in this
process, and the real kiro-proxyd (as kiro-proxy) listening on 127.0.0.1:<port> and on a unix socket.

    def test_x(proxy_stack):
            s = proxy_stack(Proxy={"MaxBodyBytes": 1000}, Kiro={"MaxAttempts": 2}, api_keys=["k"])
            s.chat.enqueue({"text": ["Hel", "lo"]})
            r = s.post("/v1/chat/completions", {...})              # Response: status, headers, body, json
            ev = s.stream("/v1/chat/completions", {...})           # Stream: events, done, raw
            s.chat.last().body                                      # what the fake received

Tokens. The credential is a Kiro IDE social login (kiro-ide-json) with a known access token, seeded in
fake_auth as a rotating lineage, so kiro-authd can refresh it. The chat fake accepts exactly the newest
access token fake_auth issued for that lineage (LiveTokens): once kiro-authd refreshes, the old token
is rejected with 403 like a superseded token would be. `s.expire_token()` makes the fake reject the
current token early (Kiro invalidated it server-side), which is what drives 403 → refresh → retry.

kiro-proxyd must exit 0 on SIGTERM at teardown (a sanitizer report or crash fails the test); its stderr
(--log-level=debug) is attached to a failing test's report. ASAN_OPTIONS and friends pass through."""

import http.client
import json
import os
import pwd
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import kirodtest
from kirodtest import PROXY_USER, as_user, base_env, tail, wait_until

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))

from fakes.kiro_chat import FakeKiroChat  # noqa: E402

PROXYD_BIN = kirodtest.BUILD_DIR / "kiro-proxyd" / "kiro-proxyd"
PROFILE_ARN = "arn:aws:codewhisperer:us-east-1:123456789012:profile/KIRODTEST01"
CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"

# Settings that keep the tests fast; a test overrides any of them.
DEFAULT_PROXY_CONFIG = {
        "FirstTokenTimeoutSec": 20,
}
DEFAULT_KIRO_CONFIG = {
        "MaxAttempts": 3,
        "RetryBackoffSec": 0.05,
}

needs_proxyd = pytest.mark.skipif(not PROXYD_BIN.exists() or not kirodtest.AUTHD_BIN.exists(),
                                  reason=f"needs {PROXYD_BIN} and {kirodtest.AUTHD_BIN} (build first)")


# ---- tokens the fake chat service accepts ---------------------------------------------------------

class LiveTokens:
        """Stands in for FakeKiroChat.tokens (it only uses `in` and add/discard): a bearer token is
        accepted while it is the newest access token fake_auth issued for the lineage, or was added
        explicitly; expire() rejects a token before it is superseded."""

        def __init__(self, fake_auth, lineage):
                self.fake_auth = fake_auth
                self.lineage = lineage
                self.extra = set()
                self.expired = set()
                self.lock = threading.Lock()

        def __contains__(self, token):
                if token is None:
                        return False
                with self.lock:
                        if token in self.expired:
                                return False
                        if token in self.extra:
                                return True
                return token == self.fake_auth.latest_access_token(self.lineage)

        def add(self, token):
                with self.lock:
                        self.extra.add(token)
                        self.expired.discard(token)

        def discard(self, token):
                with self.lock:
                        self.extra.discard(token)

        def expire(self, token):
                with self.lock:
                        self.expired.add(token)
                        self.extra.discard(token)


# ---- HTTP client ----------------------------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, path, timeout=30):
                super().__init__("localhost", timeout=timeout)
                self.unix_path = str(path)

        def connect(self):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(self.timeout)
                s.connect(self.unix_path)
                self.sock = s


class Response:
        def __init__(self, status, headers, body):
                self.status = status
                self.headers = headers          # {lower-case name: value}
                self.body = body

        def json(self):
                try:
                        return json.loads(self.body)
                except ValueError:
                        raise AssertionError(f"HTTP {self.status} body is not JSON: {self.body[:500]!r}")

        def __repr__(self):
                return f"<Response {self.status} {self.body[:300]!r}>"


class Event:
        """One server-sent event: name (event: line, or None), data (str), json (parsed or None), t
        (monotonic arrival time)."""

        def __init__(self, name, data, t):
                self.name = name
                self.data = data
                self.t = t
                try:
                        self.json = json.loads(data) if data not in (None, "", "[DONE]") else None
                except ValueError:
                        self.json = None

        def __repr__(self):
                return f"<Event {self.name} {self.data[:200]!r}>"


class Stream:
        def __init__(self, status, headers, events, raw, complete, body=b""):
                self.status = status
                self.headers = headers
                self.events = events            # [Event]
                self.raw = raw                  # the whole body as text
                self.complete = complete        # the chunked body ended with its terminating chunk
                self.body = body

        def data(self):
                """The parsed JSON data of every event (non-JSON data such as [DONE] left out)."""
                return [e.json for e in self.events if e.json is not None]

        def names(self):
                return [e.name for e in self.events]

        @property
        def done(self):
                return any(e.data == "[DONE]" for e in self.events)

        def json(self):
                return json.loads(self.body)


def _headers(resp):
        return {k.lower(): v for k, v in resp.getheaders()}


def parse_sse(text, times=None):
        events = []
        for i, block in enumerate(text.replace("\r\n", "\n").split("\n\n")):
                if not block.strip():
                        continue
                name, data = None, []
                for line in block.split("\n"):
                        if line.startswith(":"):
                                continue
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        if k == "event":
                                name = v
                        elif k == "data":
                                data.append(v)
                events.append(Event(name, "\n".join(data), times[i] if times and i < len(times) else None))
        return events


# ---- kiro-proxyd ----------------------------------------------------------------------------------

class Proxyd(kirodtest.Daemon):
        """One kiro-proxyd process as kiro-proxy, with its config, notify socket and log."""

        what = "kiro-proxyd"

        _seq = 0

        def __init__(self, bus_address, directory, *, endpoints, proxy=None, kiro=None, api_keys=None,
                     extra_config="", nofile=None):
                Proxyd._seq += 1
                self._daemon_init(directory, f"proxyd{Proxyd._seq}")
                self.bus_address = bus_address
                self.nofile = nofile
                self.port = None

                pw = pwd.getpwnam(PROXY_USER)
                self.run_dir = self.dir / f"{self.name}-run"
                self.run_dir.mkdir(mode=0o755)
                os.chown(self.run_dir, pw.pw_uid, pw.pw_gid)
                self.unix_path = self.run_dir / "http.sock"

                cfg_proxy = dict(DEFAULT_PROXY_CONFIG)
                cfg_proxy.update(proxy or {})
                cfg_kiro = dict(DEFAULT_KIRO_CONFIG)
                cfg_kiro["Endpoints"] = " ".join(endpoints)
                cfg_kiro.update(kiro or {})
                if api_keys is not None:
                        keys = self.dir / f"{self.name}-api-keys"
                        keys.write_text("# client keys\n" + "".join(k + "\n" for k in api_keys))
                        os.chown(keys, pw.pw_uid, pw.pw_gid)
                        os.chmod(keys, 0o600)
                        cfg_proxy["APIKeysFile"] = str(keys)
                lines = ["# written by tests/integration (proxyd_fixture.Proxyd)", "[Proxy]"]
                lines += [f"{k}={v}" for k, v in cfg_proxy.items()]
                lines += ["", "[Kiro]"]
                lines += [f"{k}={v}" for k, v in cfg_kiro.items()]
                self.config_path = self.dir / f"{self.name}.conf"
                self.config_path.write_text("\n".join(lines) + "\n" + extra_config)
                os.chmod(self.config_path, 0o644)

        def command(self):
                return as_user(PROXY_USER, clear_groups=True) + [
                        str(PROXYD_BIN), f"--config={self.config_path}", "--listen=127.0.0.1:0",
                        f"--listen=unix:{self.unix_path}", "--log-level=debug"]

        def _preexec(self):
                if self.nofile is not None:
                        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                        resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.nofile, hard), hard))

        def start(self, ready_timeout=15.0):
                assert not self.running()
                self._spawn(dict(DBUS_SYSTEM_BUS_ADDRESS=self.bus_address), preexec_fn=self._preexec)
                self._wait_notify_ready(ready_timeout)
                self.port = wait_until(self._bound_port, timeout=5, what="the bound TCP port in the log")
                return self

        def _bound_port(self):
                for line in reversed(tail(self.log_path, 10**6).splitlines()):
                        if line.startswith("Bound TCP port ") or "Bound TCP port " in line:
                                return int(line.rsplit("Bound TCP port ", 1)[1].rstrip('.}" \n'))
                return None

        def log_text(self):
                return tail(self.log_path, 10**8)

        def open_fds(self):
                return len(os.listdir(f"/proc/{self.pid}/fd"))

        def nofile_limit(self):
                """(soft, hard) RLIMIT_NOFILE of the running process."""
                for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
                        if line.startswith("Max open files"):
                                f = line.split()
                                return int(f[3]), int(f[4])
                raise AssertionError("no 'Max open files' in /proc/PID/limits")


# ---- the whole stack ------------------------------------------------------------------------------

def import_credential(bus_address, cred_id, access_token, refresh_token):
        """Imports a Kiro IDE social login (access token valid for two hours) over D-Bus, as root."""
        import dbusmini
        tok = {"accessToken": access_token, "refreshToken": refresh_token, "profileArn": PROFILE_ARN,
               "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 7200)),
               "authMethod": "social", "provider": "Github"}
        fd = kirodtest.sealed_memfd(json.dumps(tok).encode())
        try:
                return kirodtest.bus_call(bus_address, "Import", "sha{sv}t",
                                          ["kiro-ide-json", fd, {"id": dbusmini.Variant("s", cred_id)}, 0])[0]
        finally:
                os.close(fd)


class Stack:
        def __init__(self, fake_auth, chat, authd, proxyd, lineage, cred_id, extra_chats=()):
                self.fake_auth = fake_auth
                self.chat = chat
                self.extra_chats = list(extra_chats)
                self.authd = authd
                self.proxyd = proxyd
                self.lineage = lineage
                self.cred_id = cred_id
                self.tokens = chat.tokens

        @property
        def port(self):
                return self.proxyd.port

        @property
        def url(self):
                return f"http://127.0.0.1:{self.proxyd.port}"

        @property
        def unix_path(self):
                return self.proxyd.unix_path

        def access_token(self):
                return self.fake_auth.latest_access_token(self.lineage)

        def expire_token(self, token=None):
                """The fake rejects the current access token from now on (403, bearer token invalid)."""
                t = token or self.access_token()
                for c in [self.chat] + self.extra_chats:
                        c.tokens.expire(t)
                return t

        def connection(self, timeout=30, unix=False):
                if unix:
                        return UnixHTTPConnection(self.unix_path, timeout=timeout)
                return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

        def request(self, method, path, body=None, headers=None, timeout=30, unix=False):
                """One request on a fresh connection. body: bytes, str, or an object sent as JSON."""
                h = {}
                if body is not None and not isinstance(body, (bytes, str)):
                        body = json.dumps(body)
                        h["Content-Type"] = "application/json"
                if isinstance(body, str):
                        body = body.encode()
                h.update(headers or {})
                c = self.connection(timeout=timeout, unix=unix)
                try:
                        try:
                                c.request(method, path, body=body, headers=h)
                                resp = c.getresponse()
                        except (BrokenPipeError, ConnectionResetError):
                                # Refused from the headers (before the body was read) and closed while
                                # http.client was still sending the body: the answer is already here.
                                if c.sock is None:
                                        raise
                                resp = http.client.HTTPResponse(c.sock, method=method)
                                resp.begin()
                        data = resp.read()
                        return Response(resp.status, _headers(resp), data)
                finally:
                        c.close()

        def post(self, path, obj, headers=None, **kw):
                return self.request("POST", path, obj, headers, **kw)

        def get(self, path, headers=None, **kw):
                return self.request("GET", path, None, headers, **kw)

        def stream(self, path, obj, headers=None, timeout=30, unix=False):
                """POSTs obj and reads the whole response, recording when each SSE event arrived."""
                body = json.dumps(obj).encode() if not isinstance(obj, (bytes, str)) else obj
                if isinstance(body, str):
                        body = body.encode()
                h = {"Content-Type": "application/json"}
                h.update(headers or {})
                c = self.connection(timeout=timeout, unix=unix)
                try:
                        c.request("POST", path, body=body, headers=h)
                        resp = c.getresponse()
                        hdrs = _headers(resp)
                        if resp.status != 200 or not hdrs.get("content-type", "").startswith("text/event-stream"):
                                return Stream(resp.status, hdrs, [], "", True, resp.read())
                        buf = b""
                        times = []
                        complete = True
                        while True:
                                try:
                                        chunk = resp.read1(65536)
                                except http.client.IncompleteRead as e:
                                        buf += e.partial
                                        complete = False
                                        break
                                except (ConnectionError, OSError):
                                        complete = False
                                        break
                                if not chunk:
                                        break
                                now = time.monotonic()
                                before = buf.count(b"\n\n")
                                buf += chunk
                                times += [now] * (buf.count(b"\n\n") - before)
                        text = buf.decode()
                        return Stream(resp.status, hdrs, parse_sse(text, times), text, complete, buf)
                finally:
                        c.close()


@pytest.fixture
def proxy_stack(bus_daemon, fake_auth, authd, scratch, request):
        """Factory: proxy_stack(Proxy={...}, Kiro={...}, api_keys=None, n_endpoints=1, endpoints=None,
        nofile=None, extra_config="", Auth={...} for kiro-authd) → Stack. Endpoints default to the chat fake; n_endpoints=2 adds
        a second fake (s.extra_chats[0]) after the first."""
        if not PROXYD_BIN.exists():
                pytest.skip(f"{PROXYD_BIN} is not built")
        proxies, chats = [], []

        def factory(*, Proxy=None, Kiro=None, api_keys=None, n_endpoints=1, endpoints=None, nofile=None,
                    extra_config="", start=True, Auth=None):
                a = authd(**(Auth or {}))
                at = f"at-proxytest-{len(proxies)}-{os.urandom(4).hex()}"
                rt = f"rt-proxytest-{len(proxies)}-{os.urandom(4).hex()}"
                lineage = fake_auth.seed(rt, access_token=at, profile_arn=PROFILE_ARN)
                cred_id = "proxytest"
                import_credential(bus_daemon.address, cred_id, at, rt)
                made = []
                for _ in range(n_endpoints):
                        c = FakeKiroChat(tokens=()).start()
                        c.tokens = LiveTokens(fake_auth, lineage)
                        chats.append(c)
                        made.append(c)
                p = Proxyd(bus_daemon.address, scratch, endpoints=endpoints or [c.url for c in made], proxy=Proxy,
                           kiro=Kiro, api_keys=api_keys, extra_config=extra_config, nofile=nofile)
                proxies.append(p)
                node = request.node
                if not hasattr(node, "_kirod_logs"):
                        node._kirod_logs = []
                node._kirod_logs.append((f"{p.name} log (kiro-proxyd stderr)", p.log_path))
                if start:
                        p.start()
                return Stack(fake_auth, made[0], a, p, lineage, cred_id, made[1:])

        yield factory
        problems = []
        for p in proxies:
                problems += [f"{p.name}: {x}" for x in p.teardown()]
        for c in chats:
                c.stop()
        if problems:
                pytest.fail("kiro-proxyd did not exit cleanly (sanitizer report or crash?):\n" + "\n".join(problems) +
                            "\n" + "\n".join(kirodtest.tail(p.log_path, 8000) for p in proxies if p.exit_problems))


@pytest.fixture
def stack(proxy_stack):
        """The default stack (no API keys, one endpoint)."""
        return proxy_stack()


# ---- small helpers shared by the test files --------------------------------------------------------

def user_text(chat_request):
        """currentMessage content of a recorded fake request."""
        return (chat_request.current or {}).get("content")


def history_roles(chat_request):
        return ["user" if "userInputMessage" in h else "assistant" for h in chat_request.history]


def nonce(prefix="n"):
        return f"{prefix}-{os.urandom(6).hex()}"
