# SPDX-License-Identifier: LGPL-2.1-or-later
"""Who may call kiro-proxyd (issue 9 item 1, DESIGN.md §3 "Who may call"): a web page in the user's
browser must not be able to use the gateway. Host must name loopback (or an AllowedHosts= entry) on TCP,
any Host is fine on the unix socket; an Origin is refused unless listed in AllowedOrigins= (then CORS
preflights are answered and responses carry Access-Control-Allow-Origin); a POST must be
application/json. Refusals come in each API's error shape, and the fake Kiro service sees none of them.
The stack is proxyd_fixture.py."""

import re
import socket

import pytest

from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, needs_proxyd, proxy_stack, stack  # noqa: F401

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"
ANTHROPIC = {"anthropic-version": "2023-06-01"}
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {"model": "claude-sonnet-4-5-20250929", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
ATTACKER = "https://attacker.example"


def safe_id(v):
        """Test ids become scratch directory names and bus addresses: no ':' or '/'."""
        return re.sub(r"[^A-Za-z0-9.]+", "_", str(v)).strip("_") or "empty"


def openai_error(r, status, etype, words=()):
        assert r.status == status, r
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        e = r.json()
        assert set(e) == {"error"}, e
        assert e["error"]["type"] == etype, e
        for w in words:
                assert w.lower() in e["error"]["message"].lower(), e
        return e["error"]


def anthropic_error(r, status, etype, words=()):
        assert r.status == status, r
        e = r.json()
        assert e.get("type") == "error" and set(e) == {"type", "error"}, e
        assert e["error"]["type"] == etype, e
        for w in words:
                assert w.lower() in e["error"]["message"].lower(), e
        return e["error"]


def ok_chat(r):
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"], r


# ---- Host -----------------------------------------------------------------------------------------

def test_foreign_host_refused_in_each_api_shape_and_never_forwarded(stack):
        """The CVE-2024-28224 request: foreign Host, foreign Origin, text/plain. And each part alone."""
        drive_by = {"Host": "attacker.example", "Origin": ATTACKER, "Content-Type": "text/plain"}
        r = stack.request("POST", CHAT_PATH, '{"model":"%s","messages":[{"role":"user","content":"x"}]}' % MODEL,
                          drive_by)
        openai_error(r, 403, "permission_error", ["Host"])
        # Host alone, with a proper body and type.
        r = stack.post(CHAT_PATH, CHAT, {"Host": "attacker.example"})
        openai_error(r, 403, "permission_error", ["Host", "AllowedHosts"])
        r = stack.post(MESSAGES_PATH, MESSAGES, dict(ANTHROPIC, Host="attacker.example"))
        anthropic_error(r, 403, "permission_error", ["Host"])
        r = stack.post("/v1/messages/count_tokens", MESSAGES, dict(ANTHROPIC, Host="attacker.example"))
        anthropic_error(r, 403, "permission_error")
        r = stack.get("/v1/models", {"Host": "attacker.example"})
        openai_error(r, 403, "permission_error")
        # /healthz too: the policy is the same on every path (DESIGN.md §3).
        r = stack.get("/healthz", {"Host": "attacker.example"})
        assert r.status == 403, r
        assert stack.chat.count() == 0, [x.to_json() for x in stack.chat.requests]
        # And the same connection setup with a loopback Host works.
        ok_chat(stack.post(CHAT_PATH, CHAT))
        assert stack.chat.count() == 1


@pytest.mark.parametrize("host", [
        "attacker.example:%(port)d",            # DNS rebinding: the attacker's name, resolving to 127.0.0.1
        "attacker.example.:%(port)d",
        "127.0.0.1.attacker.example:%(port)d",
        "localhost.attacker.example",
        "localhost:%(port)d@attacker.example",
        "192.168.1.10:%(port)d",
        "[::2]:%(port)d",
        "127.1:%(port)d",                       # not a dotted quad: some resolvers would take it
        "0x7f.0.0.1",
        "localhost:99999",
        "localhost:",
        "",
], ids=safe_id)
def test_dns_rebinding_and_malformed_hosts_refused(stack, host):
        h = host % {"port": stack.port}
        r = stack.post(CHAT_PATH, CHAT, {"Host": h})
        openai_error(r, 403, "permission_error")
        assert stack.chat.count() == 0


@pytest.mark.parametrize("host", [
        "127.0.0.1:%(port)d", "127.0.0.1", "127.1.2.3:%(port)d", "localhost:%(port)d", "LOCALHOST",
        "localhost.", "api.localhost:%(port)d", "[::1]:%(port)d", "[::1]", "[::ffff:127.0.0.1]:%(port)d",
], ids=safe_id)
def test_loopback_names_and_literals_accepted(stack, host):
        r = stack.post(CHAT_PATH, CHAT, {"Host": host % {"port": stack.port}})
        ok_chat(r)
        assert stack.chat.count() == 1


def test_allowed_hosts(proxy_stack):
        s = proxy_stack(Proxy={"AllowedHosts": "gateway.lan kiro.internal:8443"})
        ok_chat(s.post(CHAT_PATH, CHAT, {"Host": f"gateway.lan:{s.port}"}))
        ok_chat(s.post(CHAT_PATH, CHAT, {"Host": "GATEWAY.LAN"}))
        ok_chat(s.post(CHAT_PATH, CHAT, {"Host": "kiro.internal:8443"}))
        assert s.chat.count() == 3
        # A port in the entry pins it; other names stay refused.
        openai_error(s.post(CHAT_PATH, CHAT, {"Host": "kiro.internal:8444"}), 403, "permission_error")
        openai_error(s.post(CHAT_PATH, CHAT, {"Host": "gateway.lan.attacker.example"}), 403, "permission_error")
        assert s.chat.count() == 3


def test_unix_socket_takes_any_host(stack):
        ok_chat(stack.post(CHAT_PATH, CHAT, {"Host": "attacker.example"}, unix=True))
        ok_chat(stack.post(CHAT_PATH, CHAT, {"Host": "kiro.internal"}, unix=True))
        assert stack.chat.count() == 2
        # Without any Host header at all (HTTP/1.0).
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(10)
        c.connect(str(stack.unix_path))
        c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
                data += chunk
        c.close()
        assert data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"), data
        # The other rules still hold there: a reverse proxy may forward a browser's request.
        openai_error(stack.post(CHAT_PATH, CHAT, {"Origin": ATTACKER}, unix=True), 403, "permission_error")
        openai_error(stack.request("POST", CHAT_PATH, "{}", {"Content-Type": "text/plain"}, unix=True), 415,
                     "invalid_request_error")
        assert stack.chat.count() == 2


def test_http10_without_host_accepted_on_tcp(stack):
        c = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
        c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
                data += chunk
        c.close()
        assert b" 200 " in data.split(b"\r\n", 1)[0], data


# ---- Origin and CORS ------------------------------------------------------------------------------

@pytest.mark.parametrize("origin", [ATTACKER, "null", "http://localhost:3000", "http://127.0.0.1:%(port)d"],
                         ids=safe_id)
def test_origin_refused_by_default(stack, origin):
        """Even a page on this very host and port (a local dev server, or one served by a rebinding) is
        a web page: nothing is allow-listed by default."""
        o = origin % {"port": stack.port} if "%" in origin else origin
        r = stack.post(CHAT_PATH, CHAT, {"Origin": o})
        openai_error(r, 403, "permission_error", ["Origin", "AllowedOrigins"])
        assert "access-control-allow-origin" not in r.headers
        r = stack.post(MESSAGES_PATH, MESSAGES, dict(ANTHROPIC, Origin=o))
        anthropic_error(r, 403, "permission_error", ["AllowedOrigins"])
        # A preflight is refused too, without the headers that would let the browser go on.
        r = stack.request("OPTIONS", CHAT_PATH, None, {"Origin": o, "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "content-type"})
        assert r.status == 403, r
        assert not any(k.startswith("access-control-") for k in r.headers), r.headers
        assert stack.chat.count() == 0


def test_allowed_origin_preflight_and_response_headers(proxy_stack):
        app = "https://app.example.com"
        s = proxy_stack(Proxy={"AllowedOrigins": f"{app} http://localhost:5173/"})
        r = s.request("OPTIONS", CHAT_PATH, None, {
                "Origin": app, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
        assert r.status == 204, r
        assert r.headers["access-control-allow-origin"] == app, r.headers
        assert set(m.strip() for m in r.headers["access-control-allow-methods"].split(",")) >= {"GET", "POST"}
        assert r.headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
        assert int(r.headers["access-control-max-age"]) > 0
        assert "origin" in r.headers["vary"].lower()
        assert r.body == b""
        # A preflight on the Anthropic path, and one with a header list that could split lines.
        r = s.request("OPTIONS", MESSAGES_PATH, None, {"Origin": "http://localhost:5173",
                                                       "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "x-api-key\tx"})
        assert r.status == 204 and r.headers["access-control-allow-origin"] == "http://localhost:5173", r
        assert "access-control-allow-headers" not in r.headers
        assert s.chat.count() == 0

        # The actual request: served, with the header the browser needs to hand the answer to the page.
        r = s.post(CHAT_PATH, CHAT, {"Origin": app})
        ok_chat(r)
        assert r.headers["access-control-allow-origin"] == app, r.headers
        # Streams and errors carry it too.
        st = s.stream(CHAT_PATH, dict(CHAT, stream=True), {"Origin": app})
        assert st.status == 200 and st.done, st.raw
        assert st.headers["access-control-allow-origin"] == app
        r = s.post(CHAT_PATH, {"model": MODEL}, {"Origin": app})
        openai_error(r, 400, "invalid_request_error")
        assert r.headers["access-control-allow-origin"] == app
        assert s.chat.count() == 2
        # Another origin stays refused; the allowed one in another case matches (origins are case-blind).
        openai_error(s.post(CHAT_PATH, CHAT, {"Origin": "https://app.example.com.attacker.example"}), 403,
                     "permission_error")
        ok_chat(s.post(CHAT_PATH, CHAT, {"Origin": "HTTPS://APP.EXAMPLE.COM"}))
        assert s.chat.count() == 3


def test_options_without_preflight_headers_is_no_preflight(proxy_stack):
        s = proxy_stack(Proxy={"AllowedOrigins": "https://app.example.com"})
        r = s.request("OPTIONS", CHAT_PATH)
        assert r.status in (400, 404, 405), r
        assert "access-control-allow-origin" not in r.headers


def test_bad_allowed_origin_refuses_to_start(proxy_stack):
        s = proxy_stack(Proxy={"AllowedOrigins": "app.example.com/path"}, start=False)
        p = s.proxyd
        p.check_exit = False
        with pytest.raises(AssertionError, match="exited with 1 before READY=1"):
                p.start(ready_timeout=5)
        assert "AllowedOrigins= entry 'app.example.com/path' is not an origin" in p.log_text()


# ---- Content-Type ---------------------------------------------------------------------------------

@pytest.mark.parametrize("ctype", [
        "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
        "application/jsonx", "application/json-seq", None], ids=safe_id)
def test_non_json_post_is_415(stack, ctype):
        h = {"Content-Type": ctype} if ctype else {}
        body = '{"model":"%s","messages":[{"role":"user","content":"hi"}]}' % MODEL
        r = stack.request("POST", CHAT_PATH, body, h)
        openai_error(r, 415, "invalid_request_error", ["application/json"])
        r = stack.request("POST", MESSAGES_PATH, body, dict(ANTHROPIC, **h))
        anthropic_error(r, 415, "invalid_request_error", ["application/json"])
        assert stack.chat.count() == 0


@pytest.mark.parametrize("ctype", ["application/json; charset=utf-8", "Application/JSON", "application/json ;charset=utf-8"],
                         ids=safe_id)
def test_json_with_parameters_accepted(stack, ctype):
        import json
        r = stack.request("POST", CHAT_PATH, json.dumps(CHAT), {"Content-Type": ctype})
        ok_chat(r)
        assert stack.chat.count() == 1


def test_get_needs_no_content_type(stack):
        r = stack.get("/v1/models")
        assert r.status == 200 and r.json()["data"], r


def test_refusals_logged_on_one_line(stack):
        """A path with an encoded newline cannot forge a log line."""
        r = stack.post(CHAT_PATH + "%0A<3>forged-entry", CHAT, {"Host": "attacker.example"})
        assert r.status == 403, r
        log = stack.proxyd.log_text()
        assert "\\n<3>forged-entry" in log, log[-3000:]
        assert not any(line.startswith("<3>forged-entry") for line in log.splitlines())
