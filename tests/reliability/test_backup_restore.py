"""Losing the machine: a scored and reviewed system with a champion and a promotion history is
backed up, its database dropped and its LUNG_HOME deleted, then restored under another
LUNG_HOME onto the recreated (empty) database. The worklist, every review, the champion and
the promotion history are as before; the champion loads from the moved artifacts; the
dashboard's role logs in; scoring the same studies again adds nothing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pg_admin import admin
from scoring_helpers import make_study, real_slices
from sqlalchemy import text
from tiny_models import train_feature_model, use_home

from lung_model import settings as settings_module
from lung_model.cli.main import main
from lung_model.lifecycle.backup import backup
from lung_model.lifecycle.promotion import promote, rollback
from lung_model.lifecycle.restore import restore
from lung_model.platform import db
from lung_model.platform.registry import CHAMPION, register, version_for_alias
from lung_model.platform.tracking import configure_mlflow
from lung_model.review.database import dashboard_engine
from lung_model.review.marks import add_mark
from lung_model.review.reviews import add_review
from lung_model.review.studies import get_study, slice_file
from lung_model.review.worklist import WorklistFilter, worklist
from lung_model.settings import Settings

pytestmark = pytest.mark.slow
COUNTED = (
    "scan_batches",
    "images",
    "predictions",
    "study_results",
    "reviews",
    "review_marks",
    "promotion_events",
)


def rows(settings: Settings, sql: str, **params: object) -> list[dict[str, Any]]:
    with db.get_engine(settings).connect() as connection:
        return [dict(row._mapping) for row in connection.execute(text(sql), params)]


def state(settings: Settings) -> dict[str, Any]:
    """What a hospital would check after a restore."""
    client = configure_mlflow(settings)
    champion = version_for_alias(client, settings.model_name, CHAMPION)
    assert champion is not None
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    return {
        "worklist": worklist(db.get_engine(settings), WorklistFilter(page_size=500)).rows,
        "reviews": rows(settings, "SELECT * FROM reviews ORDER BY id"),
        "review_marks": rows(settings, "SELECT * FROM review_marks ORDER BY id"),
        "promotion_events": rows(settings, "SELECT * FROM promotion_events ORDER BY id"),
        "champion": str(champion.version),
        "version_tags": {str(v.version): v.tags for v in versions},
        "counts": db.row_counts(db.get_engine(settings), COUNTED),
    }


def scored_system(settings: Settings, share: Path) -> dict[str, int]:
    """Two studies scored in place from a share outside LUNG_HOME, one through the inbox
    (archived); champion version 1 after promote 1, promote 2, rollback; reviews."""
    run_id, first = train_feature_model(settings)
    second = register(run_id, settings)
    promote(first, "backup test: first champion", settings, actor="test")
    promote(second, "backup test: second champion", settings, actor="test")
    rollback("backup test: back to the first", settings, actor="test")
    make_study(share, "BK-share-a", real_slices(3, start=40))
    make_study(share, "BK-share-b", real_slices(2, start=700))
    make_study(settings.inbox, "BK-inbox-c", real_slices(2, start=900))
    assert main(["score", str(share)]) == 0 and main(["score"]) == 0
    batches = {
        r["study"]: r["batch_id"] for r in worklist(db.get_engine(settings), WorklistFilter()).rows
    }
    engine = db.get_engine(settings)
    for study, label in (
        ("BK-share-a", "normal"),
        ("BK-share-a", "malignant"),
        ("BK-inbox-c", "benign"),
    ):
        add_review(
            engine,
            batch_id=batches[study],
            reviewer="dr.a",
            label=label,
            predicted_class="normal",
            model_name=settings.model_name,
            model_version=first,
        )
    [image] = rows(
        settings, "SELECT id FROM images WHERE batch_id = :b LIMIT 1", b=batches["BK-share-b"]
    )
    add_review(
        engine,
        batch_id=batches["BK-share-b"],
        reviewer="dr.b",
        label="benign",
        predicted_class="normal",
        model_name=settings.model_name,
        model_version=first,
        image_id=image["id"],
        comment="one slice",
    )
    for kind, x in (("lesion", 120.0), ("lesion", 131.5), ("no_lesion", None)):  # a correction
        add_mark(
            dashboard_engine(settings), image_id=image["id"], reviewer="dr.b", kind=kind,
            x=x, y=x, radius=None if x is None else 9.0, model_version=first,
        )  # fmt: skip
    dashboard_engine(settings).dispose()  # generates the dashboard role's password
    return batches


def test_back_up_wipe_restore_elsewhere_and_nothing_is_lost(
    tmp_path: Path, empty_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = use_home(tmp_path / "home", empty_pg_url, monkeypatch)
    share = tmp_path / "share"
    batches = scored_system(settings, share)
    remote_file = Path(settings.dvc_remote_url) / "files" / "md5" / "ab" / "cdef"
    remote_file.parent.mkdir(parents=True)
    remote_file.write_bytes(b"a data version's file")
    pointer = tmp_path / "raw.dvc"
    pointer.write_text("outs:\n- md5: abcdef.dir\n")
    before = state(settings)
    assert before["champion"] == "1" and len(before["promotion_events"]) == 3
    assert len(before["review_marks"]) == 3
    # the guard's checks ride along: acquisition sensitivity and the teach priority (sql/0008)
    assert all(row["acquisition_sensitivity"] for row in before["worklist"])
    assert all(row["teach_priority"] > 0 for row in before["worklist"])

    made = backup(settings, tmp_path / "backups", keep=2, data_pointer=pointer)

    included = {p["name"] for p in made.manifest["parts"] if p["included"]}
    assert included == {
        "database",
        "mlflow_store",
        "mlflow_artifacts",
        "dvc_remote",
        "data_version",
        "studies",
        "secrets",
    }
    assert made.manifest["database"]["rows"]["reviews"] == 4 and not made.warnings
    assert (made.folder / "secrets").stat().st_mode & 0o777 == 0o700

    name = empty_pg_url.rsplit("/", 1)[1]
    db.get_engine(settings).dispose()
    admin(f"DROP DATABASE {name} WITH (FORCE)")
    admin(f"CREATE DATABASE {name}")
    shutil.rmtree(settings.home)
    pointer.unlink()
    settings = use_home(tmp_path / "elsewhere", empty_pg_url, monkeypatch)

    result = restore(settings, tmp_path / "backups", data_pointer=pointer)

    assert not result.warnings and not result.skipped, result
    assert state(settings) == before
    with pytest.raises(Exception, match="append-only"), db.get_engine(settings).begin() as c:
        c.execute(text("UPDATE reviews SET comment = 'rewritten'"))
    with dashboard_engine(settings).connect() as connection:
        studies = connection.execute(text("SELECT count(*) FROM worklist_entries")).scalar_one()
    assert studies == len(batches)
    study = get_study(db.get_engine(settings), batches["BK-inbox-c"])
    assert study and slice_file(settings, study, "slice_000.jpg").is_relative_to(settings.archive)
    restored_file = Path(settings.dvc_remote_url) / remote_file.relative_to(
        tmp_path / "home" / "dvc-remote"
    )
    assert restored_file.read_bytes() == b"a data version's file"
    assert pointer.read_text() == "outs:\n- md5: abcdef.dir\n"
    assert (settings.secrets_dir / "dashboard-db-password").stat().st_mode & 0o777 == 0o600

    assert main(["score", str(share)]) == 0  # the champion loads from the moved artifacts

    assert state(settings) == before


def test_restore_onto_a_new_embedded_server_recreates_the_dashboard_role(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A new machine: a fresh embedded PostgreSQL 18 cluster has no `lung_dashboard` role
    (roles are not in a database dump). The restore creates it from the manifest, the
    dashboard's restricted login works with the restored password."""
    db.get_engine(settings)  # migrated: the grants name the role
    made = backup(settings, tmp_path / "backups", data_pointer=tmp_path / "none.dvc")
    home = Path(tempfile.mkdtemp(prefix="lung-restore-test-"))  # see test_postgres_restart
    monkeypatch.setenv("LUNG_HOME", str(home))
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setattr("lung_model.lifecycle.restore.RAW_DVC_FILE", tmp_path / "none.dvc")
    settings_module.get_settings.cache_clear()
    try:
        assert main(["restore", str(made.folder)]) == 0
        out = capsys.readouterr().out
        assert "(pg_restore 18." in out and "created role lung_dashboard" in out, out
        assert "dashboard role lung_dashboard logs in" in out
    finally:
        db.stop_embedded(settings_module.get_settings())
        settings_module.get_settings.cache_clear()
        shutil.rmtree(home, ignore_errors=True)
