# SPDX-License-Identifier: LGPL-2.1-or-later
"""A minimal D-Bus client in pure Python, for the integration tests.

Debian 12's python3 has no D-Bus binding installed by default, and busctl/dbus-send print error
*messages*, not error *names* (and dbus-send cannot pass file descriptors). The tests need both, so
this speaks the wire protocol itself: EXTERNAL auth over a unix socket, unix fd passing, and a
marshaller for the whole type system (little-endian only).

Library:
    conn = Connection("unix:path=/tmp/x/bus")
    body = conn.call("org.kirod.Auth1", "/org/kirod/Auth1", "org.kirod.Auth1.Manager",
                     "GetToken", "sst", ["kiro", "", 0])        # -> list, or raises DBusError
    Variants are passed as Variant("s", "x") (or a (sig, value) tuple inside a{sv}); 'h' values
    are file descriptors of this process.

Command line (used to run calls as another user under setpriv):
    dbusmini.py --address A call DEST PATH IFACE MEMBER SIG JSON-ARGS
        prints {"ok": true, "body": [...]} or {"ok": false, "error": NAME, "message": TEXT}.
        In JSON args a variant is {"variant": [SIG, VALUE]}; an 'h' is an inherited fd number.
    dbusmini.py --address A own NAME
        requests NAME, prints "OWNED" or "ERROR <name> <message>", then answers every method
        call with a method return of signature "s" = "reached:<Interface>.<Member>".
"""

import json
import os
import socket
import struct
import sys
import time

MSG_METHOD_CALL, MSG_METHOD_RETURN, MSG_ERROR, MSG_SIGNAL = 1, 2, 3, 4
FLAG_NO_REPLY_EXPECTED = 0x1
FLAG_NO_AUTO_START = 0x2

HDR_PATH, HDR_INTERFACE, HDR_MEMBER, HDR_ERROR_NAME = 1, 2, 3, 4
HDR_REPLY_SERIAL, HDR_DESTINATION, HDR_SENDER, HDR_SIGNATURE, HDR_UNIX_FDS = 5, 6, 7, 8, 9

_FIXED = {
        "y": ("<B", 1), "b": ("<I", 4), "n": ("<h", 2), "q": ("<H", 2), "i": ("<i", 4),
        "u": ("<I", 4), "x": ("<q", 8), "t": ("<Q", 8), "d": ("<d", 8), "h": ("<I", 4),
}
_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4,
          "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}


class DBusError(Exception):
        def __init__(self, name, message=""):
                super().__init__(f"{name}: {message}")
                self.name = name
                self.message = message


class Variant:
        __slots__ = ("signature", "value")

        def __init__(self, signature, value):
                self.signature = signature
                self.value = value

        def __repr__(self):
                return f"Variant({self.signature!r}, {self.value!r})"


class ObjectPath(str):
        pass


def split_signature(sig):
        """Splits a signature into its complete types."""
        out, i = [], 0
        while i < len(sig):
                j = _complete_type_end(sig, i)
                out.append(sig[i:j])
                i = j
        return out


def _complete_type_end(sig, i):
        c = sig[i]
        if c == "a":
                return _complete_type_end(sig, i + 1)
        if c in "({":
                close = ")" if c == "(" else "}"
                depth, j = 0, i
                while True:
                        if sig[j] in "({":
                                depth += 1
                        elif sig[j] in ")}":
                                depth -= 1
                                if depth == 0:
                                        if sig[j] != close:
                                                raise ValueError(f"bad signature {sig!r}")
                                        return j + 1
                        j += 1
        if c in _ALIGN:
                return i + 1
        raise ValueError(f"bad signature {sig!r}")


