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
