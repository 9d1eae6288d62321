# SPDX-License-Identifier: LGPL-2.1-or-later
"""Shared pieces of the integration harness: paths, names, running things as another user, the
private bus and the kiro-authd process wrapper. conftest.py turns these into fixtures; tests import
the constants and small helpers from here."""

import fcntl
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dbusmini

HERE = Path(__file__).resolve().parent
SOURCE_DIR = Path(os.environ.get("KIROD_SOURCE_DIR") or HERE.parents[1]).resolve()
BUILD_DIR = Path(os.environ.get("KIROD_BUILD_DIR") or SOURCE_DIR / "build").resolve()
AUTHD_BIN = BUILD_DIR / "kiro-authd" / "kiro-authd"
KIROCTL_BIN = BUILD_DIR / "kiroctl" / "kiroctl"
POLICY_FILE = SOURCE_DIR / "dbus" / "org.kirod.Auth1.conf"
BUS_CONF_TEMPLATE = HERE / "system-bus.conf.in"
PYTHON = "/usr/bin/python3"

BUS_NAME = "org.kirod.Auth1"
MANAGER_PATH = "/org/kirod/Auth1"
MANAGER_IFACE = "org.kirod.Auth1.Manager"
CREDENTIAL_IFACE = "org.kirod.Auth1.Credential"
CREDENTIAL_PREFIX = "/org/kirod/Auth1/credential"
LOG_CONTROL_PATH = "/org/freedesktop/LogControl1"
LOG_CONTROL_IFACE = "org.freedesktop.LogControl1"
ERROR_PREFIX = "org.kirod.Auth1.Error."
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INVALID_ARGS = "org.freedesktop.DBus.Error.InvalidArgs"

AUTH_USER = "kiro-auth"
PROXY_USER = "kiro-proxy"
ADMIN_GROUP = "kiro-admin"
TEST_ADMIN = "kiro-test-admin"
TEST_USER = "kiro-test-user"

# Environment passed through to every program we start (sanitizer settings in particular).
PASSTHROUGH_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "MSAN_OPTIONS", "TSAN_OPTIONS")


