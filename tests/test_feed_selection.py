"""``--feed NAME`` on the commands that read the database (list, search, every export): a
name that is neither configured nor stored is refused (exit 2, one line) before any output
is written; a feed removed from feeds.yaml stays selectable by its stored entries, with the
config or with ``--db`` alone.  The database is filled by ``scrape --once`` from local feed
files (README: a feed's url may be a path relative to feeds.yaml)."""

from __future__ import annotations

import json
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import yaml

from scraper.cli import main

#: Each feed's items: (title, text); the texts share a word for ``search``.
ITEMS = {
    "alpha": [("阿尔法的第一篇新闻", "阿尔法写的一条消息 common"),
              ("阿尔法的第二篇报道", "阿尔法写的另一条消息 common")],
    "beta": [("贝塔独家的长篇报道", "贝塔写的完全不同的内容 common")],
}

#: What each export's output file holds before the command: an export refused must leave it.
SENTINEL = "published before; must survive a refused export\n"


def rss(feed: str, items: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<item><title>{escape(title)}</title><link>https://{feed}.example/{i}</link>"
        f"<guid>{feed}-{i}</guid><description>{escape(text)}</description></item>"
        for i, (title, text) in enumerate(items))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>{feed}</title><link>https://{feed}.example/</link>{body}"
            "</channel></rss>")


def write_config(folder: Path, names: list[str]) -> Path:
    path = folder / "feeds.yaml"
    feeds = [{"name": n, "url": f"{n}.xml"} for n in names]
    path.write_text(yaml.safe_dump({"feeds": feeds}, allow_unicode=True), "utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(feeds.yaml naming alpha alone, the database): both feeds were stored by a real run,
    then beta was removed from the config.  The working directory has no feeds.yaml, so
    ``--db`` alone means no config."""
    conf = tmp_path / "conf"
    conf.mkdir()
    for name, items in ITEMS.items():
        (conf / f"{name}.xml").write_text(rss(name, items), "utf-8")
    db = tmp_path / "scrape.db"
    assert main(["--once", "--config", str(write_config(conf, list(ITEMS))),
                 "--db", str(db)]) == 0
    monkeypatch.chdir(tmp_path)
    return write_config(conf, ["alpha"]), db


#: Every read command taking ``--feed``, with the output file it writes (None: stdout only).
COMMANDS: list[tuple[list[str], str | None]] = [
    (["list"], None),
    (["search", "common"], None),
    (["export", "jsonl", "{out}"], "out.jsonl"),
    (["export", "feed", "{out}"], "merged.xml"),
    (["export", "hexo", "{out}"], "posts"),
]


def sentinel(path: Path) -> None:
    """A file (or, for hexo, a folder holding one) standing for an earlier export."""
    if path.suffix:
        path.write_text(SENTINEL, "utf-8")
    else:
        path.mkdir()
        (path / "kept.md").write_text(SENTINEL, "utf-8")


def snapshot(path: Path | None) -> dict[str, str]:
    """Every file at or under ``path`` with its text."""
    if path is None:
        return {}
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    return {str(f): f.read_text("utf-8") for f in files if f.is_file()}


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "db-alone"])
@pytest.mark.parametrize(("command", "output"), COMMANDS, ids=lambda c: " ".join(c)
                         if isinstance(c, list) else None)
def test_an_unknown_feed_is_refused_before_anything_is_written(
        site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        command: list[str], output: str | None, with_config: bool) -> None:
    cfg, db = site
    out = tmp_path / output if output else None
    if out:
        sentinel(out)
    before = snapshot(out)
    args = [a.replace("{out}", str(out)) for a in command]
    where = ["--config", str(cfg)] if with_config else []
    capsys.readouterr()
    assert main([*args, "--feed", "alpha", "--feed", "nope", "--db", str(db), *where]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    # the unknown name, and the known ones: configured and stored (beta, removed, too)
    assert "no feed named 'nope'" in lines[0] and "(known: alpha, beta)" in lines[0]
    assert "'alpha'" not in lines[0]
    assert snapshot(out) == before


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "db-alone"])
def test_a_feed_removed_from_the_config_is_still_selectable(
        site: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        with_config: bool) -> None:
    cfg, db = site
    where = ["--db", str(db), *(["--config", str(cfg)] if with_config else [])]
    beta = [title for title, _ in ITEMS["beta"]]
    capsys.readouterr()
    assert main(["list", "--feed", "beta", "--json", *where]) == 0
    assert [e["title"] for e in json.loads(capsys.readouterr().out)] == beta
    assert main(["search", "common", "--feed", "beta", "--json", *where]) == 0
    assert [e["title"] for e in json.loads(capsys.readouterr().out)] == beta
    out = tmp_path / "beta.jsonl"
    assert main(["export", "jsonl", str(out), "--feed", "beta", *where]) == 0
    assert [json.loads(line)["title"] for line in out.read_text("utf-8").splitlines()] == beta
    merged = tmp_path / "beta.xml"
    assert main(["export", "feed", str(merged), "--feed", "beta", *where]) == 0
    assert ITEMS["beta"][0][0] in merged.read_text("utf-8")
    posts = tmp_path / "posts"
    assert main(["export", "hexo", str(posts), "--feed", "beta", *where]) == 0
    assert [beta[0] in p.read_text("utf-8") for p in posts.rglob("*.md")] == [True]
    capsys.readouterr()
    assert main(["list", "--feed", "alpha", "--json", *where]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(ITEMS["alpha"])
