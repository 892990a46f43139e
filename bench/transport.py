"""Transport benchmark: conditional GETs per second against nginx, for each HTTP client.

Run by hand (not a test), after bench/poll.py's requirements:

    .venv/bin/pip install 'httpx-aiohttp==0.2.0'     # brings aiohttp (bench only)
    .venv/bin/python bench/transport.py              # 2,000 conditional GETs per client
    .venv/bin/python bench/transport.py --requests 500 --rounds 1

Every request carries the If-None-Match of its feed, so nginx answers 304 and the figure is
the client's own cost per poll: the warm run of bench/poll.py without the rest of scrape.
32 requests in flight (``fetch.concurrency``'s default; ``--concurrency``).  Each client runs
in its own process (imports and connection set-up not timed: one untimed pass first); CPU is
that process's user + sys.  Ratios are against ``httpx``, the client as ``net.fetch.Fetcher``
configures and uses it.

Whether sniffio is installed changes httpx's cost (httpcore 1.0.9 tries ``import sniffio``
in every lock and event it sets up, and Python does not cache a failed import): the run says
which, and ``+nosniff`` shows the failed import cached as httpcore's PR #1103 would
(``sys.modules["sniffio"] = None``).  Run it again after ``pip install sniffio`` to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONCURRENCY = 32
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.8"
CLIENTS = {
    "httpx": "httpx.AsyncClient as Fetcher configures it and reads a 304 (not at all)",
    "httpx+read": "the same, the 304's empty body read: the connection goes back to the pool",
    "httpx+read+keepall": "the same, every connection kept alive instead of 8",
    "httpx+read+keepall+nosniff": "the same, no sniffio lookup (sys.modules['sniffio'] = None)",
    "httpx+aiohttp": "httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport(...))",
    "aiohttp": "aiohttp.ClientSession alone",
    "fetcher": "scraper's Fetcher.fetch (limits, deadline, retries on top of httpx)",
    "fetcher+aiohttp": "Fetcher.fetch, its client on the aiohttp transport",
}

Get = Callable[[str, str], Awaitable[int]]


def httpx_client(name: str):  # noqa: ANN201 (httpx is imported in the worker process only)
    """An AsyncClient as net.fetch.Fetcher builds it, with the options ``name`` lists."""
    import httpx

    keep = CONCURRENCY if "+keepall" in name else 8  # 8: net.fetch.KEEPALIVE
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=keep)
    transport = None
    if name.endswith("+aiohttp"):
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(follow_redirects=False, limits=limits, timeout=httpx.Timeout(30),
                             trust_env=False, transport=transport,
                             headers={"User-Agent": "bench", "Accept-Encoding": "gzip, deflate"})


async def client_get(name: str) -> tuple[Get, Callable[[], Awaitable[None]]]:
    """A ``get(url, etag) -> status`` for client ``name``, and its close."""
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY),
                                        headers={"User-Agent": "bench"}, auto_decompress=False)

        async def get(url: str, etag: str) -> int:
            async with session.get(url, headers={"If-None-Match": etag, "Accept": ACCEPT},
                                   allow_redirects=False) as response:
                await response.read()
                return response.status

        return get, session.close
    if name.startswith("fetcher"):
        from scraper.config import FetchSettings
        from scraper.net.fetch import Fetcher

        fetcher = Fetcher(FetchSettings(concurrency=CONCURRENCY, per_host=CONCURRENCY))
        if name != "fetcher":
            await fetcher._client.aclose()  # bench only: the same Fetcher on another transport
            fetcher._client = httpx_client(name)

        async def get(url: str, etag: str) -> int:
            return (await fetcher.fetch(url, etag=etag)).status or 0

        return get, fetcher.aclose
    if "+nosniff" in name:
        sys.modules["sniffio"] = None  # type: ignore[assignment]
    client = httpx_client(name)
    read = name != "httpx"  # Fetcher reads the body of a 200 only

    async def get(url: str, etag: str) -> int:
        headers = {"If-None-Match": etag, "Accept": ACCEPT}
        async with client.stream("GET", url, headers=headers) as response:
            if read or response.status_code == 200:
                await response.aread()
            return response.status_code

    return get, client.aclose


async def drive(get: Get, targets: list[tuple[str, str]]) -> dict[int, int]:
    """All ``targets`` with CONCURRENCY requests in flight; the answers by status."""
    statuses: dict[int, int] = {}
    queue = iter(targets)

    async def worker() -> None:
        for url, etag in queue:
            status = await get(url, etag)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def one_client(name: str, targets: list[tuple[str, str]]) -> dict[str, object]:
    get, close = await client_get(name)
    await drive(get, targets[:CONCURRENCY * 4])  # connections open, code paths warm
    wall, cpu = time.perf_counter(), time.process_time()
    statuses = await drive(get, targets)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await close()
    return {"wall": wall, "cpu": cpu, "statuses": statuses}


def etags(urls: list[str]) -> list[str]:
    out = []
    for url in urls:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
            out.append(response.headers["ETag"])
    return out


def main() -> int:
    global CONCURRENCY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="each client once a round")
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="in flight")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # worker: client name, JSON on stdin
    args = parser.parse_args()
    CONCURRENCY = args.concurrency
    if args.run:
        targets = [tuple(t) for t in json.load(sys.stdin)]
        print(json.dumps(asyncio.run(one_client(args.run, targets))))
        return 0

    import poll

    clients = args.clients
    if importlib.util.find_spec("httpx_aiohttp") is None:
        clients = [c for c in clients if "aiohttp" not in c]
        print("skipping the aiohttp clients: pip install 'httpx-aiohttp==0.2.0'")
    sniffio = importlib.util.find_spec("sniffio") is not None
    with tempfile.TemporaryDirectory(prefix="transport-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "www").mkdir()
        for i, body in enumerate(poll.build_feeds(args.feeds, 17)):
            (tmp / "www" / f"{i}.xml").write_bytes(body)
        nginx = poll.Nginx(tmp)
        try:
            urls = [f"http://127.0.0.1:{nginx.port}/{i}.xml" for i in range(args.feeds)]
            pairs = list(zip(urls, etags(urls), strict=True))
            targets = [pairs[i % len(pairs)] for i in range(args.requests)]
            print(f"{args.requests} conditional GETs over {args.feeds} feeds, {CONCURRENCY} in "
                  f"flight; sniffio {'installed' if sniffio else 'absent'}; load average "
                  f"{os.getloadavg()[0]:.2f}")
            results: dict[str, list[dict]] = {c: [] for c in clients}
            for n in range(args.rounds):
                for name in clients if n % 2 == 0 else clients[::-1]:
                    out = subprocess.run([sys.executable, __file__, "--run", name,
                                          "--concurrency", str(CONCURRENCY)],
                                         input=json.dumps(targets), capture_output=True,
                                         text=True, check=True).stdout
                    results[name].append(json.loads(out))
        finally:
            nginx.stop()
    base = statistics.median(r["wall"] for r in results["httpx"]) if results.get("httpx") else 0
    print(f"{'client':<27}{'GETs/s':>8}{'range':>13}{'CPU µs/GET':>12}{'vs httpx':>10}  answers")
    for name, runs in results.items():
        rates = [args.requests / r["wall"] for r in runs]
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs) / args.requests * 1e6
        ratio = f"{base / wall:.2f}x" if base else "-"
        print(f"{name:<27}{args.requests / wall:>8.0f}{min(rates):>6.0f}-{max(rates):<6.0f}"
              f"{cpu:>12.0f}{ratio:>10}  {runs[-1]['statuses']}  {CLIENTS[name]}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end; medians of {args.rounds} "
          "rounds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
