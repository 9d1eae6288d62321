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


# ---- a replaced login is not undone by the old one's refresh (item 5) ---------------------------

@pytest.mark.parametrize("old_answer", ["rotated", "invalid_grant"])
def test_replace_during_refresh_keeps_the_new_login(users, authd, fake_auth, dbus, kiroctl, old_answer):
        fake_auth.seed("rt-old-0", lineage="old")
        a = authd()
        bus_import(dbus, "refresh-token", "rt-old-0", cred_id="x")
        stored_and_rotated(a, fake_auth, "x", "old")

        # The old login's next refresh reaches the server and is held there.
        gate = fake_auth.hold_next()
        result = {}

        def call():
                try:
                        result["ok"] = refresh(dbus, "x")
                except dbusmini.DBusError as e:
                        result["error"] = e

        t = threading.Thread(target=call)
        t.start()
        try:
                assert gate.arrived.wait(10), "the held refresh never reached the fake"
                # Meanwhile the operator imports a fresh login under the same id.
                fake_auth.seed("rt-new-0", lineage="new")
                bus_import(dbus, "refresh-token", "rt-new-0", cred_id="x", replace=True)
                if old_answer == "invalid_grant":
                        fake_auth.revoke("old")
        finally:
                gate.release()
        t.join(60)
        assert not t.is_alive()
        # The old refresh was answered by the server (rotated, or refused) ...
        wait_until(lambda: fake_auth.count(lineage="old") >= 2, timeout=10, what="the held answer")
        assert fake_auth.requests_for("old")[-1].outcome == old_answer
        # ... and the Refresh() call parked on it was served by a refresh of the new login.
        assert "error" not in result, result
        stored_and_rotated(a, fake_auth, "x", "new")
        time.sleep(0.5)         # an old answer applied late would land by now

        doc = a.read_credential("x")
        assert doc["refresh_token"] == fake_auth.latest_refresh_token("new")
        assert doc["access_token"] == fake_auth.latest_access_token("new")
        assert doc["health"]["state"] == "ok", doc["health"]
        assert not doc["refresh_token"].startswith("rt-old")
        st = status(kiroctl)["x"]
        assert st["state"] == "active" and st["last_error"] is None and st["consecutive_failures"] == 0, st
        _, token, _, _ = dbus("GetToken", "sst", ["kiro", "x", 0])
        assert token == fake_auth.latest_access_token("new")


def test_remove_during_refresh_and_reimport(users, authd, fake_auth, dbus):
        """Remove cancels the refresh in flight: a new credential of the same id is not touched by it."""
        fake_auth.seed("rt-rm-0", lineage="rm")
        a = authd()
        gate = fake_auth.hold_next()
        bus_import(dbus, "refresh-token", "rt-rm-0", cred_id="y")
        assert gate.arrived.wait(10)
        try:
                dbus("Remove", "t", [0], path=cred_path("y"), interface=CREDENTIAL_IFACE)
                fake_auth.seed("rt-rm2-0", lineage="rm2")
                bus_import(dbus, "refresh-token", "rt-rm2-0", cred_id="y")
        finally:
                gate.release()
        stored_and_rotated(a, fake_auth, "y", "rm2")
        wait_until(lambda: fake_auth.count(lineage="rm") >= 1, timeout=10, what="the held answer")
        time.sleep(0.5)
        assert a.read_credential("y")["refresh_token"] == fake_auth.latest_refresh_token("rm2")


# ---- removal frees the refresh slot (item 12) ----------------------------------------------------

def test_remove_starts_the_queued_refresh(users, authd, fake_auth, dbus):
        fake_auth.seed("rt-qa-0", lineage="qa")
        fake_auth.seed("rt-qb-0", lineage="qb")
        a = authd(MaxParallelRefresh=1)
        gate = fake_auth.hold_next()
        bus_import(dbus, "refresh-token", "rt-qa-0", cred_id="qa")
        try:
                assert gate.arrived.wait(10)
                # qb needs a refresh too, but the only slot is taken by qa: it waits in the queue.
                bus_import(dbus, "refresh-token", "rt-qb-0", cred_id="qb")
                time.sleep(1.0)
                assert fake_auth.count(lineage="qb") == 0
                assert prop(dbus, "qa", "State") == "refreshing"
                dbus("Remove", "t", [0], path=cred_path("qa"), interface=CREDENTIAL_IFACE)
                t0 = time.monotonic()
                stored_and_rotated(a, fake_auth, "qb", "qb")
                print(f"queued refresh started and stored {time.monotonic() - t0:.2f}s after Remove")
        finally:
                gate.release()


