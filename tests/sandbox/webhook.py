"""A tiny webhook receiver: appends every POSTed JSON body as one line to a file.

Run as a script (the sandbox starts it detached): ``python webhook.py PORT FILE``.
GET answers 200 (readiness). Bodies that are not JSON are stored as a JSON string.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


class Handler(BaseHTTPRequestHandler):
    out_path: ClassVar[str] = ""
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_GET(self) -> None:
        self._reply(200, b"ok\n")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            line = json.dumps(json.loads(raw), separators=(",", ":"), sort_keys=True)
        except ValueError:
            line = json.dumps(raw.decode("utf-8", "replace"))
        with self.lock, open(self.out_path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self._reply(200, b"{}")

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}\n")


def main(argv: list[str]) -> None:
    port, out = int(argv[1]), argv[2]
    Handler.out_path = out
    open(out, "a").close()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv)
