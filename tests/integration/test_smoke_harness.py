# SPDX-License-Identifier: LGPL-2.1-or-later
"""Tests of the harness itself: the private bus with the real policy, the fake auth servers and the
source generators. Nothing here needs the daemons."""

import json
import os
import re
import shutil
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

import dbusmini
import fakeauth
import kirocli_db
import kiroide
import kirodtest
from kirodtest import BUS_NAME, PYTHON, HERE


# ---- the bus ------------------------------------------------------------------------------------

def test_bus_includes_the_real_policy(bus_daemon):
        conf = bus_daemon.conf_path.read_text()
        assert f"<include>{kirodtest.POLICY_FILE}</include>" in conf
        assert kirodtest.POLICY_FILE.is_file()
        assert "@" not in conf.replace("@POLICY@", "")   # every placeholder was substituted
        # dbus-daemon warns about unknown users/groups named by a policy: the `users` fixture made them.
        log = bus_daemon.log_path.read_text()
        assert "Unknown username" not in log and "Unknown group" not in log, log


def _own(popen_as, bus, user):
        p = popen_as(user, [PYTHON, HERE / "dbusmini.py", f"--address={bus}", "own", BUS_NAME])
        line = p.stdout.readline().decode().strip()
        return p, line


def test_bus_enforces_the_policy(bus, popen_as):
        # Without the included policy the default context (deny own="*") would refuse kiro-auth too,
        # and with a permissive one kiro-test-user could own the name: both are checked.
        p, line = _own(popen_as, bus, kirodtest.TEST_USER)
        assert line.startswith(f"ERROR {kirodtest.ACCESS_DENIED}"), line
        p.wait(timeout=10)
        p, line = _own(popen_as, bus, kirodtest.AUTH_USER)
        assert line.startswith("OWNED :"), line
        # The owner answers; a read-only call by anyone is delivered, GetToken by anyone is not.
        body = kirodtest.bus_call(bus, "ListCredentials", user=kirodtest.TEST_USER)
        assert body == ["reached:org.kirod.Auth1.Manager.ListCredentials"]
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(bus, "GetToken", user=kirodtest.TEST_USER)
        assert e.value.name == kirodtest.ACCESS_DENIED


def test_bus_socket_reachable_by_every_test_user(bus):
        for user in ("root", kirodtest.AUTH_USER, kirodtest.PROXY_USER, kirodtest.TEST_ADMIN, kirodtest.TEST_USER):
                body = kirodtest.bus_call(bus, "GetId", user=user, destination="org.freedesktop.DBus",
                                          path="/org/freedesktop/DBus", interface="org.freedesktop.DBus")
                assert re.fullmatch(r"[0-9a-f]{32}", body[0]), body


def test_dbusmini_marshalling_and_fd_passing(bus):
        # root may own the name and call it (policy), which lets two connections of ours talk.
        with dbusmini.Connection(bus) as server, dbusmini.Connection(bus) as client:
                assert server.request_name(BUS_NAME) == 1          # primary owner
                fd = kirodtest.sealed_memfd(b"hello")
                try:
                        serial = client.send(dbusmini.MSG_METHOD_CALL,
                                             {dbusmini.HDR_PATH: "/org/kirod/Auth1",
                                              dbusmini.HDR_INTERFACE: "org.kirod.Auth1.Manager",
                                              dbusmini.HDR_MEMBER: "Import", dbusmini.HDR_DESTINATION: BUS_NAME},
                                             "sha{sv}t", ["fmt", fd, {"id": dbusmini.Variant("s", "c1"),
                                                                      "replace": dbusmini.Variant("b", True),
                                                                      "n": dbusmini.Variant("t", 7)},
                                                          1 << 40])
                finally:
                        os.close(fd)
                m = server.read_message()
                while m.type != dbusmini.MSG_METHOD_CALL:
                        m = server.read_message()
                assert m.member == "Import" and m.signature == "sha{sv}t"
                fmt, got_fd, opts, flags = m.body
                assert fmt == "fmt" and opts == {"id": "c1", "replace": True, "n": 7} and flags == 1 << 40
                assert os.pread(got_fd, 100, 0) == b"hello"
                os.close(got_fd)
                server.reply(m, "oas", ["/org/kirod/Auth1/credential/c1", ["a", "b"]])
                r = client.read_message()
                while r.reply_serial != serial:
                        r = client.read_message()
                assert r.type == dbusmini.MSG_METHOD_RETURN and r.body == ["/org/kirod/Auth1/credential/c1", ["a", "b"]]


# ---- the fake auth servers ----------------------------------------------------------------------

def _post(url, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": content_type})
        try:
                with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read() or b"null"), dict(e.headers)


def _social(fake, token):
        return _post(fake.kiro_url + "/refreshToken", {"refreshToken": token})