def now_usec():
        return int(time.time() * 1_000_000)


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
        """Polls predicate() until it returns a true value, which is returned; raises
        AssertionError after timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
                last = predicate()
                if last:
                        return last
                time.sleep(interval)
        last = predicate()
        if last:
                return last
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def base_env(**extra):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/nonexistent", "SYSTEMD_COLORS": "0", "NO_COLOR": "1"}
        for k in PASSTHROUGH_ENV:
                if k in os.environ:
                        env[k] = os.environ[k]
        env.update({k: str(v) for k, v in extra.items()})
        return env


def as_user(user, *, clear_groups=False):
        """The setpriv prefix that runs a command as user (with the user's groups, or none)."""
        groups = "--clear-groups" if clear_groups else "--init-groups"
        return ["setpriv", f"--reuid={user}", f"--regid={user}", groups, "--"]


def world_dir(prefix):
        """A fresh directory under /tmp that every test user can traverse (pytest's tmp_path is
        0700 root, which the daemons and test users could not enter)."""
        d = Path(tempfile.mkdtemp(prefix=f"kirod-{prefix}-", dir="/tmp"))
        os.chmod(d, 0o755)
        return d


def user_dir(parent, user, name):
        """A directory owned by user, 0700 (like a home directory), under a world-traversable parent."""
        d = Path(parent) / name
        d.mkdir(mode=0o700)
        pw = pwd.getpwnam(user)
        os.chown(d, pw.pw_uid, pw.pw_gid)
        return d


def sealed_memfd(data, name="kirod-test"):
        """A sealed memfd holding data (how kiroctl hands sources to kiro-authd)."""
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        view = memoryview(data)
        while view:
                n = os.write(fd, view)
                view = view[n:]
        os.lseek(fd, 0, os.SEEK_SET)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        return fd


def tail(path, limit=20000):
        try:
                data = Path(path).read_bytes()
        except OSError as e:
                return f"<cannot read {path}: {e}>"
        text = data[-limit:].decode(errors="replace")
        return ("...\n" if len(data) > limit else "") + text


# ---- the private system bus ---------------------------------------------------------------------

class Bus:
        """dbus-daemon with system-bus.conf.in, including the real policy from dbus/."""

        def __init__(self, directory):
                self.dir = Path(directory)
                self.socket_path = self.dir / "bus"
                self.conf_path = self.dir / "bus.conf"
                self.log_path = self.dir / "dbus-daemon.log"
                conf = BUS_CONF_TEMPLATE.read_text()
                conf = conf.replace("@LISTEN@", f"unix:path={self.socket_path}")
                conf = conf.replace("@POLICY@", str(POLICY_FILE))
                self.conf_path.write_text(conf)
                self.proc = None
                self.address = None

        def start(self, timeout=10.0):
                r, w = os.pipe()
                with open(self.log_path, "ab") as log:
                        self.proc = subprocess.Popen(
                                ["dbus-daemon", f"--config-file={self.conf_path}", "--nofork",
                                 f"--print-address={w}"],
                                pass_fds=[w], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=base_env())
                os.close(w)
                buf = b""
                deadline = time.monotonic() + timeout
                try:
                        while b"\n" not in buf:
                                left = deadline - time.monotonic()
                                if left <= 0 or self.proc.poll() is not None:
                                        raise RuntimeError(f"dbus-daemon did not start:\n{tail(self.log_path)}")
                                ready, _, _ = select.select([r], [], [], min(left, 0.2))
                                if ready:
                                        chunk = os.read(r, 4096)
                                        if not chunk:
                                                continue
                                        buf += chunk
                finally:
                        os.close(r)
                self.address = buf.decode().splitlines()[0].strip()
                # libdbus creates the socket with the process umask; the real system bus socket is
                # 0666 (dbus.socket), and the test users must be able to connect.
                os.chmod(self.socket_path, 0o666)
                return self.address

        def stop(self):
                if self.proc and self.proc.poll() is None:
                        self.proc.terminate()
                        try:
                                self.proc.wait(timeout=10)
                        except subprocess.TimeoutExpired:
                                self.proc.kill()
                                self.proc.wait()

        def connect(self):
                return dbusmini.Connection(self.address)


# ---- kiro-authd ---------------------------------------------------------------------------------

DEFAULT_AUTH_CONFIG = {
        "RefreshMarginSec": 600,
        "RefreshJitterSec": 1,
        "RetryInitialSec": 1,
        "RetryMaxSec": 30,
        "SelectionPolicy": "sticky",
        "AdminGroup": ADMIN_GROUP,
        "ProxyUser": PROXY_USER,
}


class Daemon:
        """What the daemon fixtures share: a process started with a NOTIFY_SOCKET, its READY=1, and the
        record of runs that ended badly (exited on their own, or not 0 after SIGTERM)."""

        what = "daemon"

        def _daemon_init(self, directory, name, check_exit=True):
                self.dir = Path(directory)
                self.name = name
                self.check_exit = check_exit
                self.proc = None
                self.exit_problems = []          # messages for runs that ended badly
                self.runs = 0
                self._ended = False             # this run was ended by us (stop or kill), not by itself
                self.log_path = self.dir / f"{name}.log"
                self.notify_path = self.dir / f"{name}.notify"
                self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self.notify.bind(str(self.notify_path))
                os.chmod(self.notify_path, 0o666)
                self.notify_messages = []

        @property
        def pid(self):
                return self.proc.pid if self.proc else None

        def running(self):
                return self.proc is not None and self.proc.poll() is None

        def _spawn(self, env, preexec_fn=None):
                """Starts command() with its output in the log, as run N."""
                self.runs += 1
                self._ended = False
                with open(self.log_path, "ab") as log:
                        log.write(f"\n===== run {self.runs}: {' '.join(self.command())}\n".encode())
                        log.flush()
                        self.proc = subprocess.Popen(
                                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
                                preexec_fn=preexec_fn, env=base_env(NOTIFY_SOCKET=str(self.notify_path), **env))

        def _wait_notify_ready(self, timeout):
                deadline = time.monotonic() + timeout
                while True:
                        left = deadline - time.monotonic()
                        if left <= 0:
                                raise AssertionError(f"{self.what} sent no READY=1 within {timeout}s:\n"
                                                     f"{tail(self.log_path)}")
                        if self.proc.poll() is not None:
                                raise AssertionError(f"{self.what} exited with {self.proc.returncode} before "
                                                     f"READY=1:\n{tail(self.log_path)}")
                        ready, _, _ = select.select([self.notify], [], [], min(left, 0.1))
                        if not ready:
                                continue
                        msg = self.notify.recv(4096).decode(errors="replace")
                        self.notify_messages.append(msg)
                        if "READY=1" in msg.split("\n"):
                                return

        def _check_died(self):
                """Records a run that ended by itself (a crash, an abort from a sanitizer)."""
                if self.proc and self.check_exit and not self._ended and self.proc.poll() is not None:
                        self.exit_problems.append(f"run {self.runs}: exited on its own with status "
                                                  f"{self.proc.returncode}")
                        self._ended = True      # report it once

        def stop(self, timeout=15.0):
                """SIGTERM and wait; records a nonzero exit status (checked at teardown)."""
                self._check_died()
                if not self.proc or self.proc.returncode is not None:
                        return
                self._ended = True
                self.proc.send_signal(signal.SIGTERM)
                try:
                        rc = self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
                        self.exit_problems.append(f"run {self.runs}: did not exit within {timeout}s of SIGTERM")
                        return
                if rc != 0 and self.check_exit:
                        self.exit_problems.append(f"run {self.runs}: exit status {rc} after SIGTERM")

        def teardown(self):
                self.stop()
                self.notify.close()
                return self.exit_problems


class Authd(Daemon):
        """One kiro-authd instance (restartable) with its config, state directory and notify socket."""

        what = "kiro-authd"

        _seq = 0

        def __init__(self, bus, fake, directory, auth=None, endpoints=None, extra_config="",
                     check_exit=True, ready_timeout=10.0):
                Authd._seq += 1
                self._daemon_init(directory, f"authd{Authd._seq}", check_exit)
                self.bus = bus
                self.fake = fake
                self.ready_timeout = ready_timeout
                self.extra_env = {}             # more environment for the daemon (CREDENTIALS_DIRECTORY…)

                pw = pwd.getpwnam(AUTH_USER)
                self.state_dir = self.dir / f"{self.name}-state"
                self.state_dir.mkdir(mode=0o700)
                os.chown(self.state_dir, pw.pw_uid, pw.pw_gid)
                self.credentials_dir = self.state_dir / "credentials"

                cfg = dict(DEFAULT_AUTH_CONFIG)
                cfg.update(auth or {})
                ep = {"KiroAuthURL": fake.kiro_url if fake else "http://127.0.0.1:9",
                      "OIDCURL": fake.oidc_url if fake else "http://127.0.0.1:9"}
                ep.update(endpoints or {})
                lines = ["# written by tests/integration (kirodtest.Authd)", "[Auth]"]
                lines += [f"{k}={v}" for k, v in cfg.items()]
                lines += ["", "[Endpoints]"]
                lines += [f"{k}={v}" for k, v in ep.items()]
                self.config_path = self.dir / f"{self.name}.conf"
                self.config_path.write_text("\n".join(lines) + "\n" + extra_config)
                os.chmod(self.config_path, 0o644)

        def command(self):
                return as_user(AUTH_USER, clear_groups=True) + [
                        str(AUTHD_BIN), f"--config={self.config_path}", f"--state-dir={self.state_dir}",
                        "--log-level=debug"]

        def _drain_notify(self):
                self.notify.setblocking(False)
                try:
                        while True:
                                self.notify_messages.append(self.notify.recv(4096).decode(errors="replace"))
                except BlockingIOError:
                        pass
                finally:
                        self.notify.setblocking(True)

        def start(self):
                assert not self.running(), "kiro-authd already running"
                self._check_died()
                # After a kill the bus must have dropped the dead owner before the next one asks.
                with self.bus.connect() as c:
                        wait_until(lambda: not c.name_has_owner(BUS_NAME), timeout=5.0,
                                   what=f"{BUS_NAME} to be released by the previous owner")
                self._drain_notify()
                self._spawn(dict(DBUS_SYSTEM_BUS_ADDRESS=self.bus.address, **self.extra_env))
                self._wait_ready()
                return self

        def _wait_ready(self):
                self._wait_notify_ready(self.ready_timeout)
                # READY=1 may legitimately precede the name reply (request_name_async); wait for it so
                # that tests do not race, but not for long.
                with self.bus.connect() as c:
                        wait_until(lambda: c.name_has_owner(BUS_NAME), timeout=5.0,
                                   what=f"{BUS_NAME} to be owned after READY=1")

        def kill(self, sig=signal.SIGKILL):
                """Sends sig deliberately; the exit status of this run is not checked."""
                assert self.running(), f"kiro-authd is not running (exit status {self.proc.returncode})"
                self._ended = True
                self.proc.send_signal(sig)
                self.proc.wait(timeout=15)

        def restart(self):
                self.stop()
                return self.start()

        def log_text(self):
                return tail(self.log_path, 10**7)

        # ---- state on disk ----

        def credential_files(self):
                """{id: path} of the stored credentials (state_dir/credentials/<id>.json)."""
                if not self.credentials_dir.is_dir():
                        return {}
                return {p.name[:-5]: p for p in sorted(self.credentials_dir.iterdir())
                        if p.name.endswith(".json") and not p.name.startswith(".")}

        def read_credential(self, cred_id):
                return json.loads((self.credentials_dir / f"{cred_id}.json").read_text())

        def snapshot(self):
                """{file name: bytes} of everything in credentials/ (for byte-identical checks)."""
                if not self.credentials_dir.is_dir():
                        return {}
                return {p.name: p.read_bytes() for p in sorted(self.credentials_dir.iterdir()) if p.is_file()}



def run_as(user, argv, *, input=None, timeout=120, env=None, pass_fds=(), cwd="/"):
        """Runs argv as user (setpriv, the user's groups); returns CompletedProcess with str output."""
        data = input.encode() if isinstance(input, str) else input
        p = subprocess.run(as_user(user) + [str(a) for a in argv], input=data, capture_output=True,
                           timeout=timeout, env=env or base_env(), pass_fds=pass_fds, cwd=cwd,
                           stdin=None if data is not None else subprocess.DEVNULL)
        return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode(errors="replace"),
                                           p.stderr.decode(errors="replace"))


