#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Lint: a build configured with non-default -Dproxy-user= and -Dadmin-group= generates a bus policy,
an activation file, units, sysusers.d and compiled-in defaults (config.h) that all name the same users
and group, none of them the default ones, and dbus-daemon accepts that policy. Runs 'meson setup' into
a temporary directory (no compilation). Exit 0 ok, 1 failure, 77 skipped (no meson or dbus-daemon)."""

import argparse
import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUTH_USER = "kiro-auth"
DEFAULT_NAMES = ("kiro-proxy", "kiro-admin")


def load_policy_lint():
        spec = importlib.util.spec_from_file_location("check_dbus_policy", HERE / "check-dbus-policy.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


def unit_keys(path, section):
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.optionxform = str
        cp.read(path)
        return dict(cp[section])


def sysusers_entries(path):
        """[(type, name)] of a sysusers.d file."""
        out = []
        for line in Path(path).read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                        fields = line.split()
                        out.append((fields[0], fields[1]))
        return out


def config_h_string(path, macro):
        m = re.search(rf'^#define {macro} "([^"]*)"$', Path(path).read_text(), re.M)
        return m.group(1) if m else None


def uncommented(path):
        """The text of a generated file without its comments (#-lines, XML comments)."""
        text = Path(path).read_text()
        text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
        return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--meson", required=True)
        ap.add_argument("--source", required=True)
        ap.add_argument("--proxy-user", default="kp-test")
        ap.add_argument("--admin-group", default="ka-test")
        a = ap.parse_args()
        if not shutil.which("dbus-daemon"):
                print("dbus-daemon not installed, skipping")
                return 77
        assert a.proxy_user not in DEFAULT_NAMES and a.admin_group not in DEFAULT_NAMES
        lint = load_policy_lint()

        with tempfile.TemporaryDirectory(prefix="kirod-options-") as tmp:
                build = Path(tmp) / "build"
                p = subprocess.run([a.meson, "setup", str(build), a.source, f"-Dproxy-user={a.proxy_user}",
                                    f"-Dadmin-group={a.admin_group}", "-Dintegration-tests=false"],
                                   stdin=subprocess.DEVNULL, capture_output=True, text=True)
                if p.returncode != 0:
                        print(f"meson setup failed ({p.returncode}):\n{p.stdout}{p.stderr}", file=sys.stderr)
                        return 1
                policy = build / "dbus" / "org.kirod.Auth1.conf"
                service = build / "dbus" / "org.kirod.Auth1.service"
                authd_unit = build / "units" / "kiro-authd.service"
                proxyd_unit = build / "units" / "kiro-proxyd.service"
                sysusers = build / "units" / "kirod-sysusers.conf"
                config_h = build / "config.h"

                failures = []

                def expect(got, want, what):
                        if got != want:
                                failures.append(f"{what}: {got!r}, expected {want!r}")

                # Units and sysusers.d: the daemons run as the users sysusers.d creates.
                authd = unit_keys(authd_unit, "Service")
                proxyd = unit_keys(proxyd_unit, "Service")
                expect((authd.get("User"), authd.get("Group")), (AUTH_USER, AUTH_USER), authd_unit.name)
                expect((proxyd.get("User"), proxyd.get("Group")), (a.proxy_user, a.proxy_user), proxyd_unit.name)
                expect(sorted(sysusers_entries(sysusers)),
                       sorted([("u", AUTH_USER), ("u", a.proxy_user), ("g", a.admin_group), ("g", "kiro-users")]),
                       sysusers.name)
                # The daemons' compiled-in ProxyUser= and AdminGroup= defaults.
                expect(config_h_string(config_h, "KIROD_PROXY_USER"), a.proxy_user, "config.h KIROD_PROXY_USER")
                expect(config_h_string(config_h, "KIROD_ADMIN_GROUP"), a.admin_group, "config.h KIROD_ADMIN_GROUP")
                # No generated file still grants something to a default name.
                for f in (policy, service, authd_unit, proxyd_unit, sysusers):
                        for name in DEFAULT_NAMES:
                                if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", uncommented(f)):
                                        failures.append(f"{f.name} names the default '{name}'")
                for f in failures:
                        print(f, file=sys.stderr)

                # The policy: the same names, each with its share of the API; dbus-daemon loads it; the
                # activation file starts the unit whose user may own the name.
                ok = not failures
                ok = lint.check_names(policy, AUTH_USER, a.proxy_user, a.admin_group) and ok
                ok = lint.check_policy(policy, HERE / "system-bus.conf.in") and ok
                ok = lint.check_service(service, AUTH_USER) and ok
                if ok:
                        print(f"-Dproxy-user={a.proxy_user} -Dadmin-group={a.admin_group}: policy, activation file, "
                              f"units, sysusers.d and config.h agree")
                return 0 if ok else 1


if __name__ == "__main__":
        sys.exit(main())