class _Writer:
        def __init__(self, fds=None):
                self.buf = bytearray()
                self.fds = fds if fds is not None else []

        def pad(self, n):
                while len(self.buf) % n:
                        self.buf.append(0)

        def write(self, t, v):
                c = t[0]
                self.pad(_ALIGN[c])
                if c == "h":
                        self.fds.append(int(v))
                        self.buf += struct.pack("<I", len(self.fds) - 1)
                elif c == "b":
                        self.buf += struct.pack("<I", 1 if v else 0)
                elif c in _FIXED:
                        self.buf += struct.pack(_FIXED[c][0], v)
                elif c in "so":
                        b = v.encode() if isinstance(v, str) else bytes(v)
                        self.buf += struct.pack("<I", len(b)) + b + b"\0"
                elif c == "g":
                        b = v.encode()
                        self.buf += struct.pack("<B", len(b)) + b + b"\0"
                elif c == "v":
                        if isinstance(v, Variant):
                                sig, val = v.signature, v.value
                        else:
                                sig, val = v
                        self.write("g", sig)
                        self.write(sig, val)
                elif c == "(":
                        for st, sv in zip(split_signature(t[1:-1]), v):
                                self.write(st, sv)
                elif c == "a":
                        et = t[1:]
                        at = len(self.buf)
                        self.buf += b"\0\0\0\0"
                        self.pad(_ALIGN[et[0]])
                        start = len(self.buf)
                        if et[0] == "{":
                                kt, vt = split_signature(et[1:-1])
                                items = v.items() if isinstance(v, dict) else v
                                for k, val in items:
                                        self.pad(8)
                                        self.write(kt, k)
                                        self.write(vt, val)
                        else:
                                for item in v:
                                        self.write(et, item)
                        struct.pack_into("<I", self.buf, at, len(self.buf) - start)
                else:
                        raise ValueError(f"cannot marshal type {t!r}")


class _Reader:
        def __init__(self, data, fds=()):
                self.data = data
                self.pos = 0
                self.fds = fds

        def align(self, n):
                self.pos = (self.pos + n - 1) // n * n

        def read(self, t):
                c = t[0]
                self.align(_ALIGN[c])
                if c in _FIXED:
                        fmt, size = _FIXED[c]
                        (v,) = struct.unpack_from(fmt, self.data, self.pos)
                        self.pos += size
                        if c == "b":
                                return bool(v)
                        if c == "h":
                                return self.fds[v] if v < len(self.fds) else -1
                        return v
                if c in "so":
                        (n,) = struct.unpack_from("<I", self.data, self.pos)
                        s = bytes(self.data[self.pos + 4:self.pos + 4 + n]).decode()
                        self.pos += 4 + n + 1
                        return ObjectPath(s) if c == "o" else s
                if c == "g":
                        n = self.data[self.pos]
                        s = bytes(self.data[self.pos + 1:self.pos + 1 + n]).decode()
                        self.pos += 1 + n + 1
                        return s
                if c == "v":
                        sig = self.read("g")
                        return self.read(sig)
                if c == "(":
                        return tuple(self.read(st) for st in split_signature(t[1:-1]))
                if c == "a":
                        (n,) = struct.unpack_from("<I", self.data, self.pos)
                        self.pos += 4
                        et = t[1:]
                        self.align(_ALIGN[et[0]])
                        end = self.pos + n
                        if et[0] == "{":
                                kt, vt = split_signature(et[1:-1])
                                out = {}
                                while self.pos < end:
                                        self.align(8)
                                        k = self.read(kt)
                                        out[k] = self.read(vt)
                                return out
                        out = []
                        while self.pos < end:
                                out.append(self.read(et))
                        return out
                raise ValueError(f"cannot unmarshal type {t!r}")


class Message:
        def __init__(self, type_, flags, serial, fields, body_sig, body):
                self.type = type_
                self.flags = flags
                self.serial = serial
                self.fields = fields
                self.signature = body_sig
                self.body = body

        path = property(lambda self: self.fields.get(HDR_PATH))
        interface = property(lambda self: self.fields.get(HDR_INTERFACE))
        member = property(lambda self: self.fields.get(HDR_MEMBER))
        error_name = property(lambda self: self.fields.get(HDR_ERROR_NAME))
        reply_serial = property(lambda self: self.fields.get(HDR_REPLY_SERIAL))
        sender = property(lambda self: self.fields.get(HDR_SENDER))


def _parse_address(address):
        for part in address.split(";"):
                if not part.startswith("unix:"):
                        continue
                kv = dict(x.split("=", 1) for x in part[5:].split(","))
                if "path" in kv:
                        return kv["path"], False
                if "abstract" in kv:
                        return "\0" + kv["abstract"], True
        raise ValueError(f"unsupported bus address {address!r}")


