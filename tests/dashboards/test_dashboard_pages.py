"""Each page against the real PostgreSQL with seeded studies, through streamlit.testing."""

from __future__ import annotations

import pandas as pd
from dashboard_helpers import USER, stored_reviews


def _texts(app) -> str:
    parts = [*app.markdown, *app.caption, *app.title, *app.info, *app.error, *app.warning]
    parts += [*app.success, *app.subheader]
    return "\n".join(str(e.value) for e in parts).replace("\\", "")  # Markdown escapes


def test_worklist_orders_by_risk_and_filters(signed_in, seeded) -> None:
    app = signed_in()
    table: pd.DataFrame = app.dataframe[0].value
    while seeded.low not in set(table["batch"]) and not app.button(key="wl_next").disabled:
        app.button(key="wl_next").click().run()  # other tests' studies fill the first pages
        table = pd.concat([table, app.dataframe[0].value])
    ours = table[table["batch"].isin([seeded.high, seeded.uncertain, seeded.low])]
    assert list(ours["batch"]) == [seeded.high, seeded.uncertain, seeded.low]
    assert list(ours["risk"]) == sorted(ours["risk"], reverse=True)

    app = signed_in()  # back on page 1
    app.segmented_control(key="wl_status").set_value("uncertain").run()
    uncertain = app.dataframe[0].value
    assert seeded.uncertain in set(uncertain["batch"])
    assert seeded.high not in set(uncertain["batch"])

    app.segmented_control(key="wl_status").set_value("all").run()
    app.text_input(key="wl_query").input(str(seeded.low)).run()
    assert list(app.dataframe[0].value["batch"]) == [seeded.low]


def test_study_view_shows_slices_lineage_and_flag(signed_in, seeded) -> None:
    app = signed_in()
    app.text_input(key="wl_query").input(str(seeded.uncertain)).run()  # not on page 1 maybe
    app.selectbox(key="wl_pick").set_value(seeded.uncertain)
    app.button(key="wl_open").click().run()
    assert not app.exception, app.exception
    assert app.title[0].value.replace("\\", "").startswith("Study study-mid-")
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Model says"] == "malignant"
    assert metrics["Slices over threshold"] == "1 / 2"
    page = _texts(app)
    assert "data version `data-v1`" in page
    assert "uncertain" in page
    assert "slice-00.jpg" in page
    assert "normal 22.5% · benign 22.5% · malignant 55.0%" in page  # one order everywhere
    assert len(app.image) >= 2  # thumbnails rendered from the archived files


def test_quarantined_files_are_listed_once_per_reason_below_the_slices(signed_in, seeded) -> None:
    from sqlalchemy import text

    from lung_model.platform import db

    second = "another reconstruction of this study (series 2): only series 3 is scored"
    quarantined = [("s2-01.dcm", second), ("s2-02.dcm", second), ("scout.dcm", "a scout")]
    with db.get_engine(seeded.settings).begin() as connection:
        for path, reason in quarantined:
            connection.execute(
                text(
                    "INSERT INTO images (batch_id, path, status, reason)"
                    " VALUES (:b, :p, 'quarantined', :r)"
                ),
                {"b": seeded.uncertain, "p": path, "r": reason},
            )
    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.uncertain)
    app.run()
    assert not app.exception, app.exception
    assert [str(h.value) for h in app.subheader if "Slices" in str(h.value)] == ["Slices (2)"]
    warnings = [str(w.value).replace("\\", "") for w in app.warning if "quarantined" in w.value]
    assert warnings == [
        f"2 files quarantined, not scored: {second}",
        "1 file quarantined, not scored: a scout",
    ]
    assert "s2-01.dcm, s2-02.dcm" in _texts(app)


def test_a_study_scored_again_whole_leaves_the_worklist_and_says_so(signed_in, seeded) -> None:
    from sqlalchemy import text

    from lung_model.platform import db
    from lung_model.scoring.store import supersede

    supersede(db.get_engine(seeded.settings), [seeded.low], seeded.high)
    with db.get_engine(seeded.settings).connect() as connection:
        listed = connection.execute(text("SELECT batch_id FROM worklist_entries")).scalars()
        assert seeded.low not in set(listed)
    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.low)
    app.run()
    assert not app.exception, app.exception
    assert f"More of this study arrived after it was scored: batch {seeded.high} scored" in (
        _texts(app)
    )


