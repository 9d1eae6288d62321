# SPDX-License-Identifier: LGPL-2.1-or-later
"""`kiroctl status` shows the last hour's requests, errors and failovers per credential (issue 14): the
real kiro-proxyd counts per credential and sends batched ReportUsageCounts calls to the real kiro-authd,
which keeps a rolling hour and exposes RequestsLastHour/ErrorsLastHour/FailoversLastHour; kiroctl reads
them. Traffic goes through the fake Kiro."""

import json
import time

import pytest

import dbusmini
import kirodtest
from kirodtest import INVALID_ARGS, PROXY_USER, TEST_USER, wait_until
from proxyd_fixture import CHAT_PATH, proxy_stack  # noqa: F401
from test_proxyd_accounts import accounts  # noqa: F401

MODEL = "claude-sonnet-4.5"
COUNT_KEYS = ("requests_last_hour", "errors_last_hour", "failovers_last_hour")


def chat(content):
        return {"model": MODEL, "messages": [{"role": "user", "content": content}]}


def counts(kiroctl):
        st = {c["id"]: c for c in json.loads(kiroctl("status", "--json", check=False).stdout)}
        return {cid: tuple(c[k] for k in COUNT_KEYS) for cid, c in st.items()}


def wait_counts(kiroctl, want, timeout=10):
        """Until kiroctl status --json shows exactly these (requests, errors, failovers) per id."""
        got = {}

        def ok():
                nonlocal got
                got = counts(kiroctl)
                return all(got.get(cid) == v for cid, v in want.items())
        try:
                wait_until(ok, timeout=timeout, what=f"the counts {want}")
        except Exception:
                pytest.fail(f"kiroctl status shows {got}, expected {want}")
        return time.monotonic()


def test_successes_a_429_and_a_failover_show_in_kiroctl_status(proxy_stack, kiroctl):
        s = proxy_stack(n_endpoints=2)
        first = s.chat
        assert counts(kiroctl) == {"proxytest": (0, 0, 0)}

        t0 = time.monotonic()
        for text in ("one", "two"):
                assert s.post(CHAT_PATH, chat(text)).status == 200
        # A 429 retried on the same credential (the only one): an error, no failover…
        first.enqueue({"status": 429})
        assert s.post(CHAT_PATH, chat("three")).status == 200
        # …and a 500 that fails over to the second endpoint: an error and a failover.
        first.enqueue({"status": 500, "message": "Internal failure"})
        assert s.post(CHAT_PATH, chat("four")).status == 200
        seen = wait_counts(kiroctl, {"proxytest": (4, 2, 1)})
        # Batched: reported within the report interval (2 s) plus slack, not per request.
        assert seen - t0 < 8

        # The text view says the same.
        out = kiroctl("status", "proxytest", check=False).stdout
        assert "   Last hour: 4 requests, 2 errors, 1 failover\n" in out, out
        table = kiroctl("status", check=False).stdout
        assert " 4/2/1 " in table, table

        # Counts add up across reports.
        assert s.post(CHAT_PATH, chat("five")).status == 200
        wait_counts(kiroctl, {"proxytest": (5, 2, 1)})


def test_a_429_fails_over_and_counts_on_the_credential_it_left(accounts, kiroctl):
        acc = accounts(ids=("acct-a", "acct-b"), policy="round-robin")
        acc.chat.enqueue({"status": 429, "retry_after": 2, "match_token": lambda: acc.token("acct-a")})
        assert acc.chat_once("throttled") == "acct-b"
        wait_counts(kiroctl, {"acct-a": (0, 1, 1), "acct-b": (1, 0, 0)})
        assert acc.prop("acct-a", "FailoversLastHour") == 1
        assert acc.prop("acct-b", "RequestsLastHour") == 1


def test_report_usage_counts_directly(proxy_stack, bus_daemon, kiroctl):
        """The method itself: root and the proxy user may report; unknown ids are skipped; unknown flags
        refuse the whole report; anyone else is refused by the policy."""
        s = proxy_stack()
        addr = bus_daemon.address
        kirodtest.bus_call(addr, "ReportUsageCounts", "a(sttt)t", [[("proxytest", 10, 3, 2), ("gone", 5, 5, 5)], 0])
        kirodtest.bus_call(addr, "ReportUsageCounts", "a(sttt)t", [[("proxytest", 1, 0, 0)], 0], user=PROXY_USER)
        wait_counts(kiroctl, {"proxytest": (11, 3, 2)}, timeout=3)
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(addr, "ReportUsageCounts", "a(sttt)t", [[("proxytest", 100, 0, 0)], 1])
        assert e.value.name == INVALID_ARGS
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(addr, "ReportUsageCounts", "a(sttt)t", [[("proxytest", 100, 0, 0)], 0], user=TEST_USER)
        assert e.value.name == "org.freedesktop.DBus.Error.AccessDenied"
        assert counts(kiroctl) == {"proxytest": (11, 3, 2)}


def test_kiroctl_top_shows_totals_and_the_rate_between_frames(proxy_stack, kiroctl):
        import re
        import threading
        s = proxy_stack()
        for text in ("one", "two"):
                assert s.post(CHAT_PATH, chat(text)).status == 200
        wait_counts(kiroctl, {"proxytest": (2, 0, 0)})

        # Two frames 4 s apart; three requests in between, reported to kiro-authd within 2 s.
        result = {}
        t = threading.Thread(target=lambda: result.update(
                p=kiroctl("top", "--interval", "4", "--iterations", "2", check=False, timeout=60)))
        t.start()
        time.sleep(0.5)
        for text in ("three", "four", "five"):
                assert s.post(CHAT_PATH, chat(text)).status == 200
        t.join(60)
        p = result["p"]
        assert p.returncode == 0, p.stderr
        headers = [ln for ln in p.stdout.splitlines() if ln.startswith("kiroctl top: ")]
        assert len(headers) == 2, p.stdout
        assert "; 1 credential, 1 usable; last hour 2 requests, 0 errors, 0 failovers" in headers[0], headers[0]
        assert "requests/min" not in headers[0]
        assert "; last hour 5 requests, 0 errors, 0 failovers; now " in headers[1], headers[1]
        rate = float(re.search(r"now ([0-9.]+) requests/min", headers[1]).group(1))
        # 3 requests over at least the 4 s interval (plus the bus call): at most 45 per minute.
        assert 25 <= rate <= 45.0, headers[1]
        # Each frame carries the status table with the credential's row.
        assert p.stdout.count("proxytest") >= 2, p.stdout
        assert "\033[2J" not in p.stdout      # not a terminal: frames are appended, not redrawn


def test_kiroctl_top_options_are_checked(kiroctl, authd):
        p = kiroctl("top", "--interval", "0", check=False)
        assert p.returncode == 2 and "--interval takes a time from 0.1s to 1h" in p.stderr, p.stderr
        p = kiroctl("top", "--iterations", "-1", check=False)
        assert p.returncode == 2 and "--iterations takes a whole number" in p.stderr, p.stderr
        p = kiroctl("status", "--iterations", "2", check=False)
        assert p.returncode == 2 and "--iterations is only valid with 'top'" in p.stderr, p.stderr
        p = kiroctl("top", "--json", "--iterations", "1", check=False)
        assert p.returncode == 2 and "--json is not valid with 'top'" in p.stderr, p.stderr
