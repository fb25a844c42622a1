"""The study view explains a feature-family champion's slice (issue 12, item 3): the nodule
candidates it measured, outlined, and the features that pushed the slice's score, where a
CNN shows Grad-CAM. The champion is a real tiny feature model trained by the training job."""

from __future__ import annotations

import pytest
from dashboard_helpers import MODEL
from tiny_models import train_feature_model

from lung_model.platform.tracking import configure_mlflow

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
