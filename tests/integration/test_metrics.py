# SPDX-License-Identifier: LGPL-2.1-or-later
"""Observability of kiro-proxyd: the real Prometheus server scrapes GET /metrics while the stack serves
successes, a 429 that is retried, a cut stream and an unknown model, and the counts are read back through
Prometheus's HTTP API; `promtool check metrics` on the exposition text; the per-request log line and its
fields (LogFormat=json on stderr, the same fields journald gets); x-request-id reused as Kiro's
amz-sdk-invocation-id; /readyz healthy, with every credential disabled and with kiro-authd down; the
alert rules of docs/monitoring.md through `promtool check rules`; per-credential refreshes by result and
quota gauges after real refreshes and a usage fetch; MetricsListen= scraped by Prometheus without the API
keys that the main listener requires."""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import dbusmini
import fakeusage
import kirodtest
from kirodtest import CREDENTIAL_IFACE, wait_until
from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, proxy_stack  # noqa: F401

MODEL = "claude-sonnet-4.5"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"


def chat(content, model=MODEL, **kw):
        body = {"model": model, "messages": [{"role": "user", "content": content}]}
        body.update(kw)
        return body


def free_port():
        with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]


def json_log(proxyd):
        out = []
        for line in proxyd.log_text().splitlines():
                line = line.strip()
                if line.startswith("{"):
                        out.append(json.loads(line))
        return out


def fenced_blocks(text, lang):
        return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


@pytest.fixture
def promtool():
        p = shutil.which("promtool")
        if not p:
                pytest.skip("promtool is not installed (Debian package prometheus, tools/deps.sh)")
        return p


