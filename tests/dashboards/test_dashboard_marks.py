"""Lesion marks on slices (issue 22 item 1): append-only, the newest mark of a slice counts, the
dashboard role may only add them, a click on the shown slice maps to the slice's own pixels,
and the Study page records 'no lesion visible' and shows marks again when reopened."""

from __future__ import annotations

import pytest
from dashboard_helpers import RAW, USER
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lung_model.platform import db
from lung_model.review.database import dashboard_engine
from lung_model.review.marks import add_mark, click_to_mark, current_marks, marked_slice


def test_the_newest_mark_of_a_slice_counts_and_every_one_stays(seeded) -> None:
    engine = dashboard_engine(seeded.settings)  # as the dashboard writes them
    first, second = seeded.image_ids[seeded.high][:2]
    common = {"reviewer": USER, "model_name": "m", "model_version": "1"}
    add_mark(engine, image_id=first, kind="lesion", x=200, y=310, **common)
    add_mark(engine, image_id=first, kind="lesion", x=210.5, y=300, radius=24, **common)
    add_mark(engine, image_id=second, kind="no_lesion", x=5, y=5, **common)  # point dropped
    marks = current_marks(engine, seeded.high)
    assert set(marks) == {first, second}
    assert (marks[first]["x"], marks[first]["y"], marks[first]["radius"]) == (210.5, 300, 24)
    assert (marks[second]["kind"], marks[second]["x"]) == ("no_lesion", None)
    assert marks[first]["reviewer"] == USER and marks[first]["model_version"] == "1"

    add_mark(engine, image_id=second, kind="withdrawn", **common)
    assert set(current_marks(engine, seeded.high)) == {first}
    with db.get_engine(seeded.settings).connect() as owner:
        kept = owner.execute(
            text("SELECT count(*) FROM review_marks WHERE image_id = ANY(:ids)"),
            {"ids": [first, second]},
        ).scalar_one()
    assert kept == 4  # corrections are new rows; nothing was overwritten


def test_a_mark_needs_a_reviewer_a_kind_and_a_centre() -> None:
    for bad in (
        {"reviewer": "", "kind": "lesion", "x": 1, "y": 1},
        {"reviewer": USER, "kind": "maybe"},
        {"reviewer": USER, "kind": "lesion"},
    ):
        with pytest.raises(ValueError):
            add_mark(None, image_id=1, **bad)  # type: ignore[arg-type]


def test_a_lesion_outside_the_slice_is_refused(seeded) -> None:
    image = seeded.image_ids[seeded.low][0]
    with db.get_engine(seeded.settings).begin() as owner:
        owner.execute(
            text("UPDATE images SET width = 512, height = 512 WHERE id = :i"), {"i": image}
        )
    with pytest.raises(ValueError, match="outside the 512x512 slice"):
        add_mark(
            dashboard_engine(seeded.settings), image_id=image, reviewer=USER, kind="lesion",
            x=512, y=10,
        )  # fmt: skip


def test_no_one_can_change_or_erase_a_mark(seeded) -> None:
    """The dashboard role may only add marks; not even the owner may update or delete one."""
    image = seeded.image_ids[seeded.low][0]
    add_mark(dashboard_engine(seeded.settings), image_id=image, reviewer=USER, kind="no_lesion")
    for statement in ("UPDATE review_marks SET x = 0", "DELETE FROM review_marks",
                      "TRUNCATE review_marks"):  # fmt: skip
        with pytest.raises(DBAPIError), dashboard_engine(seeded.settings).begin() as connection:
            connection.execute(text(statement))
    owner = db.get_engine(seeded.settings)
    for statement in ("UPDATE review_marks SET reviewer = 'x'", "DELETE FROM review_marks"):
        with pytest.raises(DBAPIError, match="append-only"), owner.begin() as connection:
            connection.execute(text(statement))


def test_a_click_or_a_drag_on_the_shown_slice_is_a_point_in_the_slices_pixels() -> None:
    shown = {"width": 256, "height": 256, "unix_time": 1}
    assert click_to_mark({**shown, "x": 64, "y": 128}, 512, 512) == (128.0, 256.0, None)
    click = {**shown, "x1": 64, "y1": 128, "x2": 65, "y2": 129}  # a click, the hand shook
    assert click_to_mark(click, 512, 512) == (128.0, 256.0, None)
    drag = {**shown, "x1": 64, "y1": 128, "x2": 64, "y2": 138}  # centre to edge: 10 px shown
    assert click_to_mark(drag, 512, 512) == (128.0, 256.0, 20.0)
    outside = {**shown, "x1": 255.9, "y1": 0, "x2": 300, "y2": -40}  # released off the image
    x, y, radius = click_to_mark(outside, 801, 512)
    assert x <= 800 and y == 0 and radius is not None


