# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiroctl against the real kiro-authd: status's exit code 3 (like systemctl is-active), --no-legend on a
terminal, and --help naming the installed man page."""
import os
import pty
import subprocess

import pytest

from kirodtest import AUTHD_BIN, KIROCTL_BIN, TEST_ADMIN, base_env

pytestmark = pytest.mark.skipif(not AUTHD_BIN.exists() or not KIROCTL_BIN.exists(),
                                reason=f"needs {AUTHD_BIN} and {KIROCTL_BIN} (build first)")


def on_tty(bus, *args):
        """kiroctl with standard output on a pseudo-terminal (80 columns): (exit status, output)."""
        master, slave = pty.openpty()
        try:
                p = subprocess.Popen([KIROCTL_BIN, "--system", *args], stdin=subprocess.DEVNULL, stdout=slave,
                                     stderr=subprocess.DEVNULL, env=base_env(DBUS_SYSTEM_BUS_ADDRESS=bus, TERM="dumb"))
                os.close(slave)
                out = b""
                while True:
                        try:
                                chunk = os.read(master, 4096)
                        except OSError:         # EIO: the other side is closed
                                break
                        if not chunk:
                                break
                        out += chunk
                return p.wait(timeout=60), out.decode().replace("\r\n", "\n")
        finally:
                os.close(master)


def test_status_exit_codes(authd, kiroctl):
        authd()
        # No credential at all: none usable.
        assert kiroctl("status", check=False).returncode == 3
        kiroctl("import", "--api-key-file", "-", "--id", "k1", user=TEST_ADMIN, input="ksk_cli_0123456789abcdef\n")
        p = kiroctl("status", check=False)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "k1" in p.stdout
        assert kiroctl("status", "k1", check=False).returncode == 0
        # Disabled: nothing is usable, and that one is not either; the output is still printed.
        kiroctl("disable", "k1", user=TEST_ADMIN)
        p = kiroctl("status", check=False)
        assert p.returncode == 3 and "k1" in p.stdout and p.stderr == "", (p.returncode, p.stdout, p.stderr)
        p = kiroctl("status", "--json", "k1", check=False)
        assert p.returncode == 3 and '"enabled":false' in p.stdout, (p.returncode, p.stdout)
        # A second, usable one makes the whole status good again, but not the disabled one's.
        kiroctl("import", "--api-key-file", "-", "--id", "k2", user=TEST_ADMIN, input="ksk_cli_fedcba9876543210\n")
        assert kiroctl("status", check=False).returncode == 0
        assert kiroctl("status", "k1", check=False).returncode == 3
        assert kiroctl("status", "k2", check=False).returncode == 0
        # list is no health check.
        assert kiroctl("list", check=False).returncode == 0
        # No such credential stays 4.
        assert kiroctl("status", "nope", check=False).returncode == 4


def test_no_legend_on_a_terminal(authd, kiroctl, bus):
        authd()
        kiroctl("import", "--api-key-file", "-", "--id", "k1", user=TEST_ADMIN, input="ksk_cli_0123456789abcdef\n")
        rc, out = on_tty(bus, "list")
        assert rc == 0 and out.startswith("ID") and "1 credential listed." in out, out
        rc, out = on_tty(bus, "--no-legend", "list")
        assert rc == 0 and out.split() == ["k1", "kiro", "api-key", "active"], out
        rc, out = on_tty(bus, "status", "--no-legend", "--no-pager")
        assert rc == 0 and out.startswith("k1 ") and "ID" not in out, out


def test_help_names_the_man_page():
        p = subprocess.run([KIROCTL_BIN, "--help"], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0
        assert "man kiroctl" in p.stdout and "docs/kiroctl.md" not in p.stdout, p.stdout
        assert "  3  status: a credential needs a new login, or none is usable" in p.stdout
