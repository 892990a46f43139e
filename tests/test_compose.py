"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Our machines have none, so these tests read the files (PyYAML for the compose file, a small
instruction parser for the Dockerfile) and check what would break a deployment: the
service, its command, the named volume holding the database, the read-only feeds.yaml,
the restart policy, the health check, the non-root user, and that the paths agree.  Where
a Compose implementation is installed (Debian's ``docker-compose`` package runs ``config``
without an engine), the compose file is also parsed and validated by it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from scraper.config import RSSHUB_ENV, load_config

REPO = Path(__file__).resolve().parent.parent
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


# -- helpers ---------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def service(data: dict[str, Any] | None = None) -> dict[str, Any]:
    services = (data or compose())["services"]
    built = [s for s in services.values() if "build" in s]
    assert len(built) == 1, "expected one service built from the repository's Dockerfile"
    return built[0]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment in either compose form (mapping, or a list of KEY=value)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def argv(value: str | list[str]) -> list[str]:
    """A compose/Dockerfile command in either form, as a list of words."""
    if isinstance(value, list):
        return [str(v) for v in value]
    value = value.strip()
    if value.startswith("["):
        return [str(v) for v in json.loads(value)]
    return shlex.split(value)


_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """``${VAR:-default}`` and ``${VAR}`` as Compose fills them in from ``env`` (the shell's
    environment; empty here unless a test sets it)."""
    env = env or {}
    return _VARIABLE.sub(lambda m: env.get(m[1]) or m[2] or "", text)


def option(words: list[str], name: str) -> str | None:
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buffer = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not buffer):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        buffer += stripped
        word, _, rest = buffer.partition(" ")
        out.append((word.upper(), rest.strip()))
        buffer = ""
    assert not buffer, "Dockerfile ends inside a continued instruction"
    return out


def entry_command(env: dict[str, str] | None = None) -> list[str]:
    """What the container runs: ENTRYPOINT + (compose command, else the Dockerfile CMD),
    the compose file's variables filled in from ``env``."""
    steps = instructions()
    entry = [argv(rest) for ins, rest in steps if ins == "ENTRYPOINT"]
    cmd = [argv(rest) for ins, rest in steps if ins == "CMD"]
    command = service().get("command")
    args = ([interpolate(w, env) for w in argv(command)] if command is not None
            else (cmd[-1] if cmd else []))
    return (entry[-1] if entry else []) + args