def _oidc(fake, token, client_id="cid", client_secret="csecret", **extra):
        body = {"grantType": "refresh_token", "clientId": client_id, "clientSecret": client_secret,
                "refreshToken": token}
        body.update(extra)
        return _post(fake.oidc_url + "/token", body)


def test_fake_social_rotates_and_rejects_reuse(fake_auth):
        lin = fake_auth.seed("rt-s0", profile_arn=kirocli_db.profile_arn())
        st, r1, _ = _social(fake_auth, "rt-s0")
        assert st == 200
        assert set(r1) == {"accessToken", "refreshToken", "profileArn", "expiresIn"}
        assert r1["expiresIn"] == 3600 and r1["refreshToken"] != "rt-s0"
        assert fake_auth.latest_refresh_token(lin) == r1["refreshToken"]
        assert fake_auth.latest_access_token(lin) == r1["accessToken"]

        st, r2, _ = _social(fake_auth, r1["refreshToken"])
        assert st == 200 and r2["refreshToken"] not in ("rt-s0", r1["refreshToken"])
        assert r2["accessToken"] != r1["accessToken"]
        # rt-s0 is two behind: outside the grace.
        st, err, _ = _social(fake_auth, "rt-s0")
        assert (st, err) == (400, {"error": "invalid_grant", "error_description": "Invalid refresh token provided"})
        st, err, _ = _social(fake_auth, "never-issued")
        assert st == 400 and err["error"] == "invalid_grant"
        assert fake_auth.count("/refreshToken") == 4
        assert fake_auth.rotations(lin) == 2
        assert [r.outcome for r in fake_auth.requests] == ["rotated", "rotated", "invalid_grant", "invalid_grant"]


def test_fake_reuse_grace_replays_the_newest_once_unused(fake_auth):
        lin = fake_auth.seed("rt-g0")
        _, r1, _ = _social(fake_auth, "rt-g0")
        # A client that crashed before persisting r1 presents rt-g0 again: same answer.
        st, again, _ = _social(fake_auth, "rt-g0")
        assert st == 200 and again == r1
        assert fake_auth.rotations(lin) == 1
        # Once the newest token has been used, the previous one is dead.
        _, r2, _ = _social(fake_auth, r1["refreshToken"])
        st, err, _ = _social(fake_auth, "rt-g0")
        assert st == 400 and err["error"] == "invalid_grant"
        st, again, _ = _social(fake_auth, r1["refreshToken"])
        assert st == 200 and again == r2


def test_fake_without_grace_rejects_any_reuse(fake_auth):
        fake_auth.reuse_grace = False
        fake_auth.seed("rt-n0")
        assert _social(fake_auth, "rt-n0")[0] == 200
        st, err, _ = _social(fake_auth, "rt-n0")
        assert st == 400 and err["error"] == "invalid_grant"


def test_fake_concurrent_presentations_rotate_once(fake_auth):
        lin = fake_auth.seed("rt-c0")
        fake_auth.delay = 0.05
        results = []

        def worker():
                results.append(_social(fake_auth, "rt-c0"))

        threads = [threading.Thread(target=worker) for _ in range(20)]
        for t in threads:
                t.start()
        for t in threads:
                t.join()
        assert all(st == 200 for st, _, _ in results)
        assert len({r["refreshToken"] for _, r, _ in results}) == 1
        assert fake_auth.rotations(lin) == 1
        assert fake_auth.count(outcome="rotated") == 1 and fake_auth.count(outcome="replayed") == 19


def test_fake_oidc_contract(fake_auth):
        lin = fake_auth.seed("rt-o0", "oidc", client_id="cid", client_secret="csecret", expires_in=601)
        st, r1, _ = _oidc(fake_auth, "rt-o0")
        assert st == 200
        assert set(r1) == {"accessToken", "tokenType", "expiresIn", "refreshToken"}
        assert r1["tokenType"] == "Bearer" and r1["expiresIn"] == 601
        assert fake_auth.latest_refresh_token(lin) == r1["refreshToken"]
        # wrong secret / unknown client
        st, err, _ = _oidc(fake_auth, r1["refreshToken"], client_secret="nope")
        assert st == 400 and err["error"] == "invalid_client"
        st, err, _ = _oidc(fake_auth, r1["refreshToken"], client_id="other")
        assert st == 400 and err["error"] == "invalid_client"
        # wrong grant type, form encoding, missing token
        st, err, _ = _oidc(fake_auth, r1["refreshToken"], grantType="authorization_code")
        assert st == 400 and err["error"] == "invalid_request"
        st, err, _ = _post(fake_auth.oidc_url + "/token",
                           b"grant_type=refresh_token&refresh_token=" + r1["refreshToken"].encode(),
                           "application/x-www-form-urlencoded")
        assert st == 400 and err["error"] == "invalid_request"
        st, err, _ = _post(fake_auth.oidc_url + "/token", {"grantType": "refresh_token", "clientId": "cid",
                                                           "clientSecret": "csecret"})
        assert st == 400 and err["error"] == "invalid_request"
        # a social token at the OIDC endpoint, and a used token outside the grace
        fake_auth.seed("rt-social-x")
        st, err, _ = _oidc(fake_auth, "rt-social-x")
        assert st == 400 and err["error"] == "invalid_grant"
        _, r2, _ = _oidc(fake_auth, r1["refreshToken"])
        st, err, _ = _oidc(fake_auth, "rt-o0")
        assert st == 400 and err["error"] == "invalid_grant"
        # none of the failures consumed anything
        assert fake_auth.latest_refresh_token(lin) == r2["refreshToken"]


