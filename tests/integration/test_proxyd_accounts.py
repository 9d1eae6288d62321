# SPDX-License-Identifier: LGPL-2.1-or-later
"""Many accounts through kiro-proxyd (issue 17, DESIGN.md §2 "Selection and health", §3 "Upstream"): the
proxy follows kiro-authd's credentials over the bus and picks one per request by SelectionPolicy, keeps a
client session on one credential, moves a request that met 429, quota, suspension or a refused token to
another credential before the first byte, and never leaves the only account unusable after one 429.

The stack: the real kiro-authd and kiro-proxyd on a private dbus-daemon with the real policy; fake_auth
issues distinct tokens per credential (one lineage each) and the fake Kiro service accepts the newest token
of every lineage, so each recorded request says which credential carried it."""

import json
import os
import threading
import time
import uuid

import pytest

import dbusmini
import kirodtest
from kirodtest import wait_until
from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, PROFILE_ARN, Proxyd, import_credential, needs_proxyd
from fakes.kiro_chat import FakeKiroChat

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"


def label(cred_id):
        return "".join(ch if ch.isalnum() else f"_{ord(ch):02x}" for ch in cred_id)


class AnyLineage:
        """Tokens the chat fake accepts: the newest access token of any of the stack's lineages."""

        def __init__(self, stack):
                self.stack = stack

        def __contains__(self, token):
                return token is not None and self.stack.cred_of(token) is not None


class Accounts:
        def __init__(self, bus, fake_auth, authd, chat, proxyd, lineages):
                self.bus = bus
                self.fake_auth = fake_auth
                self.authd = authd
                self.chat = chat
                self.proxyd = proxyd
                self.lineages = lineages        # {credential id: lineage}

        def token(self, cred_id):
                return self.fake_auth.latest_access_token(self.lineages[cred_id])

        def cred_of(self, token):
                for cid, lin in list(self.lineages.items()):
                        if self.fake_auth.latest_access_token(lin) == token:
                                return cid
                return None

        def post(self, path, body, headers=None):
                return Proxyd_request(self, path, body, headers)

        def chat_once(self, text="hi", expect=200, headers=None, user=None):
                body = {"model": MODEL, "messages": [{"role": "user", "content": f"{text} {os.urandom(3).hex()}"}]}
                if user:
                        body["user"] = user
                r = self.post(CHAT_PATH, body, headers)
                assert r.status == expect, r
                return self.cred_of(self.chat.last().token) if expect == 200 else r

        def used(self, n, **kw):
                return [self.chat_once(f"req{i}", **kw) for i in range(n)]

        def prop(self, cred_id, name):
                v = kirodtest.bus_call(self.bus, "Get", "ss", [kirodtest.CREDENTIAL_IFACE, name],
                                       path=f"{kirodtest.CREDENTIAL_PREFIX}/{label(cred_id)}",
                                       interface="org.freedesktop.DBus.Properties")[0]
                return v.value if isinstance(v, dbusmini.Variant) else v

        def cred_call(self, cred_id, member, signature="", args=()):
                return kirodtest.bus_call(self.bus, member, signature, list(args),
                                          path=f"{kirodtest.CREDENTIAL_PREFIX}/{label(cred_id)}",
                                          interface=kirodtest.CREDENTIAL_IFACE)

        def wait_following(self, n):
                """Until kiro-proxyd has read kiro-authd's credentials (it logs the count)."""
                wait_until(lambda: f"Following {n} credential(s)" in self.proxyd.log_text(), timeout=10,
                           what=f"kiro-proxyd to follow {n} credentials")


def Proxyd_request(acc, path, body, headers):
        import http.client
        import json
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", acc.proxyd.port, timeout=30)
        try:
                c.request("POST", path, body=json.dumps(body).encode(), headers=h)
                resp = c.getresponse()
                from proxyd_fixture import Response
                return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
                c.close()


