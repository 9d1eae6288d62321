# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hundreds of credentials (issue 17, Scale): 300 credentials whose access tokens expire within a minute are
all refreshed, never more than MaxParallelRefresh at once, and one refresh that hangs does not hold up the
others. Prints kiro-authd's RSS with 300 credentials (an ASan build: see bench/README.md for the figure
without sanitizers)."""

import json
import os
import threading
import time

import dbusmini
import kirodtest
from kirodtest import wait_until

N = 300
PARALLEL = 8


class Concurrency:
        """FakeAuth.delay hook: counts refresh requests inside the fake at once, holding each for hold s."""

        def __init__(self, hold):
                self.hold = hold
                self.lock = threading.Lock()
                self.now = 0
                self.max = 0
                self.total = 0

        def __call__(self):
                with self.lock:
                        self.now += 1
                        self.total += 1
                        self.max = max(self.max, self.now)
                time.sleep(self.hold)
                with self.lock:
                        self.now -= 1
                return 0


def import_ide(bus, cred_id, at, rt, expires_in):
        tok = {"accessToken": at, "refreshToken": rt, "authMethod": "social", "provider": "Github",
               "profileArn": "arn:aws:codewhisperer:us-east-1:123456789012:profile/KIRODSCALE",
               "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + expires_in))}
        fd = kirodtest.sealed_memfd(json.dumps(tok).encode())
        try:
                with dbusmini.Connection(bus) as c:
                        c.call(kirodtest.BUS_NAME, kirodtest.MANAGER_PATH, kirodtest.MANAGER_IFACE, "Import",
                               "sha{sv}t", ["kiro-ide-json", fd, {"id": dbusmini.Variant("s", cred_id)}, 0])
        finally:
                os.close(fd)


def rss_kib(pid):
        for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        return 0


def test_300_credentials_expiring_within_a_minute(authd, fake_auth, bus):
        conc = Concurrency(0.05)
        # Imported with 90 s left, refreshed 120 s before expiry (plus up to 20 s of jitter): every one is
        # due at once, so only MaxParallelRefresh= and the queue spread them.
        a = authd(MaxParallelRefresh=PARALLEL, RefreshMarginSec=120, RefreshJitterSec=20)
        lineages = []
        gate = fake_auth.hold_next(timeout=60)
        fake_auth.delay = conc
        t0 = time.monotonic()
        for i in range(N):
                rt = f"rt-scale-{i}-{os.urandom(3).hex()}"
                lineages.append(fake_auth.seed(rt, access_token=f"at-scale-{i}", expires_in=3600))
                import_ide(bus, f"scale-{i:03d}", f"at-scale-{i}", rt, 50)
        print(f"imported {N} credentials in {time.monotonic() - t0:.1f}s")
        try:
                # One refresh is held by the fake the whole time: the other 299 finish anyway.
                assert gate.arrived.wait(30), "no refresh reached the fake"
                wait_until(lambda: sum(1 for lin in lineages if fake_auth.rotations(lin) >= 1) >= N - 1,
                           timeout=90, interval=0.2, what=f"{N - 1} credentials refreshed while one hangs")
                print(f"{N - 1} refreshed {time.monotonic() - t0:.1f}s after the first import, "
                      f"at most {conc.max} in flight (MaxParallelRefresh={PARALLEL})")
                print(f"kiro-authd RSS with {N} credentials: {rss_kib(a.pid)} KiB (ASan build)")
        finally:
                gate.release()
        wait_until(lambda: all(fake_auth.rotations(lin) >= 1 for lin in lineages), timeout=30,
                   what="the held refresh to finish too")
        assert conc.max <= PARALLEL, f"{conc.max} refreshes in flight at once, MaxParallelRefresh={PARALLEL}"
        assert conc.max >= PARALLEL - 1, f"only {conc.max} in flight: the slots were not used"
