"""The dataset under DVC: a fresh clone restores exactly the committed version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lung_model.data import dvc
from lung_model.settings import PROJECT_ROOT, Settings, get_settings


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


def test_data_step_on_a_warm_cache_fills_a_new_remote_that_a_new_clone_pulls(
    tmp_path: Path,
) -> None:
    """A host whose DVC cache holds the data moves LUNG_HOME: `dvc pull` succeeds from the
    cache alone, so the data step must push to the new remote, and say so."""
    warm, fresh, moved = tmp_path / "warm", tmp_path / "fresh", tmp_path / "moved-home"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(warm)], check=True)
    remote = get_settings().dvc_remote_url  # filled by `make data`
    dvc.dvc("remote", "add", "--local", "--force", "--default", "local", remote, repo=warm)
    dvc.pull(repo=warm)  # the cache is warm now
    shutil.rmtree(warm / "lung_model")  # the clone runs the code under test, not the commit's
    shutil.copytree(PROJECT_ROOT / "lung_model", warm / "lung_model")
    moved_settings = Settings(home=moved, dvc_remote=None)
    dvc.configure_remote(moved_settings, repo=warm)
    before = dvc.remote_status(moved_settings, repo=warm)
    assert not before.holds and "lacks 914 files" in before.detail

    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNG_")}
    env |= {"LUNG_HOME": str(moved), "LUNG_DATASET_SOURCE": str(tmp_path / "no-source")}
    step = [sys.executable, "-m", "lung_model", "data"]
    done = subprocess.run(step, cwd=warm, env=env, capture_output=True, text=True, check=True)
    assert "restored from the local DVC cache" in done.stdout
    assert f"DVC remote {moved / 'dvc-remote'}: it lacked 914 files" in done.stdout
    again = subprocess.run(step, cwd=warm, env=env, capture_output=True, text=True, check=True)
    assert "already held the version, nothing pushed" in again.stdout

    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(fresh)], check=True)
    dvc.configure_remote(moved_settings, repo=fresh)
    assert dvc.pull(repo=fresh) == dvc.data_version()
    assert len(list((fresh / "data" / "raw").rglob("*.jpg"))) == 912
    assert dvc.remote_status(moved_settings, repo=fresh).holds
