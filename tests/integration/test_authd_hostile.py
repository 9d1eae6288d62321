# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-authd against hostile input over the bus (issue 9 items 3 and 4): file descriptors that could
block the daemon or change under it, SQLite databases built to hang it, and regions built to redirect
the refresh (with the refresh token) or the prompts to another host. The real daemon on a private bus
with the real policy; Import() is called directly, as any admin could, not through kiroctl."""

import json
import os
import socket
import sqlite3
import time

import pytest

import dbusmini
import kirodtest
from kirodtest import AUTHD_BIN, ERROR_PREFIX, INVALID_ARGS, TEST_ADMIN

pytestmark = pytest.mark.skipif(not AUTHD_BIN.exists(), reason=f"needs {AUTHD_BIN} (build first)")

INVALID_SOURCE = ERROR_PREFIX + "InvalidSource"
HOSTILE_REGIONS = ["evil.example#", "attacker.example/x#", "us-east-1.evil.example", "us-east-1@evil.example"]


def import_fd(dbus, fmt, fd, *, user="root", timeout=20, **options):
        opts = {k: dbusmini.Variant("s" if isinstance(v, str) else "b", v) for k, v in options.items()}
        return dbus("Import", "sha{sv}t", [fmt, fd, opts, 0], user=user, timeout=timeout)[0]


def import_bytes(dbus, fmt, data, **kw):
        fd = kirodtest.sealed_memfd(data if isinstance(data, bytes) else data.encode())
        try:
                return import_fd(dbus, fmt, fd, **kw)
        finally:
                os.close(fd)


def refused(fn, *args, **kw):
        with pytest.raises(dbusmini.DBusError) as e:
                fn(*args, **kw)
        return e.value


def responsive(dbus):
        """The daemon still answers at once."""
        t = time.monotonic()
        dbus("ListCredentials", "t", [0], timeout=5)
        assert time.monotonic() - t < 2


def db_bytes(tmp_path, sql):
        path = tmp_path / f"db-{time.monotonic_ns()}.sqlite3"
        c = sqlite3.connect(path)
        c.executescript(sql)
        c.commit()
        c.close()
        return path.read_bytes()


def social_token(region="us-east-1", **extra):
        return json.dumps(dict({"access_token": "at-h", "refresh_token": "rt-h", "region": region,
                                "expires_at": "2031-01-01T00:00:00Z"}, **extra))


# ---- file descriptors (item 3) --------------------------------------------------------------------

def test_import_refuses_fifo_socket_device_and_writable_memfd(authd, dbus, scratch):
        a = authd()
        before = a.snapshot()

        # A FIFO whose write end stays open: reading it would never end.
        fifo = scratch / "fifo"
        os.mkfifo(fifo)
        fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        try:
                t = time.monotonic()
                e = refused(import_fd, dbus, "refresh-token", fd)
                assert time.monotonic() - t < 5
        finally:
                os.close(fd)
        assert e.name == INVALID_SOURCE and "regular file" in e.message, e

        s1, s2 = socket.socketpair()
        try:
                e = refused(import_fd, dbus, "refresh-token", s1.fileno())
        finally:
                s1.close()
                s2.close()
        assert e.name == INVALID_SOURCE and "regular file" in e.message, e

        fd = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)
        try:
                e = refused(import_fd, dbus, "refresh-token", fd)
        finally:
                os.close(fd)
        assert e.name == INVALID_SOURCE and "regular file" in e.message, e

        # A memfd the sender can still write (no seals at all, or some of them).
        for flags, seals in ((os.MFD_CLOEXEC, 0),
                             (os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING, 0),
                             (os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING, 0x0004 | 0x0008)):   # SHRINK | GROW
                fd = os.memfd_create("hostile", flags)
                try:
                        os.write(fd, b"rt-writable\n")
                        os.lseek(fd, 0, os.SEEK_SET)
                        if seals:
                                import fcntl
                                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
                        e = refused(import_fd, dbus, "refresh-token", fd)
                finally:
                        os.close(fd)
                assert e.name == INVALID_SOURCE and "memfd not sealed" in e.message, e

        assert a.snapshot() == before
        responsive(dbus)

        # What kiroctl sends is taken, and so is a plain file.
        import_bytes(dbus, "refresh-token", "rt-sealed\n", id="sealed")
        f = scratch / "rt"
        f.write_text("rt-file\n")
        fd = os.open(f, os.O_RDONLY | os.O_CLOEXEC)
        try:
                import_fd(dbus, "refresh-token", fd, id="file")
        finally:
                os.close(fd)
        assert set(a.credential_files()) == {"sealed", "file"}
        assert a.read_credential("file")["refresh_token"] == "rt-file"


# ---- SQLite databases (item 3) ---------------------------------------------------------------------

HOSTILE_DATABASES = [
        ("view-recursive-cte",
         "CREATE VIEW auth_kv(key, value) AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
         "SELECT 'kirocli:social:token', x FROM c WHERE x < 0;",
         "is a view"),
        ("state-view",
         "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
         "INSERT INTO auth_kv VALUES('kirocli:social:token', '" + social_token() + "');"
         "CREATE VIEW state(key, value) AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
         "SELECT 'api.codewhisperer.profile', x FROM c WHERE x < 0;",
         "is a view"),
        ("huge-row",
         "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
         "INSERT INTO auth_kv VALUES('kirocli:social:token', printf('%.*c', 3145728, 'x'));",
         "over 1024 KiB"),
]


@pytest.mark.parametrize("case", HOSTILE_DATABASES, ids=[c[0] for c in HOSTILE_DATABASES])
def test_hostile_database_fails_fast(authd, dbus, tmp_path, case):
        _, sql, words = case
        a = authd()
        data = db_bytes(tmp_path, sql)
        t = time.monotonic()
        e = refused(import_bytes, dbus, "kiro-cli-sqlite", data, user=TEST_ADMIN)
        elapsed = time.monotonic() - t
        # Before: the import never returned and kiro-authd sat at 100 % CPU, deaf to the bus.
        assert elapsed < 5, elapsed
        assert e.name in (INVALID_SOURCE, ERROR_PREFIX + "SourceTooLarge"), e
        assert words in e.message, e
        responsive(dbus)
        assert a.credential_files() == {}


def test_database_with_triggers_imports(authd, dbus, tmp_path):
        a = authd()
        data = db_bytes(tmp_path,
                        "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
                        "INSERT INTO auth_kv VALUES('kirocli:social:token', '" + social_token() + "');"
                        "CREATE TABLE log(x);"
                        "CREATE TRIGGER t AFTER INSERT ON auth_kv BEGIN INSERT INTO log WITH RECURSIVE "
                        "c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c; END;")
        import_bytes(dbus, "kiro-cli-sqlite", data, user=TEST_ADMIN)
        assert a.read_credential("kiro-social")["refresh_token"] == "rt-h"


# ---- regions (item 4) ------------------------------------------------------------------------------

@pytest.mark.parametrize("region", HOSTILE_REGIONS)
def test_import_with_hostile_region_is_refused(authd, dbus, tmp_path, region):
        a = authd()
        # In the IDE token file, in its profile ARN, in a kiro-cli database, and as the Import option.
        ide = {"refreshToken": "rt-i", "authMethod": "social", "provider": "Github", "region": region}
        e = refused(import_bytes, dbus, "kiro-ide-json", json.dumps(ide))
        assert e.name == INVALID_SOURCE and "not a valid region" in e.message, e
        ide = {"refreshToken": "rt-i", "authMethod": "social", "provider": "Github",
               "profileArn": f"arn:aws:codewhisperer:{region}:1:profile/X"}
        e = refused(import_bytes, dbus, "kiro-ide-json", json.dumps(ide))
        assert e.name == INVALID_SOURCE and "ARN" in e.message, e
        data = db_bytes(tmp_path, "CREATE TABLE auth_kv(key TEXT PRIMARY KEY, value TEXT);"
                                  "INSERT INTO auth_kv VALUES('kirocli:social:token', '"
                        + social_token(region).replace("'", "''") + "');")
        e = refused(import_bytes, dbus, "kiro-cli-sqlite", data)
        assert e.name == INVALID_SOURCE and "not a valid region" in e.message, e
        e = refused(import_bytes, dbus, "refresh-token", "rt-r", region=region)
        assert e.name == INVALID_ARGS, e
        assert a.credential_files() == {}
        # A real region passes the same way.
        import_bytes(dbus, "refresh-token", "rt-gov", region="us-gov-west-1")
        assert a.read_credential("kiro-social")["region"] == "us-gov-west-1"


def test_refresh_answer_with_hostile_profile_arn(authd, fake_auth, dbus):
        a = authd()
        hostile = "arn:aws:codewhisperer:attacker.example/x#:1:profile/X"
        lin = fake_auth.seed("rt-arn", profile_arn=hostile)
        import_bytes(dbus, "refresh-token", "rt-arn\n", id="arn")
        cid, token, _, extra = dbus("GetToken", "sst", ["kiro", "arn", 0])
        # The tokens are taken (the server rotated the refresh token: it must not be lost)...
        assert token == fake_auth.latest_access_token(lin)
        kirodtest.wait_until(lambda: a.read_credential("arn")["refresh_token"] == fake_auth.latest_refresh_token(lin),
                             timeout=5, what="the rotated refresh token on disk")
        # ...the ARN is not: the proxy's upstream region stays a real one.
        assert extra["region"] == "us-east-1", extra
        assert "attacker" not in json.dumps(extra)
        assert "attacker" not in json.dumps(a.read_credential("arn"))
        assert "Ignoring the profile ARN of the refresh answer for 'arn'" in a.log_text()


def test_stored_credential_with_hostile_region_not_loaded(authd, dbus):
        a = authd()
        import_bytes(dbus, "refresh-token", "rt-s\n", id="good")
        a.stop()
        data = a.read_credential("good")
        data["id"] = "bad"
        data["region"] = "evil.example#"
        path = a.credentials_dir / "bad.json"
        path.write_text(json.dumps(data))
        os.chown(path, a.credentials_dir.stat().st_uid, a.credentials_dir.stat().st_gid)
        os.chmod(path, 0o600)
        a.start()
        paths = dbus("ListCredentials", "t", [0])[0]
        assert [p.rsplit("/", 1)[-1] for p in paths] == ["good"], paths
        assert "'region' is not a valid region" in a.log_text()


def test_oversized_refresh_answer(authd, fake_auth, dbus, kiroctl):
        """A server answering with more than the 1 MiB cap: the transfer is cut off and reported, and the
        daemon (under ASan) survives wiping what it had buffered (it used to wipe past the buffer)."""
        a = authd()
        lin = fake_auth.seed("rt-big")
        import_bytes(dbus, "refresh-token", "rt-big\n", id="big")
        fake_auth.script([{"status": 500, "pad": 3 << 20}])
        refused(dbus, "GetToken", "sst", ["kiro", "big", 0])
        responsive(dbus)
        assert a.proc.poll() is None
        entry = [c for c in json.loads(kiroctl("status", "--json").stdout) if c["id"] == "big"][0]
        assert "answer too large" in entry["last_error"], entry
        # The next attempt works, with the same refresh token (nothing was lost).
        fake_auth.clear_script()
        dbus("Refresh", "t", [0], path=kirodtest.CREDENTIAL_PREFIX + "/big", interface=kirodtest.CREDENTIAL_IFACE)
        kirodtest.wait_until(lambda: a.read_credential("big")["refresh_token"] == fake_auth.latest_refresh_token(lin),
                             timeout=10, what="the refresh after the oversized answer")