def test_fake_script_and_revoke(fake_auth):
        lin = fake_auth.seed("rt-x0")
        fake_auth.script([{"status": 500}, {"status": 429, "retry_after": 1}, {"error": "invalid_grant"},
                          {"status": 400, "error": "slow_down"}, {"delay": 0.3}])
        st, _, _ = _social(fake_auth, "rt-x0")
        assert st == 500
        st, _, headers = _social(fake_auth, "rt-x0")
        assert st == 429 and headers.get("Retry-After") == "1"
        st, err, _ = _social(fake_auth, "rt-x0")
        assert st == 400 and err["error"] == "invalid_grant"
        st, err, _ = _social(fake_auth, "rt-x0")
        assert st == 400 and err["error"] == "slow_down"
        t0 = time.monotonic()
        st, r1, _ = _social(fake_auth, "rt-x0")        # scripted errors did not consume rt-x0
        assert st == 200 and time.monotonic() - t0 >= 0.3
        assert fake_auth.count(outcome="scripted") == 4
        fake_auth.revoke(lin)
        st, err, _ = _social(fake_auth, r1["refreshToken"])
        assert st == 400 and err["error"] == "invalid_grant"
        # wrong path, wrong content type
        assert _post(fake_auth.kiro_url + "/token", {"refreshToken": "x"})[0] == 404
        st, err, _ = _post(fake_auth.kiro_url + "/refreshToken", b"refreshToken=x", "text/plain")
        assert st == 400 and err["error"] == "invalid_request"


def test_fake_global_delay_callable(fake_auth):
        fake_auth.seed("rt-d0")
        fake_auth.delay = lambda: 0.2
        t0 = time.monotonic()
        assert _social(fake_auth, "rt-d0")[0] == 200
        assert time.monotonic() - t0 >= 0.2


# ---- the source generators ----------------------------------------------------------------------

NANOS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.mark.parametrize("key", kirocli_db.TOKEN_KEYS)
def test_kirocli_db_variants(tmp_path, key):
        exp = time.time() + 3600
        db = kirocli_db.make_db(tmp_path / "data.sqlite3", key, refresh_token="rt-db", expires_at=exp,
                                region="eu-central-1")
        tok = kirocli_db.read_token(db.path, key)
        assert tok == db.token and tok["refresh_token"] == "rt-db"
        assert NANOS_RE.match(tok["expires_at"]), tok["expires_at"]
        assert abs(kirocli_db.parse_rfc3339_usec(tok["expires_at"]) - exp * 1e6) < 1000
        conn = sqlite3.connect(db.path)
        cols = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(auth_kv)")}
        assert cols == {"key": "TEXT", "value": "TEXT"}
        cols = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(state)")}
        assert cols == {"key": "TEXT", "value": "BLOB"}
        prof = conn.execute("SELECT value FROM state WHERE key='api.codewhisperer.profile'").fetchone()[0]
        assert isinstance(prof, bytes) and json.loads(prof)["arn"].split(":")[3] == "eu-central-1"
        reg_key = kirocli_db.REGISTRATION_KEYS.get(key)
        if reg_key:
                reg = json.loads(conn.execute("SELECT value FROM auth_kv WHERE key=?", (reg_key,)).fetchone()[0])
                assert {"client_id", "client_secret", "client_secret_expires_at", "region"} <= set(reg)
        conn.close()
        if key == "kirocli:social:token":
                assert tok["profile_arn"].startswith("arn:aws:codewhisperer:eu-central-1:")
        else:
                assert tok["region"] == "eu-central-1"


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_kirocli_db_pending_wal(tmp_path, mode):
        key = "kirocli:odic:token"
        db = kirocli_db.make_db(tmp_path / "data.sqlite3", key, refresh_token="rt-wal", pending_wal=mode)
        try:
                wal = tmp_path / "data.sqlite3-wal"
                assert wal.exists() and wal.stat().st_size > 0
                assert b"rt-wal" in wal.read_bytes()
                assert b"rt-wal\"" not in db.path.read_bytes()

                # A copy of only the main file does not have the current row...
                only_main = tmp_path / "main-only.sqlite3"
                shutil.copyfile(db.path, only_main)
                conn = sqlite3.connect(only_main)
                row = conn.execute("SELECT value FROM auth_kv WHERE key=?", (key,)).fetchone()
                conn.close()
                if mode == "insert":
                        assert row is None
                else:
                        assert json.loads(row[0])["refresh_token"] == "rt-wal-old"

                # ...a backup-API copy (what kiroctl does) has it.
                src = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
                backup = tmp_path / "backup.sqlite3"
                dst = sqlite3.connect(backup)
                src.backup(dst)
                src.close()
                dst.close()
                conn = sqlite3.connect(backup)
                row = conn.execute("SELECT value FROM auth_kv WHERE key=?", (key,)).fetchone()
                conn.close()
                assert json.loads(row[0])["refresh_token"] == "rt-wal"
                # and so does serialize() (a sealed-memfd image as kiroctl would send)
                src = sqlite3.connect(f"file:{db.path}?mode=ro", uri=True)
                image = src.serialize()
                src.close()
                assert b"rt-wal\"" in image
        finally:
                db.close()
        # The WAL survives until the holder closes.
        assert kirocli_db.read_token(db.path, key)["refresh_token"] == "rt-wal"


