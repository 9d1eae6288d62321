# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd when kiro-authd or the bus goes away (issue 9 item 7, DESIGN.md §3 "Upstream"): a stopped
kiro-authd does not take valid cached tokens with it; a new kiro-authd on the bus makes the proxy drop them
and ask again; a lost bus connection makes kiro-proxyd exit non-zero at once, so that Restart=on-failure
starts it again. The stack is proxyd_fixture.py (real kiro-authd and kiro-proxyd on a private
dbus-daemon with the real policy; the fake Kiro service accepts only the newest access token)."""

import re
import signal
import time

import kirodtest
from kirodtest import wait_until
from proxyd_fixture import CHAT_PATH, needs_proxyd, proxy_stack  # noqa: F401

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"


def chat(s, text="hi"):
        r = s.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": text}]})
        assert r.status == 200, r
        return r


def get_token_calls(s):
        """GetToken calls kiro-proxyd sent (it logs each at debug level, numbered)."""
        return len(re.findall(r"Asking kiro-authd for a token for kiro/", s.proxyd.log_text()))


def test_cached_token_outlives_authd_and_is_dropped_for_a_new_owner(proxy_stack):
        s = proxy_stack()
        old_token = s.access_token()
        chat(s, "warm")
        assert get_token_calls(s) == 1
        assert s.chat.last().token == old_token

        # kiro-authd stops (an upgrade, a crash): the name loses its owner.
        s.authd.stop()
        wait_until(lambda: "kiro-authd left the bus" in s.proxyd.log_text(), timeout=5,
                   what="kiro-proxyd to notice kiro-authd leaving")
        for i in range(5):
                chat(s, f"while away {i}")
        assert s.chat.count() == 6
        assert all(r.token == old_token for r in s.chat.requests), [r.token for r in s.chat.requests]
        assert get_token_calls(s) == 1, "kiro-proxyd asked for a token although its cached one was valid"

        # The next kiro-authd: the token of the previous one is dropped when it takes the name (not
        # before, see above), and the next request asks the new one.
        s.authd.start()
        wait_until(lambda: "dropped 1 token(s) of the previous instance" in s.proxyd.log_text(), timeout=5,
                   what="kiro-proxyd to drop the token of the previous kiro-authd")
        chat(s, "after restart")
        assert get_token_calls(s) == 2
        owners = re.findall(r"Got a token for kiro/'proxytest' from kiro-authd (:\S+)\.", s.proxyd.log_text())
        assert len(owners) == 2 and owners[0] != owners[1], owners
        assert s.chat.count(outcome="denied") == 0, [(r.token, r.outcome) for r in s.chat.requests]
        # And it is cached again.
        chat(s, "cached again")
        assert get_token_calls(s) == 2


def test_unknown_credential_while_authd_away_is_503(proxy_stack):
        """Nothing cached and nobody to ask: an error in the API's shape, not a hang, and the proxy lives."""
        s = proxy_stack()
        s.authd.stop()
        wait_until(lambda: "kiro-authd left the bus" in s.proxyd.log_text(), timeout=5, what="the owner change")
        r = s.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 503, r
        assert r.json()["error"]["message"], r
        assert s.chat.count() == 0
        s.authd.start()
        chat(s, "back")
        assert s.chat.count() == 1


def test_token_due_for_renewal_is_used_while_authd_away(proxy_stack, bus, fake_auth):
        """A token inside the proxy's renewal window (under 2 minutes left) is renewed on every request;
        with kiro-authd gone the renewal fails for want of an answer, and the token, still good for more
        than 10 s, is used instead of a 503."""
        s = proxy_stack(Auth={"RefreshMarginSec": 20})
        fake_auth.expires_in = 100
        label = "".join(ch if ch.isalnum() else f"_{ord(ch):02x}" for ch in s.cred_id)
        kirodtest.bus_call(bus, "Refresh", "t", [0], path=f"{kirodtest.CREDENTIAL_PREFIX}/{label}",
                           interface=kirodtest.CREDENTIAL_IFACE)
        short = s.access_token()
        chat(s, "renewing")
        chat(s, "renewing again")
        assert s.chat.last().token == short
        assert get_token_calls(s) == 2, "a token with under 2 minutes left is asked for again"

        s.authd.stop()
        wait_until(lambda: "kiro-authd left the bus" in s.proxyd.log_text(), timeout=5, what="the owner change")
        chat(s, "authd away")
        assert get_token_calls(s) == 3
        assert s.chat.last().token == short
        assert "using the cached token of 'proxytest' until it expires" in s.proxyd.log_text()
        assert s.chat.count() == 3


def test_lost_bus_makes_proxyd_exit_nonzero(proxy_stack, bus_daemon):
        s = proxy_stack()
        chat(s)
        t0 = time.monotonic()
        bus_daemon.proc.send_signal(signal.SIGKILL)
        bus_daemon.proc.wait(timeout=5)
        rc = s.proxyd.proc.wait(timeout=5)
        took = time.monotonic() - t0
        s.proxyd.check_exit = False     # this run ends by itself, on purpose
        s.authd.check_exit = False
        log = s.proxyd.log_text()
        assert rc == 1, (rc, log[-3000:])
        assert took < 3, took
        assert "Lost the connection to the system bus" in log, log[-3000:]
        assert "Sanitizer" not in log, log[-5000:]
