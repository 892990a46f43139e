"""Polling benchmark: N static feeds behind nginx, `scrape --once` cold and warm, against reader.

Run by hand (not a test):

    apt-get install -y nginx                    # Debian's nginx; the bench starts its own
    .venv/bin/pip install 'reader==3.26' sgmllib3k   # the baseline, measured in the same run
    .venv/bin/python bench/poll.py              # 1,000 feeds x 17 entries, cold and warm
    .venv/bin/python bench/poll.py --shape 200x30
    .venv/bin/python bench/poll.py --feeds 100 --no-baseline --daemon 30
    .venv/bin/python bench/poll.py --db postgresql://USER@HOST:PORT/DBNAME   # issue 21:
        # 1, then 2 daemons sharing one PostgreSQL database (bench/poll_shared.py)

Most polls of real use answer 304: this bench shows the cost of each poll.  The feeds are
static files served by nginx on 127.0.0.1 (ETag, Last-Modified, 304 on a match), a server that
costs next to nothing.  Each entry is one of the four articles of tests/fixtures/ with its CJK
characters mapped through a substitution of its own (as tests/corpus.py's ``cipher``), so
every copy's text differs and normalize and dedup do their full work, without ../shared.

Each run is a process measured from a wrapper: wall time, CPU (user + sys of it and all its
descendants: the wrapper is their subreaper, so orphaned pool workers count too), peak RSS (the
largest process).  Cold: an empty database; warm: again, every answer a 304 (nginx's log
counts the answers and their connections); start: a warm run of one feed, a run's fixed cost.
reader runs ``update_feeds(scheduled=False)``, else its second run would poll nothing.
``--daemon SECONDS``: the daemon polling every feed every 10 s, its CPU per warm poll, and its
tick's cost.  ``--no-304``: no validators, so warm answers are 200s with nothing new.
``--restamp``: each feed rebuilt before the warm runs, a new ``<lastBuildDate>`` and the same
entries, as a feed generated at every request (nginx answers 200).
To compare commits in one session: ``git archive COMMIT scraper | tar -x -C DIR``, then
``cd /tmp && PYTHONPATH=DIR /path/to/.venv/bin/python /path/to/bench/poll.py`` (``scrape``
finds DIR's package first).  Start it outside the checkout (``cd /tmp``) when a commit before
07e88a0 is compared (the fork server's fix: ``workers._start_forkserver``, later
``own_package_path``): its fork server ran ``python -c`` with the current directory first on
``sys.path``, so from the checkout its workers ran the checkout's code.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

_MEASURE = """
import contextlib, ctypes, os, resource, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans are waited here
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
wall = time.perf_counter() - start
with contextlib.suppress(ChildProcessError):
    while True:
        os.wait()
use = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, use.ru_utime + use.ru_stime, use.ru_maxrss, code)
"""

_READER = """
import sys
from reader import make_reader
reader, mode, workers, urls = make_reader(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
for url in urls if mode == "add" else []:
    reader.add_feed(url, exist_ok=True)
for url in (urls or [None]) if mode == "update" else []:  # the feeds named, or every feed
    reader.update_feeds(feed=url, scheduled=False, workers=workers)
"""

_NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {tmp}/nb; proxy_temp_path {tmp}/np; fastcgi_temp_path {tmp}/nf;
    uwsgi_temp_path {tmp}/nu; scgi_temp_path {tmp}/ns;
    types {{ application/rss+xml xml; }}
    log_format status '$status $connection $msec';
    access_log {tmp}/nginx-access.log status buffer=64k flush=100ms;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{port}; root {tmp}/www; {validators} }}
}}
"""


def templates() -> list[str]:
    """The four <item>s of the fixture feeds (the GBK one decoded)."""
    text = (FIXTURES / "zaker.xml").read_text(encoding="utf-8")
    text += (FIXTURES / "mydrivers_gbk.xml").read_bytes().decode("gb18030")
    return re.findall(r"<item>.*?</item>", text, re.S)


def build_feeds(n_feeds: int, n_entries: int, seed: int = 18) -> list[bytes]:
    """``n_feeds`` RSS documents of ``n_entries`` distinct articles each."""
    items = templates()
    chars = sorted({ord(c) for item in items for c in item if "\u4e00" <= c <= "\u9fff"})
    rng = np.random.default_rng(seed)
    feeds = []
    for f in range(n_feeds):
        out = []
        for i in range(n_entries):
            table = dict(zip(chars, rng.integers(0x4E00, 0xA000, len(chars)).tolist(),
                             strict=True))
            link = f"https://bench.example/{f}/{i}.html"
            item = items[(f + i) % len(items)].translate(table)
            item = re.sub(r"<link>[^<]*</link>", f"<link>{link}</link>", item)
            out.append(re.sub(r"(<guid[^>]*>)[^<]*", rf"\g<1>{link}", item))
        feeds.append(('<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
                      f"<title>bench {f}</title><link>https://bench.example/{f}/</link>"
                      f"<description>bench</description>{''.join(out)}</channel></rss>"
                      ).encode())
    return feeds


class Nginx:
    """Debian's nginx on a free port of 127.0.0.1, serving ``tmp/www``, as a child process."""

    def __init__(self, tmp: Path, validators: bool = True) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            sys.exit("nginx not found: apt-get install -y nginx")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        tmp.chmod(0o755)  # run as root, nginx's workers read the files as 'nobody'
        (tmp / "nginx.conf").write_text(_NGINX_CONF.format(
            tmp=tmp, port=self.port, validators="" if validators else
            "etag off; if_modified_since off; add_header Last-Modified '';"))
        self.log, self.www = tmp / "nginx-access.log", tmp / "www"
        self.seen = self.connections = 0
        self.proc = subprocess.Popen([binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf")])
        for _ in range(100):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        sys.exit(f"nginx did not start: see {tmp}/nginx-error.log")

    def statuses(self) -> dict[str, int]:
        """Answers since the last call, by status (the log is flushed every 100 ms); the
        connections they came on in ``self.connections``."""
        time.sleep(0.3)
        lines = self.log.read_text().splitlines()
        new, self.seen = [line.split() for line in lines[self.seen:]], len(lines)
        self.connections = len({fields[1] for fields in new})
        statuses = [fields[0] for fields in new]
        return {s: statuses.count(s) for s in sorted(set(statuses))}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Run(NamedTuple):
    wall: float
    cpu: float
    rss_kib: int
    code: int
    entries: int
    statuses: dict[str, int]
    connections: int


def measure(cmd: list[str], log: Path) -> tuple[float, float, int, int]:
    with log.open("a") as err:
        out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], stdout=subprocess.PIPE,
                             stderr=err, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), int(out[3])


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]