def test_kirocli_db_broken_variants(tmp_path):
        with pytest.raises(sqlite3.DatabaseError):
                kirocli_db.make_non_sqlite(tmp_path / "text.sqlite3")
                sqlite3.connect(tmp_path / "text.sqlite3").execute("SELECT * FROM auth_kv").fetchall()
        kirocli_db.make_corrupt_db(tmp_path / "corrupt.sqlite3", refresh_token="rt-corrupt")
        kirocli_db.make_empty_file(tmp_path / "empty.sqlite3")
        assert (tmp_path / "empty.sqlite3").stat().st_size == 0
        db = kirocli_db.make_db_without_token(tmp_path / "notoken.sqlite3")
        for key in kirocli_db.TOKEN_KEYS:
                assert kirocli_db.read_token(db.path, key) is None

        locked = kirocli_db.make_locked_db(tmp_path / "locked.sqlite3", refresh_token="rt-locked")
        try:
                conn = sqlite3.connect(f"file:{locked.path}?mode=ro", uri=True, timeout=0.2)
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                        conn.execute("SELECT value FROM auth_kv").fetchall()
                conn.close()
        finally:
                locked.close()
        assert kirocli_db.read_token(locked.path, "kirocli:social:token")["refresh_token"] == "rt-locked"


def test_kiroide_generators(tmp_path):
        f = kiroide.write_social(tmp_path, refresh_token="rt-ide", provider="Github")
        tok = json.loads(f.token_path.read_text())
        assert tok["authMethod"] == "social" and tok["provider"] == "Github"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", tok["expiresAt"])
        assert {"accessToken", "refreshToken", "profileArn", "expiresAt"} <= set(tok)

        d = tmp_path / "idc"
        d.mkdir()
        f = kiroide.write_idc(d, refresh_token="rt-idc", client_id="cid", client_secret="cs")
        tok = json.loads(f.token_path.read_text())
        assert tok["authMethod"] == "IdC" and tok["provider"] == "BuilderId"
        assert f.registration_path.name == tok["clientIdHash"] + ".json"
        reg = json.loads(f.registration_path.read_text())
        assert reg["clientId"] == "cid" and reg["clientSecret"] == "cs"
        assert kirocli_db.parse_rfc3339_usec(reg["expiresAt"]) > time.time() * 1e6

        d = tmp_path / "bad"
        d.mkdir()
        f = kiroide.write_missing_field(d, "refreshToken")
        assert "refreshToken" not in json.loads(f.token_path.read_text())
        f = kiroide.write_wrong_type(d, "expiresAt", 12345)
        assert json.loads(f.token_path.read_text())["expiresAt"] == 12345
        f = kiroide.write_expired_registration(d)
        reg = json.loads(f.registration_path.read_text())
        assert kirocli_db.parse_rfc3339_usec(reg["expiresAt"]) < time.time() * 1e6


def test_parse_rfc3339_usec():
        assert kirocli_db.parse_rfc3339_usec("1970-01-01T00:00:01.123456789Z") == 1_123_456
        assert kirocli_db.parse_rfc3339_usec("1970-01-01T00:00:01Z") == 1_000_000
        assert kirocli_db.parse_rfc3339_usec("1970-01-01T01:00:01.5+01:00") == 1_500_000
        assert kirocli_db.rfc3339_nanos(1.5) == "1970-01-01T00:00:01.500000000Z"
