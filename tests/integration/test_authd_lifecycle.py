# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-authd's credential lifecycle and its own robustness (issue 9, items 5, 7, 8 and 12):

- a login replaced while the old one's refresh is in flight keeps the new tokens, whatever the old
  refresh answers;
- losing the bus makes kiro-authd exit with failure (so that systemd's Restart= fires);
- a rotated refresh token that cannot be written is shown (property Unsaved, kiroctl status, a journal
  warning with a MESSAGE_ID), written at stop, and reported loudly as lost when that fails too;
- removing a credential frees its refresh slot for the queued ones;
- the admin check uses the groups of the caller's process as the bus reports them, not NSS;
- the state directory: owner and mode checked, `credentials` not followed through a symlink, a FIFO
  in it skipped instead of blocking start-up.
"""

import grp
import json
import os
import pwd
import socket
import stat
import struct
import subprocess
import threading
import time

import pytest

import dbusmini
import kirodtest
from kirodtest import (ADMIN_GROUP, AUTH_USER, AUTHD_BIN, CREDENTIAL_IFACE, ERROR_PREFIX, TEST_ADMIN, TEST_USER,
                       wait_until)
from test_authd import bus_import, cred_path, dbus_error, status

pytestmark = pytest.mark.skipif(not AUTHD_BIN.exists(), reason=f"needs {AUTHD_BIN} (build first)")

PROPS = "org.freedesktop.DBus.Properties"
MESSAGE_UNSAVED = "b3e1c7a9d2f04e6b8a5c1d9e7f3b2a64"
MESSAGE_LOST = "e6a2d8f4c1b94a7e9d3f5b2c8a6e1d07"


def refresh(dbus, cred_id, **kw):
        return dbus("Refresh", "t", [0], path=cred_path(cred_id), interface=CREDENTIAL_IFACE, **kw)


def prop(dbus, cred_id, name):
        return dbus("Get", "ss", [CREDENTIAL_IFACE, name], path=cred_path(cred_id), interface=PROPS)[0]


def stored_and_rotated(a, fake, cred_id, lineage, rotations=1):
        """Waits until lineage rotated at least `rotations` times and the newest token is on disk."""
        wait_until(lambda: fake.rotations(lineage) >= rotations
                   and a.credential_files().get(cred_id)
                   and a.read_credential(cred_id).get("refresh_token") == fake.latest_refresh_token(lineage),
                   timeout=15, what=f"rotation {rotations} of '{lineage}' on disk")


# ---- the state directory (item 12) -----------------------------------------------------------------

def auth_ids():
        pw = pwd.getpwnam(AUTH_USER)
        return pw.pw_uid, pw.pw_gid


def test_fifo_in_credentials_does_not_block_start(users, authd, fake_auth, dbus):
        fake_auth.seed("rt-fifo-0", lineage="fifo")
        a = authd()
        bus_import(dbus, "refresh-token", "rt-fifo-0", cred_id="good")
        stored_and_rotated(a, fake_auth, "good", "fifo")
        a.stop()
        fifo = a.credentials_dir / "evil.json"
        os.mkfifo(fifo, 0o600)
        os.chown(fifo, *auth_ids())
        t0 = time.monotonic()
        a.start()       # fails after 10 s without READY=1 when the FIFO blocks
        print(f"READY {time.monotonic() - t0:.2f}s after start with a FIFO in credentials/")
        assert dbus("ListCredentials", "t", [0])[0] == [cred_path("good")]
        assert "Ignoring credential file 'evil.json': not a regular file" in a.log_text()


def test_credentials_symlink_is_refused(users, authd, scratch):
        a = authd(start=False, check_exit=False)
        elsewhere = scratch / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        os.chown(elsewhere, *auth_ids())
        os.symlink(elsewhere, a.credentials_dir)
        with pytest.raises(AssertionError, match="before READY=1"):
                a.start()
        assert a.proc.returncode == 1
        assert "Refusing to use" in a.log_text() and "symlink" in a.log_text()
        assert list(elsewhere.iterdir()) == []


def test_state_dir_of_another_owner_is_refused(users, authd):
        a = authd(start=False, check_exit=False)
        os.chown(a.state_dir, 0, 0)
        os.chmod(a.state_dir, 0o777)
        with pytest.raises(AssertionError, match="before READY=1"):
                a.start()
        assert a.proc.returncode == 1
        assert "is owned by UID 0, not by kiro-authd's user" in a.log_text()
        assert not a.credentials_dir.exists()


def test_state_dir_mode_is_made_private(users, authd, fake_auth, dbus):
        a = authd(start=False)
        os.chmod(a.state_dir, 0o755)
        a.credentials_dir.mkdir(mode=0o750)
        os.chown(a.credentials_dir, *auth_ids())
        os.chmod(a.credentials_dir, 0o750)
        a.start()
        assert stat.S_IMODE(os.stat(a.state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(a.credentials_dir).st_mode) == 0o700
        log = a.log_text()
        assert f"'{a.state_dir}' had mode 0755, open to other users; changed it to 0700." in log
        assert f"'{a.credentials_dir}' had mode 0750, open to other users; changed it to 0700." in log
