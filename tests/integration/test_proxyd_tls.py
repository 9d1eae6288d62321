# SPDX-License-Identifier: LGPL-2.1-or-later
"""kiro-proxyd's optional TLS listener (Listen=tls:ADDR:PORT with TLSCertificateFile=/TLSKeyFile=)."""
import http.client
import socket
import ssl
import subprocess
import time

import kirodtest
import pytest
from proxyd_fixture import PROXYD_BIN


def _free_port():
        with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]


def _run(bus, scratch, config, port):
        conf = scratch / "tls-proxyd.conf"
        conf.write_text(config)
        return subprocess.Popen([str(PROXYD_BIN), f"--config={conf}", f"--listen=tls:127.0.0.1:{port}"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=kirodtest.base_env(DBUS_SYSTEM_BUS_ADDRESS=bus))


def test_tls_listener_serves_https_only(users, bus, scratch):
        if not PROXYD_BIN.exists():
                pytest.skip("kiro-proxyd is not built")
        cert, key = scratch / "cert.pem", scratch / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        port = _free_port()
        p = _run(bus, scratch, f"[Proxy]\nTLSCertificateFile={cert}\nTLSKeyFile={key}\n", port)
        try:
                ctx = ssl.create_default_context(cafile=str(cert))
                deadline = time.monotonic() + 10
                while True:
                        try:
                                c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
                                c.request("GET", "/healthz")
                                r = c.getresponse()
                                break
                        except (ConnectionRefusedError, ssl.SSLError):
                                assert time.monotonic() < deadline and p.poll() is None, p.stdout.read().decode()
                                time.sleep(0.1)
                assert r.status == 200 and b'"ok"' in r.read()
                # Plain HTTP on the TLS port gets no HTTP answer.
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
                        c.request("GET", "/healthz")
                        c.getresponse().read()
        finally:
                p.terminate()
                out = p.communicate(timeout=10)[0].decode()
        assert p.returncode == 0, out


def test_tls_listener_without_certificate_refuses_to_start(users, bus, scratch):
        if not PROXYD_BIN.exists():
                pytest.skip("kiro-proxyd is not built")
        p = _run(bus, scratch, "[Proxy]\n", _free_port())
        out = p.communicate(timeout=10)[0].decode()
        assert p.returncode != 0
        assert "TLSCertificateFile=" in out
