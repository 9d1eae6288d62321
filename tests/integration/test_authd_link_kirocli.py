"""Issue 17 item "Linked credentials", the kiro-cli SQLite part: `kiroctl import --from-kiro-cli --link`
makes the credential follow kiro-cli's database through a directory fd kiroctl passes. kiro-authd takes
kiro-cli's new logins of the same account within a second, writes its own rotated tokens back (one UPDATE
of the token row, unknown fields and every other row kept, rollback-journal and WAL databases), retries a
write-back the database's lock refused without losing the new refresh token, and stops following a
database that was deleted, broken, replaced by a symlink, logged out or logged in as another account."""

import json
import os
import sqlite3
import time

import pytest

import kirocli_db
from kirodtest import TEST_ADMIN, wait_until
from test_authd import get_token, only, status

ARN_A = "arn:aws:codewhisperer:us-east-1:111122223333:profile/ACCOUNTA"
ARN_B = "arn:aws:codewhisperer:us-east-1:444455556666:profile/ACCOUNTB"
KEY = "kirocli:social:token"
FUTURE = {"kept": [1, 2, 3], "note": "a field kirod does not know"}


@pytest.fixture
def cli_dir(scratch):
        # kiro-authd runs as its own user (kiro-auth): it needs read, write and search rights on the
        # directory and the file (docs/kiroctl.md "Linked credentials"). Here: a shared directory.
        d = scratch / "kiro-cli"
        d.mkdir()
        os.chmod(d, 0o777)
        return d


def _connect(path):
        return sqlite3.connect(path, isolation_level=None, timeout=5)


def _make(cli_dir, rt, *, wal=False):
        """A kiro-cli database with a social login of account A, an unknown field in the token JSON,
        another auth_kv key, state and conversation rows."""
        path = cli_dir / "data.sqlite3"
        db = kirocli_db.make_db(path, KEY, refresh_token=rt, access_token=f"at-{rt}",
                                expires_at=time.time() + 7200, profile_arn_value=ARN_A,
                                extra_auth_kv={"kirocli:some-other-key": {"x": "unchanged"}})
        conn = _connect(path)
        if wal:
                assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        tok = dict(db.token, someFutureField=FUTURE)
        conn.execute("UPDATE auth_kv SET value=? WHERE key=?", (json.dumps(tok), KEY))
        for i in range(3):
                conn.execute("INSERT INTO conversations VALUES (?, ?)", (f"/home/u/p{i}", json.dumps({"h": [i] * 50})))
        conn.close()
        for p in db.files():
                os.chmod(p, 0o666)
        return path


def _token(path):
        return kirocli_db.read_token(path, KEY)


def _relogin(path, **fields):
        """What kiro-cli does on a login or `kiro-cli debug refresh-auth-token`: rewrites the token row."""
        conn = _connect(path)
        tok = json.loads(conn.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,)).fetchone()[0])
        tok.update(fields)
        conn.execute("UPDATE auth_kv SET value=? WHERE key=?", (json.dumps(tok), KEY))
        conn.close()


