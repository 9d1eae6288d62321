# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-authd as a service: LogControl1 (systemctl service-log-level), the watchdog and STOPPING=1."""
import select
import signal
import time

import dbusmini
import kirodtest
import pytest

PROPS = "org.freedesktop.DBus.Properties"


def _log_level(dbus, user="root"):
        v = dbus("Get", "ss", [kirodtest.LOG_CONTROL_IFACE, "LogLevel"], path=kirodtest.LOG_CONTROL_PATH,
                 interface=PROPS, user=user)[0]
        return v.value if isinstance(v, dbusmini.Variant) else v


def test_log_level_root_only_and_effective(users, authd, dbus, kiroctl):
        a = authd()
        assert _log_level(dbus) == "debug"          # the fixture starts it with --log-level=debug
        dbus("Set", "ssv", [kirodtest.LOG_CONTROL_IFACE, "LogLevel", dbusmini.Variant("s", "warning")],
             path=kirodtest.LOG_CONTROL_PATH, interface=PROPS)
        assert _log_level(dbus) == "warning"
        assert _log_level(dbus, user="kiro-test-user") == "warning"     # reading is for everyone

        # At "warning" the info line of an import is no longer written.
        before = a.log_path.read_text()
        kiroctl("import", "--api-key-file", "-", input="ksk_loglevel\n", user="kiro-test-admin")
        time.sleep(0.3)
        assert "Imported credential" not in a.log_path.read_text()[len(before):]

        with pytest.raises(dbusmini.DBusError) as e:
                dbus("Set", "ssv", [kirodtest.LOG_CONTROL_IFACE, "LogLevel", dbusmini.Variant("s", "debug")],
                     path=kirodtest.LOG_CONTROL_PATH, interface=PROPS, user="kiro-test-admin")
        assert e.value.name == "org.freedesktop.DBus.Error.AccessDenied"
        assert _log_level(dbus) == "warning"
        with pytest.raises(dbusmini.DBusError) as e:
                dbus("Set", "ssv", [kirodtest.LOG_CONTROL_IFACE, "LogLevel", dbusmini.Variant("s", "loud")],
                     path=kirodtest.LOG_CONTROL_PATH, interface=PROPS)
        assert e.value.name == "org.freedesktop.DBus.Error.InvalidArgs"


def test_watchdog_pings_and_stopping(users, authd):
        a = authd(start=False)
        a.extra_env = {"WATCHDOG_USEC": "400000"}      # sd-event pings at half the interval
        a.start()
        seen = []
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and len([m for m in seen if "WATCHDOG=1" in m]) < 3:
                ready, _, _ = select.select([a.notify], [], [], 0.2)
                if ready:
                        seen.append(a.notify.recv(4096).decode(errors="replace"))
        assert len([m for m in seen if "WATCHDOG=1" in m]) >= 3, seen

        a.proc.send_signal(signal.SIGTERM)
        assert a.proc.wait(timeout=10) == 0
        a._ended = True
        msgs = []
        while select.select([a.notify], [], [], 0.2)[0]:
                msgs.append(a.notify.recv(4096).decode(errors="replace"))
        assert any("STOPPING=1" in m for m in msgs), msgs
