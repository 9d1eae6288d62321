# SPDX-License-Identifier: LGPL-2.1-or-later
"""systemctl reload (SIGHUP) of kiro-proxyd and kiro-authd: the configuration and the API keys file are read
again without dropping anything in flight; restart-only settings are named in the log; a configuration
that does not parse keeps the old one; RELOADING=1 … READY=1 reach the notify socket."""

import os
import signal
import threading
import time

import pytest

import dbusmini
import kirodtest
from kirodtest import CREDENTIAL_IFACE, MANAGER_IFACE, MANAGER_PATH, wait_until
from proxyd_fixture import CHAT_PATH, PROFILE_ARN, import_credential, needs_proxyd, nonce, proxy_stack  # noqa: F401
from test_authd import cred_path

pytestmark = needs_proxyd


def chat(text="hi", stream=False):
        return {"model": "claude-sonnet-4.5", "messages": [{"role": "user", "content": text}], "stream": stream}


def notify_sequence(d):
        """The notify messages received so far. Drains the socket: the daemon's sd_notify() blocks once
        its datagram queue is full (systemd reads it at once; the harness only at start)."""
        d.notify.setblocking(False)
        try:
                while True:
                        d.notify_messages.append(d.notify.recv(4096).decode(errors="replace"))
        except BlockingIOError:
                pass
        finally:
                d.notify.setblocking(True)
        return list(d.notify_messages)


def reload_and_wait(d, what="Configuration reloaded"):
        """SIGHUP, then waits for the log line and for READY=1 after the RELOADING=1 it sent."""
        n = d.log_text().count(what)
        k = len(notify_sequence(d))
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: d.log_text().count(what) > n, timeout=10, what=f"'{what}' in the log")

        def ready():
                new = notify_sequence(d)[k:]
                i = next((i for i, m in enumerate(new) if "RELOADING=1" in m), None)
                return i is not None and "MONOTONIC_USEC=" in new[i] and any("READY=1" in m for m in new[i + 1:])
        wait_until(ready, timeout=10, what="RELOADING=1 then READY=1 on the notify socket")


def test_reload_api_keys_added_and_removed(proxy_stack):
        s = proxy_stack(api_keys=["key-old"])
        keys = s.proxyd.dir / f"{s.proxyd.name}-api-keys"
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-old"}).status == 200
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-new"}).status == 401

        keys.write_text("key-new\n")
        reload_and_wait(s.proxyd)
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-new"}).status == 200
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-old"}).status == 401
        assert "1 API keys" in s.proxyd.log_text()


def test_reload_restart_only_settings_logged(proxy_stack):
        s = proxy_stack()
        text = s.proxyd.config_path.read_text()
        s.proxyd.config_path.write_text(text.replace("[Proxy]\n", "[Proxy]\nListen=127.0.0.1:1\nMaxConnections=77\n"
                                                     "AllowedHosts=reload.example\n"))
        reload_and_wait(s.proxyd)
        log = s.proxyd.log_text()
        # --listen on the command line replaces Listen=, so Listen= itself does not change what is served.
        assert "MaxConnections= changed; takes effect after a restart." in log
        assert "Listen= changed" not in log
        # Still the same listener, and the run-time setting took effect.
        assert s.get("/healthz").status == 200
        assert s.get("/healthz", headers={"Host": "reload.example"}).status == 200
        assert s.get("/healthz", headers={"Host": "other.example"}).status == 403


def test_reload_listen_change_logged(proxy_stack):
        """Without --listen, a changed Listen= is named as needing a restart and the old socket stays."""
        s = proxy_stack(start=False)
        d = s.proxyd
        sock = d.run_dir / "cfg.sock"
        d.config_path.write_text(d.config_path.read_text().replace(
                "[Proxy]\n", f"[Proxy]\nListen=127.0.0.1:0\nListen=unix:{sock}\n"))
        d.command = lambda: kirodtest.as_user(kirodtest.PROXY_USER, clear_groups=True) + [
                str(kirodtest.BUILD_DIR / "kiro-proxyd" / "kiro-proxyd"), f"--config={d.config_path}",
                "--log-level=debug"]
        d.start()
        d.config_path.write_text(d.config_path.read_text().replace(f"unix:{sock}", f"unix:{sock}2"))
        reload_and_wait(d)
        assert "Listen= changed; takes effect after a restart." in d.log_text()
        assert "invalid value" not in d.log_text()
        # Still served where it was.
        assert sock.exists() and not os.path.exists(f"{sock}2")
        assert s.get("/healthz").status == 200


def test_reload_broken_config_keeps_old(proxy_stack):
        s = proxy_stack(api_keys=["key-a"])
        good = s.proxyd.config_path.read_text()
        s.proxyd.config_path.write_text(good + "\nthis line is not an assignment\n")
        (s.proxyd.dir / f"{s.proxyd.name}-api-keys").write_text("key-b\n")
        reload_and_wait(s.proxyd, what="Reloading failed; the previous configuration stays in effect.")
        assert s.proxyd.running()
        # The old keys stay: the file was not read on a failed reload.
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-a"}).status == 200
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-b"}).status == 401
        msgs = notify_sequence(s.proxyd)
        assert any("READY=1" in m and "reloading the configuration failed" in m for m in msgs), msgs
        # A keys file that cannot be used fails the reload the same way.
        s.proxyd.config_path.write_text(good.replace("APIKeysFile=", "APIKeysFile=/nonexistent/keys#"))
        reload_and_wait(s.proxyd, what="Reloading failed; the previous configuration stays in effect.")
        assert s.post(CHAT_PATH, chat(), headers={"Authorization": "Bearer key-a"}).status == 200