def test_review_is_appended_with_the_signed_in_reviewer(signed_in, seeded) -> None:
    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    label, comment = f"study_{seeded.high}_label", f"study_{seeded.high}_comment"
    assert app.radio(key=label).value is None  # not the model's answer: a decision to make
    app.button[0].click().run()
    assert "Choose a label: nothing was recorded." in [e.value for e in app.error]
    assert stored_reviews(seeded.settings, seeded.high) == []
    app.radio(key=label).set_value("benign")
    app.text_area(key=comment).input("nodule is calcified")
    app.button[0].click().run()  # the study form's submit button comes first
    assert not app.exception, app.exception
    assert "recorded: benign" in _texts(app)
    assert app.radio(key=label).value == "benign"  # the reviewer's choice, not the model's
    assert app.text_area(key=comment).value == ""  # ready for the next note
    assert "Reviewed as **benign** by alice" in "\n".join(i.value for i in app.info)

    again = signed_in()  # a new session opening the study starts from the review too
    again.switch_page("views/study.py")
    again.query_params["batch"] = str(seeded.high)
    again.run()
    assert again.radio(key=label).value == "benign"

    app.radio(key=label).set_value("malignant")
    app.button[0].click().run()

    assert [row[1:] for row in stored_reviews(seeded.settings, seeded.high)] == [
        (USER, "correct", "benign", "nodule is calcified", "1"),
        (USER, "confirm", None, None, "1"),
    ]
    history = app.dataframe[-1].value
    assert len(history) == 2  # both kept; the newest comes first and counts

    app.switch_page("views/worklist.py")
    app.run()
    app.segmented_control(key="wl_status").set_value("reviewed").run()
    reviewed = app.dataframe[0].value
    row = reviewed[reviewed["batch"] == seeded.high].iloc[0]
    assert row["reviewed as"] == "malignant" and row["reviewer"] == USER


def test_slice_review_and_disagreement_filter(signed_in, seeded) -> None:
    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.low)
    app.run()
    form = f"slice_{seeded.image_ids[seeded.low][0]}"  # the riskiest slice comes first
    assert app.radio(key=f"{form}_label").value is None
    app.radio(key=f"{form}_label").set_value("malignant")
    app.text_area(key=f"{form}_comment").input("missed lesion")
    app.button(key=f"FormSubmitter:{form}-review-Submit slice review").click().run()
    assert not app.exception, app.exception
    assert app.radio(key=f"{form}_label").value == "malignant"
    app.radio(key=f"study_{seeded.low}_label").set_value("malignant")
    app.button[0].click().run()
    slice_reviews = stored_reviews(seeded.settings, seeded.low, slices=True)
    assert [row[3] for row in slice_reviews] == ["malignant"]
    assert slice_reviews[0][0] in seeded.image_ids[seeded.low]

    app.switch_page("views/worklist.py")
    app.run()
    app.segmented_control(key="wl_status").set_value("disagreement").run()
    assert seeded.low in set(app.dataframe[0].value["batch"])
    assert seeded.high not in set(app.dataframe[0].value["batch"])


def test_operations_page(signed_in, seeded) -> None:
    app = signed_in()
    app.switch_page("views/operations.py")
    app.run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert int(metrics["Done"]) >= 3 and int(metrics["Slices scored"]) >= 7
    assert float(metrics["Slices/s (24 h)"]) > 0  # seeded batches: n slices in 2 s
    batches = app.dataframe[0].value
    assert {seeded.high, seeded.low} <= set(batches["id"])
    assert "Drift" in _texts(app)
    assert any(m.value.startswith("DVC remote ") for m in [*app.success, *app.error])


def test_hostile_study_names_are_shown_literally(signed_in, seeded) -> None:
    from dashboard_helpers import seed_study

    name = "[x](javascript:alert(1)) 'q'; DROP TABLE reviews; -- ünï_%"
    batch_id, _ = seed_study(seeded.settings, name, [0.7])
    app = signed_in()
    app.segmented_control(key="wl_status").set_value("all")
    app.text_input(key="wl_query").input(name[:20]).run()
    assert list(app.dataframe[0].value["batch"]) == [batch_id]  # LIKE wildcards escaped
    app.button(key="wl_open").click().run()
    assert not app.exception, app.exception
    title = app.title[0].value
    assert "\\[x\\]\\(javascript\\:alert" in title  # no link: Markdown escaped
    assert title.replace("\\", "") == f"Study {name}"