def _other_rows(path):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
                rows = {t: conn.execute(f"SELECT key, value FROM {t} ORDER BY key").fetchall()
                        for t in ("state", "conversations")}
                rows["auth_kv"] = conn.execute("SELECT key, value FROM auth_kv WHERE key != ? ORDER BY key",
                                               (KEY,)).fetchall()
                rows["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
                return rows
        finally:
                conn.close()


def _link(kiroctl):
        return only(status(kiroctl)).get("link")


def _import_linked(kiroctl, path):
        kiroctl("import", "--from-kiro-cli", "--db", path, "--link", user=TEST_ADMIN)
        c = only(status(kiroctl))
        assert c["link"] == "following", c
        return c["id"]


@pytest.mark.parametrize("mode", ["rollback", "wal"])
def test_linked_kirocli_followed_and_written_back(authd, fake_auth, kiroctl, dbus, cli_dir, mode):
        a = authd()
        fake_auth.seed("rt-cli-0")
        path = _make(cli_dir, "rt-cli-0", wal=mode == "wal")
        # kiro-cli running: a connection of its own stays open (in WAL mode the -wal file stays).
        holder = _connect(path)
        holder.execute("SELECT count(*) FROM auth_kv").fetchone()
        try:
                cid = _import_linked(kiroctl, path)
                out = kiroctl("status", cid).stdout
                assert "linked: following" in out and "Link: " not in out
                assert only(status(kiroctl))["link_message"] == ""
                before_rows = _other_rows(path)
                assert before_rows["journal_mode"] == ("wal" if mode == "wal" else "delete")
                assert get_token(dbus, cid)["access_token"] == "at-rt-cli-0"

                # kiro-cli logs in again (same account, new tokens): taken within a second.
                lin1 = fake_auth.seed("rt-cli-1")
                exp1 = time.time() + 5000
                t0 = time.monotonic()
                _relogin(path, refresh_token="rt-cli-1", access_token="at-cli-1",
                         expires_at=kirocli_db.rfc3339_nanos(exp1))
                wait_until(lambda: a.read_credential(cid)["refresh_token"] == "rt-cli-1", timeout=1.0,
                           what="kiro-cli's new refresh token in kiro-authd")
                picked = time.monotonic() - t0
                t = get_token(dbus, cid)
                assert t["access_token"] == "at-cli-1"
                assert abs(t["expires_usec"] - int(exp1 * 1e6)) < 1_000_000
                assert _link(kiroctl) == "following"

                # kiro-cli saving a conversation: the login's rows are the same, so the database is not
                # read whole again (and nothing changes).
                conn = _connect(path)
                conn.execute("INSERT INTO conversations VALUES (?, ?)", ("/home/u/new", json.dumps({"h": [9]})))
                conn.close()
                wait_until(lambda: "changed, but not its login" in a.log_path.read_text(), timeout=2,
                           what="a change of other rows seen and skipped")
                assert a.read_credential(cid)["refresh_token"] == "rt-cli-1"
                before_rows = _other_rows(path)

                # Our refresh rotates the token: the row gets it, nothing else changes.
                kiroctl("refresh", cid)
                new_rt = fake_auth.latest_refresh_token(lin1)
                assert new_rt != "rt-cli-1"
                wait_until(lambda: _token(path)["refresh_token"] == new_rt, timeout=5,
                           what="the rotated refresh token in kiro-cli's database")
                tok = _token(path)
                cred = a.read_credential(cid)
                assert cred["refresh_token"] == new_rt
                assert tok["access_token"] == fake_auth.latest_access_token(lin1) == cred["access_token"]
                assert abs(kirocli_db.parse_rfc3339_usec(tok["expires_at"]) -
                           kirocli_db.parse_rfc3339_usec(cred["expires_at"])) < 1000, (tok, cred["expires_at"])
                assert kirocli_db.parse_rfc3339_usec(tok["expires_at"]) > int(exp1 * 1e6) - 10**6 * 3600
                assert tok["someFutureField"] == FUTURE
                assert tok["profile_arn"] == ARN_A and tok["region"] == "us-east-1"
                assert _other_rows(path) == before_rows
                # kiro-cli's own connection still reads the new row.
                assert json.loads(holder.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,))
                                  .fetchone()[0])["refresh_token"] == new_rt
                # Our own write-back is no new login: still following, nothing adopted back.
                time.sleep(0.3)
                assert _link(kiroctl) == "following"
                assert a.read_credential(cid)["refresh_token"] == new_rt
                # Idle: our own reading causes no event that makes us read again.
                reads = a.log_path.read_text().count("reading its source")
                time.sleep(0.5)
                assert a.log_path.read_text().count("reading its source") == reads
        finally:
                holder.close()
        print(f"picked up in {picked * 1000:.0f} ms")


