"""The local MLflow store in a backup: a consistent copy of its SQLite database, and its
artifact paths moved when it comes back under another LUNG_HOME.

The copy uses SQLite's online backup API in one step, which reads the whole database under
one read lock: a consistent copy even while MLflow writes (a file copy could catch a
half-written page or miss the write-ahead log). MLflow records artifact locations as
absolute paths (experiments, runs, logged models, model versions); `relocate` rewrites the
ones under the old artifact root to the new root.
See https://www.sqlite.org/backup.html and
https://docs.python.org/3/library/sqlite3.html#sqlite3.Connection.backup
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
_TEXT_TYPES = ("CHAR", "TEXT", "CLOB", "STRING")


def sqlite_path(tracking_uri: str) -> Path | None:
    """The SQLite file of a `sqlite:///` tracking URI, None for any other store."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(SQLITE_PREFIX) :].split("?", 1)[0])


def copy_store(source: Path, target: Path) -> None:
    """Copy the SQLite database `source` consistently into `target` (written, then renamed)."""
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    staging.unlink(missing_ok=True)
    with (
        closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as reader,
        closing(sqlite3.connect(staging)) as writer,
    ):
        reader.backup(writer)  # pages=-1: every page in one step, under one read lock
    os.replace(staging, target)


def artifact_locations(store: Path) -> list[str]:
    """Where the store's runs, logged models and model versions keep their artifacts (an
    experiment nothing was logged to, like MLflow's own `Default`, holds none)."""
    queries = {
        "runs": "SELECT artifact_uri FROM runs",
        "logged_models": "SELECT artifact_location FROM logged_models",
        "model_versions": "SELECT storage_location FROM model_versions",
    }
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        found = {
            row[0]
            for table, query in queries.items()
            if table in tables
            for row in connection.execute(query)
            if row[0]
        }
    return sorted(found)


def aliases(store: Path) -> dict[str, dict[str, str]]:
    """Each registered model's aliases and the versions they point to."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT name, alias, version FROM registered_model_aliases")
        found: dict[str, dict[str, str]] = {}
        for name, alias, version in rows:
            found.setdefault(name, {})[alias] = str(version)
    return found


def under(location: str, root: str) -> bool:
    path = location.removeprefix("file://")
    return path == root or path.startswith(root.rstrip("/") + "/")


def relocate(store: Path, old_root: str, new_root: str) -> int:
    """Rewrite every text value that is `old_root` or a path below it to the same path below
    `new_root` (also as a `file://` URI); the number of values rewritten."""
    if old_root.rstrip("/") == new_root.rstrip("/"):
        return 0
    pairs = [(old_root.rstrip("/"), new_root.rstrip("/"))]
    pairs.append((f"file://{pairs[0][0]}", f"file://{pairs[0][1]}"))
    changed = 0
    with closing(sqlite3.connect(store)) as connection, connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = [
                row[1]
                for row in connection.execute(f'PRAGMA table_info("{table}")')
                if any(kind in str(row[2]).upper() for kind in _TEXT_TYPES)
            ]
            for column, (old, new) in ((c, p) for c in columns for p in pairs):
                changed += connection.execute(
                    f'UPDATE "{table}" SET "{column}" = ? || substr("{column}", ?)'  # noqa: S608
                    f' WHERE "{column}" = ? OR substr("{column}", 1, ?) = ?',
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                ).rowcount
    return changed
