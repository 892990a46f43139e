"""HTTP fetching with the limits httpx does not give us by itself.

httpx 0.28 (checked on this machine, see ../shared/DESIGN.md):
- its timeouts are per read, so a server dripping a byte a second holds a request for
  minutes: we wrap every attempt in a total deadline (``asyncio.timeout``);
- it decompresses without a limit: we ask only for gzip/deflate and inflate ourselves with
  ``zlib``'s ``max_length`` so a 1 MiB bomb never becomes more than the cap in memory;
- it follows redirects anywhere: we follow them by hand, at most ``max_redirects``, and for
  URLs taken from feed content (full-text pages) every hop is checked by ``netguard``;
- its DNS errors name no host (``[Errno -2] Name or service not known``): ours do.

The client runs on ``net.transport``'s aiohttp engine (httpx's API above it, unchanged): 3.4×
less CPU per conditional GET than httpcore, and connections kept across 304s. Guarded fetches
go through it too: ``_pinned`` aims the request at the approved address and passes the name
as the ``sni_hostname`` extension, which the transport gives aiohttp as its TLS server name.

An error answer's body is read too, up to ``ERROR_BODY_CAP``, so that ``core.refusal`` can
tell an RSSHub error page or a Cloudflare challenge from a plain ``HTTP 403``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit

import httpx

from scraper.config import FetchSettings, host_of
from scraper.core import refusal
from scraper.core.schedule import http_date
from scraper.net import netguard
from scraper.net.transport import AiohttpTransport
from scraper.version import USER_AGENT

log = logging.getLogger(__name__)

_REDIRECTS = {301, 302, 303, 307, 308}
#: Statuses worth another attempt: the server may be back in a moment.
_RETRY_STATUSES = {429, 500, 502, 503, 504}
#: A Retry-After longer than this is not waited for inside a run; it goes to the scheduler.
MAX_RETRY_WAIT = 30.0
_READ_CHUNK = 64 * 1024
#: How much of a 4xx/5xx body is kept: what ``core.refusal`` looks at (its markers sit in the
#: first few KB), and one read chunk, so an error answer costs no more than one read.
ERROR_BODY_CAP = refusal.PREFIX_BYTES
#: Seconds an idle connection is kept for reuse: httpx's default (``httpx.Limits``).
KEEPALIVE_SECONDS = 5.0


class FetchError(Exception):
    """A failure phrased as the one line the run summary shows."""


class _BodyTooLarge(FetchError):
    pass


@dataclass
class FetchResult:
    url: str  # the URL finally answered, after redirects
    status: int | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    #: Seconds the server asked us to wait (429/503 Retry-After), for the scheduler.
    retry_after: float | None = None
    #: The start (``ERROR_BODY_CAP``) of a 4xx/5xx answer's body: who refused, and why.
    error_body: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status in (200, 304)

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def refusal(self, rsshub_base: str) -> str | None:
        """The error line for a refusal ``core.refusal`` recognises (an RSSHub instance, a
        Cloudflare challenge), or None.  For a 200 it looks at the body: call it only once
        the body has turned out not to be a feed."""
        body = self.body if self.status == 200 else self.error_body
        return refusal.recognise(self.status, self.headers, body, self.url, rsshub_base)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = http_date(value)
    return None if when is None else max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter, so failed feeds do not retry in lockstep."""
    return rng.uniform(0, base * (2 ** attempt))