def _to_json(v):
        if isinstance(v, dbusmini.Variant):
                return {"variant": [v.signature, _to_json(v.value)]}
        if isinstance(v, dict):
                return {k: _to_json(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
                return [_to_json(x) for x in v]
        return v


def bus_call(address, member, signature="", args=(), *, user="root", path=MANAGER_PATH,
             interface=MANAGER_IFACE, destination=BUS_NAME, timeout=60):
        """A D-Bus method call as user. Returns the reply body (a list) or raises
        dbusmini.DBusError carrying the error name. 'h' arguments are fds of this process."""
        if user == "root":
                with dbusmini.Connection(address, timeout=timeout) as c:
                        return c.call(destination, path, interface, member, signature, list(args))
        fds = []

        def collect(t, v):
                if t == "h":
                        fds.append(v)
                elif isinstance(v, dbusmini.Variant):
                        collect(v.signature, v.value)
                elif isinstance(v, dict):
                        for x in v.values():
                                collect("", x)
                elif isinstance(v, (list, tuple)):
                        for x in v:
                                collect("", x)

        for t, a in zip(dbusmini.split_signature(signature), args):
                collect(t, a)
        p = run_as(user, [PYTHON, HERE / "dbusmini.py", f"--address={address}", f"--timeout={timeout}",
                          "call", destination, path, interface, member, signature,
                          json.dumps(_to_json(list(args)))],
                   pass_fds=fds, timeout=timeout + 10)
        try:
                out = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
                raise AssertionError(f"dbusmini failed as {user} ({p.returncode}): {p.stdout}{p.stderr}")
        if out["ok"]:
                return out["body"]
        raise dbusmini.DBusError(out["error"], out["message"])


def ensure_test_users():
        """Creates the system users and groups the policy and the tests name, if missing."""
        def group_exists(g):
                return subprocess.run(["getent", "group", g], capture_output=True).returncode == 0

        def user_exists(u):
                return subprocess.run(["getent", "passwd", u], capture_output=True).returncode == 0

        def run(cmd):
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode != 0:
                        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")

        if not group_exists(ADMIN_GROUP):
                run(["groupadd", "--system", ADMIN_GROUP])
        for user, groups in ((AUTH_USER, []), (PROXY_USER, []), (TEST_ADMIN, [ADMIN_GROUP]), (TEST_USER, [])):
                if not user_exists(user):
                        cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin"]
                        cmd += ["--gid", user] if group_exists(user) else ["--user-group"]
                        if groups:
                                cmd += ["--groups", ",".join(groups)]
                        run(cmd + [user])
                for g in groups:
                        members = subprocess.run(["id", "-nG", user], capture_output=True, text=True).stdout.split()
                        if g not in members:
                                run(["usermod", "--append", "--groups", g, user])
        # TEST_USER must have no extra group (in particular not the admin group).
        extra = set(subprocess.run(["id", "-nG", TEST_USER], capture_output=True, text=True).stdout.split())
        extra.discard(TEST_USER)
        if extra:
                raise RuntimeError(f"{TEST_USER} is in groups {sorted(extra)}; the tests need it in none")


def remove_tree(path):
        shutil.rmtree(path, ignore_errors=True)
