# SPDX-License-Identifier: LGPL-2.1-or-later
"""The trust boundaries between the users and the daemons (issue 11 "Trust boundary"):

- kiro-proxyd's user cannot read kiro-authd's state directory (where the refresh tokens are);
- GetToken and Import are refused to other users twice over: by the bus policy (the real one, on the
  test bus) and, with a permissive policy that lets every call through, by kiro-authd's own check;
- the proxy never forwards a client's Authorization or x-api-key header upstream: Kiro gets
  kiro-authd's access token and nothing of the client's;
- request bodies are never logged at the default log level.

The fourth boundary, no secret in any daemon output over the whole test run, is the session-wide scan at
the end of conftest.py; test_secret_scan_finds_a_planted_secret shows that the scan can fail."""

import json
import os
import stat
import time

import pytest

import conftest
import dbusmini
import kirodtest
from kirodtest import ACCESS_DENIED, AUTH_USER, PROXY_USER, TEST_ADMIN, TEST_USER, run_as
from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, needs_proxyd, nonce, proxy_stack, stack  # noqa: F401

MODEL = "claude-sonnet-4.5"


def ide_token(at, rt):
        return {"accessToken": at, "refreshToken": rt, "profileArn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/TB",
                "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 7200)),
                "authMethod": "social", "provider": "Github"}


def do_import(address, user, cred_id, at, rt):
        fd = kirodtest.sealed_memfd(json.dumps(ide_token(at, rt)).encode())
        try:
                return kirodtest.bus_call(address, "Import", "sha{sv}t",
                                          ["kiro-ide-json", fd, {"id": dbusmini.Variant("s", cred_id)}, 0], user=user)
        finally:
                os.close(fd)


def get_token(address, user):
        return kirodtest.bus_call(address, "GetToken", "sst", ["kiro", "", 0], user=user)


# ---- the state directory ---------------------------------------------------------------------------

def test_proxy_user_cannot_read_the_state_directory(bus, fake_auth, authd):
        a = authd()
        rt = f"rt-tb-state-{os.urandom(8).hex()}"
        fake_auth.seed(rt, access_token=f"at-tb-state-{os.urandom(8).hex()}")
        do_import(bus, "root", "tb1", f"at-tb-state-{os.urandom(8).hex()}", rt)
        files = [p for p in a.state_dir.rglob("*") if p.is_file()]
        assert files, "kiro-authd stored nothing"
        st = os.stat(a.state_dir)
        assert stat.S_IMODE(st.st_mode) & 0o077 == 0, oct(st.st_mode)
        for user in (PROXY_USER, TEST_USER, TEST_ADMIN):
                r = run_as(user, ["ls", a.state_dir])
                assert r.returncode != 0 and "Permission denied" in r.stderr, (user, r)
                for f in files:
                        r = run_as(user, ["cat", f])
                        assert r.returncode != 0 and rt not in r.stdout, (user, f, r)
        # kiro-authd's own user can (the check above is not vacuous).
        r = run_as(AUTH_USER, ["cat", files[0]])
        assert r.returncode == 0, r


# ---- the bus: the policy, then kiro-authd's own check ------------------------------------------------

def test_gettoken_and_import_refused_by_the_bus_policy(bus, fake_auth, authd):
        authd()
        rt = f"rt-tb-pol-{os.urandom(8).hex()}"
        fake_auth.seed(rt)
        do_import(bus, "root", "tbp", f"at-tb-pol-{os.urandom(8).hex()}", rt)
        for user in (TEST_USER, TEST_ADMIN, AUTH_USER):
                with pytest.raises(dbusmini.DBusError) as e:
                        get_token(bus, user)
                assert e.value.name == ACCESS_DENIED, (user, e.value)
                assert "Rejected send message" in str(e.value), (user, e.value)      # from dbus-daemon
        for user in (TEST_USER, PROXY_USER, AUTH_USER):
                with pytest.raises(dbusmini.DBusError) as e:
                        do_import(bus, user, "evil", "at-evil-0123456789", "rt-evil-0123456789")
                assert e.value.name == ACCESS_DENIED, (user, e.value)
        # The allowed callers get through.
        assert get_token(bus, PROXY_USER)[0]
        assert kirodtest.bus_call(bus, "ListCredentials", "t", [0])[0]


