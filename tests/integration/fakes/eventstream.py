# SPDX-License-Identifier: LGPL-2.1-or-later
"""AWS event-stream frames as Kiro sends them, for the fake Kiro server (KIRO-PROTOCOL A.7, A.11, B §4).

The same wire format as kiro-proxyd/proxyd-eventstream.c; tests/unit/golden/eventstream/*.bin are
written by this module (python3 eventstream.py --write-golden DIR) and the C unit test checks that its
own encoder produces the same bytes.

    from eventstream import KiroStream
    s = KiroStream()
    body = s.text("Hello") + s.tool_call("tooluse_1", "Read", '{"path":"a"}') + s.end()
"""

import json
import struct
import sys
import uuid as _uuid
import zlib

__all__ = [
    "BOOL_TRUE", "BOOL_FALSE", "BYTE", "SHORT", "INTEGER", "LONG", "BYTES", "STRING", "TIMESTAMP", "UUID",
    "encode_frame", "encode_event", "encode_exception", "encode_error", "decode_frames", "KiroStream",
    "DecodeError",
]

BOOL_TRUE, BOOL_FALSE, BYTE, SHORT, INTEGER, LONG, BYTES, STRING, TIMESTAMP, UUID = range(10)


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _encode_header(name: str, htype: int, value) -> bytes:
    n = name.encode("ascii")
    if not 1 <= len(n) <= 255:
        raise ValueError("header name must be 1..255 bytes")
    out = bytes([len(n)]) + n + bytes([htype])
    if htype in (BOOL_TRUE, BOOL_FALSE):
        return out
    if htype == BYTE:
        return out + struct.pack(">b", value)
    if htype == SHORT:
        return out + struct.pack(">h", value)
    if htype == INTEGER:
        return out + struct.pack(">i", value)
    if htype in (LONG, TIMESTAMP):
        return out + struct.pack(">q", value)
    if htype in (BYTES, STRING):
        v = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        if len(v) > 0xFFFF:
            raise ValueError("header value too long")
        return out + struct.pack(">H", len(v)) + v
    if htype == UUID:
        v = value.bytes if isinstance(value, _uuid.UUID) else bytes(value)
        if len(v) != 16:
            raise ValueError("uuid must be 16 bytes")
        return out + v
    raise ValueError(f"unknown header type {htype}")


def encode_frame(headers, payload: bytes = b"") -> bytes:
    """headers: iterable of (name, type, value); string headers may be given as (name, str)."""
    hb = b""
    for h in headers:
        if len(h) == 2:
            hb += _encode_header(h[0], STRING, h[1])
        else:
            hb += _encode_header(*h)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    total = 16 + len(hb) + len(payload)
    prelude = struct.pack(">II", total, len(hb))
    prelude += struct.pack(">I", _crc(prelude))
    body = prelude + hb + payload
    return body + struct.pack(">I", _crc(body))


def _json(obj) -> bytes:
    """Compact JSON, as Kiro sends it (A.11)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_event(event_type: str, payload) -> bytes:
    """An event frame with Kiro's header order: :event-type, :content-type, :message-type."""
    if not isinstance(payload, (bytes, str)):
        payload = _json(payload)
    return encode_frame([(":event-type", event_type), (":content-type", "application/json"),
                         (":message-type", "event")], payload)


def encode_exception(exception_type: str, payload) -> bytes:
    """An exception frame: :exception-type first (A.11); payload usually {"message", "reason"}."""
    if not isinstance(payload, (bytes, str)):
        payload = _json(payload)
    return encode_frame([(":exception-type", exception_type), (":content-type", "application/json"),
                         (":message-type", "exception")], payload)


def encode_error(error_code: str, error_message: str) -> bytes:
    return encode_frame([(":message-type", "error"), (":error-code", error_code),
                         (":error-message", error_message)])


class DecodeError(ValueError):
    pass


