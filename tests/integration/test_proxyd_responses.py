# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's OpenAI Responses API (POST /v1/responses, what Codex speaks) end to end: the real
daemon with tokens from the real kiro-authd, against the fake Kiro chat service (proxyd_fixture.py).

Contract: issue 13 ("Deliver", "Bad input", "Tests")."""

import json

import pytest

from fakes.kiro_chat import build_frames
from proxyd_fixture import CHAT_PATH, history_roles, needs_proxyd, proxy_stack, stack, user_text  # noqa: F401

pytestmark = needs_proxyd

PATH = "/v1/responses"
MODEL = "claude-sonnet-4.5"
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def req(input_, **kw):
        body = {"model": MODEL, "input": input_}
        body.update(kw)
        return body


def assert_error(r, status, param):
        assert r.status == status, r
        e = r.json()
        assert set(e) == {"error"}, e
        assert {"message", "type", "param", "code"} <= set(e["error"]), e
        assert e["error"]["param"] == param, e
        assert e["error"]["message"], e
        return e["error"]


def events(s):
        """The stream's events, checked: event name == data.type, sequence_number 0, 1, 2, …"""
        out = [e.json for e in s.events]
        assert all(o is not None for o in out), s.raw
        assert [e.name for e in s.events] == [o["type"] for o in out], s.raw
        assert [o["sequence_number"] for o in out] == list(range(len(out))), s.raw
        return out


def types(evs):
        return [e["type"] for e in evs]


def text_of(resp):
        return "".join(p["text"] for it in resp["output"] if it["type"] == "message" for p in it["content"])


# ---- text -----------------------------------------------------------------------------------------

def test_text_non_stream(stack):
        stack.chat.enqueue({"text": ["Hel", "lo!"],
                            "metadata_usage": {"uncachedInputTokens": 40, "outputTokens": 3, "totalTokens": 43}})
        r = stack.post(PATH, req("Say hello", instructions="Be brief.", metadata={"k": "v"}, user="u1",
                                 store=False))
        assert r.status == 200, r
        b = r.json()
        assert b["object"] == "response" and b["id"].startswith("resp_") and b["status"] == "completed"
        assert b["model"] == MODEL and b["instructions"] == "Be brief." and b["metadata"] == {"k": "v"}
        assert b["user"] == "u1" and b["store"] is False and b["error"] is None and b["incomplete_details"] is None
        assert len(b["output"]) == 1
        msg = b["output"][0]
        assert msg["type"] == "message" and msg["role"] == "assistant" and msg["status"] == "completed"
        assert msg["content"][0]["type"] == "output_text" and msg["content"][0]["text"] == "Hello!"
        assert b["usage"]["input_tokens"] == 40 and b["usage"]["output_tokens"] == 3 and b["usage"]["total_tokens"] == 43
        sent = stack.chat.last()
        assert "Be brief." in user_text(sent) and "Say hello" in user_text(sent)


def test_text_stream_event_sequence(stack):
        stack.chat.enqueue({"text": ["one ", "two ", "three"]})
        s = stack.stream(PATH, req([{"role": "user", "content": [{"type": "input_text", "text": "count"}]}],
                                   stream=True))
        assert s.status == 200 and s.complete
        evs = events(s)
        assert types(evs) == ["response.created", "response.in_progress", "response.output_item.added",
                              "response.content_part.added", "response.output_text.delta",
                              "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
                              "response.content_part.done", "response.output_item.done", "response.completed"]
        assert evs[0]["response"]["status"] == "in_progress" and evs[0]["response"]["output"] == []
        assert [e["delta"] for e in evs if e["type"] == "response.output_text.delta"] == ["one ", "two ", "three"]
        item_id = evs[2]["item"]["id"]
        assert all(e["item_id"] == item_id for e in evs[3:9]), evs
        assert evs[7]["text"] == "one two three"
        assert evs[9]["item"]["content"][0]["text"] == "one two three" and evs[9]["item"]["status"] == "completed"
        done = evs[-1]["response"]
        assert done["status"] == "completed" and done["id"] == evs[0]["response"]["id"]
        assert text_of(done) == "one two three"
        assert done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0


# ---- tools ----------------------------------------------------------------------------------------