@pytest.fixture
def accounts(bus_daemon, fake_auth, authd, scratch, request):
        made = []

        def factory(ids=("acct-a", "acct-b", "acct-c"), *, policy="round-robin", Kiro=None, Auth=None):
                auth = {"SelectionPolicy": policy}
                auth.update(Auth or {})
                a = authd(**auth)
                lineages = {}
                for cid in ids:
                        at = f"at-{cid}-{os.urandom(4).hex()}"
                        rt = f"rt-{cid}-{os.urandom(4).hex()}"
                        lineages[cid] = fake_auth.seed(rt, access_token=at, profile_arn=PROFILE_ARN)
                        import_credential(bus_daemon.address, cid, at, rt)
                chat = FakeKiroChat(tokens=()).start()
                kiro = {"MaxAttempts": 4, "RetryBackoffSec": 0.05}
                kiro.update(Kiro or {})
                p = Proxyd(bus_daemon.address, scratch, endpoints=[chat.url], kiro=kiro)
                acc = Accounts(bus_daemon.address, fake_auth, a, chat, p, lineages)
                chat.tokens = AnyLineage(acc)
                made.append((p, chat))
                node = request.node
                if not hasattr(node, "_kirod_logs"):
                        node._kirod_logs = []
                node._kirod_logs.append((f"{p.name} log (kiro-proxyd stderr)", p.log_path))
                p.start()
                acc.wait_following(len(ids))
                return acc

        yield factory
        problems = []
        for p, chat in made:
                problems += [f"{p.name}: {x}" for x in p.teardown()]
                chat.stop()
        if problems:
                pytest.fail("kiro-proxyd did not exit cleanly:\n" + "\n".join(problems))


def test_round_robin_order(accounts):
        acc = accounts(policy="round-robin")
        assert acc.used(6) == ["acct-a", "acct-b", "acct-c", "acct-a", "acct-b", "acct-c"]


def test_sticky_order(accounts):
        acc = accounts(policy="sticky")
        assert acc.used(5) == ["acct-a"] * 5


def test_least_used_order(accounts):
        """The credential used least so far goes next: one that was disabled for a while catches up."""
        acc = accounts(policy="least-used")
        assert acc.used(3) == ["acct-a", "acct-b", "acct-c"]
        acc.cred_call("acct-b", "SetEnabled", "bt", [False, 0])
        wait_until(lambda: acc.chat_once("probe") != "acct-b" and True, timeout=2)
        # a=2 or c=2 now (the probe); drive both to 3 without b.
        got = acc.used(3)
        assert "acct-b" not in got, got
        acc.cred_call("acct-b", "SetEnabled", "bt", [True, 0])
        time.sleep(0.3)
        # b has 1 use, a and c 3 each: b serves the next two.
        assert acc.used(2) == ["acct-b", "acct-b"]


def test_429_moves_the_request_and_the_next_ones_and_the_credential_returns(accounts):
        acc = accounts(policy="round-robin")
        acc.chat.enqueue({"status": 429, "retry_after": 2, "match_token": lambda: acc.token("acct-a")})
        t0 = time.monotonic()
        first = acc.chat_once("throttled")
        assert first == "acct-b", "the request that met 429 on acct-a goes to the next credential"
        assert acc.chat.requests[0].status == 429 and acc.cred_of(acc.chat.requests[0].token) == "acct-a"
        wait_until(lambda: acc.prop("acct-a", "CooldownReason") == "throttled", timeout=2)
        assert acc.prop("acct-a", "State") == "cooldown"
        during = []
        while time.monotonic() - t0 < 1.5:
                during.append(acc.chat_once("during"))
        assert during and "acct-a" not in during, during
        time.sleep(max(0, 2.3 - (time.monotonic() - t0)))
        after = acc.used(3)
        assert "acct-a" in after, f"acct-a did not come back after its cooldown: {after}"
        # Its success ended the cooldown in kiro-authd as well.
        wait_until(lambda: acc.prop("acct-a", "CooldownUntil") == 0, timeout=2,
                   what="the success to end acct-a's cooldown")


