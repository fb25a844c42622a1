"""The study view explains a feature-family champion's slice (issue 12, item 3): the nodule
candidates it measured, outlined, and the features that pushed the slice's score, where a
CNN shows Grad-CAM. The champion is a real tiny feature model trained by the training job."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import MODEL, RAW
from tiny_models import train_feature_model

from lung_model.imaging.features import nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.platform import db
from lung_model.platform.tracking import configure_mlflow
from lung_model.review.marks import add_mark
from lung_model.training.feature_model import FeatureModelConfig

pytestmark = pytest.mark.slow


def test_study_view_shows_a_feature_models_explanation(signed_in, seeded) -> None:
    assert seeded.settings.model_name == MODEL
    _, version = train_feature_model(seeded.settings)  # the seeded studies' version "1"
    assert version == "1"
    configure_mlflow(seeded.settings).set_registered_model_alias(MODEL, "champion", version)

    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    assert app.radio(key="explain_class").value == "malignant"  # the slice's verdict
    app.button(key="explain_go").click().run(timeout=120)
    assert not app.exception, app.exception
    assert not any("unavailable" in str(w.value) for w in app.warning)

    captions = [caption for image in app.image for caption in image.captions]
    assert not any("Grad-CAM" in str(c) for c in captions)
    (outlined,) = [c for c in captions if "Dense candidates the model measured" in str(c)]
    assert "1: " in outlined and "%" in outlined  # numbered, with their share of the field
    words = "\n".join(c.value for c in app.caption)
    assert "Raw malignant score" in words and "average slice" in words
    numbers = app.dataframe[-1].value
    assert list(numbers.columns) == ["feature", "value on this slice", "push"]
    assert len(numbers) == 8 and not numbers["feature"].str.contains("_").any()  # readable
    pushes = numbers["push"].abs().tolist()
    assert pushes == sorted(pushes, reverse=True)


def test_the_explanation_shows_the_reviewers_mark_beside_the_models_candidate(
    signed_in, seeded
) -> None:
    """Issue 22 item 3: a slice marked by a reviewer is explained with the mark beside the
    candidates, in words: at the model's candidate or elsewhere, or 'no lesion visible'."""
    _, version = train_feature_model(seeded.settings)
    configure_mlflow(seeded.settings).set_registered_model_alias(MODEL, "champion", version)
    first = seeded.image_ids[seeded.high][0]  # the slice the page explains first
    gray = read_gray(RAW / "Malignant cases" / "Malignant case (1).jpg").gray
    largest = nodule_candidates(gray, FeatureModelConfig.tiny().features)[0]
    rows, cols = np.array(largest.outline).T
    engine = db.get_engine(seeded.settings)
    common = {"reviewer": "dr.a", "model_name": MODEL, "model_version": version}
    x, y = float(cols.mean()), float(rows.mean())
    add_mark(engine, image_id=first, kind="lesion", x=x, y=y, radius=40.0, **common)

    def explained() -> tuple[str, list[str]]:
        app = signed_in()
        app.switch_page("views/study.py")
        app.query_params["batch"] = str(seeded.high)
        app.run()
        app.button(key="explain_go").click().run(timeout=120)
        assert not app.exception, app.exception
        captions = [str(c) for image in app.image for c in image.captions]
        (outlined,) = [c for c in captions if "Dense candidates the model measured" in c]
        notes = [str(n.value) for n in [*app.info, *app.warning]]
        return outlined, notes

    outlined, notes = explained()
    assert "blue ring: the reviewer's lesion mark" in outlined
    (said,) = [n for n in notes if "blue ring" in n]
    assert "candidate 1" in said and ("is at the reviewer's marked lesion" in said
                                      or "Outlined candidate 1 is at the mark" in said)  # fmt: skip

    add_mark(engine, image_id=first, kind="no_lesion", **common)  # a correction counts
    outlined, notes = explained()
    assert "blue ring" not in outlined
    assert any("'no lesion visible': they saw no lesion here" in n for n in notes)
