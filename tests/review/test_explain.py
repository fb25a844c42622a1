"""Explanations of a lung-field feature model (issue 12, item 3) with a real tiny model:
the candidates it measured lie on the slice, and the feature pushes add up to its score."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from tiny_models import FEATURE_RUN, FIXTURE_DATA, TrainedRun

from lung_model.imaging.features import nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.review.explain import (
    TOP_CANDIDATES,
    TOP_FEATURES,
    explain_features,
    explain_features_file,
    readable_feature,
)
from lung_model.review.try_scan import try_scan
from lung_model.scoring.inference import LoadedModel
from lung_model.settings import CLASSES

pytestmark = pytest.mark.slow
SLICE = FIXTURE_DATA / "Malignant cases" / "Malignant case (3).jpg"


@pytest.fixture(scope="module")
def model(feature_run: TrainedRun, pg_url: str) -> LoadedModel:
    settings = feature_run.settings(pg_url, FEATURE_RUN)
    return LoadedModel.load(settings, f"models:/{FEATURE_RUN}/1")


def test_feature_names_read_as_words() -> None:
    assert readable_feature("glcm_homogeneity_d1") == "GLCM homogeneity, distance 1"
    assert readable_feature("log_s1.5_p99") == "blob response (LoG, sigma 1.5 px), 99th percentile"
    assert readable_feature("int_p1") == "lung-field intensity, 1st percentile"
    assert readable_feature("nod_n0.005") == "dense candidates over 0.5% of lung field, count"
    assert readable_feature("lbp_3") == "LBP: uniform, 3 of 8 neighbours as bright"
    assert readable_feature("something_new") == "something_new"


def test_candidates_are_outlined_on_the_slice(model: LoadedModel) -> None:
    gray = read_gray(SLICE).gray
    why = explain_features(model, gray)
    measured = nodule_candidates(gray, model.network.features)
    assert 0 < len(why.candidates) <= TOP_CANDIDATES
    assert why.candidates == measured[: len(why.candidates)]  # the largest, largest first
    height, width = gray.shape
    assert why.outlined.shape == (height, width, 3) and why.outlined.dtype == np.uint8
    for candidate in why.candidates:
        top, bottom, left, right = candidate.box
        assert 0 <= top < bottom <= height and 0 <= left < right <= width
        rows, cols = np.array(candidate.outline).T
        assert rows.min() >= top and rows.max() < bottom
        assert cols.min() >= left and cols.max() < right
    largest = why.candidates[0]
    assert largest.share == max(c.share for c in measured) > 0.01  # the mass of this slice
    r, c = (round(v) for v in largest.outline[0])
    near = why.outlined[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2].reshape(-1, 3).astype(int)
    red, green, blue = near.T  # the line is 2 px wide around sub-pixel vertices
    assert ((red > green + 100) & (red > blue + 100)).any()  # drawn over the slice, not beside
    untouched = why.outlined[0, 0]
    assert untouched[0] == untouched[1] == untouched[2]  # elsewhere, the gray slice


@pytest.mark.parametrize("class_name", CLASSES)
def test_the_pushes_add_up_to_the_slices_raw_score(model: LoadedModel, class_name: str) -> None:
    why = explain_features_file(model, SLICE, class_name)
    x = model.prepare_file(SLICE)
    raw = model.network.logits(x[None, :])[0, CLASSES.index(class_name)]
    assert why.raw_score == pytest.approx(raw, abs=1e-6)  # exact TreeSHAP
    shown = sum(c.contribution for c in why.top)
    assert why.expected_value + shown + why.others == pytest.approx(raw, abs=1e-6)
    assert len(why.top) == TOP_FEATURES
    strengths = [abs(c.contribution) for c in why.top]
    assert strengths == sorted(strengths, reverse=True)
    everything = model.network.contributions(x, class_name)[:-1]
    assert strengths[0] == pytest.approx(np.abs(everything).max())
    names = model.network.feature_names
    assert all(c.value == pytest.approx(x[names.index(c.feature)]) for c in why.top)


def test_try_a_scan_explains_a_feature_model_without_grad_cam(model: LoadedModel) -> None:
    verdict = try_scan(SLICE.read_bytes(), model)
    assert verdict.gradcam is None and verdict.features is not None
    assert verdict.features.class_name == "malignant"
    assert verdict.model_input.shape == model.input_shape  # the feature vector it scored
    with pytest.raises(TypeError, match="feature model"):
        explain_features(SimpleNamespace(family="cnn"), read_gray(SLICE).gray)  # type: ignore[arg-type]
