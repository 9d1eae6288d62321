# SPDX-License-Identifier: LGPL-2.1-or-later
"""Device-authorization logins end to end (issue 12): the real kiro-authd on a private system bus with
the real policy, kiroctl (also under a pseudo-terminal), and the loopback fakes of fakelogin.py for AWS
SSO OIDC, the Kiro auth service's device flow and Kimi's OAuth endpoints.

Contract: DESIGN.md §2 (StartLogin, CancelLogin, LoginFinished), KIRO-PROTOCOL.md B §2.4, §2.5, §7,
docs/org.kirod.Auth1.md and docs/kiroctl.md (login)."""

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

import dbusmini
import fakelogin
import kirodtest
from kirodtest import (ACCESS_DENIED, AUTHD_BIN, ERROR_PREFIX, INVALID_ARGS, KIROCTL_BIN, MANAGER_IFACE,
                       MANAGER_PATH, TEST_ADMIN, TEST_USER, base_env, wait_until)

pytestmark = pytest.mark.skipif(not AUTHD_BIN.exists() or not KIROCTL_BIN.exists(),
                                reason=f"needs {AUTHD_BIN} and {KIROCTL_BIN} (build first)")

BUILDER_ID_START_URL = "https://view.awsapps.com/start"


@pytest.fixture
def fake():
        f = fakelogin.FakeLogin()
        yield f
        f.close()


@pytest.fixture
def login_authd(authd, fake):
        def start(**auth):
                auth.setdefault("LoginMinPollIntervalSec", "0.2")
                return authd(endpoints=fake.endpoints(), **auth)
        return start


class Watcher:
        """A root connection that hears LoginFinished."""

        def __init__(self, bus):
                self.c = dbusmini.Connection(bus, timeout=60)
                self.signals = []
                self.c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                            [f"type='signal',interface='{MANAGER_IFACE}',member='LoginFinished'"])

        def call(self, member, signature, args):
                """Like dbusmini's call, but keeps the signals that arrive before the reply."""
                self.c.sock.settimeout(60)
                serial = self.c.send(dbusmini.MSG_METHOD_CALL, {
                        dbusmini.HDR_PATH: MANAGER_PATH, dbusmini.HDR_INTERFACE: MANAGER_IFACE,
                        dbusmini.HDR_MEMBER: member, dbusmini.HDR_DESTINATION: kirodtest.BUS_NAME}, signature, args)
                while True:
                        m = self.c.read_message()
                        if m.member == "LoginFinished":
                                self.signals.append(m.body)
                        elif m.reply_serial == serial:
                                if m.type == dbusmini.MSG_ERROR:
                                        raise dbusmini.DBusError(m.error_name, m.body[0] if m.body else "")
                                return m.body

        def start(self, provider, method, options=None, flags=0):
                return self.call("StartLogin", "ssa{sv}t", [provider, method, options or {}, flags])

        def cancel(self, login_id):
                return self.call("CancelLogin", "st", [login_id, 0])

        def finished(self, login_id, timeout=30):
                for body in self.signals:
                        if body[0] == login_id:
                                return body
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                        self.c.sock.settimeout(max(0.1, deadline - time.monotonic()))
                        try:
                                m = self.c.read_message()
                        except socket.timeout:
                                break
                        if m.member == "LoginFinished" and m.body[0] == login_id:
                                return m.body
                raise AssertionError(f"no LoginFinished for {login_id} within {timeout} s")

        def close(self):
                self.c.close()


@pytest.fixture
def watcher(bus):
        w = Watcher(bus)
        yield w
        w.close()


def cred_id(path):
        return path.rsplit("/", 1)[1].replace("_2d", "-").replace("_2e", ".").replace("_5f", "_")


def no_secrets_in(text, fake):
        for _kind, at, rt in fake.issued:
                assert at not in text and rt not in text
        for secret in fake.registrations.values():
                assert secret not in text


# ---- AWS Builder ID ---------------------------------------------------------------------------------

