"""The labelled dataset under DVC: `data/raw`, its remote, its version, and the import.

The pipeline reads images only from `data/raw` as DVC restores it; `import_dataset` is the
one place that reads an outside source (`make data`). The data version everywhere is the
directory hash DVC records in `data/raw.dvc`.
See https://dvc.org/doc/command-reference
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lung_model.settings import PROJECT_ROOT, Settings

RAW_DVC_FILE = PROJECT_ROOT / "data" / "raw.dvc"
PUBLIC_REPOSITORY = "https://github.com/hamdalla93/The-IQ-OTHNCCD-lung-cancer-dataset"
log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """The dataset could not be imported or restored."""


def dvc(*args: str, repo: Path = PROJECT_ROOT) -> str:
    """Run one DVC command in `repo` with this interpreter's DVC; raise with its message."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise DataError(f"dvc {' '.join(args)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def data_version(dvc_file: Path = RAW_DVC_FILE) -> str:
    """The DVC hash of `data/raw` as committed (for example `3f2a...c1.dir`)."""
    if not dvc_file.exists():
        return "untracked"
    outs = yaml.safe_load(dvc_file.read_text())["outs"]
    return str(outs[0]["md5"])


def configure_remote(settings: Settings, repo: Path = PROJECT_ROOT) -> str:
    """Point the default remote at the configured location (git-ignored local config)."""
    url = settings.dvc_remote_url
    if "://" not in url:
        Path(url).mkdir(parents=True, exist_ok=True)
    dvc("remote", "add", "--local", "--force", "--default", "local", url, repo=repo)
    return url


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_verified(source: Path, target: Path) -> int:
    """Copy the release layout from `source` to `target`, checking every file's sha256
    against the source's MANIFEST.csv; return the number of images."""
    manifest = source / "MANIFEST.csv"
    if not manifest.exists():
        raise DataError(f"{manifest} is missing: not a copy of the dataset this project expects")
    rows = list(csv.DictReader(manifest.open()))
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for row in rows:
        src, dst = source / row["path"], target / row["path"]
        if sha256_of(src) != row["sha256"]:
            raise DataError(f"{src} does not match its sha256 in MANIFEST.csv")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for extra in ("MANIFEST.csv", "README.md"):
        if (source / extra).exists():
            shutil.copyfile(source / extra, target / extra)
    return len(rows)


