# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fake Kimi chat service (KIRO-PROTOCOL.md B §7): `POST <base>/chat/completions` on loopback, OpenAI-style,
answering `stream: true` requests with server-sent events the way Kimi does (chat.completion.chunk
objects with delta.reasoning_content, delta.content and delta.tool_calls fragments, finish_reason, usage
inside the last choice as Moonshot sends it, then `data: [DONE]`), in threads inside a test process.

Every request is recorded (path, headers with lower-case names, parsed JSON body, status). A bearer
token is accepted when `accept(token)` says so (default: any non-empty token); a refused one gets 401
{"error": {"type": "invalid_authentication_error", "message": "Invalid Authentication"}} as Kimi answers;
so is a token in `rejected` (superseded or revoked server-side), and every token while `refuse_next` > 0.

Answers are scripted with a queue of scenarios, one consumed per authorized request (default: a short
text answer). Scenario keys:
  reasoning   [str]: delta.reasoning_content chunks
  text        [str]: delta.content chunks
  tool_calls  [{id, name, args: [str]}]: per call, a first delta {index, id, type, function{name,
              arguments:""}} then one delta per args fragment
  finish      finish_reason (default "tool_calls" when there are tool calls, else "stop")
  usage       {prompt_tokens, completion_tokens, total_tokens} (default: small numbers)
  status      int: answer that status with `body` (str or object; default a Kimi error object) and
              `ctype` (default application/json) instead of a stream
  cut_after   N: send only the first N chunks, then close the connection without the final chunk"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE_PATH = "/coding/v1"


class RecordedRequest:
        def __init__(self, path, headers, body, raw):
                self.path = path
                self.headers = headers
                self.body = body
                self.raw = raw
                self.status = None

        def __repr__(self):
                return f"<KimiRequest {self.path} {self.status}>"


class _Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True


class FakeKimiChat:
        def __init__(self, accept=None):
                self.accept = accept or (lambda t: bool(t))
                self.lock = threading.Lock()
                self.queue = []
                self.requests = []
                self.refuse_next = 0            # refuse this many authorized requests with 401 first
                self.rejected = set()           # tokens refused with 401
                self.server = _Server(("127.0.0.1", 0), self._handler())
                self.port = self.server.server_address[1]
                self.thread = None

        @property
        def url(self):
                return f"http://127.0.0.1:{self.port}{BASE_PATH}"

        def start(self):
                self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
                self.thread.start()
                return self

        def stop(self):
                self.server.shutdown()
                self.server.server_close()

        def enqueue(self, *scenarios):
                with self.lock:
                        self.queue.extend(scenarios)

        def last(self):
                with self.lock:
                        return self.requests[-1] if self.requests else None

        def completed(self):
                with self.lock:
                        return [r for r in self.requests if r.status == 200]

        def _next(self):
                with self.lock:
                        return self.queue.pop(0) if self.queue else {"text": ["Hello ", "from Kimi."]}

        @staticmethod
        def chunks(sc, model):
                """The chat.completion.chunk objects of a scenario, in order."""
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                        "model": model}

                def chunk(delta, finish=None, usage=None):
                        c = {"index": 0, "delta": delta, "finish_reason": finish}
                        if usage:
                                c["usage"] = usage
                        return dict(base, choices=[c])

                out = [chunk({"role": "assistant", "content": ""})]
                for r in sc.get("reasoning", []):
                        out.append(chunk({"reasoning_content": r}))
                for t in sc.get("text", []):
                        out.append(chunk({"content": t}))
                for i, tc in enumerate(sc.get("tool_calls", [])):
                        out.append(chunk({"tool_calls": [{"index": i, "id": tc["id"], "type": "function",
                                                          "function": {"name": tc["name"], "arguments": ""}}]}))
                        for a in tc.get("args", []):
                                out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": a}}]}))
                finish = sc.get("finish") or ("tool_calls" if sc.get("tool_calls") else "stop")
                usage = sc.get("usage") or {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                out.append(chunk({}, finish, usage))
                return out

        def _handler(fake):
                class H(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def log_message(self, *a):
                                pass

                        def _json(self, status, obj, ctype="application/json"):
                                data = obj.encode() if isinstance(obj, str) else json.dumps(obj).encode()
                                self.send_response(status)
                                self.send_header("Content-Type", ctype)
                                self.send_header("Content-Length", str(len(data)))
                                self.end_headers()
                                self.wfile.write(data)

                        def _chunk(self, data):
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                                self.wfile.flush()

                        def do_POST(self):
                                n = int(self.headers.get("Content-Length") or 0)
                                raw = self.rfile.read(n)
                                try:
                                        body = json.loads(raw)
                                except ValueError:
                                        body = None
                                rec = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, raw)
                                with fake.lock:
                                        fake.requests.append(rec)
                                if self.path != BASE_PATH + "/chat/completions":
                                        rec.status = 404
                                        return self._json(404, {"error": {"type": "not_found", "message": "no route"}})
                                auth = rec.headers.get("authorization", "")
                                token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
                                refuse = False
                                with fake.lock:
                                        if fake.refuse_next > 0 and token:
                                                fake.refuse_next -= 1
                                                refuse = True
                                if refuse or token in fake.rejected or not fake.accept(token):
                                        rec.status = 401
                                        return self._json(401, {"error": {"type": "invalid_authentication_error",
                                                                          "message": "Invalid Authentication"}})
                                if not isinstance(body, dict) or not isinstance(body.get("messages"), list) \
                                                or not body.get("model"):
                                        rec.status = 400
                                        return self._json(400, {"error": {"type": "invalid_request_error",
                                                                          "message": "Invalid request"}})
                                sc = fake._next()
                                if "status" in sc:
                                        rec.status = sc["status"]
                                        b = sc.get("body", {"error": {"type": "server_error", "message": "boom"}})
                                        return self._json(sc["status"], b, sc.get("ctype", "application/json"))
                                rec.status = 200
                                self.send_response(200)
                                self.send_header("Content-Type", "text/event-stream")
                                self.send_header("Transfer-Encoding", "chunked")
                                self.end_headers()
                                chunks = fake.chunks(sc, body["model"])
                                cut = sc.get("cut_after")
                                for i, c in enumerate(chunks):
                                        if cut is not None and i >= cut:
                                                # Gone mid-answer: no [DONE], no terminating chunk.
                                                self.close_connection = True
                                                return
                                        self._chunk(b"data: " + json.dumps(c).encode() + b"\n\n")
                                self._chunk(b"data: [DONE]\n\n")
                                self._chunk(b"")
                return H
