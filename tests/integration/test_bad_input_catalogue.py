# SPDX-License-Identifier: LGPL-2.1-or-later
"""A catalogue of malformed and hostile requests (issue 11 "Bad-input catalogue"), one table, sent to
the real kiro-proxyd over raw sockets on loopback.

Every case gets the documented status and, for an error, a body that is valid JSON (strict UTF-8) in the
shape of the API addressed:

  OpenAI (/v1/chat/completions, /v1/models, /v1/responses, anything else)
      {"error": {"message": str, "type": str, "param": ..., "code": ...}}
  Anthropic (/v1/messages, /v1/messages/count_tokens)
      {"type": "error", "error": {"type": str, "message": str}}

The statuses (DESIGN.md §3, README.md, kiro-proxyd.conf(5)): a malformed or invalid request is 400
(invalid_request_error), also a method a route does not take and broken HTTP framing (then the
connection is closed); an unknown route is 404; an unknown model is 404; a body over MaxBodyBytes= or a
conversation over MaxUpstreamPayloadBytes= is 413; a header block over the limit is 431 (or 414 for the
request line, from libmicrohttpd, plain). With the access checks (issue 9 item 1) a foreign Host or
Origin is 403 and a POST without Content-Type: application/json is 415; until those are merged those
cases are expected-to-fail with that reason.

Between batches /healthz must answer, and at the end a valid request of each API must be served: the
daemon keeps serving whatever it was sent. Failures are collected and reported together, with the exact
input, so that one run shows everything the catalogue finds."""

import json
import socket
import time

import pytest

from proxyd_fixture import CHAT_PATH, MESSAGES_PATH, PROXYD_BIN, needs_proxyd, proxy_stack  # noqa: F401

pytestmark = needs_proxyd

COUNT_PATH = "/v1/messages/count_tokens"
RESPONSES_PATH = "/v1/responses"
MODEL = "claude-sonnet-4.5"
MAX_BODY = 2 * 1024 * 1024
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

_BIN = PROXYD_BIN.read_bytes() if PROXYD_BIN.exists() else b""
HAS_HOST_CHECK = b"AllowedHosts" in _BIN
HAS_CONTENT_TYPE_CHECK = b"application/json" in _BIN and b"Content-Type" in _BIN and HAS_HOST_CHECK
ACCESS_PENDING = "the Host/Origin/Content-Type checks (issue 9 item 1, branch access) are not merged yet"


def shape_of(path):
        return "anthropic" if path.startswith("/v1/messages") else "openai"


# ---- raw HTTP -----------------------------------------------------------------------------------------

def read_response(sock, deadline, buf=b""):
        """One response from sock, after the bytes already read (buf): ((status, headers dict, body bytes)
        or None on EOF before a status line, the bytes read past it). Handles Content-Length, chunked and
        close-delimited bodies."""

        def more():
                nonlocal buf
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                d = sock.recv(65536)
                if not d:
                        raise EOFError
                buf += d

        try:
                while b"\r\n\r\n" not in buf:
                        more()
        except (EOFError, ConnectionResetError):
                if not buf:
                        return None, b""
                raise AssertionError(f"truncated head: {buf[:300]!r}")
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower().decode()] = v.strip().decode("latin-1")
        buf = rest
        if "content-length" in headers:
                n = int(headers["content-length"])
                while len(buf) < n:
                        more()
                return (status, headers, buf[:n]), buf[n:]
        if headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                        while b"\r\n" not in buf:
                                more()
                        line, _, buf = buf.partition(b"\r\n")
                        size = int(line.split(b";")[0], 16)
                        while len(buf) < size + 2:
                                more()
                        body += buf[:size]
                        buf = buf[size + 2:]
                        if size == 0:
                                return (status, headers, body), buf
        try:
                while True:
                        more()
        except (EOFError, ConnectionResetError):
                pass
        return (status, headers, buf), b""


