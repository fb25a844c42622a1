"""Plain helpers the dashboard tests import: the app, the test account, seeded studies."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from live_dashboard import APP
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lung_model.platform import db
from lung_model.settings import PROJECT_ROOT, Settings

USER, PASSWORD = "alice", "correct horse battery"
MODEL = "lung-ct-classifier"
RAW = PROJECT_ROOT / "data" / "raw"


def stored_reviews(settings: Settings, batch_id: int, *, slices: bool = False) -> list[tuple]:
    """The review rows of a study as the database holds them, oldest first: (image_id,
    reviewer, decision, corrected_label, comment, model_version); study-level ones unless
    `slices`."""
    with db.get_engine(settings).connect() as connection:
        rows = connection.execute(
            text(
                "SELECT image_id, reviewer, decision, corrected_label, comment, model_version"
                " FROM reviews WHERE batch_id = :b AND (image_id IS NOT NULL) = :slices"
                " ORDER BY id"
            ),
            {"b": batch_id, "slices": slices},
        ).all()
    return [tuple(row) for row in rows]


_components: list[object] = []


def new_app() -> AppTest:
    """An AppTest of the dashboard. Streamlit scans every installed distribution for
    components on each new AppTest (seconds each); the scan result is shared instead."""
    app = AppTest.from_file(str(APP), default_timeout=120)
    if hasattr(app, "_bidi_component_manager"):
        if not _components:
            from streamlit.components.v2.component_manager import BidiComponentManager

            manager = BidiComponentManager()
            manager.discover_and_register_components(start_file_watching=False)
            _components.append(manager)
        app._bidi_component_manager = _components[0]
    return app


def _slices() -> list[Path]:
    names = ["Malignant cases/Malignant case (1).jpg", "Bengin cases/Bengin case (1).jpg"]
    names.append("Normal cases/Normal case (1).jpg")
    return [RAW / name for name in names]


def seed_study(
    settings: Settings, study: str, p_malignant: list[float], needs_review: bool = False
) -> tuple[int, list[int]]:
    """A scored study: a batch, slice files in the archive, predictions and a study result."""
    engine = db.get_engine(settings)
    folder = settings.archive / study
    folder.mkdir(parents=True, exist_ok=True)
    image_ids = []
    with engine.begin() as connection:
        batch_id = connection.execute(
            text(
                "INSERT INTO scan_batches (study, source_path, status, n_files, n_scored, "
                "model_name, model_version, finished_at) VALUES (:s, :p, 'done', :n, :n, :m, '1',"
                " now() + interval '2 seconds') RETURNING id"
            ),
            {"s": study, "p": str(settings.inbox / study), "n": len(p_malignant), "m": MODEL},
        ).scalar_one()
        for index, (p, source) in enumerate(zip(p_malignant, _slices() * 9, strict=False)):
            name = f"slice-{index:02d}.jpg"
            shutil.copy(source, folder / name)
            sha = uuid.uuid4().hex * 2
            image_ids.append(
                connection.execute(
                    text(
                        "INSERT INTO images (batch_id, path, sha256, format, status) "
                        "VALUES (:b, :path, :sha, 'jpeg', 'scored') RETURNING id"
                    ),
                    {"b": batch_id, "path": name, "sha": sha},
                ).scalar_one()
            )
            rest = (1 - p) / 2
            connection.execute(
                text(
                    "INSERT INTO predictions (image_sha256, model_name, model_version, "
                    "data_version, p_normal, p_benign, p_malignant, predicted_class) VALUES "
                    "(:sha, :m, '1', 'data-v1', :rest, :rest, :p, :c)"
                ),
                {
                    "sha": sha,
                    "m": MODEL,
                    "rest": rest,
                    "p": p,
                    "c": "malignant" if p > 0.5 else "normal",
                },
            )
        top = max(p_malignant)
        connection.execute(
            text(
                "INSERT INTO study_results (batch_id, model_name, model_version, data_version, "
                "n_slices, max_p_malignant, mean_p_malignant, n_malignant_slices, "
                "predicted_class, needs_review) VALUES (:b, :m, '1', 'data-v1', :n, :top, :mean,"
                " :over, :c, :u)"
            ),
            {
                "b": batch_id,
                "m": MODEL,
                "n": len(p_malignant),
                "top": top,
                "mean": sum(p_malignant) / len(p_malignant),
                "over": sum(p > 0.5 for p in p_malignant),
                "c": "malignant" if top > 0.5 else "normal",
                "u": needs_review,
            },
        )
    return int(batch_id), image_ids


REJECTED = "below floor: malignant recall 0.600 < floor 0.950"


def record_event(settings: Settings, version: str, decision: str, reason: str, actor: str) -> None:
    """One promotion_events row for MODEL, as lung_model.lifecycle.promotion records them."""
    with db.get_engine(settings).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO promotion_events (model_name, candidate_version, decision, reason,"
                " actor) VALUES (:m, :v, :d, :r, :a)"
            ),
            {"m": MODEL, "v": version, "d": decision, "r": reason, "a": actor},
        )


def override_champion(settings: Settings, version: str = "1") -> None:
    """What `make demo` records when the gate rejects its model."""
    record_event(settings, version, "rejected", REJECTED, "gate")
    record_event(settings, version, "override", "make demo: no champion yet", "make-demo")


def sign_in() -> AppTest:
    """A fresh AppTest that has signed in as USER through the form."""
    app = new_app()
    app.run()
    app.text_input(key="signin_username").input(USER)
    app.text_input(key="signin_password").input(PASSWORD)
    app.button[0].click().run()
    assert not app.exception, app.exception
    return app
