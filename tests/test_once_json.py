"""What `scrape --once` tells its user (issue 20, point 5): `--json` prints the run as one
JSON object on stdout, logs staying on stderr; on a terminal, live progress on stderr, and
nothing of it where stderr is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml
from server import FeedServer

from scraper.cli import main

#: Long enough (over dedup.short_chars) that a reprint is judged by its text.
STORY = "。".join(f"本地测试新闻的第{n}句话，讲述一次发布会上公布的新产品与价格" for n in range(12))


def rss(prefix: str, texts: list[str]) -> bytes:
    items = "".join(
        f"<item><title>{escape(prefix)}{i}</title><link>https://example.org/{prefix}/{i}</link>"
        f"<guid>{prefix}-{i}</guid><description>{escape(text)}</description></item>"
        for i, text in enumerate(texts))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{prefix}</title>{items}</channel></rss>").encode()


A_TEXTS = [STORY, "第二条：一段与其他文章都不同的短讯。", "第三条：又一段不同的短讯。"]
B_TEXTS = ["乙源自己的一条短讯。", STORY]  # the second reprints the first of a


#: A feed cut off after its first item: stored, with a warning in the log.
TRUNCATED = rss("丙", ["一条写坏了的源里的短讯。"]).split(b"</channel>")[0]


def serve(server: FeedServer) -> list[dict]:
    server.serve("/a.xml", rss("甲", A_TEXTS))
    server.serve("/b.xml", rss("乙", B_TEXTS))
    server.serve("/c.xml", TRUNCATED)
    return [{"name": "a", "url": server.url("/a.xml")},
            {"name": "b", "url": server.url("/b.xml")},
            {"name": "gone", "url": server.url("/gone.xml")}]  # nothing served there: 404


def write_config(tmp_path: Path, feeds: list[dict]) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(yaml.safe_dump({"feeds": feeds, "fetch": {"retries": 0}},
                                   allow_unicode=True), "utf-8")
    return path


def test_json_summary_parses_back_with_what_the_server_served(
        tmp_path: Path, database: str, feed_server: FeedServer, capsys) -> None:
    cfg = write_config(tmp_path, [*serve(feed_server),
                                  {"name": "c", "url": feed_server.url("/c.xml")}])
    args = ["--once", "--json", "--config", str(cfg), "--db", database]
    assert main(args) == 1  # one feed failed
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the whole of stdout is the one object
    feeds = {f["feed"]: f for f in summary["feeds"]}
    assert list(feeds) == ["a", "b", "gone", "c"]
    assert feeds["a"]["status"] == "ok" and feeds["a"]["new"] == len(A_TEXTS)
    assert feeds["b"]["status"] == "ok" and feeds["b"]["new"] == len(B_TEXTS)
    assert feeds["a"]["duplicates"] + feeds["b"]["duplicates"] == 1  # the one reprint
    assert feeds["a"]["error"] is None and feeds["a"]["http_status"] == 200
    assert feeds["gone"]["status"] == "error" and feeds["gone"]["new"] == 0
    assert "404" in feeds["gone"]["error"] and feeds["gone"]["http_status"] == 404
    assert feeds["c"]["new"] == 1 and "malformed" in feeds["c"]["warning"]
    assert summary["totals"] == {
        "feeds": 4, "ok": 3, "failed": 1, "new": len(A_TEXTS) + len(B_TEXTS) + 1,
        "updated": 0, "unchanged": 0, "duplicates": 1}
    assert "c: malformed feed" in captured.err  # the log line: on stderr, not in the JSON

    # Again: the server answers 304 to the stored ETags.
    assert main(args) == 1
    again = json.loads(capsys.readouterr().out)
    assert [f["status"] for f in again["feeds"]] == [
        "not-modified", "not-modified", "error", "not-modified"]
    assert again["totals"]["new"] == 0


def test_json_with_no_feed_to_refresh_is_still_one_object(tmp_path: Path, database: str,
                                                          capsys) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("feeds:\n  - {name: idle, url: 'http://127.0.0.1:9/', enabled: false}\n")
    assert main(["--once", "--json", "--config", str(cfg), "--db", database]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["feeds"] == [] and summary["totals"]["feeds"] == 0


# The two below run on SQLite only (the config's default database): they are about the
# terminal, and what they store is stored as in the test above, which runs on both.
def scrape(cfg: Path, **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scraper", "--once", "--config", str(cfg)],
        cwd=cfg.parent, stdout=subprocess.PIPE, text=True, check=False, **kwargs)


def test_no_progress_when_stderr_is_not_a_terminal(
        tmp_path: Path, feed_server: FeedServer) -> None:
    feeds = serve(feed_server)[:2]  # both succeed: nothing for the logs to say
    done = scrape(write_config(tmp_path, feeds), stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "total: 2 feeds, 2 ok" in done.stdout


def test_progress_on_a_terminal_counts_feeds_new_entries_and_errors(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """stderr on a pty, as a terminal would be: the bar shows there, the summary on stdout
    as ever.  The pty is left at its 0 x 0 size, which tqdm alone would draw nothing on."""
    master, slave = os.openpty()
    cfg = write_config(tmp_path, serve(feed_server))
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        done = scrape(cfg, stderr=slave)
    finally:
        os.close(slave)
        reader.join(timeout=120)  # a safety: EOF comes when the run's last process exits
        os.close(master)
    assert not reader.is_alive(), "a process of the run kept the terminal open"
    assert done.returncode == 1
    text = seen.decode("utf-8", "replace")
    total = len(A_TEXTS) + len(B_TEXTS)
    assert "refreshing" in text
    assert "3/3" in text and f"{total} new, 1 errors" in text, text
    assert "total: 3 feeds, 2 ok, 1 failed" in done.stdout
    assert "refreshing" not in done.stdout


def test_json_without_once_is_a_usage_error(tmp_path: Path) -> None:
    """The daemon prints no summary: --json there would be silently ignored, so refuse it."""
    with pytest.raises(SystemExit) as stop:
        main(["--json", "--config", str(tmp_path / "feeds.yaml")])
    assert stop.value.code == 2
