#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The traffic of bench/soak (see there): N client threads for a duration, mixed requests, upstream cuts
scripted through the fake's control endpoint (one scenario per request, matched by a nonce in the
prompt), client hang-ups; RSS and fds of kiro-proxyd sampled every 10 s. Prints a summary; exit 1 when
a request ended unexpectedly or the fds crept."""

import argparse
import http.client
import json
import os
import random
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request

MODEL = "claude-sonnet-4.5"
TEXTS = ["soak ", "answer ", "in ", "a ", "few ", "pieces "]
FULL = "".join(TEXTS)
FRAME_BYTES_MAX = 900   # the whole answer's event stream is shorter than this


def proc(pid):
        rss = 0
        for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Driver:
        def __init__(self, a):
                self.a = a
                u = urllib.parse.urlparse(a.proxy)
                self.host, self.port = u.hostname, u.port
                self.lock = threading.Lock()
                self.counts = {}
                self.bad = []
                self.stop_at = time.monotonic() + a.duration

        def count(self, kind):
                with self.lock:
                        self.counts[kind] = self.counts.get(kind, 0) + 1

        def fail(self, what):
                with self.lock:
                        self.bad.append(what)
                        self.counts["UNEXPECTED"] = self.counts.get("UNEXPECTED", 0) + 1

        def enqueue(self, scenario):
                req = urllib.request.Request(self.a.control + "/enqueue", data=json.dumps(scenario).encode(),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=10).read()

        def post(self, path, body, timeout=60):
                c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                try:
                        c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                        r = c.getresponse()
                        return r.status, r.getheader("content-type", ""), r.read()
                finally:
                        c.close()

        def one(self, rnd):
                kind = rnd.choice(["openai", "openai-stream", "anthropic", "anthropic-stream", "count", "models",
                                   "healthz"])
                fault = rnd.random()
                tag = f"soak-{os.urandom(6).hex()}"
                if kind == "healthz" or kind == "models":
                        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
                        try:
                                c.request("GET", "/healthz" if kind == "healthz" else "/v1/models")
                                r = c.getresponse()
                                r.read()
                                if r.status != 200:
                                        return self.fail(f"{kind}: {r.status}")
                        finally:
                                c.close()
                        return self.count(kind)
                path = "/v1/chat/completions" if kind.startswith("openai") else \
                        "/v1/messages" if kind.startswith("anthropic") else "/v1/messages/count_tokens"
                body = {"model": MODEL, "messages": [{"role": "user", "content": f"{tag} go"}]}
                if path == "/v1/messages":
                        body["max_tokens"] = 100
                stream = kind.endswith("stream")
                if stream:
                        body["stream"] = True
                if kind == "count":
                        st, _, data = self.post(path, body)
                        if st != 200 or json.loads(data).get("input_tokens", 0) <= 0:
                                return self.fail(f"count: {st} {data[:200]!r}")
                        return self.count(kind)

                if fault < 0.125:
                        self.enqueue({"match": tag, "text": TEXTS, "cut_after_bytes": rnd.randrange(FRAME_BYTES_MAX)})
                        st, ctype, data = self.post(path, body)
                        text = data.decode("utf-8", errors="strict")
                        if st == 200 and not stream:
                                return self.count(kind + " cut-complete")       # cut after the content
                        if st >= 500 and ctype.startswith("application/json") and "error" in json.loads(text):
                                return self.count(kind + " cut-error")
                        if st == 200 and stream and ("error" in text or "[DONE]" in text or "message_stop" in text):
                                return self.count(kind + " cut-stream-ended")
                        return self.fail(f"{kind} cut: {st} {text[-200:]!r}")
                if fault < 0.25:
                        # The client hangs up after the first bytes of the answer.
                        self.enqueue({"match": tag, "text": TEXTS, "chunk_delay": 0.05})
                        data = json.dumps(body).encode()
                        s = socket.create_connection((self.host, self.port), timeout=30)
                        try:
                                s.sendall(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
                                if not s.recv(64):
                                        return self.fail(f"{kind} hang-up: no answer at all")
                        finally:
                                s.close()
                        return self.count(kind + " client-hangup")
                self.enqueue({"match": tag, "text": TEXTS})
                st, _, data = self.post(path, body)
                text = data.decode("utf-8", errors="strict")
                if st != 200:
                        return self.fail(f"{kind}: {st} {text[:200]!r}")
                if stream:
                        ok = ("[DONE]" in text) if path == "/v1/chat/completions" else ("message_stop" in text)
                        got = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                                      for line in text.splitlines()
                                      if line.startswith("data: {") and '"choices"' in line) \
                                if path == "/v1/chat/completions" else \
                                "".join(json.loads(line[6:])["delta"].get("text", "") for line in text.splitlines()
                                        if line.startswith("data: {") and '"content_block_delta"' in line)
                else:
                        d = json.loads(text)
                        got = d["choices"][0]["message"]["content"] if path == "/v1/chat/completions" else \
                                "".join(b.get("text", "") for b in d["content"])
                        ok = True
                if not ok or got != FULL:
                        return self.fail(f"{kind}: incomplete {text[-200:]!r}")
                self.count(kind)

        def worker(self, i):
                rnd = random.Random(self.a.seed + i)
                while time.monotonic() < self.stop_at:
                        try:
                                self.one(rnd)
                        except Exception as e:  # noqa: BLE001 — every surprise is a finding
                                self.fail(f"exception: {e!r}")


def main():
        ap = argparse.ArgumentParser()
        ap.add_argument("--proxy", required=True)
        ap.add_argument("--control", required=True)
        ap.add_argument("--pid", type=int, required=True)
        ap.add_argument("--duration", type=float, default=600)
        ap.add_argument("--concurrency", type=int, default=32)
        ap.add_argument("--seed", type=int, default=int(os.environ.get("KIROD_SOAK_SEED", random.randrange(1 << 30))))
        a = ap.parse_args()

        d = Driver(a)
        # Warm-up, then the baseline.
        warm = Driver(argparse.Namespace(**{**vars(a), "duration": 2, "concurrency": 1}))
        warm.worker(0)
        time.sleep(2)
        base_rss, base_fds = proc(a.pid)
        samples = [(0.0, base_rss, base_fds)]
        threads = [threading.Thread(target=d.worker, args=(i,), daemon=True) for i in range(a.concurrency)]
        t0 = time.monotonic()
        d.stop_at = t0 + a.duration
        for t in threads:
                t.start()
        while any(t.is_alive() for t in threads):
                time.sleep(min(10, max(0.1, d.stop_at - time.monotonic())))
                samples.append((time.monotonic() - t0, *proc(a.pid)))
        for t in threads:
                t.join()
        time.sleep(3)
        end_rss, end_fds = proc(a.pid)
        samples.append((time.monotonic() - t0, end_rss, end_fds))

        total = sum(d.counts.values())
        print(f"soak: {a.duration:.0f} s, {a.concurrency} clients, seed {a.seed}: {total} requests")
        for k in sorted(d.counts):
                print(f"  {k:32} {d.counts[k]}")
        print("  t(s)    RSS(KiB)  fds")
        for t, rss, fds in samples:
                print(f"  {t:6.0f} {rss:9d} {fds:5d}")
        for b in d.bad[:20]:
                print("  UNEXPECTED:", b)
        bad = bool(d.bad)
        if end_fds > base_fds + 16:
                print(f"soak: fds crept from {base_fds} to {end_fds}")
                bad = True
        print(f"soak: {'FAIL' if bad else 'PASS'} (RSS {base_rss} -> max {max(s[1] for s in samples)} -> "
              f"{end_rss} KiB, fds {base_fds} -> max {max(s[2] for s in samples)} -> {end_fds})")
        return 1 if bad else 0


if __name__ == "__main__":
        sys.exit(main())
