# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fake Kiro usage endpoint (getUsageLimits, KIRO-PROTOCOL.md B §5.3) on loopback, in a thread.

    GET /getUsageLimits?origin=AI_EDITOR&resourceType=AGENTIC_REQUEST[&profileArn=<urlenc>]
    Authorization: Bearer <access token>

It answers `self.answer` (a dict sent as JSON), or what `mode` says: "ok", "garbage" (not JSON),
"wrong-types" (JSON with strings for numbers), "403" (AccessDeniedException), "hang" (no answer for
`hang` seconds). Every request is recorded with its path, query, headers.
"""

import dataclasses
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
        daemon_threads = True


@dataclasses.dataclass
class Request:
        time: float
        path: str
        query: dict
        headers: dict


def answer(*, used=412.5, limit=1000.0, next_reset=None, title="KIRO PRO", kind="Q_DEVELOPER_STANDALONE_PRO",
           bonuses=(), trial=None):
        next_reset = next_reset if next_reset is not None else time.time() + 12 * 86400
        b = {"resourceType": "CREDIT", "displayName": "Credit", "currentUsage": int(used),
             "currentUsageWithPrecision": used, "usageLimit": int(limit), "usageLimitWithPrecision": limit,
             "currentOverages": 0, "nextDateReset": next_reset,
             "bonuses": [dict(x) for x in bonuses]}
        if trial:
                b["freeTrialInfo"] = dict(trial)
        return {"subscriptionInfo": {"subscriptionTitle": title, "type": kind},
                "userInfo": {"email": "someone@example.com"},
                "nextDateReset": next_reset, "daysUntilReset": 12,
                "usageBreakdownList": [b], "overageConfiguration": {"overageStatus": "DISABLED"}}


class FakeUsage:
        def __init__(self):
                self.answer = answer()
                self.mode = "ok"
                self.hang = 15.0
                self.requests = []
                self._lock = threading.Lock()
                outer = self

                class Handler(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def log_message(self, *args):
                                pass

                        def do_GET(self):
                                outer._handle(self)

                self.server = _Server(("127.0.0.1", 0), Handler)
                self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
                self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
                self.thread.start()

        def _handle(self, h):
                parsed = urllib.parse.urlsplit(h.path)
                with self._lock:
                        self.requests.append(Request(time.time(), parsed.path,
                                                     urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
                                                     {k.lower(): v for k, v in h.headers.items()}))
                if parsed.path != "/getUsageLimits":
                        return self._send(h, 404, b'{"message":"not found"}')
                if self.mode == "hang":
                        time.sleep(self.hang)
                        h.close_connection = True
                        return
                if self.mode == "garbage":
                        return self._send(h, 200, b"<html>this is not JSON</html>")
                if self.mode == "wrong-types":
                        return self._send(h, 200, json.dumps({"usageBreakdownList": [
                                {"resourceType": "CREDIT", "currentUsageWithPrecision": "lots",
                                 "usageLimitWithPrecision": 1e300}]}).encode())
                if self.mode == "403":
                        return self._send(h, 403, json.dumps({"__type": "AccessDeniedException",
                                                              "message": "User is not authorized"}).encode())
                return self._send(h, 200, json.dumps(self.answer).encode())

        @staticmethod
        def _send(h, status, body):
                try:
                        h.send_response(status)
                        h.send_header("Content-Type", "application/json")
                        h.send_header("Content-Length", str(len(body)))
                        h.end_headers()
                        h.wfile.write(body)
                except OSError:
                        pass

        def count(self):
                with self._lock:
                        return len(self.requests)

        def close(self):
                self.server.shutdown()
                self.server.server_close()
