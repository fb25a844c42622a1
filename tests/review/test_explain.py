"""Explanations of a lung-field feature model (issue 12, item 3) with a real tiny model:
the candidates it measured lie on the slice, and the feature pushes add up to its score."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from candidate_points import inside
from sqlalchemy import text
from tiny_models import FEATURE_RUN, FIXTURE_DATA, TrainedRun

from lung_model.imaging.features import Candidate, nodule_candidates
from lung_model.imaging.images import read_gray
from lung_model.platform.db import get_engine
from lung_model.review.explain import (
    LESION,
    REVIEWER_COLOUR,
    TEXTURE,
    TOP_CANDIDATES,
    TOP_FEATURES,
    MarkReading,
    explain_features,
    explain_features_file,
    mark_point,
    outline_candidates,
    read_mark,
    read_pushes,
    readable_feature,
)
from lung_model.review.marks import add_mark, current_marks
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


NAMES = ["nod_largest", "nod_top3", "log_s1.5_max", "int_mean", "glcm_contrast_d1", "lbp_3"]
ONE = [Candidate(0.012, (10, 20, 10, 20), ((10.0, 10.0), (19.0, 10.0), (19.0, 19.0)))]


def test_a_call_resting_on_the_nodule_features_names_the_candidate() -> None:
    reading = read_pushes(NAMES, np.array([1.2, 0.4, 0.2, 0.1, 0.1, -0.5]), ONE, "malignant")
    assert reading.driver == 1
    assert reading.shares[LESION] == pytest.approx(0.8)  # of the pushes up: negatives aside
    assert reading.text == (
        "Lesion candidate 1 (outlined thicker, 1% of the lung field) drives this malignant"
        " score: the nodule-candidate features measure it (nodule candidates 80%, blob"
        " responses 10%, whole-slice texture and intensity 10% of what pushes it up)."
    )


def test_a_call_resting_on_texture_says_so_plainly() -> None:
    reading = read_pushes(NAMES, np.array([0.3, 0.0, 0.1, 0.4, 0.8, 0.4]), ONE, "malignant")
    assert reading.shares[TEXTURE] == pytest.approx(0.8) and reading.driver is None
    assert reading.text.startswith(
        "This malignant score rests mostly on whole-slice texture and intensity, not on a lesion"
        " (nodule candidates 15%, blob responses 5%, whole-slice texture and intensity 80%"
    )
    assert "follow how a scan was exported" in reading.text
    weak = read_pushes(NAMES, np.array([0.1, 0.0, 0.5, 0.2, 0.1, 0.1]), ONE, "malignant")
    assert weak.driver is None and weak.text.startswith("No single lesion candidate drives")
    assert read_pushes(NAMES, np.array([0.9, 0.0, 0, 0, 0, 0]), [], "benign").driver is None
    down = read_pushes(NAMES, -np.ones(6), ONE, "malignant")
    assert (
        down.driver is None and "Nothing on this slice pushes its malignant score up" in down.text
    )


def test_the_explanation_reads_the_models_own_pushes(model: LoadedModel) -> None:
    why = explain_features_file(model, SLICE, "malignant")
    x = model.prepare_file(SLICE)
    pushes = model.network.contributions(x, "malignant")[:-1]
    names = model.network.feature_names
    up = np.clip(pushes, 0, None)
    nodules = sum(p for n, p in zip(names, up, strict=True) if n.startswith("nod_"))
    assert why.reading.shares[LESION] == pytest.approx(nodules / up.sum())
    assert sum(why.reading.shares.values()) == pytest.approx(1.0)
    assert why.reading == read_pushes(names, pushes, why.candidates, "malignant")
    if why.reading.driver:  # drawn twice as thick as the other outlines
        plain = outline_candidates(read_gray(SLICE).gray, why.candidates)
        assert (np.abs(why.outlined.astype(int) - plain).sum(axis=2) > 0).sum() > 0


@pytest.fixture(scope="module")
def found(model: LoadedModel) -> list[Candidate]:
    return nodule_candidates(read_gray(SLICE).gray, model.network.features)[:TOP_CANDIDATES]


def lesion(x: float, y: float, radius: float | None = None) -> dict:
    return {"kind": "lesion", "x": x, "y": y, "radius": radius}


def read(
    model: LoadedModel,
    mark: dict,
    driver: int | None,
    size: tuple[int, int] = (512, 512),
    spacing: tuple[float, float] | None = None,
) -> MarkReading:
    """`read_mark` of SLICE (512 x 512) against its largest candidates measured from `mark`."""
    point = mark_point(mark, (512, 512), size)
    measured = nodule_candidates(read_gray(SLICE).gray, model.network.features, point)
    return read_mark(mark, measured[:TOP_CANDIDATES], driver, (512, 512), size, spacing)


def test_a_driver_on_the_marked_lesion_is_said_to_be_at_it(
    model: LoadedModel, found: list[Candidate]
) -> None:
    x, y = inside(found[0])
    reading = read(model, lesion(x, y), 1)
    assert reading.driver_at_mark is True and reading.at_mark == 1
    assert reading.distance_px == 0.0 and reading.distance_mm is None
    assert reading.text == (
        "The model's driving candidate 1 is at the reviewer's marked lesion (blue ring):"
        " 0 px from the marked centre."
    )


def test_a_driver_away_from_the_mark_is_said_to_be_elsewhere_with_the_distance(
    model: LoadedModel, found: list[Candidate]
) -> None:
    other = next(n for n, c in enumerate(found[1:], start=2) if c.share >= 0.002)
    x, y = inside(found[other - 1])
    reading = read(model, lesion(x, y, 6.0), 1, spacing=(0.7, 0.7))
    outline = np.array(found[0].outline)
    to_outline = float(np.hypot(outline[:, 0] - y, outline[:, 1] - x).min())
    measured = reading.distance_px
    assert reading.driver_at_mark is False and reading.at_mark == other
    # to the candidate's pixels: its outline, within a crop pixel (~2.7 slice px here)
    assert measured == pytest.approx(to_outline, abs=3.0) and measured > 6.0
    assert reading.distance_mm == pytest.approx(0.7 * measured)
    assert reading.text == (
        f"The model's driving candidate 1 is elsewhere: {measured:.0f} px ({0.7 * measured:.1f}"
        f" mm) from the reviewer's marked lesion (blue ring). Outlined candidate {other} is at"
        " the mark."
    )
    nowhere = read(model, lesion(3.0, 3.0, 2.0), 1)
    assert nowhere.at_mark is None and nowhere.driver_at_mark is False
    assert nowhere.text.endswith("None of the outlined candidates is at the mark.")
    undriven = read(model, lesion(x, y), None)
    assert undriven.distance_px is None and undriven.driver_at_mark is None
    assert "no single candidate drives the score" in undriven.text


def test_a_mark_on_a_larger_slice_is_moved_and_measured_in_the_slices_pixels(
    model: LoadedModel, found: list[Candidate]
) -> None:
    """The explained image may be decoded smaller than the slice the reviewer marked."""
    x, y = inside(found[0])
    far = read(model, lesion(2 * x + 80, 2 * y, 4.0), 1, size=(1024, 1024))
    assert far.point is not None and far.point.x == pytest.approx(x + 40)
    assert far.point.radius == pytest.approx(2.0)
    near = read(model, lesion(x + 40, y, 2.0), 1)
    assert far.distance_px == pytest.approx(2 * near.distance_px)  # type: ignore[operator]


def test_a_smaller_candidate_at_the_mark_is_outlined_too(model: LoadedModel) -> None:
    gray = read_gray(SLICE).gray
    every = nodule_candidates(gray, model.network.features)
    assert len(every) > TOP_CANDIDATES  # this slice has smaller candidates than those shown
    small = every[TOP_CANDIDATES]
    why = explain_features(model, gray, mark=lesion(*inside(small), 1.0))
    assert why.mark is not None and why.mark.at_mark == TOP_CANDIDATES + 1
    assert [c.share for c in why.candidates] == [c.share for c in every[: TOP_CANDIDATES + 1]]


def test_a_slice_marked_without_a_lesion_says_the_reviewer_saw_none(
    found: list[Candidate],
) -> None:
    empty = {"kind": "no_lesion", "x": None, "y": None, "radius": None}
    reading = read_mark(empty, found, 1, (512, 512), (512, 512))  # nothing to measure from
    assert reading.point is None and reading.distance_px is None
    assert reading.driver_at_mark is False  # the model's candidate is no marked lesion
    assert reading.text == (
        "A reviewer marked this slice 'no lesion visible': they saw no lesion here. The"
        " model's score rests on candidate 1 all the same."
    )
    undriven = read_mark(empty, found, None, (512, 512), (512, 512))
    assert undriven.text.endswith("no lesion here.") and undriven.driver_at_mark is None


def _marked_slice(settings, kind: str, x=None, y=None, radius=None) -> dict:
    """A reviewer's counting mark of SLICE, saved and read back through the real database."""
    engine = get_engine(settings)
    with engine.begin() as connection:
        batch = connection.execute(
            text("INSERT INTO scan_batches (study, source_path) VALUES (:s, '/in') RETURNING id"),
            {"s": f"explain-{uuid.uuid4().hex[:8]}"},
        ).scalar_one()
        image = connection.execute(
            text(
                "INSERT INTO images (batch_id, path, sha256, status, width, height)"
                " VALUES (:b, :p, :sha, 'scored', 512, 512) RETURNING id"
            ),
            {"b": batch, "p": SLICE.name, "sha": uuid.uuid4().hex * 2},
        ).scalar_one()
    add_mark(engine, image_id=image, reviewer="dr.a", kind="no_lesion")  # then corrected
    add_mark(engine, image_id=image, reviewer="dr.a", kind=kind, x=x, y=y, radius=radius)
    return current_marks(engine, batch)[image]