# ---- losing the bus (item 7) ----------------------------------------------------------------------

def test_bus_loss_exits_with_failure(users, authd, bus_daemon):
        a = authd(check_exit=False)
        bus_daemon.proc.kill()
        bus_daemon.proc.wait()
        t0 = time.monotonic()
        try:
                rc = a.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
                pytest.fail("kiro-authd still runs 5 s after its bus went away")
        elapsed = time.monotonic() - t0
        print(f"kiro-authd exited {rc} {elapsed:.3f}s after the dbus-daemon was killed")
        assert rc == 1, f"exit status {rc}, want 1 (EXIT_FAILURE; a sanitizer report would differ)"
        log = a.log_text()
        assert "Lost the connection to the bus" in log
        assert "AddressSanitizer" not in log and "runtime error" not in log


# ---- a refresh token that could not be stored (item 8) ------------------------------------------

class JournalAuthd(kirodtest.Authd):
        """kiro-authd with JOURNAL_STREAM set and, in a mount namespace of its own, our datagram socket at
        /run/systemd/journal/socket: what it sends with sd_journal_send() arrives in self.entries()."""

        def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                self.journal_path = self.dir / f"{self.name}.journal"
                self.journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self.journal.bind(str(self.journal_path))
                os.chmod(self.journal_path, 0o666)
                self.journal.setblocking(False)
                self.extra_env["JOURNAL_STREAM"] = "0:0"
                self._entries = []

        def command(self):
                script = ('mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mkdir /run/systemd/journal && '
                          ': > /run/systemd/journal/socket && mount --bind "$0" /run/systemd/journal/socket && '
                          'exec "$@"')
                return ["unshare", "--mount", "--propagation=private", "sh", "-c", script,
                        str(self.journal_path)] + super().command()

        def entries(self):
                while True:
                        try:
                                data = self.journal.recv(1 << 20)
                        except BlockingIOError:
                                break
                        self._entries.append(parse_journal_datagram(data))
                return list(self._entries)

        def teardown(self):
                p = super().teardown()
                self.journal.close()
                return p


