# SPDX-License-Identifier: LGPL-2.1-or-later
"""[Network] Proxy= and NoProxy= of kiro-proxyd and kiro-authd against real proxies from Debian on loopback:
tinyproxy (HTTP CONNECT, with basic auth) in front of the HTTPS fake Kiro (nghttpx), microsocks (SOCKS5,
socks5h://, with a user and password); the proxy environment variables are ignored unless Proxy=env."""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import kirodtest
from kirodtest import CREDENTIAL_IFACE, wait_until
from proxyd_fixture import CHAT_PATH, PROFILE_ARN, import_credential, needs_proxyd, proxy_stack  # noqa: F401
from test_proxyd_upstream_tls import Terminator, _free_port, _make_ca
from test_authd import cred_path

pytestmark = [needs_proxyd,
              pytest.mark.skipif(not shutil.which("tinyproxy") or not shutil.which("microsocks") or
                                 not shutil.which("nghttpx") or not shutil.which("openssl"),
                                 reason="needs tinyproxy, microsocks, nghttpx (nghttp2-proxy) and openssl")]

PASSWORD = "pr0xy-secret-" + os.urandom(4).hex()


def chat(text="hi", stream=False):
        return {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": text}], "stream": stream}


def _wait_port(port, p, what):
        import socket
        deadline = time.monotonic() + 10
        while True:
                try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        return
                except OSError:
                        assert time.monotonic() < deadline and p.poll() is None, f"{what} did not start"
                        time.sleep(0.05)


class Tinyproxy:
        """tinyproxy on 127.0.0.1:port (foreground), basic auth user:PASSWORD, CONNECT to any port, its log
        in scratch."""

        def __init__(self, scratch, auth=True):
                self.port = _free_port()
                self.log = scratch / f"tinyproxy-{self.port}.log"
                self.log.touch()
                os.chmod(self.log, 0o666)
                conf = scratch / f"tinyproxy-{self.port}.conf"
                conf.write_text(f"User nobody\nGroup nogroup\nPort {self.port}\nListen 127.0.0.1\nTimeout 60\n"
                                f"LogFile \"{self.log}\"\nLogLevel Connect\nMaxClients 50\nAllow 127.0.0.1\n"
                                + (f"BasicAuth kirod {PASSWORD}\n" if auth else ""))
                self.p = subprocess.Popen(["tinyproxy", "-d", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _wait_port(self.port, self.p, "tinyproxy")

        def text(self):
                return self.log.read_text(errors="replace")

        def stop(self):
                self.p.terminate()
                self.p.wait(10)


class Microsocks:
        def __init__(self, port=None):
                self.port = port or _free_port()
                self.p = subprocess.Popen(["microsocks", "-i", "127.0.0.1", "-p", str(self.port), "-u", "kirod",
                                           "-P", PASSWORD], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                _wait_port(self.port, self.p, "microsocks")

        def stop(self):
                self.p.send_signal(signal.SIGTERM)
                try:
                        self.p.wait(5)
                except subprocess.TimeoutExpired:
                        self.p.kill()
                        self.p.wait()


@pytest.fixture
def proxies():
        made = []
        yield made
        for p in made:
                p.stop()


def _connections_to(pid, port):
        """Established TCP connections of process pid to 127.0.0.1:port."""
        out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
                             capture_output=True, text=True).stdout
        return [ln for ln in out.splitlines() if f"pid={pid}," in ln]


def test_proxyd_https_upstream_through_tinyproxy_connect(proxy_stack, scratch, proxies):
        _make_ca(scratch)
        tp = Tinyproxy(scratch)
        proxies.append(tp)
        port = _free_port()
        s = proxy_stack(Kiro={"CAFile": str(scratch / "ca.pem")}, endpoints=[f"https://127.0.0.1:{port}"],
                        extra_config=f"\n[Network]\nProxy=http://kirod:{PASSWORD}@127.0.0.1:{tp.port}\n", start=False)
        t = Terminator(scratch, s.chat.url, port)
        proxies.append(t)
        s.proxyd.start()
        s.chat.enqueue({"text": ["via ", "tinyproxy"]})
        r = s.post(CHAT_PATH, chat())
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "via tinyproxy"
        # tinyproxy tunnelled it, and nghttpx terminated TLS behind it.
        wait_until(lambda: f"CONNECT 127.0.0.1:{port}" in tp.text(), timeout=5, what="the CONNECT in tinyproxy's log")
        assert [e[2] for e in t.entries(1)] == [200]
        log = s.proxyd.log_text()
        assert f"Egress proxy: http://kirod:***@127.0.0.1:{tp.port}" in log, log[-2000:]
        assert PASSWORD not in log


def test_proxyd_through_microsocks_socks5h(proxy_stack, proxies):
        ms = Microsocks()
        proxies.append(ms)
        s = proxy_stack(extra_config=f"\n[Network]\nProxy=socks5h://kirod:{PASSWORD}@127.0.0.1:{ms.port}\n")
        s.chat.enqueue({"text": ["so", "cks"], "chunk_delay": 0.5})
        got = {}

        def run():
                got["r"] = s.post(CHAT_PATH, chat())
        th = threading.Thread(target=run)
        th.start()
        # While the answer trickles in, kiro-proxyd's upstream connection is the one to microsocks.
        wait_until(lambda: _connections_to(s.proxyd.pid, ms.port), timeout=5,
                   what="a connection from kiro-proxyd to microsocks")
        th.join(30)
        assert got["r"].status == 200, got["r"]
        assert got["r"].json()["choices"][0]["message"]["content"] == "socks"
        assert PASSWORD not in s.proxyd.log_text()
        # Without the proxy the upstream is unreachable for kiro-proxyd, although it is up.
        ms.stop()
        proxies.remove(ms)
        r = s.post(CHAT_PATH, chat())
        assert r.status >= 500, r
        assert s.chat.count() == 1


def test_environment_ignored_unless_proxy_env(proxy_stack):
        """http_proxy & co. pointing at a dead port: ignored by default; used with Proxy=env (and then
        everything fails); a reload back to no Proxy= serves again; NoProxy= exempts the upstream."""
        s = proxy_stack(start=False)
        d = s.proxyd
        dead = "http://127.0.0.1:9"
        spawn = d._spawn
        d._spawn = lambda env, **kw: spawn(dict(env, http_proxy=dead, https_proxy=dead, HTTPS_PROXY=dead,
                                                all_proxy=dead, ALL_PROXY=dead), **kw)
        d.start()
        assert s.post(CHAT_PATH, chat()).status == 200

        base = d.config_path.read_text()
        d.config_path.write_text(base + "\n[Network]\nProxy=env\n")
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: "Egress proxy: env" in d.log_text(), timeout=10, what="Proxy=env applied")
        n = s.chat.count()
        r = s.post(CHAT_PATH, chat())
        assert r.status >= 500, r
        assert s.chat.count() == n

        d.config_path.write_text(base + "\n[Network]\nProxy=env\nNoProxy=127.0.0.1\n")
        k = d.log_text().count("Configuration reloaded")
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: d.log_text().count("Configuration reloaded") > k, timeout=10, what="reload")
        assert s.post(CHAT_PATH, chat()).status == 200

        d.config_path.write_text(base)
        k = d.log_text().count("Configuration reloaded")
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: d.log_text().count("Configuration reloaded") > k, timeout=10, what="reload")
        assert s.post(CHAT_PATH, chat()).status == 200


