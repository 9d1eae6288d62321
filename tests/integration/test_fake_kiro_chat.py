# SPDX-License-Identifier: LGPL-2.1-or-later
"""Tests of the fake Kiro chat service itself (fakes/kiro_chat.py): no daemons needed.

The stream is read here with a raw socket client and decoded by an independent event-stream decoder
(binascii CRC-32, every length and CRC checked), so a bug in the fake's encoder cannot hide behind the
same bug in the decoder."""

import binascii
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fakes import kiro_chat  # noqa: E402
from fakes.kiro_chat import FakeKiroChat, large_text  # noqa: E402

TOKEN = "ksk_test"
MACHINE_ID = "0123456789abcdef" * 4


# ---- independent decoder ---------------------------------------------------------------------------

class CRCError(Exception):
        pass


def crc32(b):
        return binascii.crc32(b) & 0xFFFFFFFF


def decode_headers(b):
        out, i = [], 0
        while i < len(b):
                n = b[i]
                assert n > 0, "empty header name"
                name = b[i + 1:i + 1 + n].decode("ascii")
                i += 1 + n
                t = b[i]
                i += 1
                assert t == 7, f"header {name} has type {t}, the fake only sends strings"
                (vlen,) = struct.unpack(">H", b[i:i + 2])
                out.append((name, b[i + 2:i + 2 + vlen].decode()))
                i += 2 + vlen
        return out


def decode_stream(data):
        """Returns (frames, leftover bytes): frames as (headers list, payload bytes). Raises CRCError."""
        frames, pos = [], 0
        while len(data) - pos >= 12:
                total, hlen = struct.unpack(">II", data[pos:pos + 8])
                (pcrc,) = struct.unpack(">I", data[pos + 8:pos + 12])
                if crc32(data[pos:pos + 8]) != pcrc:
                        raise CRCError("prelude")
                assert 16 <= total <= 16 << 20 and hlen <= total - 16
                if len(data) - pos < total:
                        break
                msg = data[pos:pos + total]
                (mcrc,) = struct.unpack(">I", msg[-4:])
                if crc32(msg[:-4]) != mcrc:
                        raise CRCError("message")
                frames.append((decode_headers(msg[12:12 + hlen]), msg[12 + hlen:-4]))
                pos += total
        return frames, data[pos:]


def events(frames):
        """[(event type or "!exception-type"/"!error", payload object)] for frames of JSON payloads."""
        out = []
        for hdrs, payload in frames:
                h = dict(hdrs)
                if h[":message-type"] == "event":
                        out.append((h[":event-type"], json.loads(payload)))
                elif h[":message-type"] == "exception":
                        out.append(("!" + h[":exception-type"], json.loads(payload)))
                else:
                        out.append(("!error", {"code": h[":error-code"], "message": h[":error-message"]}))
        return out


def text_of(evs):
        return "".join(p["content"] for t, p in evs if t == "assistantResponseEvent")


# ---- raw HTTP client ---------------------------------------------------------------------------------

class Response:
        def __init__(self, status, headers, body, chunks, complete, t_first):
                self.status, self.headers, self.body = status, headers, body
                self.chunks, self.complete, self.t_first = chunks, complete, t_first

        def json(self):
                return json.loads(self.body)

        def frames(self):
                frames, rest = decode_stream(self.body)
                assert rest == b"", f"{len(rest)} undecoded bytes"
                return frames

        def events(self):
                return events(self.frames())


def good_headers(token=TOKEN, **over):
        h = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "amz-sdk-invocation-id": "5b3f6f2e-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
                "amz-sdk-request": "attempt=1; max=3",
                "x-amzn-kiro-agent-mode": "vibe",
                "x-amzn-codewhisperer-optout": "true",
                "user-agent": "aws-sdk-js/1.0.34 ua/2.1 os/linux lang/js md/nodejs#20.0.0 "
                              f"api/codewhispererstreaming#1.0.34 m/E KiroIDE-0.11.63-{MACHINE_ID}",
                "x-amz-user-agent": f"aws-sdk-js/1.0.34 KiroIDE-0.11.63-{MACHINE_ID}",
                "tokentype": "API_KEY",
        }
        for k, v in over.items():
                k = k.replace("_", "-")
                if v is None:
                        h.pop(k, None)
                else:
                        h[k] = v
        return h