def test_builder_id_succeeds_after_pending_and_slow_down(login_authd, fake, watcher, kiroctl):
        a = login_authd()
        fake.plan = ["pending", "pending", "slow_down", "ok"]
        login_id, uri, complete, code, expires = watcher.start("kiro", "builder-id")
        assert re.fullmatch(r"[0-9A-F]{4}-[0-9A-F]{4}", code)
        assert uri == "https://device.sso.us-east-1.amazonaws.com/" and complete.endswith(f"?user_code={code}")
        assert abs(expires - kirodtest.now_usec() - 60_000_000) < 5_000_000
        _, path, error = watcher.finished(login_id)
        assert error == ""

        # RegisterClient, StartDeviceAuthorization, CreateToken as B §2.4 says.
        reg, = fake.requests_to("/oidc/client/register")
        assert reg.body["clientType"] == "public"
        assert "codewhisperer:conversations" in reg.body["scopes"]
        assert reg.body["grantTypes"] == [fakelogin.DEVICE_GRANT, "refresh_token"]
        auth, = fake.requests_to("/oidc/device_authorization")
        assert auth.body["startUrl"] == BUILDER_ID_START_URL and auth.content_type == "application/json"
        polls = fake.polls()
        assert [p.outcome for p in polls] == ["pending", "pending", "slow_down", "ok"]
        gaps = [b.time - a_.time for a_, b in zip(polls, polls[1:])]
        # interval 1 s, then +5 s after slow_down (RFC 8628 §3.5)
        assert 0.9 <= gaps[0] < 3 and 0.9 <= gaps[1] < 3, gaps
        assert gaps[2] >= 5.9, gaps

        cid = cred_id(path)
        assert cid.startswith("builder-id-")
        stored = a.read_credential(cid)
        client_id = auth.body["clientId"]
        assert stored["client_id"] == client_id
        assert stored["client_secret"] == fake.registrations[client_id]
        assert stored["refresh_token"] == fake.issued[-1][2]
        assert stored["auth_method"] == "builder-id" and stored["region"] == "us-east-1"
        assert stored["start_url"] == BUILDER_ID_START_URL
        st = kiroctl("status", cid, "--json").stdout
        assert '"state":"active"' in st.replace(" ", "")
        no_secrets_in(a.log_text() + st, fake)


def test_lapsed_client_registration_needs_login(login_authd, fake, watcher, kiroctl):
        """The registration is stored with its expiry; once it lapsed, refresh says so without a request."""
        a = login_authd()
        fake.plan = ["ok"]
        login_id, *_ = watcher.start("kiro", "builder-id", {"id": dbusmini.Variant("s", "b")})
        assert watcher.finished(login_id)[2] == ""
        stored = a.read_credential("b")
        assert stored["client_secret_expires_at"]
        a.stop()
        path = a.credentials_dir / "b.json"
        doc = json.loads(path.read_text())
        doc["client_secret_expires_at"] = "2020-01-01T00:00:00Z"
        path.write_text(json.dumps(doc))
        a.start()
        n = len(fake.requests)
        p = kiroctl("refresh", "b", check=False)
        assert p.returncode == 1 and "needs a new login" in p.stderr
        p = kiroctl("status", "b", check=False)
        assert p.returncode == 3    # needs a login, as systemctl is-active says "inactive"
        st = p.stdout
        assert "the client registration expired on 2020-01-01" in st
        assert "kiroctl login builder-id --replace --id b" in st
        assert len(fake.requests) == n


def test_login_expires(login_authd, fake, watcher):
        login_authd()
        fake.expires_in = 2
        login_id, *_ = watcher.start("kiro", "builder-id")
        t0 = time.monotonic()
        _, path, error = watcher.finished(login_id)
        assert path == "/" and "expired" in error
        assert 1.5 < time.monotonic() - t0 < 6


def test_login_expired_token_answer(login_authd, fake, watcher):
        login_authd()
        fake.plan = ["pending", "expired"]
        login_id, *_ = watcher.start("kimi", "device")
        _, path, error = watcher.finished(login_id)
        assert path == "/" and error == "the code expired before the login was confirmed"