@pytest.mark.parametrize("mode", ["rollback", "wal"])
def test_linked_kirocli_locked_write_back_is_retried(authd, fake_auth, kiroctl, cli_dir, mode):
        a = authd()
        lin = fake_auth.seed("rt-lock-0")
        path = _make(cli_dir, "rt-lock-0", wal=mode == "wal")
        cid = _import_linked(kiroctl, path)
        before_rows = _other_rows(path)

        holder = _connect(path)
        holder.execute("BEGIN EXCLUSIVE")
        try:
                t0 = time.monotonic()
                kiroctl("refresh", cid)
                took = time.monotonic() - t0
                new_rt = fake_auth.latest_refresh_token(lin)
                assert new_rt != "rt-lock-0"
                # Never lost: in our store at once, and said loudly while the database refuses it.
                assert a.read_credential(cid)["refresh_token"] == new_rt
                wait_until(lambda: _link(kiroctl) == "write-pending", timeout=3, what="link state write-pending")
                out = kiroctl("status", cid).stdout
                assert "linked: write-pending" in out and "the database is locked" in out, out
                assert "retrying" in only(status(kiroctl))["link_message"]
                time.sleep(1.5)         # retried meanwhile, still refused
                assert holder.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,)).fetchone() is not None
                assert json.loads(holder.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,))
                                  .fetchone()[0])["refresh_token"] == "rt-lock-0"
        finally:
                holder.execute("ROLLBACK")
                holder.close()
        # The lock is gone: the next retry writes it (retries back off 1, 2, 4 s while it is locked).
        t_release = time.monotonic()
        wait_until(lambda: _token(path)["refresh_token"] == new_rt, timeout=10,
                   what="the rotated refresh token in the database after the lock")
        print(f"written {time.monotonic() - t_release:.1f} s after the lock was released")
        wait_until(lambda: _link(kiroctl) == "following", timeout=2, what="link state following")
        assert _token(path)["someFutureField"] == FUTURE
        assert _other_rows(path) == before_rows
        assert a.read_credential(cid)["refresh_token"] == new_rt
        assert took < 5, took
        log = a.log_path.read_text()
        assert "cannot be written into its linked source" in log and "locked" in log
        assert new_rt not in log and "rt-lock-0" not in log


def test_linked_kirocli_changed_while_write_pending_is_not_overwritten(authd, fake_auth, kiroctl, cli_dir):
        """kiro-cli logs in again while our write-back waits for its lock: its login wins (same account),
        ours is not written over it."""
        a = authd()
        fake_auth.seed("rt-race-0")
        path = _make(cli_dir, "rt-race-0")
        cid = _import_linked(kiroctl, path)
        holder = _connect(path)
        holder.execute("BEGIN EXCLUSIVE")
        try:
                kiroctl("refresh", cid)
                ours = a.read_credential(cid)["refresh_token"]
                assert ours != "rt-race-0"
                wait_until(lambda: _link(kiroctl) == "write-pending", timeout=3, what="write-pending")
                fake_auth.seed("rt-race-cli")
                tok = json.loads(holder.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,)).fetchone()[0])
                tok.update(refresh_token="rt-race-cli", access_token="at-race-cli")
                holder.execute("UPDATE auth_kv SET value=? WHERE key=?", (json.dumps(tok), KEY))
                holder.execute("COMMIT")
        finally:
                holder.close()
        wait_until(lambda: a.read_credential(cid)["refresh_token"] == "rt-race-cli", timeout=3,
                   what="kiro-cli's login taken")
        wait_until(lambda: _link(kiroctl) == "following", timeout=2, what="following")
        time.sleep(1.5)         # past a retry: nothing written over kiro-cli's login
        assert _token(path)["refresh_token"] == "rt-race-cli"


def _symlink(path, scratch):
        elsewhere = scratch / "elsewhere.sqlite3"
        kirocli_db.make_db(elsewhere, KEY, refresh_token="rt-via-symlink", profile_arn_value=ARN_A)
        os.chmod(elsewhere, 0o666)
        path.unlink()
        os.symlink(elsewhere, path)
        return elsewhere


