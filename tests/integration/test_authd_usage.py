"""Issue 17 item "Quota": kiro-authd fetches getUsageLimits per credential (GetUsage), at most every
UsageRefreshSec=; `kiroctl usage` shows it; a spent quota puts the credential aside until the reset;
a usage endpoint answering garbage, 403 or nothing leaves the credential usable with the error shown."""

import json
import time
import urllib.parse

import pytest

import fakeusage
import kirocli_db
from kirodtest import PROXY_USER, TEST_ADMIN, TEST_USER
from test_authd import SEC, get_token, only, status

ARN = "arn:aws:codewhisperer:eu-central-1:111122223333:profile/USAGE+X"


@pytest.fixture
def fake_usage():
        f = fakeusage.FakeUsage()
        yield f
        f.close()


def _start(authd, fake_usage, dbus, fake_auth, *, refresh="3600", warn=None, rt="rt-usage"):
        auth = {"UsageRefreshSec": refresh}
        if warn is not None:
                auth["QuotaWarnPercent"] = warn
        a = authd(endpoints={"UsageURL": fake_usage.url}, **auth)
        lin = fake_auth.seed(rt)
        from test_authd import bus_import
        bus_import(dbus, "kiro-ide-json", json.dumps({"refreshToken": rt, "authMethod": "social",
                                                       "provider": "Github", "profileArn": ARN}),
                   cred_id="u", user=TEST_ADMIN)
        t = get_token(dbus, "u")
        return a, lin, t


def _usage(kiroctl, *args, user=TEST_USER):
        p = kiroctl("usage", *args, "--json", user=user)
        return json.loads(p.stdout)


def test_usage_exact_wire_and_kiroctl_output(authd, fake_usage, fake_auth, kiroctl, dbus):
        a, lin, t = _start(authd, fake_usage, dbus, fake_auth)
        reset = int(time.time()) + 12 * 86400
        fake_usage.answer = fakeusage.answer(
                used=412.5, limit=1000.0, next_reset=reset,
                bonuses=[{"status": "ACTIVE", "usageLimit": 50, "currentUsage": 10},
                         {"status": "EXPIRED", "usageLimit": 999, "currentUsage": 0}],
                trial={"freeTrialStatus": "ACTIVE", "usageLimitWithPrecision": 500.0,
                       "currentUsageWithPrecision": 20.25, "freeTrialExpiry": reset + 86400})

        (u,) = _usage(kiroctl)          # read-only: a plain user may look
        assert fake_usage.count() == 1
        req = fake_usage.requests[0]
        assert req.path == "/getUsageLimits"
        assert req.query == {"origin": ["AI_EDITOR"], "resourceType": ["AGENTIC_REQUEST"], "profileArn": [ARN]}
        assert req.headers["authorization"] == f"Bearer {t['access_token']}"
        assert req.headers["amz-sdk-request"] == "attempt=1; max=1"
        assert "KiroIDE-" in req.headers["user-agent"] and "api/codewhispererruntime" in req.headers["user-agent"]

        assert u["id"] == "u" and u["plan"] == "KIRO PRO" and u["plan_type"] == "Q_DEVELOPER_STANDALONE_PRO"
        assert (u["used"], u["limit"]) == (412.5, 1000.0)
        assert (u["bonus_used"], u["bonus_limit"]) == (10, 50)         # the expired bonus does not count
        assert (u["trial_status"], u["trial_used"], u["trial_limit"]) == ("ACTIVE", 20.25, 500.0)
        assert u["trial_expires_at_usec"] == (reset + 86400) * SEC
        assert u["next_reset_usec"] == reset * SEC
        assert u["remaining"] == pytest.approx(1000 + 50 + 500 - 412.5 - 10 - 20.25)
        assert u["spent_until_usec"] == 0 and u["last_error"] == ""

        # Cached: a second look within UsageRefreshSec= asks nobody.
        _usage(kiroctl, "u")
        assert fake_usage.count() == 1

        text = kiroctl("usage", "u", user=TEST_USER).stdout
        assert "KIRO PRO" in text and "412.50 of 1000.00" in text and "10.00 of 50.00" in text
        assert "ACTIVE, 20.25 of 500.00" in text
        assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(reset)) in text
        assert t["access_token"] not in text
        assert t["access_token"] not in a.log_path.read_text()