def test_single_credential_one_429_keeps_serving(accounts):
        """Issue 17: one 429 that the retry got past must not leave the only account unusable."""
        acc = accounts(ids=("solo",), policy="sticky")
        acc.chat.enqueue({"status": 429, "retry_after": 30})
        assert acc.chat_once("first") == "solo"
        assert [r.status for r in acc.chat.requests] == [429, 200]
        for i in range(3):
                assert acc.chat_once(f"later {i}") == "solo"
        # The successes reached kiro-authd: no cooldown left.
        wait_until(lambda: acc.prop("solo", "CooldownUntil") == 0, timeout=2, what="the cooldown to end")


def test_single_credential_throttled_everywhere_still_tries(accounts):
        """Every credential cooling down: the request goes to the one that comes back first, and the
        client gets the 429 with Retry-After only when that fails too."""
        acc = accounts(ids=("solo",), policy="sticky", Kiro={"MaxAttempts": 2})
        acc.chat.enqueue({"status": 429, "retry_after": 7, "repeat": 2})
        r = acc.chat_once("both refused", expect=429)
        assert int(r.headers["retry-after"]) >= 1, r.headers
        assert acc.chat.count() == 2
        assert acc.chat_once("next one") == "solo"


def test_suspended_reason_disables_but_a_message_does_not(accounts):
        acc = accounts(policy="sticky")
        # A 403 whose message merely says "suspended" changes nothing about acct-a's enabled state.
        acc.chat.enqueue({"status": 403, "message": "This account is suspended for no reason",
                          "match_token": lambda: acc.token("acct-a")})
        acc.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": "words"}]})
        time.sleep(0.3)
        assert acc.prop("acct-a", "Enabled") is True
        # The documented reason does.
        acc.chat.enqueue({"status": 403, "reason": "TEMPORARILY_SUSPENDED", "message": "Account suspended",
                          "match_token": lambda: acc.token("acct-a")})
        assert acc.chat_once("suspended") == "acct-b"
        wait_until(lambda: acc.prop("acct-a", "Enabled") is False, timeout=2, what="acct-a disabled")
        assert acc.prop("acct-a", "State") == "disabled"
        assert set(acc.used(4)) == {"acct-b"}
        acc.cred_call("acct-a", "SetEnabled", "bt", [True, 0])
        time.sleep(0.3)
        acc.cred_call("acct-b", "SetEnabled", "bt", [False, 0])
        time.sleep(0.3)
        assert acc.used(2) == ["acct-a", "acct-a"]


def _time_until_moved(acc, action, cred):
        """Runs action, then requests until one is not served by cred; seconds from action's return."""
        action()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:
                if acc.chat_once("probe") != cred:
                        return time.monotonic() - t0
        return None


def test_disable_and_remove_reach_the_proxy_within_a_second(accounts, kiroctl):
        acc = accounts(policy="sticky")
        assert acc.used(2) == ["acct-a", "acct-a"]
        dt = _time_until_moved(acc, lambda: kiroctl("disable", "acct-a"), "acct-a")
        assert dt is not None and dt < 1.0, dt
        print(f"disable → last use: {dt * 1000:.1f} ms")
        assert acc.chat_once() == "acct-b"
        dt = _time_until_moved(acc, lambda: kiroctl("remove", "acct-b"), "acct-b")
        assert dt is not None and dt < 1.0, dt
        print(f"remove → last use: {dt * 1000:.1f} ms")
        assert acc.used(2) == ["acct-c", "acct-c"]
        # A new credential is seen too: with a and b gone, disable c and import d.
        at, rt = f"at-d-{os.urandom(4).hex()}", f"rt-d-{os.urandom(4).hex()}"
        acc.lineages["acct-d"] = acc.fake_auth.seed(rt, access_token=at, profile_arn=PROFILE_ARN)
        import_credential(acc.bus, "acct-d", at, rt)
        kiroctl("disable", "acct-c")
        time.sleep(0.3)
        assert acc.chat_once() == "acct-d"


