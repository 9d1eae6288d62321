"""Linked credentials survive a kiro-authd restart (issue 17: "so kiro-cli or the IDE and kirod never log
each other out"). The link is stored in the credential's record and its directory fd in the service
manager's fd store (FDSTORE=1, FDNAME=link-<id>); here the test is the service manager: it binds
NOTIFY_SOCKET, keeps the fds kiro-authd sends (kirodtest.FdStore) and passes them back at the next start
as systemd does (fds 3..., LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID). A start without them (a stop and
start, a reboot) leaves the credential `detached`: it keeps serving its login, says how to link it
again, and a re-link with --replace writes its login back into the source."""

import json
import os
import signal
import sqlite3
import time

import pytest

import kirocli_db
import kiroide
from kirodtest import TEST_ADMIN, wait_until
from test_authd import get_token, only, status

ARN_A = "arn:aws:codewhisperer:us-east-1:111122223333:profile/ACCOUNTA"
KEY = "kirocli:social:token"
DETACHED_ID = "e89cd0a166bf4276be96bfadfb5c55d5"


@pytest.fixture
def src_dir(scratch):
        # kiro-authd runs as kiro-auth: a directory it may read and write (docs/kiroctl.md).
        d = scratch / "src"
        d.mkdir()
        os.chmod(d, 0o777)
        return d


def _make_db(d, rt):
        path = d / "data.sqlite3"
        db = kirocli_db.make_db(path, KEY, refresh_token=rt, access_token=f"at-{rt}",
                                expires_at=time.time() + 7200, profile_arn_value=ARN_A)
        for p in db.files():
                os.chmod(p, 0o666)
        return path


def _db_token(path):
        return kirocli_db.read_token(path, KEY)


def _relogin(path, **fields):
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)
        tok = json.loads(conn.execute("SELECT value FROM auth_kv WHERE key=?", (KEY,)).fetchone()[0])
        tok.update(fields)
        conn.execute("UPDATE auth_kv SET value=? WHERE key=?", (json.dumps(tok), KEY))
        conn.close()


def _json_log(a):
        out = []
        for line in a.log_text().splitlines():
                try:
                        out.append(json.loads(line))
                except ValueError:
                        continue
        return out


def test_kirocli_link_survives_restart_and_remove_unstores_it(authd, fake_auth, kiroctl, src_dir):
        a = authd()
        fake_auth.seed("rt-r-0")
        path = _make_db(src_dir, "rt-r-0")
        kiroctl("import", "--from-kiro-cli", "--db", path, "--link", user=TEST_ADMIN)
        c = only(status(kiroctl))
        cid, name = c["id"], f"link-{c['id']}"
        assert c["link"] == "following"
        a.collect_notify()
        assert a.fdstore.log == [("FDSTORE", name)], a.fdstore.log
        assert a.fdstore.names() == [name]
        assert a.read_credential(cid)["link"] == {"format": "kiro-cli-sqlite", "name": "data.sqlite3",
                                                 "path": str(path),
                                                 "source_sha256": a.read_credential(cid)["link"]["source_sha256"]}

        # systemctl restart: the store comes back. No FDSTOREREMOVE at shutdown.
        a.stop()
        a.start(fdstore=True)
        c = only(status(kiroctl))
        assert c["link"] == "following" and c["link_message"] == "", c
        assert c["source"] == str(path)
        assert "follows its source" in a.log_text() and "through the directory fd the service manager kept" in a.log_text()
        assert ("FDSTOREREMOVE", name) not in a.fdstore.log

        # kiro-cli logs in again after the restart: taken within a second.
        lin = fake_auth.seed("rt-r-1")
        t0 = time.monotonic()
        _relogin(path, refresh_token="rt-r-1", access_token="at-r-1")
        wait_until(lambda: a.read_credential(cid)["refresh_token"] == "rt-r-1", timeout=1.0,
                   what="kiro-cli's new login in kiro-authd after the restart")
        print(f"picked up in {(time.monotonic() - t0) * 1000:.0f} ms after the restart")

        # Our refresh: the database gets the rotated token.
        kiroctl("refresh", cid)
        new_rt = fake_auth.latest_refresh_token(lin)
        assert new_rt != "rt-r-1"
        wait_until(lambda: _db_token(path)["refresh_token"] == new_rt, timeout=5,
                   what="the rotated refresh token in kiro-cli's database")
        assert only(status(kiroctl))["link"] == "following"

        # A crash (Restart=on-failure) keeps the store too; then remove: the fd leaves the store.
        a.kill(signal.SIGKILL)
        a.start(fdstore=True)
        assert only(status(kiroctl))["link"] == "following"
        kiroctl("remove", cid)
        wait_until(lambda: (a.collect_notify(), ("FDSTOREREMOVE", name) in a.fdstore.log)[1], timeout=2,
                   what="FDSTOREREMOVE of the removed credential")
        assert a.fdstore.names() == []