def uim(content, model="claude-sonnet-4.5", tools=None, results=None, **extra):
        m = {"content": content, "modelId": model, "origin": "AI_EDITOR", **extra}
        ctx = {}
        if tools is not None:
                ctx["tools"] = tools
        if results is not None:
                ctx["toolResults"] = results
        if ctx:
                m["userInputMessageContext"] = ctx
        return m


def tool_spec(name, description="Gets the weather"):
        return {"toolSpecification": {"name": name, "description": description,
                                      "inputSchema": {"json": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}}


def good_body(content="Hi there", history=None, current=None, **top):
        cs = {"chatTriggerType": "MANUAL", "conversationId": "c0ffee00-0000-4000-8000-000000000001",
              "currentMessage": {"userInputMessage": current or uim(content)}}
        if history is not None:
                cs["history"] = history
        return {"conversationState": cs, **top}


def post(fake, body=None, headers=None, path="/generateAssistantResponse", raw=None, timeout=30):
        """One request on a fresh connection; reads until the chunked body ends or the peer closes."""
        data = raw if raw is not None else json.dumps(body if body is not None else good_body()).encode()
        hdrs = dict(headers if headers is not None else good_headers())
        port = int(fake.url.rsplit(":", 1)[1])
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
                req = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(data)}",
                       "Connection: close"]
                req += [f"{k}: {v}" for k, v in hdrs.items()]
                t0 = time.monotonic()
                s.sendall(("\r\n".join(req) + "\r\n\r\n").encode() + data)
                buf = bytearray()
                t_first = None
                while True:
                        try:
                                b = s.recv(65536)
                        except ConnectionResetError:
                                b = b""
                        if not b:
                                break
                        if t_first is None:
                                t_first = time.monotonic() - t0
                        buf += b
        finally:
                s.close()
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        rh = {}
        for ln in lines[1:]:
                k, _, v = ln.partition(":")
                rh[k.strip().lower()] = v.strip()
        chunks, complete = [], True
        if rh.get("transfer-encoding", "").lower() == "chunked":
                body_out, pos, complete = bytearray(), 0, False
                while True:
                        eol = rest.find(b"\r\n", pos)
                        if eol < 0:
                                break
                        size = int(rest[pos:eol], 16)
                        if size == 0:
                                complete = rest[eol + 2:eol + 4] == b"\r\n"
                                break
                        chunk = rest[eol + 2:eol + 2 + size]
                        body_out += chunk
                        if len(chunk) < size or rest[eol + 2 + size:eol + 4 + size] != b"\r\n":
                                break
                        chunks.append(size)
                        pos = eol + 4 + size
                body = bytes(body_out)
        else:
                body = rest[:int(rh.get("content-length", len(rest)))]
        return Response(status, rh, body, chunks, complete, t_first)


@pytest.fixture
def fake():
        f = FakeKiroChat(tokens=(TOKEN,), control=True).start()
        yield f
        f.stop()


# ---- the decoder itself ------------------------------------------------------------------------------

def test_crc_is_ieee():
        assert crc32(b"123456789") == 0xCBF43926


def test_frame_layout_by_hand():
        f = kiro_chat.event_frame("assistantResponseEvent", {"content": "hi"})
        total, hlen = struct.unpack(">II", f[:8])
        assert total == len(f)
        hdr = f[12:12 + hlen]
        # first header: 11 ":event-type", type 7, length, value
        assert hdr[0] == len(":event-type") and hdr[1:12] == b":event-type" and hdr[12] == 7
        assert f[12 + hlen:-4] == b'{"content":"hi"}'


# ---- streams ---------------------------------------------------------------------------------------

