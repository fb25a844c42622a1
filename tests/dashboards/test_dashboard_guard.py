"""The acquisition guard on the pages (issue 19, item 4): a study unlike the scans its model
learned from is marked on the worklist, explained on the Study page (which measurement, how
far, which slices) and counted on Operations; studies of unguarded models are not."""

from __future__ import annotations

import json

from dashboard_helpers import seed_study
from sqlalchemy import text

from lung_model.platform import db
from lung_model.scoring.guard import Deviation

NOISE = Deviation("noise", "below", 0.002, 0.004, 0.009, 1, 2)
ALLOWED = {"noise": [0.004, 0.009], "rows": [512.0, 512.0]}


def guard_study(settings, name: str) -> int:
    """A seeded study scored by a guarded model: one of its two slices is too smooth."""
    batch, images = seed_study(settings, name, [0.9, 0.2])
    with db.get_engine(settings).begin() as connection:
        connection.execute(
            text(
                "UPDATE study_results SET acquisition_range = CAST(:allowed AS jsonb),"
                " acquisition_outside = CAST(:outside AS jsonb) WHERE batch_id = :b"
            ),
            {"b": batch, "allowed": json.dumps(ALLOWED), "outside": json.dumps([NOISE.as_dict()])},
        )
        for image, noise in zip(images, (0.002, 0.006), strict=True):
            connection.execute(
                text("UPDATE images SET acquisition = CAST(:a AS jsonb) WHERE id = :i"),
                {"i": image, "a": json.dumps({"noise": noise, "rows": 512.0})},
            )
    return batch


def test_a_study_unlike_training_is_marked_explained_and_counted(signed_in, seeded) -> None:
    batch = guard_study(seeded.settings, "study-unlike")
    app = signed_in()
    app.text_input(key="wl_query").input(str(batch)).run()
    [row] = app.dataframe[0].value.to_dict("records")
    assert row["unlike training"] == "pixel noise below"
    assert any("unlike training:" in c.value for c in app.caption)
    app.text_input(key="wl_query").input(str(seeded.high)).run()
    assert app.dataframe[0].value.iloc[0]["unlike training"] == ""  # an unguarded model

    app.switch_page("views/study.py")
    app.query_params["batch"] = str(batch)
    app.run()
    assert not app.exception, app.exception
    [warning] = [w.value for w in app.warning if "unlike the scans" in w.value]
    assert NOISE.describe() in warning.replace("\\", "")
    captions = [c.value for c in app.caption]
    assert sum("outside the training range: pixel noise" in c for c in captions) == 1

    app.switch_page("views/operations.py")
    app.run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    unlike, guarded = (int(n) for n in metrics["Studies unlike training"].split(" of "))
    assert 1 <= unlike <= guarded
    tables = [t.value for t in app.dataframe]
    assert any("outside on" in t.columns and "pixel noise below" in set(t["outside on"])
               for t in tables)  # fmt: skip
    assert any("unlike in" in t.columns and batch in set(t["batch_id"]) for t in tables)


def test_calls_that_another_export_changes_are_shown_in_words_and_counted(
    signed_in, seeded
) -> None:
    """Issue 22 item 4: a study whose call another export changes on one of its two checked
    slices says so on the worklist, on the Study page (and on that slice), and is counted on
    Operations."""
    batch, _ = seed_study(seeded.settings, "study-sensitive", [0.8, 0.3])
    stored = {"perturbations": ["smoothed", "narrower_window"], "n_slices": 2,
              "changed": {"slice-01.jpg": ["smoothed", "narrower_window"]}}  # fmt: skip
    with db.get_engine(seeded.settings).begin() as connection:
        connection.execute(
            text(
                "UPDATE study_results SET acquisition_sensitivity = CAST(:s AS jsonb),"
                " sensitivity_share = 0.5 WHERE batch_id = :b"
            ),
            {"b": batch, "s": json.dumps(stored)},
        )
    app = signed_in()
    app.text_input(key="wl_query").input(str(batch)).run()
    [row] = app.dataframe[0].value.to_dict("records")
    assert row["calls change under another export"] == "1 of 2 slices"
    assert any("calls change under another export:" in c.value for c in app.caption)
    app.text_input(key="wl_query").input(str(seeded.high)).run()
    assert app.dataframe[0].value.iloc[0]["calls change under another export"] == ""

    app.switch_page("views/study.py")
    app.query_params["batch"] = str(batch)
    app.run()
    assert not app.exception, app.exception
    words = "calls change under another export on 1 of 2 slices (smoothed 1, narrower window 1)"
    assert any(words in w.value for w in app.warning)
    captions = [c.value for c in app.caption]
    changed = [c for c in captions if "call changes under another export" in c]
    assert len(changed) == 1 and "slice-01.jpg" in changed[0].replace("\\", "")
    assert "smoothed, narrower window" in changed[0]

    app.switch_page("views/operations.py")
    app.run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    sensitive, checked = (
        int(n) for n in metrics["Studies whose calls hang on the export"].split(" of ")
    )
    assert 1 <= sensitive <= checked
    with db.get_engine(seeded.settings).begin() as connection:  # 1 of 10: told, not warned
        calmer = {**stored, "n_slices": 10}
        connection.execute(
            text(
                "UPDATE study_results SET acquisition_sensitivity = CAST(:s AS jsonb),"
                " sensitivity_share = 0.1 WHERE batch_id = :b"
            ),
            {"b": batch, "s": json.dumps(calmer)},
        )
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(batch)
    app.run()
    assert not any("another export" in w.value for w in app.warning)
    assert any("on 1 of 10 slices" in i.value for i in app.info)
