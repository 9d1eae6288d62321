# SPDX-License-Identifier: LGPL-2.1-or-later
"""Both daemons: a --config path that does not exist is an error, and a refused URL names the key and
the rule it broke (not strerror's "Operation not permitted"). The daemons are run without a bus: the
configuration is read before they connect, and the run ends at the connection."""
import os
import subprocess

import pytest

import kirodtest

PROXYD_BIN = kirodtest.BUILD_DIR / "kiro-proxyd" / "kiro-proxyd"
LOOPBACK_RULE = "http:// is allowed only to a loopback host (127.0.0.0/8, localhost, [::1]); use https://"
SCHEME_RULE = "a URL must start with https:// (or http:// to a loopback host)"


def run(binary, *args, tmp_path):
        if not binary.exists():
                pytest.skip(f"{binary} is not built")
        env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"),
                   DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
        return subprocess.run([binary, "--user", *args], env=env, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("binary", [kirodtest.AUTHD_BIN, PROXYD_BIN], ids=["kiro-authd", "kiro-proxyd"])
def test_missing_config_file_is_an_error(binary, tmp_path):
        missing = tmp_path / "typo.conf"
        p = run(binary, f"--config={missing}", tmp_path=tmp_path)
        assert p.returncode != 0
        assert f"Configuration file '{missing}' given with --config: No such file or directory" in p.stderr, p.stderr
        # Refused before anything else was tried.
        assert "bus" not in p.stderr, p.stderr


@pytest.mark.parametrize("binary", [kirodtest.AUTHD_BIN, PROXYD_BIN], ids=["kiro-authd", "kiro-proxyd"])
def test_existing_config_file_is_read(binary, tmp_path):
        conf = tmp_path / "ok.conf"
        conf.write_text("[Nowhere]\nNoSuchKey=1\n")
        p = run(binary, f"--config={conf}", "--state-dir=" + str(tmp_path / "state")
                if binary == kirodtest.AUTHD_BIN else "--listen=127.0.0.1:0", tmp_path=tmp_path)
        # It got past the configuration (to the missing bus), and read the file it was given.
        assert f"{conf}: unknown key 'NoSuchKey' in section [Nowhere], ignoring." in p.stderr, p.stderr
        assert "given with --config" not in p.stderr


def test_authd_url_errors_name_key_and_rule(tmp_path):
        conf = tmp_path / "authd.conf"
        conf.write_text("[Endpoints]\nKiroAuthURL=http://auth.example.com/refreshToken\n"
                        "OIDCURL=ftp://oidc.example.com/\nUsageURL=http://127.0.0.1:9/usage\n")
        p = run(kirodtest.AUTHD_BIN, f"--config={conf}", f"--state-dir={tmp_path}/state", tmp_path=tmp_path)
        assert (f"{conf}: invalid value for KiroAuthURL= in [Endpoints], ignoring: {LOOPBACK_RULE}."
                in p.stderr), p.stderr
        assert f"{conf}: invalid value for OIDCURL= in [Endpoints], ignoring: {SCHEME_RULE}." in p.stderr, p.stderr
        assert "UsageURL" not in p.stderr, p.stderr       # loopback http:// is fine
        assert "Operation not permitted" not in p.stderr


def test_proxyd_url_errors_name_key_and_rule(tmp_path):
        conf = tmp_path / "proxyd.conf"
        for value, rule in [("https://ok.example.com/ http://10.1.2.3/generateAssistantResponse", LOOPBACK_RULE),
                            ("gopher://kiro.example.com/", SCHEME_RULE)]:
                conf.write_text(f"[Kiro]\nEndpoints={value}\n")
                p = run(PROXYD_BIN, f"--config={conf}", "--listen=127.0.0.1:0", tmp_path=tmp_path)
                assert f"{conf}: invalid value for Endpoints= in [Kiro], ignoring: {rule}." in p.stderr, p.stderr
                assert "Operation not permitted" not in p.stderr