@pytest.mark.parametrize("mode,words", [("garbage", "not usage limits"), ("wrong-types", "not usage limits"),
                                        ("403", "HTTP 403"), ("hang", "imeout")])
def test_bad_usage_answers_leave_the_credential_usable(authd, fake_usage, fake_auth, kiroctl, dbus, mode, words):
        a, lin, t = _start(authd, fake_usage, dbus, fake_auth, refresh="1")
        fake_usage.mode = mode
        fake_usage.hang = 15
        t0 = time.monotonic()
        (u,) = _usage(kiroctl)
        took = time.monotonic() - t0
        assert words in u["last_error"], u
        assert u["fetched_at_usec"] == 0 and u["spent_until_usec"] == 0
        if mode == "hang":
                assert 9 < took < 14, took
        c = only(status(kiroctl))
        assert c["state"] == "active" and c["cooldown_until_usec"] == 0, c
        # kiro-authd kept serving while the usage endpoint hung.
        assert get_token(dbus, "u")["access_token"] == t["access_token"]
        text = kiroctl("usage", user=TEST_USER).stdout
        assert "error:" in text and words in text

        # A good answer later clears the error (UsageRefreshSec=1).
        fake_usage.mode = "ok"
        time.sleep(1.1)
        (u,) = _usage(kiroctl)
        assert u["last_error"] == "" and u["used"] == 412.5, u


def test_spent_quota_cools_down_until_the_reset_and_warns_once(authd, fake_usage, fake_auth, kiroctl, dbus):
        a, lin, t = _start(authd, fake_usage, dbus, fake_auth, refresh="1", warn="80")
        reset = int(time.time()) + 5 * 86400
        fake_usage.answer = fakeusage.answer(used=850, limit=1000, next_reset=reset)
        _usage(kiroctl)
        time.sleep(1.1)
        _usage(kiroctl)
        log = a.log_path.read_text()
        assert log.count("has used 85% of its credits") == 1, log
        assert only(status(kiroctl))["cooldown_until_usec"] == 0

        fake_usage.answer = fakeusage.answer(used=1000, limit=1000, next_reset=reset)
        time.sleep(1.1)
        (u,) = _usage(kiroctl)
        assert u["spent_until_usec"] == reset * SEC, u
        c = only(status(kiroctl))
        assert c["cooldown_until_usec"] == reset * SEC and c["state"] == "cooldown", c
        assert "spent its credits" in a.log_path.read_text()
        # Persisted: a restart keeps it aside.
        a.restart()
        assert only(status(kiroctl))["cooldown_until_usec"] == reset * SEC


def test_quota_exhausted_report_cools_down_until_the_known_reset(authd, fake_usage, fake_auth, kiroctl, dbus):
        a, lin, t = _start(authd, fake_usage, dbus, fake_auth)
        reset = int(time.time()) + 3 * 86400
        fake_usage.answer = fakeusage.answer(used=10, limit=1000, next_reset=reset)
        (u,) = _usage(kiroctl)
        assert u["spent_until_usec"] == 0 and only(status(kiroctl))["cooldown_until_usec"] == 0
        # kiro-proxyd saw a 402: with a reset date known, the cooldown lasts until then, not an hour.
        dbus("ReportUpstreamError", "sstt", ["u", "quota-exhausted", 0, 0], user=PROXY_USER)
        c = only(status(kiroctl))
        assert c["cooldown_until_usec"] == reset * SEC and c["state"] == "cooldown", c


def test_quota_exhausted_report_without_usage_limits_keeps_the_hour(authd, fake_usage, fake_auth, kiroctl, dbus):
        a, lin, t = _start(authd, fake_usage, dbus, fake_auth)
        before = time.time()
        dbus("ReportUpstreamError", "sstt", ["u", "quota-exhausted", 0, 0], user=PROXY_USER)
        c = only(status(kiroctl))
        assert abs(c["cooldown_until_usec"] / SEC - (before + 3600)) < 5, c
        assert fake_usage.count() == 0          # a report never fetches by itself
