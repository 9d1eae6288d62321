# SPDX-License-Identifier: LGPL-2.1-or-later
"""The generated system-bus policy org.kirod.Auth1.conf, checked member by member and user by user.

A stand-in owner (dbusmini.py `own`, running as kiro-auth) answers every call it receives with
"reached:<interface>.<member>", so each call either reaches it (the policy allowed the message) or
fails with AccessDenied from dbus-daemon. kiro-authd repeats these checks itself (DESIGN.md §1,
invariant 3); that second fence is tested in test_authd.py."""

import pytest

import dbusmini
import kirodtest
from kirodtest import (ACCESS_DENIED, AUTH_USER, BUS_NAME, CREDENTIAL_IFACE, HERE, LOG_CONTROL_IFACE,
                       LOG_CONTROL_PATH, MANAGER_IFACE, MANAGER_PATH, PROXY_USER, PYTHON, TEST_ADMIN,
                       TEST_USER)

PROPS = "org.freedesktop.DBus.Properties"
CRED_PATH = "/org/kirod/Auth1/credential/c1"
USERS = ("root", PROXY_USER, TEST_ADMIN, TEST_USER, AUTH_USER)
EVERYONE = set(USERS)

# (path, interface, member) -> users the policy lets through
MATRIX = [
        ((MANAGER_PATH, MANAGER_IFACE, "ListCredentials"), EVERYONE),
        ((MANAGER_PATH, PROPS, "Get"), EVERYONE),
        ((MANAGER_PATH, PROPS, "GetAll"), EVERYONE),
        ((MANAGER_PATH, PROPS, "Set"), {"root"}),
        ((CRED_PATH, PROPS, "GetAll"), EVERYONE),
        ((MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"), EVERYONE),
        ((MANAGER_PATH, "org.freedesktop.DBus.Introspectable", "Introspect"), EVERYONE),
        ((MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping"), EVERYONE),
        ((MANAGER_PATH, "org.freedesktop.DBus.Peer", "GetMachineId"), EVERYONE),
        ((LOG_CONTROL_PATH, PROPS, "Get"), EVERYONE),
        ((LOG_CONTROL_PATH, PROPS, "GetAll"), EVERYONE),
        ((LOG_CONTROL_PATH, PROPS, "Set"), {"root"}),
        ((MANAGER_PATH, MANAGER_IFACE, "GetToken"), {"root", PROXY_USER}),
        ((MANAGER_PATH, MANAGER_IFACE, "ReportUpstreamError"), {"root", PROXY_USER}),
        ((MANAGER_PATH, MANAGER_IFACE, "ReportUsageCounts"), {"root", PROXY_USER}),
        ((MANAGER_PATH, MANAGER_IFACE, "Import"), {"root", TEST_ADMIN}),
        ((MANAGER_PATH, MANAGER_IFACE, "StartLogin"), {"root", TEST_ADMIN}),
        ((MANAGER_PATH, MANAGER_IFACE, "CancelLogin"), {"root", TEST_ADMIN}),
        ((CRED_PATH, CREDENTIAL_IFACE, "Refresh"), {"root", TEST_ADMIN}),
        ((CRED_PATH, CREDENTIAL_IFACE, "Remove"), {"root", TEST_ADMIN}),
        ((CRED_PATH, CREDENTIAL_IFACE, "SetEnabled"), {"root", TEST_ADMIN}),
        # anything not listed: root only
        ((MANAGER_PATH, MANAGER_IFACE, "NotAMethod"), {"root"}),
        ((MANAGER_PATH, "org.kirod.Auth1.Debug", "Dump"), {"root"}),
]


@pytest.fixture
def owner(bus, popen_as):
        p = popen_as(AUTH_USER, [PYTHON, HERE / "dbusmini.py", f"--address={bus}", "own", BUS_NAME])
        line = p.stdout.readline().decode().strip()
        assert line.startswith("OWNED :"), f"{line} {p.stderr.read().decode() if p.poll() is not None else ''}"
        return line.split()[1]


@pytest.mark.parametrize("user", USERS)
def test_policy_matrix(bus, owner, user):
        wrong = []
        for (path, iface, member), allowed in MATRIX:
                try:
                        body = kirodtest.bus_call(bus, member, user=user, path=path, interface=iface)
                        got = "allowed"
                        assert body == [f"reached:{iface}.{member}"], body
                except dbusmini.DBusError as e:
                        assert e.name == ACCESS_DENIED, f"{iface}.{member}: unexpected {e}"
                        got = "denied"
                want = "allowed" if user in allowed else "denied"
                if got != want:
                        wrong.append(f"{iface}.{member} on {path}: {got}, expected {want}")
        assert not wrong, f"policy wrong for {user}:\n" + "\n".join(wrong)


def test_policy_applies_to_the_unique_name_too(bus, owner):
        # send_destination matches every name the receiver owns, so addressing the unique name
        # instead of org.kirod.Auth1 must not get around the policy.
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(bus, "GetToken", user=TEST_USER, destination=owner)
        assert e.value.name == ACCESS_DENIED
        assert kirodtest.bus_call(bus, "GetToken", user=PROXY_USER, destination=owner) == \
                [f"reached:{MANAGER_IFACE}.GetToken"]


@pytest.mark.parametrize("user,allowed", [(AUTH_USER, True), ("root", True), (PROXY_USER, False),
                                          (TEST_ADMIN, False), (TEST_USER, False)])
def test_policy_name_ownership(bus, popen_as, user, allowed):
        p = popen_as(user, [PYTHON, HERE / "dbusmini.py", f"--address={bus}", "own", BUS_NAME])
        line = p.stdout.readline().decode().strip()
        if allowed:
                assert line.startswith("OWNED :"), line
        else:
                assert line.startswith(f"ERROR {ACCESS_DENIED}"), line


def test_policy_kiro_auth_may_emit_signals(bus, owner):
        # Signals (PropertiesChanged, LoginFinished, InterfacesAdded) are allowed by the system
        # bus default; make sure nothing in our file takes that away. A root listener with a match
        # rule receives a signal sent by a kiro-auth connection that owns nothing.
        with dbusmini.Connection(bus) as listener:
                listener.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                              "AddMatch", "s", ["type='signal',interface='org.kirod.Auth1.Manager'"])
                code = ("import dbusmini,sys; c=dbusmini.Connection(sys.argv[1]); "
                        "c.send(dbusmini.MSG_SIGNAL, {dbusmini.HDR_PATH: '/org/kirod/Auth1', "
                        "dbusmini.HDR_INTERFACE: 'org.kirod.Auth1.Manager', dbusmini.HDR_MEMBER: 'LoginFinished'}, "
                        "'sos', ['l1', '/', '']); c.call('org.freedesktop.DBus', '/org/freedesktop/DBus', "
                        "'org.freedesktop.DBus', 'GetId')")
                p = kirodtest.run_as(AUTH_USER, [PYTHON, "-c", code, bus], cwd=str(HERE))
                assert p.returncode == 0, p.stderr
                m = listener.read_message()
                while m.type != dbusmini.MSG_SIGNAL or m.member != "LoginFinished":
                        m = listener.read_message()
                assert m.body == ["l1", "/", ""]