def test_default_answer_echoes_and_closes(fake):
        r = post(fake, good_body("Tell me\nabout ducks"))
        assert r.status == 200
        assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
        assert r.complete
        frames = r.frames()
        for hdrs, payload in frames:
                assert [k for k, _ in hdrs] == [":event-type", ":content-type", ":message-type"]
                assert dict(hdrs)[":content-type"] == "application/json"
                assert dict(hdrs)[":message-type"] == "event"
                obj = json.loads(payload)
                assert payload == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        evs = events(frames)
        assert text_of(evs) == "Hello from the fake Kiro service. You said: about ducks"
        assert evs[-2] == ("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": 0.1})
        assert evs[-1] == ("contextUsageEvent", {"contextUsagePercentage": 2.5})
        assert kiro_chat.default_text("Tell me\nabout ducks") == text_of(evs)


def test_text_chunks_and_repeat(fake):
        fake.enqueue({"text": ["Hel", "lo", " wörld"], "repeat_text": "\n", "metering": 0.25,
                      "context_usage": 78.56})
        evs = post(fake).events()
        assert [p for t, p in evs if t == "assistantResponseEvent"] == [
                {"content": "Hel"}, {"content": "lo"}, {"content": " wörld"}, {"content": "\n"}, {"content": "\n"}]
        assert evs[-2][1]["usage"] == 0.25 and evs[-1][1]["contextUsagePercentage"] == 78.56


def test_thinking_text(fake):
        fake.enqueue({"thinking_text": ["Let me ", "think."], "text": "Answer."})
        evs = post(fake).events()
        contents = [p["content"] for t, p in evs if t == "assistantResponseEvent"]
        assert contents == ["<thinking>Let me ", "think.</thinking>\n\n", "Answer."]


def test_thinking_tags_split(fake):
        fake.enqueue({"thinking_text": "deep thought", "thinking_chunk_size": 4, "text": "42"})
        evs = post(fake).events()
        contents = [p["content"] for t, p in evs if t == "assistantResponseEvent"]
        assert contents[0] == "<thi" and contents[1] == "nkin"
        assert "".join(contents) == "<thinking>deep thought</thinking>\n\n42"


def test_reasoning_events(fake):
        fake.enqueue({"reasoning": ["a", "b"], "reasoning_signature": "sig123", "text": "done"})
        evs = post(fake).events()
        assert evs[:3] == [("reasoningContentEvent", {"text": "a"}), ("reasoningContentEvent", {"text": "b"}),
                           ("reasoningContentEvent", {"signature": "sig123"})]
        assert text_of(evs) == "done"


def test_tool_calls_shape(fake):
        inp = {"city": "Paris", "days": 3}
        fake.enqueue({"text": "Checking.", "tool_calls": [
                {"name": "get_weather", "id": "tooluse_abc", "input_json": inp, "chunks": 3},
                {"name": "noop", "id": "tooluse_def", "input_json": "{}", "duplicate": True}]})
        evs = post(fake).events()
        tool = [p for t, p in evs if t == "toolUseEvent"]
        a = [p for p in tool if p["toolUseId"] == "tooluse_abc"]
        assert a[0] == {"name": "get_weather", "toolUseId": "tooluse_abc"}
        assert a[1] == {"input": "", "name": "get_weather", "toolUseId": "tooluse_abc"}
        assert a[-1] == {"name": "get_weather", "stop": True, "toolUseId": "tooluse_abc"}
        frags = a[2:-1]
        assert len(frags) == 3 and all(set(p) == {"input", "name", "toolUseId"} for p in frags)
        assert json.loads("".join(p["input"] for p in frags)) == inp
        # key order on the wire is what A.11 shows
        raw = [payload for hdrs, payload in post_frames_again(fake, {"tool_calls": [
                {"name": "x", "id": "t1", "input_json": "{}"}]})]
        assert raw[:4] == [b'{"name":"x","toolUseId":"t1"}', b'{"input":"","name":"x","toolUseId":"t1"}',
                           b'{"input":"{}","name":"x","toolUseId":"t1"}', b'{"name":"x","stop":true,"toolUseId":"t1"}']
        d = [p for p in tool if p["toolUseId"] == "tooluse_def"]
        assert len(d) == 8          # the whole call twice
        assert text_of(evs) == "Checking."


