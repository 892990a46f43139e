"""httpx's API on aiohttp's engine: the transport under ``fetch.Fetcher``'s client.

Why aiohttp: httpx on its own engine (httpcore 1.0.9) cost ~1,100 µs of CPU per conditional
GET, on this one ~300 µs, and httpcore drops a connection whose 304 was not read while aiohttp
keeps it (docs/benchmarks.md, issue 18).

Why not httpx-aiohttp 0.2.0's ``AiohttpTransport``, which plugs aiohttp in the same way
(checked against aiohttp 3.14 on this machine; tests/test_transport.py and test_fetch.py
hold each case):

- it hands aiohttp the URL as a string, which yarl re-quotes: ``?sig=ab%2F%2B`` went out as
  ``?sig=ab/%2B``, which breaks signed URLs (aio-libs/aiohttp#7222, #9721). Here the URL goes
  out exactly as httpx encoded it (``yarl.URL(..., encoded=True)``);
- it turns every connection error into ``httpx.ConnectTimeout`` and lets aiohttp's other
  errors through unmapped (a 20 KiB header raised ``aiohttp.ClientResponseError`` past
  httpx). Here DNS and connect failures are ``httpx.ConnectError`` (the ``socket.gaierror``
  kept as the cause, so ``fetch`` names the host) and every ``aiohttp.ClientError`` is an
  ``httpx.TransportError``.

aiohttp's cookie jar is off (httpx keeps its own), and the TLS server name comes from the
``sni_hostname`` extension, which ``fetch._pinned`` sets when it connects to the address the
netguard approved: aiohttp verifies the certificate against that name and keys its pool by it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
import yarl

#: Longest response line or header field accepted.  aiohttp's default (8,190 bytes) refused
#: heads that httpx's own engine read: httpcore allows 100 KiB for a whole head
#: (``HTTP11Connection.MAX_INCOMPLETE_EVENT_SIZE``), and some sites send long
#: Content-Security-Policy or Set-Cookie lines.
MAX_HEAD_LINE = 100 * 1024

#: aiohttp's errors as httpx's, most specific first.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ServerTimeoutError, httpx.TimeoutException),  # sock_connect, sock_read
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # DNS, refused, TLS
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientPayloadError, httpx.ReadError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.ClientError, httpx.NetworkError),  # disconnected, reset
)


def _mapped(exc: aiohttp.ClientError) -> httpx.TransportError:
    message = exc.message if isinstance(exc, aiohttp.ClientResponseError) else str(exc)
    for theirs, ours in _ERRORS:
        if isinstance(exc, theirs):
            return ours(message or type(exc).__name__)
    return httpx.NetworkError(message)  # pragma: no cover (ClientError is last above)


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp delivers it: raw (never decompressed), in its own chunks."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc

    async def aclose(self) -> None:
        # Back to the pool when the body was read to its end (a 304's empty one too), else
        # the connection is closed.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session, opened at the first request (it needs the running loop)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(trust_env=False),  # httpx's trust store (certifi)
        )
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            trust_env=False, max_line_size=MAX_HEAD_LINE, max_field_size=MAX_HEAD_LINE)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            response = await self._session.request(
                request.method, yarl.URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(), data=body or None,
                allow_redirects=False,
                server_hostname=request.extensions.get("sni_hostname"),
                timeout=aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                              sock_connect=timeout.get("connect"),
                                              sock_read=timeout.get("read")))
        except aiohttp.ClientError as exc:
            raise _mapped(exc) from exc
        version = f"HTTP/{response.version.major}.{response.version.minor}".encode()
        return httpx.Response(
            status_code=response.status, headers=response.raw_headers, stream=_Body(response),
            request=request,
            extensions={"http_version": version,
                        "reason_phrase": (response.reason or "").encode("latin-1", "replace")})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