def test_reload_under_load_no_failed_request(proxy_stack):
        s = proxy_stack(Proxy={"AllowedHosts": "a.example"})
        s.chat.set_default({"text": ["one ", "two ", "three ", "four"], "chunk_delay": 0.02})
        stop = threading.Event()
        results, errors = [], []

        def client(i):
                while not stop.is_set():
                        try:
                                ev = s.stream(CHAT_PATH, chat(nonce(f"load{i}"), stream=True))
                                ok = ev.status == 200 and ev.complete and ev.done and "one two three four" in "".join(
                                        (e.json or {}).get("choices", [{}])[0].get("delta", {}).get("content") or ""
                                        for e in ev.events if e.json)
                                (results if ok else errors).append(
                                        1 if ok else (ev.status, ev.complete, ev.done, ev.raw[-300:]))
                        except Exception as e:  # noqa: BLE001: any failure counts
                                errors.append(repr(e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
                t.start()
        try:
                time.sleep(0.5)
                text = s.proxyd.config_path.read_text()
                for k in range(6):
                        s.proxyd.config_path.write_text(text.replace("a.example", f"h{k}.example"))
                        reload_and_wait(s.proxyd)
                        time.sleep(0.2)
        finally:
                stop.set()
                for t in threads:
                        t.join(30)
        assert not errors, errors[:3]
        assert s.proxyd.log_text().count("Configuration reloaded") >= 6
        assert not errors, errors[:3]
        assert len(results) >= 8, len(results)
        print(f"reload under load: {len(results)} streamed chats completed across 6 reloads, 0 failed")


def _get(dbus, path, iface, name):
        v = dbus("Get", "ss", [iface, name], path=path, interface="org.freedesktop.DBus.Properties")[0]
        return v.value if isinstance(v, dbusmini.Variant) else v


def test_authd_reload_policy_and_margin(authd, dbus, bus_daemon, fake_auth):
        """SelectionPolicy= and RefreshMarginSec= take effect on reload (the refresh timer is set again);
        AdminGroup= is named as needing a restart; a broken file keeps the old values."""
        a = authd(SelectionPolicy="sticky", RefreshMarginSec=600, RefreshJitterSec=0)
        rt = f"rt-reload-{os.urandom(4).hex()}"
        fake_auth.seed(rt, access_token="at-reload", profile_arn=PROFILE_ARN)
        import_credential(bus_daemon.address, "reload", "at-reload", rt)
        path = cred_path("reload")
        assert _get(dbus, MANAGER_PATH, MANAGER_IFACE, "SelectionPolicy") == "sticky"
        exp = _get(dbus, path, CREDENTIAL_IFACE, "AccessTokenExpiresAt")
        before = _get(dbus, path, CREDENTIAL_IFACE, "NextRefreshAt")
        assert exp - before == 600 * 10**6

        text = a.config_path.read_text()
        a.config_path.write_text(text.replace("SelectionPolicy=sticky", "SelectionPolicy=round-robin")
                                 .replace("RefreshMarginSec=600", "RefreshMarginSec=1200") +
                                 "\n[Auth]\nAdminGroup=nonexistent-reload-group\n")
        reload_and_wait(a)
        assert _get(dbus, MANAGER_PATH, MANAGER_IFACE, "SelectionPolicy") == "round-robin"
        assert exp - _get(dbus, path, CREDENTIAL_IFACE, "NextRefreshAt") == 1200 * 10**6
        assert "AdminGroup= changed; takes effect after a restart." in a.log_text()

        a.config_path.write_text("[Auth\nbroken\n")
        reload_and_wait(a, what="Reloading failed; the previous configuration stays in effect.")
        assert _get(dbus, MANAGER_PATH, MANAGER_IFACE, "SelectionPolicy") == "round-robin"
        assert a.running()


def test_authd_policy_reload_reaches_proxyd(proxy_stack):
        """kiro-proxyd picks credentials with kiro-authd's SelectionPolicy=: a reload of kiro-authd that
        changes it emits PropertiesChanged, and kiro-proxyd reads it again."""
        s = proxy_stack()
        wait_until(lambda: "Selection policy: sticky" in s.proxyd.log_text(), timeout=5, what="the policy read")
        a = s.authd
        a.config_path.write_text(a.config_path.read_text().replace("SelectionPolicy=sticky",
                                                                   "SelectionPolicy=round-robin"))
        reload_and_wait(a)
        wait_until(lambda: "Selection policy: round-robin" in s.proxyd.log_text(), timeout=5,
                   what="kiro-proxyd to follow the new policy")
        assert s.post(CHAT_PATH, chat()).status == 200