def test_login_denied(login_authd, fake, watcher, kiroctl):
        login_authd()
        fake.plan = ["pending", "denied"]
        login_id, *_ = watcher.start("kiro", "builder-id")
        _, path, error = watcher.finished(login_id)
        assert path == "/" and error == "the login was denied"
        assert kiroctl("list", "--no-legend").stdout.strip() == ""


def test_slow_down_every_time_ends_at_expiry(login_authd, fake, watcher):
        login_authd()
        fake.expires_in = 8
        fake.default = "slow_down"
        login_id, *_ = watcher.start("kiro", "google")
        _, path, error = watcher.finished(login_id, timeout=20)
        assert path == "/" and "expired" in error
        polls = fake.polls()
        # 1 s, then 6 s: the third poll would come at 13 s, past the expiry.
        assert len(polls) == 2, [p.outcome for p in polls]
        assert polls[1].time - polls[0].time >= 5.9


def test_transient_garbage_is_retried(login_authd, fake, watcher):
        a = login_authd()
        fake.plan = ["html", "500", "garbage", "ok"]
        login_id, *_ = watcher.start("kiro", "github")
        _, path, error = watcher.finished(login_id)
        assert error == "" and path != "/"
        assert [p.outcome for p in fake.polls()] == ["html", "500", "garbage", "ok"]
        assert "HTTP 500" in a.log_text()


def test_endless_500_fails_cleanly(login_authd, fake, watcher):
        login_authd()
        fake.default = "500"
        login_id, *_ = watcher.start("kiro", "builder-id")
        _, path, error = watcher.finished(login_id)
        assert path == "/" and "failed 6 times in a row" in error and "HTTP 500" in error
        assert len(fake.polls()) == 6


def test_bad_arguments(login_authd, fake, watcher):
        login_authd()
        cases = [
                (("kiro", "facebook", {}), INVALID_ARGS, "kiro/builder-id, kiro/idc"),
                (("aws", "builder-id", {}), INVALID_ARGS, "kimi/device"),
                (("kiro", "idc", {"start_url": dbusmini.Variant("s", "http://my.awsapps.com/start"),
                                  "region": dbusmini.Variant("s", "us-east-1")}), INVALID_ARGS, "https://"),
                (("kiro", "idc", {"start_url": dbusmini.Variant("s", "https://my.awsapps.com/start"),
                                  "region": dbusmini.Variant("s", "us-east-1/../evil")}), INVALID_ARGS, "region"),
                (("kiro", "idc", {"start_url": dbusmini.Variant("s", "https://my.awsapps.com/start")}),
                 INVALID_ARGS, "start_url' and 'region"),
                (("kiro", "builder-id", {"color": dbusmini.Variant("s", "red")}), INVALID_ARGS, "Unknown login option"),
                (("kiro", "google", {"id": dbusmini.Variant("s", "../x")}), INVALID_ARGS, "Invalid credential id"),
        ]
        for args, name, text in cases:
                with pytest.raises(dbusmini.DBusError) as e:
                        watcher.start(*args)
                assert e.value.name == name and text in str(e.value), (args, e.value)
        with pytest.raises(dbusmini.DBusError) as e:
                watcher.start("kiro", "builder-id", {}, 1)
        assert e.value.name == INVALID_ARGS
        with pytest.raises(dbusmini.DBusError) as e:
                watcher.cancel("builder-id-0000")
        assert e.value.name == ERROR_PREFIX + "NoSuchLogin"
        assert fake.requests == []


def test_two_logins_for_the_same_account(login_authd, fake, watcher):
        login_authd()
        first, *_ = watcher.start("kiro", "builder-id")
        with pytest.raises(dbusmini.DBusError) as e:
                watcher.start("kiro", "builder-id")
        assert e.value.name == ERROR_PREFIX + "LoginInProgress" and first in str(e.value)
        # Another account (another credential id) may log in meanwhile.
        other, *_ = watcher.start("kiro", "builder-id", {"id": dbusmini.Variant("s", "second")})
        watcher.cancel(first)
        assert watcher.finished(first)[2] == "cancelled"
        watcher.cancel(other)


