"""End to end with a real champion: a tiny model trained by issue 3's training job on the
fixture slices, registered and promoted in a temporary MLflow store, then the CLI scores an
inbox with it. Also: no champion means exit 2 and one line."""

from __future__ import annotations

import csv
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from scoring_helpers import make_study, real_slices, rows
from sqlalchemy import Engine

from lung_model.cli.main import main
from lung_model.settings import PROJECT_ROOT, Settings

FIXTURE_DATA = PROJECT_ROOT / "tests" / "fixtures" / "iq-othnccd"


def test_no_champion_exits_2_with_one_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    make_study(settings.inbox, "S-waiting", real_slices(1))

    code = main(["score"])

    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: no model to score with: ") and err.count("\n") == 1
    assert (settings.inbox / "S-waiting").exists()  # nothing claimed without a model


def _tiny_champion(settings: Settings) -> str:
    from lung_model.lifecycle.promotion import promote
    from lung_model.platform.registry import register
    from lung_model.training.fit import TrainConfig
    from lung_model.training.job import train_and_log

    tiny = getattr(TrainConfig, "tiny", None)
    config = tiny() if tiny else TrainConfig()
    config = replace(config, epochs=1, min_epochs=0, image_size=32, widths=(4, 8))
    config = replace(config, bootstrap_rounds=10, augment=False)
    result = train_and_log(settings, config, FIXTURE_DATA, progress=False)
    version = register(result.run_id, settings)
    promote(version, "test champion", settings, actor="test")
    return version


@pytest.mark.slow
def test_cli_scores_the_inbox_with_the_registered_champion(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    version = _tiny_champion(settings)
    study = make_study(settings.inbox, "S-champion", real_slices(5, start=300))
    (study / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = tmp_path / "scores.csv"

    done = subprocess.run(
        [sys.executable, "-m", "lung_model", "score", "--csv", str(report)],
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert done.returncode == 0, done.stderr
    assert "S-champion: done, 6 files, 5 scored, 1 quarantined" in done.stdout
    table = list(csv.DictReader(report.open()))
    assert len(table) == 6 and {r["model_version"] for r in table} == {version}
    scored = [r for r in table if r["status"] == "scored"]
    assert len(scored) == 5 and all(
        r["predicted_class"] in ("normal", "benign", "malignant") for r in scored
    )
    assert all(
        abs(sum(float(r[k]) for k in ("p_normal", "p_benign", "p_malignant")) - 1) < 1e-4
        for r in scored
    )
    [bad] = [r for r in table if r["status"] == "quarantined"]
    assert (
        bad["reason"].startswith(("corrupt png", "not a decodable png"))
        and bad["p_malignant"] == ""
    )
    assert all(Path(r["path"]).exists() for r in table)  # archive/ and quarantine/ paths
    [(data_version, n)] = rows(
        engine,
        "SELECT p.data_version, count(*) FROM predictions p"
        " JOIN images i ON i.sha256 = p.image_sha256"
        " JOIN scan_batches b ON b.id = i.batch_id"
        " WHERE b.study = 'S-champion' AND p.model_version = :v GROUP BY 1",
        v=version,
    )
    assert n == 5 and data_version and data_version != "untracked"
    assert rows(
        engine,
        "SELECT r.model_version, r.n_slices FROM study_results r"
        " JOIN scan_batches b ON b.id = r.batch_id WHERE b.study = 'S-champion'",
    ) == [(version, 5)]

    # In place: a folder of study folders, scored where it is, nothing moves.
    sites = tmp_path / "sites"
    for name, start in (("A", 400), ("B", 410)):
        make_study(sites, name, real_slices(2, start=start), ready=None)
    before = sorted(p.relative_to(sites) for p in sites.rglob("*"))
    assert main(["score", str(sites), "--csv", str(report)]) == 0  # in this process, this time
    assert sorted(p.relative_to(sites) for p in sites.rglob("*")) == before
    table = list(csv.DictReader(report.open()))
    assert sorted(r["study"] for r in table) == ["A", "A", "B", "B"]
    assert all(r["status"] == "scored" and sites in Path(r["path"]).parents for r in table)
    assert rows(
        engine,
        "SELECT count(*), count(DISTINCT b.id) FROM images i JOIN scan_batches b"
        " ON b.id = i.batch_id WHERE b.source_path LIKE :prefix",
        prefix=f"{sites.resolve()}/%",
    ) == [(4, 2)]