PERMISSIVE_POLICY = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- A test-only policy that lets every user own and call org.kirod.Auth1: whatever is refused now is
     refused by kiro-authd itself. -->
<busconfig>
  <policy context="default">
    <allow own="org.kirod.Auth1"/>
    <allow send_destination="org.kirod.Auth1"/>
  </policy>
</busconfig>
"""


@pytest.fixture
def permissive_bus(users, scratch):
        d = scratch / "permissive"
        d.mkdir()
        os.chmod(d, 0o755)
        policy = d / "permissive.conf"
        policy.write_text(PERMISSIVE_POLICY)
        b = kirodtest.Bus(d)
        b.conf_path.write_text(b.conf_path.read_text().replace(str(kirodtest.POLICY_FILE), str(policy)))
        b.start()
        yield b
        b.stop()


def test_gettoken_and_import_refused_by_kiro_authd_itself(permissive_bus, fake_auth, scratch, request):
        if not kirodtest.AUTHD_BIN.exists():
                pytest.skip("kiro-authd is not built")
        a = kirodtest.Authd(permissive_bus, fake_auth, scratch, auth={}, endpoints=None, extra_config="",
                            check_exit=True, ready_timeout=10.0)
        conftest._register_log(request, f"{a.name} log (kiro-authd stderr, permissive bus)", a.log_path)
        a.start()
        try:
                addr = permissive_bus.address
                rt = f"rt-tb-own-{os.urandom(8).hex()}"
                at = f"at-tb-own-{os.urandom(8).hex()}"
                fake_auth.seed(rt, access_token=at)
                do_import(addr, "root", "tbo", at, rt)
                # The bus lets anyone through: a member open to everyone answers the test user...
                assert kirodtest.bus_call(addr, "ListCredentials", "t", [0], user=TEST_USER)[0]
                # ...and GetToken and Import reach kiro-authd, which refuses them.
                for user in (TEST_USER, TEST_ADMIN, AUTH_USER):
                        with pytest.raises(dbusmini.DBusError) as e:
                                get_token(addr, user)
                        assert "Rejected send message" not in str(e.value), e.value
                        assert e.value.name in (ACCESS_DENIED, "org.kirod.Auth1.Error.PermissionDenied"), e.value
                for user in (TEST_USER, PROXY_USER, AUTH_USER):
                        with pytest.raises(dbusmini.DBusError) as e:
                                do_import(addr, user, "evil", f"at-evil-{os.urandom(8).hex()}",
                                          f"rt-evil-{os.urandom(8).hex()}")
                        assert "Rejected send message" not in str(e.value), e.value
                paths = kirodtest.bus_call(addr, "ListCredentials", "t", [0])[0]
                assert "evil" not in json.dumps(paths), paths
                # The proxy's user still gets its token, the admin may import.
                assert at in get_token(addr, PROXY_USER)
                do_import(addr, TEST_ADMIN, "tbo2", f"at-tb-own2-{os.urandom(8).hex()}", f"rt-tb-own2-{os.urandom(8).hex()}")
        finally:
                problems = a.teardown()
        assert not problems, problems


# ---- client credentials never go upstream ------------------------------------------------------------

@needs_proxyd
@pytest.mark.parametrize("path", [CHAT_PATH, MESSAGES_PATH])
def test_client_keys_never_forwarded_upstream(proxy_stack, path):
        key = f"sk-client-{os.urandom(12).hex()}"
        other = f"sk-other-{os.urandom(12).hex()}"
        s = proxy_stack(api_keys=[key])
        body = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
        for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key},
                        {"Authorization": f"Bearer {key}", "x-api-key": key, "Proxy-Authorization": f"Basic {other}",
                         "Cookie": f"session={other}"}):
                r = s.post(path, body, headers=headers)
                assert r.status == 200, r
                rec = s.chat.last()
                assert rec.headers.get("authorization") == f"Bearer {s.access_token()}", rec.headers
                assert "x-api-key" not in rec.headers, rec.headers
                dump = json.dumps(rec.headers) + rec.raw_body.decode(errors="replace")
                assert key not in dump and other not in dump, rec.headers


@needs_proxyd
def test_client_bearer_without_api_keys_not_forwarded(stack):
        """Without API keys configured the proxy ignores the client's Authorization, and never passes it on."""
        key = f"sk-ignored-{os.urandom(12).hex()}"
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
                       headers={"Authorization": f"Bearer {key}", "x-api-key": key})
        assert r.status == 200, r
        rec = stack.chat.last()
        assert rec.headers.get("authorization") == f"Bearer {stack.access_token()}"
        assert key not in json.dumps(rec.headers) and key not in json.dumps(rec.body)