class Prometheus:
        """The real Prometheus server on loopback with a temp config and data dir, scraping one target."""

        def __init__(self, directory, target, scrape_interval="1s"):
                self.port = free_port()
                self.dir = Path(directory) / f"prometheus-{self.port}"
                self.dir.mkdir()
                cfg = self.dir / "prometheus.yml"
                cfg.write_text(f"""global:
  scrape_interval: {scrape_interval}
  evaluation_interval: {scrape_interval}
scrape_configs:
  - job_name: kirod
    scrape_interval: {scrape_interval}
    scrape_timeout: 900ms
    static_configs:
      - targets: ["{target}"]
""")
                self.log = open(self.dir / "log", "wb")
                self.proc = subprocess.Popen(
                        [shutil.which("prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={self.dir / 'data'}",
                         f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                        stdout=self.log, stderr=subprocess.STDOUT)
                wait_until(self.ready, timeout=30, what="Prometheus ready")

        def ready(self):
                if self.proc.poll() is not None:
                        raise AssertionError("prometheus exited: " + (self.dir / "log").read_text()[-3000:])
                try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                                return r.status == 200
                except OSError:
                        return False

        def query(self, q):
                url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
                with urllib.request.urlopen(url, timeout=5) as r:
                        d = json.load(r)
                assert d["status"] == "success", d
                return d["data"]["result"]

        def value(self, q):
                res = self.query(q)
                return float(res[0]["value"][1]) if res else None

        def target_up(self):
                return self.value('up{job="kirod"}') == 1

        def stop(self):
                self.proc.terminate()
                try:
                        self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait()
                self.log.close()


def test_prometheus_scrapes_traffic(proxy_stack, scratch, promtool):
        if not shutil.which("prometheus"):
                pytest.skip("the prometheus server is not installed")
        s = proxy_stack(Proxy={"LogFormat": "json"}, n_endpoints=2)
        first, second = s.chat, s.extra_chats[0]

        # Two successes (OpenAI, Anthropic), a 429 retried on the same endpoint… (MaxAttempts=3: 429 then 200)
        r = s.post(CHAT_PATH, chat("one"))
        assert r.status == 200, r
        rid = r.headers["x-request-id"]
        assert UUID.match(rid), rid
        assert first.requests[-1].headers["amz-sdk-invocation-id"] == rid
        r = s.post(MESSAGES_PATH, {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "two"}]},
                   headers={"anthropic-version": "2023-06-01"})
        assert r.status == 200, r
        first.enqueue({"status": 429})
        r = s.post(CHAT_PATH, chat("three"))
        assert r.status == 200, r
        rid429 = r.headers["x-request-id"]
        # …a 500 that fails over to the second endpoint…
        first.enqueue({"status": 500, "message": "Internal failure"})
        r = s.post(CHAT_PATH, chat("four"))
        assert r.status == 200, r
        # The first attempt's invocation id is the request id; the retry's is a fresh UUID (one per attempt).
        assert first.requests[-1].headers["amz-sdk-invocation-id"] == r.headers["x-request-id"]
        retry_id = second.requests[-1].headers["amz-sdk-invocation-id"]
        assert UUID.match(retry_id) and retry_id != r.headers["x-request-id"], retry_id
        # …a stream cut after the answer began, and a Kimi model nobody knows (no Kimi credential either).
        frames_text = ["one ", "two ", "three "]
        first.enqueue({"text": frames_text, "cut_after_bytes": 400})
        st = s.stream(CHAT_PATH, chat("count", stream=True))
        assert st.status == 200
        r = s.post(CHAT_PATH, chat("five", model="kimi-made-up-model"))
        assert r.status >= 400, r

        raw = s.get("/metrics")
        assert raw.status == 200 and raw.headers["content-type"].startswith("text/plain"), raw
        text = raw.body.decode()
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        assert "kimi-made-up-model" not in text
        assert s.access_token() not in text

        prom = Prometheus(scratch, f"127.0.0.1:{s.port}")
        try:
                wait_until(prom.target_up, timeout=20, what="the kirod target up in Prometheus")

                def v(q):
                        return prom.value(q)

                # Only series scraped after all the traffic above.
                wait_until(lambda: v('sum(kirod_requests_total)') == 6, timeout=20, what="6 requests in Prometheus")
                assert v('kirod_requests_total{api="openai",model="claude-sonnet-4.5",status="2xx",outcome="complete"}') == 3
                assert v('kirod_requests_total{api="anthropic",model="claude-sonnet-4.5",status="2xx",outcome="complete"}') == 1
                assert v('kirod_requests_total{api="openai",status="2xx",outcome="truncated"}') == 1
                # The made-up Kimi model reached the Kimi back end (no Kimi credential: an upstream error);
                # its name is folded into "other".
                assert v('sum(kirod_requests_total{api="openai",model="other",outcome="upstream-error"})') == 1
                assert v('kirod_upstream_retries_total{backend="kiro",reason="throttled"}') == 1
                assert v('kirod_upstream_failovers_total{backend="kiro",reason="server-error"}') == 1
                assert v('kirod_upstream_failures_total{backend="kiro",reason="throttled"}') == 1
                assert v('kirod_upstream_attempts_total{backend="kiro"}') == 7
                assert v('kirod_request_duration_seconds_count{api="openai"}') == 5
                assert v('kirod_request_first_byte_seconds_count{api="openai"}') == 4
                assert v('kirod_open_streams') == 0
                assert v('kirod_tokens_total{model="claude-sonnet-4.5",direction="output"}') > 0
                assert v('kirod_relayed_bytes_total{api="openai"}') > 0
                assert v('kirod_gettoken_calls_total{result="ok"}') >= 1
                assert v('kirod_token_cache_hits_total') >= 5
                assert v('kirod_authd_up') == 1
                # The 429 put the credential into a short cooldown: the state series says which, and
                # the usable count agrees with it.
                states = prom.query('kirod_credential_state{credential="proxytest"} == 1')
                assert len(states) == 1, states
                state = states[0]["metric"]["state"]
                assert state in ("active", "cooldown", "refreshing"), state
                assert v('kirod_credentials_usable') == (0 if state == "cooldown" else 1)
                assert v('kirod_credential_access_token_expiry_timestamp_seconds{credential="proxytest"}') > time.time()
                assert v('kirod_credential_requests_total{credential="proxytest",result="ok"}') == 4
        finally:
                prom.stop()

        # The log: one line per finished request with its fields; the 429 at notice with its MESSAGE_ID.
        log = json_log(s.proxyd)
        done = [e for e in log if e.get("MESSAGE_ID") == "b3e1c6a0d2f84b7c9e5a1d3f7b9c2e40"]
        assert len(done) == 6, done
        one = next(e for e in done if e["KIROD_REQUEST_ID"] == rid)
        assert one["PRIORITY"] == "6"
        assert one["KIROD_CREDENTIAL"] == "proxytest" and one["KIROD_MODEL"] == MODEL
        assert one["KIROD_OUTCOME"] == "complete" and one["KIROD_STATUS"] == "200" and one["KIROD_API"] == "openai"
        assert one["KIROD_ATTEMPTS"] == "1" and int(one["KIROD_DURATION_MS"]) >= int(one["KIROD_FIRST_BYTE_MS"]) >= 0
        assert int(one["KIROD_OUTPUT_TOKENS"]) > 0
        retried = next(e for e in done if e["KIROD_REQUEST_ID"] == rid429)
        assert retried["KIROD_ATTEMPTS"] == "2"
        throttled = [e for e in log if e.get("MESSAGE_ID") == "d5a3e8c2f4b04d9e1a7c3f5b9d1e4a62"]
        assert len(throttled) == 1 and throttled[0]["PRIORITY"] == "5", throttled
        assert throttled[0]["KIROD_REQUEST_ID"] == rid429 and throttled[0]["KIROD_CREDENTIAL"] == "proxytest"
        assert any(e.get("MESSAGE_ID") == "f7c5a0e4b6d24f1a3c9e5b7d1f3a6c84" for e in log)
        assert [e["KIROD_OUTCOME"] for e in done].count("truncated") == 1
        assert s.access_token() not in s.proxyd.log_text()


