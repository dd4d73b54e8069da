"""A local HTTP file server for download tests: real sockets on 127.0.0.1, with scripted failures.

    with FileServer({"/voc.tar": data}) as server:
        server.drop_after["/voc.tar"] = 1000   # first response stops after 1000 body bytes
        server.status["/gone.tar"] = 404       # answer with an error status
        server.hang_up.add("/reset.tar")       # close the connection without any answer
        fetch(server.url("/voc.tar"))
        server.requests                        # [Request(path, range_header), ...]
"""
from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Request:
    """One request the server received: its path and its Range header (None if absent)."""

    path: str
    range: str | None


class LoopbackServer:
    """An HTTP server on 127.0.0.1 (a free port) serving `handler` in a thread while the `with` block runs."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # a short poll interval keeps shutdown (once per test) from costing half a second
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class FileServer(LoopbackServer):
    """Serves `files` (URL path -> bytes) with Range support; unknown paths get 404.

    `honour_range = False` makes it answer every request with the whole file (200), as some
    servers do.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.status: dict[str, int] = {}
        self.hang_up: set[str] = set()
        self.drop_after: dict[str, int] = {}
        self.honour_range = True
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        super().__init__(_handler_for(self))

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def take_drop_after(self, path: str) -> int | None:
        """The byte count to stop after for this path, used once (only the first response drops)."""
        with self._lock:
            return self.drop_after.pop(path, None)


def refused_url(path: str = "/file") -> str:
    """A URL on a 127.0.0.1 port nobody listens on, so connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            server.record(Request(self.path, range_header))
            if self.path in server.hang_up:
                self.close_connection = True
                return
            if self.path in server.status or self.path not in server.files:
                self.send_error(server.status.get(self.path, 404))
                return
            self._send_file(server.files[self.path], range_header if server.honour_range else None)

        def _send_file(self, data: bytes, range_header: str | None) -> None:
            start = _range_start(range_header)
            if start >= len(data) and start > 0:
                self.send_error(416)
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            limit = server.take_drop_after(self.path)
            self.wfile.write(body if limit is None else body[:limit])
            if limit is not None:
                self.close_connection = True

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    return Handler


def _range_start(range_header: str | None) -> int:
    """The first byte asked for by 'bytes=N-' (the only form a resuming client sends), else 0."""
    match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
    return int(match.group(1)) if match else 0