class Connection:
        def __init__(self, address, timeout=30.0):
                path, _ = _parse_address(address)
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                self.serial = 0
                self.inbuf = bytearray()
                self.infds = []
                self.queue = []
                self._auth()
                self.unique_name = self.call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                             "org.freedesktop.DBus", "Hello")[0]

        def close(self):
                self.sock.close()

        def __enter__(self):
                return self

        def __exit__(self, *exc):
                self.close()

        def _readline(self):
                while b"\r\n" not in self.inbuf:
                        chunk = self.sock.recv(4096)
                        if not chunk:
                                raise ConnectionError("bus closed the connection during auth")
                        self.inbuf += chunk
                line, _, rest = bytes(self.inbuf).partition(b"\r\n")
                self.inbuf = bytearray(rest)
                return line.decode()

        def _auth(self):
                uid = str(os.geteuid()).encode().hex()
                self.sock.sendall(b"\0AUTH EXTERNAL " + uid.encode() + b"\r\n")
                line = self._readline()
                if not line.startswith("OK "):
                        raise ConnectionError(f"EXTERNAL auth refused: {line!r}")
                self.sock.sendall(b"NEGOTIATE_UNIX_FD\r\n")
                line = self._readline()
                if line != "AGREE_UNIX_FD":
                        raise ConnectionError(f"bus does not pass fds: {line!r}")
                self.sock.sendall(b"BEGIN\r\n")

        def send(self, type_, fields, signature="", args=(), flags=0):
                self.serial += 1
                fds = []
                body = _Writer(fds)
                for t, v in zip(split_signature(signature), args):
                        body.write(t, v)
                hf = []
                codes = {HDR_PATH: "o", HDR_INTERFACE: "s", HDR_MEMBER: "s", HDR_ERROR_NAME: "s",
                         HDR_REPLY_SERIAL: "u", HDR_DESTINATION: "s", HDR_SENDER: "s",
                         HDR_SIGNATURE: "g", HDR_UNIX_FDS: "u"}
                for code, value in fields.items():
                        if value is not None:
                                hf.append((code, Variant(codes[code], value)))
                if signature:
                        hf.append((HDR_SIGNATURE, Variant("g", signature)))
                if fds:
                        hf.append((HDR_UNIX_FDS, Variant("u", len(fds))))
                head = _Writer()
                head.buf += struct.pack("<cBBBII", b"l", type_, flags, 1, len(body.buf), self.serial)
                head.write("a(yv)", hf)
                head.pad(8)
                data = bytes(head.buf) + bytes(body.buf)
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))] if fds else []
                sent = self.sock.sendmsg([data], anc)
                if sent < len(data):
                        self.sock.sendall(data[sent:])
                return self.serial

        def _recv_more(self):
                data, anc, _, _ = self.sock.recvmsg(65536, socket.CMSG_SPACE(253 * 4))
                if not data:
                        raise ConnectionError("bus closed the connection")
                for level, type_, payload in anc:
                        if level == socket.SOL_SOCKET and type_ == socket.SCM_RIGHTS:
                                n = len(payload) // 4
                                self.infds.extend(struct.unpack(f"{n}i", payload[:n * 4]))
                self.inbuf += data

        def read_message(self):
                while len(self.inbuf) < 16:
                        self._recv_more()
                body_len, _serial, fields_len = struct.unpack_from("<III", self.inbuf, 4)
                total = (16 + fields_len + 7) // 8 * 8 + body_len
                while len(self.inbuf) < total:
                        self._recv_more()
                data = bytes(self.inbuf[:total])
                del self.inbuf[:total]
                type_, flags = data[1], data[2]
                serial = struct.unpack_from("<I", data, 8)[0]
                r = _Reader(data)
                r.pos = 12
                fields = dict(r.read("a(yv)"))
                r.align(8)
                nfds = fields.get(HDR_UNIX_FDS, 0)
                fds, self.infds = self.infds[:nfds], self.infds[nfds:]
                sig = fields.get(HDR_SIGNATURE, "")
                br = _Reader(data[r.pos:], fds)
                body = [br.read(t) for t in split_signature(sig)]
                return Message(type_, flags, serial, fields, sig, body)

        def call(self, destination, path, interface, member, signature="", args=(), flags=0):
                serial = self.send(MSG_METHOD_CALL, {HDR_PATH: path, HDR_INTERFACE: interface,
                                                     HDR_MEMBER: member, HDR_DESTINATION: destination},
                                   signature, args, flags)
                while True:
                        m = self.read_message()
                        if m.type in (MSG_METHOD_RETURN, MSG_ERROR) and m.reply_serial == serial:
                                if m.type == MSG_ERROR:
                                        text = m.body[0] if m.body and isinstance(m.body[0], str) else ""
                                        raise DBusError(m.error_name, text)
                                return m.body
                        if m.type == MSG_METHOD_CALL:
                                self.queue.append(m)

        def request_name(self, name, flags=0x4):
                return self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                 "RequestName", "su", [name, flags])[0]

        def name_has_owner(self, name):
                return self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                 "NameHasOwner", "s", [name])[0]

        def get_name_owner(self, name):
                return self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                 "GetNameOwner", "s", [name])[0]

        def reply(self, call, signature="", args=()):
                return self.send(MSG_METHOD_RETURN, {HDR_REPLY_SERIAL: call.serial, HDR_DESTINATION: call.sender},
                                 signature, args)

        def reply_error(self, call, name, message):
                return self.send(MSG_ERROR, {HDR_REPLY_SERIAL: call.serial, HDR_DESTINATION: call.sender,
                                             HDR_ERROR_NAME: name}, "s", [message])