def test_metrics_need_the_api_key(proxy_stack):
        s = proxy_stack(api_keys=["sekrit-key"])
        assert s.get("/metrics").status == 401
        r = s.get("/metrics", headers={"Authorization": "Bearer sekrit-key"})
        assert r.status == 200 and "kirod_requests_total" in r.body.decode()
        # Probes need no key.
        assert s.get("/readyz").status == 200


def test_readyz(proxy_stack, bus_daemon):
        s = proxy_stack()
        r = s.get("/readyz")
        assert r.status == 200, r
        assert r.json() == {"status": "ready", "credentials": 1, "usable_credentials": 1}

        path = kirodtest.bus_call(bus_daemon.address, "ListCredentials", "t", [0])[0][0]
        kirodtest.bus_call(bus_daemon.address, "SetEnabled", "bt", [False, 0], path=path, interface=CREDENTIAL_IFACE)
        r = s.get("/readyz")
        assert r.status == 503, r
        assert r.json()["reason"] == "no-usable-credential" and "kiroctl status" in r.json()["message"]
        # Liveness is not readiness.
        assert s.get("/healthz").status == 200

        kirodtest.bus_call(bus_daemon.address, "SetEnabled", "bt", [True, 0], path=path, interface=CREDENTIAL_IFACE)
        assert s.get("/readyz").status == 200
        s.authd.stop()
        t0 = time.monotonic()
        r = s.get("/readyz")
        assert r.status == 503, r
        assert r.json()["reason"] == "authd-unreachable"
        assert time.monotonic() - t0 < 5
        m = s.get("/metrics").body.decode()
        assert "kirod_authd_up 0" in m


def test_monitoring_rules_check(promtool, scratch):
        text = DOCS.read_text()
        rules = [b for b in fenced_blocks(text, "yaml") if "groups:" in b]
        assert len(rules) == 1, "docs/monitoring.md has one rules file"
        f = Path(scratch) / "kirod-rules.yml"
        f.write_text(rules[0])
        r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        assert b"SUCCESS: 3 rules found" in r.stdout, r.stdout
        scrape = [b for b in fenced_blocks(text, "yaml") if "scrape_configs:" in b]
        assert len(scrape) == 1
        cfg = Path(scratch) / "prometheus.yml"
        cfg.write_text(scrape[0].replace("/etc/prometheus/kirod-rules.yml", str(f)))
        r = subprocess.run([promtool, "check", "config", str(cfg)], capture_output=True, timeout=30)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


# ---- per-credential refreshes and quota (kiro-authd's Refreshes and Usage* properties) --------------

@pytest.fixture
def fake_usage():
        f = fakeusage.FakeUsage()
        yield f
        f.close()


def metric_lines(text, family):
        """{'{labels}': value} of one family's samples in an exposition text."""
        out = {}
        for line in text.splitlines():
                if line.startswith(family + "{") or line.startswith(family + " "):
                        labels, _, value = line[len(family):].rpartition(" ")
                        out[labels] = float(value)
        return out


