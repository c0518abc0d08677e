"""storage.googleapis.com for a Go program in the sandbox: an HTTPS proxy onto the GCP fake.

Prow writes its build-cluster status file with the Cloud Storage Go client, which always
talks to ``https://storage.googleapis.com`` (its only override, STORAGE_EMULATOR_HOST, turns
authentication off and drops the fake's path prefix). Go's HTTP client honours
``HTTPS_PROXY`` (never for loopback addresses, so the kube-apiservers are reached directly)
and ``SSL_CERT_FILE``: the process gets this proxy and a CA of the sandbox's own. The proxy
accepts ``CONNECT storage.googleapis.com:443`` only, terminates TLS with a certificate for that
host signed by that CA, and forwards each HTTP/1.1 request unchanged (method, path, query,
headers incl. ``Authorization``, body) to the fake's ``storage`` base URL, whose answer it
relays. Everything the fake checks (tokens, IAM, etags) applies as for any other client.
"""

from __future__ import annotations

import http.client
import logging
import socketserver
import ssl
import tempfile
import threading
import urllib.parse
from pathlib import Path

from . import pki

log = logging.getLogger("prow_sandbox.gcs_proxy")
HOST = "storage.googleapis.com"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}


def _read_headers(rfile) -> list[tuple[str, str]] | None:
    headers = []
    while True:
        line = rfile.readline(65537)
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def _read_body(rfile, headers: list[tuple[str, str]]) -> bytes:
    lower = {k.lower(): v for k, v in headers}
    if "chunked" in lower.get("transfer-encoding", "").lower():
        body = b""
        while True:
            size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                _read_headers(rfile)  # trailers
                return body
            body += rfile.read(size)
            rfile.readline()
    return rfile.read(int(lower.get("content-length", "0")))


class _Handler(socketserver.StreamRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        request = self.rfile.readline(65537).decode("latin-1").split()
        if _read_headers(self.rfile) is None or len(request) < 2:
            return
        if request[0] != "CONNECT" or request[1] != f"{HOST}:443":
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with self.server.tls.wrap_socket(self.connection, server_side=True) as tls:
            rfile, wfile = tls.makefile("rb"), tls.makefile("wb")
            while self._relay(rfile, wfile):
                pass

    def _relay(self, rfile, wfile) -> bool:
        line = rfile.readline(65537)
        if not line:
            return False
        method, target, _version = line.decode("latin-1").split()
        headers = _read_headers(rfile)
        if headers is None:
            return False
        body = _read_body(rfile, headers)
        base = urllib.parse.urlsplit(self.server.upstream)
        upstream = http.client.HTTPConnection(base.hostname, base.port, timeout=60)
        try:
            upstream.request(method, base.path + target, body=body,
                             headers={k: v for k, v in headers if k.lower() not in HOP_BY_HOP})
            answer = upstream.getresponse()
            payload = answer.read()
            out = [f"HTTP/1.1 {answer.status} {answer.reason}\r\n"]
            out += [f"{k}: {v}\r\n" for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
            out.append(f"Content-Length: {len(payload)}\r\n\r\n")
            wfile.write("".join(out).encode("latin-1") + payload)
            wfile.flush()
        finally:
            upstream.close()
        log.info("%s %s -> %s", method, target.split("?", 1)[0], answer.status)
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    tls: ssl.SSLContext
    upstream: str


class StorageProxy:
    """Start with :meth:`start`; ``url`` (for HTTPS_PROXY) and ``ca_file`` (for SSL_CERT_FILE)."""

    def __init__(self, upstream: str, workdir: Path):
        self.upstream, self.workdir = upstream.rstrip("/"), workdir
        self.server: _Server | None = None
        self.ca_file = workdir / "storage-proxy-ca.pem"

    def start(self) -> "StorageProxy":
        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = pki.make_ca("prow-sandbox storage proxy CA")
        leaf = pki.make_host_cert(ca, HOST)
        self.ca_file.write_bytes(ca.cert_pem)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.set_alpn_protocols(["http/1.1"])  # no h2: the relay speaks HTTP/1.1
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(leaf.cert_pem)
            pki.write_private(key, leaf.key_pem)
            tls.load_cert_chain(cert, key)
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.tls, self.server.upstream = tls, self.upstream
        threading.Thread(target=self.server.serve_forever, name="gcs-proxy", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
