"""The worker processes that parse, normalize and fingerprint (the CPU side of a refresh).

Shared by ``scrape --once`` and the daemon.  Workers are forked from a fork server that has
``scraper.prepare`` (the functions they run, and their heavy imports) loaded once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, wait
from pathlib import Path

#: How often a worker checks that the main process still runs (a sleep, not a busy loop).
ORPHAN_CHECK_SECONDS = 2.0
#: What the fork server imports before forking workers: the module their functions live in,
#: which imports only ``core`` and ``config`` (``scraper.refresh`` brought aiohttp and httpx,
#: about 0.2 s, into a server whose workers never fetch; tests/test_layers.py checks it).
PRELOAD = ["scraper.prepare"]


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers are forked from a clean server process, not from a parent that
    # runs threads (APScheduler, test servers), which fork would copy mid-lock.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


#: ``own_package_path``'s state: how many runs are inside it, and the variables it replaced.
_PATH_LOCK = threading.Lock()
_path_users = 0
_path_saved: dict[str, str | None] = {}


@contextlib.contextmanager
def own_package_path() -> Iterator[None]:
    """While it lasts, a fork server started (by ``make_executor``) imports this process's
    ``scraper`` package, wherever ``scrape`` was started.

    The server runs ``python -c``, whose ``sys.path`` begins with the current directory
    (Python 3.11 ignores the ``sys_path`` the server is handed), so ``scrape`` started from a
    folder holding another ``scraper/`` package (an older checkout) ran that package's code
    in its workers.  ``PYTHONSAFEPATH`` (3.11+) leaves the current directory out; where this
    process found ``scraper`` there (``python -m scraper`` in a checkout never installed),
    ``PYTHONPATH`` names it.  The server inherits the environment when it starts, which is
    in a thread (the pool starts at the first document to parse), beside fetches whose DNS
    lookups read the environment; the variables are set here instead, before the run's own
    threads start (a ``setenv`` beside a ``getenv`` is not safe), by the first of runs that
    overlap (two ``Scraper.refresh_once`` of a library's threads), and put back by the last.
    """
    global _path_users
    with _PATH_LOCK:
        if _path_users == 0:
            _path_saved.update({name: os.environ.get(name)
                                for name in ("PYTHONSAFEPATH", "PYTHONPATH")})
            os.environ["PYTHONSAFEPATH"] = "1"
            root = Path(__file__).resolve().parent.parent
            try:
                here = Path.cwd().resolve()
            except OSError:  # started in a folder deleted since: no package found there
                here = None
            if root == here:
                os.environ["PYTHONPATH"] = os.pathsep.join(
                    filter(None, [str(root), _path_saved["PYTHONPATH"]]))
        _path_users += 1
    try:
        yield
    finally:
        with _PATH_LOCK:
            _path_users -= 1
            if _path_users == 0:
                for name, value in _path_saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value


def _worker_init(parent: int) -> None:
    """Workers leave signals to the main process, and never outlive it.

    SIGINT (Ctrl-C reaches the whole process group) would break the pool while the main
    process stops gracefully.  A worker of a SIGKILLed main process would wait forever on
    its task queue, whose pipe it holds open itself, keeping the fork server alive too (seen
    after tests/test_crash.py); its parent is the fork server, so PR_SET_PDEATHSIG cannot
    help, and a thread that checks on the main process does.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while True:
            time.sleep(ORPHAN_CHECK_SECONDS)
            try:
                os.kill(parent, 0)
            except (ProcessLookupError, PermissionError):  # gone (its pid maybe reused)
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def make_executor(workers: int | None = None, *, started: bool = False) -> Executor | None:
    """A process pool for CPU work, or None to work inline (``workers=0``).

    ``started``: return once every worker runs (call it off the event loop).  The pool forks
    its workers inside ``submit``, and the first fork waits for the fork server to import
    PRELOAD: on the event loop that stalled every fetch in flight for 0.5-1.8 s of a cold
    run under load (its first ``submit``; measured with a patched ``submit``, 300 feeds).
    """
    if workers is None:
        workers = os.cpu_count() or 1
    if workers <= 0:
        return None
    executor = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                   initializer=_worker_init, initargs=(os.getpid(),))
    if started:
        # each submit finds no idle worker yet and forks one more, up to max_workers
        wait([executor.submit(os.getpid) for _ in range(workers)])
    return executor


def start_forkserver_deaf_to_sigint() -> None:
    """Start the pool's fork server with SIGINT ignored, so its workers ignore it too.

    Ctrl-C sends SIGINT to the whole process group: workers forked with the default handler
    die, the pool breaks ("BrokenProcessPool") and every refresh in flight fails while the
    daemon stops.  An ignored signal survives exec, and the fork server passes its
    disposition to its children, so starting it here, once, covers every worker of every pool.
    """
    import multiprocessing.forkserver

    _pool_context()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def close_executor(executor: Executor | None, abandoned: bool) -> None:
    """Shut the pool down; with ``abandoned``, without waiting for a worker still busy with
    an abandoned feed's CPU work (waiting could break the daemon's 30 s exit promise)."""
    if executor is None:
        return
    if abandoned:
        # ``_processes`` is ProcessPoolExecutor's own (CPython 3.11-3.13), hence the getattr.
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)
    else:
        executor.shutdown(wait=True, cancel_futures=True)