def decode_frames(data: bytes, max_frame: int = 16 * 1024 * 1024):
    """Decodes complete frames: returns a list of (headers dict, payload bytes). Raises DecodeError."""
    frames, off = [], 0
    while off < len(data):
        if len(data) - off < 12:
            raise DecodeError("truncated prelude")
        total, hlen, pcrc = struct.unpack_from(">III", data, off)
        if _crc(data[off:off + 8]) != pcrc:
            raise DecodeError("prelude CRC mismatch")
        if total < 16 or total > max_frame or hlen > total - 16:
            raise DecodeError("bad frame length")
        if len(data) - off < total:
            raise DecodeError("truncated frame")
        frame = data[off:off + total]
        if _crc(frame[:-4]) != struct.unpack_from(">I", frame, total - 4)[0]:
            raise DecodeError("message CRC mismatch")
        headers, p, end = {}, 12, 12 + hlen
        while p < end:
            nl = frame[p]
            name = frame[p + 1:p + 1 + nl].decode("ascii")
            t = frame[p + 1 + nl]
            p += 2 + nl
            if t in (BOOL_TRUE, BOOL_FALSE):
                v = t == BOOL_TRUE
            elif t == BYTE:
                v = struct.unpack_from(">b", frame, p)[0]; p += 1
            elif t == SHORT:
                v = struct.unpack_from(">h", frame, p)[0]; p += 2
            elif t == INTEGER:
                v = struct.unpack_from(">i", frame, p)[0]; p += 4
            elif t in (LONG, TIMESTAMP):
                v = struct.unpack_from(">q", frame, p)[0]; p += 8
            elif t in (BYTES, STRING):
                ln = struct.unpack_from(">H", frame, p)[0]
                v = frame[p + 2:p + 2 + ln]
                v = v.decode("utf-8") if t == STRING else bytes(v)
                p += 2 + ln
            elif t == UUID:
                v = _uuid.UUID(bytes=bytes(frame[p:p + 16])); p += 16
            else:
                raise DecodeError(f"unknown header type {t}")
            headers[name] = v
        frames.append((headers, bytes(frame[12 + hlen:total - 4])))
        off += total
    return frames