def healthcheck_command(svc: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    """A compose health check's command as words, variables filled in from ``env``."""
    test = svc["healthcheck"]["test"]
    words = test[1:] if isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") else argv(test)
    if isinstance(test, list) and test[0] == "CMD-SHELL":
        words = shlex.split(" ".join(words))
    return [interpolate(w, env) for w in words]


def enabled(data: dict[str, Any], *profiles: str) -> set[str]:
    """The services ``docker compose --profile P ... up`` starts: those without profiles,
    and those in one of the profiles given (the Compose specification's rule)."""
    return {name for name, svc in data["services"].items()
            if not svc.get("profiles") or set(svc["profiles"]) & set(profiles)}


def mounts() -> list[dict[str, Any]]:
    """The service's volumes in the long syntax, whichever syntax the file uses."""
    out = []
    for item in service().get("volumes", []):
        if isinstance(item, dict):
            out.append({"source": item.get("source"), "target": item["target"],
                        "read_only": bool(item.get("read_only")),
                        "type": item.get("type", "volume")})
            continue
        parts = str(item).split(":")
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else "rw"
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append({"source": source, "target": target, "read_only": "ro" in mode.split(","),
                    "type": kind})
    return out


def seconds(duration: str | int) -> float:
    if isinstance(duration, int | float):
        return float(duration)
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", duration):
        total += float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# -- compose ---------------------------------------------------------------------------------

def test_compose_service_builds_the_repository_dockerfile() -> None:
    build = service()["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile",
                                                                       "Dockerfile")
    assert (REPO / context / dockerfile).resolve() == DOCKERFILE.resolve()
    assert DOCKERFILE.exists()


def test_compose_runs_the_daemon_not_a_one_shot() -> None:
    words = entry_command()
    assert words[0] == "scrape", words
    assert "--once" not in words
    # No subcommand: the first word after the options is not a command name.
    assert not {"status", "export", "dups", "dedup"} & set(words), words


def test_restart_policy_and_stop_grace() -> None:
    svc = service()
    assert svc["restart"] == "unless-stopped"
    # Docker's default grace is 10 s, shorter than the daemon's own 25 s for in-flight
    # refreshes: compose must wait at least the 30 s the daemon promises.
    assert seconds(svc.get("stop_grace_period", "10s")) >= 30


def test_database_lives_on_a_named_volume() -> None:
    declared = compose().get("volumes") or {}
    db = option(entry_command(), "--db")
    assert db, "the command must name the database (--db)"
    holding = [m for m in mounts() if PurePosixPath(db).is_relative_to(m["target"])]
    assert holding, f"{db} is not on any mounted volume: it would die with the container"
    mount = holding[0]
    assert mount["type"] == "volume" and mount["source"] in declared, mount
    assert not mount["read_only"]


def test_feeds_yaml_is_mounted_read_only_where_the_command_reads_it() -> None:
    config = option(entry_command(), "--config")
    assert config, "the command must name the config (--config)"
    matching = [m for m in mounts() if m["target"] == config]
    assert matching, f"nothing is mounted at {config}"
    mount = matching[0]
    assert mount["type"] == "bind" and mount["read_only"], mount
    assert (REPO / mount["source"]).name == "feeds.yaml"
    assert (REPO / mount["source"]).exists()


def test_healthcheck_runs_status_check_on_the_same_database() -> None:
    check = service()["healthcheck"]
    for env in ({}, {"SCRAPE_DB": postgres_url()}):
        words = healthcheck_command(service(), env)
        assert words[:3] == ["scrape", "status", "--check"], words
        assert option(words, "--db") == option(entry_command(env), "--db")
        assert option(words, "--config") == option(entry_command(env), "--config")
    assert seconds(check.get("interval", "30s")) > 0 and int(check.get("retries", 3)) >= 1
    assert not check.get("disable", False)


# -- the RSSHub beside the daemon ------------------------------------------------------------

#: RSSHub's port when its PORT variable is unset (RSSHub's deployment docs and its Dockerfile's
#: EXPOSE 1200).
RSSHUB_PORT = 1200


def check_rsshub_wiring(data: dict[str, Any]) -> str:
    """The scraper's rsshub_base names the rsshub service and the port it listens on; the
    service runs the official image and is healthy before the scraper starts.  Returns the
    base URL."""
    services = data["services"]
    assert "rsshub" in services, sorted(services)
    hub = services["rsshub"]
    assert str(hub["image"]).split(":")[0] in ("diygod/rsshub", "ghcr.io/diygod/rsshub"), hub
    assert hub.get("healthcheck", {}).get("test"), "rsshub has no health check"
    scraper = service(data)
    base = environment(scraper).get(RSSHUB_ENV)
    assert base, f"the scraper service does not set {RSSHUB_ENV}"
    parts = urlsplit(base)
    port = int(environment(hub).get("PORT", RSSHUB_PORT))
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "rsshub", port), base
    depends = scraper.get("depends_on") or {}
    assert "rsshub" in depends, "the scraper must start after its RSSHub"
    if isinstance(depends, dict):
        assert depends["rsshub"].get("condition") == "service_healthy", depends
    return base


def test_compose_runs_rsshub_and_points_the_scraper_at_it() -> None:
    check_rsshub_wiring(compose())