def test_the_marked_slice_is_the_slice_at_full_size_with_a_red_ring() -> None:
    path = RAW / "Malignant cases" / "Malignant case (1).jpg"
    plain = marked_slice(path, None)
    ringed = marked_slice(path, {"kind": "lesion", "x": 100, "y": 100, "radius": 30})
    assert plain.size == ringed.size == (512, 512)
    red = ringed.getpixel((130, 100))
    assert red[0] > 200 and red[1] < 80  # on the ring
    assert plain.getpixel((130, 100))[0] == plain.getpixel((130, 100))[1]  # gray


def test_the_study_page_records_no_lesion_and_shows_marks_when_reopened(signed_in, seeded) -> None:
    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    riskiest = seeded.image_ids[seeded.high][0]
    assert "not marked" in [m.value.strip("*") for m in app.markdown]
    app.button(key=f"no_lesion_{riskiest}").click().run()
    assert not app.exception, app.exception
    assert "Mark recorded: no lesion visible." in [s.value for s in app.success]
    marks = current_marks(db.get_engine(seeded.settings), seeded.high)
    assert marks[riskiest]["kind"] == "no_lesion" and marks[riskiest]["reviewer"] == USER

    again = signed_in()  # a new session opening the study shows the mark
    again.switch_page("views/study.py")
    again.query_params["batch"] = str(seeded.high)
    again.run()
    assert "no lesion visible" in [m.value.strip("*") for m in again.markdown]
    assert any("marked: no lesion visible" in c.value for c in again.caption)
    again.button(key=f"withdraw_{riskiest}").click().run()
    assert riskiest not in current_marks(db.get_engine(seeded.settings), seeded.high)


def test_the_model_page_says_what_the_next_training_can_use_and_the_last_used(
    signed_in, seeded
) -> None:
    """Issue 22 item 4: marks of reviewed studies count for the next training (a study not
    reviewed yet, a withdrawn mark do not); the last training run's logged counts are shown."""
    from lung_model.platform.tracking import configure_mlflow
    from lung_model.review.marks import marks_for_training
    from lung_model.review.reviews import add_review

    engine = dashboard_engine(seeded.settings)
    before = marks_for_training(engine)
    high, low = seeded.image_ids[seeded.high], seeded.image_ids[seeded.low]
    add_mark(engine, image_id=high[0], reviewer=USER, kind="lesion", x=10, y=10)
    add_mark(engine, image_id=high[1], reviewer=USER, kind="no_lesion")
    add_mark(engine, image_id=high[2], reviewer=USER, kind="no_lesion")
    add_mark(engine, image_id=high[2], reviewer=USER, kind="withdrawn")
    add_mark(engine, image_id=low[0], reviewer=USER, kind="no_lesion")  # study not reviewed
    assert marks_for_training(engine) == before
    add_review(
        engine, batch_id=seeded.high, reviewer=USER, label="malignant",
        predicted_class="malignant", model_name="m", model_version="1",
    )  # fmt: skip
    now = marks_for_training(engine)
    assert (now["slices"] - before["slices"], now["studies"] - before["studies"]) == (2, 1)

    client = configure_mlflow(seeded.settings)
    experiment = client.get_experiment_by_name(seeded.settings.experiment).experiment_id
    run = client.create_run(experiment, run_name="train-with-marks")
    client.log_metric(run.info.run_id, "marked_slices", 41)
    client.log_metric(run.info.run_id, "marked_studies", 6)
    client.set_terminated(run.info.run_id)

    app = signed_in()
    app.switch_page("views/model.py")
    app.run(timeout=120)
    assert not app.exception, app.exception
    text_shown = "\n".join(m.value for m in app.markdown)
    assert f"**{now['slices']} marked slices** in **{now['studies']} reviewed studies**" in (
        text_shown
    )
    assert "used **41 marked slices** in **6 studies**" in text_shown
