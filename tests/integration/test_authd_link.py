"""Issue 17 item "Linked credentials", the Kiro IDE JSON part: `kiroctl import --from-kiro-ide --link`
makes the credential follow the IDE's token file through a directory fd kiroctl passes; kiro-authd
takes the IDE's newer logins, writes its own rotated tokens back (unknown fields kept) and stops
following a source that became a symlink, another account's, or was deleted."""

import json
import os
import time

import pytest

import kiroide
from kirodtest import TEST_ADMIN, wait_until
from test_authd import only, status

ARN_A = "arn:aws:codewhisperer:us-east-1:111122223333:profile/ACCOUNTA"
ARN_B = "arn:aws:codewhisperer:us-east-1:444455556666:profile/ACCOUNTB"


@pytest.fixture
def ide_dir(scratch):
        # kiro-authd runs as its own user: it needs access to the directory (docs/kiroctl.md "Linked
        # credentials"; with `--user` it is the user's own). Here: a shared directory.
        d = scratch / "sso-cache"
        d.mkdir()
        os.chmod(d, 0o777)
        return d


def _write_ide(path, tok):
        """Atomic replace, as the IDE does."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(tok))
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)


def _link(c):
        return c.get("link")


def test_linked_ide_file_is_followed_and_written_back(authd, fake_auth, kiroctl, ide_dir):
        a = authd()
        lin = fake_auth.seed("rt-ide-0")
        f = kiroide.write_social(ide_dir, refresh_token="rt-ide-0", expires_at=time.time() + 7200,
                                 profile_arn_value=ARN_A)
        tok = dict(f.token, someFutureField={"kept": [1, 2, 3]})
        _write_ide(f.token_path, tok)
        kiroctl("import", "--from-kiro-ide", "--file", f.token_path, "--link", user=TEST_ADMIN)
        c = only(status(kiroctl))
        cid = c["id"]
        assert _link(c) == "following", c
        assert "linked: following" in kiroctl("status", cid).stdout

        # The IDE refreshed on its own (a new login of the same account): picked up within a second.
        lin2 = fake_auth.seed("rt-ide-1")
        t0 = time.monotonic()
        _write_ide(f.token_path, dict(tok, refreshToken="rt-ide-1", accessToken="at-ide-1"))
        wait_until(lambda: a.read_credential(cid)["refresh_token"] == "rt-ide-1", timeout=1.0,
                   what="the IDE's new refresh token in kiro-authd")
        picked = time.monotonic() - t0
        assert a.read_credential(cid)["access_token"] == "at-ide-1"

        # Our refresh rotates the token: the IDE file gets it, everything else in it kept.
        kiroctl("refresh", cid)
        new_rt = fake_auth.latest_refresh_token(lin2)
        assert new_rt != "rt-ide-1"
        wait_until(lambda: json.loads(f.token_path.read_text())["refreshToken"] == new_rt, timeout=5,
                   what="the rotated refresh token in the IDE's file")
        data = json.loads(f.token_path.read_text())
        assert data["someFutureField"] == {"kept": [1, 2, 3]}
        assert data["profileArn"] == ARN_A and data["provider"] == tok["provider"]
        assert data["accessToken"] == fake_auth.latest_access_token(lin2)
        assert only(status(kiroctl))["state"] == "active"
        assert _link(only(status(kiroctl))) == "following"
        print(f"picked up in {picked * 1000:.0f} ms")


@pytest.mark.parametrize("bad", ["symlink", "other-account", "deleted", "truncated"])
def test_linked_source_gone_bad_keeps_the_login(authd, fake_auth, kiroctl, ide_dir, scratch, bad):
        a = authd()
        fake_auth.seed("rt-bad-0")
        f = kiroide.write_social(ide_dir, refresh_token="rt-bad-0", expires_at=time.time() + 7200,
                                 profile_arn_value=ARN_A)
        os.chmod(f.token_path, 0o644)
        kiroctl("import", "--from-kiro-ide", "--file", f.token_path, "--link", user=TEST_ADMIN)
        cid = only(status(kiroctl))["id"]
        before = a.read_credential(cid)

        if bad == "symlink":
                elsewhere = scratch / "elsewhere.json"
                elsewhere.write_text(json.dumps(dict(f.token, refreshToken="rt-via-symlink")))
                os.chmod(elsewhere, 0o644)
                f.token_path.unlink()
                os.symlink(elsewhere, f.token_path)
                expect = "source-changed"
        elif bad == "other-account":
                _write_ide(f.token_path, dict(f.token, refreshToken="rt-other", profileArn=ARN_B))
                expect = "source-changed"
        elif bad == "deleted":
                f.token_path.unlink()
                expect = "source-missing"
        else:
                with open(f.token_path, "r+") as fh:
                        fh.truncate(10)
                expect = "source-invalid"
        wait_until(lambda: _link(only(status(kiroctl))) == expect, timeout=1.0, what=f"link state {expect}")
        after = a.read_credential(cid)
        assert after["refresh_token"] == before["refresh_token"] == "rt-bad-0"       # nothing lost
        assert only(status(kiroctl))["state"] == "active"
        # Nothing is written into a source that no longer holds our login.
        kiroctl("refresh", cid)
        if bad == "symlink":
                assert "rt-via-symlink" in (scratch / "elsewhere.json").read_text()
        elif bad == "other-account":
                assert json.loads(f.token_path.read_text())["refreshToken"] == "rt-other"
        elif bad == "deleted":
                assert not f.token_path.exists()


def test_owned_import_never_touches_its_source(authd, fake_auth, kiroctl, ide_dir):
        authd()
        lin = fake_auth.seed("rt-own-0")
        f = kiroide.write_social(ide_dir, refresh_token="rt-own-0", expires_at=time.time() + 7200,
                                 profile_arn_value=ARN_A)
        os.chmod(f.token_path, 0o644)
        before = f.token_path.read_bytes()
        kiroctl("import", "--from-kiro-ide", "--file", f.token_path, user=TEST_ADMIN)
        c = only(status(kiroctl))
        assert _link(c) == "", c
        kiroctl("refresh", c["id"])
        assert fake_auth.rotations(lin) >= 1
        assert f.token_path.read_bytes() == before
