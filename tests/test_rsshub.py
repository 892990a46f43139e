"""RSSHub answers that are not a feed, served from 127.0.0.1: each gets its own error line.

The feed's ``rsshub:/route`` resolves against a test ``rsshub_base`` (the loopback server),
beside an ordinary feed that must still be stored.  The refusals imitate what the real
services send (see ``scraper/core/refusal.py`` for the sources); the error lines are checked
through ``scrape --once`` and ``scrape status --json``, as a user would read them.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import dbread
import pytest
import yaml
from server import FeedServer, Response

from scraper.cli import main
from scraper.core.refusal import recognise

ROUTE = "/zaker/channel/13"
SELF_HOST = "self-host RSSHub and set rsshub_base, or run docker compose (it starts one)"

#: The notice rsshub.app gave feed readers in April 2026 (Colin-XKL/FeedCraft #695).
RESTRICTION = (
    "Due to cost considerations, we will gradually restrict access to rsshub.app for some "
    "feed readers.\n\nPlease note that rsshub.app is intended for testing purposes only and "
    "should not be used as a production RSS source.\n\nFor stable and long-term usage, we "
    "strongly recommend self-hosting RSSHub.\nOfficial deployment guide: "
    "https://docs.rsshub.app/deploy/\n\nThank you for your understanding.")

#: Cloudflare's managed challenge, cut down: what a feed reader's User-Agent gets.
CHALLENGE = (
    '<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>'
    '<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">'
    '<meta name="robots" content="noindex,nofollow"></head><body>'
    '<div class="main-wrapper" role="main"><noscript>Enable JavaScript and cookies to '
    'continue</noscript></div><script>(function(){window._cf_chl_opt={cType: "managed"};'
    'var a=document.createElement("script");'
    'a.src="/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1?ray=8f00000000000000";'
    'document.getElementsByTagName("head")[0].appendChild(a);}());</script></body></html>')


def rsshub_error_page(message: str, route_pattern: str, path: str) -> str:
    """RSSHub's error page (lib/views/error.tsx in lib/views/layout.tsx), its structure kept,
    its styling and links dropped.  Hono escapes every value."""
    esc = html.escape
    return (
        '<html><head><title>Welcome to RSSHub!</title>'
        '<script src="https://cdn.tailwindcss.com"></script><style>body{font-family:SN Pro}'
        '</style></head><body class="antialiased min-h-screen text-zinc-700 flex flex-col">'
        '<div class="pointer-events-none absolute w-full min-h-screen"></div>'
        '<div class="w-full grow shrink-0 py-8 flex items-center justify-center flex-col">'
        '<img class="grayscale" src="/logo.png" alt="RSSHub" width="100" loading="lazy"/>'
        '<h1 class="text-4xl font-bold">Looks like something went wrong</h1>'
        '<div class="text-left w-[800px] space-y-6 !mt-10"><div class="space-y-2">'
        '<p class="mb-2 font-bold">Helpful Information</p>'
        '<p class="message">Error Message:<br/><code class="mt-2 block max-h-28 '
        f'overflow-auto bg-zinc-100 details whitespace-pre-line">{esc(message)}</code></p>'
        f'<p class="message">Route: <code class="ml-2 bg-zinc-100">{esc(route_pattern)}'
        '</code></p>'
        f'<p class="message">Full Route: <code class="ml-2 bg-zinc-100">{esc(path)}</code></p>'
        '<p class="message">Node Version: <code class="ml-2 bg-zinc-100">v22.12.0</code></p>'
        '</div><div><p class="mb-2 font-bold">Report</p><p>After carefully reading the '
        '<a href="https://docs.rsshub.app/">document</a>, if you think this is a bug of '
        'RSSHub, please submit an issue on GitHub.</p></div></div></div></body></html>')


def rss(title: str, *items: str) -> bytes:
    body = "".join(f"<item><title>{t}</title><link>https://example.org/{i}</link>"
                   f"<description>{t}</description></item>" for i, t in enumerate(items))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{title}</title>{body}</channel></rss>").encode()


def write_config(tmp_path: Path, server: FeedServer, database: str | None = None,
                 **top: object) -> Path:
    """Two feeds: the RSSHub route under test, and an ordinary feed that answers; stored in
    ``database`` (the fixture's), else x.db beside the config."""
    path = tmp_path / "feeds.yaml"
    data = {"rsshub_base": server.url(""), "fetch": {"retries": 0}, **top,
            "database": database or str(tmp_path / "x.db"),
            "feeds": [{"name": "hub", "url": f"rsshub:{ROUTE}"},
                      {"name": "plain", "url": server.url("/plain.xml")}]}
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    server.serve("/plain.xml", rss("plain", "first", "second"))
    return path


def run_once(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["--once", "--config", str(cfg)])  # (into the config's database:)
    return code, capsys.readouterr().out


def feed_status(cfg: Path, capsys: pytest.CaptureFixture[str], name: str) -> dict:
    assert main(["status", "--json", "--config", str(cfg)]) == 0
    feeds = json.loads(capsys.readouterr().out)["feeds"]
    return next(f for f in feeds if f["name"] == name)


def stored(cfg: Path, feed: str) -> int:
    database = yaml.safe_load(cfg.read_text("utf-8"))["database"]
    return int(dbread.value(database, "SELECT COUNT(*) FROM entries WHERE feed = ?", feed))


def line_of(out: str, feed: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(feed + " "))


def host_of(server: FeedServer) -> str:
    return f"127.0.0.1:{server.port}"


def expect_refused(tmp_path: Path, server: FeedServer, capsys: pytest.CaptureFixture[str],
                   expected: str, database: str | None = None) -> None:
    """One run: the RSSHub feed fails with ``expected``, the other feed is stored."""
    cfg = write_config(tmp_path, server, database)
    code, out = run_once(cfg, capsys)
    assert code == 1, out
    assert line_of(out, "hub").endswith(expected), out
    assert stored(cfg, "plain") == 2
    assert stored(cfg, "hub") == 0
    hub = feed_status(cfg, capsys, "hub")
    assert hub["last_error"] == expected and hub["error_count"] == 1
    assert server.requests_to(ROUTE), "the route was not asked for at the test rsshub_base"


# SQLite only: the message does not depend on the backend; the back-off test runs on PostgreSQL.
SQLITE_ONLY = pytest.mark.parametrize("database", ["sqlite"], indirect=True)


@SQLITE_ONLY
def test_public_instance_restriction_text(tmp_path: Path, database: str,
                                          feed_server: FeedServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve(ROUTE, RESTRICTION.encode(), "text/plain; charset=utf-8")
    expect_refused(tmp_path, feed_server, capsys,
                   f"{host_of(feed_server)} refused the route (the public instance restricts "
                   f"feed readers): {SELF_HOST}", database)


# The refusals below run on SQLite only: what they are about is the fetch's reading of an
# answer; their error rows are stored and read back as the test above does on both.


def test_cloudflare_challenge_page(tmp_path: Path, feed_server: FeedServer,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.route(ROUTE, Response(status=403, body=CHALLENGE.encode(), etag=False, headers={
        "Content-Type": "text/html; charset=UTF-8", "cf-mitigated": "challenge",
        "Server": "cloudflare"}))
    expect_refused(tmp_path, feed_server, capsys,
                   f"{host_of(feed_server)} answered with a Cloudflare challenge page (HTTP 403):"
                   f" it lets browsers through, not feed readers; {SELF_HOST}")


@pytest.mark.parametrize(("status", "message", "pattern"), [
    (503, 'FetchError: [GET] "https://www.myzaker.com/channel/13": <no response> '
          "Request failed with status code 403", "/zaker/channel/:id?"),
    (404, "NotFoundError: The route does not exist or has been deleted.", ROUTE),
])
def test_rsshub_error_page_names_the_route_and_quotes_rsshub(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str],
        status: int, message: str, pattern: str) -> None:
    page = rsshub_error_page(message, pattern, ROUTE)
    feed_server.route(ROUTE, Response(status=status, body=page.encode(), etag=False,
                                      headers={"Content-Type": "text/html; charset=UTF-8"}))
    expect_refused(tmp_path, feed_server, capsys,
                   f"RSSHub at {host_of(feed_server)} failed on route {ROUTE} (HTTP {status}): "
                   f'RSSHub says "{message}"')


def test_a_refused_feed_backs_off_like_any_failure(
        tmp_path: Path, database: str, feed_server: FeedServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve(ROUTE, RESTRICTION.encode(), "text/plain")
    cfg = write_config(tmp_path, feed_server, database)
    gaps = []
    for count in (1, 2):
        assert run_once(cfg, capsys)[0] == 1
        hub = feed_status(cfg, capsys, "hub")
        assert hub["error_count"] == count and hub["state"] == "failing"
        assert hub["last_status"] == 200
        gaps.append(_seconds(hub["next_due_at"]) - _seconds(hub["last_error_at"]))
    assert gaps[1] > gaps[0] > 0  # exponential backoff: the second wait is about twice the first


def _seconds(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# SQLite only, as the refusals above.
def test_a_feed_that_quotes_the_notice_is_still_a_feed(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.serve(ROUTE, rss("news about RSSHub", html.escape(RESTRICTION)))
    cfg = write_config(tmp_path, feed_server)
    code, out = run_once(cfg, capsys)
    assert code == 0, out
    assert stored(cfg, "hub") == 1


def test_an_ordinary_error_keeps_its_status_line(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    feed_server.route(ROUTE, Response(status=403, body=b"<html><title>Forbidden</title></html>",
                                      etag=False, headers={"Content-Type": "text/html"}))
    cfg = write_config(tmp_path, feed_server)
    code, out = run_once(cfg, capsys)
    assert code == 1 and line_of(out, "hub").endswith("  HTTP 403 Forbidden"), out


def test_an_unresolvable_rsshub_base_names_the_host(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str]) -> None:
    # .invalid never resolves (RFC 2606), with or without a network: the lookup fails at once.
    cfg = write_config(tmp_path, feed_server, rsshub_base="http://no-such-host.invalid")
    code, out = run_once(cfg, capsys)
    assert code == 1 and stored(cfg, "plain") == 2
    assert "  cannot resolve no-such-host.invalid: " in line_of(out, "hub"), out
    assert "Errno" not in out


def test_the_environment_overrides_rsshub_base(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    feed_server.serve(ROUTE, rss("zaker", "one", "two", "three"))
    cfg = write_config(tmp_path, feed_server, rsshub_base="http://no-such-host.invalid")
    monkeypatch.setenv("SCRAPE_RSSHUB_BASE", feed_server.url("") + "/")
    code, out = run_once(cfg, capsys)
    assert code == 0, out
    assert stored(cfg, "hub") == 3
    assert feed_status(cfg, capsys, "hub")["url"] == feed_server.url(ROUTE)


def test_a_bad_environment_rsshub_base_is_one_line_and_exit_2(
        tmp_path: Path, feed_server: FeedServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write_config(tmp_path, feed_server)
    monkeypatch.setenv("SCRAPE_RSSHUB_BASE", "rsshub:1200")
    code = main(["--once", "--config", str(cfg), "--db", str(tmp_path / "x.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "scrape: SCRAPE_RSSHUB_BASE: expected an http(s) URL, got 'rsshub:1200'"], err
    assert not (tmp_path / "x.db").exists()


# -- the recogniser alone: the advice depends on whether the URL is an RSSHub route ----------

def test_challenge_on_a_site_of_its_own_advises_another_feed() -> None:
    line = recognise(503, {"Content-Type": "text/html"}, CHALLENGE.encode(),
                     "https://news.example.org/rss", "http://rsshub:1200")
    assert line is not None
    assert line.startswith("news.example.org answered with a Cloudflare challenge page (HTTP 503)")
    assert "rsshub_base" not in line and "own feed" in line


def test_challenge_on_the_public_instance_advises_self_hosting() -> None:
    line = recognise(403, {"CF-Mitigated": "challenge"}, b"", "https://rsshub.app/zaker/focusread",
                     "http://rsshub:1200")
    assert line is not None and line.endswith(SELF_HOST)


@pytest.mark.parametrize(("status", "headers", "body"), [
    (403, {}, b"Forbidden"),
    (200, {"Content-Type": "text/html"}, b"<html><title>Just a moment...</title></html>"),
    (None, {}, RESTRICTION.encode()),
    (503, {}, b"<html><h1>Looks like something went wrong</h1></html>"),
])
def test_other_answers_are_not_refusals(status: int | None, headers: dict[str, str],
                                        body: bytes) -> None:
    assert recognise(status, headers, body, "https://rsshub.app/x", "https://rsshub.app") is None


def test_a_stack_trace_is_quoted_by_its_first_line() -> None:
    message = "Error: boom\n    at handler (/app/lib/routes/zaker/channel.ts:30:11)\n" + "x" * 999
    page = rsshub_error_page(message, "/zaker/channel/:id?", ROUTE)
    line = recognise(503, {}, page.encode(), "http://hub:1200" + ROUTE, "http://hub:1200")
    assert line == (f"RSSHub at hub:1200 failed on route {ROUTE} (HTTP 503): "
                    'RSSHub says "Error: boom"')
