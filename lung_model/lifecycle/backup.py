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
import tarfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lung_model.data.dvc import RAW_DVC_FILE, sha256_of
from lung_model.platform import db, db_backup, mlflow_store
from lung_model.settings import PROJECT_ROOT, Settings

PREFIX = "lung-backup-"
MANIFEST = "manifest.json"
FORMAT = 1
SECRETS = "secrets"
NOT_INCLUDED = [
    "the Airflow metadata database (DAG run history; DAGs, connections and pools come from "
    "the code and the settings)",
    "LUNG_HOME/inbox and processing (studies not yet scored: deliver them again)",
    "data/raw (restored from the DVC remote by `make data`)",
    "logs",
]


class BackupError(RuntimeError):
    """No usable backup where one was expected."""


@dataclass
class Part:
    name: str
    included: bool
    source: str
    file: str | None = None  # relative to the backup folder
    bytes: int = 0
    sha256: str | None = None
    seconds: float = 0.0
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # a folder part, per file
    note: str = ""
    warning: str = ""  # something the system needs that this part could not hold


@dataclass(frozen=True)
class BackupResult:
    folder: Path
    manifest: dict[str, Any]
    pruned: list[Path]
    warnings: list[str]


def _private(path: Path) -> Path:
    path.chmod(0o700 if path.is_dir() else 0o600)
    return path


def _file_part(
    name: str, source: str, folder: Path, relative: str, write: Callable[[Path], object]
) -> Part:
    started = time.monotonic()
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write(target)
    _private(target)
    seconds = round(time.monotonic() - started, 3)
    return Part(name, True, source, relative, target.stat().st_size, sha256_of(target), seconds)


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Regular files and folders only: a link in the quarantine is never followed or kept."""
    return info if info.isfile() or info.isdir() else None


def tar_folders(target: Path, members: dict[str, Path]) -> None:
    """An uncompressed tar of each existing folder under its name (images and models are
    compressed already)."""
    with tarfile.open(target, "w") as archive:
        for name, folder in members.items():
            if folder.is_dir():
                archive.add(folder, arcname=name, filter=_plain)


def tar_contents(target: Path, folder: Path) -> None:
    tar_folders(target, {child.name: child for child in sorted(folder.iterdir())})


def _database(settings: Settings, folder: Path, manifest: dict[str, Any]) -> list[Part]:
    """The database dump, and the MLflow store copied while its snapshot is held."""
    url = db.database_url(settings)
    with db_backup.snapshot(url) as snap:
        tools: list[Any] = []
        part = _file_part(
            "database",
            db.redact(url),
            folder,
            "database.dump",
            lambda target: tools.append(db_backup.dump(url, snap, target)),
        )
        store = _mlflow_store(settings, folder)
    manifest["database"] = {
        "server_version": snap.server_version,
        "pg_dump": f"{tools[0].path} ({tools[0].version})",
        "pg_dump_major": tools[0].major,
        "snapshot": snap.snapshot_id,
        "rows": snap.rows,
        "migrations": snap.migrations,
        "champion_by_promotion_history": snap.champions,
        "roles": snap.roles,
    }
    return [part, store]


def _mlflow_store(settings: Settings, folder: Path) -> Part:
    uri = settings.tracking_uri()
    store = mlflow_store.sqlite_path(uri)
    if store is None:
        note = "a tracking server: its store and artifacts are backed up where it runs"
        return Part("mlflow_store", False, db.redact(uri), note=note)
    if not store.exists():
        return Part("mlflow_store", False, str(store), note="no MLflow store yet")
    return _file_part(
        "mlflow_store",
        str(store),
        folder,
        "mlflow/mlflow.db",
        lambda target: mlflow_store.copy_store(store, target),
    )


def _mlflow_artifacts(settings: Settings, folder: Path, store: Part) -> list[Part]:
    if not store.included:
        return [Part("mlflow_artifacts", False, settings.artifact_root(), note=store.note)]
    root = Path(settings.artifact_root())
    outside = [
        location
        for location in mlflow_store.artifact_locations(folder / str(store.file))
        if not mlflow_store.under(location, str(root))
    ]
    if root.is_dir():
        part = _file_part(
            "mlflow_artifacts",
            str(root),
            folder,
            "mlflow/artifacts.tar",
            lambda target: tar_contents(target, root),
        )
    else:
        part = Part("mlflow_artifacts", False, str(root), note="no artifacts yet")
    if outside:  # logged to experiments made before a SQLite store always got its root
        shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if outside[3:] else "")
        part.warning = f"MLflow artifacts outside {root} are not in the backup: {shown}"
    return [part]


def _dvc(settings: Settings, folder: Path, data_pointer: Path) -> list[Part]:
    url = settings.dvc_remote_url
    if "://" in url and not url.startswith("file://"):
        note = "a remote URL: only this pointer is kept; back the remote up where it lives"
        parts = [Part("dvc_remote", False, url, note=note)]
    else:
        remote = Path(url.removeprefix("file://"))
        if remote.is_dir() and any(remote.iterdir()):
            parts = [
                _file_part(
                    "dvc_remote", url, folder, "dvc-remote.tar", lambda t: tar_contents(t, remote)
                )
            ]
        else:
            parts = [Part("dvc_remote", False, url, note="empty: no data imported")]
    if data_pointer.is_file():
        parts.append(
            _file_part(
                "data_version",
                str(data_pointer),
                folder,
                "data/raw.dvc",
                lambda target: shutil.copyfile(data_pointer, target),
            )
        )
    return parts


def _studies(settings: Settings, folder: Path) -> Part:
    members = {"archive": settings.archive, "quarantine": settings.quarantine}
    if not any(path.is_dir() and any(path.iterdir()) for path in members.values()):
        return Part("studies", False, str(settings.archive), note="no archived study yet")
    return _file_part(
        "studies",
        f"{settings.archive}, {settings.quarantine}",
        folder,
        "studies.tar",
        lambda target: tar_folders(target, members),
    )


def _secrets(settings: Settings, folder: Path) -> Part:
    source = settings.secrets_dir
    part = Part(SECRETS, False, str(source), note="generated keys and passwords: keep private")
    files = sorted(
        p for p in source.glob("*") if p.is_file() and not p.is_symlink() and p.name[0] != "."
    )
    if not files:
        part.note = "no secrets generated yet"
        return part
    started = time.monotonic()
    target = folder / SECRETS
    target.mkdir(mode=0o700)
    _private(target)
    for path in files:
        copy = _private(Path(shutil.copyfile(path, target / path.name)))
        part.files[path.name] = {"bytes": copy.stat().st_size, "sha256": sha256_of(copy)}
    part.included, part.file = True, SECRETS
    part.bytes = sum(entry["bytes"] for entry in part.files.values())
    part.seconds = round(time.monotonic() - started, 3)
    return part


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
        parts = _database(settings, staging, manifest)
        parts += _mlflow_artifacts(settings, staging, parts[1])
        parts += _dvc(settings, staging, data_pointer or RAW_DVC_FILE)
        parts += [_studies(settings, staging), _secrets(settings, staging)]
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
        _private(staging / MANIFEST)
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
