"""A model logged before the model issue (issue 12) still loads, scores and shows: the tiny CNN
that release 6514801 trained, gated and made champion (tests/fixtures/release-6514801: its
MLflow store and its results database, made by that release's own code), opened by today's
LoadedModel, Scorer and dashboard."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dashboard_helpers import PASSWORD, USER, sign_in
from release_fixture import FIXTURE_DATA, ORIGIN, install_store, restore_database
from sqlalchemy import text
from tiny_models import use_home

from lung_model import settings as settings_module
from lung_model.platform import db
from lung_model.review import accounts
from lung_model.scoring.engine import Scorer
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import Settings
from lung_model.training.study_rule import StudyRule

pytestmark = pytest.mark.slow
NAME = ORIGIN["model_name"]
OLD_STUDY = ORIGIN["studies"]["release-study-a"]
SCORED_BY_THE_RELEASE = FIXTURE_DATA / "Malignant cases" / "Malignant case (2).jpg"
NEW_SLICES = [FIXTURE_DATA / "Malignant cases" / "Malignant case (3).jpg",
              FIXTURE_DATA / "Bengin cases" / "Bengin case (2).jpg"]  # fmt: skip


@pytest.fixture
def release_site(
    empty_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """LUNG_HOME holding the release's MLflow store, DATABASE_URL its restored database."""
    restore_database(empty_pg_url)
    install_store(tmp_path / "home")
    settings = use_home(tmp_path / "home", empty_pg_url, monkeypatch)
    monkeypatch.setattr(accounts, "ROUNDS", 4)
    accounts.add_account(settings, USER, PASSWORD)
    yield settings
    settings_module.get_settings.cache_clear()


def test_the_release_cnn_loads_scores_and_shows_in_the_dashboard(release_site: Settings) -> None:
    settings = release_site
    model = LoadedModel.load(settings, f"models:/{NAME}@champion")
    assert (model.name, model.version, model.family) == (NAME, ORIGIN["model_version"], "cnn")
    assert model.image_size == 32 and model.data_version.startswith("local-")
    assert model.study_rule == StudyRule()  # logged without one: the rule it was served by
    assert model.malignant_threshold is not None  # its own decision rule, from its metadata

    engine = db.get_engine(settings)
    (stored,) = model.predict_files([SCORED_BY_THE_RELEASE])
    assert np.allclose(list(stored.probabilities.values()), release_prediction(engine), atol=1e-5)

    folder = settings.inbox / "scored-today"
    folder.mkdir()
    for path in [SCORED_BY_THE_RELEASE, *NEW_SLICES]:
        shutil.copyfile(path, folder / path.name)
    (folder / settings.ready_marker).touch()
    summary = Scorer(model, engine, settings, workers=1).score_claimed(folder)
    assert (summary.status, summary.n_scored) == ("done", 3)
    assert summary.n_predicted == 2  # the slice the release scored keeps its prediction

    app = sign_in()
    app.switch_page("views/model.py")
    app.run(timeout=120)
    assert not app.exception, app.exception
    assert "Champion: version 1" in [h.value for h in app.subheader]
    assert {"recall malignant", "macro f1"} <= {m.label for m in app.metric}
    assert any("roc" in (caption or "") for image in app.image for caption in image.captions)
    history = next(d.value for d in app.dataframe if "what happened" in d.value.columns)
    assert sorted(history["decision"]) == ["override", "rejected"]  # recorded by the release

    for batch, study in ((summary.batch_id, "scored-today"), (OLD_STUDY, "release-study-a")):
        app.switch_page("views/study.py")
        app.query_params["batch"] = str(batch)
        app.run(timeout=120)
        assert not app.exception, app.exception
        assert app.title[0].value.replace("\\", "") == f"Study {study}"
        captions = "\n".join(c.value for c in app.caption)
        assert f"Model {NAME} v1" in captions and "Verdict rule unavailable" not in captions
    assert len(app.dataframe[-1].value) == 3  # the release's review trail of that study


def release_prediction(engine) -> list[float]:
    """What release 6514801 stored for that slice: (p_normal, p_benign, p_malignant)."""
    from lung_model.data.dvc import sha256_of

    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT p_normal, p_benign, p_malignant FROM predictions"
                " WHERE image_sha256 = :sha AND model_name = :m AND model_version = '1'"
            ),
            {"sha": sha256_of(SCORED_BY_THE_RELEASE), "m": NAME},
        ).one()
    return list(row)