@pytest.mark.parametrize("bad", ["deleted", "truncated", "garbage", "symlink", "other-account", "logged-out"])
def test_linked_kirocli_source_gone_bad_keeps_the_login(authd, fake_auth, kiroctl, cli_dir, scratch, bad):
        a = authd()
        lin = fake_auth.seed("rt-bad-0")
        path = _make(cli_dir, "rt-bad-0")
        cid = _import_linked(kiroctl, path)
        elsewhere = None

        if bad == "deleted":
                path.unlink()
                expect = "source-missing"
        elif bad == "truncated":
                with open(path, "r+b") as fh:
                        fh.truncate(50)
                expect = "source-invalid"
        elif bad == "garbage":
                data = bytearray(path.read_bytes())
                page = int.from_bytes(data[16:18], "big")
                data[page:] = bytes((i * 7 + 0x5A) & 0xFF for i in range(len(data) - page))
                path.write_bytes(bytes(data))
                expect = "source-invalid"
        elif bad == "symlink":
                elsewhere = _symlink(path, scratch)
                expect = "source-changed"
        elif bad == "other-account":
                fake_auth.seed("rt-other")
                _relogin(path, refresh_token="rt-other", access_token="at-other", profile_arn=ARN_B)
                expect = "source-changed"
        else:
                conn = _connect(path)
                conn.execute("DELETE FROM auth_kv WHERE key=?", (KEY,))
                conn.close()
                expect = "source-changed"
        wait_until(lambda: _link(kiroctl) == expect, timeout=1.0, what=f"link state {expect}")
        c = only(status(kiroctl))
        assert c["state"] == "active", c
        assert f"linked: {expect}" in kiroctl("status", cid).stdout
        assert a.read_credential(cid)["refresh_token"] == "rt-bad-0"       # nothing lost, nothing adopted
        # Why, in the property and in kiroctl status.
        why = {"deleted": "deleted or renamed", "truncated": "database", "garbage": "database",
               "symlink": "symlink", "other-account": "another account logged in",
               "logged-out": "kiro-cli logged out"}[bad]
        assert why in c["link_message"], c["link_message"]
        assert f"Link: " in kiroctl("status", cid).stdout

        snapshot = path.read_bytes() if path.exists() and not path.is_symlink() else None
        kiroctl("refresh", cid)
        assert fake_auth.rotations(lin) == 1
        time.sleep(0.3)
        assert _link(kiroctl) == expect
        # Nothing is written into a source that no longer holds our login.
        if elsewhere is not None:
                assert kirocli_db.read_token(elsewhere, KEY)["refresh_token"] == "rt-via-symlink"
        elif bad == "other-account":
                assert _token(path)["refresh_token"] == "rt-other"
        elif bad == "deleted":
                assert not path.exists()
        elif bad == "logged-out":
                assert _token(path) is None
        else:
                assert path.read_bytes() == snapshot


def test_linked_kirocli_follows_again_after_relogin(authd, fake_auth, kiroctl, cli_dir):
        """Logged out in kiro-cli, then logged in again to the same account: followed again."""
        a = authd()
        fake_auth.seed("rt-back-0")
        path = _make(cli_dir, "rt-back-0")
        cid = _import_linked(kiroctl, path)
        conn = _connect(path)
        row = conn.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,)).fetchone()[0]
        conn.execute("DELETE FROM auth_kv WHERE key=?", (KEY,))
        wait_until(lambda: _link(kiroctl) == "source-changed", timeout=1.0, what="source-changed")
        fake_auth.seed("rt-back-1")
        tok = dict(json.loads(row), refresh_token="rt-back-1", access_token="at-back-1")
        conn.execute("INSERT INTO auth_kv VALUES (?, ?)", (KEY, json.dumps(tok)))
        conn.close()
        wait_until(lambda: _link(kiroctl) == "following", timeout=1.0, what="following again")
        assert a.read_credential(cid)["refresh_token"] == "rt-back-1"