class Fetcher:
    """One shared ``httpx.AsyncClient`` with global and per-host concurrency limits."""

    def __init__(self, settings: FetchSettings | None = None, *, retry_base: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self.settings = settings or FetchSettings()
        self.retry_base = retry_base
        self.rng = rng or random.Random()
        self._global = asyncio.Semaphore(self.settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": self.settings.user_agent or USER_AGENT,
                     "Accept-Encoding": "gzip, deflate"},
            transport=AiohttpTransport(httpx.Limits(
                max_connections=self.settings.concurrency, keepalive_expiry=KEEPALIVE_SECONDS)),
            timeout=httpx.Timeout(self.settings.timeout),
            trust_env=False,
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = host_of(url)
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.settings.per_host)
        return self._hosts[host]

    async def fetch(self, url: str, *, etag: str | None = None, last_modified: str | None = None,
                    timeout: float | None = None, guard: bool = False,
                    accept: str = "application/rss+xml, application/atom+xml, "
                                  "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8",
                    ) -> FetchResult:
        """GET ``url`` with retries; never raises for network or HTTP trouble."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = timeout or self.settings.timeout
        result = FetchResult(url=url)
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            result = FetchResult(url=url, attempts=attempt + 1)
            async with self._global, self._host_limit(url):
                try:
                    async with asyncio.timeout(deadline):
                        await self._attempt(url, headers, guard, result)
                except TimeoutError:
                    result.error = f"timed out after {deadline:g} s (total deadline)"
                    return result  # a slow server stays slow: do not spend another deadline
                except netguard.BlockedAddress as exc:
                    result.error = f"refused: {exc}"
                    return result
                except FetchError as exc:
                    result.error = str(exc)
                    return result
                except httpx.TransportError as exc:
                    result.error = f"connection failed: {_describe(exc)}"
            retryable = result.error is not None or result.status in _RETRY_STATUSES
            if not retryable or attempt == attempts - 1:
                break
            wait = backoff_delay(attempt, self.retry_base, self.rng)
            if result.retry_after is not None:
                if result.retry_after > MAX_RETRY_WAIT:
                    break  # the scheduler honours it; a run must still end
                wait = max(wait, result.retry_after)
            log.debug("retrying %s in %.1f s (%s)", url, wait, result.error or result.status)
            await asyncio.sleep(wait)
        if result.error is None and result.status not in (200, 304):
            reason = httpx.codes.get_reason_phrase(result.status or 0)
            tries = f" (after {result.attempts} attempts)" if result.attempts > 1 else ""
            result.error = f"HTTP {result.status} {reason}{tries}".replace("  ", " ")
        elif result.error and result.attempts > 1:
            result.error += f" (after {result.attempts} attempts)"
        return result

    async def _attempt(self, url: str, headers: Mapping[str, str], guard: bool,
                       result: FetchResult) -> None:
        current = url
        for hop in range(self.settings.max_redirects + 1):
            target, hop_headers, extensions = current, dict(headers), {}
            try:
                if guard:
                    approved = await netguard.check_url(current, self.settings.allow_private)
                    if approved:
                        target, hop_headers, extensions = _pinned(current, approved[0],
                                                                  hop_headers)
                response = await self._client.send(
                    self._client.build_request("GET", target, headers=hop_headers,
                                               extensions=extensions), stream=True)
            except (OSError, httpx.ConnectError) as exc:
                # OSError: the guard's own lookup; ConnectError: httpx's, or a refused connection.
                cause = _gaierror(exc)
                if cause is None and isinstance(exc, httpx.ConnectError):
                    raise
                host = urlsplit(current).hostname or current
                reason = cause.strerror if cause is not None and cause.strerror else _describe(exc)
                raise FetchError(f"cannot resolve {host}: {reason}") from None
            try:
                result.url = current
                result.status = response.status_code
                result.headers = {k.lower(): v for k, v in response.headers.items()}
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    if hop == self.settings.max_redirects:
                        raise FetchError(
                            f"too many redirects (more than {self.settings.max_redirects})")
                    current = urljoin(current, location)
                    continue
                if response.status_code in (429, 503):
                    result.retry_after = parse_retry_after(response.headers.get("retry-after"))
                if response.status_code == 200:
                    result.body = await self._read(response, self.settings.max_bytes)
                elif response.status_code == 304:
                    await response.aread()  # empty: read to its end, the connection is kept
                elif response.status_code >= 400:
                    result.error_body = await self._error_body(response)
                return
            finally:
                await response.aclose()

    async def _error_body(self, response: httpx.Response) -> bytes | None:
        """The start of an error answer's body; None if it cannot be read (the status stands)."""
        try:
            return await self._read(response, ERROR_BODY_CAP, truncate=True)
        except (FetchError, httpx.TransportError):
            return None

    async def _read(self, response: httpx.Response, cap: int, *, truncate: bool = False
                    ) -> bytes:
        """Read and inflate the body, never holding more than ``cap`` of it.

        Past the cap: ``_BodyTooLarge``, or with ``truncate`` the first ``cap`` bytes.
        """
        encoding = response.headers.get("content-encoding", "").strip().lower()
        inflater = None
        if encoding in ("gzip", "x-gzip"):
            inflater = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header
        elif encoding == "deflate":
            inflater = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise FetchError(f"unsupported Content-Encoding {encoding!r}")
        chunks: list[bytes] = []
        size = 0
        async for raw in response.aiter_raw(_READ_CHUNK):
            # max_length bounds what one chunk may inflate to: a bomb stops one byte past the
            # cap (and, having reached it, leaves the rest of its input unconsumed).
            try:
                data = raw if inflater is None else inflater.decompress(raw, cap - size + 1)
            except zlib.error:
                raise FetchError(_not_encoded(encoding, raw if size == 0 else b"")) from None
            chunks.append(data)
            size += len(data)
            if size > cap:
                return _over(chunks, cap, truncate)
        if inflater is not None:
            try:
                data = inflater.flush()
            except zlib.error:
                raise FetchError(_not_encoded(encoding, b"")) from None
            chunks.append(data)
            size += len(data)
            if size > cap:
                return _over(chunks, cap, truncate)
        return b"".join(chunks)


def _pinned(url: str, address: str, headers: dict[str, str]
            ) -> tuple[str, dict[str, str], dict[str, str]]:
    """Aim the request at the address the guard approved, keeping Host and TLS SNI.

    Letting httpx resolve the name again would open a DNS-rebinding hole: a name that
    answers a public address to the check and 127.0.0.1 to the connection.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == address.split("%")[0]:
        return url, headers, {}
    literal = f"[{address}]" if ":" in address else address
    netloc = literal + (f":{parts.port}" if parts.port else "")
    headers["Host"] = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl(), headers, {"sni_hostname": host}


def _over(chunks: list[bytes], cap: int, truncate: bool) -> bytes:
    """A body past its cap: its first ``cap`` bytes when truncating, else the feed fails."""
    if not truncate:
        raise _BodyTooLarge(_too_large(cap))
    return b"".join(chunks)[:cap]


def _too_large(cap: int) -> str:
    return f"body larger than {cap / 1048576:g} MiB (decompressed); raise fetch.max_bytes to allow"


def _not_encoded(encoding: str, start: bytes) -> str:
    """A body its Content-Encoding does not describe: the server's mistake, said as such.

    Such a body is not taken as it is even when it looks like plain XML (feedparser would):
    that is a guess, browsers refuse it too, and the failing feed is what gets the server
    fixed.  Saying it looks uncompressed tells the user which mistake the server made.
    """
    kind = "gzip" if encoding in ("gzip", "x-gzip") else "deflate data"
    plain = " (it looks uncompressed)" if start.lstrip()[:1] == b"<" else ""
    return f"the body is not valid {kind}, though the server says Content-Encoding: " \
           f"{encoding}{plain}"


def _gaierror(exc: BaseException) -> socket.gaierror | None:
    """The name-resolution failure behind ``exc`` (httpx wraps httpcore's, which wraps it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
