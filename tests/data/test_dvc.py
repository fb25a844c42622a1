"""The dataset under DVC: a fresh clone restores exactly the committed version."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lung_model.data import dvc
from lung_model.settings import PROJECT_ROOT, get_settings


def test_data_version_is_the_committed_dvc_hash() -> None:
    version = dvc.data_version()
    assert version.endswith(".dir") and len(version) == len("0" * 32 + ".dir")


def test_fresh_clone_pulls_all_912_images_with_clean_status(tmp_path: Path) -> None:
    remote = get_settings().dvc_remote_url  # filled by `make data`
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    dvc.dvc("remote", "add", "--local", "--force", "--default", "local", remote, repo=clone)
    assert dvc.pull(repo=clone) == dvc.data_version()
    images = list((clone / "data" / "raw").rglob("*.jpg"))
    assert len(images) == 912
    status = dvc.dvc("status", "data/raw.dvc", repo=clone)
    assert "up to date" in status


def test_import_rejects_a_source_whose_files_do_not_match_the_manifest(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "Normal cases").mkdir(parents=True)
    (source / "Normal cases" / "Normal case (1).jpg").write_bytes(b"not the real bytes")
    (source / "MANIFEST.csv").write_text(
        "path,label,sha256\nNormal cases/Normal case (1).jpg,normal," + "0" * 64 + "\n"
    )
    with pytest.raises(dvc.DataError, match="does not match"):
        dvc.copy_verified(source, tmp_path / "raw")


def test_dvc_cli_errors_carry_dvc_message(tmp_path: Path) -> None:
    with pytest.raises(dvc.DataError, match="dvc status failed"):
        dvc.dvc("status", repo=tmp_path)  # not a DVC repository