class KiroStream:
    """Builds the body of a generateAssistantResponse response in the shape of A.11."""

    def __init__(self, model_id: str = "claude-sonnet-4.5"):
        self.model_id = model_id

    def text(self, content: str) -> bytes:
        return encode_event("assistantResponseEvent", {"content": content})

    def reasoning(self, text: str = None, signature: str = None) -> bytes:
        p = {}
        if text is not None:
            p["text"] = text
        if signature is not None:
            p["signature"] = signature
        return encode_event("reasoningContentEvent", p)

    def tool_call(self, tool_use_id: str, name: str, arguments: str, fragment_size: int = 16) -> bytes:
        """{"name","toolUseId"}, {"input":"",…}, fragments each repeating name and id, then stop."""
        out = encode_event("toolUseEvent", {"name": name, "toolUseId": tool_use_id})
        out += encode_event("toolUseEvent", {"input": "", "name": name, "toolUseId": tool_use_id})
        for i in range(0, len(arguments), fragment_size):
            out += encode_event("toolUseEvent", {"input": arguments[i:i + fragment_size], "name": name,
                                                 "toolUseId": tool_use_id})
        out += encode_event("toolUseEvent", {"name": name, "stop": True, "toolUseId": tool_use_id})
        return out

    def metering(self, credits: float = 0.0123) -> bytes:
        return encode_event("meteringEvent", {"unit": "credit", "unitPlural": "credits", "usage": credits})

    def context_usage(self, percent: float = 12.5) -> bytes:
        return encode_event("contextUsageEvent", {"contextUsagePercentage": percent})

    def metadata(self, input_tokens: int, output_tokens: int) -> bytes:
        return encode_event("metadataEvent", {"tokenUsage": {
            "uncachedInputTokens": input_tokens, "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens}})

    def end(self, credits: float = 0.0123, percent: float = 12.5) -> bytes:
        """The closing events: meteringEvent then contextUsageEvent. Omit them to fake a truncated stream."""
        return self.metering(credits) + self.context_usage(percent)

    def exception(self, exception_type: str, message: str, reason: str = None) -> bytes:
        return encode_exception(exception_type, {"message": message, "reason": reason})


def golden_a11_stream() -> bytes:
    """The reference stream shared with tests/unit/test-eventstream.c."""
    s = KiroStream()
    return (s.text("Let me check.") + s.text("\n") + s.text("\n") + s.text("Ünïcödé ✓ 日本")
            + s.tool_call("tooluse_Abc123", "Read", '{"file_path":"/src/main.c","limit":100}')
            + s.metering(0.0421) + s.context_usage(78.56))


def golden_all_header_types() -> bytes:
    return encode_frame([
        ("bool-true", BOOL_TRUE, None), ("bool-false", BOOL_FALSE, None), ("byte", BYTE, -7),
        ("short", SHORT, -300), ("integer", INTEGER, 0x12345678), ("long", LONG, -0x123456789A),
        ("bytes", BYTES, b"\x00\x01\xfe\xff"), ("string", STRING, "héllo"),
        ("timestamp", TIMESTAMP, 1767225600000), ("uuid", UUID, bytes(range(16))),
    ], b"payload")


def _main(argv):
    if len(argv) == 3 and argv[1] == "--write-golden":
        import os
        for name, data in (("a11-stream.bin", golden_a11_stream()),
                           ("all-header-types.bin", golden_all_header_types())):
            with open(os.path.join(argv[2], name), "wb") as f:
                f.write(data)
        return 0
    if len(argv) == 3 and argv[1] == "--write-corpus":
        import os
        s = KiroStream()
        seeds = {
            "a11-stream": golden_a11_stream(),
            "all-header-types": golden_all_header_types(),
            "exception": s.text("partial") + s.exception("ThrottlingException", "Too many requests",
                                                         "USER_REQUEST_RATE_EXCEEDED"),
            "error-frame": encode_error("InternalServerError", "boom"),
            "content-length": s.text("long") + s.exception("ContentLengthExceededException", "too long"),
            "reasoning": s.reasoning("hmm", None) + s.reasoning(None, "c2ln") + s.text("ok") + s.end(),
            "metadata": s.text("x") + s.metadata(10, 2) + s.end(),
            "json-error": b'{"__type":"com.amazon.aws.codewhisperer#ValidationException",'
                          b'"message":"Improperly formed request.","reason":null}',
            "truncated": golden_a11_stream()[:-7],
        }
        # tests/fuzz/fuzz-eventstream.c takes the first byte as the feeding chunk size (bits 0-6, 0 = all
        # at once) and a flag to fix up CRCs (bit 7): each seed is written once without, once with it.
        for i, (name, data) in enumerate(seeds.items()):
            chunk = (0, 1, 7, 13)[i % 4]
            with open(os.path.join(argv[2], name), "wb") as f:
                f.write(bytes([chunk]) + data)
            with open(os.path.join(argv[2], name + "-crcfix"), "wb") as f:
                f.write(bytes([0x80 | chunk]) + data)
        return 0
    # Self-test: what we encode decodes to the same thing.
    frames = decode_frames(golden_a11_stream())
    assert frames[0][0] == {":event-type": "assistantResponseEvent", ":content-type": "application/json",
                            ":message-type": "event"}
    assert json.loads(frames[0][1]) == {"content": "Let me check."}
    assert [json.loads(p).get("content") for _, p in frames[1:3]] == ["\n", "\n"]
    h, p = decode_frames(golden_all_header_types())[0]
    assert h["integer"] == 0x12345678 and h["string"] == "héllo" and p == b"payload"
    print("eventstream.py self-test ok")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