def test_function_call_arguments_stream_in_fragments(stack):
        args = {"city": "Paris, the capital of France"}
        stack.chat.enqueue({"text": "Let me look.",
                            "tool_calls": [{"name": "get_weather", "id": "tooluse_r1", "input_json": args,
                                            "chunks": 4}]})
        s = stack.stream(PATH, req("Weather in Paris?", tools=[WEATHER], stream=True))
        evs = events(s)
        deltas = [e["delta"] for e in evs if e["type"] == "response.function_call_arguments.delta"]
        assert len(deltas) == 4, types(evs)
        assert json.loads("".join(deltas)) == args
        added = [e for e in evs if e["type"] == "response.output_item.added"]
        assert [a["item"]["type"] for a in added] == ["message", "function_call"]
        assert added[1]["output_index"] == 1 and added[1]["item"]["call_id"] == "tooluse_r1"
        assert added[1]["item"]["name"] == "get_weather" and added[1]["item"]["arguments"] == ""
        # The arguments stream between output_item.added and .done of the call.
        i_added = evs.index(added[1])
        i_done = types(evs).index("response.function_call_arguments.done")
        assert all(i_added < evs.index(e) < i_done for e in evs if e["type"] == "response.function_call_arguments.delta")
        assert json.loads(evs[i_done]["arguments"]) == args
        final = evs[-1]
        assert final["type"] == "response.completed"
        fc = [it for it in final["response"]["output"] if it["type"] == "function_call"]
        assert len(fc) == 1 and json.loads(fc[0]["arguments"]) == args and fc[0]["call_id"] == "tooluse_r1"


def test_tool_loop_with_function_call_output(stack):
        stack.chat.enqueue({"tool_calls": [{"name": "get_weather", "id": "tooluse_L1", "input_json": {"city": "Oslo"}}]})
        r = stack.post(PATH, req("Weather in Oslo?", tools=[WEATHER]))
        b = r.json()
        calls = [it for it in b["output"] if it["type"] == "function_call"]
        assert len(calls) == 1 and calls[0]["name"] == "get_weather"
        assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}

        stack.chat.enqueue({"text": "It is 3 degrees in Oslo."})
        follow = [{"role": "user", "content": "Weather in Oslo?"}, calls[0],
                  {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "3 C, cloudy"}]
        r = stack.post(PATH, req(follow, tools=[WEATHER]))
        assert r.status == 200, r
        assert text_of(r.json()) == "It is 3 degrees in Oslo."
        sent = stack.chat.last()
        assert history_roles(sent) == ["user", "assistant"]
        tu = sent.history[1]["assistantResponseMessage"]["toolUses"]
        assert tu[0]["toolUseId"] == "tooluse_L1" and tu[0]["input"] == {"city": "Oslo"}
        res = sent.tool_results()
        assert res[0]["toolUseId"] == "tooluse_L1" and res[0]["content"][0]["text"] == "3 C, cloudy"


# ---- reasoning ------------------------------------------------------------------------------------

def test_reasoning_stream_and_replay(stack):
        stack.chat.enqueue({"reasoning": ["Think ", "hard."], "reasoning_signature": "sig123", "text": "42"})
        s = stack.stream(PATH, req("Answer?", reasoning={"effort": "high"}, stream=True))
        evs = events(s)
        t = types(evs)
        assert t[2] == "response.output_item.added" and evs[2]["item"]["type"] == "reasoning"
        assert "response.reasoning_summary_part.added" in t
        assert "".join(e["delta"] for e in evs if e["type"] == "response.reasoning_summary_text.delta") == "Think hard."
        out = evs[-1]["response"]["output"]
        assert [o["type"] for o in out] == ["reasoning", "message"]
        assert out[0]["summary"] == [{"type": "summary_text", "text": "Think hard."}]
        assert out[0]["encrypted_content"] == "sig123"
        assert text_of(evs[-1]["response"]) == "42"
        first = stack.chat.last()
        assert "<max_thinking_length>32000</max_thinking_length>" in user_text(first)

        # The reasoning item replayed comes back as thinking in the assistant turn.
        stack.chat.enqueue({"text": "ok"})
        r = stack.post(PATH, req([{"role": "user", "content": "Answer?"}] + out +
                                 [{"role": "user", "content": "Why?"}], reasoning={"effort": "low"}))
        assert r.status == 200, r
        sent = stack.chat.last()
        assert history_roles(sent) == ["user", "assistant"]
        assert sent.history[1]["assistantResponseMessage"]["content"] == "<thinking>Think hard.</thinking>\n\n42"


# ---- endings --------------------------------------------------------------------------------------