def post_frames_again(fake, scenario):
        fake.enqueue(scenario)
        return post(fake).frames()


def test_metadata_usage_and_omitted_closing(fake):
        fake.enqueue({"text": "x", "metadata_usage": {"uncachedInputTokens": 7, "outputTokens": 3,
                                                       "totalTokens": 10}})
        evs = post(fake).events()
        assert ("metadataEvent", {"tokenUsage": {"uncachedInputTokens": 7, "outputTokens": 3,
                                                 "totalTokens": 10}}) in evs
        fake.enqueue({"text": "x", "omit_closing_events": True})
        r = post(fake)
        assert r.complete
        assert [t for t, _ in r.events()] == ["assistantResponseEvent"]


@pytest.mark.parametrize("status,etype,body", [
        (403, "AccessDeniedException", {"message": "The bearer token included in the request is invalid."}),
        (429, "ThrottlingException", {"message": "Too many requests, please wait before trying again.",
                                      "reason": None}),
        (500, "InternalServerException", {"message": kiro_chat.MSG_HIGH_LOAD}),
        (503, "ServiceUnavailableException", {"message": kiro_chat.MSG_HIGH_LOAD,
                                              "reason": "INSUFFICIENT_MODEL_CAPACITY"}),
        (402, "ServiceQuotaExceededException", {"message": "You have reached the limit.",
                                                "reason": "MONTHLY_REQUEST_COUNT"}),
        (400, "ValidationException", {"message": "Improperly formed request.", "reason": None}),
])
def test_status_scenarios(fake, status, etype, body):
        fake.enqueue({"status": status})
        r = post(fake)
        assert r.status == status
        assert r.headers["x-amzn-errortype"] == etype
        assert r.json() == body
        assert fake.last().outcome == "status"


def test_status_overrides(fake):
        fake.enqueue({"status": 429, "retry_after": 2, "reason": "DAILY_REQUEST_COUNT"},
                     {"status": 403, "message": "Your account is suspended", "reason": "TEMPORARILY_SUSPENDED"},
                     {"status": 400, "body": {"message": "Input is too long."}, "headers": {"x-extra": "1"}})
        r = post(fake)
        assert r.headers["retry-after"] == "2" and r.json()["reason"] == "DAILY_REQUEST_COUNT"
        r = post(fake)
        assert r.json() == {"message": "Your account is suspended", "reason": "TEMPORARILY_SUSPENDED"}
        r = post(fake)
        assert r.json() == {"message": "Input is too long."} and r.headers["x-extra"] == "1"
        assert post(fake).status == 200          # queue drained: default answer


def test_repeat(fake):
        fake.enqueue({"status": 429, "repeat": 3}, {"text": "ok"})
        assert fake.pending() == 4
        assert [post(fake).status for _ in range(4)] == [429, 429, 429, 200]


def test_exception_mid_stream(fake):
        fake.enqueue({"text": ["one", "two", "three"],
                      "exception": {"type": "ThrottlingException", "message": "slow down", "at": 2}})
        r = post(fake)
        assert r.status == 200 and r.complete
        frames = r.frames()
        hdrs, payload = frames[-1]
        assert hdrs == [(":exception-type", "ThrottlingException"), (":content-type", "application/json"),
                        (":message-type", "exception")]
        assert json.loads(payload) == {"message": "slow down"}
        assert [t for t, _ in events(frames)] == ["assistantResponseEvent"] * 2 + ["!ThrottlingException"]


def test_error_frame(fake):
        fake.enqueue({"text": "x", "error_frame": {"code": "InternalFailure", "message": "boom"}})
        evs = post(fake).events()
        assert evs == [("assistantResponseEvent", {"content": "x"}),
                       ("!error", {"code": "InternalFailure", "message": "boom"})]


def test_cut_after_bytes_abrupt(fake):
        fake.enqueue({"text": ["a" * 100, "b" * 100]})
        full = post(fake).body
        cut = struct.unpack(">I", full[:4])[0] + 30        # inside the second frame
        fake.enqueue({"text": ["a" * 100, "b" * 100], "cut_after_bytes": cut})
        r = post(fake)
        assert r.status == 200
        assert not r.complete                   # no terminating chunk: the connection just closed
        assert r.body == full[:cut]
        frames, rest = decode_stream(r.body)
        assert len(frames) == 1 and rest        # one whole frame, then a torn one


