"""Audit: classes from folder names, duplicates, unreadable files, manifest checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lung_model.cli.main import main
from lung_model.data.audit import audit, inspect, near_duplicate_pairs, summary
from lung_model.data.dataset import label_for_folder, scan

FIXTURES = Path(__file__).parents[1] / "fixtures" / "iq-othnccd"


@pytest.mark.parametrize(
    ("folder", "label"),
    [
        ("Bengin cases", "benign"),
        ("BENIGN", "benign"),
        ("normal cases", "normal"),
        ("Malignant cases", "malignant"),
        ("other", None),
        ("", None),
    ],
)
def test_label_for_folder(folder: str, label: str | None) -> None:
    assert label_for_folder(folder) == label


def test_fixture_audit_is_clean() -> None:
    report = audit(inspect(FIXTURES))
    assert report["errors"] == []
    assert report["class_counts"] == {"normal": 6, "benign": 6, "malignant": 6}
    assert report["image_sizes"]["801x512"] == {"malignant": 2}
    assert "801x512" in report["warnings"][0]
    assert "audit passed" in summary(report)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """The fixtures without a manifest, plus a duplicate, a corrupt file and a stray folder."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    (root / "MANIFEST.csv").unlink()
    (root / "normal").mkdir()  # lower-case spelling of a class folder
    shutil.copy(root / "Normal cases" / "Normal case (1).jpg", root / "normal" / "copy 7.jpg")
    (root / "Bengin cases" / "Bengin case (999).jpg").write_bytes(b"\xff\xd8\xff" + b"0" * 50)
    (root / "notes").mkdir()
    return root


def test_messy_data_fails_with_reasons(
    messy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slices, skipped = scan(messy)
    assert skipped == ["notes"]
    assert len(slices) == 20
    report = audit(inspect(messy))
    assert [u["path"] for u in report["unreadable"]] == ["Bengin cases/Bengin case (999).jpg"]
    assert any(error.startswith("unreadable") for error in report["errors"])
    assert ["Normal cases/Normal case (1).jpg", "normal/copy 7.jpg"] in report["exact_duplicates"]
    out = tmp_path / "audit.json"
    assert main(["audit", "--data", str(messy), "--json", str(out)]) == 1
    assert "audit FAILED" in capsys.readouterr().out
    assert json.loads(out.read_text())["n_files"] == 20


def test_manifest_mismatch_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    victim = root / "Normal cases" / "Normal case (2).jpg"
    shutil.copy(root / "Normal cases" / "Normal case (1).jpg", victim)
    report = audit(inspect(root))
    assert report["errors"] == [
        "sha256 differs from MANIFEST.csv: Normal cases/Normal case (2).jpg"
    ]


def test_consecutive_slices_are_near_duplicates() -> None:
    inventory = inspect(FIXTURES)
    pairs = {
        (inventory.slices[i].path, inventory.slices[j].path)
        for i, j, _ in near_duplicate_pairs(inventory.slices)
    }
    assert ("Normal cases/Normal case (1).jpg", "Normal cases/Normal case (2).jpg") in pairs
    assert not any(a.split("/")[0] != b.split("/")[0] for a, b in pairs)