def exchange(port, data, n_responses=1, timeout=15, half_close=False, strict=True):
        """Sends data on a new connection and reads up to n_responses responses. Returns (responses,
        closed): closed says whether the server closed the connection afterwards (within 1 s)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        deadline = time.monotonic() + timeout
        out = []
        closed = False
        try:
                try:
                        s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                        pass    # answered (413) and closed before the whole body was sent: read the answer
                if half_close:
                        s.shutdown(socket.SHUT_WR)
                pending = b""
                for _ in range(n_responses):
                        r, pending = read_response(s, deadline, pending)
                        if r is None:
                                closed = True
                                break
                        out.append(r)
                if pending and strict:
                        raise AssertionError(f"unexpected bytes after the responses: {pending[:100]!r}")
                if not closed:
                        s.settimeout(1)
                        try:
                                closed = s.recv(1) == b""
                        except socket.timeout:
                                closed = False
                        except ConnectionResetError:
                                closed = True
        finally:
                s.close()
        return out, closed


def http_request(method, path, body=b"", headers=None, version="HTTP/1.1", host="127.0.0.1", ctype="application/json"):
        h = []
        if host is not None:
                h.append(f"Host: {host}")
        if ctype is not None and method == "POST":
                h.append(f"Content-Type: {ctype}")
        if method == "POST":
                h.append(f"Content-Length: {len(body)}")
        h += list(headers or [])
        h.append("Connection: close")
        head = f"{method} {path} {version}\r\n" + "".join(x + "\r\n" for x in h) + "\r\n"
        return head.encode("latin-1") + body


# ---- the table ------------------------------------------------------------------------------------------

class Case:
        def __init__(self, name, data, status, path=CHAT_PATH, *, n_responses=1, statuses=None, shape=None,
                     closes=False, xfail=None, half_close=False, timeout=15, plain=False):
                self.name = name
                self.data = data
                self.status = status
                self.statuses = statuses       # for pipelining: the status of each response in order
                self.path = path
                self.shape = shape or shape_of(path)
                self.n_responses = n_responses
                self.closes = closes
                self.xfail = xfail
                self.half_close = half_close
                self.timeout = timeout
                self.plain = plain              # libmicrohttpd's own answer (not JSON)


def j(obj):
        return json.dumps(obj).encode()


def post(path, body, status, name, **kw):
        if not isinstance(body, bytes):
                body = j(body)
        hdr = kw.pop("headers", None)
        ctype = kw.pop("ctype", "application/json")
        host = kw.pop("host", "127.0.0.1")
        return Case(name, http_request("POST", path, body, hdr, host=host, ctype=ctype), status, path, **kw)


def chat_body(**kw):
        b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        b.update(kw)
        return b


def msg_body(**kw):
        b = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
        b.update(kw)
        return b


def count_body(**kw):
        b = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        b.update(kw)
        return b


API_BODIES = [(CHAT_PATH, chat_body), (MESSAGES_PATH, msg_body), (COUNT_PATH, count_body)]

BAD_JSON = [
        ("empty body", b""),
        ("unterminated object", b"{"),
        ("array", b"[]"),
        ("null", b"null"),
        ("number", b"1"),
        ("string", b'"hello"'),
        ("truncated", b'{"model":'),
        ("trailing garbage", b'{"model":"claude-sonnet-4.5","messages":[]}x'),
        ("single quotes", b"{'model':'x'}"),
        ("trailing comma", b'{"model":"claude-sonnet-4.5",}'),
        ("NaN literal", b'{"model":"claude-sonnet-4.5","max_tokens":NaN,"messages":[{"role":"user","content":"hi"}]}'),
        ("comment", b'{/* c */"model":"claude-sonnet-4.5"}'),
        ("two documents", b'{}{}'),
        ("binary", bytes(range(256))),
]

INVALID_UTF8 = [
        ("lone continuation byte", b"\x80"),
        ("overlong slash", b"\xc0\xaf"),
        ("overlong NUL", b"\xc0\x80"),
        ("overlong 3-byte", b"\xe0\x80\xaf"),
        ("UTF-16 surrogate as UTF-8", b"\xed\xa0\x80"),
        ("above U+10FFFF", b"\xf4\x90\x80\x80"),
        ("0xFF byte", b"\xff"),
        ("truncated sequence", b"\xe2\x82"),
]


def build_cases():
        cases = []

        # 1. Bad JSON, on each API.
        for path, _ in API_BODIES:
                for name, body in BAD_JSON:
                        cases.append(post(path, body, 400, f"bad JSON ({name}) on {path}"))

        # 2. Deep nesting: over MaxJSONDepth= (64) and absurdly deep.
        for path, mk in API_BODIES:
                cases.append(post(path, b'{"model":"claude-sonnet-4.5","messages":' + b"[" * 70 + b"]" * 70 + b"}",
                                  400, f"70 nested arrays on {path}"))
                cases.append(post(path, b'{"a":' * 100000 + b"1" + b"}" * 100000, 400,
                                  f"100000 nested objects on {path}"))
                nested = {"x": 1}
                for _ in range(80):
                        nested = {"x": nested}
                cases.append(post(path, j(mk(metadata=nested)), 400, f"80 nested objects in metadata on {path}"))

        # 3. Invalid UTF-8 and overlong encodings: in the content, and in the model name (echoed back).
        for path, mk in API_BODIES:
                for name, bad in INVALID_UTF8:
                        body = j(mk()).replace(b'"content": "hi"', b'"content": "h' + bad + b'i"')
                        cases.append(post(path, body, 400, f"invalid UTF-8 in content ({name}) on {path}"))
                body = j(mk()).replace(MODEL.encode(), b"claude\xc0\xafx")
                cases.append(post(path, body, 400, f"invalid UTF-8 in the model name on {path}",
                                  statuses=[400, 404]))
                cases.append(post(path, j(mk()).replace(b'"hi"', b'"\\ud800"'), 400,
                                  f"lone surrogate escape in content on {path}", statuses=[400, 200]))
                cases.append(post(path, j(mk(model="claude\u0000sonnet")), 400, f"NUL in the model name on {path}",
                                  statuses=[400, 404]))

        # 4. Huge strings and bodies.
        for path, mk in API_BODIES:
                cases.append(post(path, j(mk(model="m" * 1_000_000)), 400, f"1 MB model name on {path}",
                                  statuses=[400, 404]))
                cases.append(post(path, b" " * (MAX_BODY + 1), 413, f"body over MaxBodyBytes on {path}"))
        for path, mk in API_BODIES[:2]:
                cases.append(post(path, j(mk(messages=[{"role": "user", "content": "a" * 1_500_000}])), 413,
                                  f"1.5 MB message over the upstream payload limit on {path}"))

        # 5. Wrong types in every field: OpenAI.
        openai_fields = {
                "model": [1, None, [], {}, True],
                "messages": ["hi", {}, None, 1, [1], [None], [[]], []],
                "stream": ["yes", 1, {}],
                "max_tokens": ["10", -1, 1.5, True, 1e309, 2 ** 64, -2 ** 63],
                "max_completion_tokens": ["10", -5, 2 ** 64],
                "temperature": ["hot", [], -1, 1e309],
                "top_p": ["x", 5],
                "tools": ["x", [1], [{"type": "function"}], [{"type": "function", "function": {"name": 1}}]],
                "tool_choice": [1, {"type": "function"}, "sometimes"],
                "stop": [1, [1], {}],
                "stream_options": ["x", {"include_usage": "yes"}],
                "reasoning_effort": [1, "extreme"],
        }
        for field, values in openai_fields.items():
                for v in values:
                        cases.append(post(CHAT_PATH, j(chat_body(**{field: v})), 400,
                                          f"OpenAI {field}={json.dumps(v)[:40]}"))
        openai_messages = [
                ("unknown role", [{"role": "wizard", "content": "hi"}]),
                ("role as number", [{"role": 1, "content": "hi"}]),
                ("missing role", [{"content": "hi"}]),
                ("content as number", [{"role": "user", "content": 1}]),
                ("content as object", [{"role": "user", "content": {"text": "hi"}}]),
                ("part without type", [{"role": "user", "content": [{"text": "hi"}]}]),
                ("unknown part type", [{"role": "user", "content": [{"type": "hologram", "text": "hi"}]}]),
                ("text part with number", [{"role": "user", "content": [{"type": "text", "text": 5}]}]),
                ("image with http URL", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}]}]),
                ("image with broken base64", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%%"}}]}]),
                ("image with unknown type", [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/x-evil;base64," + PNG_1x1}}]}]),
                ("image without url", [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
                ("image_url as string number", [{"role": "user", "content": [{"type": "image_url", "image_url": 7}]}]),
                ("tool message without id", [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]),
                ("assistant tool_calls wrong type", [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": "x"}]),
                ("tool call arguments as object", [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": 5}}]}]),
        ]
        for name, msgs in openai_messages:
                cases.append(post(CHAT_PATH, j(chat_body(messages=msgs)), 400, f"OpenAI message: {name}"))
        cases.append(post(CHAT_PATH, j(chat_body(model="no-such-model")), 404, "OpenAI unknown model"))

        # 6. Wrong types in every field: Anthropic.
        anthropic_fields = {
                "model": [1, None, []],
                "messages": ["hi", {}, None, [1], []],
                "max_tokens": ["100", -1, 0.5, None, 1e309, 2 ** 64],
                "system": [1, [1], [{"type": "image"}], {}],
                "stream": ["yes", 2],
                "temperature": ["warm", {}],
                "stop_sequences": ["stop", [1]],
                "tools": [{}, [1], [{"name": 5}], [{"name": "t", "input_schema": "x"}]],
                "tool_choice": ["auto", {"type": "magic"}],
                "thinking": ["on", {"type": "enabled", "budget_tokens": "lots"}, {"type": 1}],
        }
        for field, values in anthropic_fields.items():
                for v in values:
                        cases.append(post(MESSAGES_PATH, j(msg_body(**{field: v})), 400,
                                          f"Anthropic {field}={json.dumps(v)[:40]}"))
        cases.append(post(MESSAGES_PATH, j({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}), 400,
                          "Anthropic without max_tokens"))
        anthropic_messages = [
                ("unknown role", [{"role": "system", "content": "hi"}]),
                ("role as list", [{"role": ["user"], "content": "hi"}]),
                ("content as number", [{"role": "user", "content": 3}]),
                ("block without type", [{"role": "user", "content": [{"text": "hi"}]}]),
                ("unknown block type", [{"role": "user", "content": [{"type": "telepathy"}]}]),
                ("image with broken base64", [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "!!!"}}]}]),
                ("image with url source", [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://example.com/a.png"}}]}]),
                ("image with svg", [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/svg+xml", "data": PNG_1x1}}]}]),
                ("image without source", [{"role": "user", "content": [{"type": "image"}]}]),
                ("tool_result without id", [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
                ("tool_use with input as string", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": "x"}]}]),
        ]
        for name, msgs in anthropic_messages:
                cases.append(post(MESSAGES_PATH, j(msg_body(messages=msgs)), 400, f"Anthropic message: {name}"))
                cases.append(post(COUNT_PATH, j(count_body(messages=msgs)), 400, f"count_tokens message: {name}"))
        cases.append(post(MESSAGES_PATH, j(msg_body(model="no-such-model")), 404, "Anthropic unknown model"))

        # 7. Routes: unknown, traversal, wrong methods.
        for p in ["/", "/v1", "/v1/", "/v1/chat/completions/", "/v1/chat/completions/../messages",
                  "/v1/../v1/chat/completions", "/v1/chat/%2e%2e/messages", "/%2e%2e/%2e%2e/etc/passwd",
                  "//v1/chat/completions", "/v1/chat/completions%00", "/V1/CHAT/COMPLETIONS",
                  "/v1/messages/count_tokens/..", "/v1/models/../../healthz", "/.env", "/admin"]:
                st = 400 if "%00" in p else 404
                cases.append(Case(f"route {p}", http_request("GET", p), st, p, closes=st == 400))
                cases.append(Case(f"route POST {p}", http_request("POST", p, j(chat_body())), st, p, closes=st == 400))
        for path in [CHAT_PATH, MESSAGES_PATH, COUNT_PATH]:
                for m in ["GET", "PUT", "DELETE", "PATCH"]:
                        cases.append(Case(f"{m} {path}", http_request(m, path), 400, path))
        cases.append(Case("POST /v1/models", http_request("POST", "/v1/models", j({})), 400, "/v1/models"))
        # /v1/responses (OpenAI's shape).
        cases.append(post(RESPONSES_PATH, j({"model": MODEL, "input": "hi"}), 200, "/v1/responses valid (control)"))
        for name, body in [("bad JSON", b"{"), ("model as number", j({"model": 1, "input": "hi"})),
                           ("input as number", j({"model": MODEL, "input": 5})),
                           ("unknown item type", j({"model": MODEL, "input": [{"type": "hologram"}]})),
                           ("function_call_output without its call",
                            j({"model": MODEL, "input": [{"type": "function_call_output", "call_id": "nope",
                                                          "output": "x"}]})),
                           ("invalid UTF-8 in input", j({"model": MODEL, "input": "hi"}).replace(b'"hi"', b'"h\xc0\xafi"')),
                           ("max_output_tokens 2^64", j({"model": MODEL, "input": "hi", "max_output_tokens": 2 ** 64})),
                           ("previous_response_id unknown", j({"model": MODEL, "input": "hi",
                                                               "previous_response_id": "resp_nope"}))]:
                cases.append(post(RESPONSES_PATH, body, 400, f"/v1/responses {name}", statuses=[404]
                                  if "previous" in name else None))

        # 8. Header injection and oversized headers.
        cases.append(Case("CRLF in a header value (bare LF splits it)",
                          b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\nContent-Length: 1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                          400, closes=True))
        cases.append(Case("header without colon",
                          b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\nConnection: close\r\n\r\n",
                          400, "/healthz", plain=True))
        cases.append(Case("space before colon",
                          b"GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\nConnection: close\r\n\r\n",
                          400, "/healthz", plain=True))
        cases.append(Case("64 KiB header", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 65536 +
                          b"\r\nConnection: close\r\n\r\n", 431, "/healthz", plain=True))
        cases.append(Case("64 KiB request line", b"GET /healthz?" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                          414, "/healthz", plain=True))
        cases.append(post(CHAT_PATH, j(chat_body()), 400, "NUL escaped in a header value",
                          headers=["X-Test: a%00b", "Authorization: Bearer \x01\x02"], statuses=[200]))

        # 9. Framing: smuggling, pipelining, HTTP/1.0, half-close.
        body = j(chat_body())
        cases.append(Case("duplicate Content-Length", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\nContent-Length: %d\r\n\r\n"
                          % (len(body), len(body)) + body, 400, closes=True))
        cases.append(Case("CL.TE smuggling", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, closes=True))
        cases.append(Case("TE.CL smuggling (chunked, identity)", b"POST /v1/chat/completions HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked, identity\r\n"
                          b"\r\n2\r\n{}\r\n0\r\n\r\n", 400, closes=True, timeout=5))
        cases.append(Case("TE obfuscated (xchunked)", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nTransfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                          400, closes=True, timeout=5))
        cases.append(Case("negative Content-Length", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: -1\r\n\r\n{}", 400, closes=True, plain=True))
        cases.append(Case("Content-Length 2^64", b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 18446744073709551616\r\n\r\n{}",
                          413, statuses=[400, 413], closes=True, plain=True))
        cases.append(Case("missing Host (HTTP/1.1)", http_request("GET", "/healthz", host=None), 400, "/healthz",
                          closes=True))
        cases.append(Case("two Host headers", http_request("GET", "/healthz", headers=["Host: other"]), 400,
                          "/healthz", closes=True))
        cases.append(Case("NUL in the path", http_request("GET", "/healthz%00/../v1/models"), 400, "/healthz", closes=True))
        cases.append(Case("HTTP/1.0 chat", http_request("POST", CHAT_PATH, body, version="HTTP/1.0", host=None), 200))
        cases.append(Case("HTTP/1.0 with Transfer-Encoding", b"POST /v1/chat/completions HTTP/1.0\r\n"
                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                          400, closes=True))
        cases.append(Case("HTTP/0.9 request", b"GET /healthz\r\n\r\n", 400, "/healthz", closes=True, plain=True,
                          statuses=[400, 505]))
        cases.append(Case("HTTP/2 preface on HTTP/1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "*", plain=True,
                          statuses=[400, 505]))
        # Noticed before the answer is ready: 400; an answer already complete (the fake is quick) is sent.
        # Never silence. (test-http.c checks both orders deterministically.)
        cases.append(Case("half-close after a full POST", http_request("POST", CHAT_PATH, body), 400,
                          half_close=True, closes=True, statuses=[200]))
        pipelined = (http_request("GET", "/healthz").replace(b"Connection: close\r\n", b"") +
                     http_request("POST", CHAT_PATH, b"{").replace(b"Connection: close\r\n", b"") +
                     http_request("GET", "/nope"))
        cases.append(Case("pipelined healthz, bad JSON, unknown route", pipelined, 200, "/healthz", n_responses=3,
                          statuses=[200, 400, 404]))
        pipelined_smuggle = (http_request("POST", CHAT_PATH, b"{}").replace(b"Connection: close\r\n", b"")
                             .replace(b"Content-Length: 2\r\n", b"Content-Length: 2\r\nContent-Length: 40\r\n") +
                             http_request("GET", "/admin"))
        cases.append(Case("pipelined smuggling attempt", pipelined_smuggle, 400, n_responses=2, statuses=[400],
                          closes=True))

        # 10. Foreign Host / Origin, wrong Content-Type (403 / 415 with the access checks).
        acc = None if HAS_HOST_CHECK else ACCESS_PENDING
        for h in ["attacker.example", "attacker.example:8080", "127.0.0.1.nip.io", "localhost.attacker.example"]:
                cases.append(post(CHAT_PATH, j(chat_body()), 403, f"foreign Host {h}", host=h, xfail=acc))
        cases.append(post(MESSAGES_PATH, j(msg_body()), 403, "foreign Host on /v1/messages", host="evil.example",
                          xfail=acc))
        for o in ["https://attacker.example", "null", "http://localhost.evil.example"]:
                cases.append(post(CHAT_PATH, j(chat_body()), 403, f"foreign Origin {o}", headers=[f"Origin: {o}"],
                                  xfail=acc))
        acc415 = None if HAS_CONTENT_TYPE_CHECK else ACCESS_PENDING
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]:
                cases.append(post(CHAT_PATH, j(chat_body()), 415, f"Content-Type {ct}", ctype=ct, xfail=acc415))
        cases.append(post(MESSAGES_PATH, j(msg_body()), 415, "Content-Type text/plain on /v1/messages",
                          ctype="text/plain", xfail=acc415))
        return cases


# What the catalogue found outside http/, reported to the lead with the exact input (the test prints it):
# expected to fail until fixed where it belongs. A case here that starts passing fails the test, so the
# entry must then go.
FINDINGS = {}

CASES = build_cases()
for _c in CASES:
        if _c.name in FINDINGS and not _c.xfail:
                _c.xfail = FINDINGS[_c.name]


def check_error_body(case, status, headers, body):
        """The body is strict UTF-8 JSON in the case's shape. Returns a problem or None."""
        if case.plain:
                return None
        try:
                text = body.decode("utf-8", errors="strict")
                doc = json.loads(text)
        except (UnicodeDecodeError, ValueError) as e:
                return f"body is not valid UTF-8 JSON ({e}): {body[:300]!r}"
        if not headers.get("content-type", "").startswith("application/json"):
                return f"Content-Type {headers.get('content-type')!r}"
        if status < 400:
                return None
        if case.shape == "openai":
                e = doc.get("error") if isinstance(doc, dict) else None
                if not isinstance(e, dict) or set(doc) != {"error"} or not {"message", "type", "param", "code"} <= set(e):
                        return f"not OpenAI's error shape: {doc}"
                if not isinstance(e["message"], str) or not e["message"] or not isinstance(e["type"], str):
                        return f"OpenAI error without message/type: {doc}"
        else:
                e = doc.get("error") if isinstance(doc, dict) else None
                if doc.get("type") != "error" or not isinstance(e, dict) or not isinstance(e.get("type"), str) \
                   or not isinstance(e.get("message"), str) or not e["message"]:
                        return f"not Anthropic's error shape: {doc}"
        return None