def test_authd_refresh_through_tinyproxy(authd, bus_daemon, fake_auth, scratch, proxies):
        tp = Tinyproxy(scratch)
        proxies.append(tp)
        a = authd(extra_config=f"\n[Network]\nProxy=http://kirod:{PASSWORD}@127.0.0.1:{tp.port}\n")
        rt = f"rt-egress-{os.urandom(4).hex()}"
        lin = fake_auth.seed(rt, access_token="at-egress", profile_arn=PROFILE_ARN)
        import_credential(bus_daemon.address, "egress", "at-egress", rt)
        kirodtest.bus_call(bus_daemon.address, "Refresh", "t", [0], path=cred_path("egress"),
                           interface=CREDENTIAL_IFACE)
        wait_until(lambda: fake_auth.rotations(lin) >= 1, timeout=10, what="a refresh")
        port = fake_auth.kiro_url.rstrip("/").rsplit(":", 1)[1]
        # Plain http:// to the loopback fake: tinyproxy forwards it as a proxied request.
        wait_until(lambda: f"POST http://127.0.0.1:{port}/" in tp.text(), timeout=5,
                   what="the refresh in tinyproxy's log")
        log = a.log_text()
        assert f"Egress proxy: http://kirod:***@127.0.0.1:{tp.port}" in log
        assert PASSWORD not in log


def test_credential_egress_proxy_from_import(proxy_stack, kiroctl, scratch, proxies):
        """kiroctl import --egress-proxy: kiro-authd refreshes that credential through it, and kiro-proxyd's
        calls with its token go through it too (GetToken's extra 'proxy'), while neither daemon has a
        Proxy=; the password shows nowhere."""
        tp = Tinyproxy(scratch)
        proxies.append(tp)
        s = proxy_stack(start=False)
        url = f"http://kirod:{PASSWORD}@127.0.0.1:{tp.port}"
        # The stack's lineage is named by its refresh token: import that again, with the proxy; the
        # credential has no access token then, so kiro-authd refreshes at once.
        # The URL with its password through the environment, out of the process list.
        env = kirodtest.base_env(DBUS_SYSTEM_BUS_ADDRESS=s.authd.bus.address, KIROCTL_EGRESS_PROXY=url)
        subprocess.run([str(kirodtest.BUILD_DIR / "kiroctl" / "kiroctl"), "import", "--refresh-token-file", "-",
                        "--id", s.cred_id, "--replace"], input=s.lineage + "\n", text=True, env=env, check=True,
                       capture_output=True)
        wait_until(lambda: s.fake_auth.rotations(s.lineage) >= 1, timeout=10, what="the refresh")
        auth_port = s.fake_auth.kiro_url.rstrip("/").rsplit(":", 1)[1]
        wait_until(lambda: f"http://127.0.0.1:{auth_port}/" in tp.text(), timeout=5,
                   what="the refresh in tinyproxy's log")
        s.proxyd.start()
        chat_port = s.chat.url.rstrip("/").rsplit(":", 1)[1]
        assert f"http://127.0.0.1:{chat_port}/" not in tp.text()
        r = s.post(CHAT_PATH, chat())
        assert r.status == 200, r
        assert f"http://127.0.0.1:{chat_port}/" in tp.text()
        status = kiroctl("status", "--json").stdout
        for text in (s.proxyd.log_text(), s.authd.log_text(), status):
                assert PASSWORD not in text
        # A scheme kiro-authd does not take is refused at import.
        bad = kiroctl("import", "--refresh-token-file", "-", "--id", "badproxy", "--egress-proxy",
                      "ftp://127.0.0.1:1", input="rt-bad\n", check=False)
        assert bad.returncode != 0 and "invalid proxy" in bad.stderr.lower(), bad