def test_start_login_is_admin_only(login_authd, fake, bus):
        login_authd()
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(bus, "StartLogin", "ssa{sv}t", ["kiro", "builder-id", {}, 0], user=TEST_USER)
        assert e.value.name == ACCESS_DENIED
        r = kirodtest.bus_call(bus, "StartLogin", "ssa{sv}t", ["kiro", "builder-id", {}, 0], user=TEST_ADMIN)
        kirodtest.bus_call(bus, "CancelLogin", "st", [r[0], 0], user=TEST_ADMIN)


def test_token_endpoint_refuses_device_authorization(login_authd, fake, watcher):
        login_authd()
        fake.plan = []
        # Kimi's device authorization answering HTML: StartLogin fails at once with a clear error.
        fake.server.RequestHandlerClass.kimi = lambda self, path: self._send(
                200, raw=b"<html>maintenance</html>", ctype="text/html", outcome="html")
        with pytest.raises(dbusmini.DBusError) as e:
                watcher.start("kimi", "")
        assert e.value.name == ERROR_PREFIX + "LoginFailed" and "not JSON" in str(e.value)


# ---- IAM Identity Center and social ------------------------------------------------------------------

def test_idc_login_with_kiroctl(login_authd, fake, kiroctl):
        a = login_authd()
        fake.plan = ["pending", "ok"]
        p = kiroctl("login", "idc", "--start-url", "https://my-org.awsapps.com/start", "--region", "eu-west-1",
                    "--id", "work")
        assert "Logged in: credential 'work' added." in p.stdout
        assert "State: active" in p.stdout and "Region: eu-west-1" in p.stdout
        auth, = fake.requests_to("/oidc/device_authorization")
        assert auth.body["startUrl"] == "https://my-org.awsapps.com/start"
        reg, = fake.requests_to("/oidc/client/register")
        assert reg.body["issuerUrl"] == "https://my-org.awsapps.com/start"
        stored = a.read_credential("work")
        assert stored["auth_method"] == "idc" and stored["start_url"] == "https://my-org.awsapps.com/start"
        # Logging in again to the same id needs --replace.
        p = kiroctl("login", "idc", "--start-url", "https://my-org.awsapps.com/start", "--region", "eu-west-1",
                    "--id", "work", check=False)
        assert p.returncode == 1 and "exists already" in p.stderr
        fake.plan = ["ok"]
        kiroctl("login", "idc", "--start-url", "https://my-org.awsapps.com/start", "--region", "eu-west-1",
                "--id", "work", "--replace")
        assert a.read_credential("work")["refresh_token"] == fake.issued[-1][2]


def test_kiroctl_login_usage_errors(login_authd, kiroctl):
        login_authd()
        for args, text in [(("login",), "needs what to log in with"),
                           (("login", "facebook"), "unknown login 'facebook'"),
                           (("login", "idc", "--region", "us-east-1"), "needs --start-url"),
                           (("login", "google", "--start-url", "https://x"), "only valid with 'login idc'"),
                           (("status", "--no-wait"), "--no-wait is only valid")]:
                p = kiroctl(*args, check=False)
                assert p.returncode == 2 and text in p.stderr, (args, p.stderr)
        p = kiroctl("login", "idc", "--start-url", "http://my.awsapps.com/start", "--region", "us-east-1", check=False)
        assert p.returncode == 2 and "https://" in p.stderr


@pytest.mark.parametrize("provider", ["google", "github"])
def test_social_login(login_authd, fake, kiroctl, provider):
        a = login_authd()
        fake.plan = ["pending", "ok"]
        p = kiroctl("login", provider)
        assert "https://app.kiro.dev/device?code=" in p.stdout
        auth, = fake.requests_to("/kiro/oauth/device/authorization")
        assert auth.body == {"clientId": "kiro-cli", "loginProvider": "Google" if provider == "google" else "Github"}
        poll = fake.requests_to("/kiro/oauth/device/poll")[0]
        assert set(poll.body) == {"clientId", "deviceCode"}
        m = re.search(r"Logged in: credential '([^']+)' added", p.stdout)
        assert m and m.group(1).startswith(provider + "-"), p.stdout + p.stderr
        stored = a.read_credential(m.group(1))
        assert stored["auth_method"] == "social" and stored["profile_arn"] == fake.profile_arn