def run_case(port, case):
        try:
                # libmicrohttpd 0.9.75 sends its own 400/413 for a Content-Length it cannot parse with the
                # header block twice (the second one then counts as body): its plain answers are only
                # checked for the status and the close.
                responses, closed = exchange(port, case.data, case.n_responses, case.timeout, case.half_close,
                                             strict=not case.plain)
        except (OSError, AssertionError) as e:
                return f"exchange failed: {e!r}"
        want = case.statuses if case.n_responses > 1 else None
        if not responses:
                return "no response (connection closed)"
        if want:
                got = [r[0] for r in responses]
                if got != want:
                        return f"statuses {got}, expected {want}"
        else:
                ok = {case.status} | set(case.statuses or [])
                if responses[0][0] not in ok:
                        return f"status {responses[0][0]}, expected {case.status}: {responses[0][2][:300]!r}"
        for status, headers, body in responses:
                p = check_error_body(case, status, headers, body)
                if p:
                        return p
        if case.closes and not closed:
                return "the connection was not closed after a framing error"
        return None


def test_bad_input_catalogue(proxy_stack, record_property, capsys):
        s = proxy_stack(Proxy={"MaxBodyBytes": MAX_BODY, "MaxConnectionsPerClient": 64, "HeaderTimeoutSec": 2})
        s.chat.set_default({"text": ["fine"]})
        assert len(CASES) >= 150, len(CASES)
        assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
        failures, xfailed, xpassed = [], [], []
        for i, case in enumerate(CASES):
                problem = run_case(s.port, case)
                if case.xfail:
                        (xfailed if problem else xpassed).append((case, problem))
                elif problem:
                        failures.append((case, problem))
                if i % 20 == 19:
                        r = s.get("/healthz", timeout=10)
                        assert r.status == 200, f"/healthz after case {i} ({case.name}): {r}"
        # Slow-loris: headers trickled a byte every 0.3 s are cut off at HeaderTimeoutSec= (2 s), unanswered.
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        t0 = time.monotonic()
        got = b"?"
        try:
                c.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                c.settimeout(0.3)
                while time.monotonic() - t0 < 10:
                        try:
                                c.send(b"a")
                                got = c.recv(100)
                                break
                        except socket.timeout:
                                continue
                        except (BrokenPipeError, ConnectionResetError):
                                got = b""
                                break
        finally:
                c.close()
        loris_after = time.monotonic() - t0
        if got != b"" or not 1.5 <= loris_after <= 4:
                failures.append((Case("slow-loris headers", b"(trickled)", 0), f"got {got!r} after {loris_after:.1f}s"))

        # Still serving: a valid request of each API.
        r = s.post(CHAT_PATH, chat_body(), timeout=30)
        assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == "fine", r
        r = s.post(MESSAGES_PATH, msg_body(), timeout=30)
        assert r.status == 200 and r.json()["content"][0]["text"] == "fine", r
        r = s.post(COUNT_PATH, count_body(), timeout=30)
        assert r.status == 200 and r.json()["input_tokens"] > 0, r
        assert s.proxyd.running()

        summary = (f"catalogue: {len(CASES)} cases, {len(failures)} failed, {len(xfailed)} expected failures, "
                   f"{len(xpassed)} unexpectedly passed")
        record_property("catalogue", summary)
        with capsys.disabled():
                print("\n" + summary)
                for c, p in failures:
                        print(f"  FAIL {c.name}: {p}\n       input: {c.data[:400]!r}")
                for c, p in xfailed:
                        print(f"  XFAIL {c.name}: {p}\n       because: {c.xfail}\n       input: {c.data[:400]!r}")
        assert not failures, "\n".join(f"{c.name}: {p} — input {c.data[:200]!r}" for c, p in failures)
        assert not xpassed, f"now passing, drop the xfail: {[c.name for c, _ in xpassed]}"
        if xfailed:
                reasons = sorted({c.xfail for c, _ in xfailed})
                pytest.xfail(f"{len(xfailed)} known cases: " + "; ".join(reasons))
