#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Lint: dbus-daemon loads the generated bus policy (org.kirod.Auth1.conf in the build tree's dbus/)
without complaint, the policy grants each part of the API to the users and group the build was
configured with (--auth-user, --proxy-user, --admin-group) and to nobody else, and the activation
file has the keys system bus activation needs. Needs neither root nor the users (dbus-daemon's
"Unknown username/group" warnings are expected on a machine where they do not exist yet).
check-build-options.py imports this file. Exit 0 ok, 1 failure, 77 skipped (no dbus-daemon)."""

import argparse
import configparser
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

EXPECTED_WARNINGS = ("Unknown username", "Unknown group", "Failed to set fd limit")
BUS_NAME = "org.kirod.Auth1"
# What each non-default policy block may send (interface, member), by role.
PROXY_MEMBERS = {("org.kirod.Auth1.Manager", "GetToken"), ("org.kirod.Auth1.Manager", "ReportUpstreamError"),
                 ("org.kirod.Auth1.Manager", "ReportUsageCounts")}
ADMIN_MEMBERS = {("org.kirod.Auth1.Manager", "Import"), ("org.kirod.Auth1.Manager", "StartLogin"),
                 ("org.kirod.Auth1.Manager", "CancelLogin"),
                 ("org.kirod.Auth1.Credential", "Refresh"), ("org.kirod.Auth1.Credential", "Remove"),
                 ("org.kirod.Auth1.Credential", "SetEnabled")}
PLACEHOLDER = re.compile(r"@[A-Za-z_]+@")


def policy_blocks(policy):
        """{("user"|"group"|"context", name): [(allow|deny, attributes)]} of a policy file."""
        blocks = {}
        for p in ET.parse(policy).getroot().iter("policy"):
                (key, name), = p.attrib.items()
                blocks.setdefault((key, name), []).extend((r.tag, dict(r.attrib)) for r in p)
        return blocks


def check_names(policy, auth_user, proxy_user, admin_group):
        """The policy names exactly these users and group, each with exactly its share of the API."""
        with open(policy) as f:
                left = PLACEHOLDER.findall(f.read())
        if left:
                print(f"{policy}: unsubstituted {sorted(set(left))} (the template, not the generated file?)",
                      file=sys.stderr)
                return False
        blocks = policy_blocks(policy)
        want = {("user", auth_user), ("user", "root"), ("context", "default"), ("group", admin_group),
                ("user", proxy_user)}
        if set(blocks) != want:
                print(f"{policy}: policy blocks {sorted(blocks)}, expected {sorted(want)}", file=sys.stderr)
                return False

        def sends(key):
                return {(a.get("send_interface"), a.get("send_member")) for tag, a in blocks[key]
                        if tag == "allow" and a.get("send_destination") == BUS_NAME}

        owners = {k for k, rules in blocks.items() for tag, a in rules if tag == "allow" and a.get("own") == BUS_NAME}
        checks = [
                (owners == {("user", auth_user), ("user", "root")}, f"may own {BUS_NAME}: {sorted(owners)}"),
                (blocks[("user", auth_user)] == [("allow", {"own": BUS_NAME})],
                 f"{auth_user} gets more than the name: {blocks[('user', auth_user)]}"),
                (sends(("user", proxy_user)) == PROXY_MEMBERS, f"{proxy_user} may send {sends(('user', proxy_user))}"),
                (sends(("group", admin_group)) == ADMIN_MEMBERS,
                 f"group {admin_group} may send {sends(('group', admin_group))}"),
                (not (sends(("context", "default")) & (PROXY_MEMBERS | ADMIN_MEMBERS)),
                 f"everyone may send {sends(('context', 'default')) & (PROXY_MEMBERS | ADMIN_MEMBERS)}"),
        ]
        bad = [what for ok, what in checks if not ok]
        for what in bad:
                print(f"{policy}: {what}", file=sys.stderr)
        if not bad:
                print(f"{policy}: own for {auth_user}, tokens for {proxy_user}, changes for group {admin_group}")
        return not bad


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


def check_service(service, auth_user):
        cp = configparser.ConfigParser(interpolation=None)
        cp.optionxform = str
        cp.read(service)
        want = {"Name": "org.kirod.Auth1", "Exec": "/bin/false", "User": auth_user,
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
        ap.add_argument("--auth-user", default="kiro-auth")
        ap.add_argument("--proxy-user", default="kiro-proxy")
        ap.add_argument("--admin-group", default="kiro-admin")
        a = ap.parse_args()
        if not shutil.which("dbus-daemon"):
                print("dbus-daemon not installed, skipping")
                return 77
        ok = check_policy(a.policy, a.template)
        ok = check_names(a.policy, a.auth_user, a.proxy_user, a.admin_group) and ok
        ok = check_service(a.service, a.auth_user) and ok
        return 0 if ok else 1


if __name__ == "__main__":
        sys.exit(main())
