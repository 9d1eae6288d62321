# SPDX-License-Identifier: LGPL-2.1-or-later
"""Loopback fakes of the device-authorization logins (RFC 8628), speaking the wire formats of
KIRO-PROTOCOL.md:

  B §2.4  AWS SSO OIDC under /oidc: POST /client/register, /device_authorization, /token
          (camelCase JSON; errors HTTP 400 {"error": "authorization_pending" | "slow_down" |
          "expired_token" | "access_denied", "error_description": ...})
  B §2.5  the Kiro auth service's device flow under /kiro: POST /oauth/device/authorization
          {clientId, loginProvider} -> {..., expiresInMilliseconds, intervalInMilliseconds}; POST
          /oauth/device/poll -> HTTP 200 {"status": "authorization_pending"} until done
  B §7    Kimi under /kimi: POST /api/oauth/device_authorization and /api/oauth/token, form-encoded,
          snake_case answers; the token endpoint also refreshes (grant_type=refresh_token)

Each poll consumes one outcome of `plan` (a list); when it is empty, `default` applies ("pending"):
    "pending", "slow_down", "denied", "expired", "ok", "500", "html", "garbage"
Every request is recorded in `requests` (time, path, headers, parsed body, status)."""

import dataclasses
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KIMI_CLIENT_ID = "17e5f671-d194-4dfb-9706-5516cb48c098"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class _Server(ThreadingHTTPServer):
        daemon_threads = True


@dataclasses.dataclass
class Request:
        time: float
        path: str
        headers: dict
        content_type: str
        body: dict
        status: int
        outcome: str


