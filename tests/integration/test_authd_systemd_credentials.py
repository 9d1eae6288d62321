# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-authd imports systemd credentials (LoadCredential= → $CREDENTIALS_DIRECTORY) once at start-up."""
import json
import os
import pwd

import kirodtest


def _status(kiroctl):
        # Exit 3 is kiroctl's "a credential needs a login or none is usable"; the JSON is printed alike.
        p = kiroctl("status", "--json", check=False)
        assert p.returncode in (0, 3), (p.returncode, p.stderr)
        return {c["id"]: c for c in json.loads(p.stdout)}


def _creds_dir(scratch, files):
        d = scratch / "systemd-creds"
        d.mkdir(mode=0o700, exist_ok=True)
        pw = pwd.getpwnam(kirodtest.AUTH_USER)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        for name, content in files.items():
                p = d / name
                p.write_text(content)
                os.chown(p, pw.pw_uid, pw.pw_gid)
                os.chmod(p, 0o400)
        return d


def test_api_key_and_refresh_token_credentials_imported_once(users, authd, kiroctl, fake_auth, scratch):
        fake_auth.seed("rt-from-systemd", kind="social", lineage="sd")
        d = _creds_dir(scratch, {"kiro-api-key": "ksk_fromsystemd\n", "kiro-refresh-token": "rt-from-systemd\n"})
        a = authd(start=False)
        a.extra_env = {"CREDENTIALS_DIRECTORY": str(d)}
        a.start()

        st = _status(kiroctl)
        assert st["systemd-api-key"]["auth_method"] == "api-key"
        assert st["systemd-refresh-token"]["auth_method"] == "social"
        # the bare refresh token has no access token yet: it is refreshed at once, and rotated
        kirodtest.wait_until(lambda: fake_auth.count(lineage="sd", outcome="rotated") >= 1, timeout=10,
                             what="the systemd refresh token to be refreshed")
        rotated = fake_auth.latest_refresh_token("sd")
        kirodtest.wait_until(lambda: a.read_credential("systemd-refresh-token").get("refresh_token") == rotated,
                             timeout=10, what="the rotated token on disk")

        # A restart must not overwrite the rotated token with the stale one from the credential file.
        a.restart()
        assert a.read_credential("systemd-refresh-token")["refresh_token"] == rotated
        assert a.read_credential("systemd-api-key")["access_token"] == "ksk_fromsystemd"


def test_bad_systemd_credential_is_reported_not_fatal(users, authd, kiroctl, scratch):
        d = _creds_dir(scratch, {"kiro-api-key": "not-a-kiro-key\n"})
        a = authd(start=False)
        a.extra_env = {"CREDENTIALS_DIRECTORY": str(d)}
        a.start()
        assert "systemd-api-key" not in _status(kiroctl)
        log = a.log_path.read_text()
        assert "Ignoring systemd credential 'kiro-api-key'" in log
        assert "not-a-kiro-key" not in log  # the secret itself never reaches the log