def test_no_wait_prints_the_login_id(login_authd, fake, kiroctl, watcher):
        login_authd()
        p = kiroctl("login", "builder-id", "--no-wait")
        login_id = p.stdout.strip()
        assert re.fullmatch(r"builder-id-[0-9a-f]{16}", login_id), p.stdout
        assert "device.sso.us-east-1.amazonaws.com" in p.stderr
        watcher.cancel(login_id)


# ---- Kimi --------------------------------------------------------------------------------------------

def kimi_login(kiroctl, fake, *extra):
        fake.plan = ["pending", "ok"]
        p = kiroctl("login", "kimi", *extra)
        m = re.search(r"Logged in: credential '([^']+)' added", p.stdout)
        assert m, p.stdout
        return m.group(1)


def test_kimi_login_and_refresh(login_authd, fake, kiroctl, dbus):
        a = login_authd()
        cid = kimi_login(kiroctl, fake)
        assert cid.startswith("kimi-")
        auth, = fake.requests_to("/kimi/api/oauth/device_authorization")
        assert auth.content_type == "application/x-www-form-urlencoded" and auth.body == {
                "client_id": fakelogin.KIMI_CLIENT_ID}
        poll = fake.polls()[0]
        assert poll.body["grant_type"] == fakelogin.DEVICE_GRANT and poll.body["device_code"].startswith("dc-")
        device_id = auth.headers["x-msh-device-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", device_id)
        for h in ("x-msh-platform", "x-msh-version", "x-msh-device-name", "x-msh-device-model", "x-msh-os-version"):
                assert auth.headers.get(h), h
        assert auth.headers["x-msh-platform"] == "kimi_cli"
        assert auth.headers["user-agent"].startswith("KimiCLI/")

        stored = a.read_credential(cid)
        assert stored["provider"] == "kimi" and stored["auth_method"] == "kimi-device"
        first_rt = stored["refresh_token"]

        # Refresh with rotation: form-encoded, same device id, new refresh token stored.
        kiroctl("refresh", cid)
        ref = fake.requests_to("/kimi/api/oauth/token")[-1]
        assert ref.body == {"client_id": fakelogin.KIMI_CLIENT_ID, "grant_type": "refresh_token",
                            "refresh_token": first_rt}
        assert ref.content_type == "application/x-www-form-urlencoded"
        assert ref.headers["x-msh-device-id"] == device_id and ref.headers["user-agent"].startswith("KimiCLI/")
        second_rt = a.read_credential(cid)["refresh_token"]
        assert second_rt != first_rt and second_rt in fake.kimi_refresh_tokens

        # Without a new refresh token the old one stays.
        fake.kimi_rotate = False
        kiroctl("refresh", cid)
        assert fake.requests_to("/kimi/api/oauth/token")[-1].outcome == "refreshed"
        assert a.read_credential(cid)["refresh_token"] == second_rt

        # GetToken for kimi: the token and what the proxy must send with it.
        tok_id, token, _expires, extra = dbus("GetToken", "sst", ["kimi", "", 0])
        assert tok_id == cid and token.startswith("at-")
        extra = {k: getattr(v, "value", v) for k, v in extra.items()}
        assert extra["api_base"] == "https://api.kimi.com/coding/v1"
        assert extra["device_id"] == device_id and extra["user_agent"].startswith("KimiCLI/")
        assert f"X-Msh-Device-Id: {device_id}" in extra["headers"]
        assert "X-Msh-Platform: kimi_cli" in extra["headers"]
        no_secrets_in(a.log_text(), fake)