def _from_json(sig, value):
        """Turns JSON arguments into marshallable values ({"variant": [sig, value]} -> Variant)."""
        c = sig[0]
        if c == "v":
                vsig, vval = value["variant"]
                return Variant(vsig, _from_json(vsig, vval))
        if c == "a" and sig[1] == "{":
                kt, vt = split_signature(sig[2:-1])
                return {_from_json(kt, k): _from_json(vt, v) for k, v in value.items()}
        if c == "a":
                return [_from_json(sig[1:], v) for v in value]
        if c == "(":
                return tuple(_from_json(t, v) for t, v in zip(split_signature(sig[1:-1]), value))
        return value


def _main(argv):
        import argparse
        p = argparse.ArgumentParser()
        p.add_argument("--address", required=True)
        p.add_argument("--timeout", type=float, default=30.0)
        sub = p.add_subparsers(dest="verb", required=True)
        c = sub.add_parser("call")
        for a in ("destination", "path", "interface", "member", "signature", "args"):
                c.add_argument(a)
        o = sub.add_parser("own")
        o.add_argument("name")
        a = p.parse_args(argv)

        conn = Connection(a.address, timeout=a.timeout)
        if a.verb == "call":
                args = json.loads(a.args)
                args = [_from_json(t, v) for t, v in zip(split_signature(a.signature), args)]
                try:
                        body = conn.call(a.destination, a.path, a.interface, a.member, a.signature, args)
                except DBusError as e:
                        print(json.dumps({"ok": False, "error": e.name, "message": e.message}))
                else:
                        print(json.dumps({"ok": True, "body": body}))
                return 0

        try:
                conn.request_name(a.name)
        except DBusError as e:
                print("ERROR", e.name, e.message, flush=True)
                return 1
        if conn.get_name_owner(a.name) != conn.unique_name:
                print("ERROR not-primary-owner", flush=True)
                return 1
        print("OWNED", conn.unique_name, flush=True)
        conn.sock.settimeout(None)
        while True:
                while conn.queue:
                        m = conn.queue.pop(0)
                        conn.reply(m, "s", [f"reached:{m.interface}.{m.member}"])
                m = conn.read_message()
                if m.type == MSG_METHOD_CALL and not m.flags & FLAG_NO_REPLY_EXPECTED:
                        conn.queue.append(m)


if __name__ == "__main__":
        try:
                sys.exit(_main(sys.argv[1:]))
        except (ConnectionError, OSError) as e:
                print(json.dumps({"ok": False, "error": "dbusmini.ConnectionError", "message": str(e)}))
                sys.exit(2)