def test_crash_while_write_pending_writes_back_after_restart(authd, fake_auth, kiroctl, src_dir):
        """kiro-cli holds its lock while kiro-authd refreshes and is then killed: the source still holds the
        refresh token that was rotated away. After the restart (fds back) the source is recognised as stale
        by the digest in the record, not taken as a newer login, and gets the new token."""
        a = authd()
        lin = fake_auth.seed("rt-c-0")
        path = _make_db(src_dir, "rt-c-0")
        kiroctl("import", "--from-kiro-cli", "--db", path, "--link", user=TEST_ADMIN)
        cid = only(status(kiroctl))["id"]
        holder = sqlite3.connect(path, isolation_level=None, timeout=5)
        holder.execute("BEGIN EXCLUSIVE")
        try:
                kiroctl("refresh", cid)
                ours = fake_auth.latest_refresh_token(lin)
                assert ours != "rt-c-0" and a.read_credential(cid)["refresh_token"] == ours
                wait_until(lambda: only(status(kiroctl))["link"] == "write-pending", timeout=3,
                           what="link state write-pending")
                a.kill(signal.SIGKILL)
        finally:
                holder.execute("ROLLBACK")
                holder.close()
        assert _db_token(path)["refresh_token"] == "rt-c-0"
        a.start(fdstore=True)
        wait_until(lambda: _db_token(path)["refresh_token"] == ours, timeout=3,
                   what="the rotated refresh token written into the database after the restart")
        assert a.read_credential(cid)["refresh_token"] == ours
        assert only(status(kiroctl))["link"] == "following"
        assert fake_auth.rotations(lin) == 1


def test_restart_without_fds_detaches_then_relink_restores(authd, fake_auth, kiroctl, dbus, src_dir):
        a = authd(start=False)
        a.extra_env["KIROD_LOG_FORMAT"] = "json"
        a.start()
        lin = fake_auth.seed("rt-d-0")
        path = _make_db(src_dir, "rt-d-0")
        kiroctl("import", "--from-kiro-cli", "--db", path, "--link", user=TEST_ADMIN)
        cid = only(status(kiroctl))["id"]
        name = f"link-{cid}"

        # A stop and start (or a reboot): no fds come back.
        a.stop()
        a.start()
        c = only(status(kiroctl))
        assert c["link"] == "detached", c
        relink = f"kiroctl import --from-kiro-cli --db '{path}' --link --replace --id {cid}"
        assert relink in c["link_message"], c["link_message"]
        assert "did not come back from the service manager" in c["link_message"]
        out = kiroctl("status", cid).stdout
        print(out)
        assert "linked: detached" in out and "Link: " in out and relink in out, out
        warn = [e for e in _json_log(a) if e.get("MESSAGE_ID") == DETACHED_ID]
        assert warn and warn[0]["KIROD_CREDENTIAL"] == cid and warn[0]["PRIORITY"] == "4", warn

        # Nothing lost: the credential serves its login and keeps its link in the record.
        assert c["state"] == "active"
        assert get_token(dbus, cid)["access_token"] == "at-rt-d-0"
        assert a.read_credential(cid)["refresh_token"] == "rt-d-0"
        assert a.read_credential(cid)["link"]["name"] == "data.sqlite3"

        # A refresh while detached goes on (kirod keeps working), loudly, and writes nothing there.
        kiroctl("refresh", cid)
        ours = fake_auth.latest_refresh_token(lin)
        assert ours != "rt-d-0" and a.read_credential(cid)["refresh_token"] == ours
        assert _db_token(path)["refresh_token"] == "rt-d-0"
        assert "refreshed while detached" in a.log_text()
        assert len([e for e in _json_log(a) if e.get("MESSAGE_ID") == DETACHED_ID]) >= 2

        # Re-link: the database still holds the token we replaced, so ours is written there (not the
        # stale one taken); the credential keeps its login and following again.
        a.collect_notify()
        before = len(a.fdstore.log)
        last_refresh = a.read_credential(cid)["health"]["last_refresh_at"]
        kiroctl("import", "--from-kiro-cli", "--db", path, "--link", "--replace", "--id", cid, user=TEST_ADMIN)
        c = only(status(kiroctl))
        assert c["link"] == "following", c
        assert a.read_credential(cid)["refresh_token"] == ours
        assert a.read_credential(cid)["health"]["last_refresh_at"] == last_refresh
        wait_until(lambda: _db_token(path)["refresh_token"] == ours, timeout=2,
                   what="our refresh token written into the stale database on re-link")
        a.collect_notify()
        assert a.fdstore.log[before:] == [("FDSTOREREMOVE", name), ("FDSTORE", name)], a.fdstore.log
        assert get_token(dbus, cid)["access_token"] == fake_auth.latest_access_token(lin)

        # And that link survives a restart again.
        a.stop()
        a.start(fdstore=True)
        assert only(status(kiroctl))["link"] == "following"