# ---- request bodies are not logged at the default level -----------------------------------------------

def listening_port(pid):
        inodes = set()
        for f in os.listdir(f"/proc/{pid}/fd"):
                try:
                        link = os.readlink(f"/proc/{pid}/fd/{f}")
                except FileNotFoundError:
                        continue
                if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        with open(f"/proc/{pid}/net/tcp") as t:
                next(t)
                for line in t:
                        f = line.split()
                        if f[3] == "0A" and f[9] in inodes:
                                return int(f[1].split(":")[1], 16)
        return None


@needs_proxyd
def test_request_bodies_not_logged_at_default_level(proxy_stack):
        s = proxy_stack(start=False)
        cmd = s.proxyd.command
        s.proxyd.command = lambda: [a for a in cmd() if a != "--log-level=debug"]
        # The bound port is logged at debug level only: find it from the listening socket instead.
        s.proxyd._bound_port = lambda: listening_port(s.proxyd.pid)
        s.proxyd.start()
        marks = [nonce("body-mark") for _ in range(6)]
        tool = {"type": "function", "function": {"name": "lookup", "description": marks[2],
                                                 "parameters": {"type": "object", "properties": {}}}}
        r = s.post(CHAT_PATH, {"model": MODEL, "tools": [tool],
                               "messages": [{"role": "system", "content": marks[0]},
                                            {"role": "user", "content": marks[1]}]})
        assert r.status == 200, r
        r = s.post(MESSAGES_PATH, {"model": MODEL, "max_tokens": 10, "system": marks[3],
                                   "messages": [{"role": "user", "content": marks[4]}]})
        assert r.status == 200, r
        # Refused ones: bad JSON, an upstream 400, an unknown model.
        assert s.post(CHAT_PATH, ('{"model":"x","messages":[' + marks[5]).encode(),
                      headers={"Content-Type": "application/json"}).status == 400
        s.chat.enqueue({"status": 400, "message": "Improperly formed request."})
        assert s.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": marks[5]}]}).status == 400
        assert s.post(CHAT_PATH, {"model": marks[5], "messages": [{"role": "user", "content": "x"}]}).status == 404
        # The marks did reach the upstream (so they were in the bodies the proxy handled).
        assert any(marks[1] in json.dumps(q.body) for q in s.chat.requests)
        log = s.proxyd.log_text()
        assert log.strip(), "kiro-proxyd logged nothing at all: the check below would be vacuous"
        for m in marks:
                assert m not in log, f"{m} from a request body is in kiro-proxyd's log:\n{log[-3000:]}"


# ---- the secret scan can fail --------------------------------------------------------------------------

def test_secret_scan_finds_a_planted_secret():
        secrets = {"rt-planted-0123456789abcdef": "refresh token", "short": "client API key"}
        log = b"<6>Refreshed credential 'c1'.\n<7>token rt-planted-0123456789abcdef\n"
        assert conftest.find_secrets(secrets, log) == [("refresh token", "rt-planted-0123456789abcdef")]
        assert conftest.find_secrets(secrets, b"<6>nothing here\n") == []
        # Values too short to search for are not remembered.
        before = dict(conftest._secrets)
        conftest.remember_secret("k1", "client API key")
        assert conftest._secrets == before
