# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd against an HTTPS upstream: nghttpx (Debian's nghttp2-proxy) terminates TLS with a CA made
here and speaks HTTP/2 or HTTP/1.1 (ALPN) in front of the fake Kiro, which stays plain HTTP behind it.
Its access log tells, per upstream request, the protocol, the client port (one port = one upstream
connection) and whether the TLS session was resumed."""
import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from proxyd_fixture import CHAT_PATH, proxy_stack  # noqa: F401
from fakes.kiro_chat import build_frames

pytestmark = pytest.mark.skipif(not shutil.which("nghttpx") or not shutil.which("openssl"),
                                reason="needs nghttpx (nghttp2-proxy) and openssl")

MODEL = "claude-sonnet-4.5"


def chat(content, **kw):
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        body.update(kw)
        return body


def _free_port():
        with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]


def _make_ca(d):
        def run(*args):
                subprocess.run(["openssl", *args], check=True, capture_output=True)
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=kirod test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))
        (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                   "extendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "1", "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))
        (d / "ca.pem").chmod(0o644)


class Terminator:
        """nghttpx on 127.0.0.1:port in front of backend_url (http://127.0.0.1:PORT)."""

        def __init__(self, scratch, backend_url, port, alpn="h2,http/1.1", tls_max="TLSv1.3", cert_dir=None,
                     extra=()):
                self.dir = scratch
                cert_dir = cert_dir or scratch
                self.port = port
                self.access = scratch / f"nghttpx-{port}-access.log"
                self.errors = scratch / f"nghttpx-{port}.log"
                host, bport = backend_url.split("//", 1)[1].rstrip("/").split(":")
                self.p = subprocess.Popen(
                        ["nghttpx", "--conf=/dev/null", f"--frontend=127.0.0.1,{port}",
                         f"--backend={host},{bport}", "--workers=1", "--no-ocsp", f"--npn-list={alpn}",
                         f"--tls-max-proto-version={tls_max}", *extra,
                         f"--errorlog-file={self.errors}", f"--accesslog-file={self.access}",
                         "--accesslog-format=$alpn $remote_port $status $tls_session_reused",
                         str(cert_dir / "server.key"), str(cert_dir / "server.pem")],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 10
                while True:
                        try:
                                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                                break
                        except OSError:
                                assert time.monotonic() < deadline and self.p.poll() is None, \
                                        self.errors.read_text() if self.errors.exists() else "nghttpx did not start"
                                time.sleep(0.05)

        def entries(self, n=None, timeout=5.0):
                """The access log as (alpn, remote_port, status, resumed) tuples; waits for n of them."""
                deadline = time.monotonic() + timeout
                while True:
                        lines = self.access.read_text().splitlines() if self.access.exists() else []
                        if n is None or len(lines) >= n or time.monotonic() > deadline:
                                break
                        time.sleep(0.05)
                out = []
                for line in lines:
                        alpn, port, status, reused = line.split()
                        out.append((alpn, int(port), int(status), reused == "r"))
                return out

        def stop(self):
                self.p.terminate()
                try:
                        self.p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                        self.p.kill()
                        self.p.wait()


@pytest.fixture
def tls_stack(proxy_stack, scratch):  # noqa: F811
        """tls_stack(alpn="h2,http/1.1", **Kiro keys) → (stack, terminator): kiro-proxyd with
        Endpoints=https://127.0.0.1:PORT and CAFile= the test CA, nghttpx on PORT in front of the fake."""
        _make_ca(scratch)
        made = []

        def factory(alpn="h2,http/1.1", tls_max="TLSv1.3", extra=(), **kiro):
                port = _free_port()
                cfg = {"CAFile": str(scratch / "ca.pem")}
                cfg.update(kiro)
                s = proxy_stack(Kiro=cfg, endpoints=[f"https://127.0.0.1:{port}"], start=False)
                t = Terminator(scratch, s.chat.url, port, alpn, tls_max, extra=extra)
                made.append(t)
                s.proxyd.start()
                return s, t

        yield factory
        for t in made:
                t.stop()


def _text(r):
        return r.json()["choices"][0]["message"]["content"]


def _parallel(s, n, content="hi"):
        results = [None] * n

        def one(i):
                results[i] = s.post(CHAT_PATH, chat(f"{content} {i}"))
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for th in threads:
                th.start()
        for th in threads:
                th.join(30)
        return results


def test_http2_upstream_multiplexes_concurrent_requests(tls_stack):
        s, t = tls_stack()
        s.chat.set_default({"text": "pong", "first_frame_delay": 0.3})
        results = _parallel(s, 6)
        for r in results:
                assert r is not None and r.status == 200, r
                assert _text(r) == "pong"
        log = t.entries(6)
        assert len(log) == 6, log
        assert {e[0] for e in log} == {"h2"}, log
        assert {e[2] for e in log} == {200}, log
        # Six requests in flight at once went over one upstream connection (PIPEWAIT + multiplexing).
        assert len({e[1] for e in log}) == 1, log


def test_http2_cap_holds_overflow_streams(tls_stack):
        # Two streams per connection at most, one connection: once HTTP/2 was seen, the cap applies and
        # requests beyond the stream limit wait instead of opening connections of their own.
        s, t = tls_stack(MaxUpstreamConnections=1, extra=("--frontend-http2-max-concurrent-streams=2",))
        s.chat.set_default({"text": "pong", "first_frame_delay": 0.3})
        r = s.post(CHAT_PATH, chat("warm"))
        assert r.status == 200
        results = _parallel(s, 6)
        for r in results:
                assert r is not None and r.status == 200, r
                assert _text(r) == "pong"
        log = t.entries(7)
        assert len(log) == 7 and {e[0] for e in log} == {"h2"}, log
        assert len({e[1] for e in log}) == 1, log


def test_http_version_1_1_forced_and_capped(tls_stack):
        s, t = tls_stack(HTTPVersion="1.1", MaxUpstreamConnections=2)
        s.chat.set_default({"text": "pong", "first_frame_delay": 0.3})
        results = _parallel(s, 5)
        for r in results:
                assert r is not None and r.status == 200, r
                assert _text(r) == "pong"
        log = t.entries(5)
        assert len(log) == 5, log
        assert {e[0] for e in log} == {"http/1.1"}, log
        # HTTP/1.1 needs a connection per request in flight; the cap makes the rest wait for one.
        assert len({e[1] for e in log}) == 2, log


def test_http1_only_upstream_is_the_fallback(tls_stack):
        s, t = tls_stack(alpn="http/1.1")
        s.chat.set_default({"text": "pong"})
        r = s.post(CHAT_PATH, chat("hi"))
        assert r.status == 200 and _text(r) == "pong", r
        log = t.entries(1)
        assert [e[0] for e in log] == ["http/1.1"], log


def test_idle_connection_swept_then_reconnects(tls_stack):
        s, t = tls_stack(UpstreamIdleTimeoutSec=1)
        s.chat.set_default({"text": "pong"})
        r = s.post(CHAT_PATH, chat("one"))
        assert r.status == 200 and _text(r) == "pong", r
        r = s.post(CHAT_PATH, chat("two"))
        assert r.status == 200
        log = t.entries(2)
        # Kept alive between the two.
        assert log[0][1] == log[1][1], log
        assert not log[0][3], log
        # Idle for longer than the timeout: the connection is closed by the proxy ...
        port = log[0][1]
        deadline = time.monotonic() + 5
        while _established_from(port) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert not _established_from(port), "the idle upstream connection is still open"
        # ... and the next request opens a new one. (Its TLS session is not resumed, although the glue
        # shares sessions: libcurl-gnutls 7.88 turns session tickets off and reads the session before a
        # TLS 1.3 server sends one, so it resumes only TLS 1.2 sessions from a server-side cache, which
        # nghttpx does not keep; see docs.)
        r = s.post(CHAT_PATH, chat("three"))
        assert r.status == 200 and _text(r) == "pong", r
        log = t.entries(3)
        assert log[2][1] != port, log


def _established_from(port):
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        return bool(out.strip())


def _cut_inside_third_frame(texts):
        frames = build_frames({"text": texts})
        return len(frames[0]) + len(frames[1]) + 7


def test_stream_reset_mid_answer_is_an_error_event_and_connection_survives(tls_stack):
        s, t = tls_stack()
        texts = ["one ", "two ", "three "]
        # The fake cuts its HTTP/1.1 answer to nghttpx, which resets the HTTP/2 stream to the proxy.
        # (With a pause between frames, so that nghttpx forwards the first two before the reset.)
        s.chat.enqueue({"text": texts, "chunk_delay": 0.2, "cut_after_bytes": _cut_inside_third_frame(texts)})
        st = s.stream(CHAT_PATH, chat("count", stream=True))
        assert st.status == 200
        content = "".join(e.json["choices"][0]["delta"].get("content") or "" for e in st.events
                          if e.json and e.json.get("choices"))
        assert content == "one two ", st.raw
        last = st.events[-1]
        assert last.json and "error" in last.json and last.json["error"]["message"], st.raw
        assert not st.done, st.raw
        assert s.chat.count() == 1, "nothing is retried after the first byte"
        # The reset ended one stream, not the connection: the next request rides the same one.
        s.chat.set_default({"text": "after"})
        r = s.post(CHAT_PATH, chat("again"))
        assert r.status == 200 and _text(r) == "after", r
        log = t.entries(2)
        assert [e[0] for e in log] == ["h2", "h2"], log
        assert log[0][1] == log[1][1], log


def test_new_connection_does_not_scan_the_ca_directory(tls_stack, scratch):
        if not shutil.which("strace"):
                pytest.skip("needs strace")
        s, t = tls_stack()
        s.chat.set_default({"text": "pong"})
        trace = scratch / "openat.trace"
        st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace),
                               "-p", str(s.proxyd.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
                time.sleep(1)  # strace attached
                for i in range(2):
                        r = s.post(CHAT_PATH, chat(f"hi {i}"))
                        assert r.status == 200 and _text(r) == "pong", r
                        # A new terminator: the second request needs a new upstream connection.
                        t.stop()
                        t.__init__(scratch, s.chat.url, t.port)
        finally:
                st.terminate()
                st.wait(10)
        opened = trace.read_text()
        assert str(scratch / "ca.pem") in opened, opened[-2000:]
        assert "/etc/ssl/certs" not in opened, [ln for ln in opened.splitlines() if "/etc/ssl/certs" in ln][:5]


def _openat(trace):
        return [ln for ln in trace.read_text().splitlines() if "open" in ln]


def test_trust_subset_learned_then_used_and_widened(proxy_stack, scratch):  # noqa: F811
        """CAFile= holds many CAs (the system bundle and two test CAs): after a connection verified with
        the whole file, new connections are verified with the CA that issued the peer's chain only (a
        memfd); a peer from another CA of the file fails that, and the glue starts the transfer again
        with the whole file, transparently."""
        if not shutil.which("strace"):
                pytest.skip("needs strace")
        ca1, ca2 = scratch / "ca1", scratch / "ca2"
        for d in (ca1, ca2):
                d.mkdir()
                _make_ca(d)
        bundle = scratch / "bundle.pem"
        system = "/etc/ssl/certs/ca-certificates.crt"
        parts = [open(system).read()] if shutil.os.path.exists(system) else []
        bundle.write_text("".join(parts) + (ca1 / "ca.pem").read_text() + (ca2 / "ca.pem").read_text())
        bundle.chmod(0o644)
        port = _free_port()
        s = proxy_stack(Kiro={"CAFile": str(bundle), "UpstreamIdleTimeoutSec": 60},
                        endpoints=[f"https://127.0.0.1:{port}"], start=False)
        t = Terminator(scratch, s.chat.url, port, cert_dir=ca1)
        s.proxyd.start()
        trace = scratch / "trust.trace"
        st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace),
                               "-p", str(s.proxyd.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
                time.sleep(1)  # strace attached
                s.chat.set_default({"text": "pong"})

                def one(text, cert_dir):
                        nonlocal t
                        t.stop()        # a new terminator: a new upstream connection
                        t = Terminator(scratch, s.chat.url, port, cert_dir=cert_dir)
                        mark = len(_openat(trace))
                        r = s.post(CHAT_PATH, chat(text))
                        assert r.status == 200 and _text(r) == "pong", r
                        time.sleep(0.2)
                        return _openat(trace)[mark:]

                first = one("one", ca1)
                assert any(str(bundle) in ln for ln in first), first
                # CA 1 learned: the next connection loads the subset, not the bundle.
                second = one("two", ca1)
                assert any("/proc/self/fd/" in ln for ln in second), second
                assert not any(str(bundle) in ln for ln in second), second
                # A peer from CA 2: the subset fails, the whole file is loaded, the request succeeds once.
                third = one("three", ca2)
                assert any("/proc/self/fd/" in ln for ln in third), third
                assert any(str(bundle) in ln for ln in third), third
                # Both CAs in the subset now.
                fourth = one("four", ca2)
                assert not any(str(bundle) in ln for ln in fourth), fourth
                fifth = one("five", ca1)
                assert not any(str(bundle) in ln for ln in fifth), fifth
        finally:
                st.terminate()
                st.wait(10)
                t.stop()
        # Each client request reached the fake once: the retry with the whole file happened under the
        # HTTP request, before anything was sent.
        assert s.chat.count() == 5
        # No attempt failed on the trust subset. (A "Couldn't connect" while the terminator of the next step
        # is being replaced is the harness's race, retried as any refused connection is.)
        failed = [ln for ln in s.proxyd.log_text().splitlines() if "failed: transport" in ln]
        assert all("Couldn't connect" in ln for ln in failed), failed


# ---- kiro-authd: its refreshes go through the same glue ------------------------------------------

def test_authd_refreshes_over_https_without_ca_directory_scan(authd, fake_auth, kiroctl, scratch):
        import kiroide
        import kirodtest
        from kirodtest import TEST_ADMIN, wait_until
        home = kirodtest.user_dir(scratch, TEST_ADMIN, "home-admin")
        if not shutil.which("strace"):
                pytest.skip("needs strace")
        _make_ca(scratch)
        port = _free_port()
        t = Terminator(scratch, fake_auth.kiro_url, port)
        try:
                a = authd(endpoints={"KiroAuthURL": f"https://127.0.0.1:{port}", "CAFile": str(scratch / "ca.pem")})
                rt = "rt-authd-tls"
                lin = fake_auth.seed(rt)
                f = kiroide.write_social(home, refresh_token=rt, expires_at=time.time() + 7200, owner=TEST_ADMIN)
                kiroctl("import", "--from-kiro-ide", "--file", f.token_path, user=TEST_ADMIN)
                cid = json.loads(kiroctl("status", "--json").stdout)[0]["id"]
                trace = scratch / "authd-openat.trace"
                st = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=open,openat", "-o", str(trace),
                                       "-p", str(a.proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                        time.sleep(1)  # strace attached
                        kiroctl("refresh", cid)
                        kiroctl("refresh", cid)
                finally:
                        st.terminate()
                        st.wait(10)
                wait_until(lambda: fake_auth.rotations(lin) >= 2, timeout=10, what="two refreshes")
                log = t.entries(2)
                assert [e[0] for e in log] == ["h2", "h2"], log
                assert {e[2] for e in log} == {200}, log
                # Two refreshes in a row: one connection, kept alive between them.
                assert log[0][1] == log[1][1], log
                opened = trace.read_text()
                assert str(scratch / "ca.pem") in opened, opened[-2000:]
                assert "/etc/ssl/certs" not in opened, \
                        [ln for ln in opened.splitlines() if "/etc/ssl/certs" in ln][:5]
        finally:
                t.stop()