def scrape_command(args: argparse.Namespace) -> list[str]:
    scrape = [str(Path(sys.executable).with_name("scrape"))]
    if not Path(scrape[0]).exists():
        scrape = [sys.executable, "-m", "scraper"]
    return scrape + ([] if args.workers is None else ["--workers", str(args.workers)])


def compile_package() -> str:
    """Byte-compile the ``scraper`` package that ``scrape`` will import (the checkout's, or
    PYTHONPATH's), as ``pip install`` does for an installed package and did for reader's:
    with PYTHONDONTWRITEBYTECODE set (as on these machines) an editable install is compiled
    from source at every run: 50-70 ms of a run's start (efe5cb7: a one-feed warm run took
    0.45-0.47 s, compiled 0.39-0.40 s)."""
    # -P: not the current folder first, as for ``python -c``; ``scrape``'s launcher does not
    # put it there either, so from the checkout with PYTHONPATH=DIR it runs DIR's package.
    where = subprocess.run([sys.executable, "-P", "-c",
                            "import scraper; print(scraper.__path__[0])"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not compileall.compile_dir(where, quiet=1):
        sys.exit(f"could not byte-compile {where}")
    return where


def write_config(path: Path, urls: list[str], *lines: str) -> Path:
    """Every feed on the one host: the per-host limit raised to the global one."""
    path.write_text("\n".join(["fetch: {concurrency: 32, per_host: 32}", *lines, "feeds:"] + [
        f"  - {{name: f{i}, url: '{u}'}}" for i, u in enumerate(urls)]) + "\n")
    return path


def restamp(www: Path) -> None:
    """Every feed rebuilt now: a new ``<lastBuildDate>``, the same entries (``--restamp``)."""
    stamp = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
    for path in www.glob("*.xml"):
        body = re.sub(rb"<lastBuildDate>[^<]*</lastBuildDate>", b"", path.read_bytes())
        path.write_bytes(body.replace(b"<description>bench</description>",
                                      b"<description>bench</description><lastBuildDate>"
                                      + stamp + b"</lastBuildDate>", 1))


def one_round(work: Path, urls: list[str], nginx: Nginx, args: argparse.Namespace,
              order: tuple[str, ...]) -> dict[tuple[str, str], Run]:
    """Cold then warm, for each tool in ``order``, each on a fresh database; then "start", a
    warm run of one feed: what a run costs before its polls (interpreter, imports, config).
    ``--restamp``: the feeds are rebuilt before each warm run (every answer a 200)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    cfg, db, rdb = write_config(work / "feeds.yaml", urls), work / "scrape.db", work / "reader.db"
    commands = {"scrape": ([*scrape_command(args), "--once", "--config", str(cfg), "--db",
                            str(db)], db, ["--feed", "f0"]),
                "reader": ([sys.executable, "-c", _READER, str(rdb), "update",
                            str(args.reader_workers)], rdb, [urls[0]])}
    if "reader" in order:
        subprocess.run([sys.executable, "-c", _READER, str(rdb), "add", "1", *urls], check=True)
    runs = {}
    for tool in order:
        cmd, path, one = commands[tool]
        for phase in ("cold", "warm", "start"):
            if args.restamp and phase != "cold":
                restamp(nginx.www)
            nginx.statuses()
            wall, cpu, rss, code = measure(cmd + one * (phase == "start"),
                                           work.parent / "stderr.log")
            statuses = nginx.statuses()
            runs[tool, phase] = Run(wall, cpu, rss, code, count(path), statuses,
                                    nginx.connections)
    return runs


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + sys) of ``pid`` and its live descendants, from /proc."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree = {pid}
    for child in sorted(stats):  # a child's pid is almost always above its parent's
        if stats[child][0] in tree:
            tree.add(child)
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


def daemon_cpu(work: Path, urls: list[str], nginx: Nginx, args: argparse.Namespace,
               interval: int = 10) -> tuple[float, dict[str, int]]:
    """The daemon polling every feed every ``interval`` s: its CPU over ``args.daemon``
    seconds once the first (cold) round is done and one more has passed, and the answers."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    cfg = write_config(work / "feeds.yaml", urls, f"defaults: {{interval: {interval}}}")
    with (work.parent / "stderr.log").open("a") as err:
        proc = subprocess.Popen([*scrape_command(args), "--config", str(cfg), "--db",
                                 str(work / "scrape.db")], stdout=subprocess.DEVNULL, stderr=err)
    try:
        nginx.statuses()
        cold = 0
        while cold < len(urls) and proc.poll() is None:
            cold += nginx.statuses().get("200", 0)
        time.sleep(interval)
        nginx.statuses()
        cpu = tree_cpu(proc.pid)
        time.sleep(args.daemon)
        statuses = nginx.statuses()
        return tree_cpu(proc.pid) - cpu, statuses
    finally:
        proc.terminate()
        proc.wait(30)


def tick_ms(n_feeds: int) -> float:
    """CPU ms of the daemon's tick (``storage.claim_due``, every second) over ``n_feeds`` feeds,
    none due: a daemon measured with 1,000 feeds cannot show what the tick costs at 100,000."""
    from datetime import timedelta

    from scraper import storage
    from scraper.claimant import claim_is_dead

    with tempfile.TemporaryDirectory(prefix="tick-") as tmp:
        conn = storage.connect(Path(tmp) / "tick.db")
        feeds = [(f"f{i}", f"https://site{i % 5000}.example/{i}.xml") for i in range(n_feeds)]
        storage.sync_feeds(conn, feeds)
        now = storage.utcnow()
        with storage.transaction(conn):
            conn.execute("UPDATE feeds SET next_due_at = ?", (storage.iso(now + timedelta(1)),))
        names, times = [name for name, _ in feeds], []
        for _ in range(5):
            started = time.process_time()
            storage.claim_due(conn, names, claimant="bench:1", now=now, until=now, limit=32,
                              per_host=4, is_dead=claim_is_dead)
            times.append(time.process_time() - started)
        conn.close()
    return statistics.median(times) * 1000


def show(runs: dict[tuple[str, str], Run], n_feeds: int, total: int) -> None:
    print(f"{'run':<13}{'wall s':>8}{'entries/s':>11}{'feeds/s':>9}{'CPU s/1k polls':>16}"
          f"{'peak RSS MiB':>14}  answers, stored entries")
    for (tool, phase), r in runs.items():
        if phase == "start":
            continue
        new = r.entries if phase == "cold" else 0
        print(f"{tool + ' ' + phase:<13}{r.wall:>8.2f}{new / r.wall:>11.0f}"
              f"{n_feeds / r.wall:>9.0f}{r.cpu / n_feeds * 1000:>16.2f}{r.rss_kib / 1024:>14.1f}"
              f"  {r.statuses} on {r.connections} connections, {r.entries}/{total}"
              + (f" EXIT {r.code}" if r.code else ""))
    for tool in dict.fromkeys(tool for tool, _ in runs):
        warm, start = runs[tool, "warm"], runs[tool, "start"]
        rate = f"{(n_feeds - 1) / (warm.wall - start.wall):.0f}/s" if (
            warm.wall > start.wall) else "lost in the noise"
        print(f"{tool}: a run starts in {start.wall:.2f} s ({start.cpu:.2f} s CPU, one warm feed); "
              f"the warm polls beyond that {rate}, "
              f"{(warm.cpu - start.cpu) / (n_feeds - 1) * 1000:.2f} ms CPU each")


def ratios(runs: dict[tuple[str, str], Run]) -> dict[str, float]:
    """scrape / reader: higher is better for speed, lower for CPU and memory."""
    s, r = runs["scrape", "cold"], runs["reader", "cold"]
    sw, rw = runs["scrape", "warm"], runs["reader", "warm"]
    return {"cold entries/s": (s.entries / s.wall) / (r.entries / r.wall),
            "warm feeds/s": rw.wall / sw.wall,
            "cold CPU": s.cpu / r.cpu, "warm CPU": sw.cpu / rw.cpu,
            "cold peak RSS": s.rss_kib / r.rss_kib, "warm peak RSS": sw.rss_kib / rw.rss_kib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=17)
    parser.add_argument("--shape", metavar="FEEDSxENTRIES", help="e.g. 200x30 (ingest's shape)")
    parser.add_argument("--workers", type=int, help="scrape --workers (default: its own)")
    parser.add_argument("--reader-workers", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true", help="skip lemon24/reader")
    parser.add_argument("--rounds", type=int, default=1, help="alternating which tool goes first")
    parser.add_argument("--no-304", action="store_true",
                        help="serve no validators: warm answers are 200s with nothing new")
    parser.add_argument("--restamp", action="store_true",
                        help="rebuild every feed before the warm runs: a new lastBuildDate, "
                        "the same entries (a feed generated at each request)")
    parser.add_argument("--daemon", type=float, default=0, metavar="SECONDS",
                        help="also measure the daemon's CPU per poll over SECONDS, warm")
    parser.add_argument("--db", metavar="URL", help="postgresql://...: 1 then 2 daemons on "
                        "that server (bench/poll_shared.py; --feeds, --entries, --rounds)")
    args = parser.parse_args()
    if args.db:  # its own script (one idea a file), run in this process's place
        script = Path(__file__).with_name("poll_shared.py")
        os.execv(sys.executable, [sys.executable, str(script), *sys.argv[1:]])
    if args.shape:
        args.feeds, args.entries = map(int, args.shape.lower().split("x"))

    started = time.perf_counter()
    print(f"byte-compiled {compile_package()}")
    feeds = build_feeds(args.feeds, args.entries)
    total = args.feeds * args.entries
    with tempfile.TemporaryDirectory(prefix="poll-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "www").mkdir()
        for i, body in enumerate(feeds):
            (tmp / "www" / f"{i}.xml").write_bytes(body)
        nginx = Nginx(tmp, validators=not args.no_304)
        try:
            urls = [f"http://127.0.0.1:{nginx.port}/{i}.xml" for i in range(args.feeds)]
            print(f"{args.feeds} feeds x {args.entries} entries = {total} entries, "
                  f"{sum(map(len, feeds)) / len(feeds) / 1024:.0f} KiB a feed, nginx on "
                  f"127.0.0.1:{nginx.port} (built in {time.perf_counter() - started:.1f} s); "
                  f"load average {os.getloadavg()[0]:.2f} at start")
            tools = ("scrape",) if args.no_baseline else ("scrape", "reader")
            rounds = []
            for n in range(args.rounds):
                order = tools if n % 2 == 0 else tools[::-1]
                runs = one_round(tmp / "run", urls, nginx, args, order)
                print(f"\nround {n + 1} (load average {os.getloadavg()[0]:.2f} at its end)")
                show({k: runs[k] for k in sorted(runs, key=lambda k: (tools.index(k[0]), k[1]))},
                     args.feeds, total)
                if not args.no_baseline:
                    rounds.append(ratios(runs))
                    print("scrape/reader: " + ", ".join(
                        f"{k} {v:.2f}x" for k, v in rounds[-1].items()))
            if args.daemon:
                cpu, statuses = daemon_cpu(tmp / "run", urls, nginx, args)
                polls = sum(statuses.values())
                print(f"\ndaemon, every feed every 10 s, warm: {polls} polls {statuses} on "
                      f"{nginx.connections} connections in {args.daemon:g} s, {cpu:.2f} s CPU = "
                      f"{cpu / polls * 1000:.2f} ms a poll; load {os.getloadavg()[0]:.2f}\n"
                      "its tick (claim_due, every second), none due: " + ", ".join(
                          f"{n:,} feeds {tick_ms(n):.1f} ms" for n in (1000, 100_000)))
        finally:
            nginx.stop()
    if len(rounds) > 1:
        print("\nmedian of the rounds, scrape/reader: " + ", ".join(
            f"{k} {statistics.median(r[k] for r in rounds):.2f}x" for k in rounds[0]))
    print("targets (issue 18): cold entries/s >= 3x reader; warm feeds/s >= 5x reader and "
          ">= 2,000/s; warm CPU <= 1.8 s per 1,000 polls")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