def test_cut_after_bytes_clean(fake):
        fake.enqueue({"text": "hello", "cut_after_bytes": 20, "cut_clean": True})
        r = post(fake)
        assert r.complete and len(r.body) == 20
        frames, rest = decode_stream(r.body)
        assert frames == [] and len(rest) == 20


def test_first_byte_delay(fake):
        fake.enqueue({"text": "late", "first_byte_delay": 0.6})
        r = post(fake)
        assert r.t_first >= 0.55
        assert text_of(r.events()) == "late"


def test_first_frame_and_chunk_delay(fake):
        fake.enqueue({"text": ["a", "b", "c"], "chunk_delay": 0.2})
        t0 = time.monotonic()
        r = post(fake)
        assert time.monotonic() - t0 >= 0.2 * 4 - 0.05    # 5 frames, 4 gaps
        assert text_of(r.events()) == "abc"


def test_split_frames(fake):
        sc = {"text": ["split ", "me ", "up"], "tool_calls": [{"name": "t", "id": "t1", "input_json": {"a": 1}}]}
        fake.enqueue(dict(sc))
        whole = post(fake).body
        fake.enqueue({**sc, "split_frames": True})
        r = post(fake)
        assert r.body == whole
        assert r.chunks and all(1 <= n <= 7 for n in r.chunks)
        assert len(r.chunks) >= len(whole) // 7
        assert text_of(r.events()) == "split me up"


def test_large_text_one_mib(fake):
        n = 1 << 20
        fake.enqueue({"large_text_bytes": n})
        r = post(fake)
        evs = r.events()
        text = text_of(evs)
        assert len(text.encode()) == n and text == large_text(n)
        assert "€" in text and "é" in text
        parts = [p["content"] for t, p in evs if t == "assistantResponseEvent"]
        assert len(parts) > 1000 and all(len(p.encode()) <= 1000 for p in parts)


def test_malformed_json_payload(fake):
        fake.enqueue({"text": ["ok", "fine"], "malformed_json_payload": True})
        frames = post(fake).frames()        # CRCs all right
        payloads = [p for _, p in frames]
        assert payloads[1] == b'{"content":"unterminated'
        with pytest.raises(ValueError):
                json.loads(payloads[1])


@pytest.mark.parametrize("kind", ["message", "prelude"])
def test_bad_crc(fake, kind):
        fake.enqueue({"text": ["a", "b"], "bad_crc": kind, "bad_crc_frame": 1})
        r = post(fake)
        with pytest.raises(CRCError) as e:
                decode_stream(r.body)
        assert str(e.value) == kind
        # the first frame is fine
        first_len = struct.unpack(">I", r.body[:4])[0]
        assert len(decode_stream(r.body[:first_len])[0]) == 1


# ---- validation --------------------------------------------------------------------------------------

def test_bad_token(fake):
        fake.enqueue({"text": "never"})
        for h in (good_headers(token="nope"), good_headers(Authorization=None),
                  good_headers(Authorization="Basic abc")):
                r = post(fake, headers=h)
                assert r.status == 403
                assert r.json() == {"message": "The bearer token included in the request is invalid."}
                assert r.headers["x-amzn-errortype"] == "AccessDeniedException"
        assert fake.pending() == 1           # nothing consumed
        fake.accept_token("at-social-1")
        assert post(fake, headers=good_headers(token="at-social-1", tokentype=None)).status == 200


