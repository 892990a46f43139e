"""Whose claim may be taken over at once: only a process beside this one (same kernel boot,
same pid namespace) that no longer runs.  Machines cloned from one image share a hostname,
and containers on the host's network share the host's: a pid seen from here says nothing of
theirs, and a daemon used to take their live claims."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from datetime import UTC, datetime, timedelta

from scraper import storage as store
from scraper.claimant import CLAIMANT, MACHINE, claim_is_dead, same_machine

HOST = socket.gethostname()


def dead_pid() -> int:
    """A pid that ran a moment ago and runs no more (reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_claimant_is_named_host_pid_and_machine() -> None:
    assert re.fullmatch(rf"{re.escape(HOST)}:{os.getpid()}@[0-9a-f]{{8}}", CLAIMANT)
    assert CLAIMANT.endswith(f"@{MACHINE}")


def test_only_a_dead_process_of_this_machine_loses_its_claim_at_once() -> None:
    pid = dead_pid()
    assert claim_is_dead(f"{HOST}:{pid}@{MACHINE}")
    assert not claim_is_dead(CLAIMANT)  # alive: this test
    other = "0" * 8 if MACHINE != "0" * 8 else "1" * 8
    # The same hostname on another machine, or in another container: cannot be seen.
    assert not claim_is_dead(f"{HOST}:{pid}@{other}")
    assert not same_machine(f"{HOST}:{pid}@{other}")
    assert not claim_is_dead(f"elsewhere.example:{pid}@{MACHINE}")
    # An older release's name (no machine): judged by its host, as it was.
    assert claim_is_dead(f"{HOST}:{pid}")
    assert not claim_is_dead(f"{HOST}:notapid@{MACHINE}")


def test_a_claim_from_another_machine_of_the_same_name_waits_for_its_expiry(
        database: str) -> None:
    pid = dead_pid()
    other = "0" * 8 if MACHINE != "0" * 8 else "1" * 8
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    conn = store.connect(database)
    try:
        store.sync_feeds(conn, [("theirs", "http://a.example/"), ("ours", "http://b.example/")])
        with store.transaction(conn):
            for name, holder in (("theirs", f"{HOST}:{pid}@{other}"),
                                 ("ours", f"{HOST}:{pid}@{MACHINE}")):
                conn.execute("UPDATE feeds SET claimed_by = ?, claimed_until = ? "
                             "WHERE name = ?", (holder, store.iso(now + timedelta(minutes=5)),
                                                name))
        wanted = [(n, u, now + timedelta(minutes=1)) for n, u in
                  (("theirs", "http://a.example/"), ("ours", "http://b.example/"))]
        taken = store.claim_feeds(conn, wanted, claimant=CLAIMANT, now=now,
                                  is_dead=claim_is_dead)
        assert sorted(taken) == ["ours"]
        later = now + timedelta(minutes=6)  # its claim expired
        taken = store.claim_feeds(conn, wanted[:1], claimant=CLAIMANT, now=later,
                                  is_dead=claim_is_dead)
        assert sorted(taken) == ["theirs"]
    finally:
        conn.close()
