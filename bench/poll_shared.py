"""Shared-database polling (issue 21): 1, then 2 daemons on one PostgreSQL database.

Run by hand (not a test), through ``bench/poll.py --db postgresql://USER@HOST:PORT/DBNAME``
(or this file directly with the same options).  The URL's user must be allowed to create
databases: each phase gets a fresh one, ``DBNAME_poll_bench``, dropped afterwards.

The feeds are poll.py's (N static feeds behind nginx on 127.0.0.1, every copy's text
different).  A ``scrape --once`` stores them first (cold, not measured); then the daemons
start, and each round the bench makes every feed due at once (``next_due_at = NULL``) and
waits until each was polled: polls/s is a round's feeds over the time from its first answer
to its last (nginx's ``$msec``), so the daemons' tick, which notices the due feeds up to 1 s
late, is not counted.  Nearly every answer is a 304 (the shape of real use at scale).  Also
CPU per poll of the daemons (and their children), and of the database server's processes
when it runs on this machine.  (A short interval instead caps polls/s at feeds/interval: 1,000
feeds every second is below what two daemons poll.)  The figure the issue
asks for is the ratio of 2 daemons' polls/s to 1's (target >= 1.6x on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from poll import Nginx, build_feeds, scrape_command, tree_cpu, write_config  # noqa: E402


def server_cpu() -> float:
    """CPU seconds of the ``postgres`` processes on this machine (0 for a remote server; run
    it where no other PostgreSQL server works, whose time would count too):
    the live ones', and the postmaster's reaped children's (a backend that exits leaves /proc,
    and its time moves to its parent's cutime and cstime)."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].partition(") ")
        if name.startswith("postgres"):
            stats[int(stat.parent.name)] = rest.split()
    total = 0
    for fields in stats.values():
        total += int(fields[11]) + int(fields[12])
        if int(fields[1]) not in stats:  # the postmaster: its parent is no postgres
            total += int(fields[13]) + int(fields[14])
    return total / os.sysconf("SC_CLK_TCK")


def fresh_database(url: str) -> str:
    """Drop and create ``DBNAME_poll_bench`` beside the URL's database; its URL."""
    import psycopg

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_poll_bench"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(parts._replace(path=f"/{name}"))


def answers(log: Path) -> list[float]:
    """The time (``$msec``) of every answer nginx logged so far."""
    return [float(line.split()[2]) for line in log.read_text().splitlines()
            if len(line.split()) > 2]


def phase(workers: int, url: str, config: Path, nginx: Nginx, args: argparse.Namespace,
          log: Path) -> tuple[float, float, float]:
    """``workers`` daemons on a fresh copy of the stored feeds, ``args.rounds`` rounds of
    every feed made due at once: (polls/s from each round's first answer to its last, daemon
    CPU ms per poll, server CPU ms per poll)."""
    import psycopg

    db = fresh_database(url)
    subprocess.run([*scrape_command(args), "--once", "--config", str(config), "--db", db],
                   stdout=subprocess.DEVNULL, stderr=log.open("a"), check=True)
    procs = [subprocess.Popen([*scrape_command(args), "--config", str(config), "--db", db],
                              stdout=subprocess.DEVNULL, stderr=log.open("a"))
             for _ in range(workers)]
    busy = 0.0
    try:
        with psycopg.connect(db, autocommit=True) as conn:
            time.sleep(3)  # start-up
            cpu, server = sum(tree_cpu(p.pid) for p in procs), server_cpu()
            for _ in range(args.rounds):
                # The last round's refreshes write their outcomes after nginx logged their
                # answers: one written after the reset below would make its feed due in an
                # hour, and the round would wait for it in vain.
                while conn.execute("SELECT count(*) FROM feeds WHERE claimed_by IS NOT NULL"
                                   ).fetchone()[0]:
                    time.sleep(0.05)
                before = len(answers(nginx.log))
                conn.execute("UPDATE feeds SET next_due_at = NULL")  # every feed due now
                deadline = time.monotonic() + 300
                while (len(times := answers(nginx.log)) < before + args.feeds
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                new = times[before:]
                if len(new) < args.feeds:
                    sys.exit(f"{len(new)} of {args.feeds} polled in 300 s: see {log}")
                busy += max(new) - min(new)
            cpu = sum(tree_cpu(p.pid) for p in procs) - cpu
            server = server_cpu() - server
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
    if any(p.returncode not in (0, -15) for p in procs):
        sys.exit(f"a daemon failed: see {log}")
    polls = args.rounds * args.feeds
    return polls / busy, cpu / polls * 1000, server / polls * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="postgresql://USER@HOST:PORT/DBNAME")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=17)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, help="scrape --workers (default: its own)")
    args, _ = parser.parse_known_args(argv)  # (poll.py's other options do not apply)
    with tempfile.TemporaryDirectory(prefix="poll-shared-") as tmp:
        work = Path(tmp)
        (work / "www").mkdir()
        for i, body in enumerate(build_feeds(args.feeds, args.entries)):
            (work / "www" / f"{i}.xml").write_bytes(body)
        nginx = Nginx(work)
        try:
            urls = [f"http://127.0.0.1:{nginx.port}/{i}.xml" for i in range(args.feeds)]
            # An hour: a feed is polled once a round, when the bench makes it due.
            config = write_config(work / "feeds.yaml", urls, "defaults: {interval: 3600}")
            # Every feed is on one host here, and fetch.per_host counts the claims of every
            # worker: 2 x 32, so that each daemon may have its 32 in flight as with many hosts.
            config.write_text(config.read_text().replace("per_host: 32", "per_host: 64"))
            load = os.getloadavg()[0]
            results = {n: phase(n, args.db, config, nginx, args, work / "stderr.log")
                       for n in (1, 2)}
        finally:
            nginx.stop()
    print(f"{args.feeds} feeds x {args.rounds} rounds (all due at once), load {load:.1f} at "
          f"the start, {os.cpu_count()} cores")
    print(f"{'daemons':<9}{'polls/s':>9}{'daemon CPU ms/poll':>20}{'server CPU ms/poll':>20}")
    for n, (rate, cpu, server) in results.items():
        print(f"{n:<9}{rate:>9.0f}{cpu:>20.2f}{server:>20.2f}")
    print(f"2 daemons / 1: {results[2][0] / results[1][0]:.2f}x polls/s (target >= 1.6x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