def test_nothing_usable_is_503_in_the_api_shape(accounts, kiroctl):
        acc = accounts(ids=("acct-a", "acct-b"))
        kiroctl("disable", "acct-a")
        kiroctl("disable", "acct-b")
        time.sleep(0.3)
        r = acc.chat_once(expect=503)
        assert r.json()["error"]["message"]
        r = acc.post(MESSAGES_PATH, {"model": MODEL, "max_tokens": 10,
                                     "messages": [{"role": "user", "content": "x"}]})
        assert r.status == 503 and r.json()["type"] == "error", r
        assert acc.chat.count() == 0


def test_quota_spent_everywhere_is_429_with_retry_after(accounts):
        acc = accounts(ids=("acct-a",), Kiro={"MaxAttempts": 3})
        acc.chat.enqueue({"status": 402, "retry_after": 120})
        r = acc.chat_once("quota", expect=429)
        assert 60 <= int(r.headers["retry-after"]) <= 120, r.headers
        assert acc.chat.count() == 1, "a spent quota is not tried again"
        wait_until(lambda: acc.prop("acct-a", "CooldownReason") == "quota-exhausted", timeout=2)


def test_health_survives_an_authd_restart(accounts, kiroctl):
        acc = accounts(policy="sticky")
        acc.chat.enqueue({"status": 429, "retry_after": 120, "match_token": lambda: acc.token("acct-a")})
        assert acc.chat_once("throttle a") == "acct-b"
        acc.chat.enqueue({"status": 403, "reason": "TEMPORARILY_SUSPENDED",
                          "match_token": lambda: acc.token("acct-b")})
        assert acc.chat_once("suspend b") == "acct-c"
        wait_until(lambda: acc.prop("acct-b", "Enabled") is False, timeout=2)
        until = acc.prop("acct-a", "CooldownUntil")
        assert until > kirodtest.now_usec() + 100_000_000

        acc.authd.stop()
        acc.authd.start()
        assert abs(acc.prop("acct-a", "CooldownUntil") - until) < 1000   # stored with ms precision
        assert acc.prop("acct-a", "CooldownReason") == "throttled"
        assert acc.prop("acct-a", "State") == "cooldown"
        assert acc.prop("acct-b", "Enabled") is False
        st = {c["id"]: c for c in json.loads(kiroctl("status", "--json").stdout)}
        assert st["acct-a"]["state"] == "cooldown" and st["acct-a"]["cooldown_reason"] == "throttled", st["acct-a"]
        assert st["acct-b"]["state"] == "disabled" and st["acct-c"]["cooldown_reason"] is None
        assert "(throttled)" in kiroctl("status", "acct-a", check=False).stdout
        wait_until(lambda: acc.proxyd.log_text().count("Following 3 credential(s)") >= 2, timeout=5)
        assert acc.used(3) == ["acct-c"] * 3


def test_session_affinity(accounts):
        """Requests of one Anthropic session stay on one credential while round-robin rotates the rest."""
        acc = accounts(policy="round-robin")
        sess = str(uuid.uuid4())
        body = lambda i: {"model": MODEL, "max_tokens": 20,  # noqa: E731
                          "metadata": {"user_id": f"user_abc_account_def_session_{sess}"},
                          "messages": [{"role": "user", "content": f"turn {i}"}]}
        seen = []
        for i in range(4):
                r = acc.post(MESSAGES_PATH, body(i))
                assert r.status == 200, r
                seen.append(acc.cred_of(acc.chat.last().token))
                acc.chat_once("other")   # traffic without a session keeps rotating
        assert len(set(seen)) == 1, seen
        # When the session's credential goes, the session moves and stays on its new one.
        acc.cred_call(seen[0], "SetEnabled", "bt", [False, 0])
        time.sleep(0.3)
        moved = []
        for i in range(3):
                r = acc.post(MESSAGES_PATH, body(10 + i))
                assert r.status == 200, r
                moved.append(acc.cred_of(acc.chat.last().token))
                acc.chat_once("other")
        assert len(set(moved)) == 1 and moved[0] != seen[0], (seen, moved)


