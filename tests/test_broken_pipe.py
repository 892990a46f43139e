"""``scrape list | head -1``: when stdout's reader leaves, the command leaves quietly with
128 + SIGPIPE, as Unix tools do, instead of reporting an unexpected error."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from scraper.cli import main

ROOT = Path(__file__).resolve().parent.parent


def words(rng: random.Random, count: int) -> str:
    """Distinct-looking text, so that dedup keeps every entry (and stays quick)."""
    return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                            for _ in range(rng.randint(3, 9))) for _ in range(count))


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A config and a database whose listings, and entry #1, are well over a pipe's buffer
    (64 KiB on Linux): the writer blocks, then breaks, however fast the reader is."""
    folder = tmp_path_factory.mktemp("pipe")
    rng = random.Random(7)
    long_body = "".join(f"<p>{k} {words(rng, 12)}</p>" for k in range(2000))
    items = [f"<item><title>pipe long</title><link>https://example.org/long</link>"
             f"<guid>long</guid><description>{escape(long_body)}</description></item>"]
    items += [f"<item><title>pipe {i} {words(rng, 25)}</title>"
              f"<link>https://example.org/{i}</link><guid>item-{i}</guid>"
              f"<description>{words(rng, 20)}</description></item>" for i in range(400)]
    (folder / "f.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>t</title>'
        f"<link>https://example.org/</link>{''.join(items)}</channel></rss>", "utf-8")
    config = folder / "feeds.yaml"
    config.write_text("feeds:\n  - name: local\n    url: f.xml\n", "utf-8")
    db = folder / "t.db"
    assert main(["--once", "--workers", "0", "--config", str(config), "--db", str(db)]) == 0
    return config, db


@pytest.mark.parametrize("command", [["list", "--limit", "0"],
                                     ["search", "pipe", "--limit", "0"],
                                     ["show", "1"]], ids=lambda c: c[0])
def test_a_reader_that_leaves_ends_the_command_quietly(
        stored: tuple[Path, Path], command: list[str]) -> None:
    config, db = stored
    process = subprocess.Popen(
        [sys.executable, "-m", "scraper", *command, "--config", str(config), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()  # what `head -1` reads before it leaves
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141, err
    assert err == ""


def test_output_that_fits_still_exits_0(stored: tuple[Path, Path]) -> None:
    config, db = stored
    done = subprocess.run(
        [sys.executable, "-m", "scraper", "list", "--limit", "0", "--config", str(config),
         "--db", str(db)], capture_output=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 0 and done.stderr == b""
    assert done.stdout.count(b"\n") == 401


#: ``scrape list`` whose database read meets a broken pipe of its own (as a worker's or a
#: connection's would), while stdout's reader is still there.
OTHER_PIPE = """import sys
from scraper import app
from scraper.cli import main
def broken(*args, **kwargs):
    raise BrokenPipeError(32, "Broken pipe")
app.Scraper.entries = broken
sys.exit(main(sys.argv[1:]))
"""


def test_a_broken_pipe_that_is_not_stdout_is_still_an_error(stored: tuple[Path, Path]) -> None:
    config, db = stored
    done = subprocess.run(
        [sys.executable, "-c", OTHER_PIPE, "list", "--config", str(config), "--db", str(db)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert done.returncode == 70
    assert "scrape: unexpected error: BrokenPipeError" in done.stderr
