"""The architecture, enforced: one-way layers, no import cycle, SQL only in storage, a light
health check, no allocator tricks, no huge modules.

Read from the source with ``ast`` (imports inside functions and ``TYPE_CHECKING`` blocks
count: they are dependencies too), and from a real ``python -X importtime`` run of the
container's health check.
"""

from __future__ import annotations

import ast
import graphlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from scraper import storage as store

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "scraper"

#: Layers, top to bottom: a module imports its own layer or the ones below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("scraper", "scraper.__main__", "scraper.cli"),
    ("scraper.app",),
    ("scraper.daemon", "scraper.refresh", "scraper.workers", "scraper.prepare",
     "scraper.dedup", "scraper.export", "scraper.status"),
    ("scraper.storage", "scraper.net"),
    ("scraper.config", "scraper.core", "scraper.claimant"),
    ("scraper.version",),
]

#: What the pure and configuration layers may import of the package, beyond themselves.
NARROW = {
    "scraper.core": ("scraper.core",),
    "scraper.config": ("scraper.config", "scraper.core", "scraper.version"),
    "scraper.version": (),
    "scraper.claimant": (),
    # the workers' side of a refresh, which their fork server preloads: no network, no SQL
    "scraper.prepare": ("scraper.prepare", "scraper.core", "scraper.config"),
}
#: The command line reaches the data and the network only through the application.
CLI_NEVER = ("scraper.storage", "scraper.net", "scraper.core")

#: What the health check must not load (each costs start-up time, numpy the most).
HEAVY = {"numpy", "httpx", "selectolax", "nh3", "feedparser", "fastfeedparser"}

MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every scraper module ``name`` imports, wherever in the file the import stands."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from scraper import storage` imports the module scraper.storage
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            # `import scraper.storage.db` names the module; a dotted attribute does not
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int:
    """The layer of the longest prefix that names ``name`` (``scraper`` alone is the API)."""
    matches = [(len(prefix), index) for index, layer in enumerate(LAYERS)
               for prefix in layer if within(name, prefix)]
    assert matches, f"{name} is in no layer: add it to LAYERS in {rel(Path(__file__))}"
    return max(matches)[1]


def edge(importer: str, imported: str) -> str:
    return f"{importer} -> {imported}"


def layer_violations() -> set[str]:
    bad = set()
    for importer, targets in graph().items():
        narrow = next((allowed for prefix, allowed in NARROW.items()
                       if within(importer, prefix)), None)
        for target in targets:
            if layer_of(target) < layer_of(importer):
                bad.add(edge(importer, target))
            if narrow is not None and not any(within(target, p) for p in narrow):
                bad.add(edge(importer, target))
            if within(importer, "scraper.cli") and any(within(target, p) for p in CLI_NEVER):
                bad.add(edge(importer, target))
    return bad


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def sql_calls(path: Path) -> list[int]:
    """Lines that run a statement: ``.execute(``, ``.executemany(``, ``.executescript(``."""
    tree = ast.parse(path.read_text("utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany", "executescript")]


def driver_imports(path: Path) -> list[int]:
    """Lines that import the database driver (``sqlite3``): above storage the connection is
    ``storage.Connection``, so that a second backend changes storage alone."""
    tree = ast.parse(path.read_text("utf-8"))
    return [node.lineno for node in ast.walk(tree)
            if (isinstance(node, ast.Import) and any(a.name == "sqlite3" for a in node.names))
            or (isinstance(node, ast.ImportFrom) and node.module == "sqlite3")]


def offenders() -> dict[str, set[str]]:
    """Every rule and what breaks it now, allow-listed or not."""
    mods = modules()
    return {
        "sql": {rel(p) for n, p in mods.items()
                if not within(n, "scraper.storage") and (sql_calls(p) or driver_imports(p))},
        "malloc": {rel(p) for p in mods.values()
                   if re.search("malloc", p.read_text("utf-8"), re.IGNORECASE)},
        "size": {rel(p) for p in mods.values()
                 if len(p.read_text("utf-8").splitlines()) > MAX_LINES},
        "imports": layer_violations(),
    }


# -- the rules -------------------------------------------------------------------------------

def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_imports_point_down_the_layers() -> None:
    bad = layer_violations()
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    found = cycle(graph())
    assert found is None, "import cycle: " + " -> ".join(found or [])


def test_the_package_init_imports_only_the_version_at_import_time() -> None:
    # Every `import scraper.x` runs scraper/__init__.py first: what it imports eagerly, every
    # command pays for.  The API's names are resolved on first use instead.
    tree = ast.parse((PACKAGE / "__init__.py").read_text("utf-8"))
    eager = {node.module for node in tree.body if isinstance(node, ast.ImportFrom)
             and node.module and node.module.startswith("scraper")}
    assert eager == {"scraper.version"}