class FakeLogin:
        def __init__(self):
                self.lock = threading.Lock()
                self.requests = []
                self.plan = []
                self.default = "pending"
                self.interval = 1              # seconds (the social flow answers it in milliseconds)
                self.expires_in = 60
                self.registrations = {}        # clientId -> clientSecret
                self.devices = {}              # deviceCode -> flow
                self.issued = []               # (kind, access, refresh)
                self.kimi_refresh_tokens = set()
                self.kimi_rotate = True        # a Kimi refresh answers a new refresh token
                self.kimi_refresh_status = 200 # or 401, 403, 500
                self.profile_arn = "arn:aws:codewhisperer:us-east-1:699475941385:profile/FAKE"
                self.server = _Server(("127.0.0.1", 0), self._handler())
                self.port = self.server.server_address[1]
                self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
                self.thread.start()

        base = property(lambda self: f"http://127.0.0.1:{self.port}")
        # kiro-authd takes "{region}" only in a host name, so the fakes live under fixed paths.
        oidc_url = property(lambda self: f"{self.base}/oidc")
        kiro_url = property(lambda self: f"{self.base}/kiro")
        kimi_url = property(lambda self: f"{self.base}/kimi")

        def endpoints(self):
                return {"OIDCURL": self.oidc_url, "KiroAuthURL": self.kiro_url, "KimiAuthURL": self.kimi_url}

        def close(self):
                self.server.shutdown()
                self.server.server_close()

        def polls(self):
                """The poll requests, in order."""
                with self.lock:
                        return [r for r in self.requests
                                if r.path.endswith("/oauth/device/poll")
                                or (r.path.endswith("/token") and r.body.get("grantType") == DEVICE_GRANT)
                                or r.body.get("grant_type") == DEVICE_GRANT]

        def requests_to(self, suffix):
                with self.lock:
                        return [r for r in self.requests if r.path.endswith(suffix)]

        def _next(self):
                with self.lock:
                        return self.plan.pop(0) if self.plan else self.default

        def _handler(fake):
                class H(BaseHTTPRequestHandler):
                        protocol_version = "HTTP/1.1"

                        def log_message(self, *a):
                                pass

                        def _send(self, status, obj=None, raw=None, ctype="application/json", outcome=""):
                                data = raw if raw is not None else json.dumps(obj).encode()
                                self.send_response(status)
                                self.send_header("Content-Type", ctype)
                                self.send_header("Content-Length", str(len(data)))
                                self.end_headers()
                                self.wfile.write(data)
                                with fake.lock:
                                        fake.requests.append(Request(time.monotonic(), self.path,
                                                                     {k.lower(): v for k, v in self.headers.items()},
                                                                     self.headers.get("Content-Type", ""), self.body,
                                                                     status, outcome))

                        def _error(self, code, outcome=None):
                                self._send(400, {"error": code, "error_description": f"fake: {code}"},
                                           outcome=outcome or code)

                        def do_POST(self):
                                n = int(self.headers.get("Content-Length", "0"))
                                raw = self.rfile.read(n).decode()
                                ctype = self.headers.get("Content-Type", "")
                                if ctype.startswith("application/x-www-form-urlencoded"):
                                        self.body = dict(urllib.parse.parse_qsl(raw))
                                else:
                                        try:
                                                self.body = json.loads(raw) if raw else {}
                                        except ValueError:
                                                self.body = {"_raw": raw}
                                p = self.path
                                if p.startswith("/oidc/"):
                                        return self.oidc(p[len("/oidc/"):])
                                if p.startswith("/kiro/"):
                                        return self.social(p[len("/kiro/"):])
                                if p.startswith("/kimi/"):
                                        return self.kimi(p[len("/kimi/"):])
                                self._send(404, {"message": "not found"})

                        # ---- the device authorization answers ----

                        def _new_device(self, flow):
                                dc = "dc-" + secrets.token_hex(8)
                                code = secrets.token_hex(2).upper() + "-" + secrets.token_hex(2).upper()
                                with fake.lock:
                                        fake.devices[dc] = flow
                                return dc, code

                        def _poll_outcome(self, dc):
                                if dc not in fake.devices:
                                        return "invalid_grant"
                                return fake._next()

                        def _tokens(self, kind):
                                at, rt = "at-" + secrets.token_hex(16), "rt-" + secrets.token_hex(16)
                                with fake.lock:
                                        fake.issued.append((kind, at, rt))
                                        if kind == "kimi":
                                                fake.kimi_refresh_tokens.add(rt)
                                return at, rt

                        def _odd(self, outcome):
                                """The answers that are no OAuth answer at all."""
                                if outcome == "500":
                                        self._send(500, {"message": "internal error"}, outcome=outcome)
                                elif outcome == "html":
                                        self._send(200, raw=b"<html><body>Sign in</body></html>", ctype="text/html",
                                                   outcome=outcome)
                                elif outcome == "garbage":
                                        self._send(200, raw=b"\x00\xffnot json{", ctype="application/json",
                                                   outcome=outcome)
                                else:
                                        return False
                                return True

                        def _oauth_error(self, outcome):
                                code = {"pending": "authorization_pending", "slow_down": "slow_down",
                                        "denied": "access_denied", "expired": "expired_token"}.get(outcome, outcome)
                                self._error(code, outcome)

                        def oidc(self, path):
                                b = self.body
                                if path == "client/register":
                                        if b.get("clientType") != "public" or DEVICE_GRANT not in b.get("grantTypes", []):
                                                return self._error("invalid_request")
                                        cid, secret = "client-" + secrets.token_hex(6), "secret-" + secrets.token_hex(16)
                                        with fake.lock:
                                                fake.registrations[cid] = secret
                                        now = int(time.time())
                                        return self._send(200, {"clientId": cid, "clientSecret": secret,
                                                                "clientIdIssuedAt": now,
                                                                "clientSecretExpiresAt": now + 90 * 86400},
                                                          outcome="registered")
                                if path == "device_authorization":
                                        if fake.registrations.get(b.get("clientId")) != b.get("clientSecret") \
                                                        or not b.get("startUrl"):
                                                return self._error("invalid_client")
                                        dc, code = self._new_device("oidc")
                                        return self._send(200, {
                                                "deviceCode": dc, "userCode": code,
                                                "verificationUri": "https://device.sso.us-east-1.amazonaws.com/",
                                                "verificationUriComplete":
                                                        f"https://device.sso.us-east-1.amazonaws.com/?user_code={code}",
                                                "expiresIn": fake.expires_in, "interval": fake.interval},
                                                outcome="authorized")
                                if path == "token":
                                        if fake.registrations.get(b.get("clientId")) != b.get("clientSecret"):
                                                return self._error("invalid_client")
                                        if b.get("grantType") != DEVICE_GRANT:
                                                return self._error("unsupported_grant_type")
                                        o = self._poll_outcome(b.get("deviceCode"))
                                        if self._odd(o):
                                                return
                                        if o != "ok":
                                                return self._oauth_error(o)
                                        at, rt = self._tokens("oidc")
                                        return self._send(200, {"accessToken": at, "refreshToken": rt,
                                                                "tokenType": "Bearer", "expiresIn": 3600},
                                                          outcome="ok")
                                self._send(404, {"message": "not found"})

                        def social(self, path):
                                b = self.body
                                if path == "oauth/device/authorization":
                                        if b.get("clientId") != "kiro-cli" or b.get("loginProvider") not in ("Google", "Github"):
                                                return self._error("invalid_request")
                                        dc, code = self._new_device(b["loginProvider"])
                                        return self._send(200, {
                                                "deviceCode": dc, "userCode": code,
                                                "verificationUri": "https://app.kiro.dev/device",
                                                "verificationUriComplete": f"https://app.kiro.dev/device?code={code}",
                                                "expiresInMilliseconds": fake.expires_in * 1000,
                                                "intervalInMilliseconds": int(fake.interval * 1000)},
                                                outcome="authorized")
                                if path == "oauth/device/poll":
                                        o = self._poll_outcome(b.get("deviceCode"))
                                        if self._odd(o):
                                                return
                                        if o == "pending":
                                                return self._send(200, {"status": "authorization_pending"}, outcome=o)
                                        if o == "slow_down":
                                                return self._send(200, {"status": "slow_down"}, outcome=o)
                                        if o != "ok":
                                                return self._oauth_error(o)
                                        at, rt = self._tokens("social")
                                        return self._send(200, {"accessToken": at, "refreshToken": rt,
                                                                "profileArn": fake.profile_arn,
                                                                "identityProvider": fake.devices.get(b.get("deviceCode")),
                                                                "expiresIn": 3600}, outcome="ok")
                                self._send(404, {"message": "not found"})

                        def kimi(self, path):
                                b = self.body
                                if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                                        return self._error("invalid_request")
                                if b.get("client_id") != KIMI_CLIENT_ID:
                                        return self._error("invalid_client")
                                if path == "api/oauth/device_authorization":
                                        dc, code = self._new_device("kimi")
                                        return self._send(200, {
                                                "device_code": dc, "user_code": code,
                                                "verification_uri": "https://www.kimi.com/code/authorize_device",
                                                "verification_uri_complete":
                                                        f"https://www.kimi.com/code/authorize_device?user_code={code}",
                                                "expires_in": fake.expires_in, "interval": fake.interval},
                                                outcome="authorized")
                                if path != "api/oauth/token":
                                        return self._send(404, {"message": "not found"})
                                if b.get("grant_type") == "refresh_token":
                                        if fake.kimi_refresh_status != 200:
                                                return self._send(fake.kimi_refresh_status,
                                                                  {"error": "unauthorized",
                                                                   "error_description": "fake: refused"},
                                                                  outcome=str(fake.kimi_refresh_status))
                                        if b.get("refresh_token") not in fake.kimi_refresh_tokens:
                                                return self._error("invalid_grant")
                                        at = "at-" + secrets.token_hex(16)
                                        ans = {"access_token": at, "expires_in": 900, "scope": "kimi-code",
                                               "token_type": "Bearer"}
                                        if fake.kimi_rotate:
                                                rt = "rt-" + secrets.token_hex(16)
                                                with fake.lock:
                                                        fake.kimi_refresh_tokens.discard(b["refresh_token"])
                                                        fake.kimi_refresh_tokens.add(rt)
                                                ans["refresh_token"] = rt
                                        return self._send(200, ans, outcome="refreshed")
                                if b.get("grant_type") != DEVICE_GRANT:
                                        return self._error("unsupported_grant_type")
                                o = self._poll_outcome(b.get("device_code"))
                                if self._odd(o):
                                        return
                                if o != "ok":
                                        return self._oauth_error(o)
                                at, rt = self._tokens("kimi")
                                return self._send(200, {"access_token": at, "refresh_token": rt, "expires_in": 900,
                                                        "scope": "kimi-code", "token_type": "Bearer"}, outcome="ok")
                return H
