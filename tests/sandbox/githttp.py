"""Smart-HTTP Git behind HTTP basic auth: ``git http-backend`` run as CGI for every request.

Run as a script (the sandbox starts it detached): ``python githttp.py PORT GIT_ROOT CREDS_FILE``,
where CREDS_FILE holds one ``user:token`` line. Every request without the right
``Authorization: Basic`` gets 401 (also ``GET /``, which is the readiness probe), so a
client that sends a wrong or no token fails the way it would against a real forge.
Fetch and push (receive-pack: REMOTE_USER is set) both work; v2 protocol via Git-Protocol.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import unquote, urlsplit

BACKEND = "/usr/lib/git-core/git-http-backend"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse the connection between requests
    git_root: ClassVar[str] = ""
    expected: ClassVar[bytes] = b""  # "user:token"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _authorized(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except ValueError:
            return None
        if not hmac.compare_digest(given, self.expected):
            return None
        return given.split(b":", 1)[0].decode()

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._body() if self.command == "POST" else b""
        user = self._authorized()
        if user is None:
            self._reply(401, b"authentication required\n", [("WWW-Authenticate", 'Basic realm="driftd-sandbox"')])
            return
        url = urlsplit(self.path)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.git_root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": unquote(url.path),
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type") or "",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,  # http-backend allows receive-pack only for authenticated users
            "REMOTE_ADDR": self.client_address[0],
        }
        for header, var in (("Content-Encoding", "HTTP_CONTENT_ENCODING"), ("Git-Protocol", "GIT_PROTOCOL")):
            if self.headers.get(header):
                env[var] = self.headers[header]
        out = subprocess.run([BACKEND], input=body, env=env, capture_output=True, check=False, timeout=120)
        if out.stderr:
            sys.stderr.write(out.stderr.decode(errors="replace"))
        head, sep, payload = out.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = out.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name.strip(), value.strip()))
        if not sep:  # the backend died before writing headers
            status, headers, payload = 500, [], b"git http-backend failed\n"
        self._reply(status, payload, headers)

    def _reply(self, code: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(code)
        for name, value in headers or []:
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Never log headers: they carry the token.
        sys.stderr.write(f"{self.command} {urlsplit(self.path).path} {args[1] if len(args) > 1 else ''}\n")


def main(argv: list[str]) -> None:
    port, root, creds = int(argv[1]), argv[2], argv[3]
    Handler.git_root = root
    with open(creds, "rb") as f:
        Handler.expected = f.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