def test_ide_link_survives_restart_and_owned_replace_unstores(authd, fake_auth, kiroctl, src_dir):
        a = authd()
        lin = fake_auth.seed("rt-i-0")
        f = kiroide.write_social(src_dir, refresh_token="rt-i-0", expires_at=time.time() + 7200,
                                 profile_arn_value=ARN_A)
        os.chmod(f.token_path, 0o666)
        kiroctl("import", "--from-kiro-ide", "--file", f.token_path, "--link", user=TEST_ADMIN)
        cid = only(status(kiroctl))["id"]
        name = f"link-{cid}"
        a.stop()
        a.start(fdstore=True)
        assert only(status(kiroctl))["link"] == "following"
        kiroctl("refresh", cid)
        new_rt = fake_auth.latest_refresh_token(lin)
        wait_until(lambda: json.loads(f.token_path.read_text())["refreshToken"] == new_rt, timeout=5,
                   what="the rotated refresh token in the IDE's file after the restart")

        # An owned import replacing it: the link leaves the record and the store. (kiro-authd rewrote the
        # file as its own user, 0600.)
        os.chmod(f.token_path, 0o644)
        kiroctl("import", "--from-kiro-ide", "--file", f.token_path, "--replace", "--id", cid, user=TEST_ADMIN)
        c = only(status(kiroctl))
        assert c["link"] == "", c
        assert "link" not in a.read_credential(cid)
        wait_until(lambda: (a.collect_notify(), ("FDSTOREREMOVE", name) in a.fdstore.log)[1], timeout=2,
                   what="FDSTOREREMOVE after an owned --replace")
        assert a.fdstore.names() == []
        a.stop()
        a.start(fdstore=True)
        assert only(status(kiroctl))["link"] == ""


def test_unknown_stored_fds_are_closed_and_removed(authd, kiroctl, scratch):
        a = authd()
        # Fds in the store that no linked credential uses (a credential removed while kiro-authd was not
        # running, a file someone sent): closed and taken out of the store.
        d = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        a.fdstore.entries.append(("link-nosuch", d))
        a.stop()
        a.start(fdstore=True)
        wait_until(lambda: (a.collect_notify(), ("FDSTOREREMOVE", "link-nosuch") in a.fdstore.log)[1], timeout=2,
                   what="FDSTOREREMOVE of an unused stored fd")
        assert a.fdstore.names() == []
        assert "no linked credential uses it" in a.log_text()
        # kiro-authd keeps none of them open.
        fds = os.listdir(f"/proc/{a.pid}/fd")
        targets = {os.readlink(f"/proc/{a.pid}/fd/{n}") for n in fds if os.path.exists(f"/proc/{a.pid}/fd/{n}")}
        assert str(scratch) not in targets, targets