def test_owned_kirocli_import_never_touches_the_database(authd, fake_auth, kiroctl, cli_dir):
        authd()
        lin = fake_auth.seed("rt-own-0")
        path = _make(cli_dir, "rt-own-0", wal=True)
        main = path.read_bytes()
        kiroctl("import", "--from-kiro-cli", "--db", path, user=TEST_ADMIN)
        assert path.read_bytes() == main
        # (kiroctl's read of a WAL database leaves SQLite's -shm and an empty -wal behind, as any reader.)
        before = {p.name: p.read_bytes() for p in cli_dir.iterdir()}
        c = only(status(kiroctl))
        assert c["link"] == "", c
        assert "linked" not in kiroctl("status", c["id"]).stdout
        kiroctl("refresh", c["id"])
        assert fake_auth.rotations(lin) == 1
        time.sleep(0.3)
        assert {p.name: p.read_bytes() for p in cli_dir.iterdir()} == before


def test_link_refused_where_kiro_authd_has_no_access(authd, fake_auth, kiroctl, scratch):
        """The system service's user cannot reach the directory: the import fails before storing anything,
        with the commands that fix it. kiroctl (the directory's owner) opened it; kiro-authd, running as
        kiro-auth, may not search it, and the fd gives it no such right."""
        authd()
        import pwd
        d = scratch / "private-kiro-cli"
        d.mkdir()
        path = _make(d, "rt-priv-0")
        pw = pwd.getpwnam(TEST_ADMIN)
        for p in [d, *d.iterdir()]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(d, 0o700)
        os.chmod(path, 0o600)
        p = kiroctl("import", "--from-kiro-cli", "--db", path, "--link", user=TEST_ADMIN, check=False)
        assert p.returncode == 1, p
        err = p.stderr
        assert "kiro-auth" in err and "Permission denied" in err, err
        assert "systemctl --user enable --now kiro-authd.service" in err, err
        assert f"setfacl -m u:kiro-auth:rwx '{d}'" in err, err
        assert f"setfacl -m u:kiro-auth:rw '{d}/data.sqlite3'" in err, err
        assert status(kiroctl) == {}
        # Without --link the same database imports (kiroctl reads it and passes a copy).
        kiroctl("import", "--from-kiro-cli", "--db", path, user=TEST_ADMIN)
        assert only(status(kiroctl))["link"] == ""


def test_link_only_with_a_login_source(kiroctl, authd, scratch):
        authd()
        f = scratch / "rt.txt"
        f.write_text("rt-bare\n")
        os.chmod(f, 0o644)
        p = kiroctl("import", "--refresh-token-file", f, "--link", user=TEST_ADMIN, check=False)
        assert p.returncode == 2 and "--link" in p.stderr


def test_link_needs_no_rights_above_the_directory(authd, fake_auth, kiroctl, scratch):
        """Access to kiro-cli's directory and database is enough: kiro-authd reaches them only through the
        fd, never by the path, so a home it cannot search (0700) is no obstacle and stays closed. (SQLite
        given /proc/self/fd/N/data.sqlite3 would resolve it to the real path and fail here.)"""
        import pwd
        a = authd()
        lin = fake_auth.seed("rt-home-0")
        home = scratch / "home-0700"
        home.mkdir()
        d = home / "kiro-cli"
        d.mkdir()
        os.chmod(d, 0o777)      # what setfacl -m u:kiro-auth:rwx would grant on this directory alone
        path = _make(d, "rt-home-0", wal=True)
        pw = pwd.getpwnam(TEST_ADMIN)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
        cid = _import_linked(kiroctl, path)
        kiroctl("refresh", cid)
        new_rt = fake_auth.latest_refresh_token(lin)
        wait_until(lambda: _token(path)["refresh_token"] == new_rt, timeout=5, what="written through the fd")
        assert a.read_credential(cid)["refresh_token"] == new_rt
        assert _link(kiroctl) == "following"