def test_sql_only_in_storage() -> None:
    bad = offenders()["sql"]
    details = [f"{path}: line "
               f"{', '.join(map(str, sql_calls(ROOT / path) + driver_imports(ROOT / path)))}"
               for path in bad]
    assert not bad, ("statements or sqlite3 imports outside scraper/storage/:\n"
                     + "\n".join(sorted(details)))


def test_no_module_mentions_malloc() -> None:
    bad = offenders()["malloc"]
    assert not bad, f"allocator tricks in {sorted(bad)}"


def test_no_module_over_the_size_limit() -> None:
    bad = offenders()["size"]
    assert not bad, f"over {MAX_LINES} lines: {sorted(bad)}"


def test_the_checks_see_what_they_look_for() -> None:
    """Each detector finds a planted offence, so an empty result means something."""
    assert layer_of("scraper.storage.db") > layer_of("scraper.app")
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert cycle({"a": {"b"}, "b": set()}) is None
    assert sql_calls(PACKAGE / "storage" / "meta.py")
    assert driver_imports(PACKAGE / "storage" / "db.py")
    known = set(modules())
    found = imports_of("scraper.cli.status", PACKAGE / "cli" / "status.py", known)
    assert "scraper.app" in found  # module level
    found = imports_of("scraper.app", PACKAGE / "app.py", known)
    assert {"scraper.refresh", "scraper.dedup", "scraper.export.hexo"} <= found  # in functions


# -- what the health check loads ------------------------------------------------------------

def imported_modules(*args: str, cwd: Path) -> set[str]:
    """Top-level names of every module a ``python -X importtime`` run imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COV_CORE_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    names = {line.split("|")[-1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:")}
    assert "scraper" in names or any(n.startswith("scraper") for n in names), done.stderr[-2000:]
    return {n.split(".")[0] for n in names} | {n for n in names if n.startswith("scraper")}


@pytest.fixture
def fresh_db(tmp_path: Path) -> Path:
    path = tmp_path / "scrape.db"
    store.connect(path).close()
    return path


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "no-config"])
def test_the_health_check_loads_nothing_heavy(tmp_path: Path, fresh_db: Path,
                                              with_config: bool) -> None:
    if with_config:
        (tmp_path / "feeds.yaml").write_text(
            "feeds:\n  - name: a\n    url: https://example.org/a.xml\n", encoding="utf-8")
    loaded = imported_modules("-m", "scraper", "status", "--check", "--db", str(fresh_db),
                              cwd=tmp_path)
    assert "scraper.status" in loaded  # it did run the check
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_importing_the_api_and_the_cli_loads_nothing_heavy(tmp_path: Path) -> None:
    loaded = imported_modules("-c", "import scraper, scraper.cli; scraper.Scraper",
                              cwd=tmp_path)
    assert "scraper.app" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_the_workers_preload_no_network_and_no_storage(tmp_path: Path) -> None:
    """The pool's fork server imports ``workers.PRELOAD`` once for every worker; workers
    parse and normalize, they never fetch nor write (aiohttp and httpx cost about 0.2 s)."""
    from scraper import workers

    loaded = imported_modules("-c", "import " + ", ".join(workers.PRELOAD), cwd=tmp_path)
    assert "scraper.prepare" in loaded and "selectolax" in loaded  # what workers do need
    unwanted = {"aiohttp", "httpx", "httpcore", "yarl", "sqlite3"}
    assert not loaded & unwanted, sorted(loaded & unwanted)
    assert not {n for n in loaded if within(n, "scraper.net") or within(n, "scraper.storage")
                or n in ("scraper.refresh", "scraper.dedup")}


def test_the_import_check_can_fail(tmp_path: Path) -> None:
    loaded = imported_modules("-c", "import scraper.core.parse", cwd=tmp_path)
    assert "feedparser" in loaded



def test_a_run_with_nothing_to_parse_loads_no_parser(tmp_path: Path) -> None:
    """`scrape --once` over feeds with nothing new to read (a 304, an unchanged local file, a
    200 of the stored document) needs no parser, selectolax, nh3 nor numpy: they come with
    the first document to parse.  httpx it needs (the fetcher)."""
    (tmp_path / "feed.xml").write_bytes((ROOT / "tests" / "fixtures" / "zaker.xml").read_bytes())
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - {name: z, url: feed.xml}\n", "utf-8")
    first = imported_modules("-m", "scraper", "--once", "--workers", "0", cwd=tmp_path)
    assert {"numpy", "selectolax", "fastfeedparser"} <= first  # it parsed and linked
    again = imported_modules("-m", "scraper", "--once", cwd=tmp_path)
    assert "scraper.refresh" in again  # it did run the refresh
    assert not again & (HEAVY - {"httpx"}), sorted(again & HEAVY)
