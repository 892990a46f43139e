"""Who holds a feed's claim, and whether a claim's holder still runs.

A claim names its process ``host:pid@machine``.  ``machine`` tells apart processes whose
hostname and pid look alike but are not the same process: two machines cloned from one image
share a hostname (their boot ids differ), and containers on the host's network share the
host's (their pid namespaces differ).  A pid can only be checked where ``machine`` is ours;
anywhere else only the claim's expiry frees it.  Without that, a daemon took over the live
claims of a container next to it whose pids it could not see, and refreshed its feeds twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from pathlib import Path


def _machine() -> str:
    """Eight hex digits for this kernel's boot and this process's pid namespace ('' where
    /proc says neither: a name then stands for its host alone, as before)."""
    parts = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8] if parts else ""


#: This process's kernel boot and pid namespace, as ``_machine`` reads them.
MACHINE = _machine()

#: Who holds a feed's claim: unique per process, readable in ``scrape status``.
CLAIMANT = f"{socket.gethostname()}:{os.getpid()}" + (f"@{MACHINE}" if MACHINE else "")


def same_machine(name: str) -> bool:
    """Whether the process named ``name`` (a claimant) runs beside this one, where its pid
    can be checked.  A name of an older release (no ``@machine``) is judged by its host."""
    full, _, machine = name.partition("@")
    return full.rpartition(":")[0] == socket.gethostname() and machine in ("", MACHINE)


def claim_is_dead(holder: str) -> bool:
    """True when a claim was left by a process beside this one that no longer runs
    (killed); False for a live one, and for one whose process cannot be seen from here
    (another machine, another container): only its expiry can free it."""
    pid = holder.partition("@")[0].rpartition(":")[2]
    if not same_machine(holder) or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
