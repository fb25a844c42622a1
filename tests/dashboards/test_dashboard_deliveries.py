"""The Study and Operations pages show what went to the hospital and what waits (the
`result_deliveries` ledger, read through the dashboard's restricted role)."""

from __future__ import annotations

from sqlalchemy import text

from lung_model.platform import db


def _texts(app) -> str:
    parts = [*app.markdown, *app.caption, *app.subheader]
    return "\n".join(str(e.value) for e in parts).replace("\\", "")


def test_sent_and_waiting_reports_are_shown(signed_in, seeded) -> None:
    with db.get_engine(seeded.settings).begin() as connection:
        for channel, status, error in (
            ("fhir-outbox", "sent", None),
            ("dicom", "waiting", "ConnectionError: no association with PACS@127.0.0.1:4242"),
        ):
            connection.execute(
                text(
                    "INSERT INTO result_deliveries (batch_id, report, report_status, channel,"
                    " destination, study_instance_uid, object_uid, status, attempts, last_error,"
                    " sent_at) VALUES (:b, 'model:m:1', 'preliminary', :c, 'PACS@127.0.0.1:4242',"
                    " '1.2.3', '2.25.1', :s, 1, :e, CASE WHEN :s = 'sent' THEN now() END)"
                ),
                {"b": seeded.high, "c": channel, "s": status, "e": error},
            )

    app = signed_in()
    app.switch_page("views/study.py")
    app.query_params["batch"] = str(seeded.high)
    app.run()
    assert not app.exception, app.exception
    assert "Sent to the hospital" in _texts(app)
    [table] = [d.value for d in app.dataframe if "channel" in d.value.columns]
    assert sorted(table["status"]) == ["sent", "waiting"]

    app.switch_page("views/operations.py")
    app.run()
    assert not app.exception, app.exception
    metrics = {m.label: m.value for m in app.metric}
    assert int(metrics["Reports waiting"]) >= 1 and int(metrics["Retrying after a failure"]) >= 1
    [waiting] = [d.value for d in app.dataframe if "last_error" in d.value.columns]
    assert "no association with PACS" in " ".join(waiting["last_error"])
