"""The daemon's database file deleted or replaced while it runs (``rm scrape.db``): it went on
storing into an inode nobody could open again, and ``scrape status`` said no daemon had run.
Now it stops, says why, and exits 1, so a supervisor starts it again on the new file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from daemonrun import feeds_yaml, running_daemon, wait_for
from server import FeedServer, Response

RSS = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
       b"<title>One</title><guid>https://e.org/1</guid><description>Some text here."
       b"</description></item></channel></rss>")


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_deleted_or_replaced_database_stops_the_daemon(
        tmp_path: Path, feed_server: FeedServer, how: str) -> None:
    feed_server.route("/one.xml", Response(body=RSS))
    with running_daemon(tmp_path, feeds_yaml({"one": feed_server.url("/one.xml")})) as d:
        wait_for(lambda: len(d.refreshes("one")) >= 1, 30, "the first refresh", d.proc,
                 d.log_path)
        db = tmp_path / "scrape.db"
        if how == "replaced":  # another file renamed over it (a restore): a new inode
            copy = tmp_path / "restored.db"
            shutil.copyfile(db, copy)
            os.replace(copy, db)
        else:
            for suffix in ("", "-wal", "-shm"):
                (tmp_path / f"scrape.db{suffix}").unlink(missing_ok=True)
        assert d.proc.wait(timeout=60) == 1, d.log_text()[-3000:]
        errors = [e for e in d.events() if e["level"] == "error"]
        assert errors and "deleted or replaced" in errors[0]["message"]
        assert str(tmp_path / "scrape.db") in errors[0]["message"]
