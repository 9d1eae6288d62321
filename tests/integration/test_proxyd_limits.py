# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's limits end to end (DESIGN.md §3 "Limits", issue 3 "Tests"): request body size
(MaxBodyBytes=), the upstream payload guard (MaxUpstreamPayloadBytes=), JSON nesting depth, a client that
trickles its request (RequestTimeoutSec=), idle connections (IdleTimeoutSec=), MaxConnections= and 5000
idle connections open at once, with the proxy still serving. The stack is proxyd_fixture.py."""

import errno
import json
import os
import re
import resource
import select
import socket
import struct
import threading
import time

import pytest

from kirodtest import wait_until
from proxyd_fixture import CHAT_PATH, needs_proxyd, proxy_stack, stack  # noqa: F401

pytestmark = needs_proxyd

MODEL = "claude-sonnet-4.5"
MiB = 1024 * 1024


def chat(content, **kw):
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        body.update(kw)
        return body


def raw_request(port, head, body_size, *, chunked=False, piece=256 * 1024, timeout=60):
        """Sends head (request line and headers, without the blank line) and a body of body_size bytes of
        JSON-ish filler, reading the response at the same time: the server may answer (413) before the
        body is through, and close. Returns (status, headers, body bytes, bytes of the body sent)."""
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setblocking(False)
        prefix = b'{"model":"claude-sonnet-4.5","messages":[{"role":"user","content":"'
        suffix = b'"}]}'
        filler = b"a" * piece
        out = bytearray(head.encode() + (b"Transfer-Encoding: chunked\r\n" if chunked else
                                          f"Content-Length: {body_size}\r\n".encode()) + b"\r\n")
        remaining = body_size
        first = True
        sent_body = 0
        resp = bytearray()
        deadline = time.monotonic() + timeout
        try:
                while time.monotonic() < deadline:
                        if not out and remaining > 0:
                                n = min(piece, remaining)
                                if first:
                                        data = (prefix + filler)[:n]
                                        first = False
                                elif remaining - n == 0:
                                        data = (filler[:max(0, n - len(suffix))] + suffix)[-n:]
                                else:
                                        data = filler[:n]
                                remaining -= n
                                sent_body += n
                                out += (b"%x\r\n" % len(data) + data + b"\r\n") if chunked else data
                                if chunked and remaining == 0:
                                        out += b"0\r\n\r\n"
                        r, w, _ = select.select([s], [s] if out else [], [], 1.0)
                        if r:
                                try:
                                        d = s.recv(65536)
                                except (ConnectionResetError, BlockingIOError):
                                        d = b""
                                if not d:
                                        break
                                resp += d
                                if _complete(resp):
                                        break
                        if w and out:
                                try:
                                        k = s.send(out)
                                        del out[:k]
                                except (BrokenPipeError, ConnectionResetError):
                                        out.clear()
                                        remaining = 0
        finally:
                s.close()
        head_end = resp.find(b"\r\n\r\n")
        assert head_end > 0, f"no HTTP response: {bytes(resp[:300])!r}"
        lines = resp[:head_end].decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        return status, headers, bytes(resp[head_end + 4:]), sent_body


def _complete(resp):
        i = resp.find(b"\r\n\r\n")
        if i < 0:
                return False
        m = re.search(rb"content-length:\s*(\d+)", resp[:i], re.I)
        return bool(m) and len(resp) - i - 4 >= int(m.group(1))


def served(s, text="still here"):
        s.chat.enqueue({"text": text})
        r = s.post(CHAT_PATH, chat("are you there?"), timeout=10)
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == text
        return r


# ---- body size ------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_20mb_body_over_max_body_bytes_is_413(proxy_stack, chunked):
        s = proxy_stack(Proxy={"MaxBodyBytes": 16 * MiB})
        head = f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        status, headers, body, sent = raw_request(s.port, head, 20 * 1000 * 1000, chunked=chunked)
        assert status == 413, body[:300]
        err = json.loads(body)["error"]
        assert str(16 * MiB) in err["message"], err
        if not chunked:
                # Refused from Content-Length, before the body was read.
                assert sent < 20 * 1000 * 1000
        assert s.chat.count() == 0
        served(s)


def test_20mb_body_under_max_body_bytes_meets_the_payload_guard(proxy_stack):
        """A 20 MB request within MaxBodyBytes (raised to 32 MiB here; 8 MiB by default) is parsed and
        refused by the payload guard (MaxUpstreamPayloadBytes=, 600000 by default) with 413 naming the size
        and the limit."""
        stack = proxy_stack(Proxy={"MaxBodyBytes": 32 * MiB})
        r = stack.post(CHAT_PATH, chat("z" * (20 * 1000 * 1000)), timeout=60)
        assert r.status == 413, r
        msg = r.json()["error"]["message"]
        assert "600000" in msg, msg
        sizes = [int(x) for x in re.findall(r"\d+", msg) if int(x) != 600000]
        assert any(x >= 20 * 1000 * 1000 for x in sizes), msg
        assert stack.chat.count() == 0
        served(stack)


def test_payload_over_max_upstream_payload_bytes(proxy_stack):
        s = proxy_stack(Kiro={"MaxUpstreamPayloadBytes": 50_000})
        r = s.post(CHAT_PATH, chat("q" * 60_000))
        assert r.status in (400, 413), r
        err = r.json()["error"]
        assert "50000" in err["message"] and "MaxUpstreamPayloadBytes" in err["message"], err
        sizes = [int(x) for x in re.findall(r"\d+", err["message"]) if int(x) != 50000]
        assert any(60_000 <= x < 70_000 for x in sizes), err
        assert s.chat.count() == 0
        # Just under the limit goes through.
        r = s.post(CHAT_PATH, chat("q" * 45_000))
        assert r.status == 200, r
        assert len(s.chat.last().raw_body) <= 50_000


def test_json_nesting_depth(proxy_stack):
        s = proxy_stack(Proxy={"MaxJSONDepth": 16})
        deep = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "metadata": {}}
        node = deep["metadata"]
        for _ in range(40):
                node["a"] = {}
                node = node["a"]
        r = s.post(CHAT_PATH, deep)
        assert r.status == 400, r
        assert "error" in r.json()
        assert s.chat.count() == 0
        served(s)


def test_300k_tiny_messages_refused_while_healthz_answers(proxy_stack):
        """Issue 9 item 2: a 9 MB body of 300 000 tiny messages held the loop for 15 s. Now a linear scan
        refuses it before json-c builds a tree (it has more objects than MaxMessages= and MaxContentParts=
        allow), and /healthz keeps answering meanwhile. (MaxBodyBytes= is raised over its 8 MiB default,
        which would refuse this body from its Content-Length.)"""
        stack = proxy_stack(Proxy={"MaxBodyBytes": 16 * MiB})
        body = ('{"model":"%s","messages":[%s]}' % (MODEL, ",".join(['{"role":"user","content":"a"}'] * 300000))).encode()
        assert len(body) > 9 * 1000 * 1000
        result = {}

        def post():
                t0 = time.monotonic()
                result["r"] = stack.post(CHAT_PATH, body, {"Content-Type": "application/json"}, timeout=60)
                result["t"] = time.monotonic() - t0

        th = threading.Thread(target=post)
        th.start()
        worst = 0.0
        while th.is_alive():
                t0 = time.monotonic()
                assert stack.get("/healthz", timeout=5).status == 200
                worst = max(worst, time.monotonic() - t0)
        th.join()
        r = result["r"]
        assert r.status == 400, r
        assert "MaxMessages=" in r.json()["error"]["message"] or "objects and arrays" in r.json()["error"]["message"], r
        print(f"300k messages: refused in {result['t']:.3f} s; slowest /healthz meanwhile {worst * 1000:.1f} ms")
        assert worst < 0.1, f"/healthz took {worst:.3f} s while the request was refused"
        assert result["t"] < 10, result["t"]
        assert stack.chat.count() == 0
        served(stack)


# ---- slow and idle clients ------------------------------------------------------------------------

def test_client_sending_one_byte_a_second_is_dropped(proxy_stack):
        s = proxy_stack(Proxy={"RequestTimeoutSec": 3, "IdleTimeoutSec": 60})
        request = (f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: 200\r\n\r\n").encode() + b"{" * 200
        result = {}

        def trickle():
                c = socket.create_connection(("127.0.0.1", s.port), timeout=20)
                t0 = time.monotonic()
                try:
                        for i in range(len(request)):
                                c.sendall(request[i:i + 1])
                                r, _, _ = select.select([c], [], [], 1.0)
                                if r:
                                        result["data"] = c.recv(4096)
                                        break
                except (BrokenPipeError, ConnectionResetError) as e:
                        result["error"] = repr(e)
                result["after"] = time.monotonic() - t0
                result["sent"] = i
                c.close()

        t = threading.Thread(target=trickle)
        t.start()
        # Meanwhile the proxy serves everyone else at once.
        for i in range(4):
                t0 = time.monotonic()
                served(s, f"meanwhile {i}")
                assert time.monotonic() - t0 < 1.0
                time.sleep(0.4)
        t.join(timeout=30)
        assert not t.is_alive()
        # Dropped after RequestTimeoutSec, although a byte came every second.
        assert 2.5 <= result["after"] <= 6, result
        assert result.get("data", b"") in (b"",) or result["data"].startswith(b"HTTP/1.1 408"), result
        assert result["sent"] < 10, result
        served(s)


def test_idle_connection_is_closed(proxy_stack):
        s = proxy_stack(Proxy={"IdleTimeoutSec": 2, "RequestTimeoutSec": 60})
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        t0 = time.monotonic()
        assert c.recv(100) == b""
        assert 1.5 <= time.monotonic() - t0 <= 5
        c.close()
        served(s)


# ---- connections ----------------------------------------------------------------------------------

# SO_LINGER on with 0 s: close() resets the connection instead of leaving it in TIME_WAIT, so that
# thousands of test connections do not pile up and exhaust the ephemeral ports of later runs.
LINGER_RESET = struct.pack("ii", 1, 0)


def _accepted(s):
        """Client connections kiro-proxyd has accepted on its TCP port: its own sockets (by inode) that
        /proc/net/tcp lists as established with the proxy's port as the local port. Connections still
        waiting in the listen backlog are not counted (they are no fd of the proxy's yet)."""
        d = f"/proc/{s.proxyd.pid}/fd"
        inodes = set()
        for f in os.listdir(d):
                try:
                        link = os.readlink(f"{d}/{f}")
                except FileNotFoundError:
                        continue
                if link.startswith("socket:["):
                        inodes.add(link[8:-1])
        n = 0
        with open("/proc/net/tcp") as t:
                next(t)
                for line in t:
                        f = line.split()
                        if f[3] == "01" and int(f[1].split(":")[1], 16) == s.port and f[9] in inodes:
                                n += 1
        return n


def test_max_connections(proxy_stack):
        """With MaxConnections=20 connections open and only waiting for a request, a 21st pushes out the
        one that has waited longest and is served; with 20 connections busy with a request (parked on
        an upstream that has not answered), a 21st is refused or left in the backlog."""
        s = proxy_stack(Proxy={"MaxConnections": 20, "FirstTokenTimeoutSec": 30})
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(20)]
        for x in socks:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        extra = None
        try:
                wait_until(lambda: _accepted(s) == 20, timeout=10, what="20 accepted connections")
                extra = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := extra.recv(4096):
                        data += chunk
                assert data.startswith(b"HTTP/1.1 200"), data
                # The oldest idle connection was closed to make room.
                r, _, _ = select.select([socks[0]], [], [], 5)
                assert r and socks[0].recv(10) == b""
                assert _accepted(s) <= 20
        finally:
                for x in socks:
                        x.close()
                if extra:
                        extra.close()
        wait_until(lambda: _accepted(s) == 0, timeout=10, what="the connections to be closed")

        # Now 20 busy ones (the fake holds every answer back for 4 s): nothing can be pushed out.
        s.chat.set_default({"first_byte_delay": 4, "text": ["ok"]})
        body = json.dumps(chat("hold")).encode()
        head = (f"POST {CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        socks = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(20)]
        extra = None
        try:
                for x in socks:
                        x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                        x.sendall(head + body)
                wait_until(lambda: s.chat.count() == 20, timeout=10, what="20 requests upstream")
                extra = socket.create_connection(("127.0.0.1", s.port), timeout=10)
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                r, _, _ = select.select([extra], [], [], 1.5)
                if r:
                        try:
                                data = extra.recv(100)
                        except ConnectionResetError:
                                data = b""
                        assert data == b"", f"the 21st connection was served: {data!r}"
                for x in socks:
                        x.settimeout(15)
                        assert x.recv(100).startswith(b"HTTP/1.1 200")
        finally:
                for x in socks:
                        x.close()
                if extra:
                        extra.close()
        s.chat.set_default(None)
        wait_until(lambda: _accepted(s) == 0, timeout=10, what="the connections to be closed")
        served(s)


def test_5000_idle_connections(proxy_stack):
        """5000 idle client connections at once: the proxy accepts them all (it raises its own soft
        RLIMIT_NOFILE, started here with the usual 1024) and still answers a request meanwhile."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard < 6200:
                pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low for this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        socks = []
        try:
                s = proxy_stack(Proxy={"MaxConnections": 6000, "MaxConnectionsPerClient": 6000}, nofile=1024)
                psoft, phard = s.proxyd.nofile_limit()
                assert psoft >= 6000 + 64 or psoft == phard, \
                        f"kiro-proxyd kept a soft RLIMIT_NOFILE of {psoft} with MaxConnections=6000"
                # In batches of 500, each accepted before the next: 5000 SYNs at once would overflow the
                # listen backlog and leave the test at the mercy of SYN-ACK retransmission timers.
                for batch in range(10):
                        for _ in range(500):
                                c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
                                c.setblocking(False)
                                rc = c.connect_ex(("127.0.0.1", s.port))
                                assert rc in (0, errno.EINPROGRESS), f"connect: {os.strerror(rc)}"
                                socks.append(c)
                        wait_until(lambda: _accepted(s) >= len(socks), timeout=20, interval=0.05,
                                   what=f"kiro-proxyd to accept {len(socks)} connections")
                t0 = time.monotonic()
                served(s, "with 5000 idle connections open")
                assert time.monotonic() - t0 < 2
                assert s.get("/healthz", timeout=5).status == 200
        finally:
                for c in socks:
                        c.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        wait_until(lambda: _accepted(s) == 0, timeout=30, interval=0.2,
                   what="kiro-proxyd to close the 5000 connections")
        served(s)
