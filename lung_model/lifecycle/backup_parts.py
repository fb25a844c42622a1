"""The parts of a backup (`lung_model.lifecycle.backup`), each written into the backup folder
and described by a `Part`: the database dump with the MLflow store copied while its snapshot
is held, the MLflow artifacts, the DVC remote and data version, the archived studies and the
generated secrets.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lung_model.data.dvc import sha256_of
from lung_model.platform import db, db_backup, mlflow_store
from lung_model.settings import Settings

SECRETS = "secrets"


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


def private(path: Path) -> Path:
    path.chmod(0o700 if path.is_dir() else 0o600)
    return path


def _file_part(
    name: str, source: str, folder: Path, relative: str, write: Callable[[Path], object]
) -> Part:
    started = time.monotonic()
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write(target)
    private(target)
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


def database_parts(settings: Settings, folder: Path, manifest: dict[str, Any]) -> list[Part]:
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
        store = mlflow_store_part(settings, folder)
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


def mlflow_store_part(settings: Settings, folder: Path) -> Part:
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


def mlflow_artifacts_parts(settings: Settings, folder: Path, store: Part) -> list[Part]:
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


def dvc_parts(settings: Settings, folder: Path, data_pointer: Path) -> list[Part]:
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


def studies_part(settings: Settings, folder: Path) -> Part:
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


def secrets_part(settings: Settings, folder: Path) -> Part:
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
    private(target)
    for path in files:
        copy = private(Path(shutil.copyfile(path, target / path.name)))
        part.files[path.name] = {"bytes": copy.stat().st_size, "sha256": sha256_of(copy)}
    part.included, part.file = True, SECRETS
    part.bytes = sum(entry["bytes"] for entry in part.files.values())
    part.seconds = round(time.monotonic() - started, 3)
    return part
