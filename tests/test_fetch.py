"""The fetcher against a real loopback server: limits httpx does not enforce by itself."""

from __future__ import annotations

import asyncio
import random

import pytest
import server as srv
from server import FeedServer, Response

from scraper.config import FetchSettings
from scraper.net.fetch import (
    ERROR_BODY_CAP,
    Fetcher,
    FetchResult,
    backoff_delay,
    parse_retry_after,
)
from scraper.version import USER_AGENT


def fetch(url: str, settings: FetchSettings | None = None, **kwargs: object) -> FetchResult:
    async def go() -> FetchResult:
        async with Fetcher(settings or FetchSettings(retries=0), retry_base=0.05) as fetcher:
            return await fetcher.fetch(url, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_plain_get_sends_user_agent_and_returns_body(feed_server: FeedServer) -> None:
    feed_server.serve("/feed", b"<rss/>")
    result = fetch(feed_server.url("/feed"))
    assert result.ok and result.status == 200 and result.body == b"<rss/>"
    assert feed_server.requests_to("/feed")[0].headers["user-agent"] == USER_AGENT


def test_conditional_get_gets_304(feed_server: FeedServer) -> None:
    feed_server.serve("/feed", b"<rss>v1</rss>")
    first = fetch(feed_server.url("/feed"))
    etag = first.headers["etag"]
    second = fetch(feed_server.url("/feed"), etag=etag)
    assert second.ok and second.not_modified and second.body is None
    assert feed_server.requests_to("/feed")[1].headers["if-none-match"] == etag


def test_gzip_body_is_inflated(feed_server: FeedServer) -> None:
    feed_server.serve("/gz", srv.gzipped(b"<rss>" + b"x" * 5000 + b"</rss>"),
                      **{"Content-Encoding": "gzip"})
    result = fetch(feed_server.url("/gz"))
    assert result.ok and result.body == b"<rss>" + b"x" * 5000 + b"</rss>"


def test_redirects_are_followed_up_to_the_limit(feed_server: FeedServer) -> None:
    feed_server.serve("/final", b"<rss/>")
    feed_server.route("/hop", Response(status=301, headers={"Location": "/final"}, etag=False))
    result = fetch(feed_server.url("/hop"))
    assert result.ok and result.url.endswith("/final")
    srv.redirect_loop(feed_server, "/loop")
    looped = fetch(feed_server.url("/loop"))
    assert not looped.ok and "too many redirects" in (looped.error or "")
    assert len(feed_server.requests_to("/loop")) + len(feed_server.requests_to("/loopx")) == 6


def test_drip_feed_hits_the_total_deadline(feed_server: FeedServer) -> None:
    feed_server.route("/drip", lambda _r: srv.drip(30))
    result = fetch(feed_server.url("/drip"), timeout=2.0)
    assert not result.ok and "timed out after 2 s" in (result.error or "")


def test_decompressed_size_is_capped(feed_server: FeedServer) -> None:
    bomb = srv.gzip_bomb(64 << 20)  # 64 MiB of spaces in about 64 KiB
    feed_server.route("/bomb", bomb)
    result = fetch(feed_server.url("/bomb"), FetchSettings(retries=0, max_bytes=1 << 20))
    assert not result.ok and "body larger than 1 MiB" in (result.error or "")
    assert result.body is None


def test_plain_body_size_is_capped(feed_server: FeedServer) -> None:
    feed_server.route("/huge", lambda _r: srv.huge_body(8 << 20))
    result = fetch(feed_server.url("/huge"), FetchSettings(retries=0, max_bytes=1 << 20))
    assert not result.ok and "body larger than" in (result.error or "")


def test_server_errors_are_retried_then_reported(feed_server: FeedServer) -> None:
    feed_server.route("/500", Response(status=500, body=b"oops", etag=False))
    result = fetch(feed_server.url("/500"), FetchSettings(retries=2))
    assert result.error == "HTTP 500 Internal Server Error (after 3 attempts)"
    assert len(feed_server.requests_to("/500")) == 3


def test_retry_after_is_honoured_then_succeeds(feed_server: FeedServer) -> None:
    calls = []

    def flaky(_req: srv.Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return Response(status=429, headers={"Retry-After": "1"}, etag=False)
        return Response(body=b"<rss/>")

    feed_server.route("/flaky", flaky)
    result = fetch(feed_server.url("/flaky"), FetchSettings(retries=2))
    assert result.ok and result.attempts == 2


def test_long_retry_after_is_left_to_the_scheduler(feed_server: FeedServer) -> None:
    feed_server.route("/slowdown", Response(status=503, headers={"Retry-After": "3600"},
                                            etag=False))
    result = fetch(feed_server.url("/slowdown"), FetchSettings(retries=3))
    assert not result.ok and result.retry_after == 3600
    assert len(feed_server.requests_to("/slowdown")) == 1


def test_connection_refused_is_one_clear_line() -> None:
    result = fetch("http://127.0.0.1:9/feed")
    assert not result.ok and (result.error or "").startswith("connection failed")


def test_guard_refuses_loopback_pages(feed_server: FeedServer) -> None:
    feed_server.serve("/page", b"<html></html>", "text/html")
    result = fetch(feed_server.url("/page"), guard=True)
    assert not result.ok and (result.error or "").startswith("refused")
    assert feed_server.requests_to("/page") == []


def test_guard_checks_every_redirect_hop(feed_server: FeedServer) -> None:
    feed_server.route("/to-metadata", Response(
        status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}, etag=False))
    settings = FetchSettings(retries=0, allow_private=("127.0.0.1",))
    result = fetch(feed_server.url("/to-metadata"), settings, guard=True)
    assert not result.ok and "169.254.169.254" in (result.error or "")
    assert len(feed_server.requests_to("/to-metadata")) == 1


@pytest.mark.parametrize(("value", "expected"), [("120", 120.0), (" 5 ", 5.0), ("soon", None),
                                                 (None, None)])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60.0


def test_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(1)
    delays = [[backoff_delay(a, 1.0, rng) for _ in range(200)] for a in range(4)]
    assert [max(d) <= 2 ** a for a, d in enumerate(delays)] == [True] * 4
    assert max(delays[3]) > max(delays[0])
    assert len({round(d, 3) for d in delays[2]}) > 100  # spread, not lockstep


def test_guarded_fetch_connects_to_the_address_it_checked(feed_server: FeedServer) -> None:
    """No second DNS lookup (rebinding): the request goes to the approved address, with the
    original Host header."""
    feed_server.serve("/page", b"<html>ok</html>", "text/html")
    settings = FetchSettings(retries=0, allow_private=("127.0.0.0/8", "::1/128"))
    url = feed_server.url("/page").replace("127.0.0.1", "localhost")
    result = fetch(url, settings, guard=True)
    assert result.ok and result.body == b"<html>ok</html>"
    assert result.url == url
    assert feed_server.requests_to("/page")[0].headers["host"] == f"localhost:{feed_server.port}"



# .invalid never resolves (RFC 2606): the lookup fails at once, with or without a network.
@pytest.mark.parametrize("guard", [False, True], ids=["httpx-lookup", "guard-lookup"])
def test_an_unresolvable_host_is_named(guard: bool) -> None:
    result = fetch("http://no-such-host.invalid/feed", guard=guard)
    assert not result.ok and result.status is None
    assert (result.error or "").startswith("cannot resolve no-such-host.invalid: "), result.error
    assert "Errno" not in (result.error or "")


def test_an_unresolvable_redirect_target_is_the_host_named(feed_server: FeedServer) -> None:
    feed_server.route("/moved", Response(status=301, etag=False,
                                         headers={"Location": "http://gone.invalid/feed"}))
    result = fetch(feed_server.url("/moved"))
    assert (result.error or "").startswith("cannot resolve gone.invalid: "), result.error


def test_an_error_answer_keeps_the_start_of_its_body(feed_server: FeedServer) -> None:
    feed_server.route("/denied", Response(status=403, body=b"<title>Just a moment...</title>",
                                          etag=False, headers={"Content-Type": "text/html"}))
    result = fetch(feed_server.url("/denied"))
    assert result.error == "HTTP 403 Forbidden" and result.body is None
    assert result.error_body == b"<title>Just a moment...</title>"


def test_an_error_body_is_read_only_up_to_its_cap(feed_server: FeedServer) -> None:
    endless = srv.huge_body(64 << 20)
    feed_server.route("/endless", Response(status=503, body=endless.body, headers=endless.headers))
    result = fetch(feed_server.url("/endless"))
    assert result.status == 503 and result.error == "HTTP 503 Service Unavailable"
    assert result.error_body is not None and len(result.error_body) == ERROR_BODY_CAP
    assert result.error_body.startswith(b"<!-- padding -->")


def test_a_gzipped_error_body_is_inflated_within_the_cap(feed_server: FeedServer) -> None:
    feed_server.route("/gz403", Response(status=403, body=srv.gzipped(b"refused " * 20000),
                                         etag=False, headers={"Content-Encoding": "gzip"}))
    result = fetch(feed_server.url("/gz403"))
    assert result.status == 403
    assert result.error_body == (b"refused " * 20000)[:ERROR_BODY_CAP]
