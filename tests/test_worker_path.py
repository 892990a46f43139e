"""The workers run the package the main process runs, wherever ``scrape`` is started: from
a folder holding another ``scraper/`` package (an older checkout), the fork server's
``python -c`` put that folder first on its ``sys.path`` and the workers ran its code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from server import FeedServer, Response

FEED = ('<rss version="2.0"><channel><title>t</title>'
        "<item><title>一</title><guid>a</guid><description>第一条短讯。</description></item>"
        "</channel></rss>").encode()


#: The installed script: ``python -m scraper`` from that folder would run the decoy itself.
SCRAPE = Path(sys.executable).with_name("scrape")


def test_workers_ignore_a_scraper_package_in_the_current_folder(
        tmp_path: Path, feed_server: FeedServer) -> None:
    if not SCRAPE.exists():
        pytest.skip("needs the installed `scrape` script (pip install -e .)")
    decoy = tmp_path / "scraper"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("")
    (decoy / "prepare.py").write_text(
        "def scan_feed(*args, **kwargs):\n    raise RuntimeError('the decoy package ran')\n"
        "prepare_feed = scan_feed\n")
    feed_server.route("/f.xml", Response(body=FEED))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": "f", "url": feed_server.url("/f.xml")}]}))

    run = subprocess.run([str(SCRAPE), "--once", "--json", "--workers", "1", "--config",
                          str(cfg), "--db", str(tmp_path / "s.db")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "decoy" not in run.stderr + run.stdout
    assert run.returncode == 0, run.stderr
    (line,) = json.loads(run.stdout)["feeds"]
    assert (line["status"], line["new"]) == ("ok", 1)


def test_a_run_started_in_a_folder_deleted_since_still_works(
        tmp_path: Path, feed_server: FeedServer) -> None:
    """The current folder is asked for (is the package there?); gone, it is not there.
    Inline (``--workers 0``): a pool cannot start there, multiprocessing asks for the
    folder too."""
    if not SCRAPE.exists():
        pytest.skip("needs the installed `scrape` script (pip install -e .)")
    feed_server.route("/f.xml", Response(body=FEED))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [{"name": "f", "url": feed_server.url("/f.xml")}]}))
    gone = tmp_path / "gone"
    gone.mkdir()
    run = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh",
                          str(gone), str(SCRAPE), "--once", "--json", "--workers", "0",
                          "--config", str(cfg), "--db", str(tmp_path / "s.db")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    (line,) = json.loads(run.stdout)["feeds"]
    assert (line["status"], line["new"]) == ("ok", 1)
