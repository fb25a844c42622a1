"""Bring one backup (`lung_model.lifecycle.backup`) back onto an empty LUNG_HOME and an empty
database.

Every part is checked against the manifest's sha256 and the target is checked for existing
results tables, an existing MLflow store and different secrets before anything is written;
`force` replaces them. The database goes first, in one transaction (all or nothing), then
the files. The MLflow store's absolute artifact paths are moved to this LUNG_HOME's artifact
root, so models load wherever the backup comes back. Afterwards the database is migrated
(a backup from an older release gets the newer migrations) and its rows per table and the
registry's aliases are compared with what the backup recorded.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lung_model.data.dvc import RAW_DVC_FILE, sha256_of
from lung_model.lifecycle.backup import find_backup, verify
from lung_model.lifecycle.backup_parts import SECRETS
from lung_model.platform import db, db_backup, mlflow_store
from lung_model.settings import Settings


class RestoreRefused(RuntimeError):
    """The target is not empty; nothing was changed."""


@dataclass
class RestoreResult:
    folder: Path
    manifest: dict[str, Any]
    restored: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _extract(archive: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")  # no absolute paths, links or devices


def _local_remote(url: str) -> Path | None:
    if "://" in url and not url.startswith("file://"):
        return None
    return Path(url.removeprefix("file://"))


def _differing_secrets(folder: Path, settings: Settings, part: dict[str, Any]) -> list[str]:
    return [
        name
        for name in part["files"]
        if (settings.secrets_dir / name).is_file()
        and sha256_of(settings.secrets_dir / name) != sha256_of(folder / SECRETS / name)
    ]


def _refusals(folder: Path, settings: Settings, parts: dict[str, Any], url: str) -> list[str]:
    """What restoring would overwrite, and the results tables the database already holds."""
    reasons = []
    present = db_backup.results_tables(url)
    if present:
        reasons.append(
            f"the database {db.redact(url)} already holds results tables ({', '.join(present)})"
        )
    store = mlflow_store.sqlite_path(settings.tracking_uri())
    if parts["mlflow_store"]["included"] and store and store.exists():
        reasons.append(f"an MLflow store already exists at {store}")
    if parts[SECRETS]["included"]:
        differing = _differing_secrets(folder, settings, parts[SECRETS])
        if differing:
            reasons.append(f"{settings.secrets_dir} holds other {', '.join(differing)}")
    return reasons


def _database(folder: Path, manifest: dict[str, Any], url: str, result: RestoreResult) -> None:
    database = manifest["database"]
    created = db_backup.ensure_roles(url, database["roles"])
    replace = bool(db_backup.results_tables(url))
    part = next(p for p in manifest["parts"] if p["name"] == "database")
    tool = db_backup.restore(url, folder / part["file"], database["pg_dump_major"], replace)
    rows = sum(database["rows"].values())
    result.restored.append(
        f"database: {len(database['rows'])} tables, {rows} rows into {db.redact(url)} "
        f"({tool.path.name} {tool.version})"
        + (f"; created role {', '.join(created)}" if created else "")
    )


def _mlflow(
    folder: Path, manifest: dict[str, Any], settings: Settings, result: RestoreResult
) -> None:
    parts = {p["name"]: p for p in manifest["parts"]}
    store = mlflow_store.sqlite_path(settings.tracking_uri())
    if not parts["mlflow_store"]["included"]:
        result.skipped.append(f"MLflow: not in the backup ({parts['mlflow_store']['note']})")
        return
    if store is None:
        result.skipped.append(
            "MLflow: MLFLOW_TRACKING_URI names a server; the store is not put there"
        )
        return
    root = settings.artifact_root()
    if parts["mlflow_artifacts"]["included"]:
        _extract(folder / parts["mlflow_artifacts"]["file"], Path(root))
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = store.with_name(f".{store.name}.{os.getpid()}.restoring")
    shutil.copyfile(folder / parts["mlflow_store"]["file"], staging)
    moved = mlflow_store.relocate(staging, manifest["settings"]["artifact_root"], root)
    os.replace(staging, store)
    result.restored.append(
        f"MLflow store: {store}, artifacts in {root}"
        + (
            f" ({moved} artifact paths moved from {manifest['settings']['artifact_root']})"
            if moved
            else ""
        )
    )


def _files(
    folder: Path,
    manifest: dict[str, Any],
    settings: Settings,
    data_pointer: Path,
    result: RestoreResult,
) -> None:
    parts = {p["name"]: p for p in manifest["parts"]}
    remote = _local_remote(settings.dvc_remote_url)
    dvc = parts["dvc_remote"]
    if dvc["included"] and remote is not None:
        _extract(folder / dvc["file"], remote)
        result.restored.append(f"DVC remote: {remote}")
    elif dvc["included"]:
        result.skipped.append(f"DVC remote: LUNG_DVC_REMOTE is a URL ({settings.dvc_remote_url})")
    else:
        result.skipped.append(f"DVC remote: {dvc['source']} ({dvc['note']})")
    pointer = parts.get("data_version")
    if pointer and pointer["included"]:
        data_pointer.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / pointer["file"], data_pointer)
        result.restored.append(f"data version: {data_pointer} (`make data` pulls data/raw)")
    if parts["studies"]["included"]:
        _extract(folder / parts["studies"]["file"], settings.home)
        result.restored.append(f"studies: {settings.archive}, {settings.quarantine}")
    secrets = parts[SECRETS]
    if secrets["included"]:
        settings.secrets_dir.mkdir(parents=True, exist_ok=True)
        settings.secrets_dir.chmod(0o700)
        for name in secrets["files"]:
            target = settings.secrets_dir / name
            shutil.copyfile(folder / SECRETS / name, target)
            target.chmod(0o600)
        result.restored.append(f"secrets: {len(secrets['files'])} files in {settings.secrets_dir}")


def _check(manifest: dict[str, Any], settings: Settings, result: RestoreResult) -> None:
    """Rows per table and registry aliases as the backup recorded them."""
    expected = {  # yoyo's own tables change when newer migrations apply
        t: n for t, n in manifest["database"]["rows"].items() if "yoyo" not in t
    }
    counts = db.row_counts(db.get_engine(settings), tuple(expected))  # migrates first
    differ = {t: (n, counts[t]) for t, n in expected.items() if t in counts and counts[t] != n}
    if differ:
        result.warnings.append(f"rows differ from the backup (table: backup, now): {differ}")
    store = mlflow_store.sqlite_path(settings.tracking_uri())
    recorded = manifest.get("registry", {}).get("aliases", {})
    if store and store.exists() and recorded and mlflow_store.aliases(store) != recorded:
        result.warnings.append("the registry's aliases differ from the backup's")


def restore(
    settings: Settings, path: Path, force: bool = False, data_pointer: Path | None = None
) -> RestoreResult:
    """Restore the backup at `path` (one backup, or the newest in a folder of them)."""
    started = time.monotonic()
    folder = find_backup(path)
    manifest = verify(folder)
    parts = {p["name"]: p for p in manifest["parts"]}
    url = db.database_url(settings)
    refusals = _refusals(folder, settings, parts, url)
    if refusals and not force:
        raise RestoreRefused(
            f"{'; '.join(refusals)}: restore needs an empty target (--force replaces them)"
        )
    result = RestoreResult(folder, manifest)
    _database(folder, manifest, url, result)
    _mlflow(folder, manifest, settings, result)
    _files(folder, manifest, settings, data_pointer or RAW_DVC_FILE, result)
    _check(manifest, settings, result)
    result.seconds = round(time.monotonic() - started, 3)
    return result