def parse_journal_datagram(data):
        """The journal's native protocol: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
        out, i = {}, 0
        while i < len(data):
                nl = data.index(b"\n", i)
                line = data[i:nl]
                if b"=" in line:
                        k, v = line.split(b"=", 1)
                        i = nl + 1
                else:
                        k = line
                        (size,) = struct.unpack_from("<Q", data, nl + 1)
                        v = data[nl + 9:nl + 9 + size]
                        i = nl + 9 + size + 1
                out[k.decode()] = v.decode(errors="replace")
        return out


@pytest.fixture
def journal_authd(bus_daemon, fake_auth, scratch):
        if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
                pytest.skip("cannot create a mount namespace here (unshare --mount)")
        instances = []

        def factory(check_exit=True, **auth):
                a = JournalAuthd(bus_daemon, fake_auth, scratch, auth=auth, check_exit=check_exit)
                instances.append(a)
                return a.start()

        yield factory
        problems = []
        for a in instances:
                problems += a.teardown()
        if problems:
                pytest.fail("kiro-authd did not exit cleanly:\n" + "\n".join(problems) + "\n" +
                            "\n".join(kirodtest.tail(a.log_path, 8000) for a in instances))


def make_unsaved(a, fake_auth, dbus, cred_id, lineage):
        """Imports, lets the first rotation land, then makes credentials/ unwritable and forces a refresh
        that rotates the token at the server but cannot store it."""
        fake_auth.seed(f"rt-{lineage}-0", lineage=lineage)
        bus_import(dbus, "refresh-token", f"rt-{lineage}-0", cred_id=cred_id)
        stored_and_rotated(a, fake_auth, cred_id, lineage)
        assert prop(dbus, cred_id, "Unsaved") is False
        os.chmod(a.credentials_dir, 0o500)
        e = dbus_error(refresh, dbus, cred_id)
        assert e.name == ERROR_PREFIX + "StorageFailed"
        rotated = fake_auth.latest_refresh_token(lineage)
        assert a.read_credential(cred_id)["refresh_token"] != rotated
        return rotated


def test_unsaved_token_is_shown_and_written_at_stop(users, journal_authd, fake_auth, dbus, kiroctl):
        # RetryInitialSec is long, so that nothing but the stop writes the file.
        a = journal_authd(RetryInitialSec=600, RetryMaxSec=600)
        try:
                rotated = make_unsaved(a, fake_auth, dbus, "u", "u")
                assert prop(dbus, "u", "Unsaved") is True
                st = status(kiroctl)["u"]
                assert st["unsaved"] is True, st
                text = kiroctl("status", "u").stdout
                assert "Unsaved: the rotated refresh token is only in kiro-authd's memory" in text, text
                warn = [e for e in a.entries() if e.get("MESSAGE_ID") == MESSAGE_UNSAVED]
                assert len(warn) == 1, a.entries()
                assert warn[0]["PRIORITY"] == "4" and "'u'" in warn[0]["MESSAGE"]
                assert rotated not in json.dumps(a.entries())
        finally:
                os.chmod(a.credentials_dir, 0o700)

        # Writable again; no call touches it, so the rotated token is still only in memory until stop.
        assert a.read_credential("u")["refresh_token"] != rotated
        a.stop()
        assert a.proc.returncode == 0
        assert not a.exit_problems
        assert a.read_credential("u")["refresh_token"] == rotated
        assert "stored at stop" in a.log_text()
        assert not [e for e in a.entries() if e.get("MESSAGE_ID") == MESSAGE_LOST]

        # And the next instance goes on with it, without a new login.
        a.start()
        refresh(dbus, "u")
        assert fake_auth.requests_for("u")[-1].outcome == "rotated"
        assert status(kiroctl)["u"]["unsaved"] is False


def test_unsaved_token_lost_at_stop_is_loud(users, journal_authd, fake_auth, dbus, kiroctl):
        a = journal_authd(check_exit=False, RetryInitialSec=600, RetryMaxSec=600)
        try:
                rotated = make_unsaved(a, fake_auth, dbus, "l", "l")
                a.stop()
                rc = a.proc.returncode
        finally:
                os.chmod(a.credentials_dir, 0o700)
        assert rc == 1, f"exit status {rc}: stopping with a lost login must fail"
        lost = [e for e in a.entries() if e.get("MESSAGE_ID") == MESSAGE_LOST]
        assert len(lost) == 1, a.entries()
        assert lost[0]["PRIORITY"] == "3"
        assert "'l' is LOST" in lost[0]["MESSAGE"] and "kiroctl import --replace --id l" in lost[0]["MESSAGE"]
        assert rotated not in json.dumps(a.entries()) and rotated not in a.log_text()
        assert "AddressSanitizer" not in a.log_text()


def test_unsaved_clears_with_a_signal_when_written(users, authd, fake_auth, dbus, bus):
        a = authd(RetryInitialSec=600, RetryMaxSec=600)
        rotated = make_unsaved(a, fake_auth, dbus, "w", "w")
        os.chmod(a.credentials_dir, 0o700)
        with dbusmini.Connection(bus, timeout=10) as c:
                c.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                       [f"type='signal',interface='{PROPS}',member='PropertiesChanged',path='{cred_path('w')}'"])
                # GetToken writes the pending tokens first, then answers.
                _, token, _, _ = dbus("GetToken", "sst", ["kiro", "w", 0])
                assert token == fake_auth.latest_access_token("w")
                assert a.read_credential("w")["refresh_token"] == rotated
                while True:
                        m = c.read_message()        # raises on the connection's timeout
                        if m.member == "PropertiesChanged" and "Unsaved" in m.body[1]:
                                break
        assert m.body[1]["Unsaved"] is False
        assert m.body[1]["LastError"] == ""
        assert prop(dbus, "w", "Unsaved") is False


# ---- admin check: the caller's groups from the bus, no NSS (item 12) -----------------------------

def call_as(bus, user, groups, member, signature, args, pass_fds=()):
        """dbusmini as user with exactly the supplementary groups given (names)."""
        gids = ",".join(str(grp.getgrnam(g).gr_gid) for g in groups)
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}"]
        prefix += [f"--groups={gids}"] if groups else ["--clear-groups"]
        argv = prefix + ["--", kirodtest.PYTHON, str(kirodtest.HERE / "dbusmini.py"), f"--address={bus}", "call",
                         kirodtest.BUS_NAME, kirodtest.MANAGER_PATH, kirodtest.MANAGER_IFACE, member, signature,
                         json.dumps(args)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=kirodtest.base_env(),
                           pass_fds=pass_fds, cwd="/")
        return json.loads(p.stdout.strip().splitlines()[-1])


def test_admin_check_uses_the_groups_of_the_calling_process(users, authd, bus):
        """Admin means: the caller's process has the admin group, as the bus reports it (the same
        groups dbus-daemon applies the <policy group=...> rules to). No NSS lookup: kiro-test-user is in
        no group in the user database, yet a process of it that holds kiro-admin is an admin; a process
        of kiro-test-admin that dropped the group is not (the bus policy already stops that one)."""
        authd()
        fd = kirodtest.sealed_memfd(b"not a token")
        try:
                args = ["no-such-format", fd, {}, 0]
                member = call_as(bus, TEST_USER, [ADMIN_GROUP], "Import", "sha{sv}t", args, (fd,))
                plain = call_as(bus, TEST_USER, [], "Import", "sha{sv}t", args, (fd,))
                dropped = call_as(bus, TEST_ADMIN, [], "Import", "sha{sv}t", args, (fd,))
        finally:
                os.close(fd)
        # Past both fences: the format is what is wrong.
        assert member["error"] == ERROR_PREFIX + "UnsupportedFormat", member
        assert plain["error"] == "org.freedesktop.DBus.Error.AccessDenied", plain
        assert dropped["error"] == "org.freedesktop.DBus.Error.AccessDenied", dropped


def test_many_new_callers_are_answered(users, authd, fake_auth, dbus, bus):
        """Each new sender is parked until the bus reports its credentials, then dispatched again."""
        fake_auth.seed("rt-many-0", lineage="many")
        authd()
        bus_import(dbus, "refresh-token", "rt-many-0", cred_id="many")
        results = []

        def one():
                with dbusmini.Connection(bus) as c:
                        results.append(c.call(kirodtest.BUS_NAME, kirodtest.MANAGER_PATH, kirodtest.MANAGER_IFACE,
                                              "GetToken", "sst", ["kiro", "many", 0])[0])

        threads = [threading.Thread(target=one) for _ in range(30)]
        for t in threads:
                t.start()
        for t in threads:
                t.join(60)
        assert results == ["many"] * 30


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


# ---- credential events in the journal carry the credential id (issue 14) --------------------------------

MESSAGE_REFRESHED = "0a8b6c4d2e0f4a1b9c7d5e3f1a2b4c6d"
MESSAGE_COOLDOWN = "1b9c7d5e3f1a4b2c0d8e6f4a2b3c5d7e"


def test_credential_events_have_journal_fields(users, journal_authd, fake_auth, dbus):
        a = journal_authd()
        fake_auth.seed("rt-ev-0", lineage="ev")
        bus_import(dbus, "refresh-token", "rt-ev-0", cred_id="ev")
        refresh(dbus, "ev")
        dbus("ReportUpstreamError", "sstt", ["ev", "throttled", 7 * 1000000, 0])
        entries = kirodtest.wait_until(
                lambda: [e for e in a.entries() if e.get("MESSAGE_ID") == MESSAGE_COOLDOWN] and a.entries(),
                timeout=5, what="the cooldown entry")
        refreshed = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_REFRESHED]
        assert refreshed and refreshed[-1]["KIROD_CREDENTIAL"] == "ev" and refreshed[-1]["KIROD_REASON"] == "ok"
        assert refreshed[-1]["PRIORITY"] == "6"
        cool = [e for e in entries if e.get("MESSAGE_ID") == MESSAGE_COOLDOWN]
        assert len(cool) == 1, cool
        assert cool[0]["KIROD_CREDENTIAL"] == "ev" and cool[0]["KIROD_REASON"] == "throttled"
        assert cool[0]["PRIORITY"] == "5" and "cools down for 7s" in cool[0]["MESSAGE"], cool
        # No secret in any entry.
        assert fake_auth.latest_refresh_token("ev") not in json.dumps(entries)