def test_truncation_is_response_incomplete(stack):
        sc = {"text": ["partial ", "answer"],
              "exception": {"type": "ContentLengthExceededException", "message": "Response too long"}}
        stack.chat.enqueue(dict(sc))
        s = stack.stream(PATH, req("Write a lot", stream=True, max_output_tokens=50))
        evs = events(s)
        assert evs[-1]["type"] == "response.incomplete", types(evs)
        resp = evs[-1]["response"]
        assert resp["status"] == "incomplete" and resp["incomplete_details"] == {"reason": "max_output_tokens"}
        assert text_of(resp) == "partial answer" and resp["max_output_tokens"] == 50
        assert "response.completed" not in types(evs)

        stack.chat.enqueue(dict(sc))
        b = stack.post(PATH, req("Write a lot")).json()
        assert b["status"] == "incomplete" and b["incomplete_details"]["reason"] == "max_output_tokens"
        assert text_of(b) == "partial answer"


def test_upstream_cut_is_response_failed_after_partial_output(stack):
        texts = ["one ", "two ", "three "]
        frames = build_frames({"text": texts})
        stack.chat.enqueue({"text": texts, "cut_after_bytes": len(frames[0]) + len(frames[1]) + 7})
        s = stack.stream(PATH, req("count", stream=True))
        assert s.status == 200
        evs = events(s)
        assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == "one two "
        assert evs[-1]["type"] == "response.failed", types(evs)
        assert "response.completed" not in types(evs)
        resp = evs[-1]["response"]
        assert resp["status"] == "failed" and resp["error"]["message"] and resp["error"]["code"]
        assert resp["output"][0]["status"] == "incomplete"
        assert stack.chat.count() == 1


def test_failure_before_output_is_an_http_error(stack):
        stack.chat.enqueue({"status": 400, "message": "Input is too long.", "reason": "CONTENT_LENGTH_EXCEEDS_THRESHOLD"})
        r = stack.post(PATH, req("hi", stream=True))
        assert r.status in (400, 413), r
        assert "error" in r.json()


# ---- usage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("metadata", [None, {"uncachedInputTokens": 77, "outputTokens": 5, "totalTokens": 82}],
                         ids=["estimated", "reported"])
def test_usage_equals_chat_completions(stack, metadata):
        sc = {"text": ["The answer ", "is 42."]}
        if metadata:
                sc["metadata_usage"] = metadata
        system, question = "You are terse.", "What is the answer to everything?"
        stack.chat.enqueue(dict(sc))
        cc = stack.post(CHAT_PATH, {"model": MODEL, "messages": [{"role": "system", "content": system},
                                                                 {"role": "user", "content": question}]}).json()
        stack.chat.enqueue(dict(sc))
        rs = stack.post(PATH, req(question, instructions=system)).json()
        assert rs["usage"]["input_tokens"] == cc["usage"]["prompt_tokens"]
        assert rs["usage"]["output_tokens"] == cc["usage"]["completion_tokens"]
        assert rs["usage"]["total_tokens"] == cc["usage"]["total_tokens"]
        if metadata:
                assert rs["usage"]["input_tokens"] == 77


def test_cached_tokens_reported(stack):
        stack.chat.enqueue({"text": "x", "metadata_usage": {"uncachedInputTokens": 10, "cacheReadInputTokens": 90,
                                                            "outputTokens": 1, "totalTokens": 101}})
        u = stack.post(PATH, req("q")).json()["usage"]
        assert u["input_tokens"] == 100 and u["input_tokens_details"]["cached_tokens"] == 90
        assert u["output_tokens"] == 1 and u["total_tokens"] == 101


# ---- text.format ----------------------------------------------------------------------------------

def test_json_schema_becomes_an_instruction(stack):
        stack.chat.enqueue({"text": '{"a":1}'})
        fmt = {"type": "json_schema", "name": "thing", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}
        r = stack.post(PATH, req("give json", text={"format": fmt}))
        assert r.status == 200
        assert r.json()["text"]["format"] == fmt
        sent = user_text(stack.chat.last())
        assert "JSON Schema" in sent and '"thing"' in sent and '"a":{"type":"integer"}' in sent


# ---- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,param", [
        (req([{"type": "item_reference", "id": "x"}]), "input[0].type"),
        (req([{"type": "function_call_output", "call_id": "nope", "output": "x"}]), "input[0].call_id"),
        (req("hi", previous_response_id="resp_123"), "previous_response_id"),
        (req("hi", tools=[{"type": "web_search"}]), "tools[0]"),
        (req("hi", tools=[WEATHER, {"type": "file_search", "vector_store_ids": []}]), "tools[1]"),
        (req("hi", tools=[{"type": "computer_use_preview"}]), "tools[0]"),
        (req("hi", n=2), "n"),
        (req("hi", text={"format": {"type": "json_schema", "name": "x"}}), "text.format.schema"),
        (req("hi", text={"format": {"type": "json_schema", "name": "x", "schema": {"foo": 1}}}), "text.format.schema"),
        (req("hi", text={"format": {"type": "yaml"}}), "text.format.type"),
        (req([]), "input"),
        ({"model": MODEL}, "input"),
        (req("hi", reasoning={"effort": "extreme"}), "reasoning.effort"),
        (req([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]), "input[0].content[0]"),
], ids=["unknown-item", "orphan-output", "previous-response", "web-search", "file-search", "computer-use", "n",
        "schema-missing", "schema-invalid", "format-type", "empty-input", "no-input", "effort", "input-file"])
