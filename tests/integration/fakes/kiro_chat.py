# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fake Kiro chat service: `POST /generateAssistantResponse` on loopback, answering with a real AWS
event stream (binary frames, CRC-32 on prelude and message), in threads inside a test process or as a
stand-alone process (`python3 kiro_chat.py --ready-file F`, used by tests/clients/run.sh).

Wire format: KIRO-PROTOCOL.md A.1-A.3, A.11, B §3 (request), §4 (stream) and §6 (errors).

Requests are checked the way the real service is believed to check them (see validate_headers() and
validate_body()): a bad bearer token gets 403 AccessDeniedException, anything else that is wrong gets
400 ValidationException `{"message":"Improperly formed request.","reason":null}`; every request is
recorded (headers, parsed body, status, and the list of validation errors, for debugging).

Answers are scripted with a queue of scenarios, one consumed per valid request (auth and validation
failures consume nothing); with the queue empty the default scenario is used (set_default(), else a
short text answer echoing the end of the current user message, see default_text()). Scenario keys:

  name                 label, recorded with the request (debugging only)
  repeat               N: this scenario answers the next N requests (default 1)
  match                str: only a request whose raw body contains this string takes the scenario
  match_token          str | callable → str: only a request carrying this bearer token takes the scenario
                       (tests put a nonce in their prompt, so concurrent or stray requests cannot
                       steal each other's scenarios); scenarios without `match` go to any request
  -- content, in the order emitted --
  reasoning            str | [str]: reasoningContentEvent {"text"} frames (native thinking)
  reasoning_signature  str: one more reasoningContentEvent {"signature"} frame
  thinking_text        str | [str]: the answer starts with "<thinking>" + chunks + "</thinking>\\n\\n",
                       as the service does for prompt-tag thinking (open tag in the first chunk's event,
                       close tag + blank line in the last one's)
  thinking_chunk_size  N: instead, re-split the whole "<thinking>…</thinking>\\n\\n" prefix into N-char
                       events (tags split across events)
  text                 str | [str]: assistantResponseEvent {"content"} frames, one per chunk. Absent (and
                       no tool_calls / large_text_bytes): the default text answer. "" or []: no text.
  repeat_text          str: two identical consecutive text events after `text` (real output, e.g. "\\n")
  large_text_bytes     N: N more bytes (UTF-8) of text, large_text(N), in events of at most
                       large_chunk_bytes (default 1000) bytes
  tool_calls           [{name, id?, input_json (str | object), chunks? (default 1), duplicate?}]: each
                       ("$tool:N" as name: the name of the request's N-th declared tool, e.g. an alias)
                       as A.11: {"name","toolUseId"}, {"input":"","name","toolUseId"}, `chunks` input
                       fragments {"input":part,"name","toolUseId"}, {"name","stop":true,"toolUseId"};
                       duplicate: true replays the whole call once more (same toolUseId)
  extra_events         [[event_type, payload object]]: raw extra event frames
  metadata_usage       true | {tokenUsage fields}: a metadataEvent {"tokenUsage": {...}} frame
  metering             true (default) | false | float: closing meteringEvent
                       {"unit":"credit","unitPlural":"credits","usage":0.1 or the float}
  context_usage        true (default) | false | float: closing contextUsageEvent
                       {"contextUsagePercentage": 2.5 or the float}
  omit_closing_events  true: neither closing event (a truncated stream, A.11)
  -- failures --
  status               int (400, 402, 403, 429, 500, 503, ...): answer that HTTP status with the B §6
                       body and x-amzn-errortype instead of a stream; `message`, `reason` (JSON null
                       when None), `body` (object or str, replaces the body), `headers` (extra) and
                       `retry_after` (Retry-After header) adjust it
  exception            str | {type?, message?, reason?, at?}: an exception frame (:exception-type
                       default "InternalServerException", payload {"message"[, "reason"]}) after `at`
                       content frames (default: all of them); the stream then ends, no closing events
  error_frame          {code?, message?, at?}: likewise an error frame (:message-type error,
                       :error-code, :error-message, empty payload)
  malformed_json_payload  true | str: an extra assistantResponseEvent whose payload is not JSON (CRCs
                       right), after the first content frame
  bad_crc              true | "message" | "prelude": wrong CRC on frame `bad_crc_frame` (default 0)
  cut_after_bytes      N: stop after N bytes of the event stream and close the connection abruptly
                       (no final chunk); with cut_clean: true end the chunked body properly instead
  -- timing and framing --
  first_byte_delay     seconds before the status line
  first_frame_delay    seconds after the response headers, before the first frame
  chunk_delay          seconds between frames
  split_frames         true | [min, max]: write the stream in pieces of 1-7 (min-max) bytes, one HTTP
                       chunk and one send() each; split_delay (seconds, default 0.001) between pieces,
                       split_seed for the piece sizes

Python API: FakeKiroChat(tokens=("ksk_test",), control=False).start(); .url, .control_url,
.accept_token(t), .enqueue(scenario, ...), .set_default(scenario), .requests, .count(), .last(),
.wait_for(pred), .reset(), .stop(). Also a context manager.

Control endpoint (control=True, its own port; JSON in and out, for tests in other processes):
  POST /enqueue         a scenario object or a list of them → {"queued": N}
  POST /default         a scenario object, or null for the built-in default → {}
  POST /reset           clears the queue, the default and the recorded requests → {}
  POST /accept-token    {"token": "..."} → {}
  GET  /requests        [recorded request, ...] (see RecordedRequest.to_json()); ?match=S keeps those
                        whose raw body contains S
  GET  /queue           {"pending": N}
  GET  /health          {"url": ..., "control_url": ...}
"""

import argparse
import base64
import dataclasses
import json
import os
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
        # The default listen backlog of 5 resets connections when tests fire dozens at once.
        request_queue_size = 1024
        daemon_threads = True

CHAT_PATH = "/generateAssistantResponse"
MODELS_PATH = "/ListAvailableModels"


def _model(mid, name, max_in, max_out, thinking=True):
        m = {"modelId": mid, "modelName": name, "description": name, "rateMultiplier": 1.0, "rateUnit": "credit",
             "supportedInputTypes": ["TEXT", "IMAGE"], "supportsPromptCache": True}
        if max_in:
                m["tokenLimits"] = {"maxInputTokens": max_in, "maxOutputTokens": max_out}
        if thinking:
                m["additionalModelRequestFieldsSchema"] = {"type": "object", "properties": {
                        "thinking": {"type": "object", "properties": {"type": {"enum": ["adaptive", "disabled"]}}}}}
        return m


# What ListAvailableModels answers by default (B §5.2 shape), the models of the built-in table with its limits;
# a test replaces it with set_models().
DEFAULT_MODELS = [
        _model("auto", "Auto", 1000000, 64000),
        _model("claude-sonnet-4", "Claude Sonnet 4", 200000, 64000),
        _model("claude-sonnet-4.5", "Claude Sonnet 4.5", 200000, 64000),
        _model("claude-sonnet-4.6", "Claude Sonnet 4.6", 1000000, 64000),
        _model("claude-haiku-4.5", "Claude Haiku 4.5", 200000, 64000),
        _model("claude-opus-4.5", "Claude Opus 4.5", 200000, 64000),
        _model("claude-opus-4.6", "Claude Opus 4.6", 1000000, 64000),
        _model("claude-opus-4.7", "Claude Opus 4.7", 1000000, 128000),
        _model("deepseek-3.2", "DeepSeek 3.2", 163840, 32000, thinking=False),
        _model("glm-5", "GLM 5", None, None, thinking=False),
        _model("minimax-m2.1", "MiniMax M2.1", 196608, 32000, thinking=False),
        _model("minimax-m2.5", "MiniMax M2.5", 196608, 32000, thinking=False),
        _model("qwen3-coder-next", "Qwen3 Coder Next", 262144, 32000, thinking=False),
]
EVENTSTREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"

MSG_IMPROPER = "Improperly formed request."
MSG_BAD_TOKEN = "The bearer token included in the request is invalid."
MSG_HIGH_LOAD = "Encountered unexpectedly high load when processing the request, please try again."

# B §6: status → (x-amzn-errortype, message, reason)
ERROR_DEFAULTS = {
        400: ("ValidationException", MSG_IMPROPER, None),
        401: ("UnauthorizedException", "The security token included in the request is expired", None),
        402: ("ServiceQuotaExceededException", "You have reached the limit.", "MONTHLY_REQUEST_COUNT"),
        403: ("AccessDeniedException", MSG_BAD_TOKEN, None),
        404: ("ResourceNotFoundException", "Resource not found.", None),
        413: ("ValidationException", "Input is too long.", "CONTENT_LENGTH_EXCEEDS_THRESHOLD"),
        429: ("ThrottlingException", "Too many requests, please wait before trying again.", None),
        500: ("InternalServerException", MSG_HIGH_LOAD, None),
        502: ("InternalServerException", MSG_HIGH_LOAD, None),
        503: ("ServiceUnavailableException", MSG_HIGH_LOAD, "INSUFFICIENT_MODEL_CAPACITY"),
        504: ("InternalServerException", MSG_HIGH_LOAD, None),
}
# Statuses whose default body has no "reason" member at all (B §6 quotes them that way).
_NO_REASON = {403, 500, 502, 504}

SCENARIO_KEYS = {
        "name", "repeat", "match", "match_token",
        "reasoning", "reasoning_signature", "thinking_text", "thinking_chunk_size", "text", "repeat_text",
        "large_text_bytes", "large_chunk_bytes", "tool_calls", "extra_events", "metadata_usage", "metering",
        "context_usage", "omit_closing_events",
        "status", "message", "reason", "body", "headers", "retry_after",
        "exception", "error_frame", "malformed_json_payload", "bad_crc", "bad_crc_frame",
        "cut_after_bytes", "cut_clean",
        "first_byte_delay", "first_frame_delay", "chunk_delay", "split_frames", "split_delay", "split_seed",
}
TOOL_CALL_KEYS = {"name", "id", "input_json", "chunks", "duplicate"}

DEFAULT_METERING = 0.1
DEFAULT_CONTEXT_USAGE = 2.5
DEFAULT_TOKEN_USAGE = {"uncachedInputTokens": 100, "outputTokens": 20, "totalTokens": 120}

TOP_LEVEL_KEYS = {"conversationState", "profileArn", "agentMode", "inferenceConfig",
                  "additionalModelRequestFields"}
STATE_KEYS = {"chatTriggerType", "conversationId", "currentMessage", "history", "agentContinuationId",
              "agentTaskType", "customizationArn", "workspaceId"}
IMAGE_FORMATS = {"jpeg", "png", "gif", "webp"}
TOOL_NAME_MAX = 64
TOOL_DESCRIPTION_MAX = 10240

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SDK_REQUEST_RE = re.compile(r"^attempt=(\d+); ?max=(\d+)$")
_MACHINE_ID_RE = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])")
_PROFILE_ARN_RE = re.compile(r"^arn:aws:codewhisperer:[a-z0-9-]+:\d{12}:profile/[A-Za-z0-9]+$")


# ---- event stream encoding (B §4.1) ---------------------------------------------------------------

def _string_headers(headers):
        out = bytearray()
        for name, value in headers:
                n, v = name.encode(), value.encode()
                out += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
        return bytes(out)


def encode_frame(headers, payload, corrupt=None):
        """One event-stream message: headers is a list of (name, string value) in wire order, payload
        bytes. corrupt="prelude"/"message" flips a bit of that CRC."""
        h = _string_headers(headers)
        total = 12 + len(h) + len(payload) + 4
        prelude = struct.pack(">II", total, len(h))
        pcrc = zlib.crc32(prelude)
        if corrupt == "prelude":
                pcrc ^= 0x00000001
        msg = prelude + struct.pack(">I", pcrc) + h + payload
        mcrc = zlib.crc32(msg)
        if corrupt == "message":
                mcrc ^= 0x80000000
        return msg + struct.pack(">I", mcrc)


def compact_json(obj):
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def event_frame(event_type, payload):
        """An `event` message; payload is an object (compact JSON) or raw bytes."""
        data = payload if isinstance(payload, bytes) else compact_json(payload)
        return encode_frame([(":event-type", event_type), (":content-type", "application/json"),
                             (":message-type", "event")], data)


def exception_frame(exception_type, payload):
        return encode_frame([(":exception-type", exception_type), (":content-type", "application/json"),
                             (":message-type", "exception")], compact_json(payload))


def error_frame(code, message):
        # Header order as fakes/eventstream.py (and the C unit tests' golden files) have it.
        return encode_frame([(":message-type", "error"), (":error-code", code), (":error-message", message)],
                            b"")


def large_text(n):
        """Deterministic text of exactly n UTF-8 bytes, with 2- and 3-byte characters in it."""
        unit = "The quick brown fox jumps over the lazy dog. Déjà vu, 5 € each.\n"
        ub = unit.encode()
        out = unit * (n // len(ub))
        rest = n - len(out.encode())
        return out + ("x" * rest)


def _split_utf8(text, max_bytes):
        """Splits text into pieces of at most max_bytes UTF-8 bytes, never inside a character."""
        pieces, cur, cur_len = [], [], 0
        for ch in text:
                b = len(ch.encode())
                if cur and cur_len + b > max_bytes:
                        pieces.append("".join(cur))
                        cur, cur_len = [], 0
                cur.append(ch)
                cur_len += b
        if cur:
                pieces.append("".join(cur))
        return pieces


def _as_list(v):
        if v is None:
                return []
        return [v] if isinstance(v, str) else list(v)


def default_text(content):
        """The default answer to a request whose current user message is `content`."""
        lines = [ln.strip() for ln in (content or "").strip().splitlines() if ln.strip()]
        snippet = lines[-1][-80:] if lines else ""
        return f"Hello from the fake Kiro service. You said: {snippet}"


def check_scenario(sc):
        """Raises ValueError for an unknown key (typos would otherwise silently do nothing)."""
        if not isinstance(sc, dict):
                raise ValueError(f"a scenario is an object, not {type(sc).__name__}")
        unknown = set(sc) - SCENARIO_KEYS
        if unknown:
                raise ValueError(f"unknown scenario keys: {sorted(unknown)}")
        for tc in sc.get("tool_calls") or []:
                if not isinstance(tc, dict) or "name" not in tc:
                        raise ValueError("a tool call needs at least a name")
                bad = set(tc) - TOOL_CALL_KEYS
                if bad:
                        raise ValueError(f"unknown tool call keys: {sorted(bad)}")


def build_frames(sc, current_content="", tool_names=()):
        """The list of frames (bytes) a successful scenario streams; tool_names are the tools the
        request declared (for "$tool:N" names)."""
        content = []            # content frames, in order

        reasoning = _as_list(sc.get("reasoning"))
        for r in reasoning:
                content.append(event_frame("reasoningContentEvent", {"text": r}))
        if sc.get("reasoning_signature"):
                content.append(event_frame("reasoningContentEvent", {"signature": sc["reasoning_signature"]}))

        thinking = _as_list(sc.get("thinking_text"))
        if thinking:
                if sc.get("thinking_chunk_size"):
                        whole = "<thinking>" + "".join(thinking) + "</thinking>\n\n"
                        n = int(sc["thinking_chunk_size"])
                        parts = [whole[i:i + n] for i in range(0, len(whole), n)]
                else:
                        parts = list(thinking)
                        parts[0] = "<thinking>" + parts[0]
                        parts[-1] = parts[-1] + "</thinking>\n\n"
                for p in parts:
                        content.append(event_frame("assistantResponseEvent", {"content": p}))

        if "text" in sc:
                texts = _as_list(sc["text"])
        elif sc.get("tool_calls") or sc.get("large_text_bytes"):
                texts = []
        else:
                texts = [default_text(current_content)]
        for t in texts:
                if t != "":
                        content.append(event_frame("assistantResponseEvent", {"content": t}))
        if sc.get("repeat_text"):
                for _ in range(2):
                        content.append(event_frame("assistantResponseEvent", {"content": sc["repeat_text"]}))
        if sc.get("large_text_bytes"):
                for piece in _split_utf8(large_text(int(sc["large_text_bytes"])),
                                         int(sc.get("large_chunk_bytes") or 1000)):
                        content.append(event_frame("assistantResponseEvent", {"content": piece}))

        for tc in sc.get("tool_calls") or []:
                name = tc["name"]
                if name.startswith("$tool:"):
                        name = tool_names[int(name[len("$tool:"):])]
                tid = tc.get("id") or "tooluse_" + uuid.uuid4().hex[:22]
                inp = tc.get("input_json", "{}")
                if not isinstance(inp, str):
                        inp = json.dumps(inp, separators=(",", ":"), ensure_ascii=False)
                n = max(1, int(tc.get("chunks") or 1))
                size = -(-len(inp) // n) if inp else 0
                fragments = [inp[i:i + size] for i in range(0, len(inp), size)] if size else []
                call = [event_frame("toolUseEvent", {"name": name, "toolUseId": tid}),
                        event_frame("toolUseEvent", {"input": "", "name": name, "toolUseId": tid})]
                call += [event_frame("toolUseEvent", {"input": f, "name": name, "toolUseId": tid})
                         for f in fragments]
                call.append(event_frame("toolUseEvent", {"name": name, "stop": True, "toolUseId": tid}))
                content += call
                if tc.get("duplicate"):
                        content += call

        for et, payload in sc.get("extra_events") or []:
                content.append(event_frame(et, payload))

        if sc.get("malformed_json_payload"):
                bad = sc["malformed_json_payload"]
                bad = b'{"content":"unterminated' if bad is True else str(bad).encode()
                content.insert(min(1, len(content)), event_frame("assistantResponseEvent", bad))

        frames = list(content)
        ended = False
        if sc.get("exception"):
                ex = sc["exception"]
                ex = {"message": ex} if isinstance(ex, str) else dict(ex) if isinstance(ex, dict) else {}
                payload = {"message": ex.get("message", MSG_HIGH_LOAD)}
                if "reason" in ex:
                        payload["reason"] = ex["reason"]
                at = ex.get("at", len(frames))
                frames = frames[:at] + [exception_frame(ex.get("type", "InternalServerException"), payload)]
                ended = True
        elif sc.get("error_frame"):
                ef = sc["error_frame"] if isinstance(sc["error_frame"], dict) else {}
                at = ef.get("at", len(frames))
                frames = frames[:at] + [error_frame(ef.get("code", "InternalFailure"),
                                                    ef.get("message", MSG_HIGH_LOAD))]
                ended = True

        if not ended:
                mu = sc.get("metadata_usage")
                if mu:
                        frames.append(event_frame("metadataEvent",
                                                  {"tokenUsage": DEFAULT_TOKEN_USAGE if mu is True else mu}))
                if not sc.get("omit_closing_events"):
                        m = sc.get("metering", True)
                        if m is not False and m is not None:
                                usage = DEFAULT_METERING if m is True else float(m)
                                frames.append(event_frame("meteringEvent", {"unit": "credit",
                                                                            "unitPlural": "credits",
                                                                            "usage": usage}))
                        c = sc.get("context_usage", True)
                        if c is not False and c is not None:
                                pct = DEFAULT_CONTEXT_USAGE if c is True else float(c)
                                frames.append(event_frame("contextUsageEvent", {"contextUsagePercentage": pct}))

        if sc.get("bad_crc"):
                which = "prelude" if sc["bad_crc"] == "prelude" else "message"
                i = int(sc.get("bad_crc_frame", 0))
                f = bytearray(frames[i])
                if which == "prelude":
                        # Only the prelude check fails: the message CRC matches the altered bytes.
                        f[8] ^= 0x01
                        f[-4:] = struct.pack(">I", zlib.crc32(bytes(f[:-4])))
                else:
                        f[-1] ^= 0x01
                frames[i] = bytes(f)
        return frames


# ---- request validation (A.2, A.3, B §3) ------------------------------------------------------------

def validate_headers(headers):
        """headers: dict with lower-case names. Returns a list of problems (empty if fine); the
        Authorization header is checked separately."""
        errs = []
        ctype = headers.get("content-type", "")
        if ctype.split(";")[0].strip().lower() != "application/json":
                errs.append(f"content-type is {ctype!r}, want application/json")
        inv = headers.get("amz-sdk-invocation-id")
        if not inv or not _UUID_RE.match(inv):
                errs.append(f"amz-sdk-invocation-id {inv!r} is not a uuid")
        req = headers.get("amz-sdk-request")
        m = _SDK_REQUEST_RE.match(req or "")
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
                errs.append(f"amz-sdk-request {req!r} is not 'attempt=N; max=M' with 1 <= N <= M")
        if headers.get("x-amzn-kiro-agent-mode") != "vibe":
                errs.append(f"x-amzn-kiro-agent-mode is {headers.get('x-amzn-kiro-agent-mode')!r}, want 'vibe'")
        if headers.get("x-amzn-codewhisperer-optout") not in ("true", "false"):
                errs.append("x-amzn-codewhisperer-optout missing or not true/false")
        ua = headers.get("user-agent", "")
        if "KiroIDE" not in ua:
                errs.append(f"user-agent {ua!r} does not contain KiroIDE")
        elif not _MACHINE_ID_RE.search(ua):
                errs.append(f"user-agent {ua!r} carries no 64-hex machine id")
        xua = headers.get("x-amz-user-agent", "")
        if "KiroIDE" not in xua:
                errs.append(f"x-amz-user-agent {xua!r} does not contain KiroIDE")
        return errs


def _bearer(headers):
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
                return None
        return auth[len("Bearer "):].strip() or None


def _check_user_message(m, where, errs, current):
        if not isinstance(m, dict):
                errs.append(f"{where}: userInputMessage is not an object")
                return
        c = m.get("content")
        if not isinstance(c, str) or not c:
                errs.append(f"{where}: content missing or empty")
        if current or "modelId" in m:
                if not isinstance(m.get("modelId"), str) or not m.get("modelId"):
                        errs.append(f"{where}: modelId missing or empty")
        if m.get("origin") != "AI_EDITOR":
                errs.append(f"{where}: origin is {m.get('origin')!r}, want 'AI_EDITOR'")
        for i, img in enumerate(m.get("images") or []):
                if not isinstance(img, dict) or img.get("format") not in IMAGE_FORMATS:
                        errs.append(f"{where}: images[{i}] has no format in {sorted(IMAGE_FORMATS)}")
                        continue
                b = (img.get("source") or {}).get("bytes")
                try:
                        if not isinstance(b, str) or not b:
                                raise ValueError
                        base64.b64decode(b, validate=True)
                except ValueError:
                        errs.append(f"{where}: images[{i}].source.bytes is not base64")
        ctx = m.get("userInputMessageContext")
        if ctx is not None and not isinstance(ctx, dict):
                errs.append(f"{where}: userInputMessageContext is not an object")


def _context_list(m, key):
        ctx = m.get("userInputMessageContext") if isinstance(m, dict) else None
        if not isinstance(ctx, dict):
                return []
        v = ctx.get(key)
        return v if isinstance(v, list) else []


def _tool_results(m):
        return _context_list(m, "toolResults")


def _tools(m):
        return _context_list(m, "tools")


def validate_body(body, max_bytes=None, raw_len=0):
        """Returns (problems, reason): the problems found in a parsed request body (empty if fine) and
        the ValidationException reason to answer with (None unless a specific one applies)."""
        errs = []
        if max_bytes is not None and raw_len > max_bytes:
                return [f"body is {raw_len} bytes, over {max_bytes}"], "CONTENT_LENGTH_EXCEEDS_THRESHOLD"
        if not isinstance(body, dict):
                return ["body is not a JSON object"], None
        unknown = set(body) - TOP_LEVEL_KEYS
        if unknown:
                errs.append(f"unknown top-level members {sorted(unknown)}")
        if "profileArn" in body and not (isinstance(body["profileArn"], str)
                                          and _PROFILE_ARN_RE.match(body["profileArn"])):
                return [f"profileArn {body['profileArn']!r} is malformed"], "REQUEST_BODY_INVALID"
        cs = body.get("conversationState")
        if not isinstance(cs, dict):
                return errs + ["conversationState missing"], None
        unknown = set(cs) - STATE_KEYS
        if unknown:
                errs.append(f"unknown conversationState members {sorted(unknown)}")
        if cs.get("chatTriggerType") != "MANUAL":
                errs.append(f"chatTriggerType is {cs.get('chatTriggerType')!r}, want 'MANUAL'")
        if not isinstance(cs.get("conversationId"), str) or not cs.get("conversationId"):
                errs.append("conversationId missing or empty")
        cur = cs.get("currentMessage")
        if not isinstance(cur, dict) or set(cur) != {"userInputMessage"}:
                return errs + ["currentMessage must be {userInputMessage: ...}"], None
        history = cs.get("history", [])
        if not isinstance(history, list):
                return errs + ["history is not a list"], None

        # The whole conversation as (role, message) pairs, the current message last.
        msgs = []
        for i, h in enumerate(history):
                if not isinstance(h, dict) or len(h) != 1 or \
                   next(iter(h)) not in ("userInputMessage", "assistantResponseMessage"):
                        errs.append(f"history[{i}] must be {{userInputMessage}} or {{assistantResponseMessage}}")
                        return errs, None
                role = "user" if "userInputMessage" in h else "assistant"
                msgs.append((role, h[next(iter(h))], f"history[{i}]"))
        msgs.append(("user", cur["userInputMessage"], "currentMessage"))

        for i, (role, m, where) in enumerate(msgs):
                want = "user" if i % 2 == 0 else "assistant"
                if role != want:
                        errs.append(f"{where} is {role}, want {want}: history must start with user and alternate")
                        return errs, None
                if role == "user":
                        _check_user_message(m, where, errs, current=(where == "currentMessage"))
                else:
                        if not isinstance(m, dict):
                                errs.append(f"{where}: assistantResponseMessage is not an object")
                                return errs, None
                        if not isinstance(m.get("content"), str) or not m.get("content"):
                                errs.append(f"{where}: assistant content missing or empty")

        # Tools declared on the current message.
        declared = set()
        for j, t in enumerate(_tools(cur["userInputMessage"])):
                spec = t.get("toolSpecification") if isinstance(t, dict) else None
                if not isinstance(spec, dict):
                        errs.append(f"tools[{j}] has no toolSpecification")
                        continue
                name = spec.get("name")
                if not isinstance(name, str) or not name:
                        errs.append(f"tools[{j}] has no name")
                        continue
                if len(name) > TOOL_NAME_MAX:
                        errs.append(f"tools[{j}] name {name!r} is longer than {TOOL_NAME_MAX}")
                if name in declared:
                        errs.append(f"tool {name!r} declared twice")
                declared.add(name)
                d = spec.get("description")
                if not isinstance(d, str) or not d:
                        errs.append(f"tool {name!r} has an empty description")
                elif len(d) > TOOL_DESCRIPTION_MAX:
                        errs.append(f"tool {name!r} description is {len(d)} characters, over {TOOL_DESCRIPTION_MAX}")
                schema = (spec.get("inputSchema") or {}).get("json") if isinstance(spec.get("inputSchema"), dict) \
                        else None
                if not isinstance(schema, dict):
                        errs.append(f"tool {name!r} has no inputSchema.json object")

        # Tool uses and results: each result answers a use of the assistant message right before it;
        # each use in history is answered in the next user message; ids unique; tools declared.
        seen_ids = set()
        for i, (role, m, where) in enumerate(msgs):
                if role == "assistant":
                        uses = m.get("toolUses") or []
                        ids = []
                        for k, u in enumerate(uses):
                                if not isinstance(u, dict):
                                        errs.append(f"{where}.toolUses[{k}] is not an object")
                                        continue
                                tid, name = u.get("toolUseId"), u.get("name")
                                if not isinstance(tid, str) or not 1 <= len(tid) <= 64:
                                        errs.append(f"{where}.toolUses[{k}] toolUseId {tid!r} invalid")
                                if tid in seen_ids:
                                        errs.append(f"{where}.toolUses[{k}] toolUseId {tid!r} used twice")
                                seen_ids.add(tid)
                                ids.append(tid)
                                if not isinstance(name, str) or not name or len(name) > TOOL_NAME_MAX:
                                        errs.append(f"{where}.toolUses[{k}] name {name!r} invalid (1..{TOOL_NAME_MAX})")
                                elif name not in declared:
                                        errs.append(f"{where}.toolUses[{k}] tool {name!r} not declared in "
                                                    "currentMessage tools")
                                if not isinstance(u.get("input"), dict):
                                        errs.append(f"{where}.toolUses[{k}] input is not an object")
                        answered = {r.get("toolUseId") for r in _tool_results(msgs[i + 1][1])
                                    if isinstance(r, dict)}
                        for tid in ids:
                                if tid not in answered:
                                        errs.append(f"{where} toolUse {tid!r} has no toolResult in the next user message")
                else:
                        results = _tool_results(m)
                        prev_ids = set()
                        if i > 0:
                                prev_ids = {u.get("toolUseId") for u in (msgs[i - 1][1].get("toolUses") or [])
                                            if isinstance(u, dict)}
                        got = set()
                        for k, r in enumerate(results):
                                if not isinstance(r, dict):
                                        errs.append(f"{where}.toolResults[{k}] is not an object")
                                        continue
                                tid = r.get("toolUseId")
                                if tid not in prev_ids:
                                        errs.append(f"{where}.toolResults[{k}] toolUseId {tid!r} matches no "
                                                    "toolUse of the previous assistant message")
                                if tid in got:
                                        errs.append(f"{where}.toolResults[{k}] toolUseId {tid!r} answered twice")
                                got.add(tid)
                                c = r.get("content")
                                if not isinstance(c, list) or not c or not all(
                                                isinstance(x, dict) and ("text" in x or "json" in x) for x in c):
                                        errs.append(f"{where}.toolResults[{k}] content must be a non-empty list "
                                                    "of {text} / {json}")
                                if r.get("status") not in ("success", "error"):
                                        errs.append(f"{where}.toolResults[{k}] status {r.get('status')!r} "
                                                    "not success/error")
                        if results and not declared:
                                errs.append(f"{where} has toolResults but currentMessage declares no tools")
        return errs, None


# ---- the server --------------------------------------------------------------------------------------

@dataclasses.dataclass
class RecordedRequest:
        time: float
        method: str
        path: str
        headers: dict            # lower-case names
        raw_body: bytes
        body: object             # parsed JSON, or None
        token: str | None
        status: int = 0
        errors: list = dataclasses.field(default_factory=list)
        scenario: dict | None = None
        outcome: str = ""        # "stream", "status", "invalid", "denied", "not-found"

        @property
        def state(self):
                return (self.body or {}).get("conversationState") if isinstance(self.body, dict) else None

        @property
        def current(self):
                """currentMessage.userInputMessage, or None."""
                try:
                        return self.body["conversationState"]["currentMessage"]["userInputMessage"]
                except (KeyError, TypeError):
                        return None

        @property
        def history(self):
                try:
                        return self.body["conversationState"].get("history") or []
                except (KeyError, TypeError, AttributeError):
                        return []

        def tool_results(self):
                """toolResults of the current message."""
                return _tool_results(self.current or {})

        def to_json(self):
                return {"time": self.time, "method": self.method, "path": self.path, "headers": self.headers,
                        "body": self.body, "token": self.token, "status": self.status, "errors": self.errors,
                        "scenario": self.scenario, "outcome": self.outcome}


class FakeKiroChat:
        def __init__(self, tokens=("ksk_test",), control=False, max_body_bytes=None, host="127.0.0.1"):
                self.lock = threading.RLock()
                self.host = host
                self.tokens = set(tokens)
                self.max_body_bytes = max_body_bytes
                self.want_control = control
                self.requests = []
                self._queue = []              # [scenario, remaining count]
                self._default = None
                self._stopping = threading.Event()
                self._servers = []
                self._threads = []
                self.url = None
                self.control_url = None
                self.models = None              # None: DEFAULT_MODELS
                self.models_page_size = 100
                self.models_status = None       # an int: ListAvailableModels answers that status
                self.model_requests = []        # (path, query dict, headers) of each ListAvailableModels

        # ---- test API ------------------------------------------------------------------------

        def start(self):
                srv = self._serve(self._chat_handler(), "fake-kiro-chat")
                self.url = f"http://{self.host}:{srv.server_address[1]}"
                if self.want_control:
                        c = self._serve(self._control_handler(), "fake-kiro-control")
                        self.control_url = f"http://{self.host}:{c.server_address[1]}"
                return self

        def stop(self):
                self._stopping.set()
                for s in self._servers:
                        s.shutdown()
                        s.server_close()
                for t in self._threads:
                        t.join(timeout=5)
                self._servers.clear()
                self._threads.clear()

        def __enter__(self):
                return self.start() if self.url is None else self

        def __exit__(self, *exc):
                self.stop()

        def accept_token(self, token):
                with self.lock:
                        self.tokens.add(token)

        def revoke_token(self, token):
                with self.lock:
                        self.tokens.discard(token)

        def enqueue(self, *scenarios):
                """Queues scenarios (dicts, see the module docstring), consumed one per valid request."""
                for sc in scenarios:
                        check_scenario(sc)
                with self.lock:
                        for sc in scenarios:
                                self._queue.append([dict(sc), max(1, int(sc.get("repeat", 1)))])

        def set_models(self, models=None, page_size=100, status=None):
                """What ListAvailableModels answers: a list of model objects (None: DEFAULT_MODELS), in
                pages of page_size with nextToken; status: answer that HTTP error instead."""
                with self.lock:
                        self.models = None if models is None else list(models)
                        self.models_page_size = page_size
                        self.models_status = status

        def set_default(self, scenario=None):
                if scenario is not None:
                        check_scenario(scenario)
                with self.lock:
                        self._default = dict(scenario) if scenario is not None else None

        def pending(self):
                with self.lock:
                        return sum(n for _, n in self._queue)

        def reset(self):
                with self.lock:
                        self._queue.clear()
                        self._default = None
                        self.requests.clear()

        def count(self, outcome=None):
                with self.lock:
                        return sum(1 for r in self.requests if outcome is None or r.outcome == outcome)

        def last(self):
                with self.lock:
                        return self.requests[-1] if self.requests else None

        def wait_for(self, predicate, timeout=10.0, interval=0.02):
                deadline = time.monotonic() + timeout
                while True:
                        v = predicate()
                        if v or time.monotonic() >= deadline:
                                return v
                        time.sleep(interval)

        # ---- plumbing ------------------------------------------------------------------------

        def _serve(self, handler, name):
                srv = _Server((self.host, 0), handler)
                srv.daemon_threads = True
                srv.block_on_close = False
                t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, name=name,
                                     daemon=True)
                t.start()
                self._servers.append(srv)
                self._threads.append(t)
                return srv

        def _sleep(self, seconds):
                if seconds and seconds > 0:
                        self._stopping.wait(float(seconds))

        def _next_scenario(self, raw, token=None):
                with self.lock:
                        for i, (sc, n) in enumerate(self._queue):
                                m = sc.get("match")
                                if m is not None and str(m).encode() not in raw:
                                        continue
                                mt = sc.get("match_token")
                                if mt is not None and (mt() if callable(mt) else mt) != token:
                                        continue
                                if n <= 1:
                                        self._queue.pop(i)
                                else:
                                        self._queue[i][1] = n - 1
                                return dict(sc)
                        return dict(self._default) if self._default is not None else {}

        def _chat_handler(self):
                fake = self

                class Handler(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def setup(self):
                                super().setup()
                                try:
                                        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                                except OSError:
                                        pass

                        def log_message(self, *args):
                                pass

                        def do_POST(self):
                                try:
                                        fake._handle_chat(self)
                                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                                        self.close_connection = True

                        def do_GET(self):
                                if self.path.split("?")[0] == MODELS_PATH:
                                        return fake._handle_models(self)
                                body = b'{"message":"Method not allowed"}'
                                _send_raw(self, 405, body, {"Content-Type": "application/json"})

                return Handler

        def _handle_models(self, h):
                """GET /ListAvailableModels?origin=AI_EDITOR&profileArn=…[&nextToken=N] (B §5.2, REST form)."""
                headers = {k.lower(): v for k, v in h.headers.items()}
                q = {k: v[0] for k, v in urllib.parse.parse_qs(h.path.partition("?")[2]).items()}
                token = _bearer(headers)
                with self.lock:
                        self.model_requests.append((h.path, q, headers))
                        accepted = token in self.tokens
                        models = DEFAULT_MODELS if self.models is None else self.models
                        page, status = self.models_page_size, self.models_status
                if not accepted:
                        return _send_json(h, 403, {"message": MSG_BAD_TOKEN}, {"x-amzn-errortype": "AccessDeniedException"})
                if q.get("origin") != "AI_EDITOR":
                        return _send_json(h, 400, {"message": MSG_IMPROPER, "reason": None},
                                          {"x-amzn-errortype": "ValidationException"})
                if status:
                        etype, msg, _ = ERROR_DEFAULTS.get(status, ("InternalServerException", MSG_HIGH_LOAD, None))
                        return _send_json(h, status, {"message": msg}, {"x-amzn-errortype": etype})
                start = int(q.get("nextToken", "0"))
                out = {"models": models[start:start + page], "defaultModel": models[0] if models else None}
                if start + page < len(models):
                        out["nextToken"] = str(start + page)
                return _send_json(h, 200, out)

        def _read_body(self, h):
                if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
                        data = bytearray()
                        while True:
                                line = h.rfile.readline()
                                size = int(line.split(b";")[0].strip() or b"0", 16)
                                if size == 0:
                                        while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                                                pass
                                        return bytes(data)
                                data += h.rfile.read(size)
                                h.rfile.readline()
                length = int(h.headers.get("Content-Length") or 0)
                return h.rfile.read(length) if length > 0 else b""

        def _handle_chat(self, h):
                raw = self._read_body(h)
                headers = {k.lower(): v for k, v in h.headers.items()}
                try:
                        body = json.loads(raw) if raw else None
                except ValueError:
                        body = None
                token = _bearer(headers)
                rec = RecordedRequest(time.time(), "POST", h.path, headers, raw, body, token)
                with self.lock:
                        self.requests.append(rec)
                        accepted = token in self.tokens

                if h.path.split("?")[0] != CHAT_PATH:
                        rec.status, rec.outcome = 404, "not-found"
                        rec.errors = [f"unknown path {h.path!r}"]
                        return _send_json(h, 404, {"message": "Not Found"},
                                          {"x-amzn-errortype": "UnknownOperationException"})
                if not accepted:
                        rec.status, rec.outcome = 403, "denied"
                        rec.errors = ["bearer token missing or not accepted"]
                        return _send_json(h, 403, {"message": MSG_BAD_TOKEN},
                                          {"x-amzn-errortype": "AccessDeniedException"})

                errs = validate_headers(headers)
                if token.startswith("ksk_") and headers.get("tokentype") != "API_KEY":
                        errs.append(f"tokentype is {headers.get('tokentype')!r}, want API_KEY for a ksk_ key")
                if raw and body is None:
                        errs.append("body is not valid JSON")
                        reason = None
                else:
                        berrs, reason = validate_body(body, self.max_body_bytes, len(raw))
                        errs += berrs
                if errs:
                        rec.status, rec.outcome, rec.errors = 400, "invalid", errs
                        msg = "Input is too long." if reason == "CONTENT_LENGTH_EXCEEDS_THRESHOLD" else MSG_IMPROPER
                        return _send_json(h, 400, {"message": msg, "reason": reason},
                                          {"x-amzn-errortype": "ValidationException"})

                sc = self._next_scenario(raw, token)
                rec.scenario = sc
                self._sleep(sc.get("first_byte_delay"))

                if sc.get("status"):
                        status = int(sc["status"])
                        etype, msg, reason = ERROR_DEFAULTS.get(status, ("InternalServerException", MSG_HIGH_LOAD,
                                                                         None))
                        if "body" in sc:
                                payload = sc["body"]
                        else:
                                payload = {"message": sc.get("message", msg)}
                                if "reason" in sc or status not in _NO_REASON:
                                        payload["reason"] = sc.get("reason", reason)
                        extra = {"x-amzn-errortype": etype}
                        if "retry_after" in sc:
                                extra["Retry-After"] = str(sc["retry_after"])
                        extra.update(sc.get("headers") or {})
                        rec.status, rec.outcome = status, "status"
                        return _send_json(h, status, payload, extra)

                rec.status, rec.outcome = 200, "stream"
                current = (rec.current or {}).get("content", "")
                names = [(t.get("toolSpecification") or {}).get("name") for t in _tools(rec.current or {})]
                try:
                        frames = build_frames(sc, current, names)
                except IndexError:
                        rec.errors.append("scenario names a $tool:N the request does not declare")
                        rec.status, rec.outcome = 500, "status"
                        return _send_json(h, 500, {"message": MSG_HIGH_LOAD},
                                          {"x-amzn-errortype": "InternalServerException"})
                self._stream(h, frames, sc)

        def _stream(self, h, frames, sc):
                h.send_response(200)
                h.send_header("Content-Type", EVENTSTREAM_CONTENT_TYPE)
                h.send_header("Transfer-Encoding", "chunked")
                h.send_header("x-amzn-requestid", str(uuid.uuid4()))
                h.end_headers()
                h.wfile.flush()
                self._sleep(sc.get("first_frame_delay"))

                limit = sc.get("cut_after_bytes")
                split = sc.get("split_frames")
                if split:
                        lo, hi = (1, 7) if split is True else (int(split[0]), int(split[1]))
                        rng = random.Random(sc.get("split_seed", 1))
                        split_delay = float(sc.get("split_delay", 0.001))
                delay = sc.get("chunk_delay")
                total = sum(len(f) for f in frames)
                sent = 0
                cut = False
                batch = bytearray()        # frames without delays or splits go out in big writes

                def write_chunk(data):
                        h.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")

                for i, frame in enumerate(frames):
                        if self._stopping.is_set():
                                cut = True
                                break
                        data = frame
                        if limit is not None and sent + len(data) >= limit:
                                data = data[:max(0, limit - sent)]
                                cut = limit < total
                        if i and delay:
                                if batch:
                                        write_chunk(bytes(batch))
                                        batch.clear()
                                self._sleep(delay)
                        if split:
                                if batch:
                                        write_chunk(bytes(batch))
                                        batch.clear()
                                pos = 0
                                while pos < len(data):
                                        n = rng.randint(lo, hi)
                                        write_chunk(data[pos:pos + n])
                                        pos += n
                                        if split_delay:
                                                time.sleep(split_delay)
                        else:
                                batch += data
                                if len(batch) >= 65536 or delay:
                                        write_chunk(bytes(batch))
                                        batch.clear()
                        sent += len(data)
                        if cut:
                                break
                if batch:
                        write_chunk(bytes(batch))
                if cut and not sc.get("cut_clean"):
                        # Abrupt end: no terminating chunk, connection closed under the client.
                        h.close_connection = True
                        try:
                                h.wfile.flush()
                                h.connection.shutdown(socket.SHUT_RDWR)
                        except OSError:
                                pass
                        return
                h.wfile.write(b"0\r\n\r\n")
                h.wfile.flush()

        # ---- control endpoint ----------------------------------------------------------------

        def _control_handler(self):
                fake = self

                class Handler(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def log_message(self, *args):
                                pass

                        def _body(self):
                                raw = fake._read_body(self)
                                return json.loads(raw) if raw.strip() else None

                        def do_GET(self):
                                p, _, q = self.path.partition("?")
                                if p == "/requests":
                                        match = urllib.parse.parse_qs(q).get("match", [None])[0]
                                        with fake.lock:
                                                out = [r.to_json() for r in fake.requests
                                                       if match is None or match.encode() in r.raw_body]
                                        return _send_json(self, 200, out)
                                if p == "/queue":
                                        return _send_json(self, 200, {"pending": fake.pending()})
                                if p == "/health":
                                        return _send_json(self, 200, {"url": fake.url, "control_url": fake.control_url})
                                return _send_json(self, 404, {"error": f"no such endpoint {p}"})

                        def do_POST(self):
                                p = self.path.split("?")[0]
                                try:
                                        body = self._body()
                                        if p == "/enqueue":
                                                scs = body if isinstance(body, list) else [body]
                                                fake.enqueue(*scs)
                                                return _send_json(self, 200, {"queued": len(scs)})
                                        if p == "/default":
                                                fake.set_default(body)
                                                return _send_json(self, 200, {})
                                        if p == "/reset":
                                                fake.reset()
                                                return _send_json(self, 200, {})
                                        if p == "/accept-token":
                                                fake.accept_token(body["token"])
                                                return _send_json(self, 200, {})
                                except (ValueError, KeyError, TypeError) as e:
                                        return _send_json(self, 400, {"error": str(e)})
                                return _send_json(self, 404, {"error": f"no such endpoint {p}"})

                return Handler


def _send_raw(h, status, data, headers):
        h.send_response(status)
        for k, v in headers.items():
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()


def _send_json(h, status, payload, headers=None):
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        try:
                _send_raw(h, status, data, hdrs)
        except (BrokenPipeError, ConnectionResetError):
                h.close_connection = True


def main(argv=None):
        ap = argparse.ArgumentParser(description="Fake Kiro chat service (loopback, for tests).")
        ap.add_argument("--token", action="append", default=[], help="accepted bearer token (repeatable)")
        ap.add_argument("--ready-file", help="write {url, control_url} as JSON here once listening")
        ap.add_argument("--no-control", action="store_true", help="no control endpoint")
        args = ap.parse_args(argv)

        fake = FakeKiroChat(tokens=args.token or ("ksk_test",), control=not args.no_control).start()
        info = json.dumps({"url": fake.url, "control_url": fake.control_url, "pid": os.getpid()})
        if args.ready_file:
                tmp = args.ready_file + ".tmp"
                with open(tmp, "w") as f:
                        f.write(info + "\n")
                os.rename(tmp, args.ready_file)
        else:
                print(info, flush=True)

        done = threading.Event()
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, lambda *_: done.set())
        while not done.wait(1):
                pass
        fake.stop()
        return 0


if __name__ == "__main__":
        sys.exit(main())