def test_credential_refreshes_and_quota(proxy_stack, bus_daemon, fake_usage, promtool):
        s = proxy_stack(Auth={"endpoints": {"UsageURL": fake_usage.url}, "UsageRefreshSec": "3600"})
        path = kirodtest.bus_call(bus_daemon.address, "ListCredentials", "t", [0])[0][0]

        def props():
                return kirodtest.bus_call(bus_daemon.address, "GetAll", "s", [CREDENTIAL_IFACE], path=path,
                                          interface="org.freedesktop.DBus.Properties")[0]

        def refreshes():
                return metric_lines(s.get("/metrics").body.decode(), "kirod_credential_refreshes_total")

        def want(ok=0, transient=0, rejected=0):
                return {f'{{credential="proxytest",result="{k}"}}': float(v) for k, v in
                        [("ok", ok), ("transient-error", transient), ("rejected", rejected), ("no-login", 0),
                         ("local-error", 0)]}

        # Imported with a valid token: nothing refreshed yet, every result present at 0; the quota unknown,
        # so no quota series at all.
        p = props()
        assert dict(p["Refreshes"]) == {"ok": 0, "transient-error": 0, "rejected": 0, "no-login": 0, "local-error": 0}
        assert p["UsageFetchedAt"] == 0 and p["UsageUsed"] == 0 and p["UsageLimit"] == 0
        text = s.get("/metrics").body.decode()
        assert metric_lines(text, "kirod_credential_refreshes_total") == want()
        assert "kirod_credential_quota_used{" not in text and "kirod_credential_quota_limit{" not in text
        assert "kirod_credential_quota_reset_timestamp_seconds{" not in text

        # The usage fetch (as `kiroctl usage` makes it): used and granted count the active bonus and trial.
        reset = int(time.time()) + 12 * 86400
        fake_usage.answer = fakeusage.answer(
                used=412.5, limit=1000.0, next_reset=reset,
                bonuses=[{"status": "ACTIVE", "usageLimit": 50, "currentUsage": 10},
                         {"status": "EXPIRED", "usageLimit": 999, "currentUsage": 0}],
                trial={"freeTrialStatus": "ACTIVE", "usageLimitWithPrecision": 500.0,
                       "currentUsageWithPrecision": 20.25, "freeTrialExpiry": reset + 86400})
        t0 = time.time()
        u = dict(kirodtest.bus_call(bus_daemon.address, "GetUsage", "t", [0], path=path, interface=CREDENTIAL_IFACE)[0])
        assert fake_usage.count() == 1 and u["LastError"] == ""
        p = props()
        assert p["UsageUsed"] == 412.5 + 10 + 20.25 and p["UsageLimit"] == 1000 + 50 + 500
        assert p["UsageResetAt"] == reset * 1_000_000
        assert t0 - 1 <= p["UsageFetchedAt"] / 1e6 <= time.time() + 1

        # One good refresh, one transient failure (HTTP 500), one rejected login (invalid_grant).
        rt_before = s.fake_auth.latest_refresh_token(s.lineage)
        kirodtest.bus_call(bus_daemon.address, "Refresh", "t", [0], path=path, interface=CREDENTIAL_IFACE)
        assert s.fake_auth.latest_refresh_token(s.lineage) != rt_before
        assert refreshes() == want(ok=1)
        s.fake_auth.script([{"status": 500}])
        kirodtest.bus_call(bus_daemon.address, "Refresh", "t", [0], path=path, interface=CREDENTIAL_IFACE)
        assert refreshes() == want(ok=1, transient=1)
        s.fake_auth.script([{"error": "invalid_grant"}])
        with pytest.raises(dbusmini.DBusError) as e:
                kirodtest.bus_call(bus_daemon.address, "Refresh", "t", [0], path=path, interface=CREDENTIAL_IFACE)
        assert e.value.name == "org.kirod.Auth1.Error.NeedsLogin"
        p = props()
        assert dict(p["Refreshes"]) == {"ok": 1, "transient-error": 1, "rejected": 1, "no-login": 0, "local-error": 0}
        assert p["State"] == "needs-login"

        text = s.get("/metrics").body.decode()
        assert metric_lines(text, "kirod_credential_refreshes_total") == want(ok=1, transient=1, rejected=1)
        ids = '{credential="proxytest",provider="kiro"}'
        assert metric_lines(text, "kirod_credential_quota_used") == {ids: 442.75}
        assert metric_lines(text, "kirod_credential_quota_limit") == {ids: 1550.0}
        assert metric_lines(text, "kirod_credential_quota_reset_timestamp_seconds") == {ids: float(reset)}
        assert metric_lines(text, "kirod_credential_state") == {
                '{credential="proxytest",provider="kiro",state="needs-login"}': 1.0}
        assert "# TYPE kirod_credential_refreshes_total counter" in text
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        assert s.access_token() not in text and s.fake_auth.latest_refresh_token(s.lineage) not in text