def test_bad_input_is_400_naming_the_field(stack, body, param):
        r = stack.post(PATH, body)
        err = assert_error(r, 400, param)
        assert err["type"] == "invalid_request_error"
        assert stack.chat.count() == 0


def test_builtin_tool_error_names_the_tool(stack):
        err = assert_error(stack.post(PATH, req("hi", tools=[{"type": "web_search"}])), 400, "tools[0]")
        assert "web_search" in err["message"]


def test_unknown_model_is_404(stack):
        r = stack.post(PATH, {"model": "gpt-9", "input": "hi"})
        assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"


def test_http_layer_errors_use_openai_shape(proxy_stack):
        s = proxy_stack(Proxy={"MaxBodyBytes": 200})
        r = s.post(PATH, req("x" * 500))
        assert r.status == 413
        assert set(r.json()) == {"error"} and r.json()["error"]["message"]
        r = s.request("GET", PATH)
        assert r.status == 400 and set(r.json()) == {"error"}


# ---- previous_response_id -------------------------------------------------------------------------

def test_previous_response_id_continues_a_stored_response(stack):
        stack.chat.enqueue({"tool_calls": [{"name": "get_weather", "id": "tooluse_P1", "input_json": {"city": "Rome"}}]})
        first = stack.post(PATH, req("Weather in Rome?", tools=[WEATHER], instructions="Use tools.")).json()
        assert first["store"] is True
        call = [it for it in first["output"] if it["type"] == "function_call"][0]

        stack.chat.enqueue({"text": "Sunny in Rome."})
        r = stack.post(PATH, req([{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}],
                                 tools=[WEATHER], previous_response_id=first["id"]))
        assert r.status == 200, r
        b = r.json()
        assert b["previous_response_id"] == first["id"] and text_of(b) == "Sunny in Rome."
        sent = stack.chat.last()
        assert history_roles(sent) == ["user", "assistant"]
        assert "Weather in Rome?" in json.dumps(sent.history[0])
        assert sent.tool_results()[0]["toolUseId"] == "tooluse_P1"

        # A chain of three: the second response is kept too.
        stack.chat.enqueue({"text": "You asked about Rome."})
        r = stack.post(PATH, req("What did I ask?", previous_response_id=b["id"]))
        assert r.status == 200 and len(stack.chat.last().history) == 4

        # store: false is not kept.
        stack.chat.enqueue({"text": "x"})
        nb = stack.post(PATH, req("hi", store=False)).json()
        assert_error(stack.post(PATH, req("again", previous_response_id=nb["id"])), 400, "previous_response_id")


def test_previous_response_expires(proxy_stack):
        s = proxy_stack(Proxy={"ResponsesStoreSec": 1, "ResponsesStoreMax": 2})
        s.chat.enqueue({"text": "one"}, {"text": "two"}, {"text": "three"})
        ids = [s.post(PATH, req(f"q{i}")).json()["id"] for i in range(3)]
        # Only two are kept: the first is gone.
        err = assert_error(s.post(PATH, req("more", previous_response_id=ids[0])), 400, "previous_response_id")
        assert "unknown" in err["message"]
        import time
        time.sleep(1.2)
        err = assert_error(s.post(PATH, req("more", previous_response_id=ids[2])), 400, "previous_response_id")
        assert "expired" in err["message"]


def test_large_stream_intact(stack):
        from fakes.kiro_chat import large_text
        n = 1 << 20
        stack.chat.enqueue({"large_text_bytes": n, "text": ""})
        s = stack.stream(PATH, req("Write a lot", stream=True), timeout=60)
        evs = events(s)
        want = large_text(n)
        assert "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta") == want
        assert [e["text"] for e in evs if e["type"] == "response.output_text.done"] == [want]
        assert [e["part"]["text"] for e in evs if e["type"] == "response.content_part.done"] == [want]
        assert text_of(evs[-1]["response"]) == want
