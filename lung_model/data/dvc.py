"""The labelled dataset under DVC: `data/raw`, its remote, its version, and the import.

The pipeline reads images only from `data/raw` as DVC restores it; `import_dataset` is the
one place that reads an outside source (`make data`). The data version everywhere is the
directory hash DVC records in `data/raw.dvc`.
See https://dvc.org/doc/command-reference
"""

from __future__ import annotations

import csv
import hashlib
import logging
import shutil
import subprocess
import sys
from pathlib import Path

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


def import_dataset(settings: Settings, source: Path | None = None) -> str:
    """Make `data/raw` and the remote hold the dataset; return the data version.

    When the remote already holds the committed version this is a `dvc pull`; otherwise the
    source is copied in, verified, added to DVC and pushed. A source that differs from the
    committed version becomes a new data version (data/raw.dvc changes: commit it).
    """
    configure_remote(settings)
    committed = data_version()
    if RAW_DVC_FILE.exists():
        try:
            dvc("pull", "--quiet", str(RAW_DVC_FILE.relative_to(PROJECT_ROOT)))
            log.info("data/raw restored from the DVC remote (%s)", committed)
            return committed
        except DataError:
            log.info("remote does not hold %s yet; importing from the source", committed)
    source = source or settings.default_dataset_source
    if not source.exists():
        source = fetch_public_release(settings)
    count = copy_verified(source, settings.raw_data)
    dvc("add", "--quiet", "data/raw")
    dvc("push", "--quiet", "data/raw.dvc")
    version = data_version()
    if committed not in ("untracked", version):
        log.warning("source differs from the committed data: new data version %s", version)
    log.info("imported %d images from %s as data version %s", count, source, version)
    return version


def pull(repo: Path = PROJECT_ROOT) -> str:
    """Restore `data/raw` from the remote at the committed version (the DAG's first task)."""
    dvc("pull", "--quiet", "data/raw.dvc", repo=repo)
    return data_version(repo / "data" / "raw.dvc")