def test_the_shipped_routes_resolve_against_the_compose_rsshub(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = check_rsshub_wiring(compose())
    monkeypatch.setenv(RSSHUB_ENV, base)
    config = load_config(REPO / "feeds.yaml")  # the file compose mounts, read as it would be
    raw = yaml.safe_load((REPO / "feeds.yaml").read_text("utf-8"))
    routes = {f["name"]: f["url"] for f in raw["feeds"] if str(f["url"]).startswith("rsshub:")}
    assert routes, "the shipped feeds.yaml has no RSSHub route to check"
    for name, route in routes.items():
        assert config.feed(name).url == base + "/" + route.removeprefix("rsshub:").lstrip("/")


# -- the postgres profile (issue 21): several scrapers on one PostgreSQL --------------------

#: The variable the compose file passes to ``--db`` (README: "Several machines: PostgreSQL").
DB_ENV = "SCRAPE_DB"


def postgres_url() -> str:
    """The URL the README tells a Docker user to export: the docs and the file must agree."""
    text = (REPO / "README.md").read_text("utf-8")
    found = re.findall(rf"^export {DB_ENV}=(\S+)$", text, flags=re.M)
    assert len(found) == 1, f"the README should show one `export {DB_ENV}=...`: {found}"
    return found[0]


def test_the_postgres_profile_adds_postgresql_and_leaves_the_default_alone() -> None:
    data = compose()
    assert enabled(data) == {"scraper", "rsshub"}
    assert enabled(data, "postgres") == {"scraper", "rsshub", "postgres"}
    # without the variable, the default stays the SQLite file on its volume
    assert option(entry_command(), "--db") == "/data/scrape.db"


def test_the_postgres_service() -> None:
    data = compose()
    db = data["services"]["postgres"]
    image, _, tag = str(db["image"]).partition(":")
    # the official image; 13 or later, where pg_trgm is a trusted extension (its owner, the
    # scrapers' user, may create it)
    assert image in ("postgres", "library/postgres") and int(tag.split(".")[0]) >= 13, image
    test = db["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, list) else argv(test)), test
    volumes = [str(v).split(":") for v in db.get("volumes", [])]
    assert [v[0] for v in volumes if v[1] == "/var/lib/postgresql/data"] == ["postgres-data"]
    assert "postgres-data" in data["volumes"]
    assert db["restart"] == "unless-stopped"
    assert not db.get("ports"), "PostgreSQL should not be published: only the scrapers reach it"


def test_scrape_db_points_the_scraper_at_the_postgres_service() -> None:
    url = postgres_url()
    env = {DB_ENV: url}
    assert option(entry_command(env), "--db") == url
    db = compose()["services"]["postgres"]
    settings = {k: interpolate(v) for k, v in environment(db).items()}
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port or 5432) == ("postgresql", "postgres", 5432)
    assert parts.username == settings["POSTGRES_USER"]
    assert parts.password == settings["POSTGRES_PASSWORD"]
    assert parts.path.lstrip("/") == settings.get("POSTGRES_DB", settings["POSTGRES_USER"])


def test_the_scraper_service_scales() -> None:
    """``--scale scraper=3`` needs Compose to name the containers and no fixed host port
    (three containers cannot publish one port)."""
    svc = service()
    assert "container_name" not in svc
    for port in svc.get("ports", []):
        published = port.get("published") if isinstance(port, dict) else (
            str(port).rsplit(":", 1)[0] if ":" in str(port) else None)
        assert not published, f"a fixed host port stops --scale: {port}"


def compose_command() -> list[str] | None:
    """A Compose implementation that can run ``config`` here, or None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=60).returncode == 0:
        return ["docker", "compose"]
    return None


COMPOSE_CMD = compose_command()


@pytest.mark.skipif(COMPOSE_CMD is None, reason="no Compose implementation installed "
                    "(Debian: apt-get install docker-compose); the file's structure is checked "
                    "with PyYAML above")
def test_compose_file_parses_with_a_real_compose_implementation() -> None:
    assert COMPOSE_CMD is not None
    env = {k: v for k, v in os.environ.items() if k != DB_ENV}  # (the default: SQLite)
    done = subprocess.run([*COMPOSE_CMD, "--file", str(COMPOSE), "--project-directory",
                           str(REPO), "config"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    check_rsshub_wiring(resolved)
    assert set(resolved["services"]) == set(compose()["services"])
    assert option(resolved["services"]["scraper"]["command"], "--db") == "/data/scrape.db"


@pytest.mark.skipif(COMPOSE_CMD is None, reason="no Compose implementation installed "
                    "(Debian: apt-get install docker-compose)")
def test_compose_resolves_the_postgres_profile() -> None:
    assert COMPOSE_CMD is not None
    url = postgres_url()
    env = {k: v for k, v in os.environ.items() if k not in (DB_ENV, "POSTGRES_PASSWORD")}
    done = subprocess.run([*COMPOSE_CMD, "--file", str(COMPOSE), "--project-directory",
                           str(REPO), "--profile", "postgres", "config"], capture_output=True,
                          text=True, timeout=120, env={**env, DB_ENV: url})
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert {"scraper", "postgres"} <= set(services)
    assert option(services["scraper"]["command"], "--db") == url
    assert option(healthcheck_command(services["scraper"]), "--db") == url
    assert urlsplit(url).password == services["postgres"]["environment"]["POSTGRES_PASSWORD"]


# -- Dockerfile ------------------------------------------------------------------------------

def test_dockerfile_uses_a_python_slim_base_that_fits_requires_python() -> None:
    bases = [rest for ins, rest in instructions() if ins == "FROM"]
    image = bases[-1].split()[0]
    m = re.fullmatch(r"python:(\d+)\.(\d+)[\w.-]*-slim[\w.-]*", image)
    assert m, f"expected a python:<version>-slim base, got {image}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    low = re.search(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert low and (int(m[1]), int(m[2])) >= (int(low[1]), int(low[2]))


def test_dockerfile_runs_as_a_non_root_user() -> None:
    steps = instructions()
    users = [i for i, (ins, _) in enumerate(steps) if ins == "USER"]
    assert users, "no USER: the daemon would run as root"
    last_user = users[-1]
    name = steps[last_user][1].split(":")[0]
    assert name not in ("root", "0")
    # Installing needs root; what runs afterwards must not.
    runs = [i for i, (ins, _) in enumerate(steps) if ins == "RUN"]
    assert all(i < last_user for i in runs), "RUN after the last USER would run as that user"
    starts = [i for i, (ins, _) in enumerate(steps) if ins in ("ENTRYPOINT", "CMD")]
    assert starts and all(i > last_user for i in starts)
    # The user must exist: created in a RUN with that name.
    assert any(re.search(rf"useradd\b.*\b{re.escape(name)}\b", rest)
               for ins, rest in steps if ins == "RUN"), name


def test_database_directory_belongs_to_the_user_in_the_image() -> None:
    # A new named volume copies the image directory's owner; root-owned -> unwritable.
    steps = instructions()
    user = [rest for ins, rest in steps if ins == "USER"][-1].split(":")[0]
    data_dir = str(PurePosixPath(option(entry_command(), "--db") or "").parent)
    runs = " ".join(rest for ins, rest in steps if ins == "RUN")
    assert re.search(rf"mkdir\b[^&;]*\s{re.escape(data_dir)}\b", runs), data_dir
    assert re.search(rf"chown\b[^&;]*\b{re.escape(user)}\b[^&;]*\s{re.escape(data_dir)}\b",
                     runs), data_dir


def test_dockerfile_installs_the_project_and_its_copies_exist() -> None:
    steps = instructions()
    ignored = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    copied = []
    for ins, rest in steps:
        if ins not in ("COPY", "ADD"):
            continue
        words = [w for w in argv(rest) if not w.startswith("--")]
        for source in words[:-1]:
            matches = list(REPO.glob(source))
            assert matches or any(c in source for c in "*?["), f"COPY {source}: not in the repo"
            for match in matches:
                rel = match.relative_to(REPO).as_posix()
                assert not any(fnmatch.fnmatch(rel, pat) for pat in ignored), \
                    f"COPY {rel} but .dockerignore excludes it"
                copied.append(rel)
    assert "pyproject.toml" in copied and "scraper" in copied
    assert any(re.search(r"pip install\b.*\s'?\.(\[[\w,]+\])?'?(\s|$)", rest + " ")
               for ins, rest in steps if ins == "RUN")


def test_the_image_installs_the_postgresql_extra() -> None:
    """The same image runs the postgres profile's scrapers: psycopg must be in it."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"][
        "optional-dependencies"]
    assert any(dep.startswith("psycopg") for dep in extras["postgresql"])
    installs = [m[1] for ins, rest in instructions() if ins == "RUN"
                for m in re.finditer(r"pip install\b.*\s'?\.\[([\w,]+)\]'?", rest)]
    assert any("postgresql" in found.split(",") for found in installs), installs


def test_image_runs_scrape_with_exec_form_and_a_healthcheck() -> None:
    steps = instructions()
    entry = [rest for ins, rest in steps if ins == "ENTRYPOINT"]
    # Exec form: scrape is PID 1's child under tini, or PID 1 itself; a shell in between
    # would swallow SIGTERM and the graceful shutdown would never start.
    assert entry and entry[-1].lstrip().startswith("["), entry
    health = [rest for ins, rest in steps if ins == "HEALTHCHECK"]
    assert health and "status" in health[-1] and "--check" in health[-1]


@pytest.mark.parametrize("pattern", ["*.db", ".git", "feeds.yaml"])
def test_dockerignore_keeps_databases_history_and_config_out(pattern: str) -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert pattern in lines
