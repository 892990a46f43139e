"""``scrape status [--json] [--check]``: the table, the JSON and the health check's exit code."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from scraper import app, status
from scraper.cli.common import optional_config, pad, width
from scraper.config import Config, ConfigError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common],
        help="show each feed's state, the daemon's health and the workers",
        description="Per feed: last success, last error, consecutive errors, next due time "
                    "and entry count; then the totals, the daemon's heartbeat, and the workers "
                    "alive (daemons and --once runs on this database) with the feeds each "
                    "holds. Reads the database only (read-only); --db alone works without a "
                    "feeds.yaml.")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of a table (each feed's url included)")
    parser.add_argument("--urls", action="store_true",
                        help="add each feed's URL to the table (rsshub: routes resolved)")
    parser.add_argument("--check", action="store_true",
                        help="health check: exit 1 when the daemon's heartbeat is stale or "
                             "missing, 0 when it is fresh (prints one line)")
    parser.add_argument("--max-age", type=float, default=None, metavar="SECONDS",
                        help=f"with --check: heartbeat age that counts as stale (default: "
                             f"{status.MISSED_BEATS} heartbeat intervals, at least "
                             f"{status.MIN_STALE_AFTER:g} s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    db_arg = getattr(args, "db", None)
    config: Config | None = None
    config_problem: str | None = None
    try:
        config = optional_config(args)
    except ConfigError as exc:
        if not db_arg:
            raise  # no way to find the database: cli.main reports it (exit 2)
        config_problem = str(exc)
    try:
        scraper = app.open_scraper(config, db_arg, access="read")
    except app.NoDatabase as exc:  # (looking must not create an empty database)
        print(f"scrape status: {exc} (the daemon has not run yet?)", file=sys.stderr)
        return status.EXIT_UNHEALTHY
    with scraper:
        now = datetime.now(UTC)
        if args.check:
            health = scraper.health(now, args.max_age)
            if args.json:
                print(json.dumps(health.as_dict(), ensure_ascii=False))
            else:
                word = "healthy" if health.healthy else "UNHEALTHY"
                print(f"daemon {word}: {health.reason}")
            return status.EXIT_HEALTHY if health.healthy else status.EXIT_UNHEALTHY
        report = scraper.status(now, args.max_age)
    if config_problem:
        report["config_problem"] = config_problem
    # (`scrape status | head`: the reader leaving is cli.main's, as for every command.)
    if args.json:
        json.dump(report, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report, sys.stdout, now, urls=args.urls)
    return 0


def print_report(report: dict[str, Any], out: TextIO, now: datetime,
                 urls: bool = False) -> None:
    """The table; ``urls`` adds each feed's URL before the last error (the one column of
    any length, so it stays last)."""
    feeds = report["feeds"]
    if report.get("config_problem"):
        out.write(f"warning: config not loaded, showing the database only: "
                  f"{report['config_problem']}\n")
    name_w = max([4, *(width(f["name"]) for f in feeds)])
    url_w = max([3, *(len(f["url"] or "-") for f in feeds)]) if urls else 0

    def url_cell(text: str) -> str:
        return f"{text:<{url_w}}  " if urls else ""

    head = (f"{pad('feed', name_w)}  {'state':<10} {'last success':<13} {'errors':>6} "
            f"{'next due':<14} {'entries':>7}  {url_cell('url')}last error")
    out.write(head.rstrip() + "\n")
    for f in feeds:
        error = ""
        if f["last_error"] and f["error_count"]:
            error = f"{status.since(f['last_error_at'], now)}: {f['last_error']}"
            error = error if len(error) <= 80 else error[:79] + "…"
        due = "-" if f["state"] in ("removed", "disabled") else status.due_in(f["next_due_at"], now)
        out.write(f"{pad(f['name'], name_w)}  {f['state']:<10} "
                  f"{status.since(f['last_success_at'], now):<13} {f['error_count']:>6} "
                  f"{due:<14} {f['entry_count']:>7}  {url_cell(f['url'] or '-')}"
                  f"{error}".rstrip() + "\n")
    t = report["totals"]
    extra = "".join(f", {t[k]} {k}" for k in ("disabled", "removed") if t[k])
    out.write(f"total: {t['feeds']} feeds, {t['ok']} ok, {t['failing']} failing, "
              f"{t['never_fetched']} never fetched{extra}; {t['entries']} entries "
              f"({t['originals']} originals, {t['duplicates']} duplicates)\n")
    d = report["daemon"]
    who = f" (pid {d['pid']} on {d['host']})" if d["pid"] else ""
    out.write(f"daemon: {'running' if d['healthy'] else 'not running'}{who}: {d['reason']}\n")
    print_workers(report.get("workers", []), out)


def print_workers(workers: list[dict[str, Any]], out: TextIO) -> None:
    """The workers alive, and the dead ones whose claims have not expired yet (their feeds
    wait for that): one line each, with the feeds each holds now."""
    shown = [w for w in workers if w["alive"] or w["holds"]]
    out.write(f"workers: {sum(w['alive'] for w in workers)} alive\n")
    name_w = max([4, *(width(w["name"]) for w in shown)])
    for w in shown:
        if w["alive"]:
            life = f"heartbeat {status.ago(w['heartbeat_age'])}"
        else:
            life = f"silent since {status.ago(w['heartbeat_age'])}, its claims expire"
        names = w["feeds"][:status.NAMES_SHOWN]
        more = len(w["feeds"]) - len(names)
        holds = f"holds {w['holds']}" + (": " + ", ".join(names) if names else "")
        holds += f", +{more} more" if more else ""
        out.write(f"  {pad(w['name'], name_w)}  {w['kind']:<6} {life}; {holds}\n")
