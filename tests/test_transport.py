"""The fetcher on the aiohttp transport (issue 18): what the switch from httpcore must keep,
and what it must not bring along (httpx-aiohttp 0.2.0's re-quoted URLs, unmapped errors)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import socket
import ssl
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest
from server import FeedServer, Response

from scraper.config import FetchSettings
from scraper.net.fetch import Fetcher, FetchResult


def fetch_all(urls: Sequence[str], settings: FetchSettings | None = None,
              **kwargs: object) -> list[FetchResult]:
    """Each URL in turn with one Fetcher (one connection pool)."""
    async def go() -> list[FetchResult]:
        async with Fetcher(settings or FetchSettings(retries=0)) as fetcher:
            return [await fetcher.fetch(url, **kwargs) for url in urls]  # type: ignore[arg-type]

    return asyncio.run(go())


@pytest.mark.parametrize("target", [
    "/signed?sig=ab%2F%2Bcd%3D%3D&expires=1",  # a signature's escapes are part of it
    "/go?u=http%3A%2F%2Fexample.org%2Fa%3Fb%3Dc&p=%28x%29%21",
    "/a%3Ab%7e?q=%40",
])
def test_the_url_goes_out_as_written(feed_server: FeedServer, target: str) -> None:
    feed_server.serve(target.split("?")[0], b"<rss/>")
    [result] = fetch_all([feed_server.url(target)])
    assert result.ok, result.error
    assert [r.path for r in feed_server.requests] == [target]


def test_a_long_header_line_is_read(feed_server: FeedServer) -> None:
    """20 KiB of Content-Security-Policy: httpcore read it, aiohttp's default refused it."""
    policy = "default-src 'self'" + "; img-src https://a.example" * 800
    feed_server.serve("/csp", b"<rss/>", **{"Content-Security-Policy": policy})
    [result] = fetch_all([feed_server.url("/csp")])
    assert result.ok and result.body == b"<rss/>", result.error
    assert result.headers["content-security-policy"] == policy


class _Counting(ThreadingHTTPServer):
    """Answers every GET with a 304 (or a garbage head), counting the connections accepted."""

    daemon_threads = True

    def __init__(self, answer: bytes | None = None) -> None:
        self.connections = 0
        self.answer = answer
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if server.answer is not None:
                    self.wfile.write(server.answer)
                    self.close_connection = True
                    return
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def counting() -> Iterator[_Counting]:
    server = _Counting()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_304s_keep_their_connection(counting: _Counting) -> None:
    url = f"http://127.0.0.1:{counting.server_address[1]}/feed"
    results = fetch_all([url] * 10, etag='"v1"')
    assert [r.status for r in results] == [304] * 10
    assert counting.connections == 1


def test_a_garbage_answer_is_a_failed_fetch_not_an_exception(counting: _Counting) -> None:
    counting.answer = b"this is no HTTP\r\n\r\n"
    url = f"http://127.0.0.1:{counting.server_address[1]}/feed"
    [result] = fetch_all([url])
    assert not result.ok and result.status is None
    assert (result.error or "").startswith("connection failed: "), result.error


def test_a_truncated_body_is_a_failed_fetch(feed_server: FeedServer) -> None:
    """The server promises 1,000 bytes, sends 10 and closes."""
    feed_server.route("/short", Response(body=[b"<rss>12345"],
                                         headers={"Content-Length": "1000"}))
    [result] = fetch_all([feed_server.url("/short")])
    assert not result.ok and result.body is None
    assert (result.error or "").startswith("connection failed: "), result.error


class _NoSniffio(importlib.abc.MetaPathFinder):
    """sniffio absent, each attempt to import it counted."""

    def __init__(self) -> None:
        self.attempts = 0

    def find_spec(self, name: str, path: object, target: ModuleType | None = None) -> None:
        if name == "sniffio":
            self.attempts += 1
            raise ModuleNotFoundError("No module named 'sniffio'", name=name)


def test_a_poll_does_not_look_for_sniffio(feed_server: FeedServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """httpcore 1.0.9 tried ``import sniffio`` 6 times a request when it was absent, and a
    failed import is not cached: 30-50 µs each (docs/benchmarks.md, issue 18)."""
    feed_server.serve("/feed", b"<rss/>")
    finder = _NoSniffio()
    monkeypatch.delitem(sys.modules, "sniffio", raising=False)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    results = fetch_all([feed_server.url("/feed")] * 3)
    assert [r.status for r in results] == [200] * 3
    assert finder.attempts == 0


@pytest.fixture
def tls_listener() -> Iterator[tuple[int, list[str | None]]]:
    """A TLS listener on 127.0.0.1 that records the server name each client hello asks for
    (it has no certificate: every handshake then fails, after the name is seen)."""
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment]
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(ssl.SSLError, OSError):
                context.wrap_socket(conn, server_side=True)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], names
    listener.close()


def test_a_pinned_tls_fetch_sends_the_host_name(tls_listener: tuple[int, list[str | None]]
                                                ) -> None:
    """The guard connects to the address it approved (no second lookup), and TLS still
    asks for, and would verify, the host's name: the transport passes ``sni_hostname``."""
    port, names = tls_listener
    settings = FetchSettings(retries=0, allow_private=("127.0.0.0/8",))
    [result] = fetch_all([f"https://localhost:{port}/page"], settings, guard=True)
    assert not result.ok  # no certificate to offer
    assert names == ["localhost"]  # an address literal would send no name at all
