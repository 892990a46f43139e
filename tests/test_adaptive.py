"""`adaptive: true`: a feed is polled at its observed publishing rate, not its interval."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dbread
import yaml
from server import FeedServer

from scraper.cli import main
from scraper.core import schedule


def test_adaptive_feed_follows_its_publishing_rate(tmp_path: Path, database: str,
                                                   feed_server: FeedServer) -> None:
    now = datetime.now(UTC)
    count = 48  # one a day would be 7; 48 in a week is one every 3.5 h
    items = "".join(
        f"<item><title>t{i}</title><link>https://e.org/{i}</link>"
        f"<pubDate>{email.utils.format_datetime(now - timedelta(hours=3 * i), usegmt=True)}"
        f"</pubDate><description>entry {i}</description></item>" for i in range(count))
    body = f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'.encode()
    feed_server.serve("/f.xml", body)
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "adaptive", "url": feed_server.url("/f.xml"), "interval": 60,
         "adaptive": True},
        {"name": "fixed", "url": feed_server.url("/f.xml"), "interval": 60},
    ]}), "utf-8")
    assert main(["--once", "--config", str(cfg), "--db", database, "--workers", "0"]) == 0
    due = {name: datetime.fromisoformat(at.replace("Z", "+00:00")) - now for name, at in
           dbread.rows(database, "SELECT name, next_due_at FROM feeds")}
    # 48 entries within the week-long window (the oldest is 141 h old) -> window / 48.
    expected = schedule.ADAPTIVE_WINDOW / count
    assert expected * 0.85 < due["adaptive"].total_seconds() < expected * 1.15 + 60
    assert due["fixed"].total_seconds() < 60 * 1.15 + 60
