# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's OpenAI API end to end: /v1/chat/completions, /v1/models and /healthz of the real daemon
(as kiro-proxy) with tokens from the real kiro-authd (as kiro-auth) on the private system bus, against
the fake Kiro chat service, which sends the real binary event stream and records what it received.

Contract: DESIGN.md §3, KIRO-PROTOCOL.md Part A, issue 3 ("Deliver" and "Tests"). The stack is
proxyd_fixture.py."""

import base64
import json
import time

import pytest

from fakes.kiro_chat import build_frames
from proxyd_fixture import (CHAT_PATH, history_roles, needs_proxyd, nonce, proxy_stack, stack,  # noqa: F401
                            user_text)

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
WEATHER = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CLOCK = {"type": "function", "function": {
        "name": "get_time", "description": "Current time in a time zone",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}}}


def chat(content, **kw):
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        body.update(kw)
        return body


def assert_openai_error(r, status, *, type_=None, param=None, words=()):
        """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
        assert r.status == status, r
        assert r.headers.get("content-type", "").startswith("application/json"), r.headers
        e = r.json()
        assert set(e) == {"error"}, e
        err = e["error"]
        assert {"message", "type", "param", "code"} <= set(err), err
        assert isinstance(err["message"], str) and err["message"], err
        if type_:
                assert err["type"] == type_, err
        if param is not None:
                assert err["param"] == param, err
        low = err["message"].lower()
        for w in words:
                assert w.lower() in low, f"{w!r} not in {err['message']!r}"
        return err


def chunks(s):
        """The chat.completion.chunk objects of a stream (error events left out), checked for a common id
        and shape."""
        out = [d for d in s.data() if "error" not in d]
        assert out, s.raw
        ids = {c["id"] for c in out}
        assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-"), ids
        for c in out:
                assert c["object"] == "chat.completion.chunk" and c["model"] == MODEL, c
        return out


def deltas(s, key):
        return [c["choices"][0]["delta"][key] for c in chunks(s)
                if c["choices"] and key in c["choices"][0]["delta"]]


def finish_reasons(s):
        return [c["choices"][0]["finish_reason"] for c in chunks(s) if c["choices"]]


# ---- routes ---------------------------------------------------------------------------------------

def test_healthz_and_unknown_route(stack):
        r = stack.get("/healthz")
        assert r.status == 200 and r.json() == {"status": "ok"}
        r = stack.get("/v1/nothing-here")
        assert_openai_error(r, 404, words=["/v1/nothing-here"])
        r = stack.post("/v2/chat/completions", chat("hi"))
        assert_openai_error(r, 404)
        assert stack.chat.count() == 0


def test_models_alias_table(stack):
        r = stack.get("/v1/models")
        assert r.status == 200, r
        body = r.json()
        assert body["object"] == "list"
        models = {m["id"]: m for m in body["data"]}
        assert len(models) == len(body["data"]), "duplicate model ids"
        for m in body["data"]:
                assert m["object"] == "model" and isinstance(m["created"], int) and m["owned_by"], m
        # Context windows of KIRO-PROTOCOL B §5.1.
        assert models["claude-sonnet-4.5"]["context_window"] == 200000
        assert models["claude-haiku-4.5"]["context_window"] == 200000
        assert models["claude-sonnet-4.6"]["context_window"] == 1000000
        assert models["claude-opus-4.7"]["max_output_tokens"] == 128000
        assert models["deepseek-3.2"]["context_window"] == 163840
        # -thinking variants for the Claude models, not for the others.
        for base in ("claude-sonnet-4.5", "claude-opus-4.5", "claude-haiku-4.5"):
                t = models[f"{base}-thinking"]
                assert t["context_window"] == models[base]["context_window"]
        assert "deepseek-3.2-thinking" not in models


def test_unknown_model_is_404(stack):
        r = stack.post(CHAT_PATH, {"model": "gpt-no-such-model", "messages": [{"role": "user", "content": "x"}]})
        err = assert_openai_error(r, 404, param="model", words=["gpt-no-such-model"])
        assert err["code"] == "model_not_found"
        assert stack.chat.count() == 0


# ---- text -----------------------------------------------------------------------------------------

