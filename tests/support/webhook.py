"""A real HTTP server that receives dagflow's webhooks, for the notification tests.

It listens on 127.0.0.1 on a port chosen once, so a test can start it late (the receiver
"was down": connections are refused until then) and stop it again.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
from typing import Any


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    """Records every JSON POST it gets (body and path) and answers 200.

    Args:
        port: The port (a free one by default).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The URL to put in the worker's webhook variable."""
        return f"http://127.0.0.1:{self.port}/hooks/T000/secret"

    def start(self) -> Receiver:
        """Listen (in a daemon thread) until :meth:`stop`."""
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                with receiver._lock:
                    receiver.posts.append({"path": self.path, "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The bodies received so far (of ``run_id``'s notifications, if given)."""
        with self._lock:
            bodies = [p["body"] for p in self.posts]
        return [b for b in bodies if run_id is None or b.get("dagflow", {}).get("run_id") == run_id]
