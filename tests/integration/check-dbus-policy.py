#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Lint: dbus-daemon loads dbus/org.kirod.Auth1.conf without complaint, and the activation file has
the keys system bus activation needs. Needs neither root nor the test users (dbus-daemon's
"Unknown username/group" warnings for kiro-auth, kiro-proxy and kiro-admin are expected on a machine
where they do not exist yet). Exit 0 ok, 1 failure, 77 skipped (no dbus-daemon)."""

import argparse
import configparser
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

EXPECTED_WARNINGS = ("Unknown username", "Unknown group", "Failed to set fd limit")


def check_policy(policy, template):
        try:
                ET.parse(policy)
        except ET.ParseError as e:
                print(f"{policy}: not well-formed XML: {e}", file=sys.stderr)
                return False
        with tempfile.TemporaryDirectory(prefix="kirod-policy-") as d:
                conf = os.path.join(d, "bus.conf")
                with open(template) as f:
                        text = f.read()
                text = text.replace("@LISTEN@", f"unix:path={d}/bus").replace("@POLICY@", os.path.abspath(policy))
                with open(conf, "w") as f:
                        f.write(text)
                r, w = os.pipe()
                p = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", f"--print-address={w}"],
                                     pass_fds=[w], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
                os.close(w)
                address = b""
                deadline = time.monotonic() + 20
                while b"\n" not in address and time.monotonic() < deadline and p.poll() is None:
                        if select.select([r], [], [], 0.2)[0]:
                                chunk = os.read(r, 4096)
                                if not chunk:
                                        break
                                address += chunk
                os.close(r)
                if p.poll() is None:
                        p.terminate()
                out, _ = p.communicate(timeout=10)
                out = out.decode(errors="replace")
                if not address.startswith(b"unix:path="):
                        print(f"dbus-daemon did not start with {policy}:\n{out}", file=sys.stderr)
                        return False
                unexpected = [line for line in out.splitlines()
                              if line.strip() and not any(w in line for w in EXPECTED_WARNINGS)]
                if unexpected:
                        print("dbus-daemon complained about the policy:\n" + "\n".join(unexpected), file=sys.stderr)
                        return False
                print(f"dbus-daemon loaded {policy} (listening on {address.decode().strip()})")
                return True


def check_service(service):
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read(service)
        want = {"Name": "org.kirod.Auth1", "Exec": "/bin/false", "User": "kiro-auth",
                "SystemdService": "kiro-authd.service"}
        if "D-BUS Service" not in cp:
                print(f"{service}: no [D-BUS Service] section", file=sys.stderr)
                return False
        got = dict(cp["D-BUS Service"])
        if got != want:
                print(f"{service}: keys {got}, expected {want}", file=sys.stderr)
                return False
        print(f"{service}: ok")
        return True


def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--policy", required=True)
        ap.add_argument("--service", required=True)
        ap.add_argument("--template", required=True)
        a = ap.parse_args()
        if not shutil.which("dbus-daemon"):
                print("dbus-daemon not installed, skipping")
                return 77
        ok = check_policy(a.policy, a.template)
        ok = check_service(a.service) and ok
        return 0 if ok else 1


if __name__ == "__main__":
        sys.exit(main())