def test_text_non_stream_with_usage(stack):
        stack.chat.enqueue({"text": ["Hel", "lo, ", "wörld"],
                            "metadata_usage": {"uncachedInputTokens": 321, "outputTokens": 17, "totalTokens": 338}})
        r = stack.post(CHAT_PATH, chat("Say hello"))
        assert r.status == 200, r
        b = r.json()
        assert b["object"] == "chat.completion" and b["id"].startswith("chatcmpl-") and b["model"] == MODEL
        assert len(b["choices"]) == 1
        ch = b["choices"][0]
        assert ch["index"] == 0 and ch["finish_reason"] == "stop"
        assert ch["message"]["role"] == "assistant" and ch["message"]["content"] == "Hello, wörld"
        assert "tool_calls" not in ch["message"] and "reasoning_content" not in ch["message"]
        # Kiro's own token counts win over the estimate.
        assert b["usage"] == {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}
        req = stack.chat.last()
        assert req.outcome == "stream" and not req.errors, req.errors
        assert user_text(req) == "Say hello" and req.current["modelId"] == MODEL


def test_usage_estimated_without_metadata(stack):
        stack.chat.enqueue({"text": "word " * 200})
        r = stack.post(CHAT_PATH, chat("x " * 400))
        u = r.json()["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        # Estimates, but of the right size: 400 words in, 200 out.
        assert 100 <= u["prompt_tokens"] <= 1000, u
        assert 50 <= u["completion_tokens"] <= 500, u


def test_text_stream(stack):
        stack.chat.enqueue({"text": ["Hel", "lo, ", "wörld"], "chunk_delay": 0.05})
        s = stack.stream(CHAT_PATH, chat("Say hello", stream=True))
        assert s.status == 200 and s.headers["content-type"].startswith("text/event-stream"), s.body
        assert s.complete
        cs = chunks(s)
        # The first chunk announces the role, then one content delta per Kiro event, in order.
        assert cs[0]["choices"][0]["delta"].get("role") == "assistant"
        assert "".join(deltas(s, "content")) == "Hello, wörld"
        assert [d for d in deltas(s, "content") if d] == ["Hel", "lo, ", "wörld"]
        # One finish_reason, on the last chunk; then [DONE], last. No usage unless asked for.
        assert finish_reasons(s)[-1] == "stop" and finish_reasons(s)[:-1] == [None] * (len(finish_reasons(s)) - 1)
        assert s.events[-1].data == "[DONE]" and sum(e.data == "[DONE]" for e in s.events) == 1
        assert all("usage" not in c for c in cs)


def test_stream_include_usage(stack):
        stack.chat.enqueue({"text": ["a", "b"],
                            "metadata_usage": {"uncachedInputTokens": 50, "outputTokens": 4, "totalTokens": 54,
                                               "cacheReadInputTokens": 10}})
        s = stack.stream(CHAT_PATH, chat("count", stream=True, stream_options={"include_usage": True}))
        cs = chunks(s)
        usage = [c for c in cs if "usage" in c]
        assert len(usage) == 1, cs
        # The usage chunk comes after the finish_reason chunk, with empty choices, before [DONE].
        assert cs[-1] is usage[0] and usage[0]["choices"] == []
        assert cs[-2]["choices"][0]["finish_reason"] == "stop"
        assert usage[0]["usage"] == {"prompt_tokens": 60, "completion_tokens": 4, "total_tokens": 64}
        assert s.events[-1].data == "[DONE]"


def test_many_text_parts_joined_in_order(proxy_stack):
        """A system message of 150 000 text parts is joined in order, promptly: the parts used to be
        joined with strcat(), quadratic in their number, which held the event loop for minutes."""
        # MaxContentParts= also sets how many JSON objects a body may hold before it is parsed.
        s = proxy_stack(Kiro={"MaxUpstreamPayloadBytes": 8000000}, Proxy={"MaxContentParts": 200000})
        n = nonce()
        parts = [{"type": "text", "text": f"p{i}"} for i in range(150000)]
        s.chat.enqueue({"match": n, "text": "ok"})
        t0 = time.monotonic()
        r = s.post(CHAT_PATH, {"model": MODEL, "messages": [
                {"role": "system", "content": parts},
                {"role": "user", "content": f"go {n}"},
        ]})
        assert r.status == 200, r
        assert time.monotonic() - t0 < 20
        text = user_text(s.chat.last())
        assert text.startswith("p0\np1\np2\n"), text[:40]
        assert "\np149999" in text


def test_multi_turn_system_and_developer(stack):
        n = nonce()
        stack.chat.enqueue({"match": n, "text": "fine"})
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [
                {"role": "system", "content": "SYS-ONE"},
                {"role": "developer", "content": [{"type": "text", "text": "DEV-TWO"}]},
                {"role": "user", "content": "first question"},
                {"role": "user", "content": "more of it"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": f"second question {n}"},
        ]})
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "fine"
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert user_text(req) == f"second question {n}"
        # History: user, assistant — strictly alternating; the system and developer texts go in front of
        # the first user message, in order; the two user turns were merged.
        assert history_roles(req) == ["user", "assistant"]
        first = req.history[0]["userInputMessage"]["content"]
        assert first.startswith("SYS-ONE"), first
        assert first.index("SYS-ONE") < first.index("DEV-TWO") < first.index("first question") < first.index("more of it")
        assert req.history[1]["assistantResponseMessage"]["content"] == "first answer"
        # The system text is not repeated in the current message.
        assert "SYS-ONE" not in user_text(req)


