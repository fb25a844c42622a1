"""What issue 13 found untrue on screen: an overridden model without a warning, files that
vanished from a study's row, an inbox folder nobody saw, the developer chrome."""

from __future__ import annotations

import tomllib

from dashboard_helpers import REJECTED, record_event
from sqlalchemy import text

from lung_model.platform import db
from lung_model.settings import PROJECT_ROOT


def _errors(app) -> str:
    return "\n".join(str(e.value) for e in app.error).replace("\\", "")  # Markdown escapes


def test_every_clinical_page_warns_while_the_champion_is_an_override(signed_in, overridden) -> None:
    seeded = overridden
    app = signed_in()
    wanted = "The model in use (version 1) was promoted by operator override on "
    assert wanted in _errors(app)
    assert f"it did not pass the safety gate ({REJECTED}). Not for clinical use." in _errors(app)

    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    assert "The model that scored this study (version 1) was promoted by operator" in _errors(app)

    app.switch_page("views/try_scan.py")
    app.run()
    assert wanted in _errors(app)

    record_event(seeded.settings, "1", "promoted", "clears every floor", "gate")
    app.switch_page("views/worklist.py")
    app.run()
    assert "operator override" not in _errors(app)  # once the gate passed it, no banner


def test_the_worklist_row_says_what_became_of_every_file(signed_in, seeded) -> None:
    with db.get_engine(seeded.settings).begin() as connection:
        connection.execute(
            text(
                "INSERT INTO images (batch_id, path, status, reason)"
                " VALUES (:b, 'broken.dcm', 'quarantined', 'not a DICOM file')"
            ),
            {"b": seeded.high},
        )
        connection.execute(
            text("UPDATE scan_batches SET n_files = 4, n_quarantined = 1 WHERE id = :b"),
            {"b": seeded.high},
        )
    app = signed_in()
    for batch, files in (
        (seeded.high, "3 of 4 scored, 1 quarantined"),
        (seeded.low, "2 of 2 scored"),
    ):
        app.text_input(key="wl_query").input(str(batch)).run()  # other tests' studies fill page 1
        assert app.dataframe[0].value.set_index("batch").loc[batch, "files"] == files


def test_operations_lists_inbox_folders_without_a_marker(signed_in, seeded) -> None:
    folder = seeded.settings.inbox / "forgot-the-marker"
    folder.mkdir(parents=True)
    (folder / "1.jpg").write_bytes(b"x")
    app = signed_in()
    app.switch_page("views/operations.py")
    app.run()
    assert not app.exception, app.exception
    waiting = next(d.value for d in app.dataframe if "in inbox" in d.value.columns)
    assert list(waiting["in inbox"]) == ["forgot-the-marker"]
    assert list(waiting["waiting because"]) == [f"no {seeded.settings.ready_marker} marker"]
    assert "will not be scored until" in str(app.warning[0].value)


def test_the_dashboard_config_hides_the_developer_chrome() -> None:
    """`make demo` and the browser test run `streamlit run` from the project root, where
    Streamlit reads `.streamlit/config.toml`; the browser test checks the result."""
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] in ("viewer", "minimal")