def test_the_explanation_shows_the_reviewers_saved_mark_beside_the_candidates(
    model: LoadedModel, found: list[Candidate], settings
) -> None:
    x, y = inside(found[0])
    mark = _marked_slice(settings, "lesion", x, y, 20.0)
    why = explain_features_file(model, SLICE, "malignant", mark=mark)
    plain = explain_features_file(model, SLICE, "malignant")
    assert why.mark == read_mark(mark, why.candidates, why.reading.driver, (512, 512), (512, 512))
    assert why.mark is not None and why.mark.at_mark == 1
    driver = why.reading.driver  # None: no single candidate drives the score
    assert why.mark.driver_at_mark is (None if driver is None else driver == 1)
    assert why.reading == plain.reading and why.top == plain.top  # the mark explains nothing away
    changed = np.abs(why.outlined.astype(int) - plain.outlined).sum(axis=2) > 0
    rows, cols = np.nonzero(changed)
    assert np.hypot(rows - y, cols - x).max() <= 20.0 + 6  # the ring and cross, at the mark
    drawn = why.outlined[changed].astype(int)
    assert (np.abs(drawn - REVIEWER_COLOUR).sum(axis=1) < 30).mean() > 0.5

    empty = _marked_slice(settings, "no_lesion")
    none = explain_features_file(model, SLICE, "malignant", mark=empty)
    assert none.mark is not None and "they saw no lesion here" in none.mark.text
    assert np.array_equal(none.outlined, plain.outlined)  # nothing to draw
