# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's Anthropic Messages API end to end: /v1/messages (streaming and not) and
/v1/messages/count_tokens of the real daemon (as kiro-proxy), tokens from the real kiro-authd on the
private system bus, against the fake Kiro chat service (real binary event stream).

Contract: DESIGN.md §3, KIRO-PROTOCOL.md Part A, issue 4 ("Deliver" and "Tests"). The stack is
proxyd_fixture.py."""

import json
import uuid

import pytest

from fakes.kiro_chat import build_frames
from proxyd_fixture import MESSAGES_PATH, history_roles, needs_proxyd, nonce, proxy_stack, stack  # noqa: F401

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4-5-20250929"
COUNT_PATH = "/v1/messages/count_tokens"
HEADERS = {"anthropic-version": "2023-06-01"}
JPEG_B64 = ("/9j/4AAQSkZJRgABAQEASABIAAD/2wBDAP//////////////////////////////////////////////////////////////"
            "////////////////////////2wBDAf//////////////////////////////////////////////////////////////////"
            "////////////////////wAARCAABAAEDASIAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAACP/EABQQAQAAAAAAAAAAAAAAAAAA"
            "AAD/xAAUAQEAAAAAAAAAAAAAAAAAAAAA/8QAFBEBAAAAAAAAAAAAAAAAAAAAAP/aAAwDAQACEQMRAD8AKp//2Q==")
WEATHER = {"name": "get_weather", "description": "Current weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
CLOCK = {"name": "get_time", "description": "Current time in a time zone",
         "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}
THINKING_PREFIX = "<thinking_mode>enabled</thinking_mode><max_thinking_length>{}</max_thinking_length>"


def msgs(content, **kw):
        body = {"model": MODEL, "max_tokens": 1024, "messages": [{"role": "user", "content": content}]}
        body.update(kw)
        return body


def post(s, body, headers=None, **kw):
        h = dict(HEADERS)
        h.update(headers or {})
        return s.post(MESSAGES_PATH, body, h, **kw)


def stream(s, body, headers=None, **kw):
        h = dict(HEADERS)
        h.update(headers or {})
        return s.stream(MESSAGES_PATH, dict(body, stream=True), h, **kw)


def assert_anthropic_error(r, status, etype, words=()):
        """{"type": "error", "error": {"type": etype, "message": ...}} with the given status."""
        assert r.status == status, r
        e = r.json()
        assert e.get("type") == "error" and set(e) == {"type", "error"}, e
        assert e["error"]["type"] == etype, e
        assert isinstance(e["error"]["message"], str) and e["error"]["message"], e
        for w in words:
                assert w.lower() in e["error"]["message"].lower(), f"{w!r} not in {e['error']['message']!r}"
        return e["error"]


def events(s):
        """(name, data) of every event, with each event's name checked against its data's type."""
        assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream"), (s.status, s.body)
        out = []
        for e in s.events:
                assert e.json is not None, e
                assert e.json.get("type") == e.name, e
                out.append((e.name, e.json))
        return [x for x in out if x[0] != "ping"]


def text_of(evs, index=None):
        return "".join(d["delta"]["text"] for n, d in evs
                       if n == "content_block_delta" and d["delta"]["type"] == "text_delta"
                       and (index is None or d["index"] == index))


# ---- messages -------------------------------------------------------------------------------------

def test_message_non_stream(stack):
        stack.chat.enqueue({"text": ["Hel", "lo, ", "wörld"],
                            "metadata_usage": {"uncachedInputTokens": 80, "outputTokens": 9, "totalTokens": 89}})
        r = post(stack, msgs("Say hello"))
        assert r.status == 200, r
        b = r.json()
        assert b["type"] == "message" and b["role"] == "assistant" and b["id"].startswith("msg_")
        assert b["model"] == MODEL
        assert b["content"] == [{"type": "text", "text": "Hello, wörld"}]
        assert b["stop_reason"] == "end_turn" and b["stop_sequence"] is None
        assert b["usage"]["input_tokens"] == 80 and b["usage"]["output_tokens"] == 9
        req = stack.chat.last()
        assert not req.errors and req.current["content"] == "Say hello"
        assert req.current["modelId"] == "claude-sonnet-4.5"


def test_message_stream_event_sequence(stack):
        stack.chat.enqueue({"text": ["Hel", "lo"], "chunk_delay": 0.02,
                            "metadata_usage": {"uncachedInputTokens": 80, "outputTokens": 9, "totalTokens": 89}})
        s = stream(stack, msgs("Say hello"))
        assert s.complete
        evs = events(s)
        assert [n for n, _ in evs] == ["message_start", "content_block_start", "content_block_delta",
                                       "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
        start = evs[0][1]["message"]
        assert start["id"].startswith("msg_") and start["type"] == "message" and start["role"] == "assistant"
        assert start["model"] == MODEL and start["content"] == [] and start["stop_reason"] is None
        assert isinstance(start["usage"]["input_tokens"], int)
        assert evs[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        assert [d["delta"] for _, d in evs[2:4]] == [{"type": "text_delta", "text": "Hel"},
                                                     {"type": "text_delta", "text": "lo"}]
        assert all(d["index"] == 0 for _, d in evs[2:5])
        delta = evs[5][1]
        assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
        assert delta["usage"]["output_tokens"] == 9
        assert evs[6][1] == {"type": "message_stop"}


@pytest.mark.parametrize("system", ["SYSTEM-PROMPT-TEXT",
                                    [{"type": "text", "text": "SYSTEM-PROMPT"}, {"type": "text", "text": "-TEXT"}]],
                         ids=["string", "blocks"])
def test_system_string_and_blocks(stack, system):
        n = nonce()
        r = post(stack, {"model": MODEL, "max_tokens": 100, "system": system, "messages": [
                {"role": "user", "content": "first"}, {"role": "assistant", "content": "answer"},
                {"role": "user", "content": f"second {n}"}]})
        assert r.status == 200, r
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert history_roles(req) == ["user", "assistant"]
        first = req.history[0]["userInputMessage"]["content"]
        assert "SYSTEM-PROMPT" in first and "-TEXT" in first and first.endswith("first"), first
        assert first.index("SYSTEM-PROMPT") < first.index("-TEXT") < first.index("first")
        assert req.current["content"] == f"second {n}"


def test_image_block_base64(stack):
        r = post(stack, msgs([{"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                                          "data": JPEG_B64}},
                              {"type": "text", "text": "Describe it."}]))
        assert r.status == 200, r
        cur = stack.chat.last().current
        assert cur["images"] == [{"format": "jpeg", "source": {"bytes": JPEG_B64}}]
        assert cur["content"] == "Describe it."

        r = post(stack, msgs([{"type": "text", "text": "Describe it."},
                              {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]))
        err = assert_anthropic_error(r, 400, "invalid_request_error", words=["url"])
        assert "messages.0.content.1" in err["message"] or "messages[0].content[1]" in err["message"], err
        r = post(stack, msgs([{"type": "image", "source": {"type": "base64", "media_type": "image/tiff",
                                                          "data": JPEG_B64}}]))
        assert_anthropic_error(r, 400, "invalid_request_error", words=["image/tiff"])
        assert stack.chat.count() == 1


# ---- tools ----------------------------------------------------------------------------------------

def test_tool_loop(stack):
        """tool_use → tool_result (string content, block content with is_error) → answer."""
        n1, n2 = nonce(), nonce()
        stack.chat.enqueue({"match": n1, "text": "Let me look.", "tool_calls": [
                {"name": "get_weather", "id": "toolu_paris", "input_json": {"city": "Paris"}, "chunks": 3},
                {"name": "get_weather", "id": "toolu_nowhere", "input_json": {"city": "Nowhere"}}]})
        first = [{"role": "user", "content": f"Weather in Paris and Nowhere? {n1}"}]
        r = post(stack, {"model": MODEL, "max_tokens": 500, "tools": [WEATHER], "messages": first})
        assert r.status == 200, r
        b = r.json()
        assert b["stop_reason"] == "tool_use"
        assert b["content"] == [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_paris", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_nowhere", "name": "get_weather", "input": {"city": "Nowhere"}}]

        stack.chat.enqueue({"match": n2, "text": "Paris is sunny; Nowhere does not exist."})
        second = first + [
                {"role": "assistant", "content": b["content"]},
                {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_paris", "content": "sunny, 21 C"},
                        {"type": "tool_result", "tool_use_id": "toolu_nowhere", "is_error": True,
                         "content": [{"type": "text", "text": "unknown city"}]},
                        {"type": "text", "text": f"Summarise. {n2}"}]}]
        r = post(stack, {"model": MODEL, "max_tokens": 500, "tools": [WEATHER], "messages": second})
        assert r.status == 200, r
        assert r.json()["content"] == [{"type": "text", "text": "Paris is sunny; Nowhere does not exist."}]
        assert r.json()["stop_reason"] == "end_turn"
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert history_roles(req) == ["user", "assistant"]
        uses = req.history[1]["assistantResponseMessage"]["toolUses"]
        assert [(u["toolUseId"], u["input"]) for u in uses] == [("toolu_paris", {"city": "Paris"}),
                                                               ("toolu_nowhere", {"city": "Nowhere"})]
        results = {t["toolUseId"]: t for t in req.tool_results()}
        assert set(results) == {"toolu_paris", "toolu_nowhere"}
        assert results["toolu_paris"]["status"] == "success"
        assert results["toolu_nowhere"]["status"] == "error"
        assert "sunny, 21 C" in json.dumps(results["toolu_paris"]["content"])
        assert "unknown city" in json.dumps(results["toolu_nowhere"]["content"])
        assert f"Summarise. {n2}" in req.current["content"]


def test_tool_use_stream(stack):
        args = json.dumps({"city": "Paris", "days": 3})
        stack.chat.enqueue({"text": "Checking.", "tool_calls": [
                {"name": "get_weather", "id": "toolu_s1", "input_json": args, "chunks": 3}]})
        s = stream(stack, {"model": MODEL, "max_tokens": 500, "tools": [WEATHER],
                           "messages": [{"role": "user", "content": "Weather?"}]})
        evs = events(s)
        assert [n for n, _ in evs] == (["message_start", "content_block_start", "content_block_delta",
                                        "content_block_stop", "content_block_start"] + ["content_block_delta"] * 3 +
                                       ["content_block_stop", "message_delta", "message_stop"])
        assert evs[4][1] == {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_s1", "name": "get_weather", "input": {}}}
        parts = [d["delta"] for _, d in evs[5:8]]
        assert all(p["type"] == "input_json_delta" for p in parts) and all(d["index"] == 1 for _, d in evs[5:9])
        assert "".join(p["partial_json"] for p in parts) == args
        assert evs[9][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("choice,offered", [({"type": "auto"}, True), ({"type": "any"}, True),
                                            ({"type": "tool", "name": "get_time"}, True), ({"type": "none"}, False)],
                         ids=["auto", "any", "tool", "none"])
def test_tool_choice(stack, choice, offered):
        r = post(stack, msgs("What time is it in CET?", tools=[WEATHER, CLOCK], tool_choice=choice))
        assert r.status == 200, r
        ctx = stack.chat.last().current.get("userInputMessageContext") or {}
        names = [t["toolSpecification"]["name"] for t in ctx.get("tools", [])]
        assert names == (["get_weather", "get_time"] if offered else [])


def test_tool_choice_invalid(stack):
        r = post(stack, msgs("x", tools=[WEATHER], tool_choice={"type": "sometimes"}))
        assert_anthropic_error(r, 400, "invalid_request_error", words=["tool_choice"])
        assert stack.chat.count() == 0


# ---- stop sequences, session, cache_control -------------------------------------------------------

def test_stop_sequences(stack):
        sc = {"text": ["The answer is ", "42. ST", "OP here", " and more"]}
        stack.chat.enqueue(dict(sc))
        r = post(stack, msgs("Answer", stop_sequences=["NEVER-SEEN", "STOP"]))
        b = r.json()
        assert b["content"] == [{"type": "text", "text": "The answer is 42. "}]
        assert b["stop_reason"] == "stop_sequence"
        assert b["stop_sequence"] == "STOP"

        stack.chat.enqueue(dict(sc))
        s = stream(stack, msgs("Answer", stop_sequences=["NEVER-SEEN", "STOP"]))
        evs = events(s)
        assert text_of(evs) == "The answer is 42. "
        delta = [d for n, d in evs if n == "message_delta"]
        assert len(delta) == 1 and delta[0]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
        assert evs[-1][0] == "message_stop"

        # Not matched: the whole text, end_turn.
        stack.chat.enqueue(dict(sc))
        b = post(stack, msgs("Answer", stop_sequences=["NEVER-SEEN"])).json()
        assert b["content"][0]["text"] == "The answer is 42. STOP here and more"
        assert b["stop_reason"] == "end_turn" and b["stop_sequence"] is None


def test_metadata_session_becomes_conversation_id(stack):
        sid = str(uuid.uuid4())
        user_id = f"user_{'ab' * 32}_account_{uuid.uuid4()}_session_{sid}"
        for _ in range(2):
                r = post(stack, msgs("hello", metadata={"user_id": user_id}))
                assert r.status == 200, r
        ids = [q.state["conversationId"] for q in stack.chat.requests]
        assert ids == [sid, sid]
        # Without a session each request gets a fresh uuid.
        post(stack, msgs("hello"))
        post(stack, msgs("hello"))
        other = [q.state["conversationId"] for q in stack.chat.requests[2:]]
        assert other[0] != other[1] and sid not in other
        assert all(uuid.UUID(x) for x in other)


def test_cache_control_accepted_and_ignored(stack):
        cc = {"type": "ephemeral"}
        body = {"model": MODEL, "max_tokens": 100,
                "system": [{"type": "text", "text": "Be brief.", "cache_control": cc}],
                "tools": [dict(WEATHER, cache_control=cc)],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hello", "cache_control": cc}]}]}
        r = post(stack, body)
        assert r.status == 200, r
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert "cache_control" not in req.raw_body.decode() and "ephemeral" not in req.raw_body.decode()
        assert req.current["content"].endswith("hello")
        r = stack.post(COUNT_PATH, body, HEADERS)
        assert r.status == 200 and r.json()["input_tokens"] > 0


# ---- thinking -------------------------------------------------------------------------------------

def test_thinking_enabled_stream(stack):
        stack.chat.enqueue({"thinking_text": "Six sevens are forty-two.", "thinking_chunk_size": 6,
                            "text": ["The answer ", "is 42."]})
        s = stream(stack, msgs("6*7?", thinking={"type": "enabled", "budget_tokens": 2048}))
        evs = events(s)
        names = [n for n, _ in evs]
        assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
        starts = [d for n, d in evs if n == "content_block_start"]
        assert [(d["index"], d["content_block"]["type"]) for d in starts] == [(0, "thinking"), (1, "text")]
        assert starts[0]["content_block"] == {"type": "thinking", "thinking": ""}
        block0 = [d["delta"] for n, d in evs if n == "content_block_delta" and d["index"] == 0]
        thinking = "".join(x["thinking"] for x in block0 if x["type"] == "thinking_delta")
        sigs = [x["signature"] for x in block0 if x["type"] == "signature_delta"]
        assert thinking == "Six sevens are forty-two."
        assert sum(x["type"] == "thinking_delta" for x in block0) > 1
        # One signature_delta, the last delta of the thinking block, before it stops.
        assert len(sigs) == 1 and sigs[0] and block0[-1]["type"] == "signature_delta"
        i_stop0 = next(i for i, (n, d) in enumerate(evs) if n == "content_block_stop" and d["index"] == 0)
        i_start1 = next(i for i, (n, d) in enumerate(evs) if n == "content_block_start" and d["index"] == 1)
        assert i_stop0 < i_start1
        assert text_of(evs, 1) == "The answer is 42."
        assert stack.chat.last().current["content"].startswith(THINKING_PREFIX.format(2048))


def test_thinking_enabled_non_stream_and_native_reasoning(stack):
        stack.chat.enqueue({"thinking_text": ["Let me ", "think."], "text": "Done."})
        b = post(stack, msgs("Q?", thinking={"type": "enabled", "budget_tokens": 5000})).json()
        assert [c["type"] for c in b["content"]] == ["thinking", "text"]
        assert b["content"][0]["thinking"] == "Let me think."
        assert isinstance(b["content"][0]["signature"], str) and b["content"][0]["signature"]
        assert b["content"][1] == {"type": "text", "text": "Done."}
        assert stack.chat.last().current["content"].startswith(THINKING_PREFIX.format(5000))

        # Native reasoning events carry their own signature, which is passed on.
        stack.chat.enqueue({"reasoning": ["Nat", "ive."], "reasoning_signature": "sig-from-kiro", "text": "Yes."})
        b = post(stack, msgs("Q?", thinking={"type": "enabled", "budget_tokens": 5000})).json()
        assert b["content"][0] == {"type": "thinking", "thinking": "Native.", "signature": "sig-from-kiro"}
        assert b["content"][1] == {"type": "text", "text": "Yes."}


def test_thinking_history_round_trip(stack):
        n = nonce()
        stack.chat.enqueue({"thinking_text": "First I consider.", "text": "Four."})
        b = post(stack, msgs(f"2+2? {n}", thinking={"type": "enabled", "budget_tokens": 3000})).json()
        assert b["content"][0]["type"] == "thinking"
        r = post(stack, {"model": MODEL, "max_tokens": 1000, "thinking": {"type": "enabled", "budget_tokens": 3000},
                         "messages": [{"role": "user", "content": f"2+2? {n}"},
                                      {"role": "assistant", "content": b["content"]},
                                      {"role": "user", "content": "And 3+3?"}]})
        assert r.status == 200, r
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert history_roles(req) == ["user", "assistant"]
        assert req.history[1]["assistantResponseMessage"]["content"] == "<thinking>First I consider.</thinking>\n\nFour."


def test_thinking_off_no_block(stack):
        stack.chat.enqueue({"thinking_text": "pondering", "text": "Answer."})
        b = post(stack, msgs("Q?")).json()
        assert b["content"] == [{"type": "text", "text": "<thinking>pondering</thinking>\n\nAnswer."}]
        assert "thinking_mode" not in stack.chat.last().current["content"]
        stack.chat.enqueue({"thinking_text": "pondering", "text": "Answer."})
        b = post(stack, msgs("Q?", thinking={"type": "disabled"})).json()
        assert [c["type"] for c in b["content"]] == ["text"]
        stack.chat.enqueue({"thinking_text": "pondering", "thinking_chunk_size": 4, "text": "Answer."})
        evs = events(stream(stack, msgs("Q?")))
        assert [d["content_block"]["type"] for n, d in evs if n == "content_block_start"] == ["text"]
        assert not any(d["delta"]["type"] in ("thinking_delta", "signature_delta")
                       for n, d in evs if n == "content_block_delta")
        assert text_of(evs) == "<thinking>pondering</thinking>\n\nAnswer."


# ---- models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,model_id", [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-opus-4-5", "claude-opus-4.5"),
        ("claude-haiku-4-5", "claude-haiku-4.5"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4.5"),
        ("claude-sonnet-4-5[1m]", "claude-sonnet-4.5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-6[1m]", "claude-opus-4.6"),
], ids=lambda v: v.replace("[", "_").replace("]", "_"))
def test_claude_code_model_names(stack, name, model_id):
        r = post(stack, {"model": name, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
        assert r.status == 200, r
        assert r.json()["model"] == name
        assert stack.chat.last().current["modelId"] == model_id


# ---- keep-alives ----------------------------------------------------------------------------------

def test_ping_on_long_waits(proxy_stack):
        """A stream that waits for Kiro gets "ping" events (PingIntervalSec=, 15 s by default; 0.3 s here)
        and none while output flows."""
        s = proxy_stack(Proxy={"PingIntervalSec": 0.3})
        s.chat.enqueue({"text": ["first ", "second"], "chunk_delay": 1.2})
        st = stream(s, msgs("slowly"))
        assert st.complete
        names = [e.name for e in st.events]
        pings = [e for e in st.events if e.name == "ping"]
        assert pings and all(e.json == {"type": "ping"} for e in pings)
        # Every 0.3 s of silence: 2 to 5 pings in the 1.2 s between the two text deltas (the fake also
        # waits before each closing event, so more may follow the last delta), none after the end.
        deltas = [i for i, n in enumerate(names) if n == "content_block_delta"]
        assert len(deltas) == 2, names
        gap = names[deltas[0] + 1:deltas[1]]
        assert set(gap) == {"ping"} and 2 <= len(gap) <= 5, names
        assert names[-1] == "message_stop"
        # Each ping came about 0.3 s after the previous event.
        times = [e.t for e in st.events]
        intervals = [times[i] - times[i - 1] for i in range(deltas[0] + 1, deltas[1])]
        assert all(0.2 <= x <= 0.6 for x in intervals), intervals


def test_no_ping_while_output_flows(proxy_stack):
        """Output more often than PingIntervalSec=: no ping at all, however long the stream lasts."""
        s = proxy_stack(Proxy={"PingIntervalSec": 0.3})
        texts = ["w%d " % i for i in range(12)]
        s.chat.enqueue({"text": texts, "chunk_delay": 0.1})
        st = stream(s, msgs("steady"))
        assert st.complete
        names = [e.name for e in st.events]
        assert names.count("content_block_delta") == len(texts), names
        first, last = names.index("content_block_delta"), len(names) - 1 - names[::-1].index("content_block_delta")
        assert "ping" not in names[first:last], names
        assert st.events[last].t - st.events[first].t > 0.9


# ---- failures -------------------------------------------------------------------------------------

def test_interrupted_stream_is_an_error_event(stack):
        texts = ["one ", "two ", "three "]
        frames = build_frames({"text": texts})
        stack.chat.enqueue({"text": texts, "cut_after_bytes": len(frames[0]) + len(frames[1]) + 9})
        s = stream(stack, msgs("count"))
        evs = events(s)
        names = [n for n, _ in evs]
        assert names[0] == "message_start" and names[-1] == "error", names
        assert "message_stop" not in names and "message_delta" not in names
        assert text_of(evs) == "one two "
        err = evs[-1][1]
        assert err["error"]["type"] in ("api_error", "overloaded_error") and err["error"]["message"], err
        assert stack.chat.count() == 1


def _too_large_body():
        return msgs("x" * 300_000)


ERROR_CASES = {
        "invalid_request": (lambda s: post(s, {"model": MODEL, "messages": [{"role": "user", "content": "x"}]},
                                           {"x-api-key": "k1"}), 400, "invalid_request_error", ["max_tokens"]),
        "invalid_request_json": (lambda s: s.request("POST", MESSAGES_PATH, b'{"model": ', dict(HEADERS, **{
                "x-api-key": "k1", "content-type": "application/json"})), 400, "invalid_request_error", ["json"]),
        "authentication": (lambda s: post(s, msgs("x")), 401, "authentication_error", []),
        "authentication_wrong": (lambda s: post(s, msgs("x"), {"x-api-key": "k2"}), 401, "authentication_error", []),
        "not_found_model": (lambda s: post(s, dict(msgs("x"), model="claude-nonexistent-9"), {"x-api-key": "k1"}),
                            404, "not_found_error", ["claude-nonexistent-9"]),
        "not_found_route": (lambda s: s.post("/v1/messages/nothing", msgs("x"), dict(HEADERS, **{"x-api-key": "k1"})),
                            404, "not_found_error", []),
        "request_too_large": (lambda s: post(s, _too_large_body(), {"x-api-key": "k1"}), 413, "request_too_large", []),
        "rate_limit": (lambda s: (s.chat.enqueue({"status": 429, "repeat": 10}),
                                  post(s, msgs("x"), {"x-api-key": "k1"}))[1], 429, "rate_limit_error", []),
        "api_error": (lambda s: (s.chat.enqueue({"status": 500, "message": "Internal failure", "repeat": 10}),
                                 post(s, msgs("x"), {"x-api-key": "k1"}))[1], (500, 502), "api_error", []),
        "overloaded_capacity": (lambda s: (s.chat.enqueue({"status": 503, "repeat": 10}),
                                           post(s, msgs("x"), {"x-api-key": "k1"}))[1], 529, "overloaded_error", []),
        "overloaded_high_load": (lambda s: (s.chat.enqueue({"status": 500, "repeat": 10}),
                                            post(s, msgs("x"), {"x-api-key": "k1"}))[1], 529, "overloaded_error", []),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_types(proxy_stack, case):
        fn, status, etype, words = ERROR_CASES[case]
        s = proxy_stack(api_keys=["k1"], Proxy={"MaxBodyBytes": 200_000}, Kiro={"MaxAttempts": 2})
        r = fn(s)
        st = r.status if isinstance(status, tuple) and r.status in status else status
        assert_anthropic_error(r, st, etype, words)
        if st == 429:
                assert int(r.headers["retry-after"]) >= 1
        if case in ("rate_limit", "api_error", "overloaded_capacity", "overloaded_high_load"):
                assert s.chat.count() == 2, "retried up to MaxAttempts"
        else:
                assert s.chat.count() == 0


def test_payload_guard_is_request_too_large(proxy_stack):
        s = proxy_stack(Kiro={"MaxUpstreamPayloadBytes": 50_000})
        r = post(s, msgs("y" * 60_000))
        err = assert_anthropic_error(r, 413, "request_too_large", words=["50000"])
        assert s.chat.count() == 0
        assert any(ch.isdigit() for ch in err["message"].replace("50000", ""))


# ---- count_tokens, headers ------------------------------------------------------------------------

def test_count_tokens_agrees_with_usage(stack):
        body = {"model": MODEL, "max_tokens": 300, "system": "You are a careful assistant. " * 20,
                "tools": [WEATHER, CLOCK],
                "messages": [{"role": "user", "content": "What is the weather like in Paris today? " * 10},
                             {"role": "assistant", "content": [
                                     {"type": "text", "text": "Let me check."},
                                     {"type": "tool_use", "id": "toolu_c1", "name": "get_weather",
                                      "input": {"city": "Paris"}}]},
                             {"role": "user", "content": [
                                     {"type": "tool_result", "tool_use_id": "toolu_c1", "content": "sunny"}]}]}
        r = stack.post(COUNT_PATH, body, HEADERS)
        assert r.status == 200, r
        counted = r.json()
        assert set(counted) == {"input_tokens"} and counted["input_tokens"] > 100
        # count_tokens needs no max_tokens.
        r2 = stack.post(COUNT_PATH, {k: v for k, v in body.items() if k != "max_tokens"}, HEADERS)
        assert r2.json() == counted

        stack.chat.enqueue({"text": "Sunny."})
        b = post(stack, body).json()
        assert b["usage"]["input_tokens"] == counted["input_tokens"]
        stack.chat.enqueue({"text": "Sunny."})
        evs = events(stream(stack, body))
        assert evs[0][1]["message"]["usage"]["input_tokens"] == counted["input_tokens"]
        assert [d for n, d in evs if n == "message_delta"][0]["usage"]["input_tokens"] == counted["input_tokens"]
        assert stack.chat.count() == 2


def test_both_key_headers_and_anthropic_version(proxy_stack):
        s = proxy_stack(api_keys=["sk-ant-local"])
        for h in ({"x-api-key": "sk-ant-local"}, {"Authorization": "Bearer sk-ant-local"},
                  {"x-api-key": "sk-ant-local", "anthropic-version": "2023-06-01",
                   "anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14"},
                  {"x-api-key": "sk-ant-local", "anthropic-version": "2099-01-01"}):
                r = s.post(MESSAGES_PATH, msgs("hi"), h)
                assert r.status == 200, (h, r)
                r = s.post(COUNT_PATH, msgs("hi"), h)
                assert r.status == 200 and r.json()["input_tokens"] > 0, (h, r)
        r = s.post(MESSAGES_PATH, msgs("hi"), {"Authorization": "Bearer wrong"})
        assert_anthropic_error(r, 401, "authentication_error")
        r = s.post(COUNT_PATH, msgs("hi"))
        assert_anthropic_error(r, 401, "authentication_error")
        assert s.chat.count() == 4


def test_no_ping_before_the_first_token(proxy_stack):
        """A long wait for Kiro's first byte: nothing is sent before the answer commits (no message_start, no
        ping), so the stream's first event is message_start, right before the first content."""
        s = proxy_stack(Proxy={"PingIntervalSec": 0.3})
        s.chat.enqueue({"text": ["late answer"], "first_byte_delay": 1.5})
        st = stream(s, msgs("patience"))
        assert st.complete
        names = [e.name for e in st.events]
        assert names[0] == "message_start", names
        first_delta = names.index("content_block_delta")
        assert "ping" not in names[:first_delta], names
        assert st.events[first_delta].t - st.events[0].t < 0.25, [(e.name, e.t) for e in st.events]
        assert names[-1] == "message_stop"


def test_late_failure_keeps_its_http_status(proxy_stack):
        """Kiro answers 429 only after several ping intervals: the client still gets an HTTP 429 with a
        Retry-After (which SDKs retry), not an error event inside a 200 stream."""
        s = proxy_stack(Proxy={"PingIntervalSec": 0.3}, Kiro={"MaxAttempts": 1})
        s.chat.enqueue({"status": 429, "message": "Too many requests", "retry_after": 7, "first_byte_delay": 1.2})
        r = post(s, msgs("patience", stream=True))
        assert_anthropic_error(r, 429, "rate_limit_error")
        assert r.headers.get("retry-after") == "7", r.headers
