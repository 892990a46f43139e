"""``scrape --once`` stopped by SIGTERM (``docker stop``, systemd) ends as Ctrl-C ends it:
exit 143, a line saying so, and its ``workers`` row marked stopped.  Killed outright, the
row stayed "running" and ``scrape status`` showed a live process holding its feeds."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from server import FeedServer, Response, hang

REPO = Path(__file__).resolve().parent.parent
RSS = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item>'
       b"<title>One</title><guid>https://e.org/1</guid><description>Some text here."
       b"</description></item></channel></rss>")


def terminated_run(tmp_path: Path, feed_server: FeedServer, ignore_sigint: bool = False
                   ) -> tuple[subprocess.Popen[bytes], str, Path]:
    """A ``--once`` run sent SIGTERM while one of its feeds hangs: the process, its stderr
    and its database."""
    feed_server.route("/quick.xml", Response(body=RSS))
    feed_server.route("/slow.xml", hang(60))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"feeds": [
        {"name": "quick", "url": feed_server.url("/quick.xml")},
        {"name": "slow", "url": feed_server.url("/slow.xml")}]}))
    db = tmp_path / "scrape.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # As a shell starts a background job (``scrape --once &`` in a script): SIGINT ignored.
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    proc = subprocess.Popen([sys.executable, "-m", "scraper", "--once", "--config", str(cfg),
                             "--db", str(db), "--workers", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=ignore)
    try:
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing
        while (not any(r.path == "/slow.xml" for r in feed_server.requests)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert any(r.path == "/slow.xml" for r in feed_server.requests)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    return proc, err.decode("utf-8", "replace"), db


def test_with_sigint_ignored_sigterm_still_ends_the_run(tmp_path: Path,
                                                         feed_server: FeedServer) -> None:
    """asyncio.run takes no SIGINT that is ignored: sent on to it, SIGTERM did nothing."""
    proc, _, _ = terminated_run(tmp_path, feed_server, ignore_sigint=True)
    assert proc.returncode == -signal.SIGTERM


def test_sigterm_stops_the_run_cleanly(tmp_path: Path, feed_server: FeedServer) -> None:
    proc, text, db = terminated_run(tmp_path, feed_server)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in text and "Traceback" not in text
    out = subprocess.run([sys.executable, "-m", "scraper", "--db", str(db), "status",
                          "--json"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    workers = json.loads(out.stdout)["workers"]
    runs = [w for w in workers if w["pid"] == proc.pid]
    assert runs and all(w["state"] == "stopped" and not w["alive"] and w["holds"] == 0
                        for w in runs), runs
