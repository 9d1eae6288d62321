# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fixtures of the kirod integration tests (see README.md in this directory).

    users        session: the system users and groups exist (created if missing)
    scratch      a world-traversable temp directory for this test (removed if the test passed)
    bus          a private system dbus-daemon with the real policy; yields its address (str)
    bus_daemon   the kirodtest.Bus behind `bus` (socket path, log, connect())
    fake_auth    fakeauth.FakeAuth: Kiro /refreshToken and OIDC /token fakes on loopback
    authd        factory: authd(**auth_keys, endpoints=None, extra_config="", check_exit=True,
                 start=True) -> kirodtest.Authd (.pid .state_dir .kill(sig) .restart() .log_path ...)
    kiroctl      kiroctl(*args, user="root", input=None, check=True, timeout=120) -> CompletedProcess
    busctl       busctl(*args, user="root", check=True, pass_fds=(), input=None) -> CompletedProcess
    dbus         dbus(member, signature="", args=(), user="root", path=..., interface=...,
                 destination=...) -> reply body list, raises dbusmini.DBusError(name, message)
"""

import os
import shutil
import subprocess

import pytest

import fakeauth
import kirodtest
from kirodtest import KIROCTL_BIN, as_user, base_env, run_as


_outcomes = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
        if report.when == "call" or report.outcome != "passed":
                _outcomes[report.outcome] = _outcomes.get(report.outcome, 0) + 1


def pytest_sessionfinish(session, exitstatus):
        """Under meson (KIROD_SKIP_EXIT_77=1) a file whose tests were all skipped exits 77, so that
        meson reports SKIP rather than OK. And the secret scan (see the end of this file)."""
        _secrets_scan(session)
        if (os.environ.get("KIROD_SKIP_EXIT_77") and exitstatus == 0
                        and _outcomes["passed"] == 0 and _outcomes["skipped"] > 0):
                session.exitstatus = 77


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
        """Attaches the logs of the daemons a failed test ran (dbus-daemon, kiro-authd) to its report."""
        outcome = yield
        rep = outcome.get_result()
        if rep.failed:
                for title, path in getattr(item, "_kirod_logs", []):
                        rep.sections.append((title, kirodtest.tail(path)))
        setattr(item, f"_kirod_rep_{rep.when}", rep)


def _register_log(request, title, path):
        node = request.node
        if not hasattr(node, "_kirod_logs"):
                node._kirod_logs = []
        node._kirod_logs.append((title, path))


def _test_failed(request):
        return any(getattr(getattr(request.node, f"_kirod_rep_{w}", None), "failed", False)
                   for w in ("setup", "call"))


@pytest.fixture(scope="session")
def users():
        if os.geteuid() != 0:
                pytest.skip("the integration tests must run as root: they create system users and "
                            "run the daemons and clients as those users with setpriv")
        for tool in ("dbus-daemon", "setpriv", "busctl"):
                if not shutil.which(tool):
                        pytest.skip(f"{tool} is not installed")
        kirodtest.ensure_test_users()
        return {"auth": kirodtest.AUTH_USER, "proxy": kirodtest.PROXY_USER, "admin": kirodtest.TEST_ADMIN,
                "user": kirodtest.TEST_USER, "admin_group": kirodtest.ADMIN_GROUP}


@pytest.fixture
def scratch(request):
        d = kirodtest.world_dir(request.node.name[:40].replace("/", "_").replace("[", "-").replace("]", ""))
        yield d
        _secrets_collect_scratch(request, d)
        if _test_failed(request) or os.environ.get("KIROD_KEEP_SCRATCH"):
                print(f"\nkept scratch directory {d}")
        else:
                kirodtest.remove_tree(d)


@pytest.fixture
def bus_daemon(users, scratch, request):
        b = kirodtest.Bus(scratch)
        _register_log(request, "dbus-daemon log", b.log_path)
        b.start()
        yield b
        b.stop()


@pytest.fixture
def bus(bus_daemon):
        return bus_daemon.address


@pytest.fixture
def fake_auth():
        f = fakeauth.FakeAuth()
        yield f
        _secrets_collect_fake_auth(f)
        f.close()


@pytest.fixture
def authd(bus_daemon, fake_auth, scratch, request):
        instances = []

        def factory(*, endpoints=None, extra_config="", check_exit=True, start=True, ready_timeout=10.0,
                    **auth):
                if not kirodtest.AUTHD_BIN.exists():
                        pytest.skip(f"{kirodtest.AUTHD_BIN} is not built")
                a = kirodtest.Authd(bus_daemon, fake_auth, scratch, auth=auth, endpoints=endpoints,
                                    extra_config=extra_config, check_exit=check_exit,
                                    ready_timeout=ready_timeout)
                instances.append(a)
                _register_log(request, f"{a.name} log (kiro-authd stderr)", a.log_path)
                if start:
                        a.start()
                return a

        yield factory
        problems = []
        for a in instances:
                problems += [f"{a.name}: {p}" for p in a.teardown()]
        if problems:
                pytest.fail("kiro-authd did not exit cleanly (sanitizer report or crash?):\n" +
                            "\n".join(problems) + "\n" + "\n".join(kirodtest.tail(a.log_path, 8000)
                                                                  for a in instances if a.exit_problems))


@pytest.fixture
def kiroctl(bus):
        def run(*args, user="root", input=None, check=True, timeout=120):
                if not KIROCTL_BIN.exists():
                        pytest.skip(f"{KIROCTL_BIN} is not built")
                p = run_as(user, [KIROCTL_BIN, "--system", *args], input=input, timeout=timeout,
                           env=base_env(DBUS_SYSTEM_BUS_ADDRESS=bus))
                if check and p.returncode != 0:
                        pytest.fail(f"kiroctl {' '.join(map(str, args))} as {user} exited {p.returncode}:\n"
                                    f"{p.stderr}{p.stdout}")
                return p
        return run


@pytest.fixture
def busctl(bus):
        def run(*args, user="root", check=True, pass_fds=(), input=None, timeout=60):
                p = run_as(user, ["busctl", f"--address={bus}", *args], input=input, timeout=timeout,
                           pass_fds=pass_fds)
                if check and p.returncode != 0:
                        pytest.fail(f"busctl {' '.join(map(str, args))} as {user} exited {p.returncode}:\n"
                                    f"{p.stderr}{p.stdout}")
                return p
        return run


@pytest.fixture
def dbus(bus):
        def call(member, signature="", args=(), **kw):
                return kirodtest.bus_call(bus, member, signature, args, **kw)
        return call


@pytest.fixture
def popen_as(bus):
        """Starts a long-running command as a user (for example a name owner); killed at teardown."""
        procs = []

        def start(user, argv, **kw):
                p = subprocess.Popen(as_user(user) + [str(a) for a in argv], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=base_env(), **kw)
                procs.append(p)
                return p

        yield start
        for p in procs:
                if p.poll() is None:
                        p.kill()
                p.wait()


# ==== Secrets never in daemon output (issue 11, trust boundary) ======================================
#
# Every secret a test uses — the access and refresh tokens fake_auth seeded and issued, OIDC client
# secrets, the token fields of every credential file kiro-authd stored, client API keys — is remembered
# for the session; every daemon log (dbus-daemon, kiro-authd, kiro-proxyd: whatever *.log the scratch
# directory holds, at debug level) is copied aside before the scratch directory goes. At the end of the
# session each log is searched for each secret, and a hit fails the run (exit status 1) naming the test,
# the log and the kind of secret (never the secret itself). There is no journal in these tests: the
# daemons log to stderr, which is what these files are.

import json as _json
import re as _re
import tempfile as _tempfile

_SECRET_MIN_LEN = 10            # shorter test values ("k1") would match by accident
_secrets = {}                   # secret -> what it is
_secret_logs = []               # (test nodeid, log name, copy path)
_secret_store = None


def remember_secret(value, what):
        if isinstance(value, str) and len(value) >= _SECRET_MIN_LEN:
                _secrets.setdefault(value, what)


def find_secrets(secrets, data):
        """The secrets (a dict secret -> what) that occur in data (bytes): [(what, secret)]."""
        return [(what, s) for s, what in secrets.items() if s.encode() in data]


def _secrets_collect_fake_auth(f):
        with f.lock:
                for lin in f._lineages.values():
                        for t in lin.tokens:
                                remember_secret(t, "refresh token")
                        for t in lin.access_tokens:
                                remember_secret(t, "access token")
                        remember_secret(lin.client_secret, "client secret")
                for secret in f._clients.values():
                        remember_secret(secret, "client secret")


_SECRET_KEY = _re.compile(r"token|secret|password", _re.I)


def _secrets_from_json(obj):
        if isinstance(obj, dict):
                for k, v in obj.items():
                        if isinstance(v, str) and _SECRET_KEY.search(str(k)):
                                remember_secret(v, f"credential field {k}")
                        else:
                                _secrets_from_json(v)
        elif isinstance(obj, list):
                for v in obj:
                        _secrets_from_json(v)


def _secrets_collect_scratch(request, d):
        global _secret_store
        if _secret_store is None:
                _secret_store = _tempfile.mkdtemp(prefix="kirod-secret-scan-")
        for root, dirs, files in os.walk(d):
                for name in files:
                        path = os.path.join(root, name)
                        try:
                                if not os.path.isfile(path) or os.path.getsize(path) > 64 * 1024 * 1024:
                                        continue
                                if name.endswith(".log"):
                                        copy = os.path.join(_secret_store, f"{len(_secret_logs)}-{name}")
                                        shutil.copyfile(path, copy)
                                        _secret_logs.append((request.node.nodeid, name, copy))
                                elif "api-keys" in name:
                                        for line in open(path, errors="replace").read().splitlines():
                                                if line.strip() and not line.startswith("#"):
                                                        remember_secret(line.strip(), "client API key")
                                elif name in ("credentials",) or name.endswith(".json"):
                                        _secrets_from_json(_json.loads(open(path, "rb").read()))
                        except (OSError, ValueError):
                                continue


def _secrets_scan(session):
        if not _secret_logs:
                return
        hits = []
        for nodeid, name, copy in _secret_logs:
                try:
                        data = open(copy, "rb").read()
                except OSError:
                        continue
                for what, _ in find_secrets(_secrets, data):
                        hits.append(f"{nodeid}: {name} contains a {what}")
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = (f"secret scan: {len(_secrets)} secrets searched for in {len(_secret_logs)} daemon logs, "
               f"{len(hits)} found")
        if tr:
                tr.write_line(msg)
                for h in hits:
                        tr.write_line("  SECRET IN LOG: " + h, red=True)
        if hits:
                session.exitstatus = 1
        else:
                shutil.rmtree(_secret_store, ignore_errors=True)