@pytest.mark.parametrize("override,why", [
        ({"Content-Type": "text/plain"}, "content-type"),
        ({"amz-sdk-invocation-id": None}, "amz-sdk-invocation-id"),
        ({"amz-sdk-invocation-id": "not-a-uuid"}, "amz-sdk-invocation-id"),
        ({"amz-sdk-request": None}, "amz-sdk-request"),
        ({"amz-sdk-request": "attempt=4; max=3"}, "amz-sdk-request"),
        ({"x-amzn-kiro-agent-mode": None}, "x-amzn-kiro-agent-mode"),
        ({"x-amzn-kiro-agent-mode": "spec"}, "x-amzn-kiro-agent-mode"),
        ({"x-amzn-codewhisperer-optout": None}, "optout"),
        ({"user-agent": "curl/7.88"}, "user-agent"),
        ({"user-agent": "aws-sdk-js/1.0.34 KiroIDE-0.11.63"}, "machine id"),
        ({"x-amz-user-agent": None}, "x-amz-user-agent"),
        ({"tokentype": None}, "tokentype"),
])
def test_header_validation(fake, override, why):
        r = post(fake, headers=good_headers(**{k.replace("-", "_"): v for k, v in override.items()}))
        assert r.status == 400, fake.last().errors
        assert r.json() == {"message": "Improperly formed request.", "reason": None}
        assert r.headers["x-amzn-errortype"] == "ValidationException"
        assert any(why in e for e in fake.last().errors), fake.last().errors
        assert fake.last().outcome == "invalid"


def _body_with(**cs_over):
        b = good_body()
        b["conversationState"].update(cs_over)
        return b


WEATHER = [tool_spec("get_weather")]


def _tool_history(result_id="tu_1", use_id="tu_1", tool_name="get_weather", declare=True):
        history = [{"userInputMessage": uim("Weather in Paris?")},
                   {"assistantResponseMessage": {"content": "Let me check.", "toolUses": [
                           {"toolUseId": use_id, "name": tool_name, "input": {"city": "Paris"}}]}}]
        current = uim("Tool results provided.", tools=WEATHER if declare else None,
                      results=[{"toolUseId": result_id, "content": [{"text": "sunny"}], "status": "success"}])
        return good_body(history=history, current=current)


