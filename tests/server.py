"""A real HTTP server on 127.0.0.1 for the tests: fixture feeds, ETag/304, hostile endpoints.

Tests register routes on a running :class:`FeedServer` (the ``feed_server`` fixture in
conftest.py) and point the scraper at ``server.url(path)``.  Every request is recorded, so a
test can check what the client sent (conditional headers, User-Agent).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = True  # serve an ETag and answer If-None-Match with 304
    delay: float = 0.0  # seconds between chunks of an iterable body


@dataclass
class Request:
    path: str
    headers: dict[str, str]


Handler = Callable[[Request], Response]


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                request = Request(self.path, {k.lower(): v for k, v in self.headers.items()})
                with server._lock:
                    server.requests.append(request)
                handler = server.routes.get(self.path.split("?")[0]) or server.routes.get(self.path)
                if handler is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                response = handler(request)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(request, response)

            def _send(self, request: Request, response: Response) -> None:
                if isinstance(response.body, bytes | bytearray):
                    body = bytes(response.body)
                    tag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                    if (
                        response.etag
                        and response.status == 200
                        and request.headers.get("if-none-match") == tag
                    ):
                        self.send_response(304)
                        self.send_header("ETag", tag)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(response.status)
                    if response.etag and response.status == 200:
                        self.send_header("ETag", tag)
                    for k, v in response.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                # Streamed body: no length, closed connection marks the end.
                self.send_response(response.status)
                for k, v in response.headers.items():
                    self.send_header(k, v)
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in response.body:
                    self.wfile.write(chunk)
                    self.wfile.flush()
                    if response.delay:
                        time.sleep(response.delay)

        class _Server(ThreadingHTTPServer):
            # The default backlog of 5 resets connections when a benchmark opens 64 at once.
            request_queue_size = 512

            def handle_error(self, request: object, client_address: object) -> None:
                # Clients closing keep-alive connections, or hostile-endpoint tests giving
                # up mid-body, are expected here: no traceback noise in the test output.
                if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
                    super().handle_error(request, client_address)

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FeedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def route(self, path: str, handler: Handler | Response) -> None:
        if isinstance(handler, Response):
            fixed = handler
            self.routes[path] = lambda _req: fixed
        else:
            self.routes[path] = handler

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/rss+xml; charset=utf-8",
        **headers: str,
    ) -> None:
        self.route(path, Response(body=body, headers={"Content-Type": content_type, **headers}))

    def requests_to(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.split("?")[0] == path]


# Hostile endpoints -----------------------------------------------------------------------


def drip(total_seconds: float = 120, chunk: bytes = b" ") -> Response:
    """One byte a second: defeats a per-read timeout, must hit the total deadline."""

    def body() -> Iterable[bytes]:
        yield b'<?xml version="1.0"?><rss version="2.0"><channel>'
        deadline = time.monotonic() + total_seconds
        while time.monotonic() < deadline:
            yield chunk

    return Response(body=body(), headers={"Content-Type": "application/rss+xml"}, delay=1.0)


def hang(seconds: float = 120) -> Handler:
    def handler(_req: Request) -> Response:
        time.sleep(seconds)
        return Response(body=b"")

    return handler


def redirect_loop(server: FeedServer, path: str) -> None:
    server.route(
        path, Response(status=302, headers={"Location": server.url(path + "x")}, etag=False)
    )
    server.route(
        path + "x", Response(status=302, headers={"Location": server.url(path)}, etag=False)
    )


def random_bytes(size: int = 64 * 1024) -> Response:
    return Response(body=os.urandom(size), headers={"Content-Type": "application/rss+xml"})


def gzip_bomb(inflated: int = 1 << 30) -> Response:
    """About 1 MiB on the wire that inflates to ``inflated`` bytes of spaces."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    block = b" " * (1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated // len(block))]
    parts.append(compressor.flush())
    body = b"".join(parts)
    return Response(
        body=body, headers={"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}
    )


def huge_body(size: int = 1 << 30) -> Response:
    """A body of ``size`` bytes, streamed so the server itself does not hold it."""

    def body() -> Iterable[bytes]:
        block = b"<!-- padding -->" * 4096
        sent = 0
        while sent < size:
            yield block
            sent += len(block)

    return Response(body=body(), headers={"Content-Type": "application/rss+xml"})


def entity_bomb(references: int = 100_000) -> bytes:
    """An entity declared once and referenced many times (not nested billion-laughs)."""
    payload = "A" * 10_000
    refs = "&x;" * references
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY x "{payload}">]>\n'
        f'<rss version="2.0"><channel><title>bomb</title><item><title>t</title>'
        f"<description>{refs}</description></item></channel></rss>"
    ).encode()


def gzipped(body: bytes) -> bytes:
    return gzip.compress(body)
