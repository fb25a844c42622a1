"""Model page, Grad-CAM in the study view and "try a scan" with a real registered champion.

The champion is a real (untrained, tiny) Keras network of `lung_model.training.network`, logged with
`mlflow.keras.log_model` and its preprocessing config, registered in a real MLflow store
and given the champion alias: everything the dashboard touches is the real path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dashboard_helpers import MODEL, RAW
from sqlalchemy import text

from lung_model.imaging.preprocess import PreprocessConfig
from lung_model.platform import db

pytestmark = pytest.mark.slow


def register_champion(settings) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from mlflow.models import infer_signature

    from lung_model.platform import registry
    from lung_model.platform.registry import MODEL_ARTIFACT
    from lung_model.platform.tracking import configure_mlflow
    from lung_model.training.network import build_network, calibrated

    client = configure_mlflow(settings)
    preprocess = PreprocessConfig(image_size=32)
    network = calibrated(build_network(32, widths=(4, 8)), temperature=1.5)
    example = np.zeros((1, 32, 32, 1), dtype=np.float32)
    signature = infer_signature(example, np.asarray(network(example)))
    with mlflow.start_run(tags={"data_version": "data-v1"}) as run:
        mlflow.log_metrics({"test_recall_malignant": 0.98, "test_macro_f1": 0.91, "test_ece": 0.04})
        mlflow.log_metrics(  # the acquisition-invariance check (issue 19)
            {
                "test_invariance_smoothed_calls_changed": 0.03,
                "test_invariance_smoothed_normal_as_malignant": 0.04,
                "test_invariance_worst_calls_changed": 0.03,
                "test_invariance_worst_normal_as_malignant": 0.04,
            }
        )
        figure = plt.figure()
        plt.plot([0, 1], [0, 1])
        mlflow.log_figure(figure, "plots/roc.png")
        plt.close(figure)
        mlflow.keras.log_model(
            network,
            name=MODEL_ARTIFACT,
            signature=signature,
            metadata={
                "preprocess": preprocess.to_dict(),
                "data_version": "data-v1",
                "malignant_threshold": 0.2,
                "study_rule": {"statistic": "top3", "malignant_cut": 0.4, "benign_cut": 0.3},
            },
            pip_requirements=["tensorflow-cpu", "keras"],  # no requirement inference: 30 s
        )
    version = registry.register(run.info.run_id, settings)
    client.set_registered_model_alias(settings.model_name, "champion", version)
    client.set_registered_model_alias(settings.model_name, "challenger", version)  # promoted
    with db.get_engine(settings).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO promotion_events (model_name, candidate_version, decision, reason,"
                " actor, candidate_metrics) VALUES (:m, :v, 'promoted', 'first champion: clears"
                " every floor', 'gate', CAST(:metrics AS jsonb))"
            ),
            {"m": settings.model_name, "v": version, "metrics": json.dumps({"macro_f1": 0.91})},
        )
    return version


def test_model_page_gradcam_and_try_a_scan(signed_in, seeded) -> None:
    app = signed_in()
    app.switch_page("views/model.py")
    app.run(timeout=120)
    assert not app.exception, app.exception
    page = "\n".join(str(e.value) for e in (*app.info, *app.caption))
    assert "No champion or challenger yet" in page
    assert "No gate decision recorded yet" in page

    version = register_champion(seeded.settings)
    assert version == "1" and seeded.settings.model_name == MODEL

    app.run(timeout=120)
    assert not app.exception, app.exception
    # the challenger that became champion is one model: shown once, not side by side
    assert [h.value for h in app.subheader][:2] == ["Champion: version 1", "Promotion history"]
    assert "Version 1 passed the safety gate." in [s.value for s in app.success]
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["recall malignant"] == "0.980"
    assert any("roc" in (caption or "") for image in app.image for caption in image.captions)
    history = next(d.value for d in app.dataframe if "what happened" in d.value.columns)
    (sentence,) = history["what happened"]
    assert sentence.endswith(": the gate promoted version 1: first champion: clears every floor.")
    # the metrics behind the chosen decision, as a table (the last with the gate's limits)
    behind = next(d.value for d in reversed(app.dataframe) if "gate" in d.value.columns)
    assert list(behind.columns) == ["metric", "version 1", "gate"]
    floor = seeded.settings.gate_min_macro_f1  # the floor in force, as the gate reads it
    assert behind.set_index("metric").loc["macro-F1", "gate"] == f">= {floor:.2f}"
    assert not any("{" in str(m.value) for m in app.markdown)  # no JSON dumped
    # the invariance check beside the accuracy: in words and per perturbation
    assert any("at most 3% of its test" in str(m.value) for m in app.markdown)
    (checked,) = [d.value for d in app.dataframe if "acquisition" in d.value.columns]
    assert list(checked["acquisition"]) == ["smoothed"]

    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    app.button(key="explain_go").click().run(timeout=120)
    assert not app.exception, app.exception
    assert not app.warning or "unavailable" not in str(app.warning[-1].value)
    captions = [caption for image in app.image for caption in image.captions]
    assert "Grad-CAM for malignant" in captions
    cached = list(Path(seeded.settings.home, "cache", "gradcam").rglob("*.png"))
    assert len(cached) == 1  # computed once, kept for the next look

    # A study scored for real by issue 4's scorer appears in the worklist and study view.
    scored = score_a_study(seeded.settings)
    app.switch_page("views/worklist.py")
    app.run()
    app.segmented_control(key="wl_status").set_value("all")
    app.text_input(key="wl_query").input(scored).run()
    assert list(app.dataframe[0].value["study"]) == [scored]
    app.button(key="wl_open").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value.replace("\\", "") == f"Study {scored}"
    assert len(app.image) >= 3  # thumbnails read from where the scorer archived the study
    assert "Model lung-ct-classifier v1" in "\n".join(c.value for c in app.caption)
    rule = (  # the study rule logged with the model, in words
        "Study verdict: malignant when its 3 most malignant slices at 40% on average; "
        "else benign from 30% benign share."
    )
    assert rule in "\n".join(c.value for c in app.caption)

    app.switch_page("views/try_scan.py")
    app.run()
    before = _predictions(seeded.settings)
    slice_bytes = (RAW / "Bengin cases" / "Bengin case (1).jpg").read_bytes()
    app.file_uploader(key="scan").upload("slice.jpg", slice_bytes, "image/jpeg")
    app.run(timeout=120)
    assert not app.exception, app.exception
    assert {m.label for m in app.metric} == {"Model says"}
    shares = [p.value for p in app.get("progress")]
    assert len(shares) == 3 and abs(sum(shares) - 100) <= 3  # percentages of one distribution
    names = [p.proto.text.split(":")[0] for p in app.get("progress")]
    assert names == ["normal", "benign", "malignant"]
    rule = "Slice verdict: malignant from 20%: recall first"
    assert rule in "\n".join(c.value for c in app.caption)  # why 'malignant' at 20%
    captions = [caption for image in app.image for caption in image.captions]
    assert "What the model saw" in captions
    assert _predictions(seeded.settings) == before  # nothing stored, no study added

    from pydicom.data import get_testdata_file

    ct = Path(str(get_testdata_file("CT_small.dcm", download=False))).read_bytes()
    app.file_uploader(key="scan").upload("ct.dcm", ct, "application/dicom")
    app.run(timeout=120)
    assert not app.exception, app.exception
    assert "dicom, 128x128 px" in "\n".join(c.value for c in app.caption)

    app.file_uploader(key="scan").upload("notes.jpg", b"not an image at all", "image/jpeg")
    app.run()
    assert "cannot be scored" in str(app.error[0].value)


def test_model_page_shows_a_killed_training_as_killed(signed_in, seeded) -> None:
    """A RUNNING run whose process is gone shows as killed, with the reason; a live one as in
    progress."""
    from orphan_helpers import orphaned_run

    from lung_model.platform.orphan_runs import owner_tags
    from lung_model.platform.tracking import configure_mlflow

    client = configure_mlflow(seeded.settings)
    experiment = client.get_experiment_by_name(seeded.settings.experiment).experiment_id
    _, pid = orphaned_run(client, experiment, "train-killed")
    client.create_run(experiment, tags=owner_tags(), run_name="train-live")  # this process

    app = signed_in()
    app.switch_page("views/model.py")
    app.run(timeout=120)
    assert not app.exception, app.exception

    runs = next(d.value for d in app.dataframe if "state" in d.value.columns).set_index("run")
    assert runs.loc["train-live", "state"] == "in progress" and runs.loc["train-live", "why"] == ""
    assert runs.loc["train-killed", "state"] == "killed"
    why = runs.loc["train-killed", "why"]
    assert f"(pid {pid} on host " in why and ") no longer exists; noticed " in why
    assert why.endswith(" by the dashboard's Model page")


def _predictions(settings) -> tuple[int, int]:
    with db.get_engine(settings).connect() as connection:
        return (
            connection.execute(text("SELECT count(*) FROM predictions")).scalar_one(),
            connection.execute(text("SELECT count(*) FROM scan_batches")).scalar_one(),
        )


def score_a_study(settings) -> str:
    """Drop three real slices into the inbox and score them with the champion."""
    from lung_model.scoring.engine import Scorer
    from lung_model.scoring.inference import load_model

    folder = settings.inbox / "scored-for-real"
    folder.mkdir(parents=True)
    for index, name in enumerate(["Malignant cases/Malignant case (2).jpg",
                                  "Bengin cases/Bengin case (2).jpg",
                                  "Normal cases/Normal case (2).jpg"]):  # fmt: skip
        (folder / f"{index}.jpg").write_bytes((RAW / name).read_bytes())
    (folder / settings.ready_marker).touch()
    summary = Scorer(load_model(settings), db.get_engine(settings), settings, workers=1)
    result = summary.score_claimed(folder)
    assert result.batch_id, result
    return folder.name