def test_403_after_refresh_moves_to_another_credential(accounts):
        """A token refused, refreshed and refused again: the same request goes to the next credential."""
        acc = accounts(policy="sticky")
        old_a = acc.token("acct-a")
        acc.chat.enqueue({"status": 403, "repeat": 2, "match_token": lambda: acc.token("acct-a")})
        assert acc.chat_once("refused twice") == "acct-b"
        toks = [r.token for r in acc.chat.requests]
        assert toks[0] == old_a and acc.cred_of(toks[1]) == "acct-a" and toks[1] != old_a, \
                "the retry on acct-a uses its refreshed token"
        assert acc.cred_of(toks[2]) == "acct-b" and len(toks) == 3
        assert acc.prop("acct-a", "Enabled") is True, "a refused token is no suspension"


RESPONSES_PATH = "/v1/responses"


def _cred(acc, r):
        assert r.status == 200, r
        return acc.cred_of(acc.chat.last().token)


def test_session_header_keeps_one_credential_across_apis(accounts):
        """An x-kirod-session header keeps a session on one credential in every API, sessionless traffic
        between its requests rotating the others; it wins over the body's `user` and Anthropic session."""
        acc = accounts(policy="round-robin")
        h = {"x-kirod-session": "workspace-7"}
        seen = []
        for i in range(3):
                seen.append(acc.chat_once(f"chat {i}", headers=h))
                acc.chat_once("other")
                seen.append(_cred(acc, acc.post(MESSAGES_PATH, {
                        "model": MODEL, "max_tokens": 20,
                        # The header is named first: an Anthropic session of its own does not move it.
                        "metadata": {"user_id": f"user_x_account_y_session_{uuid.uuid4()}"},
                        "messages": [{"role": "user", "content": f"messages {i}"}]}, h)))
                acc.chat_once("other")
                seen.append(_cred(acc, acc.post(RESPONSES_PATH, {
                        "model": MODEL, "input": f"responses {i}", "store": False, "user": f"u-{i}"}, h)))
                acc.chat_once("other", user=f"rotating-{i}")
        assert len(seen) == 9 and len(set(seen)) == 1, seen
        # The sessionless requests in between really did rotate over the three credentials.
        others = acc.used(3)
        assert sorted(others) == ["acct-a", "acct-b", "acct-c"], others


def test_openai_user_field_keeps_one_credential(accounts):
        """The OpenAI `user` field (Chat Completions and Responses) is a session key too."""
        acc = accounts(policy="round-robin")
        seen = []
        for i in range(3):
                seen.append(acc.chat_once(f"chat {i}", user="alice@example.com"))
                acc.chat_once("other")
                seen.append(_cred(acc, acc.post(RESPONSES_PATH, {
                        "model": MODEL, "input": f"responses {i}", "store": False, "user": "alice@example.com"})))
                acc.chat_once("other")
        assert len(set(seen)) == 1, seen
        # Kiro's conversation id is not derived from `user`: each chat is a conversation of its own.
        convs = [r.state["conversationId"] for r in acc.chat.requests
                 if acc.cred_of(r.token) == seen[0]]
        assert len(convs) >= 6 and len(set(convs)) == len(convs), convs


def test_different_session_keys_spread_over_credentials(accounts):
        """Sessions are not all pinned to one credential: three keys in round-robin take three credentials,
        and each keeps its own, whichever source names it."""
        acc = accounts(policy="round-robin")
        first = {
                "hdr": acc.chat_once("s", headers={"x-kirod-session": "k-hdr"}),
                "user": acc.chat_once("s", user="k-user"),
                # Same `user` as above, but the header names another session: the header decides.
                "hdr2": acc.chat_once("s", user="k-user", headers={"x-kirod-session": "k-hdr2"}),
        }
        assert sorted(first.values()) == ["acct-a", "acct-b", "acct-c"], first
        # Four requests a round (one without a session) so plain rotation would not land them right by luck.
        for i in range(3):
                acc.chat_once("other")
                assert acc.chat_once(f"t{i}", headers={"x-kirod-session": "k-hdr"}) == first["hdr"]
                assert acc.chat_once(f"t{i}", user="k-user") == first["user"]
                assert acc.chat_once(f"t{i}", user="k-user", headers={"x-kirod-session": "k-hdr2"}) == first["hdr2"]