BAD_BODIES = {
        "trigger": (_body_with(chatTriggerType="INLINE_CHAT"), "chatTriggerType"),
        "no-conversation-id": (_body_with(conversationId=""), "conversationId"),
        "no-state": ({"foo": 1}, "conversationState"),
        "origin": (good_body(current=uim("hi", origin="CLI")), "origin"),
        "no-model": (good_body(current={"content": "hi", "origin": "AI_EDITOR"}), "modelId"),
        "empty-content": (good_body(current=uim("")), "content"),
        "history-starts-assistant": (good_body(history=[{"assistantResponseMessage": {"content": "hi"}},
                                                         {"userInputMessage": uim("x")}]), "start with user"),
        "not-alternating": (good_body(history=[{"userInputMessage": uim("a")}]), "alternate"),
        "history-origin": (good_body(history=[{"userInputMessage": {"content": "a"}},
                                              {"assistantResponseMessage": {"content": "b"}}]), "origin"),
        "empty-assistant": (good_body(history=[{"userInputMessage": uim("a")},
                                               {"assistantResponseMessage": {"content": ""}}]), "assistant content"),
        "orphan-result": (_tool_history(result_id="tu_other"), "matches no toolUse"),
        "unanswered-use": (_tool_history(result_id="tu_other"), "has no toolResult"),
        "undeclared-tool": (_tool_history(declare=False), "not declared"),
        "long-tool-name": (good_body(current=uim("hi", tools=[tool_spec("x" * 65)])), "longer than 64"),
        "long-use-name": (_tool_history(tool_name="y" * 65), "invalid (1..64)"),
        "bad-image": (good_body(current=uim("hi", images=[{"format": "bmp", "source": {"bytes": "AA=="}}])),
                      "images[0]"),
        "bad-profile-arn": (good_body(profileArn="arn:nope"), "profileArn"),
        "unknown-member": (good_body(conversation_state={}), "unknown top-level"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_body_validation(fake, case):
        body, why = BAD_BODIES[case]
        fake.enqueue({"text": "should stay queued"})
        r = post(fake, body)
        assert r.status == 400
        assert r.headers["x-amzn-errortype"] == "ValidationException"
        assert r.json()["message"] == "Improperly formed request."
        assert any(why in e for e in fake.last().errors), fake.last().errors
        assert fake.pending() == 1


def test_invalid_json_body(fake):
        r = post(fake, raw=b"{not json")
        assert r.status == 400 and "not valid JSON" in fake.last().errors[0]


def test_profile_arn_reason(fake):
        r = post(fake, good_body(profileArn="arn:aws:codewhisperer:us-east-1:bad"))
        assert r.status == 400 and r.json()["reason"] == "REQUEST_BODY_INVALID"


def test_payload_limit():
        with FakeKiroChat(max_body_bytes=2000) as f:
                r = post(f, good_body("x" * 3000))
                assert r.status == 400
                assert r.json() == {"message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"}
                assert post(f, good_body("small")).status == 200


def test_valid_tool_round_trip_and_recording(fake):
        body = _tool_history()
        body["profileArn"] = "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK"
        fake.enqueue({"text": "It is sunny.", "name": "final"})
        r = post(fake, body)
        assert r.status == 200, fake.last().errors
        assert text_of(r.events()) == "It is sunny."
        rec = fake.last()
        assert rec.errors == [] and rec.outcome == "stream" and rec.scenario["name"] == "final"
        assert rec.headers["x-amzn-kiro-agent-mode"] == "vibe" and rec.token == TOKEN
        assert rec.body == body
        assert rec.tool_results()[0]["toolUseId"] == "tu_1"
        assert len(rec.history) == 2
        assert fake.count() == 1 and fake.count("stream") == 1


def test_unknown_path(fake):
        r = post(fake, path="/")
        assert r.status == 404


# ---- connections, control endpoint, stand-alone process ------------------------------------------

def test_keep_alive_reuse(fake):
        conn = http.client.HTTPConnection("127.0.0.1", int(fake.url.rsplit(":", 1)[1]), timeout=10)
        try:
                for i in range(3):
                        fake.enqueue({"text": f"answer {i}"})
                        conn.request("POST", "/generateAssistantResponse", json.dumps(good_body()), good_headers())
                        resp = conn.getresponse()
                        data = resp.read()
                        assert resp.status == 200
                        frames, rest = decode_stream(data)
                        assert rest == b"" and text_of(events(frames)) == f"answer {i}"
                        sock = conn.sock
                        assert sock is not None            # still open: reused for the next request
        finally:
                conn.close()


def test_curl_reuses_connection(fake, tmp_path):
        import shutil
        if not shutil.which("curl"):
                pytest.skip("curl is not installed")
        body = tmp_path / "b.json"
        body.write_text(json.dumps(good_body()))
        one = ["--http1.1", "-o", "/dev/null", "--data-binary", f"@{body}"]
        for k, v in good_headers().items():
                one += ["-H", f"{k}: {v}"]
        one.append(fake.url + "/generateAssistantResponse")
        args = ["curl", "-sv", *one, "--next", *one]
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        assert "Re-using existing connection" in p.stderr or "Reusing existing connection" in p.stderr
        assert fake.count("stream") == 2


def _ctl(fake, method, path, obj=None):
        data = json.dumps(obj).encode() if obj is not None or method == "POST" else None
        req = urllib.request.Request(fake.control_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
                with urllib.request.urlopen(req, timeout=10) as r:
                        return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())


def test_control_endpoint(fake):
        assert _ctl(fake, "GET", "/health")[1]["url"] == fake.url
        assert _ctl(fake, "POST", "/enqueue", {"text": "via control"}) == (200, {"queued": 1})
        assert _ctl(fake, "POST", "/enqueue", [{"status": 429}, {"text": "b"}]) == (200, {"queued": 2})
        assert _ctl(fake, "GET", "/queue")[1] == {"pending": 3}
        assert text_of(post(fake).events()) == "via control"
        assert post(fake).status == 429
        st, reqs = _ctl(fake, "GET", "/requests")
        assert st == 200 and len(reqs) == 2
        assert reqs[0]["body"]["conversationState"]["chatTriggerType"] == "MANUAL"
        assert reqs[0]["headers"]["x-amzn-kiro-agent-mode"] == "vibe" and reqs[1]["status"] == 429
        st, err = _ctl(fake, "POST", "/enqueue", {"txet": "typo"})
        assert st == 400 and "txet" in err["error"]
        assert _ctl(fake, "POST", "/default", {"text": "always"}) == (200, {})
        assert _ctl(fake, "POST", "/reset") == (200, {})
        assert _ctl(fake, "GET", "/requests")[1] == [] and _ctl(fake, "GET", "/queue")[1] == {"pending": 0}
        _ctl(fake, "POST", "/default", {"text": "always"})
        assert text_of(post(fake).events()) == "always" and text_of(post(fake).events()) == "always"
        _ctl(fake, "POST", "/accept-token", {"token": "other"})
        assert post(fake, headers=good_headers(token="other", tokentype=None)).status == 200


def test_enqueue_rejects_unknown_keys(fake):
        with pytest.raises(ValueError):
                fake.enqueue({"statsu": 429})
        with pytest.raises(ValueError):
                fake.enqueue({"tool_calls": [{"name": "a", "input": "{}"}]})


def test_standalone_process(tmp_path):
        ready = tmp_path / "ready.json"
        p = subprocess.Popen([sys.executable, str(HERE / "fakes" / "kiro_chat.py"), "--token", "ksk_x",
                              "--ready-file", str(ready)])
        try:
                deadline = time.monotonic() + 10
                while not ready.exists():
                        assert time.monotonic() < deadline, "fake did not start"
                        assert p.poll() is None
                        time.sleep(0.05)
                info = json.loads(ready.read_text())
                assert info["pid"] == p.pid and info["control_url"]

                class F:
                        url = info["url"]
                        control_url = info["control_url"]
                assert _ctl(F, "POST", "/enqueue", {"text": "standalone"})[0] == 200
                assert text_of(post(F, headers=good_headers(token="ksk_x")).events()) == "standalone"
                assert post(F).status == 403
        finally:
                p.send_signal(signal.SIGTERM)
                assert p.wait(timeout=10) == 0


def test_match_and_tool_placeholder(fake):
        fake.enqueue({"match": "nonce-b", "text": "for b"}, {"match": "nonce-a", "text": "for a"}, {"text": "any"})
        assert text_of(post(fake, good_body("hello nonce-a")).events()) == "for a"
        assert text_of(post(fake, good_body("no nonce")).events()) == "any"
        assert text_of(post(fake, good_body("nonce-b here")).events()) == "for b"
        assert fake.pending() == 0
        st, reqs = _ctl(fake, "GET", "/requests?match=nonce-a")
        assert st == 200 and len(reqs) == 1 and reqs[0]["scenario"]["text"] == "for a"

        alias = "lookup_weather_" + "0" * 10
        fake.enqueue({"tool_calls": [{"name": "$tool:1", "id": "t9", "input_json": {"city": "Oslo"}}]})
        body = good_body(current=uim("go", tools=[tool_spec("first"), tool_spec(alias)]))
        evs = post(fake, body).events()
        assert {p["name"] for t, p in evs if t == "toolUseEvent"} == {alias}
        fake.enqueue({"tool_calls": [{"name": "$tool:5", "id": "t9"}]})
        assert post(fake, body).status == 500


def test_same_bytes_as_eventstream_module():
        """The fake and fakes/eventstream.py (which writes the C unit tests' golden files) agree byte for byte."""
        try:
                from fakes import eventstream
        except ImportError:
                pytest.skip("fakes/eventstream.py is not there")
        for t, p in [("assistantResponseEvent", {"content": "Déjà vu € 日本"}),
                     ("toolUseEvent", {"input": "{\"a\":", "name": "x", "toolUseId": "t1"}),
                     ("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": 0.1})]:
                assert kiro_chat.event_frame(t, p) == eventstream.encode_event(t, p)
        assert kiro_chat.exception_frame("ThrottlingException", {"message": "m"}) == \
                eventstream.encode_exception("ThrottlingException", {"message": "m"})
        assert kiro_chat.error_frame("InternalFailure", "boom") == eventstream.encode_error("InternalFailure", "boom")