# ---- MetricsListen= -----------------------------------------------------------------------------------

def metrics_listener_port(proxyd):
        m = re.search(r"Listening on 127\.0\.0\.1:(\d+) for /metrics", proxyd.log_text())
        return int(m.group(1)) if m else None


def http_get(port, path, method="GET", headers=None, unix=None, body=None):
        import http.client
        from proxyd_fixture import UnixHTTPConnection
        c = UnixHTTPConnection(str(unix), timeout=10) if unix else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
                c.request(method, path, body=body, headers=headers or {})
                r = c.getresponse()
                return r.status, r.getheader("content-type"), r.read()
        finally:
                c.close()


def test_metrics_listen_without_keys(proxy_stack, scratch, promtool):
        s = proxy_stack(api_keys=["sekrit-key"], Proxy={"MetricsListen": "127.0.0.1:0"}, start=False)
        sock = s.proxyd.run_dir / "metrics.sock"
        with open(s.proxyd.config_path, "a") as f:
                f.write(f"\n[Proxy]\nMetricsListen=unix:{sock}\n")
        s.proxyd.start()
        port = wait_until(lambda: metrics_listener_port(s.proxyd), timeout=5, what="the metrics listener in the log")
        assert port != s.port
        assert f"Listening on unix:{sock} for /metrics" in s.proxyd.log_text()

        # The API works on the main listener with the key (one request, so the metrics have something).
        r = s.post(CHAT_PATH, chat("one"), headers={"Authorization": "Bearer sekrit-key"})
        assert r.status == 200, r
        n_upstream = len(s.chat.requests)

        # The metrics listener: /metrics, /healthz and /readyz with no key.
        status, ctype, body = http_get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain"), (status, body[:200])
        text = body.decode()
        assert 'kirod_requests_total{api="openai",model="claude-sonnet-4.5",status="2xx",outcome="complete"} 1' in text
        check = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        assert http_get(port, "/healthz")[0] == 200
        status, _, body = http_get(port, "/readyz")
        assert status == 200 and json.loads(body)["status"] == "ready"
        # Nothing else: 404 in the JSON error shape, with or without a key, and nothing goes upstream.
        for method, path, hdrs, data in [
                        ("GET", "/v1/models", {}, None),
                        ("GET", "/v1/models", {"Authorization": "Bearer sekrit-key"}, None),
                        ("POST", CHAT_PATH, {"Content-Type": "application/json", "Authorization": "Bearer sekrit-key"},
                         json.dumps(chat("no"))),
                        ("POST", "/metrics", {"Content-Type": "application/json"}, "{}"),
                        ("GET", "/nope", {}, None)]:
                status, ctype, body = http_get(port, path, method=method, headers=hdrs, body=data)
                assert status == 404, (method, path, status, body)
                assert ctype == "application/json"
                err = json.loads(body)["error"]
                assert err["type"] and f"Unknown route {method} {path}" in err["message"], err
        assert len(s.chat.requests) == n_upstream
        # The same over the unix socket.
        status, _, body = http_get(None, "/metrics", unix=sock)
        assert status == 200 and b"kirod_requests_total" in body
        assert http_get(None, "/v1/models", unix=sock)[0] == 404

        # The main listener keeps /metrics behind the keys.
        assert s.get("/metrics").status == 401
        assert s.get("/metrics", headers={"Authorization": "Bearer sekrit-key"}).status == 200
        assert s.get("/v1/models").status == 401

        # The real Prometheus scrapes the metrics listener without credentials.
        if not shutil.which("prometheus"):
                pytest.skip("the prometheus server is not installed")
        prom = Prometheus(scratch, f"127.0.0.1:{port}")
        try:
                wait_until(prom.target_up, timeout=20, what="the metrics listener up in Prometheus")
                wait_until(lambda: prom.value('kirod_authd_up') == 1, timeout=20, what="kirod_authd_up in Prometheus")
                assert prom.value('kirod_requests_total{api="openai",outcome="complete"}') == 1
                assert prom.value('kirod_credential_refreshes_total{credential="proxytest",result="ok"}') == 0
        finally:
                prom.stop()