def test_image_data_url_reaches_kiro(stack):
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1x1}"}}]}]})
        assert r.status == 200, r
        cur = stack.chat.last().current
        assert cur["images"] == [{"format": "png", "source": {"bytes": PNG_1x1}}]
        assert "What is in this picture?" in cur["content"]
        assert base64.b64decode(cur["images"][0]["source"]["bytes"]).startswith(b"\x89PNG")


def test_image_http_url_is_400_naming_the_field(stack):
        r = stack.post(CHAT_PATH, {"model": MODEL, "messages": [
                {"role": "system", "content": "You describe pictures."},
                {"role": "user", "content": [
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
        err = assert_openai_error(r, 400, type_="invalid_request_error", words=["url"])
        # messages[1] in the client's numbering (the system message is messages[0]).
        assert "messages[1].content[1]" in err["message"] or err["param"] == "messages[1].content[1].image_url.url", err
        assert stack.chat.count() == 0


# ---- tools ----------------------------------------------------------------------------------------

def test_tools_with_tool_choice(stack):
        stack.chat.enqueue({"tool_calls": [{"name": "get_weather", "id": "tooluse_w1",
                                            "input_json": {"city": "Paris"}}]})
        r = stack.post(CHAT_PATH, chat("Weather in Paris?", tools=[WEATHER, CLOCK],
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}}))
        assert r.status == 200, r
        ch = r.json()["choices"][0]
        assert ch["finish_reason"] == "tool_calls"
        msg = ch["message"]
        assert msg["content"] is None
        assert msg["tool_calls"] == [{"id": "tooluse_w1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]
        req = stack.chat.last()
        assert not req.errors, req.errors
        specs = [t["toolSpecification"] for t in req.current["userInputMessageContext"]["tools"]]
        assert [s["name"] for s in specs] == ["get_weather", "get_time"]
        assert specs[0]["description"] == "Current weather for a city"
        assert specs[0]["inputSchema"]["json"]["properties"] == {"city": {"type": "string"}}

        # tool_choice "none": the tools are not offered to Kiro at all.
        stack.chat.enqueue({"text": "no tools"})
        r = stack.post(CHAT_PATH, chat("Weather in Paris?", tools=[WEATHER, CLOCK], tool_choice="none"))
        assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == "no tools"
        assert "tools" not in (stack.chat.last().current.get("userInputMessageContext") or {})

        # A bad tool_choice is a 400 naming it.
        r = stack.post(CHAT_PATH, chat("x", tools=[WEATHER], tool_choice="sometimes"))
        assert_openai_error(r, 400, param="tool_choice")


def test_streamed_tool_call_arguments_arrive_as_they_come(stack):
        args = json.dumps({"city": "Paris", "unit": "celsius", "days": 3})
        stack.chat.enqueue({"text": "Let me check.", "chunk_delay": 0.15,
                            "tool_calls": [{"name": "get_weather", "id": "tooluse_s1", "input_json": args,
                                            "chunks": 4}]})
        s = stack.stream(CHAT_PATH, chat("Weather?", stream=True, tools=[WEATHER]))
        assert s.complete
        cs = chunks(s)
        calls = [(i, c["choices"][0]["delta"]["tool_calls"]) for i, c in enumerate(cs)
                 if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
        # The first tool chunk names the call; then the arguments, each Kiro fragment its own chunk.
        first_i, first = calls[0]
        assert first == [{"index": 0, "id": "tooluse_s1", "type": "function",
                          "function": {"name": "get_weather", "arguments": ""}}]
        frags = [tc[0]["function"]["arguments"] for _, tc in calls[1:]]
        assert all(tc[0]["index"] == 0 and "id" not in tc[0] for _, tc in calls[1:])
        assert len(frags) == 4 and all(frags), frags
        assert "".join(frags) == args
        # Order: text, then the call, its fragments, then the finish_reason.
        text_i = next(i for i, c in enumerate(cs) if c["choices"] and c["choices"][0]["delta"].get("content"))
        finish_i = next(i for i, c in enumerate(cs) if c["choices"] and c["choices"][0]["finish_reason"])
        assert text_i < first_i < calls[-1][0] < finish_i
        assert cs[finish_i]["choices"][0]["finish_reason"] == "tool_calls"
        # They were relayed as they came (0.15 s apart upstream), not gathered up until the call ended.
        data_events = [e for e in s.events if e.json is not None]
        t_first_frag = data_events[calls[1][0]].t
        t_finish = data_events[finish_i].t
        assert t_finish - t_first_frag >= 0.3, (t_first_frag, t_finish)
        assert s.events[-1].data == "[DONE]"


def test_parallel_tool_calls(stack):
        sc = {"tool_calls": [{"name": "get_weather", "id": "tooluse_p0", "input_json": {"city": "Oslo"}, "chunks": 2},
                             {"name": "get_time", "id": "tooluse_p1", "input_json": {"tz": "CET"}, "chunks": 2}]}
        stack.chat.enqueue(dict(sc))
        s = stack.stream(CHAT_PATH, chat("Weather and time?", stream=True, tools=[WEATHER, CLOCK]))
        tcs = [tc for c in chunks(s) if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
        starts = [tc for tc in tcs if "id" in tc]
        assert [(t["index"], t["id"], t["function"]["name"]) for t in starts] == \
                [(0, "tooluse_p0", "get_weather"), (1, "tooluse_p1", "get_time")]
        args = {0: "", 1: ""}
        for tc in tcs:
                args[tc["index"]] += tc["function"].get("arguments", "")
        assert json.loads(args[0]) == {"city": "Oslo"} and json.loads(args[1]) == {"tz": "CET"}
        assert finish_reasons(s)[-1] == "tool_calls"

        stack.chat.enqueue(dict(sc))
        r = stack.post(CHAT_PATH, chat("Weather and time?", tools=[WEATHER, CLOCK]))
        calls = r.json()["choices"][0]["message"]["tool_calls"]
        assert [(c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == \
                [("tooluse_p0", "get_weather", {"city": "Oslo"}), ("tooluse_p1", "get_time", {"tz": "CET"})]
        assert r.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_result_round_trip(stack):
        n = nonce()
        stack.chat.enqueue({"match": n, "text": "It is sunny in Paris."})
        r = stack.post(CHAT_PATH, {"model": MODEL, "tools": [WEATHER], "messages": [
                {"role": "user", "content": f"Weather in Paris? {n}"},
                {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "call_rt1", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_rt1", "content": "sunny, 21 C"}]})
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "It is sunny in Paris."
        req = stack.chat.last()
        assert not req.errors, req.errors
        assert history_roles(req) == ["user", "assistant"]
        uses = req.history[1]["assistantResponseMessage"]["toolUses"]
        assert uses == [{"toolUseId": "call_rt1", "name": "get_weather", "input": {"city": "Paris"}}]
        results = req.tool_results()
        assert len(results) == 1 and results[0]["toolUseId"] == "call_rt1" and results[0]["status"] == "success"
        assert "sunny, 21 C" in json.dumps(results[0]["content"])


# ---- reasoning ------------------------------------------------------------------------------------

def test_reasoning_effort_non_stream(stack):
        stack.chat.enqueue({"thinking_text": ["Let me ", "think."], "text": "The answer is 42."})
        r = stack.post(CHAT_PATH, chat("What is six times seven?", reasoning_effort="high"))
        assert r.status == 200, r
        msg = r.json()["choices"][0]["message"]
        assert msg["reasoning_content"] == "Let me think."
        assert msg["content"] == "The answer is 42."
        # A.5: the thinking prefix with the effort's budget, at the start of the system text.
        first = stack.chat.last().current["content"]
        assert first.startswith("<thinking_mode>enabled</thinking_mode><max_thinking_length>32000</max_thinking_length>")
        assert first.endswith("What is six times seven?")


def test_thinking_model_stream(stack):
        # Tags split across events, as the service may send them.
        stack.chat.enqueue({"thinking_text": "Six sevens are forty-two.", "thinking_chunk_size": 5,
                            "text": ["The answer ", "is 42."]})
        s = stack.stream(CHAT_PATH, {"model": "claude-sonnet-4.5-thinking", "stream": True,
                                     "messages": [{"role": "user", "content": "6*7?"}]})
        cs = s.data()
        assert all(c["model"] == "claude-sonnet-4.5-thinking" for c in cs)
        kinds = [k for c in cs if c["choices"] for k in c["choices"][0]["delta"]
                 if k in ("reasoning_content", "content") and c["choices"][0]["delta"][k]]
        reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in cs if c["choices"])
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in cs if c["choices"])
        assert reasoning == "Six sevens are forty-two."
        assert content == "The answer is 42."
        # All reasoning before any content, and streamed in more than one piece.
        assert kinds.index("content") > max(i for i, k in enumerate(kinds) if k == "reasoning_content")
        assert kinds.count("reasoning_content") > 1
        req = stack.chat.last()
        assert req.current["modelId"] == "claude-sonnet-4.5"
        assert req.current["content"].startswith(
                "<thinking_mode>enabled</thinking_mode><max_thinking_length>16000</max_thinking_length>")


def test_thinking_text_untouched_without_reasoning(stack):
        stack.chat.enqueue({"thinking_text": ["Let me ", "think."], "text": "Answer."})
        r = stack.post(CHAT_PATH, chat("Question?"))
        msg = r.json()["choices"][0]["message"]
        assert msg["content"] == "<thinking>Let me think.</thinking>\n\nAnswer."
        assert "reasoning_content" not in msg
        assert "thinking_mode" not in stack.chat.last().current["content"]

        stack.chat.enqueue({"thinking_text": "hmm", "thinking_chunk_size": 3, "text": "Done."})
        s = stack.stream(CHAT_PATH, chat("Question?", stream=True))
        assert "".join(deltas(s, "content")) == "<thinking>hmm</thinking>\n\nDone."
        assert deltas(s, "reasoning_content") == []


# ---- finish reasons -------------------------------------------------------------------------------

def test_finish_reason_length(stack):
        """ContentLengthExceededException after some text: the output hit its limit. The stream layer
        makes it a normal end with stop reason max_tokens → finish_reason "length"."""
        sc = {"text": ["partial ", "answer"],
              "exception": {"type": "ContentLengthExceededException", "message": "Response too long"}}
        stack.chat.enqueue(dict(sc))
        s = stack.stream(CHAT_PATH, chat("Write a lot", stream=True))
        assert s.complete
        assert "".join(deltas(s, "content")) == "partial answer"
        assert finish_reasons(s)[-1] == "length"
        assert s.events[-1].data == "[DONE]"
        assert not any("error" in c for c in s.data())

        stack.chat.enqueue(dict(sc))
        r = stack.post(CHAT_PATH, chat("Write a lot"))
        ch = r.json()["choices"][0]
        assert ch["finish_reason"] == "length" and ch["message"]["content"] == "partial answer"
        assert stack.chat.count() == 2, "a length stop is not retried"


# ---- upstream failures and retries ----------------------------------------------------------------

def test_403_refresh_then_200(stack):
        """The service refuses the access token (403 bearer token invalid): kiro-proxyd reports it,
        kiro-authd refreshes once at the auth service, and the retry carries the new token."""
        old = stack.expire_token()
        stack.chat.enqueue({"text": "after refresh"})
        r = stack.post(CHAT_PATH, chat("hello"))
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "after refresh"
        assert stack.fake_auth.count(lineage=stack.lineage, outcome="rotated") == 1
        assert stack.fake_auth.count() == 1
        new = stack.access_token()
        assert new != old
        reqs = stack.chat.requests
        assert [(q.token, q.status) for q in reqs] == [(old, 403), (new, 200)]
        assert reqs[1].headers["amz-sdk-request"] == "attempt=2; max=3"
        # The next request goes straight out with the new token: no second refresh.
        r = stack.post(CHAT_PATH, chat("again"))
        assert r.status == 200 and stack.chat.last().token == new
        assert stack.fake_auth.count() == 1


def test_403_persisting_is_not_retried_forever(proxy_stack):
        s = proxy_stack(Kiro={"MaxAttempts": 4})
        s.chat.enqueue({"status": 403, "repeat": 10})
        r = s.post(CHAT_PATH, chat("hello"))
        # Not the client's fault (its key was fine): a server-side error that says what to look at.
        assert r.status in (502, 503), r
        assert_openai_error(r, r.status, words=["token"])
        # One refresh and one retry, not four attempts.
        assert s.chat.count() == 2
        assert s.fake_auth.count() == 1


def test_429_twice_then_200(stack):
        stack.chat.enqueue({"status": 429, "repeat": 2}, {"text": "finally"})
        t0 = time.monotonic()
        r = stack.post(CHAT_PATH, chat("hello"))
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "finally"
        assert [q.status for q in stack.chat.requests] == [429, 429, 200]
        assert [q.headers["amz-sdk-request"] for q in stack.chat.requests] == \
                ["attempt=1; max=3", "attempt=2; max=3", "attempt=3; max=3"]
        assert time.monotonic() - t0 < 5


def test_429_always_is_429_with_retry_after(proxy_stack):
        s = proxy_stack(Kiro={"MaxAttempts": 2})
        s.chat.enqueue({"status": 429, "repeat": 10})
        r = s.post(CHAT_PATH, chat("hello"))
        assert_openai_error(r, 429, type_="rate_limit_error")
        assert int(r.headers["retry-after"]) >= 1
        assert s.chat.count() == 2

        s.chat.reset()
        s.chat.enqueue({"status": 429, "retry_after": 1, "repeat": 10})
        r = s.post(CHAT_PATH, chat("hello"))
        assert r.status == 429 and r.headers["retry-after"] == "1", r.headers


def test_5xx_on_first_endpoint_then_second(proxy_stack):
        s = proxy_stack(n_endpoints=2)
        first, second = s.chat, s.extra_chats[0]
        first.enqueue({"status": 500, "message": "Internal failure", "repeat": 10})
        second.enqueue({"text": "from the second endpoint"})
        r = s.post(CHAT_PATH, chat("hello"))
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "from the second endpoint"
        assert first.count() == 1 and first.requests[0].status == 500
        assert second.count() == 1 and second.requests[0].headers["amz-sdk-request"] == "attempt=2; max=3"


def test_first_token_timeout_is_retried(proxy_stack):
        s = proxy_stack(Proxy={"FirstTokenTimeoutSec": 1})
        s.chat.enqueue({"first_byte_delay": 3, "text": "too late"}, {"text": "on time"})
        t0 = time.monotonic()
        r = s.post(CHAT_PATH, chat("hello"))
        took = time.monotonic() - t0
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "on time"
        assert s.chat.count() == 2
        assert 0.9 <= took < 2.9, took


def test_first_token_timeout_every_attempt_is_504(proxy_stack):
        s = proxy_stack(Proxy={"FirstTokenTimeoutSec": 0.5}, Kiro={"MaxAttempts": 2})
        s.chat.enqueue({"first_frame_delay": 3, "text": "too late", "repeat": 5})
        r = s.post(CHAT_PATH, chat("hello"))
        assert_openai_error(r, 504)
        assert s.chat.count() == 2


def _cut_inside_third_frame(texts):
        frames = build_frames({"text": texts})
        return len(frames[0]) + len(frames[1]) + 7


def test_stream_cut_midway_ends_with_error_event(stack):
        texts = ["one ", "two ", "three "]
        stack.chat.enqueue({"text": texts, "cut_after_bytes": _cut_inside_third_frame(texts)})
        s = stack.stream(CHAT_PATH, chat("count", stream=True))
        assert s.status == 200
        assert "".join(deltas(s, "content")) == "one two "
        # The last event is an error; there is no finish_reason and no [DONE].
        last = s.events[-1]
        assert last.json and "error" in last.json and last.json["error"]["message"], s.raw
        assert not s.done, s.raw
        assert all(f is None for f in finish_reasons(s)), s.raw
        assert stack.chat.count() == 1, "nothing is retried after the first byte"


def test_cut_midway_non_stream_is_an_error(stack):
        texts = ["one ", "two ", "three "]
        stack.chat.enqueue({"text": texts, "cut_after_bytes": _cut_inside_third_frame(texts)})
        r = stack.post(CHAT_PATH, chat("count"))
        assert_openai_error(r, 502, type_="api_error")


# ---- bad requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b'{"model": "claude-sonnet-4.5", "messages": [', b"not json at all", b"",
                                  b'{"model": "claude-sonnet-4.5"} trailing', b"[1, 2]"],
                         ids=["truncated", "text", "empty", "trailing", "array"])
def test_malformed_json_is_400(stack, body):
        r = stack.request("POST", CHAT_PATH, body, {"Content-Type": "application/json"})
        assert_openai_error(r, 400, type_="invalid_request_error")
        assert stack.chat.count() == 0


WRONG_TYPES = [
        ({"messages": {"role": "user", "content": "x"}}, "messages"),
        ({"messages": "hello"}, "messages"),
        ({"model": 42}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
        ({"messages": [{"content": "no role"}]}, "messages[0]"),
        ({"tools": {"type": "function"}}, "tools"),
]


@pytest.mark.parametrize("patch,field", WRONG_TYPES, ids=[f"case{i}" for i in range(len(WRONG_TYPES))])
def test_wrong_types_are_400_naming_the_field(stack, patch, field):
        body = chat("hello")
        body.update(patch)
        r = stack.post(CHAT_PATH, body)
        err = assert_openai_error(r, 400, type_="invalid_request_error")
        assert err["param"] == field, err
        assert field.split("[")[0] in err["message"], err
        assert stack.chat.count() == 0


# ---- client keys, unix socket ---------------------------------------------------------------------

def test_api_keys(proxy_stack):
        s = proxy_stack(api_keys=["sk-client-one", "sk-client-two"])
        body = chat("hello")
        r = s.post(CHAT_PATH, body)
        assert_openai_error(r, 401)
        r = s.post(CHAT_PATH, body, {"Authorization": "Bearer sk-client-wrong"})
        assert_openai_error(r, 401)
        r = s.post(CHAT_PATH, body, {"x-api-key": "sk-client-one-but-longer"})
        assert_openai_error(r, 401)
        r = s.get("/v1/models")
        assert_openai_error(r, 401)
        assert s.chat.count() == 0
        assert s.post(CHAT_PATH, body, {"Authorization": "Bearer sk-client-one"}).status == 200
        assert s.post(CHAT_PATH, body, {"x-api-key": "sk-client-two"}).status == 200
        assert s.get("/v1/models", {"Authorization": "Bearer sk-client-two"}).status == 200
        assert s.chat.count() == 2
        r = s.get("/healthz")
        assert r.status == 200 and r.json() == {"status": "ok"}
        # The client key never reaches Kiro.
        assert all("sk-client" not in json.dumps(q.headers) for q in s.chat.requests)


def test_unix_socket(stack):
        r = stack.get("/healthz", unix=True)
        assert r.status == 200 and r.json() == {"status": "ok"}
        stack.chat.enqueue({"text": ["over ", "unix"]})
        r = stack.post(CHAT_PATH, chat("hello"), unix=True)
        assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == "over unix"
        stack.chat.enqueue({"text": ["streamed ", "over unix"]})
        s = stack.stream(CHAT_PATH, chat("hello", stream=True), unix=True)
        assert "".join(deltas(s, "content")) == "streamed over unix" and s.done