def fetch_public_release(settings: Settings) -> Path:
    """Clone the public release (for users with internet) and write its MANIFEST.csv."""
    target = settings.home / "downloads" / "iq-othnccd"
    if not target.exists():
        cloned = subprocess.run(
            ["git", "clone", "--depth", "1", PUBLIC_REPOSITORY, str(target)],
            capture_output=True,
            text=True,
        )
        if cloned.returncode != 0:
            raise DataError(
                f"no local dataset ({settings.default_dataset_source} is missing; set "
                f"LUNG_DATASET_SOURCE) and cloning {PUBLIC_REPOSITORY} failed: "
                f"{cloned.stderr.strip().splitlines()[-1]}"
            )
    with (target / "MANIFEST.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "sha256"])
        for image in sorted(target.rglob("*.jpg")):
            folder = image.parent.name.lower()
            label = "benign" if folder.startswith("beng") else folder.split()[0]
            writer.writerow([image.relative_to(target).as_posix(), label, sha256_of(image)])
    return target


FIX = "run `python -m lung_model data` to push it"


@dataclass(frozen=True)
class RemoteStatus:
    """Whether the configured DVC remote holds the committed data version (`dvc data status`)."""

    remote: str
    version: str
    holds: bool
    detail: str

    def describe(self) -> str:
        return f"{self.remote}: {self.detail}"


def _status(repo: Path, *, granular: bool = False) -> dict[str, Any]:
    args = ["data", "status", "--not-in-remote", "--json"] + (["--granular"] if granular else [])
    return dict(json.loads(dvc(*args, repo=repo) or "{}"))


def _raw_entries(status: dict[str, Any], key: str) -> list[str]:
    """The `data/raw` files (or the directory itself, granular or not) under `key`."""
    return [path for path in status.get(key, []) if path.startswith("data/raw/")]


def remote_status(settings: Settings, repo: Path = PROJECT_ROOT) -> RemoteStatus:
    """Does the remote the settings name hold every file of the committed `data/raw`?

    Asks DVC (`dvc data status --not-in-remote`, which reads the remote), in the repository
    as the data step configured it; a repository still pointing at another remote, or a
    remote DVC cannot read, is reported as not holding it, with the reason.
    """
    version, url = data_version(repo / "data" / "raw.dvc"), settings.dvc_remote_url
    try:
        configured = dvc("config", "--local", "remote.local.url", repo=repo).strip()
    except DataError:
        configured = ""
    if not _same_location(configured, url, repo):
        detail = f"not checked: the repository's DVC remote is {configured or 'unset'} ({FIX})"
        return RemoteStatus(url, version, False, detail)
    try:
        lacking = _raw_entries(_status(repo, granular=True), "not_in_remote")
    except DataError as error:
        return RemoteStatus(url, version, False, f"could not be read: {error}")
    files = [path for path in lacking if not path.endswith("/")]
    if not lacking:
        return RemoteStatus(url, version, True, f"holds data version {version}")
    what = f"{len(files)} files" if files else "the directory listing"
    return RemoteStatus(url, version, False, f"lacks {what} of data version {version} ({FIX})")


def _same_location(configured: str, url: str, repo: Path) -> bool:
    """Is the repository's remote (as DVC stores it, relative to .dvc/) the configured one?"""
    if not configured:
        return False
    if "://" in configured or "://" in url:
        return configured.rstrip("/") == url.rstrip("/")
    stored = Path(configured) if Path(configured).is_absolute() else repo / ".dvc" / configured
    return stored.resolve() == Path(url).resolve()


@dataclass
class DataImport:
    """What the data step did: where `data/raw` came from and what it pushed."""

    version: str
    remote: str
    origin: str = ""
    pushed: int = 0
    imported: int = 0
    lines: list[str] = field(default_factory=list)


def import_dataset(settings: Settings, source: Path | None = None) -> DataImport:
    """Make `data/raw` and the remote hold the dataset; say where each came from.

    When the local cache or the remote holds the committed version this is a `dvc pull`
    (from whichever holds it), followed by a `dvc push` of whatever the remote lacks (a warm
    cache restores data/raw without the remote holding anything: a new remote, a moved
    LUNG_HOME). Otherwise the source is copied in, verified, added to DVC and pushed. A
    source that differs from the committed version becomes a new data version (data/raw.dvc
    changes: commit it). After a push, asks the remote again whether it holds the version.
    """
    url = configure_remote(settings)
    committed = data_version()
    done = DataImport(committed, url)
    if RAW_DVC_FILE.exists():
        before = _status(PROJECT_ROOT)
        from_remote = bool(_raw_entries(before, "not_in_cache"))
        try:
            dvc("pull", "--quiet", str(RAW_DVC_FILE.relative_to(PROJECT_ROOT)))
            done.origin = "restored from " + (
                "the DVC remote" if from_remote else "the local DVC cache"
            )
        except DataError:
            log.info("neither the cache nor the remote holds %s: importing it", committed)
    if not done.origin:
        source = source or settings.default_dataset_source
        if not source.exists():
            source = fetch_public_release(settings)
        done.imported = copy_verified(source, settings.raw_data)
        dvc("add", "--quiet", "data/raw")
        done.version = data_version()
        done.origin = f"imported from {source} ({done.imported} images, verified)"
        if committed not in ("untracked", done.version):
            done.lines.append(
                f"the source differs from the committed data: new data version {done.version}"
                " (data/raw.dvc changed: commit it)"
            )
    lacking = _raw_entries(_status(PROJECT_ROOT, granular=True), "not_in_remote")
    if lacking:  # the status just read says the remote holds it otherwise: ask again only here
        dvc("push", "--quiet", "data/raw.dvc")
        done.pushed = len([path for path in lacking if not path.endswith("/")])
        status = remote_status(settings)
        if not status.holds:
            raise DataError(f"after the push the DVC remote {status.describe()}")
    done.lines[:0] = [
        f"data/raw is data version {done.version}, {done.origin}",
        f"DVC remote {url}: "
        + (
            f"it lacked {done.pushed} files of data/raw: pushed, it now holds the version"
            if lacking
            else "already held the version, nothing pushed"
        ),
    ]
    return done


def pull(repo: Path = PROJECT_ROOT) -> str:
    """Restore `data/raw` from the remote at the committed version (the DAG's first task)."""
    dvc("pull", "--quiet", "data/raw.dvc", repo=repo)
    return data_version(repo / "data" / "raw.dvc")