@pytest.mark.parametrize("status", [401, 403])
def test_kimi_refresh_refused_needs_login(login_authd, fake, kiroctl, status):
        login_authd()
        cid = kimi_login(kiroctl, fake)
        fake.kimi_refresh_status = status
        p = kiroctl("refresh", cid, check=False)
        assert p.returncode != 0
        p = kiroctl("status", cid, check=False)
        assert p.returncode == 3
        st = p.stdout
        assert "needs-login" in st and f"HTTP {status}" in st
        assert f"kiroctl login kimi --replace --id {cid}" in st


def test_kimi_refresh_500_is_transient(login_authd, fake, kiroctl):
        login_authd()
        cid = kimi_login(kiroctl, fake)
        fake.kimi_refresh_status = 500
        kiroctl("refresh", cid, check=False)
        assert "needs-login" not in kiroctl("status", cid).stdout


# ---- kiroctl as a person uses it ------------------------------------------------------------------

def spawn_kiroctl(bus, *args, tty=False):
        env = base_env(DBUS_SYSTEM_BUS_ADDRESS=bus)
        argv = [str(KIROCTL_BIN), "--system", *args]
        if not tty:
                return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL)
        env["TERM"] = "xterm"
        pid, fd = pty.fork()
        if pid == 0:
                os.execve(argv[0], argv, env)
        return pid, fd


def read_pty(fd, until, timeout=30):
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and until not in out:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                        try:
                                chunk = os.read(fd, 4096)
                        except OSError:
                                break
                        if not chunk:
                                break
                        out += chunk
        return out


def test_ctrl_c_cancels_the_login(login_authd, fake, bus):
        a = login_authd()
        p = spawn_kiroctl(bus, "login", "builder-id")
        out = b""
        deadline = time.monotonic() + 20
        while b"shows the code" not in out and time.monotonic() < deadline:
                out += os.read(p.stdout.fileno(), 4096)
        assert b"shows the code" in out, out
        wait_until(lambda: len(fake.polls()) >= 1, what="first poll")
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 130, err
        assert b"Login cancelled." in err
        wait_until(lambda: "ended: cancelled" in a.log_text(), what="the login to end in kiro-authd")
        n = len(fake.polls())
        time.sleep(2.5)
        assert len(fake.polls()) == n, "kiro-authd still polls a cancelled login"


def test_kiroctl_login_on_a_terminal(login_authd, fake, bus):
        login_authd()
        fake.plan = ["pending", "pending", "ok"]
        pid, fd = spawn_kiroctl(bus, "login", "github", tty=True)
        out = read_pty(fd, b"Next refresh:")
        out += read_pty(fd, b"\n", timeout=2)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        text = out.decode("utf-8", errors="replace")
        assert os.WEXITSTATUS(status) == 0, text
        assert "To log in with GitHub (Kiro), open this URL in a browser:" in text
        code = re.search(r"shows the code:  ([0-9A-F]{4}-[0-9A-F]{4})", text).group(1)
        assert f"https://app.kiro.dev/device?code={code}" in text
        # The countdown is one line rewritten in place.
        counts = re.findall(r"\r\x1b\[KWaiting for the login to be confirmed\.\.\. (\d+):(\d\d) left", text)
        assert counts, text
        assert all(int(m) * 60 + int(s) <= 60 for m, s in counts)
        assert "Logged in: credential 'github-" in text and "State: active" in text
        if "\u2588" not in text:
                pytest.skip("kiroctl built without libqrencode: no QR code to check")
        # A QR code of square rows drawn with half blocks.
        qr = [l for l in text.splitlines() if "\u2588" in l or "\u2580" in l or "\u2584" in l]
        assert len(qr) >= 12


def test_kiroctl_login_on_a_pipe(login_authd, fake, bus):
        login_authd()
        fake.plan = ["pending", "ok"]
        p = spawn_kiroctl(bus, "login", "kimi")
        out, err = p.communicate(timeout=30)
        text = out.decode()
        assert p.returncode == 0, err
        assert "\r" not in text and "\x1b" not in text and "\u2588" not in text
        assert re.search(r"^Waiting for the login to be confirmed\.\.\. 1:0\d left$", text, re.M), text
        assert "Logged in: credential 'kimi-" in text
