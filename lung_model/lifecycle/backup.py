"""One dated backup of everything the system would lose with its disk, and the last N kept.

`backup` writes `<parent>/lung-backup-<UTC time>/` (staged under a hidden `.partial` name and
renamed when complete, mode 0700) holding, in this order:

1. `database.dump`: the results database, `pg_dump --format=custom` of one exported snapshot;
2. `mlflow/mlflow.db`: the local MLflow store, copied with SQLite's online backup API while
   that snapshot is still held, then `mlflow/artifacts.tar`;
3. `dvc-remote.tar` (a local remote; a URL is recorded as a pointer) and `data/raw.dvc`,
   the current data version;
4. `studies.tar`: `LUNG_HOME/archive` and `quarantine` (the slices the dashboard shows and
   the feedback export copies);
5. `secrets/`: the generated keys and passwords of `LUNG_HOME/secrets` (0700/0600);

and `manifest.json`: when, the code's commit, the settings that matter, each part's size,
time and sha256, the rows per table and the champion as the dumped snapshot saw them.
Why this order: the registry only grows (versions are never deleted) and the DVC remote is
content-addressed and append-only, so copies taken after the database snapshot hold every
model version and data version the results name.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lung_model.data.dvc import RAW_DVC_FILE, sha256_of
from lung_model.lifecycle.backup_parts import (
    database_parts,
    dvc_parts,
    mlflow_artifacts_parts,
    private,
    secrets_part,
    studies_part,
)
from lung_model.platform import db, mlflow_store
from lung_model.settings import PROJECT_ROOT, Settings

PREFIX = "lung-backup-"
MANIFEST = "manifest.json"
FORMAT = 1
NOT_INCLUDED = [
    "the Airflow metadata database (DAG run history; DAGs, connections and pools come from "
    "the code and the settings)",
    "LUNG_HOME/inbox and processing (studies not yet scored: deliver them again)",
    "data/raw (restored from the DVC remote by `make data`)",
    "logs",
]


class BackupError(RuntimeError):
    """No usable backup where one was expected."""


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    manifest: dict[str, Any]
    pruned: list[Path]
    warnings: list[str]


def code_commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def _settings_record(settings: Settings) -> dict[str, Any]:
    return {
        "home": str(settings.home),
        "database": db.redact(db.database_url(settings)),
        "embedded_database": settings.database_url is None,
        "mlflow_tracking_uri": db.redact(settings.tracking_uri()),
        "artifact_root": settings.artifact_root(),
        "dvc_remote": settings.dvc_remote_url,
        "model_name": settings.model_name,
        "experiment": settings.experiment,
        "dashboard_database_url_set": settings.dashboard_database_url is not None,
    }


def _consistency(manifest: dict[str, Any], folder: Path, settings: Settings) -> list[str]:
    """The registry's aliases in the copy, against the champion the dumped promotion history
    names: they differ only when a promotion landed between the two copies."""
    store = folder / "mlflow" / "mlflow.db"
    aliases = mlflow_store.aliases(store) if store.exists() else {}
    manifest["registry"] = {"aliases": aliases}
    name = settings.model_name
    in_registry = aliases.get(name, {}).get("champion")
    in_history = manifest["database"]["champion_by_promotion_history"].get(name)
    if in_registry and in_history and in_registry != in_history:
        return [
            f"{name}: champion {in_registry} in the registry copy, {in_history} by the dumped "
            "promotion history (a promotion landed between the two copies)"
        ]
    return []


def free_name(parent: Path, when: datetime) -> str:
    base = f"{PREFIX}{when:%Y%m%dT%H%M%SZ}"
    name, n = base, 1
    while (parent / name).exists() or (parent / f".{name}.partial").exists():
        name, n = f"{base}-{n}", n + 1
    return name


def backup(
    settings: Settings, parent: Path, keep: int | None = None, data_pointer: Path | None = None
) -> BackupResult:
    """Write one dated backup under `parent`; with `keep`, prune all but the newest `keep`.
    `data_pointer`: the DVC file of the current data version (default: data/raw.dvc)."""
    started, clock = datetime.now(UTC), time.monotonic()
    parent.mkdir(parents=True, exist_ok=True)
    name = free_name(parent, started)
    staging = parent / f".{name}.partial"
    staging.mkdir(mode=0o700)
    try:
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "name": name,
            "created_at": started.isoformat(),
            "commit": code_commit(),
            "settings": _settings_record(settings),
        }
        parts = database_parts(settings, staging, manifest)
        parts += mlflow_artifacts_parts(settings, staging, parts[1])
        parts += dvc_parts(settings, staging, data_pointer or RAW_DVC_FILE)
        parts += [studies_part(settings, staging), secrets_part(settings, staging)]
        warnings = [p.warning for p in parts if p.warning]
        warnings += _consistency(manifest, staging, settings)
        manifest.update(
            parts=[asdict(part) for part in parts],
            bytes=sum(part.bytes for part in parts),
            seconds=round(time.monotonic() - clock, 3),
            finished_at=datetime.now(UTC).isoformat(),
            not_included=NOT_INCLUDED + [f"{p.name}: {p.note}" for p in parts if not p.included],
            warnings=warnings,
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        private(staging / MANIFEST)
        os.rename(staging, parent / name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pruned = prune(parent, keep) if keep else []
    return BackupResult(parent / name, manifest, pruned, warnings)


def backups(parent: Path) -> list[Path]:
    """The complete backups under `parent`, oldest first."""
    if not parent.is_dir():
        return []
    found = [p for p in parent.iterdir() if p.name.startswith(PREFIX) and (p / MANIFEST).is_file()]
    return sorted(found, key=lambda p: p.name)


def prune(parent: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete backups, and staging folders older than the
    newest one (left by a backup that died); the folders deleted."""
    complete = backups(parent)
    doomed = complete[: max(len(complete) - keep, 0)]
    if complete:
        newest = f".{complete[-1].name}"
        doomed += [
            p
            for p in parent.glob(f".{PREFIX}*.partial")
            if p.is_dir() and p.name.removesuffix(".partial") < newest
        ]
    for folder in doomed:
        shutil.rmtree(folder)
    return doomed


def find_backup(path: Path) -> Path:
    """`path` itself when it is a backup, else the newest complete backup inside it."""
    if (path / MANIFEST).is_file():
        return path
    found = backups(path)
    if not found:
        raise BackupError(f"no backup in {path} (a {PREFIX}<time> folder with a {MANIFEST})")
    return found[-1]


def verify(folder: Path) -> dict[str, Any]:
    """The manifest, once every included part is there with its recorded size and sha256."""
    manifest: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{folder}: unknown backup format {manifest.get('format')!r}")
    for part in manifest["parts"]:
        if not part["included"]:
            continue
        entries = (
            {f"{part['file']}/{name}": entry for name, entry in part["files"].items()}
            if part["files"]
            else {part["file"]: part}
        )
        for relative, entry in entries.items():
            path = folder / relative
            if not path.is_file() or path.stat().st_size != entry["bytes"]:
                raise BackupError(f"{folder}: {relative} is missing or has another size")
            if sha256_of(path) != entry["sha256"]:
                raise BackupError(f"{folder}: {relative} does not match its sha256")
    return manifest
